"""``--migrate``: a suite's skip conditions, as ``requires`` lines where one says the same.

Test files are read with :mod:`ast`, never imported. A skip site is a call of
``pytest.mark.skipif``, ``unittest.skipIf``/``skipUnless`` (as a decorator, in
``pytestmark``, in a module-level alias such as ``requires_cuda =
pytest.mark.skipif(…)``, in ``pytest.param(marks=…)``) or
``pytest.importorskip`` inside a test. Its condition is translated with its
polarity in mind: ``skipif(C)`` skips when ``C`` is true, ``skipUnless(C)``
when it is false, and ``requires(L1, L2)`` runs when every line is met — so a
condition converts when the lines' conjunction is exactly "the test runs".
``not`` flips, ``and``/``or`` split into several lines where the polarity makes
them a conjunction, and everything else says why it has no equivalent.

``--write`` replaces each convertible call's text, and nothing else: one
``import pytest`` is added where the file had none, imports left unused are
reported, not removed. A file that is not UTF-8 or does not parse is reported
and left as it is.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

# -- what the translation produces ----------------------------------------------------------


class NoEquivalent(Exception):
    """A condition no conjunction of requirement lines expresses; the message says why."""


class Lines(NamedTuple):
    """Requirement lines that together hold exactly when the test runs, and the
    semantic differences to review (keys of :data:`NOTES`)."""

    lines: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __add__(self, other: object) -> Lines:
        assert isinstance(other, Lines)
        return Lines(_simplified((*self.lines, *other.lines)),
                     tuple(dict.fromkeys((*self.notes, *other.notes))))


def _simplified(lines: Sequence[str]) -> tuple[str, ...]:
    """The lines once each; of several ``gpus >=N`` only the highest (the others follow)."""
    counts = [int(line[len("gpus >="):]) for line in lines
              if re.fullmatch(r"gpus >=\d+", line)]
    kept = [line for line in lines if not re.fullmatch(r"gpus >=\d+", line)
            or int(line[len("gpus >="):]) == max(counts)]
    return tuple(dict.fromkeys(kept))


#: What changes when a skip condition becomes a requires line (knowledge as data; the
#: sources are each API's documentation).
NOTES: dict[str, str] = {
    "torch-cuda": "torch.cuda.is_available() and device_count() are also false/0 for a CPU-only "
                  "torch build or a driver too old for torch's CUDA; `gpus` counts the GPUs NVML "
                  "sees (after CUDA_VISIBLE_DEVICES): on a GPU machine such a test now runs and "
                  "fails, which is what a GPU job wants",
    "torch-version-cuda": "torch.version.cuda is the CUDA torch was built with (and compared as a "
                          "string); `cuda` is the highest CUDA the driver supports",
    "env-empty": "os.environ.get()/os.getenv() are false for a variable set to the empty string; "
                 "`env NAME` is met whenever the variable is set",
    "find-spec": "importlib.util.find_spec() only finds the module; `import` needs it to import "
                 "cleanly (in a subprocess)",
    "import-flag": "the try/except caught the import's failure in this process; `import` imports "
                   "in a subprocess and tells 'not installed' from 'installed but broken'",
    "importorskip": "a module that is installed but fails to import (a broken build, a missing "
                    "native library) was a skip; envguard reports it as broken, and it fails in "
                    "strict mode — the point of the change",
    "find-library": "ctypes.util.find_library() asks ldconfig/gcc; `library` follows the "
                    "loader's search (LD_LIBRARY_PATH, ld.so.cache, default dirs, site-packages "
                    "nvidia/*/lib), so it can find what find_library misses",
}

STRICT_NOTE = ("in strict mode (envguard_strict = true, or ci with $CI set) an unmet requires "
               "line fails the test instead of skipping it")


# -- names as the module binds them ------------------------------------------------------------


@dataclass
class ModuleNames:
    """What names mean in one test module: imports, constants, import flags."""

    aliases: dict[str, str] = field(default_factory=dict)  # "np" → "numpy", "mark" → "pytest.mark"
    constants: dict[str, ast.expr] = field(default_factory=dict)  # assigned once at module level
    import_flags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # HAS_NP → ("numpy",)

    @classmethod
    def of(cls, tree: ast.Module) -> ModuleNames:
        names = cls()
        assigned: dict[str, int] = {}
        for node in _module_level(tree.body):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        names.aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        names.aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    names.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            assigned[name.id] = assigned.get(name.id, 0) + 1
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                        node.targets[0], ast.Name):
                    names.constants[node.targets[0].id] = node.value
            elif isinstance(node, (ast.For, ast.With, ast.FunctionDef, ast.ClassDef)):
                bound = [node.target] if isinstance(node, ast.For) else []
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    assigned[node.name] = assigned.get(node.name, 0) + 1
                for target in bound:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            assigned[name.id] = assigned.get(name.id, 0) + 1
        names.constants = {name: value for name, value in names.constants.items()
                           if assigned.get(name) == 1}
        for node in tree.body:
            if isinstance(node, ast.Try):
                names.import_flags.update(_import_flags(node))
        return names

    def canonical(self, node: ast.expr) -> str | None:
        """``torch.cuda.is_available`` for that expression, through the module's imports."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        root = self.aliases.get(node.id, node.id)
        return ".".join([root, *reversed(parts)])


