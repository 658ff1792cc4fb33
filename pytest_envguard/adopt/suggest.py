"""``--suggest``: a contract derived from what the installed binaries need.

Every candidate line comes with the one-line reason it was derived, and is
then judged by the same checks a session runs, on this machine: a line that
is not met here is left out of the block (as a comment that says why), so the
block, saved as it is, is met where it was made.

The native part walks what the loader would load, as the ``extensions`` key
does: every shared object the installed distributions list in ``RECORD``, and
each ``DT_NEEDED`` resolved by :class:`~pytest_envguard.probes.loader.Resolver`.
Objects inside the environment (site-packages, a conda prefix) are followed;
a library found outside it is one the environment takes from the system: a
``library`` line. The glibc floor is the highest ``GLIBC_x.y`` any of the
environment's objects or the interpreter needs (what auditwheel computes per
wheel, over the whole environment).
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_envguard.adopt import knowledge

if TYPE_CHECKING:
    from pytest_envguard.environment import Environment
    from pytest_envguard.probes.distributions import InstalledDistribution
    from pytest_envguard.probes.elf import ElfCache, ElfFacts


@dataclass(frozen=True)
class Candidate:
    """A requirement line and why it was derived (one line, for a comment)."""

    line: str
    why: str


@dataclass(frozen=True)
class Dropped:
    """A derived line that is not met on this machine, and the verdict that says so."""

    line: str
    why: str
    verdict: str  # "unknown: NVML library not found"


@dataclass(frozen=True)
class Suggestion:
    """The derived contract: the lines met here, in order, and the ones left out."""

    entries: tuple[Candidate | Dropped, ...]

    @property
    def lines(self) -> tuple[Candidate, ...]:
        return tuple(entry for entry in self.entries if isinstance(entry, Candidate))

    @property
    def dropped(self) -> tuple[Dropped, ...]:
        return tuple(entry for entry in self.entries if isinstance(entry, Dropped))


def suggest(env: Environment, rootdir: Path) -> Suggestion:
    """Derive the contract of ``env``; ``rootdir`` is where the project's
    ``pyproject.toml`` and lock files are looked for."""
    scan = scan_native(env)
    candidates = [
        *python_lines(env, rootdir),
        *libc_lines(env, scan),
        *cpu_lines(env, scan),
        *cuda_lines(env.installed.active().values()),
        *library_lines(scan),
        *hygiene_lines(env),
        *lock_lines(rootdir),
    ]
    return Suggestion(tuple(verified(candidates, env)))


def verified(candidates: Sequence[Candidate], env: Environment) -> list[Candidate | Dropped]:
    """Each candidate judged here: kept when met, otherwise dropped with the verdict."""
    from pytest_envguard.checks import Evaluator
    from pytest_envguard.grammar import RequirementError, parse_line
    from pytest_envguard.verdicts import Status

    evaluator = Evaluator(env)
    result: list[Candidate | Dropped] = []
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.line in seen:
            continue
        seen.add(candidate.line)
        try:
            requirement = parse_line(candidate.line, "--suggest")
        except RequirementError as error:
            result.append(Dropped(candidate.line, candidate.why,
                                  f"does not parse: {error.message}"))
            continue
        verdict = evaluator.evaluate([requirement])[0]
        if verdict.status is Status.MET:
            why = candidate.why
            if verdict.overridden:
                why += f" (met here through an override: found {verdict.found})"
            result.append(Candidate(str(requirement), why))
        else:
            result.append(Dropped(candidate.line, candidate.why,
                                  f"{verdict.status.value} here: found {verdict.found}: "
                                  f"{verdict.reason}"))
    return result


# -- python ------------------------------------------------------------------------------------


def python_lines(env: Environment, rootdir: Path) -> list[Candidate]:
    """``Requires-Python`` of the project (its pyproject.toml, else its installed
    metadata), falling back to the running interpreter's minor version."""
    running = ".".join(env.python.version.split(".")[:2])
    fallback = Candidate(f"python >={running}", f"the interpreter this suggestion ran on is "
                                                f"Python {env.python.version}")
    declared = project_requires_python(rootdir)
    if declared is None:
        return [fallback]
    specifier, where = declared
    line = f"python {specifier}"
    from pytest_envguard.checks import Evaluator
    from pytest_envguard.grammar import RequirementError, parse_line

    try:
        verdict = Evaluator(env).evaluate([parse_line(line)])[0]
    except RequirementError:
        return [fallback]
    if not verdict.ok:
        return [fallback]  # the project says more than this interpreter: it decides here
    return [Candidate(line, f"Requires-Python of the project ({where})")]


