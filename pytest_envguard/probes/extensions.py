"""Extension modules as the loader sees them (the ``extensions`` key).

:func:`probe_extensions` lists the extension modules of installed
distributions — from their ``RECORD`` files, and for editable installs and
source-tree ``.egg-info`` from the directories they import from — plus, with no
distribution named, the interpreter's own (``lib-dynload``) and the interpreter
itself. For each one it walks what the loader would load: every ``DT_NEEDED``
resolved by :class:`~pytest_envguard.probes.loader.Resolver` (hardware-capability
subdirectories, files the loader skips and files that stop it included),
transitively, and checks that each version need (``GLIBC_2.34``,
``GLIBCXX_3.4.30``, ``CXXABI_1.3.13``, any other) is defined by the library that
would be picked. A module whose file name this interpreter does not import
(a ``cpython-312`` module under Python 3.11) is reported as such. Nothing is
imported; ELF facts come from :class:`~pytest_envguard.probes.elf.ElfCache`, and
every file on a module's closure is looked at again (it exists, this user may read
it, its header is one the loader takes) — a cached entry never hides a file that
vanished or became unreadable.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.machinery
import json
import os
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_envguard.probes import Facts, Failure
from pytest_envguard.probes._io import TooLarge, read_text
from pytest_envguard.probes.elf import (
    ElfCache,
    ElfFacts,
    Scope,
    SymbolTable,
    read_symbols,
    scope_of,
    unbound,
)
from pytest_envguard.probes.ldcache import LdCacheFacts
from pytest_envguard.probes.loader import LoaderConfig, Resolution, Resolver

if TYPE_CHECKING:
    from pytest_envguard.probes.conda import CondaFacts, Owner
    from pytest_envguard.probes.distributions import InstalledDistribution, InstalledFacts


# -- extensions -------------------------------------------------------------------------------

#: What stops a module loading (``NativeProblem.kind``).
MISSING_LIBRARY = "missing-library"  # a DT_NEEDED no search finds
MISSING_VERSION = "missing-version"  # a version need the picked library does not define
LOADER_ERROR = "loader-error"  # the search stops at a file the loader cannot load
WRONG_ARCHITECTURE = "wrong-architecture"  # the module's ELF class or machine
UNREADABLE = "unreadable"  # the module itself: missing, unreadable, not ELF, cut
WRONG_PYTHON = "wrong-python"  # a file name this interpreter never imports (cp312 under 3.11)
UNDEFINED_SYMBOL = "undefined-symbol"  # a reference no object of the lookup scope binds

#: The source of a library a required distribution's import has loaded already.
LOADED_BY = "loaded by soname"


@dataclass(frozen=True)
class NativeProblem(Facts):
    """One reason an extension module would fail to load."""

    file: str  # the extension module (or the interpreter)
    display: str  # the same, relative to its site-packages directory
    kind: str  # one of the constants above
    distribution: str | None = None
    library: str | None = None  # the needed name, or the library that lacks the version
    version: str | None = None  # the needed version: "GLIBC_2.34"
    available: str | None = None  # the highest of that family the library defines
    library_path: str | None = None  # the file the loader would pick, or stops at
    via: str | None = None  # the dependency that needs it, when not the module itself
    detail: str | None = None
    interpreter: bool = False  # one of the interpreter's own modules, or the interpreter
    source: str | None = None  # where the loader found library_path: "LD_LIBRARY_PATH", …
    startup: bool = False  # the interpreter itself does not start: nothing imports


@dataclass(frozen=True)
class NeededVersion(Facts):
    """A symbol version one extension module's closure needs (a rehearsal judges these
    against another machine's libraries)."""

    version: str  # "GLIBC_2.27"
    library: str  # the name it is needed from: "libm.so.6"
    library_path: str | None  # the file the loader would pick here
    needed_by: str | None = None  # the object that needs it, when not the module itself


@dataclass(frozen=True)
class ModuleNeeds(Facts):
    """What one extension module (not one of the interpreter's own) needs of the machine:
    the highest version of each family each object of its closure asks of each library,
    and every name each object needs, with the file the loader would pick here (and the
    object, when not the module itself). Recorded for every module, problem or not."""

    file: str
    display: str
    distribution: str | None
    versions: tuple[NeededVersion, ...] = ()
    libraries: tuple[tuple[str, str | None, str | None], ...] = ()  # (name, file, needed by)


@dataclass(frozen=True)
class ModuleClosure(Facts):
    """What the loader walk resolved for one extension module: each name needed on the
    way (by the module, or by a library it loads) and the file it resolved to (None: not
    found). Names the interpreter had loaded before are in
    :attr:`ExtensionsFacts.loaded_first`; the loader matches them instead of searching."""

    file: str
    display: str  # the file as the verdicts name it: relative to its site-packages directory
    resolved: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class NotScanned(Facts):
    """A distribution whose extension modules could not be listed, so were not checked."""

    distribution: str
    #: MISSING: it has no file list (RECORD, installed-files.txt) and no import path to
    #: look in; UNREADABLE, NOT_REGULAR, TOO_LARGE: it has one that cannot be read.
    failure: Failure
    reason: str