def _module_level(body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements that run at module level, inside ``if``/``try`` blocks too."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            yield from _module_level(node.body)
            for handler in node.handlers:
                yield from _module_level(handler.body)
            yield from _module_level(node.orelse)
            yield from _module_level(node.finalbody)


_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception"}


def _import_flags(node: ast.Try) -> dict[str, tuple[str, ...]]:
    """``try: import x; HAS_X = True / except ImportError: HAS_X = False``."""
    modules = tuple(alias.name for statement in node.body if isinstance(statement, ast.Import)
                    for alias in statement.names)
    modules += tuple(statement.module for statement in node.body
                     if isinstance(statement, ast.ImportFrom) and statement.module
                     and not statement.level)
    if not modules:
        return {}

    def flags(body: Sequence[ast.stmt], value: bool) -> set[str]:
        return {statement.targets[0].id for statement in body
                if isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
                and isinstance(statement.value, ast.Constant) and statement.value.value is value}

    true = flags([*node.body, *node.orelse], True)
    result: dict[str, tuple[str, ...]] = {}
    for handler in node.handlers:
        caught = ([handler.type] if not isinstance(handler.type, ast.Tuple)
                  else handler.type.elts) if handler.type is not None else []
        names = {item.id if isinstance(item, ast.Name) else getattr(item, "attr", "")
                 for item in caught}
        if handler.type is None or names & _IMPORT_ERRORS:
            for name in true & flags(handler.body, False):
                result[name] = modules
    return result


# -- translating conditions --------------------------------------------------------------------

#: ``sys.platform.startswith(PREFIX)`` holds exactly when ``sys.platform == VALUE``.
PLATFORM_PREFIXES = {"linux": "linux", "darwin": "darwin", "win": "win32", "win32": "win32",
                     "cygwin": "cygwin", "emscripten": "emscripten", "wasi": "wasi"}
#: ``platform.system()`` → ``sys.platform`` (Python's docs for both).
SYSTEMS = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}
_NEGATED = {"<": ">=", ">=": "<", ">": "<=", "<=": ">", "==": "!=", "!=": "=="}
_MIRRORED = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "==", "!=": "!="}
_OPERATORS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_VERSION_WRAPPERS = ("packaging.version.Version", "packaging.version.parse", "Version",
                     "distutils.version.LooseVersion", "LooseVersion", "str")