def project_requires_python(rootdir: Path) -> tuple[str, str] | None:
    """(specifier, where it was found) from ``rootdir/pyproject.toml``."""
    from pytest_envguard.probes._io import TomlError, TooLarge, load_toml

    path = rootdir / "pyproject.toml"
    try:
        document = load_toml(str(path), 16 << 20)
    except (OSError, TooLarge, TomlError, UnicodeDecodeError):
        return None
    project = document.get("project")
    if not isinstance(project, dict):
        return None
    declared = project.get("requires-python")
    if isinstance(declared, str) and declared.strip():
        return declared.strip(), "pyproject.toml [project] requires-python"
    name = project.get("name")
    if isinstance(name, str) and "requires-python" in project.get("dynamic", ()):
        from importlib import metadata

        try:
            installed = next(iter(metadata.metadata(name).get_all("Requires-Python") or ()), None)
        except (metadata.PackageNotFoundError, OSError, ValueError):
            return None
        if installed:
            return str(installed).strip(), f"the installed metadata of {name}"
    return None


# -- the native scan ---------------------------------------------------------------------------

_GLIBC = re.compile(r"GLIBC_(\d+(?:\.\d+)*)")


@dataclass
class NativeScan:
    """What the environment's binaries need, as the loader would load them."""

    glibc_floor: tuple[tuple[int, ...], str] | None = None  # ((2, 34), "GLIBC_2.34")
    floor_set_by: str | None = None  # the file that needs it, for the comment
    # soname → (the file the loader picks, the objects that need it)
    system_libraries: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    hwcaps_only: list[tuple[str, str]] = field(default_factory=list)  # (level, file shown)
    files: int = 0  # ELF files looked at
    scanned: list[str] = field(default_factory=list)  # the files whose needs count


class _Walker:
    """The loader's view of the environment's objects, shared by every root."""

    def __init__(self, env: Environment, cache: ElfCache, owned: Sequence[str],
                 shipped: Mapping[str, str]) -> None:
        from pytest_envguard.probes.loader import Resolver

        self.cache = cache
        self.resolver = Resolver(env.environ, reader=cache.read)
        self.owned = tuple(os.path.join(os.path.abspath(root), "") for root in owned)
        self.shipped = shipped
        self.visited: dict[str, ElfFacts] = {}
        self.boundary: dict[str, tuple[str, list[str]]] = {}  # soname → (path, who needs it)
        self.preloaded: dict[str, str] = {}
        self.interpreter: list[ElfFacts] = []

    def is_owned(self, path: str) -> bool:
        return os.path.abspath(path).startswith(self.owned)

    def load_interpreter(self, executable: str) -> ElfFacts:
        """The interpreter and what it loads before any extension (libpython, libc)."""
        root = self.cache.read(os.path.realpath(executable))
        if not root.ok:
            return root
        self.interpreter.append(root)
        queue: deque[tuple[ElfFacts, tuple[ElfFacts, ...]]] = deque([(root, ())])
        while queue:
            obj, chain = queue.popleft()
            for name in obj.needed:
                if name in self.preloaded:
                    continue
                path = self.resolver.resolve(name, obj, chain).path
                if path is None:
                    continue
                self.preloaded[name] = path
                dependency = self.cache.read(path)
                if dependency.soname:
                    self.preloaded.setdefault(dependency.soname, path)
                if name.startswith("libpython") and dependency.ok:
                    self.interpreter.append(dependency)
                queue.append((dependency, (obj, *chain)))
        return root

    def walk(self, path: str, executable: ElfFacts) -> None:
        """Follow one installed object and everything it loads inside the environment."""
        if path in self.visited:
            return
        root = self.cache.read(path)
        if not root.ok or root.abi != executable.abi:
            return
        self.visited[path] = root
        queue: deque[tuple[ElfFacts, tuple[ElfFacts, ...]]] = deque([(root, (executable,))])
        while queue:
            obj, chain = queue.popleft()
            for name in obj.needed:
                found = self.preloaded.get(name)
                if found is None:
                    found = self.resolver.resolve(name, obj, chain).path or self.shipped.get(name)
                if found is None:
                    continue  # a missing library: the `extensions` line reports it
                if self.is_owned(found):
                    if found not in self.visited:
                        dependency = self.cache.read(found)
                        if dependency.ok:
                            self.visited[found] = dependency
                            queue.append((dependency, (obj, *chain)))
                elif not knowledge.is_libc_soname(name) and not name.startswith("libpython"):
                    needers = self.boundary.setdefault(name, (found, []))[1]
                    if obj.path not in needers:
                        needers.append(obj.path)