@dataclass(frozen=True)
class ExtensionsFacts(Facts):
    """The extension modules of one distribution (or all) and what stops them loading."""

    distribution: str | None  # None: every installed distribution, and the interpreter's own
    modules: int  # extension modules checked
    files: int  # ELF files looked at, the modules' dependencies included
    problems: tuple[NativeProblem, ...] = ()
    unscanned: tuple[str, ...] = ()  # the names of the distributions in `not_scanned`
    parsed: int = 0  # ELF files parsed this time (the rest came from the cache)
    reason: str | None = None  # why nothing could be checked
    failure: Failure | None = None  # MISSING: the distribution is not installed
    interpreter_modules: int = 0  # of `modules`, the interpreter's own (lib-dynload)
    needs: tuple[ModuleNeeds, ...] = ()  # what each module needs (the interpreter's aside)
    not_scanned: tuple[NotScanned, ...] = ()  # distributions whose modules were not checked
    closures: tuple[ModuleClosure, ...] = ()  # per module walked: what each needed name resolved to
    loaded_first: tuple[tuple[str, str], ...] = ()  # name → file the interpreter (and LD_PRELOAD) load

    def to_dict(self) -> dict[str, object]:
        # The per-module needs are what a rehearsal judges with; the document lists
        # the problems (thousands of needs would swamp it).
        document = super().to_dict()
        document.pop("needs", None)
        return document


#: Bounds on a file list a distribution ships (``RECORD``): torch's is about 2 MB and
#: names some hundred shared objects; past these it is a crafted or corrupt file.
MAX_RECORD_BYTES = 16 << 20
MAX_LISTED_OBJECTS = 100_000


def _listed_files(dist: InstalledDistribution) -> list[str] | None:
    """Every shared object a distribution installed below its location; None when
    :func:`file_list` cannot say."""
    files = file_list(dist)
    return None if isinstance(files, NotScanned) else files


def file_list(dist: InstalledDistribution) -> list[str] | NotScanned:
    """Every shared object a distribution installed below its location (from
    ``RECORD`` or ``installed-files.txt``), or why they cannot be known: it has no
    file list, or one that cannot be read or is over the bounds above."""
    from pytest_envguard.probes._io import explain, failure_of, lines_containing, read_bytes

    meta = dist.path
    listing = os.path.join(meta, "RECORD")
    base = dist.location
    if not os.path.lexists(listing):
        listing = os.path.join(meta, "installed-files.txt")
        base = meta
        if not os.path.lexists(listing):
            return NotScanned(dist.name, Failure.MISSING,
                              f"no file list (RECORD or installed-files.txt) in {meta}")
    try:
        data = read_bytes(listing, MAX_RECORD_BYTES)  # a regular file only, bounded
    except (OSError, TooLarge) as error:
        reason = str(error) if isinstance(error, TooLarge) else explain(listing, error)
        return NotScanned(dist.name, failure_of(error), reason)
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
                return NotScanned(dist.name, Failure.TOO_LARGE,
                                  f"{listing} names more than {MAX_LISTED_OBJECTS:,} shared "
                                  "objects: a crafted or corrupt file (not read further)")
    return found


def _modules_of(files: list[str]) -> list[str]:
    return [path for path in files
            if path.endswith(".so") and _is_module_name(os.path.basename(path))]


def extension_files(dist: InstalledDistribution) -> list[str] | None:
    """The extension modules a distribution installed; None when it has no file list."""
    files = _listed_files(dist)
    return None if files is None else _modules_of(files)


def distribution_modules(dist: InstalledDistribution) -> tuple[list[str], NotScanned | None]:
    """The extension modules of a distribution: those its file list names, and for an
    editable install or a source-tree ``.egg-info`` those below the directories it is
    imported from; and, when some may have been missed, why: the file list cannot be
    read (whatever the import paths held), or there is neither a list nor a path."""
    listed = file_list(dist)
    unlisted = listed if isinstance(listed, NotScanned) else None
    roots = import_roots(dist) if unlisted is not None or is_editable(dist) else []
    found = dict.fromkeys(_modules_of(listed) if not isinstance(listed, NotScanned) else [])
    for root in roots:
        found.update(dict.fromkeys(_modules_below(root)))
    if unlisted is not None and unlisted.failure is Failure.MISSING and roots:
        unlisted = None  # an editable install or a source tree: its import paths are the list
    return list(found), unlisted


def is_editable(dist: InstalledDistribution) -> bool:
    """Installed with ``pip install -e`` (PEP 660: ``direct_url.json`` says so)."""
    try:
        data = json.loads(read_text(os.path.join(dist.path, "direct_url.json"), 1 << 16))
    except (OSError, TooLarge, ValueError):
        return False
    dir_info = data.get("dir_info") if isinstance(data, dict) else None
    return isinstance(dir_info, dict) and dir_info.get("editable") is True