class Translator:
    """Requirement lines for "this condition evaluates to ``truth``"."""

    def __init__(self, names: ModuleNames) -> None:
        self.names = names
        self._resolving: set[str] = set()

    def runs_when(self, node: ast.expr, truth: bool) -> Lines:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self.runs_when(node.operand, not truth)
        if isinstance(node, ast.BoolOp):
            conjunction = isinstance(node.op, ast.And) == truth
            if not conjunction:
                raise NoEquivalent("an 'or' of requirements: a requires marker needs every "
                                   "one of its lines")
            result = Lines()
            for value in node.values:
                result = result + self.runs_when(value, truth)
            return result
        if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int)):
            raise NoEquivalent(f"always {'true' if node.value else 'false'}: an unconditional "
                               "skip, not an environment requirement")
        if isinstance(node, ast.Name) and node.id not in self.names.aliases:
            return self._name(node.id, truth)
        if isinstance(node, ast.Compare):
            return self._compare(node, truth)
        return self._presence(node, truth)

    def _name(self, name: str, truth: bool) -> Lines:
        if name in self.names.import_flags:
            modules = self.names.import_flags[name]
            if not truth:
                raise NoEquivalent(f"{name} is false when the import succeeds: requires cannot "
                                   "say 'not installed'")
            return Lines(tuple(f"import {module}" for module in modules), ("import-flag",))
        value = self.names.constants.get(name)
        if value is None or name in self._resolving:
            raise NoEquivalent(f"{name} is not a constant assigned once in this module")
        self._resolving.add(name)
        try:
            return self.runs_when(value, truth)
        finally:
            self._resolving.discard(name)

    # -- presence: which(), find_library(), environ.get(), is_available() ------------------

    def _present(self, node: ast.expr) -> tuple[str, str | None] | None:
        """(line, note) for a call that is truthy exactly when the line is met."""
        if isinstance(node, ast.Call) and not node.keywords and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "startswith" and len(node.args) == 1 \
                and self.names.canonical(node.func.value) == "sys.platform":
            platform = PLATFORM_PREFIXES.get(_string(node.args[0]) or "")
            return (f"platform {platform}", None) if platform else None
        if isinstance(node, ast.Call) and not node.keywords:
            name = self.names.canonical(node.func)
            argument = _string(node.args[0]) if len(node.args) == 1 else None
            if name in ("shutil.which",) and argument:
                return f"command {argument}", None
            if name in ("ctypes.util.find_library",) and argument:
                return f"library {argument}", "find-library"
            if name in ("os.environ.get", "os.getenv") and argument:
                return f"env {argument}", "env-empty"
            if name in ("importlib.util.find_spec",) and argument:
                return f"import {argument}", "find-spec"
            if name == "torch.cuda.is_available" and not node.args:
                return "gpus >=1", "torch-cuda"
            if name == "torch.cuda.device_count" and not node.args:
                return "gpus >=1", "torch-cuda"
        return None

    def _presence(self, node: ast.expr, truth: bool) -> Lines:
        found = self._present(node)
        if found is None:
            raise NoEquivalent(self._unknown(node))
        line, note = found
        if not truth:
            raise NoEquivalent(f"requires cannot say '{line}' is NOT met")
        return Lines((line,), (note,) if note else ())

    def _unknown(self, node: ast.expr) -> str:
        name = self.names.canonical(node.func if isinstance(node, ast.Call) else node)
        if name == "torch.version.cuda":
            return ("whether torch is a CUDA build: no key says that; `cuda` says what the "
                    "driver supports")
        return "not a condition a requires line expresses"

    # -- comparisons ---------------------------------------------------------------------------

    def _compare(self, node: ast.Compare, truth: bool) -> Lines:
        if len(node.ops) != 1:
            raise NoEquivalent("a chained comparison")
        left, right, op_node = node.left, node.comparators[0], node.ops[0]
        if isinstance(op_node, (ast.Is, ast.IsNot)) and _is_none(right):
            present = isinstance(op_node, ast.IsNot)
            return self._presence(left, truth == present) if self._present(left) else \
                self._fail_none(left)
        if isinstance(op_node, (ast.In, ast.NotIn)):
            return self._membership(left, right, isinstance(op_node, ast.In) == truth)
        op = _OPERATORS.get(type(op_node))
        if op is None:
            raise NoEquivalent("an identity test")
        if not truth:
            op = _NEGATED[op]
        if self._subject(right) and not self._subject(left):
            left, right, op = right, left, _MIRRORED[op]
        return self._comparison(left, op, right)

    def _fail_none(self, node: ast.expr) -> Lines:
        raise NoEquivalent(self._unknown(node))

    def _subject(self, node: ast.expr) -> bool:
        """Whether ``node`` is the environment side of a comparison."""
        return self._kind(node) is not None

    def _kind(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Subscript):
            node = node.value
        if isinstance(node, ast.Call) and len(node.args) == 1 and \
                self.names.canonical(node.func) in _VERSION_WRAPPERS:
            node = node.args[0]
        name = self.names.canonical(node.func if isinstance(node, ast.Call) else node)
        if name in ("sys.version_info", "sys.platform", "os.name", "torch.version.cuda",
                    "platform.system", "platform.machine", "torch.cuda.device_count",
                    "os.environ.get", "os.getenv"):
            return name
        return None

    def _comparison(self, left: ast.expr, op: str, right: ast.expr) -> Lines:
        kind = self._kind(left)
        if kind == "sys.version_info":
            return Lines((_python_line(left, op, right),))
        if kind in ("sys.platform", "platform.system", "os.name"):
            value = _string(right)
            if value is None or op not in ("==", "!="):
                raise NoEquivalent(f"{kind} compared with something other than a name")
            if op == "!=":
                raise NoEquivalent(f"requires cannot say 'not {value}'; keep this skip (it "
                                   "excludes a platform rather than needing one)")
            platform = {"platform.system": SYSTEMS.get(value),
                        "os.name": "win32" if value == "nt" else None}.get(kind, value)
            if not platform:
                raise NoEquivalent(f"{kind} {value!r} names more than one sys.platform")
            return Lines((f"platform {platform}",))
        if kind == "platform.machine":
            value = _string(right)
            if value is None or op != "==":
                raise NoEquivalent("requires cannot say 'not this machine'" if op == "!="
                                   else "platform.machine() compared with something other "
                                        "than a name")
            return Lines((f"machine {value}",))
        if kind == "torch.cuda.device_count":
            count = _integer(right)
            if count is None or not isinstance(left, ast.Call):
                raise NoEquivalent("device_count() compared with something other than a number")
            op, count = {("!=", 0): (">=", 1), (">", count): (">=", count + 1)}.get(
                (op, count), (op, count))
            return Lines((f"gpus {op}{count}",), ("torch-cuda",))
        if kind == "torch.version.cuda":
            version = _version_literal(right, self.names)
            if version is None:
                raise NoEquivalent("torch.version.cuda compared with something other than a "
                                   "version")
            return Lines((f"cuda {op}{version}",), ("torch-version-cuda",))
        if kind in ("os.environ.get", "os.getenv") and isinstance(left, ast.Call):
            name = _string(left.args[0]) if left.args else None
            value = _string(right)
            default = _string(left.args[1]) if len(left.args) > 1 else None
            if name is None or value is None or op != "==" or value == default:
                raise NoEquivalent("requires can say NAME=value, not another comparison")
            return Lines((f"env {name}={value}",))
        raise NoEquivalent("not a condition a requires line expresses")

    def _membership(self, left: ast.expr, right: ast.expr, inside: bool) -> Lines:
        # "X" in os.environ
        if self.names.canonical(right) == "os.environ" and _string(left):
            if not inside:
                raise NoEquivalent(f"requires cannot say ${_string(left)} is NOT set")
            return Lines((f"env {_string(left)}",))
        kind = self._kind(left)
        values = right.elts if isinstance(right, (ast.Tuple, ast.List, ast.Set)) else None
        if kind and values is not None and len(values) == 1 and inside:
            return self._comparison(left, "==", values[0])
        if kind and values is not None:
            raise NoEquivalent(f"{kind} against several values: requires needs one")
        raise NoEquivalent("not a condition a requires line expresses")


