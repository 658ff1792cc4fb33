"""Extension modules as the loader sees them, and imports in a subprocess.

* :func:`probe_extensions` (the ``extensions`` key) lists the extension
  modules of installed distributions from their ``RECORD`` files and, for
  each one, walks what the loader would load — every ``DT_NEEDED`` resolved
  by :class:`~pytest_envguard.probes.loader.Resolver`, transitively — and
  checks that each version need (``GLIBC_2.34``, ``GLIBCXX_3.4.30``,
  ``CXXABI_1.3.13``, any other) is defined by the library that would be
  picked. Nothing is imported; ELF facts come from :class:`ElfCache`.
* :func:`probe_import` (the ``import`` key) imports a module in a child
  interpreter with a time limit, so a crash, an ``undefined symbol`` or a
  CUDA initialisation never touches the test process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_envguard.probes import Facts, describe_error
from pytest_envguard.probes.elf import ElfCache, ElfFacts
from pytest_envguard.probes.loader import LdCacheFacts, Resolver

if TYPE_CHECKING:
    from pytest_envguard.probes.packages import InstalledDistribution, InstalledFacts


# -- extensions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NativeProblem(Facts):
    """One reason an extension module would fail to load."""

    file: str  # the extension module
    display: str  # the same, relative to its site-packages directory
    kind: str  # "missing-library", "missing-version", "loader-error", "wrong-architecture", "unreadable"
    distribution: str | None = None
    library: str | None = None  # the needed name, or the library that lacks the version
    version: str | None = None  # the needed version: "GLIBC_2.34"
    available: str | None = None  # the highest of that family the library defines
    library_path: str | None = None  # the file the loader would pick
    via: str | None = None  # the dependency that needs it, when not the module itself
    detail: str | None = None

    def describe(self) -> str:
        via = f" (via {os.path.basename(self.via)})" if self.via else ""
        if self.kind == "missing-library":
            return f"{self.display}: {self.library} not found{via}"
        if self.kind == "missing-version":
            has = (f"has up to {self.available}" if self.available
                   else "defines no version of that family")
            return (f"{self.display}: needs {self.version} from {self.library}{via}; "
                    f"{self.library_path} {has}")
        return f"{self.display}: {self.detail}{via}"


@dataclass(frozen=True)
class ExtensionsFacts(Facts):
    """The extension modules of one distribution (or all) and what stops them loading."""

    distribution: str | None  # None: every installed distribution
    modules: int  # extension modules checked
    files: int  # ELF files looked at, the modules' dependencies included
    problems: tuple[NativeProblem, ...] = ()
    unscanned: tuple[str, ...] = ()  # distributions with no file list (RECORD)
    parsed: int = 0  # ELF files parsed this time (the rest came from the cache)
    reason: str | None = None  # why nothing could be checked ("not installed")


def _listed_files(dist: InstalledDistribution) -> list[str] | None:
    """Every file a distribution installed below its location (from ``RECORD``
    or ``installed-files.txt``); None when it has no file list."""
    meta = dist.path
    listing = os.path.join(meta, "RECORD")
    base = dist.location
    if not os.path.isfile(listing):
        listing = os.path.join(meta, "installed-files.txt")
        base = meta
        if not os.path.isfile(listing):
            return None
    try:
        with open(listing, encoding="utf-8", errors="surrogateescape") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return None
    location = os.path.abspath(dist.location) + os.sep
    record = listing.endswith("RECORD")
    found = []
    for line in lines:
        name = line.split(",", 1)[0] if record else line.strip()
        if ".so" not in name:
            continue  # only shared objects matter here; skip the cost of the rest
        path = os.path.normpath(os.path.join(base, name))
        if path.startswith(location):
            found.append(path)
    return found


def extension_files(dist: InstalledDistribution) -> list[str] | None:
    """The extension modules a distribution installed; None when it has no file list."""
    files = _listed_files(dist)
    if files is None:
        return None
    return [path for path in files
            if path.endswith(".so") and _is_module_name(os.path.basename(path))]


def shipped_libraries(distributions: Iterable[InstalledDistribution]) -> dict[str, str]:
    """File name → path of every shared object the distributions installed:
    ``libtorch.so`` → ``.../torch/lib/libtorch.so``.

    An extension module may need a library another package's import loads
    first; the loader then finds it by soname, not by searching.
    """
    shipped: dict[str, str] = {}
    for dist in distributions:
        for path in _listed_files(dist) or []:
            base = os.path.basename(path)
            if base.endswith(".so") or ".so." in base:
                shipped.setdefault(base, path)
    return shipped


def _is_module_name(base: str) -> bool:
    # `_umath.cpython-312-x86_64-linux-gnu.so`, `_cffi.abi3.so`, `mod.so`; a vendored
    # `libopenblas-ab12.so` is not a module (it is checked as a dependency).
    return base.split(".", 1)[0].isidentifier()


def probe_extensions(
    distribution: str | None,
    environ: Mapping[str, str],
    installed: InstalledFacts,
    *,
    cache_dir: Path | None = None,
    executable: str | None = None,
    ld_cache: LdCacheFacts | None = None,
) -> ExtensionsFacts:
    """Check the extension modules of ``distribution`` (all when None)."""
    from pytest_envguard.probes.packages import canonical_name

    active = installed.active()
    if distribution is not None:
        name = canonical_name(distribution)
        if name not in active:
            return ExtensionsFacts(distribution, 0, 0, reason=f"{distribution} is not installed")
        chosen = [active[name]]
    else:
        chosen = list(active.values())
    modules: list[tuple[str, InstalledDistribution]] = []
    unscanned: list[str] = []
    for dist in chosen:
        files = extension_files(dist)
        if files is None:
            unscanned.append(dist.name)
        else:
            modules += [(path, dist) for path in files]
    cache = ElfCache(cache_dir)
    checker = ExtensionChecker(environ, cache, executable=executable, ld_cache=ld_cache,
                               shipped=lambda: shipped_libraries(active.values()))
    if checker.reason:
        return ExtensionsFacts(distribution, 0, 0, reason=checker.reason)
    problems: list[NativeProblem] = []
    for path, dist in modules:
        problems += checker.check(path, dist.location, dist.name)
    cache.save()
    return ExtensionsFacts(distribution, len(modules), len(checker.seen), tuple(problems),
                           tuple(unscanned), parsed=cache.misses)


_FAMILY = re.compile(r"^(.*?)_?(\d+(?:\.\d+)*)$")


def version_family(version: str) -> tuple[str, tuple[int, ...]] | None:
    """``GLIBCXX_3.4.30`` → (``GLIBCXX``, (3, 4, 30)); None for ``GLIBC_PRIVATE``."""
    match = _FAMILY.match(version)
    if not match:
        return None
    return match.group(1), tuple(int(part) for part in match.group(2).split("."))


def highest_version(defined: Sequence[str], like: str) -> str | None:
    """The highest version in ``defined`` of the same family as ``like``."""
    family = version_family(like)
    if family is None:
        return None
    best: tuple[tuple[int, ...], str] | None = None
    for version in defined:
        parsed = version_family(version)
        if parsed and parsed[0] == family[0] and (best is None or parsed[1] > best[0]):
            best = (parsed[1], version)
    return best[1] if best else None


@dataclass
class _Closure:
    loaded: dict[str, str | None]  # needed name or soname → the file (None: not found)
    objects: dict[str, ElfFacts]  # every object loaded, by path
    failures: list[tuple[ElfFacts, str, str | None]]  # (who needs it, name, loader's reason)


class ExtensionChecker:
    """What the loader would do with each extension module ``dlopen``ed by this
    interpreter, with the interpreter's own libraries already loaded."""

    def __init__(self, environ: Mapping[str, str], cache: ElfCache, *,
                 executable: str | None = None, ld_cache: LdCacheFacts | None = None,
                 shipped: Callable[[], Mapping[str, str]] | None = None) -> None:
        self.cache = cache
        self._shipped_source = shipped
        self._shipped: Mapping[str, str] | None = None
        self.resolver = Resolver(environ, reader=cache.read, ld_cache=ld_cache)
        self.seen: set[str] = set()
        self._resolved: dict[tuple[str, str, tuple[str, ...]], tuple[str | None, str | None]] = {}
        self.reason: str | None = None
        self.executable = cache.read(os.path.realpath(executable or sys.executable))
        self.preloaded: dict[str, str] = {}
        self.base: set[str] = set()
        if not self.executable.ok:
            self.reason = f"cannot read the interpreter: {self.executable.reason}"
            return
        # The interpreter's own dependencies are loaded before any extension; the
        # loader matches later needs against their sonames instead of searching.
        loaded = self._closure(self.executable, ()).loaded
        self.preloaded = {name: path for name, path in loaded.items() if path}
        self.base = set(self.preloaded.values()) | {self.executable.path}

    def _resolve(self, name: str, obj: ElfFacts,
                 chain: tuple[ElfFacts, ...]) -> tuple[str | None, str | None]:
        rpaths = tuple(holder.path for holder in chain if holder.rpath and not holder.runpath)
        key = (name, obj.path, rpaths if not obj.runpath else ())
        if key not in self._resolved:
            result = self.resolver.resolve(name, obj, chain)
            path, reason = result.path, result.reason
            if path is None and reason and "cannot open shared object file" in reason:
                # torchaudio's modules need libtorch.so, which `import torchaudio` has
                # loaded (by importing torch) before: the loader matches it by soname.
                path = self.shipped().get(name)
                reason = None if path else reason
            self._resolved[key] = (path, reason)
        return self._resolved[key]

    def shipped(self) -> Mapping[str, str]:
        if self._shipped is None:
            self._shipped = self._shipped_source() if self._shipped_source else {}
        return self._shipped

    def _closure(self, root: ElfFacts, chain: tuple[ElfFacts, ...]) -> _Closure:
        """Breadth-first, as the loader loads: every object and every name's file."""
        closure = _Closure(dict(self.preloaded), {root.path: root}, [])
        queue: deque[tuple[ElfFacts, tuple[ElfFacts, ...]]] = deque([(root, chain)])
        while queue:
            obj, above = queue.popleft()
            for name in obj.needed:
                if name in closure.loaded:
                    continue
                path, reason = self._resolve(name, obj, above)
                closure.loaded[name] = path
                if path is None:
                    closure.failures.append((obj, name, reason))
                    continue
                self.seen.add(path)
                dependency = self.cache.read(path)
                if dependency.soname:
                    closure.loaded.setdefault(dependency.soname, path)
                if path not in closure.objects:
                    closure.objects[path] = dependency
                    queue.append((dependency, (obj, *above)))
        return closure

    def check(self, path: str, location: str, distribution: str | None = None) -> list[NativeProblem]:
        display = os.path.relpath(path, location) if location else path

        def problem(kind: str, **fields: str | None) -> NativeProblem:
            return NativeProblem(path, display, kind, distribution, **fields)

        self.seen.add(path)
        module = self.cache.read(path)
        if not module.ok:
            return [problem("unreadable", detail=module.reason)]
        if module.abi != self.executable.abi:
            return [problem("wrong-architecture",
                            detail=f"built for {module.describe_abi()}, the interpreter is "
                                   f"{self.executable.describe_abi()}")]
        closure = self._closure(module, (self.executable,))
        problems = []
        for needer, name, reason in closure.failures:
            via = needer.path if needer.path != path else None
            if reason and "cannot open shared object file" not in reason:
                problems.append(problem("loader-error", library=name, via=via, detail=reason))
            else:
                problems.append(problem("missing-library", library=name, via=via, detail=reason))
        for object_path, needer in closure.objects.items():
            if object_path in self.base:
                continue  # already loaded by the interpreter, so its needs are met
            for need in needer.version_needs:
                target_path = closure.loaded.get(need.file)
                if need.weak or not target_path:
                    continue
                target = self.cache.read(target_path)
                # A library with no version definitions satisfies any need (the
                # loader only warns), as does one that defines the version.
                if not target.version_defs or need.version in target.version_defs:
                    continue
                problems.append(problem(
                    "missing-version", library=need.file, version=need.version,
                    available=highest_version(target.version_defs, need.version),
                    library_path=target_path,
                    via=object_path if object_path != path else None))
        return problems