#: How many directory entries the walk below an editable install's roots may visit.
_WALK_LIMIT = 20_000


def import_roots(dist: InstalledDistribution) -> list[str]:
    """Where the modules of an editable install or a source tree are imported from:
    the packages setuptools' editable finder maps, the directories its ``.pth`` file
    adds (only the distribution's top-level packages in them), and for an
    ``.egg-info`` in a source tree, its top-level packages beside it."""
    top_level = _top_level(dist)
    roots: list[str] = []
    for path in _editable_files(dist):
        if path.endswith(".pth"):
            for directory in _pth_directories(path):
                roots += _packages_in(directory, top_level)
        elif path.endswith(".py"):
            roots += _finder_mapping(path)
    if dist.path.endswith(".egg-info") and os.path.dirname(os.path.abspath(dist.path)) == \
            os.path.abspath(dist.location) and not _has_file_list(dist):
        roots += _packages_in(dist.location, top_level)
    return list(dict.fromkeys(root for root in roots if os.path.exists(root)))


def _has_file_list(dist: InstalledDistribution) -> bool:
    return any(os.path.isfile(os.path.join(dist.path, name))
               for name in ("RECORD", "installed-files.txt"))


def _top_level(dist: InstalledDistribution) -> list[str]:
    """The distribution's top-level import names: ``top_level.txt``, else its name."""
    try:
        names = read_text(os.path.join(dist.path, "top_level.txt"), 1 << 16).split()
    except (OSError, TooLarge):
        names = []
    return [name for name in names if name.isidentifier()] or [dist.name.replace("-", "_")]


def _editable_files(dist: InstalledDistribution) -> list[str]:
    """setuptools' ``__editable__.NAME-VERSION.pth`` and ``__editable___NAME_…_finder.py``
    (and a legacy ``NAME.egg-link``) in the distribution's site directory."""
    wanted = re.sub(r"[-_.]+", "_", dist.name).lower()
    found = []
    try:
        entries = os.listdir(dist.location)
    except OSError:
        return []
    for entry in entries:
        # "__editable__.edpkg-1.0.pth", "__editable___edpkg_1_0_finder.py": separators
        # run together once normalised.
        if re.sub(r"[-_.]+", "_", entry.lower()).startswith(f"_editable_{wanted}_"):
            found.append(os.path.join(dist.location, entry))
    return sorted(found, key=lambda path: not path.endswith(".py"))


def _pth_directories(path: str) -> list[str]:
    try:
        text = read_text(path, 1 << 20)
    except (OSError, TooLarge):
        return []
    base = os.path.dirname(path)
    return [os.path.normpath(os.path.join(base, line.strip())) for line in text.splitlines()
            if line.strip() and not line.startswith(("#", "import ", "import\t"))]


def _finder_mapping(path: str) -> list[str]:
    """The package directories of setuptools' editable finder (its ``MAPPING``
    literal), read as data, never run."""
    try:
        tree = ast.parse(read_text(path, 1 << 20))
    except (OSError, TooLarge, SyntaxError, ValueError):
        return []
    for node in ast.walk(tree):
        target = getattr(node, "target", None) or next(iter(getattr(node, "targets", []) or []),
                                                          None)
        if isinstance(target, ast.Name) and target.id == "MAPPING" and getattr(node, "value", None):
            try:
                mapping = ast.literal_eval(node.value)  # type: ignore[attr-defined]
            except (ValueError, SyntaxError, TypeError):
                return []
            if isinstance(mapping, dict):
                return [str(value) for value in mapping.values() if isinstance(value, str)]
    return []


def _packages_in(directory: str, top_level: Sequence[str]) -> list[str]:
    """The top-level packages (and single-file modules) of ``top_level`` in ``directory``."""
    found = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    for entry in entries:
        stem = entry.split(".", 1)[0]
        if stem in top_level:
            found.append(os.path.join(directory, entry))
    return found


def _modules_below(root: str) -> Iterator[str]:
    """Extension modules in ``root`` (a package directory, or one module file)."""
    if os.path.isfile(root):
        if root.endswith(".so") and _is_module_name(os.path.basename(root)):
            yield root
        return
    budget = _WALK_LIMIT
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [name for name in subdirs if not name.startswith(".")
                      and name not in ("__pycache__", "build")]
        budget -= len(files) + len(subdirs)
        if budget < 0:
            return
        for name in sorted(files):
            if name.endswith(".so") and _is_module_name(name):
                yield os.path.join(directory, name)


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