def _string(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _integer(node: ast.expr) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _version_literal(node: ast.expr, names: ModuleNames) -> str | None:
    if isinstance(node, ast.Call) and len(node.args) == 1 and \
            names.canonical(node.func) in _VERSION_WRAPPERS:
        node = node.args[0]
    text = _string(node)
    if text and re.fullmatch(r"\d+(\.\d+)*", text):
        return text
    if isinstance(node, ast.Constant) and isinstance(node.value, float):
        return repr(node.value)
    return None


def _python_line(left: ast.expr, op: str, right: ast.expr) -> str:
    """``sys.version_info[:k] OP (a, b)`` as a ``python`` line, with tuple semantics."""
    if not isinstance(right, ast.Tuple) or not right.elts or \
            any(_integer(item) is None for item in right.elts):
        raise NoEquivalent("sys.version_info compared with something other than a tuple of numbers")
    version = [int(_integer(item) or 0) for item in right.elts]
    length: int | None = None  # how many parts the left side has (None: all five)
    if isinstance(left, ast.Subscript):
        part = left.slice
        if isinstance(part, ast.Slice) and part.lower is None and part.step is None \
                and part.upper is not None and _integer(part.upper) is not None:
            length = _integer(part.upper)
        else:
            raise NoEquivalent("a part of sys.version_info other than [:N]")
    if length is not None and length != len(version):
        raise NoEquivalent("sys.version_info[:N] compared with a tuple of another length")
    shown = ".".join(map(str, version))
    if length is None and len(version) < 5:
        # The full sys.version_info is longer than the tuple: never equal to it, and greater
        # than it whenever the tuple is its prefix.
        if op in ("==", "!="):
            raise NoEquivalent("a constant: sys.version_info never equals a tuple of fewer "
                               "than five parts")
        op = {"<=": "<", ">": ">="}.get(op, op)
        return f"python {op}{shown}"
    if op in ("==", "!="):
        return f"python {op}{shown}.*" if len(version) < 3 else f"python {op}{shown}"
    if op in ("<=", ">"):
        bumped = ".".join(map(str, [*version[:-1], version[-1] + 1]))
        return f"python {'<' if op == '<=' else '>='}{bumped}"
    return f"python {op}{shown}"


# -- finding the skip sites --------------------------------------------------------------------

SKIPIF = "pytest.mark.skipif"
SKIP_IF, SKIP_UNLESS = "unittest.skipIf", "unittest.skipUnless"
UNITTEST_ALIASES = {"unittest.case.skipIf": SKIP_IF, "unittest.case.skipUnless": SKIP_UNLESS}
IMPORTORSKIP = "pytest.importorskip"


@dataclass
class Finding:
    """One skip condition: where it is, what it says, and what replaces it."""

    path: str
    line: int
    condition: str  # as shown: 'skipif(not torch.cuda.is_available())'
    lines: tuple[str, ...] = ()  # the requires lines, when it converts
    why_not: str | None = None
    notes: tuple[str, ...] = ()
    edit: tuple[int, int, str] | None = None  # (start, end) character offsets and the new text

    @property
    def convertible(self) -> bool:
        return self.why_not is None

    def render(self) -> str:
        where = f"{self.path}:{self.line}: {self.condition}"
        if self.why_not is not None:
            return f"{where} → no equivalent ({self.why_not})"
        return f"{where} → @pytest.mark.requires({', '.join(map(_quoted, self.lines))})"


def _quoted(line: str) -> str:
    return '"' + line.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Offsets:
    """(line, UTF-8 byte column) as ast gives them → offsets into the decoded text."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def at(self, line: int, column: int) -> int:
        text = self.lines[line - 1] if line - 1 < len(self.lines) else ""
        return self.starts[line - 1] + len(text.encode("utf-8")[:column].decode("utf-8", "replace"))

    def span(self, node: ast.expr | ast.stmt) -> tuple[int, int]:
        assert node.end_lineno is not None
        assert node.end_col_offset is not None
        return (self.at(node.lineno, node.col_offset), self.at(node.end_lineno, node.end_col_offset))


class _SiteFinder(ast.NodeVisitor):
    """Every skip site of one module, each with its enclosing function."""

    def __init__(self, names: ModuleNames) -> None:
        self.names = names
        self.sites: list[tuple[ast.Call, str, ast.FunctionDef | ast.AsyncFunctionDef | None,
                               ast.AST | None]] = []
        self.bare: list[ast.expr] = []
        self._function: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self._parents: list[ast.AST] = []

    def generic_visit(self, node: ast.AST) -> None:
        self._parents.append(node)
        super().generic_visit(node)
        self._parents.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._bare(node.decorator_list)
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._function.append(node)
        self._parents.append(node)
        for statement in node.body:
            self.visit(statement)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self._parents.pop()
        self._function.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._bare(node.decorator_list)
        self.generic_visit(node)

    def _bare(self, decorators: Sequence[ast.expr]) -> None:
        """``@pytest.mark.skipif`` with no call: pytest skips unconditionally."""
        for decorator in decorators:
            name = self.names.canonical(decorator)
            if name in (SKIPIF, SKIP_IF, SKIP_UNLESS):
                self.bare.append(decorator)

    def visit_Call(self, node: ast.Call) -> None:
        name = self.names.canonical(node.func)
        name = UNITTEST_ALIASES.get(name or "", name)
        if name in (SKIPIF, SKIP_IF, SKIP_UNLESS, IMPORTORSKIP):
            parent = self._parents[-1] if self._parents else None
            self.sites.append((node, name, self._function[-1] if self._function else None,
                               parent))
        self.generic_visit(node)


def _is_fixture(function: ast.FunctionDef | ast.AsyncFunctionDef, names: ModuleNames) -> bool:
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if names.canonical(target) in ("pytest.fixture", "pytest.yield_fixture"):
            return True
    return False


# -- one file ---------------------------------------------------------------------------------


@dataclass
class FileResult:
    path: str
    findings: list[Finding] = field(default_factory=list)
    refused: str | None = None  # why the file was not read or not rewritten
    diff: str = ""
    unused_imports: list[str] = field(default_factory=list)
    added_import: bool = False


class _Module:
    """One parsed test file and the edits that convert its skip sites."""

    def __init__(self, path: str, text: str, tree: ast.Module) -> None:
        self.path = path
        self.text = text
        self.tree = tree
        self.names = ModuleNames.of(tree)
        self.offsets = _Offsets(text)
        self.translator = Translator(self.names)
        self.needs_pytest = False

    def source(self, node: ast.expr) -> str:
        start, end = self.offsets.span(node)
        return " ".join(self.text[start:end].split())

    def mark_prefix(self) -> str:
        """How this module names ``pytest.mark`` (adding ``import pytest`` if it cannot)."""
        for alias, target in self.names.aliases.items():
            if target == "pytest.mark":
                return alias
        for alias, target in self.names.aliases.items():
            if target == "pytest":
                return f"{alias}.mark"
        self.needs_pytest = True
        return "pytest.mark"

    def findings(self) -> list[Finding]:
        finder = _SiteFinder(self.names)
        finder.visit(self.tree)
        bare = [Finding(self.path, node.lineno, self.source(node),
                        why_not="a skip decorator without a call or condition: it always skips")
                for node in finder.bare]
        return sorted([*bare, *(self.finding(*site) for site in finder.sites)],
                      key=lambda finding: finding.line)

    def finding(self, call: ast.Call, kind: str,
                function: ast.FunctionDef | ast.AsyncFunctionDef | None,
                parent: ast.AST | None) -> Finding:
        short = kind.rsplit(".", 1)[1]
        shown = f"{short}({', '.join(self.source(arg) for arg in call.args)})"
        finding = Finding(self.path, call.lineno, shown)
        try:
            if kind == IMPORTORSKIP:
                return self._importorskip(call, function, finding)
            if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute) and \
                    parent.func.attr == "applymarker":
                raise NoEquivalent("added at run time by applymarker, after envguard reads "
                                   "markers: call envguard.require(…) there instead")
            lines = self._condition_lines(call, kind)
        except NoEquivalent as error:
            finding.why_not = str(error)
            return finding
        except RecursionError:
            finding.why_not = "the condition is nested too deeply to read"
            return finding
        finding.lines, finding.notes = lines.lines, lines.notes
        reason = self._reason(call, kind)
        arguments = [*map(_quoted, lines.lines), *([f"reason={reason}"] if reason else [])]
        replacement = f"{self._prefix(call, kind)}.requires({', '.join(arguments)})"
        finding.edit = (*self.offsets.span(call), replacement)
        return finding

    def _prefix(self, call: ast.Call, kind: str) -> str:
        if kind == SKIPIF and isinstance(call.func, ast.Attribute):
            return self.source(call.func.value)
        return self.mark_prefix()

    def _condition_lines(self, call: ast.Call, kind: str) -> Lines:
        keywords = {keyword.arg: keyword.value for keyword in call.keywords}
        if None in keywords or any(isinstance(arg, ast.Starred) for arg in call.args):
            raise NoEquivalent("arguments passed with * or **")
        if kind == SKIPIF:
            conditions = list(call.args)
            if "condition" in keywords:
                conditions.append(keywords["condition"])
            if not conditions:
                raise NoEquivalent("skipif without a condition always skips")
            result = Lines()
            for condition in conditions:  # skipped when any is true: runs when all are false
                result = result + self._translate(condition, False)
            return result
        if not call.args:
            raise NoEquivalent(f"{kind} without a condition")
        return self._translate(call.args[0], kind == SKIP_UNLESS)

    def _translate(self, condition: ast.expr, truth: bool) -> Lines:
        text = _string(condition)
        if text is None:
            return self.translator.runs_when(condition, truth)
        # pytest evaluates a string condition with os, sys and platform (and the module's
        # globals) in scope.
        try:
            expression = ast.parse(text.strip(), mode="eval").body
        except SyntaxError:
            raise NoEquivalent("the condition string does not parse") from None
        saved = dict(self.names.aliases)
        for module in ("os", "sys", "platform"):
            self.names.aliases.setdefault(module, module)
        try:
            return self.translator.runs_when(expression, truth)
        finally:
            self.names.aliases = saved

    def _reason(self, call: ast.Call, kind: str) -> str | None:
        for keyword in call.keywords:
            if keyword.arg in ("reason", "msg"):
                return self.source(keyword.value)
        if kind in (SKIP_IF, SKIP_UNLESS) and len(call.args) > 1:
            return self.source(call.args[1])
        return None

    def _importorskip(self, call: ast.Call, function: ast.FunctionDef | ast.AsyncFunctionDef | None,
                      finding: Finding) -> Finding:
        module = _string(call.args[0]) if call.args else None
        if module is None:
            raise NoEquivalent("the module name is not a string literal")
        if call.keywords or len(call.args) > 1:
            raise NoEquivalent("minversion=/reason= are not carried over: minversion compares "
                               "the module's __version__ (a package line compares the "
                               "distribution's)")
        line = f"import {module}"
        if function is None:
            raise NoEquivalent(f"at module level it runs at collection, before any marker "
                               f"applies: add '{line}' to the session contract instead")
        if _is_fixture(function, self.names) or not function.name.startswith("test"):
            raise NoEquivalent(f"inside {function.name}(), not a test: call "
                               f"envguard.require({_quoted(line)}) there")
        finding.lines, finding.notes = (line,), ("importorskip",)
        first = min([function.lineno, *(item.lineno for item in function.decorator_list)])
        at = self.offsets.at(first, 0)
        indent = " " * function.col_offset
        # The call stays (it binds the module); the marker decides before the test starts.
        finding.edit = (at, at, f"{indent}@{self.mark_prefix()}.requires({_quoted(line)})\n")
        return finding

    def import_pytest_at(self) -> int:
        """Where ``import pytest`` goes: before the first import that is not __future__."""
        for node in self.tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not (
                    isinstance(node, ast.ImportFrom) and node.module == "__future__"):
                return self.offsets.at(node.lineno, 0)
        last = None
        for node in self.tree.body:
            is_docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            if is_docstring or isinstance(node, ast.ImportFrom):
                last = node
            else:
                break
        if last is None or last.end_lineno is None:
            return 0
        return self.offsets.starts[min(last.end_lineno, len(self.offsets.lines))]


def _used_names(tree: ast.Module) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def _imported_names(tree: ast.Module) -> dict[str, int]:
    names: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                names[alias.asname or alias.name] = node.lineno
    return names


def read_source(path: Path) -> tuple[str | None, str | None]:
    """(text, None) or (None, why it is refused)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return None, f"cannot read it: {error.strerror or error}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"not UTF-8 (byte {error.start})"
    if "\r" in text.replace("\r\n", ""):
        return None, "lone carriage returns as line ends"
    return text, None


def migrate_file(path: Path, *, write: bool) -> FileResult:
    shown = str(path)
    result = FileResult(shown)
    text, refused = read_source(path)
    if text is None:
        result.refused = refused
        return result
    body = text.removeprefix("\ufeff")
    bom = text[:len(text) - len(body)]
    try:
        tree = ast.parse(body, filename=shown)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        line = f", line {error.lineno}" if isinstance(error, SyntaxError) and error.lineno else ""
        result.refused = f"cannot parse ({type(error).__name__}: {getattr(error, 'msg', error)}{line})"
        return result
    module = _Module(shown, body, tree)
    try:
        result.findings = module.findings()
    except RecursionError:  # a tree deeper than the visitor can walk
        result.refused = "nested too deeply to read"
        return result
    edits = sorted((finding.edit for finding in result.findings if finding.edit), reverse=True)
    if not edits:
        return result
    new = body
    for start, end, replacement in edits:
        new = new[:start] + replacement + new[end:]
    if module.needs_pytest:
        at = module.import_pytest_at()
        new = new[:at] + "import pytest\n" + new[at:]
        result.added_import = True
    try:
        new_tree = ast.parse(new)
    except SyntaxError as error:  # a bug here must never corrupt a test file
        result.refused = f"the rewrite would not parse ({error.msg}): left as it is"
        return result
    before, after = _used_names(tree), _used_names(new_tree)
    result.unused_imports = sorted(name for name in _imported_names(new_tree)
                                   if name in before and name not in after)
    from pytest_envguard.adopt import unified_diff

    result.diff = unified_diff(shown, bom + body, bom + new)
    if write:
        try:
            path.write_bytes((bom + new).encode("utf-8"))
        except OSError as error:
            result.refused = f"cannot write it: {error.strerror or error}"
    return result


# -- many files, and the report ----------------------------------------------------------------

_SKIPPED_DIRS = {".git", ".hg", ".tox", ".nox", ".venv", "venv", "node_modules", "__pycache__",
                 "site-packages", "build", "dist"}


def test_files(paths: Iterable[Path]) -> list[Path]:
    """The files to scan: each file given, and the pytest-style test files
    (``test_*.py``, ``*_test.py``, ``conftest.py``) below each directory given."""
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(name for name in dirs
                             if name not in _SKIPPED_DIRS and not name.startswith("."))
            found += [Path(root) / name for name in sorted(files)
                      if name.endswith(".py") and (name.startswith("test_")
                                                   or name.endswith("_test.py")
                                                   or name == "conftest.py")]
    return list(dict.fromkeys(found))


@dataclass
class Report:
    files: list[FileResult]
    written: bool

    @property
    def findings(self) -> list[Finding]:
        return [finding for result in self.files for finding in result.findings]

    @property
    def refused(self) -> list[FileResult]:
        return [result for result in self.files if result.refused]

    def render(self) -> str:
        out: list[str] = []
        for result in self.files:
            out += [finding.render() for finding in result.findings]
            if result.refused:
                out.append(f"{result.path}: {result.refused}: left untouched")
        for result in self.files:
            if self.written and result.diff and not result.refused:
                out.append(result.diff.rstrip("\n"))
            if result.added_import and not result.refused:
                out.append(f"{result.path}: added 'import pytest' for the requires marker")
            if result.unused_imports and not result.refused:
                out.append(f"{result.path}: imports no longer used (not removed): "
                           f"{', '.join(result.unused_imports)}")
        findings = self.findings
        convertible = sum(finding.convertible for finding in findings)
        summary = (f"{len(findings)} skip conditions found: {convertible} convertible, "
                   f"{len(findings) - convertible} not")
        if self.refused:
            summary += f"; {len(self.refused)} file{'s' if len(self.refused) > 1 else ''} " \
                       "not read"
        if self.written:
            changed = sum(1 for result in self.files if result.diff and not result.refused)
            summary += f"; {changed} file{'s' if changed != 1 else ''} rewritten"
        out += ["", summary]
        notes = self.notes()
        if notes or convertible:
            out.append("Semantic differences to review:")
            for key, places in notes.items():
                out.append(f"  - {NOTES[key]} ({', '.join(places)})")
            if convertible:
                out.append(f"  - {STRICT_NOTE}")
        return "\n".join(out) + "\n"

    def notes(self) -> dict[str, list[str]]:
        notes: dict[str, list[str]] = {}
        for finding in self.findings:
            if finding.convertible:
                for key in finding.notes:
                    notes.setdefault(key, []).append(f"{finding.path}:{finding.line}")
        return notes


def migrate(paths: Sequence[Path], *, write: bool) -> Report:
    return Report([migrate_file(path, write=write) for path in paths], write)


def notes_by_place(report: Report) -> Mapping[str, tuple[str, ...]]:
    """``path:line`` → the semantic differences reported there (for tools and tests)."""
    return {f"{finding.path}:{finding.line}": finding.notes for finding in report.findings
            if finding.convertible}