# -- import MODULE in a subprocess -------------------------------------------------------------

_MARK = "@@envguard-import@@ "

# The child's whole program. The module name arrives as argv[1] and the parent's
# sys.path as argv[2] (JSON); nothing is ever interpolated into this code. The
# report goes to the real stdout after a marker, since modules may print at import.
_CHILD = r"""
import faulthandler, json, os, sys, traceback
faulthandler.enable()
name = sys.argv[1]
if len(sys.argv) > 2:
    inherited = json.loads(sys.argv[2])
    # PYTHONPATH entries of the given environment first, then the parent's path.
    sys.path[:] = [entry for entry in sys.path if entry and entry not in inherited] + inherited
def report(data):
    sys.__stdout__.write("\n" + MARK + json.dumps(data) + "\n")
    sys.__stdout__.flush()
    os._exit(0)
try:
    import importlib
    module = importlib.import_module(name)
except BaseException as error:
    report({"ok": False, "type": type(error).__name__,
            "lines": traceback.format_exception_only(type(error), error),
            "not_found": getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None,
            "path": getattr(error, "path", None) if isinstance(error, ImportError) else None})
version = getattr(module, "__version__", None)
report({"ok": True, "file": getattr(module, "__file__", None),
        "version": version if isinstance(version, str) else None})
""".replace("MARK", repr(_MARK))