def required_distributions(name: str, active: Mapping[str, InstalledDistribution]
                           ) -> list[InstalledDistribution]:
    """The installed distributions ``name`` requires, transitively (its ``Requires-Dist``
    by name: markers and extras are not weighed, an installed one counts). A package
    imports these before its own modules: scipy imports numpy, torchaudio torch."""
    from pytest_envguard.probes.distributions import canonical_name

    found: dict[str, InstalledDistribution] = {}
    queue = [canonical_name(name)]
    while queue:
        current = active.get(queue.pop())
        if current is None:
            continue
        for requirement in current.requires:
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
            wanted = canonical_name(match.group(1)) if match else ""
            if wanted in active and wanted not in found and wanted != canonical_name(name):
                found[wanted] = active[wanted]
                queue.append(wanted)
    return list(found.values())


def _is_module_name(base: str) -> bool:
    # `_umath.cpython-312-x86_64-linux-gnu.so`, `_cffi.abi3.so`, `mod.so`; a vendored
    # `libopenblas-ab12.so` is not a module (it is checked as a dependency).
    return base.split(".", 1)[0].isidentifier()


#: The tag of a module file name that names an interpreter (PEP 3149, PEP 384, PyPy's):
#: ``cpython-312-x86_64-linux-gnu``, ``abi3``, ``pypy310-pp73-x86_64-linux-gnu``.
_INTERPRETER_TAG = re.compile(r"\.(cpython-\d+[a-z]*(?:-[\w-]+)?|abi3|pypy\d*[-\w]*|graalpy[-\w]*)\.so$")


def foreign_module(path: str, suffixes: Sequence[str], siblings: Iterable[str] = ()) -> bool:
    """A module this interpreter never imports: its file name ends in an interpreter
    tag none of ``suffixes`` (``importlib.machinery.EXTENSION_SUFFIXES``) has, and no
    file of the same module name beside it has one that this interpreter takes."""
    base = os.path.basename(path)
    if any(base.endswith(suffix) for suffix in suffixes) and \
            base.split(".", 1)[0] + next(s for s in suffixes if base.endswith(s)) == base:
        return False
    if not _INTERPRETER_TAG.search(base):
        return False
    name = base.split(".", 1)[0]
    return not any(os.path.basename(other) == name + suffix
                   for other in siblings for suffix in suffixes)


def interpreter_modules(directories: Sequence[str], suffixes: Sequence[str]) -> list[str]:
    """The interpreter's own extension modules (``lib-dynload``)."""
    found = []
    for directory in directories:
        try:
            entries = sorted(os.listdir(directory))
        except OSError:
            continue
        found += [os.path.join(directory, entry) for entry in entries
                  if any(entry.endswith(suffix) for suffix in suffixes)
                  and _is_module_name(entry)]
    return found


def default_interpreter_dirs() -> list[str]:
    """This interpreter's ``lib-dynload`` directories (on ``sys.path``)."""
    return [entry for entry in sys.path
            if os.path.basename(entry.rstrip(os.sep)) == "lib-dynload" and os.path.isdir(entry)]


def probe_extensions(
    distribution: str | None,
    environ: Mapping[str, str],
    installed: InstalledFacts,
    *,
    cache_dir: Path | None = None,
    executable: str | None = None,
    ld_cache: LdCacheFacts | None = None,
    config: LoaderConfig | None = None,
    suffixes: Sequence[str] | None = None,
    interpreter_dirs: Sequence[str] | None = None,
) -> ExtensionsFacts:
    """Check the extension modules of ``distribution`` (all when None, with the
    interpreter's own). ``executable``, ``suffixes`` (the module file names it
    imports) and ``interpreter_dirs`` (its ``lib-dynload``) default to this
    interpreter's."""
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
    own = executable is None
    accepted = list(suffixes if suffixes is not None else importlib.machinery.EXTENSION_SUFFIXES)
    modules: list[tuple[str, InstalledDistribution]] = []
    foreign: list[tuple[str, InstalledDistribution]] = []
    not_scanned: list[NotScanned] = []
    for dist in chosen:
        files, missed = distribution_modules(dist)
        if missed is not None:
            not_scanned.append(missed)
        for path in files:
            if foreign_module(path, accepted, files):
                foreign.append((path, dist))
            elif not _INTERPRETER_TAG.search(os.path.basename(path)) or any(
                    path.endswith(suffix) for suffix in accepted):
                modules.append((path, dist))
    own_modules: list[str] = []
    if distribution is None:
        dirs = interpreter_dirs if interpreter_dirs is not None else (
            default_interpreter_dirs() if own else [])
        own_modules = interpreter_modules(dirs, accepted)
    cache = ElfCache(cache_dir)
    if config is None:
        from pytest_envguard.probes.loader import probe_loader_config

        config = probe_loader_config(executable or sys.executable, environ, cache_dir=cache_dir)
    provided: dict[str, Mapping[str, tuple[str, str]]] = {}

    def shipped(name: str | None) -> Mapping[str, tuple[str, str]]:
        if name is None:
            return {}
        if name not in provided:
            provided[name] = {library: (path, dist.name)
                              for dist in required_distributions(name, active)
                              for library, path in shipped_libraries([dist]).items()}
        return provided[name]

    checker = ExtensionChecker(environ, cache, executable=executable, ld_cache=ld_cache,
                               config=config, shipped=shipped)
    if checker.failure is not None:
        return ExtensionsFacts(distribution, 0, 0, reason=checker.reason, failure=checker.failure)
    problems: list[NativeProblem] = []
    if distribution is None:
        problems += checker.check_interpreter()
    for path in own_modules:
        problems += checker.check(path, os.path.dirname(os.path.dirname(path)), None,
                                  interpreter=True)
    for path, dist in modules:
        problems += checker.check(path, dist.location, dist.name)
    for path, dist in foreign:
        problems.append(NativeProblem(
            path, _display(path, dist.location), WRONG_PYTHON, dist.name,
            detail=f"this interpreter imports only {', '.join(accepted)}"))
    cache.save()
    return ExtensionsFacts(distribution, len(modules) + len(foreign) + len(own_modules),
                           len(checker.seen), tuple(problems),
                           tuple(item.distribution for item in not_scanned),
                           parsed=cache.misses, interpreter_modules=len(own_modules),
                           not_scanned=tuple(not_scanned),
                           closures=tuple(ModuleClosure(module, display, tuple(resolved.items()))
                                          for module, (display, resolved)
                                          in checker.closures.items()),
                           loaded_first=tuple(checker.preloaded.items()),
                           needs=tuple(checker.needs))