def _shared_objects(dist: InstalledDistribution) -> list[str]:
    """Every shared object a distribution's ``RECORD`` lists, as absolute paths."""
    from pytest_envguard.probes._io import read_small

    text = read_small(os.path.join(dist.path, "RECORD"), 64 << 20) or ""
    location = os.path.join(os.path.abspath(dist.location), "")
    found = []
    for line in text.splitlines():
        name = line.split(",", 1)[0]
        base = os.path.basename(name)
        if base.endswith(".so") or ".so." in base:
            path = os.path.normpath(os.path.join(dist.location, name))
            if path.startswith(location):
                found.append(path)
    return found


def owned_roots(env: Environment) -> list[str]:
    """The directories whose files belong to the environment, not to the system."""
    roots = {dist.location for dist in env.installed.active().values()}
    if env.isolation.kind == "conda":
        roots.add(env.isolation.prefix)
    return sorted(roots)


def scan_native(env: Environment) -> NativeScan:
    """Walk every installed shared object the way the loader would load it."""
    from pytest_envguard.probes.elf import ElfCache

    active = env.installed.active()
    files: list[tuple[str, InstalledDistribution]] = []
    for dist in active.values():
        files += [(path, dist) for path in _shared_objects(dist)]
    shipped: dict[str, str] = {}
    for path, _ in files:
        shipped.setdefault(os.path.basename(path), path)
    owners = dict(files)
    cache = ElfCache(env.settings.cache_dir)
    walker = _Walker(env, cache, owned_roots(env), shipped)
    executable = walker.load_interpreter(env.python.executable)
    scan = NativeScan()
    if executable.ok:
        for path, _ in files:
            walker.walk(path, executable)
    cache.save()
    counted = [*walker.interpreter, *walker.visited.values()]
    scan.scanned = [obj.path for obj in counted]
    scan.files = len(counted)
    for obj in counted:
        for need in obj.version_needs:
            match = _GLIBC.fullmatch(need.version)
            if match is None or need.weak:
                continue
            version = tuple(int(part) for part in match.group(1).split("."))
            if scan.glibc_floor is None or version > scan.glibc_floor[0]:
                scan.glibc_floor = (version, need.version)
                scan.floor_set_by = _shown(obj.path, owners)
    scan.system_libraries = dict(sorted(walker.boundary.items()))
    scan.hwcaps_only = hwcaps_only(owners)
    return scan


def _shown(path: str, owners: Mapping[str, InstalledDistribution]) -> str:
    """A file as the comment names it: relative to its site-packages, with the distribution
    whose RECORD lists it (others installed beside it in the same directory do not own it)."""
    owner = owners.get(path)
    if owner is None:
        return path
    location = os.path.join(os.path.abspath(owner.location), "")
    return f"{path.removeprefix(location)} ({owner.display})"


_HWCAPS = re.compile(r"(?P<dir>.*)/glibc-hwcaps/(?P<level>[^/]+)/(?P<base>[^/]+)$")


def hwcaps_only(owners: Mapping[str, InstalledDistribution]) -> list[tuple[str, str]]:
    """Libraries installed only under ``glibc-hwcaps/LEVEL/``, with no baseline copy
    beside: the loader finds them only on a CPU of that level. ``owners``: every
    installed shared object and the distribution that lists it."""
    found = []
    for path in owners:
        match = _HWCAPS.fullmatch(path)
        if match and os.path.join(match["dir"], match["base"]) not in owners \
                and not os.path.lexists(os.path.join(match["dir"], match["base"])):
            found.append((match["level"], _shown(path, owners)))
    return found


# -- the lines --------------------------------------------------------------------------------


def libc_lines(env: Environment, scan: NativeScan) -> list[Candidate]:
    libc = env.libc
    if libc.name == "musl":
        floor = musllinux_floor(env.installed.active().values())
        if floor is None:
            return []
        (major, minor), dist = floor
        return [Candidate(f"musl >={major}.{minor}",
                          f"{dist} is a musllinux_{major}_{minor} wheel (the highest musl tag here)")]
    if libc.name != "glibc" or scan.glibc_floor is None:
        return []
    version, tag = scan.glibc_floor
    shown = ".".join(str(part) for part in version)
    return [Candidate(f"glibc >={shown}",
                      f"{tag} is the newest glibc symbol version needed, by {scan.floor_set_by} "
                      f"({scan.files} ELF files)")]


def musllinux_floor(distributions: Iterable[InstalledDistribution]
                    ) -> tuple[tuple[int, int], str] | None:
    """The highest ``musllinux_X_Y`` among the installed wheels' tags, and whose."""
    best: tuple[tuple[int, int], str] | None = None
    for dist in distributions:
        for tag in dist.wheel_tags or ():
            for match in re.finditer(r"musllinux_(\d+)_(\d+)", tag):
                version = (int(match.group(1)), int(match.group(2)))
                if best is None or version > best[0]:
                    best = (version, dist.display)
    return best


