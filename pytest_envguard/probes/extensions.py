"""Extension modules as the loader sees them (the ``extensions`` key).

:func:`probe_extensions` lists the extension modules of installed
distributions from their ``RECORD`` files and, for each one, walks what the
loader would load — every ``DT_NEEDED`` resolved by
:class:`~pytest_envguard.probes.loader.Resolver`, transitively — and checks
that each version need (``GLIBC_2.34``, ``GLIBCXX_3.4.30``, ``CXXABI_1.3.13``,
any other) is defined by the library that would be picked. Nothing is
imported; ELF facts come from :class:`~pytest_envguard.probes.elf.ElfCache`.
"""

from __future__ import annotations

import os
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_envguard.probes import Facts, Failure
from pytest_envguard.probes.elf import ElfCache, ElfFacts
from pytest_envguard.probes.loader import LdCacheFacts, Resolver

if TYPE_CHECKING:
    from pytest_envguard.probes.distributions import InstalledDistribution, InstalledFacts


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


@dataclass(frozen=True)
class ExtensionsFacts(Facts):
    """The extension modules of one distribution (or all) and what stops them loading."""

    distribution: str | None  # None: every installed distribution
    modules: int  # extension modules checked
    files: int  # ELF files looked at, the modules' dependencies included
    problems: tuple[NativeProblem, ...] = ()
    unscanned: tuple[str, ...] = ()  # distributions with no file list (RECORD)
    parsed: int = 0  # ELF files parsed this time (the rest came from the cache)
    reason: str | None = None  # why nothing could be checked
    failure: Failure | None = None  # MISSING: the distribution is not installed


#: Bounds on a file list a distribution ships (``RECORD``): torch's is about 2 MB and
#: names some hundred shared objects; past these it is a crafted or corrupt file.
MAX_RECORD_BYTES = 16 << 20
MAX_LISTED_OBJECTS = 100_000


def _listed_files(dist: InstalledDistribution) -> list[str] | None:
    """Every shared object a distribution installed below its location (from
    ``RECORD`` or ``installed-files.txt``); None when it has no file list, or one
    that cannot be read or is over the bounds above (then it is not scanned)."""
    from pytest_envguard.probes._io import TooLarge, lines_containing, read_bytes

    meta = dist.path
    listing = os.path.join(meta, "RECORD")
    base = dist.location
    if not os.path.lexists(listing):
        listing = os.path.join(meta, "installed-files.txt")
        base = meta
    try:
        data = read_bytes(listing, MAX_RECORD_BYTES)  # a regular file only, bounded
    except (OSError, TooLarge):
        return None
    location = os.path.abspath(dist.location) + os.sep
    record = listing.endswith("RECORD")
    found = []
    for raw in lines_containing(data, b".so"):  # most lines of a RECORD cost nothing
        line = raw.decode("utf-8", "surrogateescape")
        name = line.split(",", 1)[0] if record else line.strip()
        if ".so" not in name:
            continue
        path = os.path.normpath(os.path.join(base, name))
        if path.startswith(location):
            found.append(path)
            if len(found) > MAX_LISTED_OBJECTS:
                return None
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
    from pytest_envguard.probes.distributions import canonical_name

    active = installed.active()
    if distribution is not None:
        name = canonical_name(distribution)
        if name not in active:
            return ExtensionsFacts(distribution, 0, 0, reason=f"{distribution} is not installed",
                                   failure=Failure.MISSING)
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
    if checker.failure is not None:
        return ExtensionsFacts(distribution, 0, 0, reason=checker.reason, failure=checker.failure)
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


@dataclass(frozen=True)
class _Found:
    """The loader's answer for one needed name: the file, or why not."""

    path: str | None
    reason: str | None
    failure: Failure | None


@dataclass
class _Closure:
    """What loading one object brings in: every name, object and failure."""

    loaded: dict[str, str | None]  # needed name or soname → the file (None: not found)
    objects: dict[str, ElfFacts]  # every object loaded, by path
    failures: list[tuple[ElfFacts, str, _Found]]  # (who needs it, name, the loader's answer)


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
        self._resolved: dict[tuple[str, str, tuple[str, ...]], _Found] = {}
        self.reason: str | None = None
        self.failure: Failure | None = None
        self.executable = cache.read(os.path.realpath(executable or sys.executable))
        self.preloaded: dict[str, str] = {}
        self.base: set[str] = set()
        if not self.executable.ok:
            self.reason = f"cannot read the interpreter: {self.executable.reason}"
            self.failure = self.executable.failure
            return
        # The interpreter's own dependencies are loaded before any extension; the
        # loader matches later needs against their sonames instead of searching.
        loaded = self._closure(self.executable, ()).loaded
        self.preloaded = {name: path for name, path in loaded.items() if path}
        self.base = set(self.preloaded.values()) | {self.executable.path}

    def _resolve(self, name: str, obj: ElfFacts, chain: tuple[ElfFacts, ...]) -> _Found:
        rpaths = tuple(holder.path for holder in chain if holder.rpath and not holder.runpath)
        key = (name, obj.path, rpaths if not obj.runpath else ())
        if key not in self._resolved:
            result = self.resolver.resolve(name, obj, chain)
            found = _Found(result.path, result.reason, result.failure)
            if result.failure is Failure.MISSING and self.shipped().get(name):
                # torchaudio's modules need libtorch.so, which `import torchaudio` has
                # loaded (by importing torch) before: the loader matches it by soname.
                found = _Found(self.shipped()[name], None, None)
            self._resolved[key] = found
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
                found = self._resolve(name, obj, above)
                path = found.path
                closure.loaded[name] = path
                if path is None:
                    closure.failures.append((obj, name, found))
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
        for needer, name, found in closure.failures:
            via = needer.path if needer.path != path else None
            kind = "missing-library" if found.failure is Failure.MISSING else "loader-error"
            problems.append(problem(kind, library=name, via=via, detail=found.reason))
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
