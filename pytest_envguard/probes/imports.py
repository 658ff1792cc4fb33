"""``import MODULE`` in a child interpreter (the ``import`` key).

The child runs through :mod:`~pytest_envguard.probes._child`: isolated, with
the test process's ``sys.path`` and environment, under a time limit, killed
with its whole process group when it overruns — so a crash, an ``undefined
symbol``, a NumPy ABI error or a CUDA initialisation never touches the test
process, and a module that hangs or leaves a helper process running cannot
hold the run. "Not installed" and "installed but broken" are told apart.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from pytest_envguard.probes import Facts, Failure
from pytest_envguard.probes._child import run_python

# The child's program (after the runner's prologue, which defines ARGS and answer()).
# The module name arrives as ARGS[0]; nothing is ever interpolated into this code.
_CHILD = r"""
import faulthandler, traceback
faulthandler.enable()
name = ARGS[0]
def describe(error):
    return {"type": type(error).__name__,
            "lines": traceback.format_exception_only(type(error), error),
            "not_found": getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None,
            "path": getattr(error, "path", None) if isinstance(error, ImportError) else None}
try:
    import importlib
    module = importlib.import_module(name)
except BaseException as error:
    # The errors it was raised from (numpy wraps the loader's in advice of its own).
    chain, seen, inner = [], {id(error)}, error.__cause__ or error.__context__
    while inner is not None and id(inner) not in seen and len(chain) < 8:
        seen.add(id(inner))
        chain.append(describe(inner))
        inner = inner.__cause__ or inner.__context__
    answer(dict(describe(error), ok=False, chain=chain))
version = getattr(module, "__version__", None)
answer({"ok": True, "file": getattr(module, "__file__", None),
        "version": version if isinstance(version, str) else None})
