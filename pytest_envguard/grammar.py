"""Requirement lines → :class:`Requirement` objects (DESIGN.md §1).

::

    line := key [argument] [specifier] [";" pep508-marker]

Parsing never evaluates anything: specifiers go to ``packaging.specifiers``,
markers to ``packaging.markers`` (whose own parser accepts only the PEP 508
grammar), sizes and counts to :mod:`pytest_envguard.units`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import NamedTuple

from pytest_envguard import units


class Argument(Enum):
    """Whether a key takes an argument."""

    NONE = "none"
    REQUIRED = "required"
    OPTIONAL = "optional"


class Spec(Enum):
    """What a key's specifier compares."""

    NONE = "none"
    VERSION = "version"
    COUNT = "count"
    SIZE = "size"


class Key(NamedTuple):
    """One row of the key table: what the key takes and what its argument looks like."""

    name: str
    argument: Argument
    spec: Spec
    pattern: str | None  # the argument's shape, as a regular expression
    shape: str  # the argument's shape, in words, for error messages
    summary: str


_WORD = r"[A-Za-z0-9_.+-]+"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"

KEYS: dict[str, Key] = {
    key.name: key
    for key in (
        Key("python", Argument.NONE, Spec.VERSION, None, "", "interpreter version"),
        Key("implementation", Argument.REQUIRED, Spec.NONE, _WORD, "a name like cpython or pypy",
            "interpreter implementation"),
        Key("abi", Argument.REQUIRED, Spec.NONE, _WORD,
            "gil, free-threaded, or an ABI tag like cp313t", "interpreter ABI"),
        Key("platform", Argument.REQUIRED, Spec.NONE, _WORD, "a name like linux or darwin",
            "sys.platform"),
        Key("machine", Argument.REQUIRED, Spec.NONE, _WORD, "a name like x86_64 or aarch64",
            "platform.machine()"),
        Key("glibc", Argument.NONE, Spec.VERSION, None, "", "glibc version"),
        Key("musl", Argument.NONE, Spec.VERSION, None, "", "musl version"),
        Key("cpu", Argument.REQUIRED, Spec.NONE, r"[A-Za-z0-9_.]+", "a CPU flag like avx2",
            "CPU feature flag"),
        Key("cpus", Argument.NONE, Spec.COUNT, None, "", "usable CPU count"),
        Key("memory", Argument.NONE, Spec.SIZE, None, "", "total RAM"),
        Key("memory-available", Argument.NONE, Spec.SIZE, None, "", "available RAM"),
        Key("cuda", Argument.NONE, Spec.VERSION, None, "", "highest CUDA version the driver supports"),
        Key("driver", Argument.NONE, Spec.VERSION, None, "", "NVIDIA driver version"),
        Key("gpus", Argument.NONE, Spec.COUNT, None, "", "visible GPU count"),
        Key("gpu-memory", Argument.NONE, Spec.SIZE, None, "", "total memory of each counted GPU"),
        Key("compute-capability", Argument.NONE, Spec.VERSION, None, "",
            "SM version of each counted GPU"),
        Key("gpu", Argument.REQUIRED, Spec.NONE, r"[^\x00-\x1f]+", 'a name glob like "*H100*"',
            "GPU name"),
        Key("cuda-runtime", Argument.NONE, Spec.VERSION, None, "", "CUDA runtime version"),
        Key("library", Argument.REQUIRED, Spec.VERSION, _WORD,
            "a soname or short name like libssl.so.3 or ssl", "shared library"),
        Key("package", Argument.REQUIRED, Spec.NONE, None,
            "a PEP 508 requirement like numpy>=1.26", "installed distribution"),
        Key("command", Argument.REQUIRED, Spec.NONE, r"[A-Za-z0-9_.+-]+",
            "an executable name like nvcc", "executable on PATH"),
        Key("import", Argument.REQUIRED, Spec.NONE, rf"{_IDENT}(?:\.{_IDENT})*",
            "a module name like numpy.linalg", "module imports cleanly"),
        Key("env", Argument.REQUIRED, Spec.NONE, rf"{_IDENT}(?:=.*)?", "NAME or NAME=value",
            "environment variable"),
        Key("wheels", Argument.NONE, Spec.NONE, None, "", "installed wheels fit this interpreter"),
        Key("extensions", Argument.OPTIONAL, Spec.NONE, r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?",
            "a distribution name", "extension modules' native needs are met"),
        Key("consistent", Argument.NONE, Spec.NONE, None, "", "installed requirements are met"),
        Key("lock", Argument.REQUIRED, Spec.NONE, r"[^\x00-\x1f]+",
            "a path like requirements.txt or uv.lock", "installed versions equal a lock file"),
        Key("isolated", Argument.NONE, Spec.NONE, None, "", "venv or conda env with no leaks"),
    )
}