def cpu_lines(env: Environment, scan: NativeScan) -> list[Candidate]:
    """``cpu FLAG`` lines for hwcaps-only builds and wheels known to need more than the
    platform tag's baseline ISA."""
    machine = env.platform.machine
    needs: list[tuple[str, str]] = []  # (x86-64 level or flags, why)
    if machine == "x86_64":
        for level, shown in scan.hwcaps_only:
            needs.append((level, f"{shown} is installed only for {level} (glibc-hwcaps)"))
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    active = env.installed.active()
    for need in knowledge.ISA_NEEDS:
        dist = active.get(need.distribution)
        if dist is None or need.machine != machine:
            continue
        try:
            applies = not need.versions or SpecifierSet(need.versions).contains(
                Version(dist.version), prereleases=True)
        except (InvalidSpecifier, InvalidVersion):
            continue
        if applies:
            needs.append((need.needs, f"{dist.display}: {need.source}"))
    lines: list[Candidate] = []
    for wanted, why in needs:
        flags = knowledge.level_flags(wanted) or tuple(wanted.split())
        lines += [Candidate(f"cpu {flag}", why) for flag in flags]
    return lines


def cuda_lines(distributions: Iterable[InstalledDistribution]) -> list[Candidate]:
    """``cuda``/``driver`` lines from the CUDA builds installed: the newest major decides,
    and minor version compatibility gives the oldest driver that runs all of it."""
    from pytest_envguard import hints

    builds = [build for dist in distributions
              if (build := knowledge.cuda_build(dist.name, dist.version)) is not None]
    if not builds:
        return []
    major = max(build.major for build in builds)
    ours = [build for build in builds if build.major == major]
    minor = max((build.minor for build in ours if build.minor is not None), default=None)
    named = ", ".join(build.distribution for build in ours[:3])
    more = f" and {len(ours) - 3} more" if len(ours) > 3 else ""
    toolkit = f"CUDA {major}.{minor}" if minor is not None else f"CUDA {major}"
    lines = [Candidate(f"cuda >={major}.0",
                       f"{named}{more} need {toolkit}; a driver for any CUDA {major}.x runs it "
                       "(minor version compatibility)")]
    floor = hints.CUDA_MAJOR_MIN_DRIVER.get(major)
    if floor:
        full = hints.CUDA_TOOLKIT_DRIVER.get((major, minor)) if minor is not None else None
        beyond = f"; {full} supports {toolkit} fully" if full and full != floor else ""
        lines.append(Candidate(f"driver >={floor}",
                               f"the oldest driver for CUDA {major}.x (minor version "
                               f"compatibility){beyond}"))
    return lines


def library_lines(scan: NativeScan) -> list[Candidate]:
    def who(needers: list[str]) -> str:
        names = ", ".join(sorted(os.path.basename(needer) for needer in needers)[:3])
        return names + (f" and {len(needers) - 3} more" if len(needers) > 3 else "")

    return [Candidate(f"library {name}", f"taken from the system ({path}), needed by {who(needers)}")
            for name, (path, needers) in scan.system_libraries.items()]


def hygiene_lines(env: Environment) -> list[Candidate]:
    lines = [
        Candidate("extensions", "every extension module finds the libraries and symbol "
                                "versions it needs"),
        Candidate("wheels", "every installed wheel's tags fit this interpreter"),
        Candidate("consistent", "every installed distribution's requirements are installed "
                                "(pip check)"),
    ]
    kind = env.isolation.kind
    if kind in ("venv", "conda"):
        lines.append(Candidate("isolated", f"the tests run in a {kind} "
                                           f"({env.isolation.prefix}): keep it free of leaks"))
    return lines


def lock_lines(rootdir: Path) -> list[Candidate]:
    """A ``lock`` line for each lock file in the project's root: Python's (uv, Poetry,
    PEP 751, pinned requirements) and conda's (pixi, conda-lock, explicit spec files,
    ``environment.yml``)."""
    from pytest_envguard.probes.conda_locks import is_explicit

    try:
        names = sorted(os.listdir(rootdir))
    except OSError:
        return []
    found = [name for name in knowledge.LOCK_FILE_NAMES if name in names]
    found += [name for name in names if knowledge.LOCK_FILE_PATTERN.fullmatch(name)]
    conda = [name for name in knowledge.CONDA_LOCK_FILE_NAMES if name in names]
    conda += [name for name in names if knowledge.CONDA_LOCK_FILE_PATTERN.fullmatch(name)
              or (name.endswith(".txt") and name not in found
                  and is_explicit(str(rootdir / name)))]
    return [Candidate(f"lock {name}", f"{name} is in the project's root directory")
            for name in found if os.path.isfile(rootdir / name)] + [
        Candidate(f"lock {name}", f"{name}, a conda lock, is in the project's root directory")
        for name in conda if os.path.isfile(rootdir / name)]