def _display(path: str, location: str) -> str:
    if not location:
        return path
    relative = os.path.relpath(path, location)
    return path if relative.startswith(os.pardir) else relative


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
    """What loading one object brings in: every name, object and failure."""

    loaded: dict[str, str | None]  # needed name or soname → the file (None: not found)
    objects: dict[str, ElfFacts]  # every object loaded, by path
    failures: list[tuple[ElfFacts, str, Resolution]]  # (who needs it, name, the loader's answer)
    sources: dict[str, str]  # path → where the loader found it
    resolved: dict[str, str | None] = dataclasses.field(default_factory=dict)  # needed name → file


def _symbols_text(names: Sequence[str]) -> str:
    """``undefined symbol: foo_b`` (as the loader says it), ``(+2 more)`` for the rest."""
    more = f" (+{len(names) - 1} more)" if len(names) > 1 else ""
    return f"undefined symbol: {names[0]}{more}"


class ExtensionChecker:
    """What the loader would do with each extension module ``dlopen``ed by this
    interpreter, with the interpreter's own libraries already loaded."""

    def __init__(self, environ: Mapping[str, str], cache: ElfCache, *,
                 executable: str | None = None, ld_cache: LdCacheFacts | None = None,
                 config: LoaderConfig | None = None,
                 shipped: Callable[[str | None], Mapping[str, tuple[str, str]]] | None = None
                 ) -> None:
        self.cache = cache
        self._shipped = shipped
        self.seen: set[str] = set()
        self._resolved: dict[tuple[str, str, tuple[str, ...]], Resolution] = {}
        self.reason: str | None = None
        self.failure: Failure | None = None
        self.executable = cache.read(os.path.realpath(executable or sys.executable))
        self.resolver = Resolver(environ, reader=cache.read, ld_cache=ld_cache, config=config,
                                 main=self.executable)
        self.preloaded: dict[str, str] = {}
        self.base: set[str] = set()
        self.needs: list[ModuleNeeds] = []  # what each checked module needs (not the interpreter's)
        self._interpreter: _Closure | None = None
        self._symbols: dict[str, SymbolTable | None] = {}  # by path, read when first needed
        self._token: str | None = None
        self._base: Scope | None = None
        self._base_made = False
        self._base_files: dict[str, None] = {}
        # module → (its display, what its walk resolved: _Closure.resolved)
        self.closures: dict[str, tuple[str, dict[str, str | None]]] = {}
        if not self.executable.ok:
            self.reason = f"cannot read the interpreter: {self.executable.reason}"
            self.failure = self.executable.failure
            return
        # LD_PRELOAD's objects, then the interpreter's own dependencies, are loaded
        # before any extension; the loader matches later needs against their sonames
        # instead of searching.
        from pytest_envguard.probes.loader import preloaded_objects

        self._interpreter = self._closure(
            self.executable, (), preloaded=preloaded_objects(self.executable, self.resolver))
        self.preloaded = {name: path for name, path in self._interpreter.loaded.items() if path}
        self.base = set(self._interpreter.objects)
        # The files of the process before any module: the interpreter's and LD_PRELOAD's.
        self._base_files = dict.fromkeys([*self._interpreter.objects, *self.preloaded.values()])

    def _resolve(self, name: str, obj: ElfFacts, chain: tuple[ElfFacts, ...]) -> Resolution:
        rpaths = tuple(holder.path for holder in chain if holder.rpath and not holder.runpath)
        key = (name, obj.path, rpaths if not obj.runpath else ())
        if key not in self._resolved:
            self._resolved[key] = self.resolver.resolve(name, obj, chain)
        return self._resolved[key]

    def _provider(self, name: str, distribution: str | None) -> Resolution | None:
        """A library a distribution that ``distribution`` requires ships under that
        soname: its import has loaded it before this one's modules (scipy imports numpy,
        torchaudio torch), and the loader matches a loaded object by soname before it
        searches. Only a file that is there, readable, of this interpreter's kind and
        has that soname counts: RECORD is not the file."""
        if self._shipped is None or distribution is None:
            return None
        provided = self._shipped(distribution).get(name)
        if provided is None:
            return None
        path, owner = provided
        tried = self.resolver.examine(path, self.executable.header)
        if tried.outcome.value != "found" or self.cache.read(path).soname != name:
            return None
        return Resolution(name, path, f"{LOADED_BY} ({owner}, imported first, ships it)")

    def _closure(self, root: ElfFacts, chain: tuple[ElfFacts, ...], *,
                 distribution: str | None = None,
                 preloaded: Mapping[str, str] | None = None) -> _Closure:
        """Breadth-first, as the loader loads: every object and every name's file."""
        closure = _Closure(dict(self.preloaded if preloaded is None else preloaded),
                           {root.path: root}, [], {})
        queue: deque[tuple[ElfFacts, tuple[ElfFacts, ...]]] = deque([(root, chain)])
        while queue:
            obj, above = queue.popleft()
            for name in obj.needed:
                if name in closure.loaded:
                    continue
                found = self._provider(name, distribution) or self._resolve(name, obj, above)
                path = found.path
                closure.loaded[name] = path
                closure.resolved[name] = path
                if path is None:
                    closure.failures.append((obj, name, found))
                    continue
                self.seen.add(path)
                closure.sources.setdefault(path, found.source or "")
                dependency = self.cache.read(path)
                if dependency.soname:
                    closure.loaded.setdefault(dependency.soname, path)
                if path not in closure.objects:
                    closure.objects[path] = dependency
                    # A library another package loaded has that package's loader chain,
                    # not ours; the executable's RPATH still ends it.
                    below = () if found.source and found.source.startswith(LOADED_BY) \
                        else (obj, *above)
                    queue.append((dependency, below))
        return closure

    def check_interpreter(self) -> list[NativeProblem]:
        """What stops the interpreter itself from starting with this environment."""
        if self._interpreter is None:
            return []
        path = self.executable.path
        return [dataclasses.replace(problem, startup=True) for problem in self._problems(
            self._interpreter, path, f"{os.path.basename(path)} (the interpreter)", None,
            interpreter=True, skip_base=False)]

    def check(self, path: str, location: str, distribution: str | None = None, *,
              interpreter: bool = False) -> list[NativeProblem]:
        display = _display(path, location)
        if interpreter:
            display = f"{os.path.basename(self.executable.path)} {display}"
        self.seen.add(path)
        module = self.cache.read(path)
        tried = self.resolver.examine(path, self.executable.header)
        if not module.ok or tried.outcome.value not in ("found", "skipped"):
            detail = tried.reason or module.reason
            if tried.outcome.value in ("absent", "denied"):
                detail = module.reason or detail
            return [NativeProblem(path, display, UNREADABLE, distribution, detail=detail,
                                  interpreter=interpreter)]
        if module.abi != self.executable.abi or tried.outcome.value == "skipped":
            return [NativeProblem(
                path, display, WRONG_ARCHITECTURE, distribution,
                detail=f"built for {module.describe_abi()}, the interpreter is "
                       f"{self.executable.describe_abi()}", interpreter=interpreter)]
        closure = self._closure(module, (), distribution=distribution)
        self.closures[path] = (display, closure.resolved)
        if not interpreter:
            self.needs.append(self._needs(closure, path, display, distribution))
        return self._problems(closure, path, display, distribution, interpreter=interpreter)

    def _needs(self, closure: _Closure, path: str, display: str,
               distribution: str | None) -> ModuleNeeds:
        """The highest version of each family each object of the module's closure asks
        of each library (the interpreter's own objects aside: their needs are met), and
        every name each object needs with its file."""
        highest: dict[tuple[str, str, str], tuple[tuple[int, ...], NeededVersion]] = {}
        libraries: dict[tuple[str, str], str | None] = {}
        for object_path, needer in closure.objects.items():
            if object_path in self.base:
                continue
            for name in needer.needed:
                libraries.setdefault((name, object_path), closure.loaded.get(name))
            for need in needer.version_needs:
                if need.weak:
                    continue
                family = version_family(need.version)
                key = (family[0] if family else need.version, need.file, object_path)
                number = family[1] if family else ()
                if key not in highest or number > highest[key][0]:
                    highest[key] = (number, NeededVersion(
                        need.version, need.file, closure.loaded.get(need.file),
                        object_path if object_path != path else None))
        return ModuleNeeds(path, display, distribution,
                           tuple(entry for _, entry in highest.values()),
                           tuple((name, found, needer if needer != path else None)
                                 for (name, needer), found in libraries.items()))

    def _problems(self, closure: _Closure, path: str, display: str, distribution: str | None, *,
                  interpreter: bool, skip_base: bool = True) -> list[NativeProblem]:
        def problem(kind: str, *, library: str | None = None, version: str | None = None,
                    available: str | None = None, library_path: str | None = None,
                    via: str | None = None, detail: str | None = None,
                    source: str | None = None) -> NativeProblem:
            return NativeProblem(path, display, kind, distribution, library, version, available,
                                 library_path, via, detail, interpreter, source)

        problems = []
        for needer, name, found in closure.failures:
            via = needer.path if needer.path != path else None
            if found.stopped_at:
                problems.append(problem(LOADER_ERROR, library=name, via=via, detail=found.reason,
                                        library_path=found.stopped_at, source=found.source))
            else:
                problems.append(problem(MISSING_LIBRARY, library=name, via=via,
                                        detail=found.reason))
        for object_path, needer in closure.objects.items():
            if skip_base and object_path in self.base:
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
                    MISSING_VERSION, library=need.file, version=need.version,
                    available=highest_version(target.version_defs, need.version),
                    library_path=target_path, source=closure.sources.get(target_path)
                    or self._interpreter_source(target_path),
                    via=object_path if object_path != path else None))
        if not problems:  # the loader binds symbols once every object is there and fits
            problems += self._unbound(closure, path, problem, skip_base=skip_base)
        return problems

    def _unbound(self, closure: _Closure, path: str, problem: Callable[..., NativeProblem], *,
                 skip_base: bool) -> list[NativeProblem]:
        """The strong references of the objects this load brings in that no object of the
        lookup scope binds: ``undefined symbol: NAME`` (or ``NAME@VERSION``), one problem
        per object. Nothing when a symbol table cannot be read (nothing can be said then)."""
        fresh = [object_path for object_path in closure.objects
                 if not (skip_base and object_path in self.base)]
        # The lookup scope: every object in the process when the module's are bound — the
        # interpreter's and LD_PRELOAD's (matched by name, not walked; :meth:`_base_scope`),
        # then the module's own, which hold every fresh one. The answer is kept on disk
        # until a file changes: the interpreter's files once (in the key), the module's
        # own in the entry.
        own_files = [found for found in dict.fromkeys(
            [*closure.objects, *(found for found in closure.loaded.values() if found)])
            if found not in self._base_files]
        token = self._base_token()
        key = f"unbound:{int(skip_base)}:{token}:{path}"
        kept = self.cache.derived(key, own_files) if token else None
        if isinstance(kept, dict):
            missing: dict[str, tuple[str, ...]] | None = {
                str(needer): tuple(str(name) for name in names) for needer, names in kept.items()
                if isinstance(names, list)}
        else:
            base = self._base_scope()
            own = scope_of(own_files, self._symbol_table, self._known_as)
            missing = unbound(fresh, [base, own], self._symbol_table) \
                if base is not None and own is not None else None
            if missing is not None and token:
                self.cache.derive(key, own_files, {needer: list(names)
                                               for needer, names in missing.items()})
        if not missing:
            return []
        # A library LD_LIBRARY_PATH brings in is the likeliest culprit: the hint names it.
        leaked = next((object_path for object_path in fresh
                       if closure.sources.get(object_path) == "LD_LIBRARY_PATH"), None)
        return [problem(UNDEFINED_SYMBOL, detail=_symbols_text(names),
                        via=object_path if object_path != path else None,
                        library_path=leaked, source="LD_LIBRARY_PATH" if leaked else None)
                for object_path, names in missing.items()]

    def _base_token(self) -> str:
        """A short digest of the interpreter's files and their stamps ("" when one cannot
        be looked at: nothing is kept then)."""
        if self._token is None:
            import hashlib

            stamps = [self.cache.stamp(found) for found in self._base_files]
            self._token = "" if None in stamps else hashlib.blake2b(
                json.dumps([list(self._base_files), stamps]).encode(), digest_size=8).hexdigest()
        return self._token

    def _base_scope(self) -> Scope | None:
        """The interpreter's objects as a lookup scope, made once for every module (None
        when a table of one cannot be read)."""
        if not self._base_made:
            self._base = scope_of(self._base_files, self._symbol_table, self._known_as)
            self._base_made = True
        return self._base

    def _known_as(self, path: str) -> tuple[str, ...]:
        soname = self.cache.read(path).soname
        return (os.path.basename(path), soname) if soname else (os.path.basename(path),)

    def _symbol_table(self, path: str) -> SymbolTable | None:
        if path not in self._symbols:
            self._symbols[path] = read_symbols(path)
        return self._symbols[path]

    def _interpreter_source(self, path: str) -> str | None:
        return self._interpreter.sources.get(path) if self._interpreter else None

    def loaded_from(self, path: str) -> dict[str, str]:
        """Every file that loading ``path`` uses (the interpreter's own included), with
        where the loader finds it: for naming the one an ``LD_LIBRARY_PATH`` leak brings."""
        module = self.cache.read(path)
        if not module.ok or self._interpreter is None:
            return {}
        closure = self._closure(module, ())
        sources: dict[str, str] = {}
        for found in closure.loaded.values():
            if found:
                sources[found] = closure.sources.get(found) or self._interpreter.sources.get(
                    found, "")
        return sources