#: Keys whose requirements combine: "at least N visible GPUs each meeting the others".
GPU_KEYS = frozenset({"gpus", "gpu-memory", "compute-capability", "gpu"})

_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_OPERATOR_RE = re.compile(r"(===|==|!=|>=|<=|~=|>|<)")
_OPERATOR_START = "<>=!~"


class RequirementError(ValueError):
    """A requirement line that does not parse.

    ``str()`` gives the whole message: where the line came from, the line,
    a caret under the bad part, and the suggestion if there is one.
    """

    def __init__(
        self,
        message: str,
        line: str,
        *,
        source: str = "",
        start: int = 0,
        end: int | None = None,
        suggestion: str | None = None,
    ) -> None:
        self.message = message
        self.line = line
        self.source = source
        self.start = max(0, min(start, len(line)))
        self.end = max(self.start + 1, end if end is not None else len(line))
        self.suggestion = suggestion
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.source}: " if self.source else ""
        hint = f" — did you mean {self.suggestion!r}?" if self.suggestion else ""
        caret = " " * self.start + "^" * (self.end - self.start)
        return f"{where}{self.message}{hint}\n    {self.line}\n    {caret}"

    def with_source(self, source: str) -> RequirementError:
        return RequirementError(
            self.message,
            self.line,
            source=source,
            start=self.start,
            end=self.end,
            suggestion=self.suggestion,
        )


@dataclass(frozen=True)
class Requirement:
    """One parsed requirement line.

    Two requirements are equal when they ask the same thing: the original
    text and the source do not take part in comparisons.
    """

    key: str
    argument: str | None = None
    specifier: str = ""
    marker: str | None = None
    text: str = field(default="", compare=False)
    source: str = field(default="", compare=False)

    def __str__(self) -> str:
        parts = [self.key]
        if self.argument is not None:
            parts.append(_quote(self.argument) if self._needs_quotes() else self.argument)
        if self.specifier:
            parts.append(self.specifier)
        line = " ".join(parts)
        if self.marker is not None:
            line += f"; {self.marker}"
        return line

    def _needs_quotes(self) -> bool:
        """Whether the argument must be quoted to parse back as itself."""
        assert self.argument is not None
        if self.key == "package":  # a PEP 508 string, printed by packaging
            return False
        if self.key == "env":  # the rest of the line: only a ';' or a leading quote ends it
            return not _reads_bare(self.argument, r"[^;]+") or self.argument != self.argument.strip()
        return not _reads_bare(self.argument, r"[^\s<>=!~;]+")

    @property
    def constraints(self) -> tuple[tuple[str, str], ...]:
        """The specifier as ``(operator, value)`` pairs."""
        if not self.specifier:
            return ()
        return tuple(_split_clause(clause) for clause in self.specifier.split(","))

    def to_dict(self) -> dict[str, object]:
        return {
            "line": str(self),
            "key": self.key,
            "argument": self.argument,
            "specifier": self.specifier or None,
            "marker": self.marker,
            "source": self.source,
        }


def _quote(text: str) -> str:
    # A parsed argument never holds the quote that delimited it, so one of the two is free.
    return f"'{text}'" if "'" not in text else f'"{text}"'


def _reads_bare(text: str, pattern: str) -> bool:
    """Whether ``text``, unquoted, reads back as itself: it matches ``pattern``, does not
    start with a quote, and its quotes pair up (the marker split skips quoted parts)."""
    if not re.fullmatch(pattern, text) or text[0] in "\"'":
        return False
    return _unquoted(text)[1] is None


def _unquoted(text: str) -> tuple[list[tuple[int, str]], str | None]:
    """The characters of ``text`` outside quotes (``'`` or ``"``, the quote characters
    left out), with their indexes, and the quote still open at the end (None when every
    quote closes)."""
    outside: list[tuple[int, str]] = []
    quote = None
    for index, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        else:
            outside.append((index, char))
    return outside, quote


def _split_clause(clause: str) -> tuple[str, str]:
    match = _OPERATOR_RE.match(clause)
    assert match, clause
    return match.group(1), clause[match.end() :].strip()


def parse_line(text: str, source: str = "") -> Requirement:
    """Parse one requirement line; raise :class:`RequirementError` if it is malformed."""
    if not isinstance(text, str):
        raise RequirementError(
            f"a requirement must be a string, not {type(text).__name__}", repr(text), source=source
        )
    try:
        parsed = _parse_cached(text)
    except RequirementError as error:
        raise error.with_source(source) from None
    return dataclasses.replace(parsed, text=text, source=source)


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Requirement:
    # Memoised on the text alone: thousands of tests marked with the same
    # line are parsed once.
    return _Parser(text).parse()