"""


@dataclass(frozen=True)
class ImportFacts(Facts):
    """How ``import MODULE`` went in a child interpreter.

    ``failure`` is None when it imported; else ``MISSING`` (no such module),
    ``BROKEN`` (it raised, or the interpreter exited), ``CRASHED`` (killed by a
    signal), ``TIMEOUT``, or ``ERROR`` (the child could not be run).
    """

    module: str
    failure: Failure | None
    file: str | None = None  # the module's __file__ (ok)
    version: str | None = None  # the module's __version__ (ok)
    error: str | None = None  # the exception's last line: "ImportError: …"
    native_file: str | None = None  # the shared object that failed to load
    missing: str | None = None  # the missing library, symbol or version
    missing_kind: str | None = None  # "library", "symbol", "version", "module"
    signal: str | None = None  # "SIGSEGV"
    elapsed: float = 0.0
    detail: str | None = None  # stderr's last line, or where a crash happened
    cause: str | None = None  # the error it was raised from, when wrapped (numpy's advice)
    leak: str | None = None  # the LD_LIBRARY_PATH file without which the import works

    @property
    def ok(self) -> bool:
        return self.failure is None


_NATIVE_PATTERNS = (
    ("library", re.compile(r"(?P<what>[^\s:]+): cannot open shared object file")),
    ("version", re.compile(r"version [`'](?P<what>[^']+)' not found \(required by (?P<file>[^)]+)\)")),
    ("symbol", re.compile(r"(?:(?P<file>/\S+): )?undefined symbol: (?P<what>\S+)")),
)


def explain_native_error(message: str) -> tuple[str | None, str | None, str | None]:
    """(kind, what is missing, the file that needs it) from a loader error message.

    ``libcudnn.so.9: cannot open shared object file: No such file or directory``
    → (``library``, ``libcudnn.so.9``, None).
    """
    for kind, pattern in _NATIVE_PATTERNS:
        match = pattern.search(message)
        if match:
            groups = match.groupdict()
            return kind, groups["what"], groups.get("file")
    return None, None, None


def probe_import(
    module: str,
    environ: Mapping[str, str],
    *,
    timeout: float = 60.0,
    executable: str | None = None,
    sys_path: Sequence[str] | None = None,
) -> ImportFacts:
    """Import ``module`` in a child of ``executable`` with the environment ``environ``
    and ``sys_path`` as its ``sys.path`` (by default this interpreter's)."""
    inherited = list(sys.path if sys_path is None else sys_path)
    # PYTHONPATH of the given environment first (as the interpreter would put it), then
    # the test process's own path.
    extra = [entry for entry in (environ.get("PYTHONPATH") or "").split(os.pathsep)
             if entry and entry not in inherited]
    result = run_python(_CHILD, [module], environ=environ, timeout=timeout,
                        path=extra + inherited, replace_path=True, executable=executable)
    if result.failure is Failure.TIMEOUT:
        return ImportFacts(module, Failure.TIMEOUT, elapsed=result.elapsed,
                           error=f"import {module} did not finish within {timeout:g} s")
    if result.failure is Failure.CRASHED:
        frame = _crash_frame(result.stderr)
        where = f" in {frame}" if frame else ""
        return ImportFacts(module, Failure.CRASHED, signal=result.signal, elapsed=result.elapsed,
                           error=f"the interpreter was killed by {result.signal}{where}",
                           detail=frame or result.stderr_tail)
    if result.failure is not None:
        return ImportFacts(module, Failure.ERROR, error=result.reason, elapsed=result.elapsed)
    report = result.answer
    if not isinstance(report, dict):  # it exited (os._exit, a fatal error) before answering
        tail = result.stderr_tail
        return ImportFacts(module, Failure.BROKEN, elapsed=result.elapsed, detail=tail,
                           error=f"the interpreter exited with status {result.returncode}"
                                 + (f": {tail}" if tail else ""))
    elapsed = result.elapsed
    if report.get("ok"):
        return ImportFacts(module, None, file=_str(report.get("file")),
                           version=_str(report.get("version")), elapsed=elapsed)
    error, lines = _last_line(report)
    missing_module = report.get("not_found")
    if isinstance(missing_module, str) and (
            missing_module == module or module.startswith(missing_module + ".")):
        return ImportFacts(module, Failure.MISSING, error=error, missing=missing_module,
                           missing_kind="module", elapsed=elapsed)
    chain = [item for item in report.get("chain") or () if isinstance(item, dict)]
    kind, what, needer, cause = None, None, None, None
    for item in (report, *chain):
        item_error, item_lines = _last_line(item)
        kind, what, needer = explain_native_error("\n".join(item_lines))
        if kind is not None:
            cause = item_error if item is not report else None
            break
    # The module the loader failed on: named in a version error, else the ImportError
    # that Python raised for it (its `path`), however deep numpy wrapped it.
    native_file = needer or next((_str(item.get("path")) for item in (report, *chain)
                                  if _str(item.get("path"))), None)
    if isinstance(missing_module, str) and kind is None:
        kind, what = "module", missing_module
    leak = None
    if kind in ("library", "version", "symbol") and environ.get("LD_LIBRARY_PATH"):
        leak = _blame_ld_library_path(module, environ, timeout, executable, extra + inherited,
                                      native_file, lines + [line for item in chain
                                                            for line in _last_line(item)[1]])
    return ImportFacts(module, Failure.BROKEN, error=error, native_file=native_file,
                       missing=what, missing_kind=kind, elapsed=elapsed, cause=cause, leak=leak)


def _last_line(report: Mapping[str, object]) -> tuple[str, list[str]]:
    """An exception's last line (``ImportError: …``) and all its lines."""
    kind_name = str(report.get("type") or "Exception")
    raw_lines = report.get("lines")
    text = "".join(str(line) for line in raw_lines) if isinstance(raw_lines, list) else ""
    lines = text.strip().splitlines() or [kind_name]
    error = lines[-1].strip()
    if not error.startswith(kind_name):
        error = f"{kind_name}: {error}"
    return error, lines


def _blame_ld_library_path(module: str, environ: Mapping[str, str], timeout: float,
                           executable: str | None, path: Sequence[str], native_file: str | None,
                           lines: Sequence[str]) -> str | None:
    """When the import works with ``LD_LIBRARY_PATH`` unset (asked of a second child),
    the file from it that the loader picks (or the variable itself): the leak."""
    without = {key: value for key, value in environ.items() if key != "LD_LIBRARY_PATH"}
    again = run_python(_CHILD, [module], environ=without, timeout=timeout, path=path,
                       replace_path=True, executable=executable)
    if again.failure is not None or not isinstance(again.answer, dict) or not again.answer.get("ok"):
        return None
    from pytest_envguard.probes.loader import split_library_path

    dirs = [os.path.abspath(entry) + os.sep for entry in
            split_library_path(environ.get("LD_LIBRARY_PATH", ""))]
    # A path in the loader's own message that lies in LD_LIBRARY_PATH.
    for line in lines:
        for word in re.findall(r"(/[^\s:()'`]+)", line):
            if any(str(word).startswith(directory) for directory in dirs):
                return str(word)
    if native_file:
        from pytest_envguard.probes.elf import ElfCache
        from pytest_envguard.probes.extensions import ExtensionChecker

        checker = ExtensionChecker(environ, ElfCache(None), executable=executable)
        for source_path, source in checker.loaded_from(native_file).items():
            if source == "LD_LIBRARY_PATH":
                return source_path
    return f"LD_LIBRARY_PATH={environ.get('LD_LIBRARY_PATH', '')}"


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _crash_frame(stderr: str) -> str | None:
    """Where faulthandler says the child crashed: the innermost frame outside the
    standard library (``File "pkg/x.py", line 3`` → ``pkg/x.py:3``), else the innermost."""
    import sysconfig

    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"]) + os.sep
    frames: list[tuple[str, str]] = []
    lines: Iterator[str] = iter(stderr.splitlines())
    for line in lines:
        if "most recent call first" in line:
            for frame in lines:
                match = re.search(r'File "([^"]+)", line (\d+)', frame)
                if not match:
                    break
                frames.append((match.group(1), match.group(2)))
            break
    if not frames:
        return None
    ours = [(path, line) for path, line in frames
            if not path.startswith("<") and not os.path.realpath(path).startswith(stdlib)]
    path, line = (ours or frames)[0]
    return f"{path}:{line}"