# -- in a conda prefix: which manager owns each file a native verdict names -------------------


@dataclass(frozen=True)
class LibraryCopies(Facts):
    """Files of one library (by name: ``lib/libfoo.so.1`` and a wheel's vendored
    ``foo.libs/libfoo-ab12cd34.so.1``) that one import loads together."""

    stem: str  # "libfoo"
    copies: tuple[str, ...]  # the files, as the loader walk resolved them
    modules: tuple[str, ...]  # the extension modules whose import loads all of them (displays)


@dataclass(frozen=True)
class NativeOwners(Facts):
    """In a conda prefix: who owns each file the ``extensions`` verdict names (the
    modules and the libraries of its problems, the copies of a library loaded twice),
    and, for a needed library that is not found, the files of that library conda put
    in the prefix."""

    owners: tuple[tuple[str, Owner], ...] = ()  # path → owner
    duplicates: tuple[LibraryCopies, ...] = ()
    conda_copies: tuple[tuple[str, tuple[str, ...]], ...] = ()  # needed name → conda's files

    def owner(self, path: str | None) -> Owner | None:
        return dict(self.owners).get(path) if path else None


def library_copies(facts: ExtensionsFacts) -> list[LibraryCopies]:
    """Two or more files of one library in one module's closure (what it resolved, and
    what the interpreter loaded first), each group once, with every module that loads
    it. One file under two names (a symbolic link) is one copy."""
    from pytest_envguard.probes.conda import library_stem

    first = [path for _, path in facts.loaded_first]
    groups: dict[tuple[str, frozenset[str]], tuple[tuple[str, ...], list[str]]] = {}
    for closure in facts.closures:
        own = [path for _, path in closure.resolved if path]
        by_stem: dict[str, dict[str, None]] = {}
        for path in (*own, *first):
            stem = library_stem(path)
            if stem is not None:
                by_stem.setdefault(stem, {})[path] = None
        for stem, paths in by_stem.items():
            if len(paths) < 2 or not any(path in own for path in paths):
                continue
            real = {os.path.realpath(path): path for path in paths}  # only where names repeat
            if len(real) > 1:
                entry = groups.setdefault((stem, frozenset(real)), (tuple(real.values()), []))
                entry[1].append(closure.display)
    return [LibraryCopies(stem, copies, tuple(modules))
            for (stem, _), (copies, modules) in groups.items()]