def parse_lines(lines: Iterable[str], source: str = "") -> list[Requirement]:
    """Parse several lines (a config's line list), skipping blank ones and ``#`` comments,
    whole-line or inline (``python >=3.10  # the oldest we test``)."""
    requirements = []
    for line in lines:
        if not isinstance(line, str):  # a TOML list of numbers, say
            parse_line(line, source)  # raises: "a requirement must be a string, not int"
        stripped = without_comment(line).strip()
        if stripped:
            requirements.append(parse_line(stripped, source))
    return requirements


def without_comment(line: str) -> str:
    """``line`` up to its comment: a ``#`` at the start or after whitespace, outside quotes,
    starts one (as in pip's requirements files), so ``env X=a#b`` keeps its ``#`` and
    ``env 'X=a #b'`` its quoted one."""
    for index, char in _unquoted(line)[0]:
        if char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def from_keywords(keywords: Mapping[str, object], source: str = "") -> list[Requirement]:
    """The marker's keyword form: ``requires(gpus=">=2", gpu_memory=">=16GiB")``.

    Underscores stand for hyphens; ``True`` means the bare key (``isolated=True``).
    """
    requirements = []
    for name, value in keywords.items():
        key = name.replace("_", "-")
        if value is True:
            line = key
        elif isinstance(value, str):
            line = f"{key} {value}" if value.strip() else key
        else:
            raise RequirementError(
                f"the value of {name}= must be a string or True, not {type(value).__name__}",
                f"{name}={value!r}",
                source=source,
            )
        requirements.append(parse_line(line, source))
    return requirements


MAX_MARKER_NESTING = 16


def _nesting(text: str) -> int:
    """The deepest parenthesis nesting of ``text`` outside quotes."""
    depth = deepest = 0
    for _, char in _unquoted(text)[0]:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    return deepest