@dataclass(frozen=True)
class ImportFacts(Facts):
    """How ``import MODULE`` went in a child interpreter.

    ``status``: ``ok``, ``not-installed`` (no such module), ``broken`` (it
    raised), ``crashed`` (killed by a signal), ``timeout``, or ``error`` (the
    child could not be run).
    """

    module: str
    status: str
    file: str | None = None  # the module's __file__ (ok)
    version: str | None = None  # the module's __version__ (ok)
    error: str | None = None  # the exception's last line: "ImportError: …"
    native_file: str | None = None  # the shared object that failed to load
    missing: str | None = None  # the missing library, symbol or version
    missing_kind: str | None = None  # "library", "symbol", "version"
    signal: str | None = None  # "SIGSEGV"
    elapsed: float = 0.0
    detail: str | None = None  # stderr's last line, or where a crash happened

    @property
    def ok(self) -> bool:
        return self.status == "ok"


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
    inherit_sys_path: bool = True,
    cwd: str | None = None,
) -> ImportFacts:
    """Import ``module`` in ``executable -c <fixed code> module`` with the test
    process's environment ``environ`` and ``sys.path`` (``sys_path``, by default
    this interpreter's; with ``inherit_sys_path=False`` the child's own)."""
    command = [executable or sys.executable, "-c", _CHILD, module]
    if inherit_sys_path:
        command.append(json.dumps(list(sys.path if sys_path is None else sys_path)))
    started = time.perf_counter()
    try:
        result = subprocess.run(command, env=dict(environ), cwd=cwd, capture_output=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return ImportFacts(module, "timeout", elapsed=time.perf_counter() - started,
                           error=f"import {module} did not finish within {timeout:g} s")
    except OSError as failure:
        return ImportFacts(module, "error", error=describe_error(failure))
    elapsed = time.perf_counter() - started
    stdout = result.stdout.decode("utf-8", "replace")
    stderr = result.stderr.decode("utf-8", "replace")
    report = _last_report(stdout)
    if report is None:
        return _without_report(module, result.returncode, stderr, elapsed)
    if report.get("ok"):
        return ImportFacts(module, "ok", file=report.get("file"), version=report.get("version"),
                           elapsed=elapsed)
    kind_name = str(report.get("type") or "Exception")
    lines = "".join(report.get("lines") or []).strip().splitlines() or [kind_name]
    error = lines[-1].strip()
    if not error.startswith(kind_name):
        error = f"{kind_name}: {error}"
    missing_module = report.get("not_found")
    if isinstance(missing_module, str) and (
            missing_module == module or module.startswith(missing_module + ".")):
        return ImportFacts(module, "not-installed", error=error, missing=missing_module,
                           missing_kind="module", elapsed=elapsed)
    kind, what, needer = explain_native_error("\n".join(lines))
    native_file = needer or report.get("path") or (lines[0].split(":", 1)[0].rpartition(" ")[2]
                                                   if kind else None)
    if isinstance(missing_module, str) and kind is None:
        kind, what = "module", missing_module
    return ImportFacts(module, "broken", error=error, native_file=native_file or None,
                       missing=what, missing_kind=kind, elapsed=elapsed)


def _last_report(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.split("\n")):
        if line.startswith(_MARK):
            try:
                data = json.loads(line[len(_MARK):])
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


def _without_report(module: str, returncode: int, stderr: str, elapsed: float) -> ImportFacts:
    """The child died before reporting: a signal, a fatal error, an ``os._exit``."""
    frame = _crash_frame(stderr)
    tail = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), None)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        where = f" in {frame}" if frame else ""
        return ImportFacts(module, "crashed", error=f"the interpreter was killed by {name}{where}",
                           signal=name, elapsed=elapsed, detail=frame or tail)
    return ImportFacts(module, "broken", elapsed=elapsed, detail=tail,
                       error=f"the interpreter exited with status {returncode}"
                             + (f": {tail}" if tail else ""))


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