def probe_native_owners(facts: ExtensionsFacts, prefix: Callable[[], CondaFacts],
                        installed: InstalledFacts) -> NativeOwners:
    """Who owns the files of ``facts``' problems and duplicate libraries in the conda
    prefix (``prefix()`` reads its records, only when there is a file to name): conda's
    records first, then each distribution's ``RECORD``."""
    from pytest_envguard.probes.conda import FileOwners, library_stem, owners

    duplicates = library_copies(facts)
    if not duplicates and not facts.problems:
        return NativeOwners()  # nothing to name: the records are not even read
    conda = prefix()
    if not conda.present:
        return NativeOwners()
    missing = {problem.library for problem in facts.problems
               if problem.kind == MISSING_LIBRARY and problem.library}
    conda_copies: dict[str, tuple[str, ...]] = {}
    if missing:
        stems = {name: library_stem(name) for name in missing}
        libraries = [relative for relative in owners(conda)
                     if relative.startswith("lib/") and relative.count("/") == 1]
        for name, stem in sorted(stems.items()):
            found = tuple(os.path.join(conda.prefix, relative) for relative in libraries
                          if stem is not None and library_stem(relative) == stem)
            if found:
                conda_copies[name] = found
    paths = [path for problem in facts.problems for path in (problem.file, problem.library_path)
             if path]
    paths += [path for group in duplicates for path in group.copies]
    paths += [path for found in conda_copies.values() for path in found]
    index = FileOwners(conda, installed)
    return NativeOwners(tuple((path, index.owner(path)) for path in dict.fromkeys(paths)),
                        tuple(duplicates), tuple(conda_copies.items()))


def probe_owners(paths: Sequence[str], conda: CondaFacts, installed: InstalledFacts) -> NativeOwners:
    """Who owns each of ``paths`` in the conda prefix ``conda``."""
    from pytest_envguard.probes.conda import FileOwners

    if not conda.present:
        return NativeOwners()
    index = FileOwners(conda, installed)
    return NativeOwners(tuple((path, index.owner(path)) for path in dict.fromkeys(paths)))