def closest_key(word: str) -> str | None:
    import difflib

    matches = difflib.get_close_matches(word.lower(), KEYS, n=1, cutoff=0.6)
    return matches[0] if matches else None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text

    def error(
        self, message: str, start: int, end: int | None = None, suggestion: str | None = None
    ) -> RequirementError:
        return RequirementError(message, self.text, start=start, end=end, suggestion=suggestion)

    def parse(self) -> Requirement:
        text = self.text
        if "\x00" in text or "\n" in text or "\r" in text:
            bad = min(i for i in (text.find("\x00"), text.find("\n"), text.find("\r")) if i >= 0)
            raise self.error("a requirement line cannot contain NUL or line breaks", bad, bad + 1)
        body, marker = self._split_marker()
        start = len(body) - len(body.lstrip())
        if start == len(body):
            raise self.error("empty requirement", 0, len(text))
        match = _KEY_RE.match(body, start)
        if not match:
            raise self.error("a requirement starts with a key, like python or cuda", start, start + 1)
        word = match.group(0)
        name = word.lower().replace("_", "-")
        key = KEYS.get(name)
        if key is None:
            raise self.error(
                f"unknown key {word!r}", match.start(), match.end(), suggestion=closest_key(name)
            )
        position = match.end()
        rest = body[position:]
        if rest and not (rest[0].isspace() or rest[0] in _OPERATOR_START):
            raise self.error(f"unknown key {word + rest.split()[0]!r}", match.start(),
                             position + len(rest.split()[0]),
                             suggestion=closest_key(word + rest.split()[0]))
        argument, position = self._argument(key, body, position)
        specifier = self._specifier(key, body, position)
        return Requirement(key=key.name, argument=argument, specifier=specifier, marker=marker)

    def _split_marker(self) -> tuple[str, str | None]:
        text = self.text
        outside, quote = _unquoted(text)
        for index, char in outside:
            if char == ";":
                return text[:index], self._marker(index + 1)
        if quote:
            raise self.error("unterminated quote", text.index(quote), len(text))
        return text, None

    def _marker(self, start: int) -> str:
        from packaging.markers import InvalidMarker, Marker

        source = self.text[start:]
        offset = start + len(source) - len(source.lstrip())
        if not source.strip():
            raise self.error("empty condition after ';'", start - 1, len(self.text))
        # packaging parses (and evaluates) markers recursively: deep nesting would
        # raise RecursionError, here or later inside a pytest hook.
        if _nesting(source) > MAX_MARKER_NESTING:
            raise self.error(f"environment marker nested more than {MAX_MARKER_NESTING} "
                             "parentheses deep", offset, len(self.text.rstrip()))
        try:
            return str(Marker(source.strip()))
        except InvalidMarker as error:
            first = str(error).splitlines()[0]
            raise self.error(
                f"invalid environment marker: {first}", offset, len(self.text.rstrip())
            ) from None

    def _argument(self, key: Key, body: str, position: int) -> tuple[str | None, int]:
        stripped_start = position + len(body[position:]) - len(body[position:].lstrip())
        rest = body[stripped_start:].rstrip()
        if key.argument is Argument.NONE:
            if rest and rest[0] not in _OPERATOR_START:
                what = "a version specifier like >=3.10" if key.spec is Spec.VERSION else (
                    "a specifier like >=2" if key.spec is Spec.COUNT else
                    "a size specifier like >=16GiB" if key.spec is Spec.SIZE else "nothing"
                )
                raise self.error(f"{key.name!r} takes no argument; expected {what} after it",
                                 stripped_start, stripped_start + len(rest))
            return None, stripped_start
        if not rest or rest[0] in _OPERATOR_START:
            if key.argument is Argument.OPTIONAL:
                return None, stripped_start
            raise self.error(f"{key.name!r} needs an argument: {key.shape}", stripped_start,
                             stripped_start + max(1, len(rest)))
        if key.name == "package":
            return self._package(rest, stripped_start), len(body)
        if rest[0] in "\"'":
            close = rest.find(rest[0], 1)
            argument, end = rest[1:close], stripped_start + close + 1
        elif key.name == "env":
            argument, end = rest, stripped_start + len(rest)
        else:
            token = re.match(r"[^\s<>=!~]+", rest)
            assert token  # rest is non-empty and does not start with an operator
            argument, end = token.group(0), stripped_start + token.end()
        assert key.pattern is not None
        if not re.fullmatch(key.pattern, argument):
            raise self.error(f"invalid argument for {key.name!r}: expected {key.shape}",
                             stripped_start, end)
        return argument, end

    def _package(self, rest: str, start: int) -> str:
        from packaging.requirements import InvalidRequirement
        from packaging.requirements import Requirement as Pep508

        try:
            requirement = Pep508(rest)
        except InvalidRequirement as error:
            first = str(error).splitlines()[0]
            raise self.error(f"invalid package requirement: {first}", start,
                             start + len(rest)) from None
        if requirement.url:
            raise self.error("a package requirement cannot be a URL", start, start + len(rest))
        return str(requirement)

    def _specifier(self, key: Key, body: str, position: int) -> str:
        rest = body[position:]
        offset = position + len(rest) - len(rest.lstrip())
        rest = rest.strip()
        if not rest:
            return ""
        if key.spec is Spec.NONE:
            raise self.error(f"{key.name!r} takes no specifier", offset, offset + len(rest))
        if rest[0] not in _OPERATOR_START:
            raise self.error("expected an operator (==, !=, >=, <=, >, <, ~=)", offset,
                             offset + len(rest))
        if key.spec is Spec.VERSION:
            return self._version(rest, offset)
        clauses = []
        cursor = offset
        for clause in rest.split(","):
            clause_start = cursor + len(clause) - len(clause.lstrip())
            cursor += len(clause) + 1
            clauses.append(self._quantity(key, clause.strip(), clause_start))
        return ",".join(clauses)

    def _version(self, rest: str, offset: int) -> str:
        from pytest_envguard import versions

        simple = versions.normalize(rest)
        if simple is not None:  # plain release numbers: no need to import packaging
            return simple
        from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet

        cursor = offset
        for clause in rest.split(","):
            clause_start = cursor + len(clause) - len(clause.lstrip())
            cursor += len(clause) + 1
            try:
                Specifier(clause.strip())
            except InvalidSpecifier:
                raise self.error(f"invalid version specifier {clause.strip()!r}", clause_start,
                                 clause_start + len(clause.strip())) from None
        return str(SpecifierSet(rest))

    def _quantity(self, key: Key, clause: str, start: int) -> str:
        match = _OPERATOR_RE.match(clause)
        if not match or match.group(1) not in units.OPERATORS:
            raise self.error(
                f"expected one of {', '.join(units.OPERATORS)} before a "
                f"{'size' if key.spec is Spec.SIZE else 'number'}",
                start, start + max(1, len(clause)),
            )
        value = clause[match.end() :].strip()
        value_start = start + clause.index(value, match.end()) if value else start + len(clause)
        try:
            if key.spec is Spec.SIZE:
                units.parse_size(value)
            else:
                units.parse_count(value)
        except units.UnitError as error:
            raise self.error(str(error), value_start, value_start + max(1, len(value))) from None
        return f"{match.group(1)}{value.replace(' ', '')}"
