"""Native libraries: ``library``, ``extensions``, ``import``."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pytest_envguard.environment import Environment
from pytest_envguard.grammar import Requirement
from pytest_envguard.probes import Failure
from pytest_envguard.verdicts import (
    NOTHING_FOUND,
    Problem,
    Status,
    Verdict,
    listing,
    met,
    plural,
    unknown,
    unmet,
)

if TYPE_CHECKING:
    from pytest_envguard.probes.extensions import ExtensionsFacts, NativeOwners, NativeProblem, NotScanned
    from pytest_envguard.probes.loader import Candidate, LibraryFacts


# -- library ---------------------------------------------------------------------------------


def check_library(requirement: Requirement, env: Environment) -> Verdict:
    from pytest_envguard import hints
    from pytest_envguard.checks.conda import library_owners, owned_by

    name = requirement.argument or ""
    facts = env.library(name)
    dlopen = facts.loader
    # In a conda prefix: who owns the file the verdict names (conda, pip, …).
    owners = library_owners(env, name, [facts.path, dlopen.stopped_at if dlopen else None])
    if facts.path is None:
        if dlopen is not None and dlopen.stopped_at:
            # The loader ends its search at a file it cannot load: a good copy later
            # on the path is never reached.
            later = f"; {facts.candidates[0].path} ({facts.candidates[0].source}) comes later " \
                    "and is never reached" if facts.candidates else ""
            return unmet(requirement, f"dlopen fails at {dlopen.stopped_at}",
                         f"{name}: {dlopen.reason} ({dlopen.source})"
                         f"{owned_by(dlopen.stopped_at, owners)}{later}",
                         hint=hints.broken_file_hint(dlopen.stopped_at, dlopen.source))
        if facts.failure is not Failure.MISSING:
            return unknown(requirement, facts.reason or f"{name}: the search could not run")
        return unmet(requirement, NOTHING_FOUND, facts.reason or f"{name} not found",
                     hint=hints.library_hint(name)
                     or f"install the package that provides {name}, or add its directory "
                        "to LD_LIBRARY_PATH")
    if facts.load_errors:
        # The loader finds the file, then fails loading what it needs.
        return unmet(requirement, f"dlopen fails loading {facts.path}",
                     f"{name} is {facts.path} ({facts.source}){owned_by(facts.path, owners)}, "
                     f"but {listing(facts.load_errors)}",
                     hint=hints.library_hint(name))
    candidates = list(facts.candidates)
    chosen = candidates[0]
    if requirement.specifier:
        verdict = _version_verdict(requirement, name, candidates)
        if isinstance(verdict, Verdict):
            if verdict.status is not Status.MET and owners is not None:
                verdict = replace(verdict, reason=verdict.reason + owned_by(facts.path, owners))
            return verdict
        chosen = verdict
    if chosen is not candidates[0]:
        owners = library_owners(env, f"{name} {requirement.specifier}", [chosen.path])
    return met(requirement, _found(chosen, facts),
               _library_reason(chosen, candidates, facts) + owned_by(chosen.path, owners))


def _decide(specifier: str, candidate: Candidate) -> bool | None:
    from pytest_envguard import native_versions
    from pytest_envguard.probes.loader import VersionSource

    if candidate.version is None:
        return None
    return native_versions.decide(specifier, candidate.version,
                                  only_major=candidate.version_source is VersionSource.SONAME)


def _version_verdict(requirement: Requirement, name: str,
                     candidates: list[Candidate]) -> Verdict | Candidate:
    """The candidate that satisfies the specifier (with a short name, any of them
    will do), or the verdict when none does or none can tell."""
    from pytest_envguard import hints

    specifier = requirement.specifier
    pool = candidates if ".so" not in name else candidates[:1]
    answers = [(candidate, _decide(specifier, candidate)) for candidate in pool]
    fitting = next((candidate for candidate, answer in answers if answer), None)
    if fitting is not None:
        return fitting
    chosen = answers[0][0]
    seen = ", ".join(f"{item.version or '?'} ({item.path})" for item in candidates[:3])
    if any(answer is None for _, answer in answers):
        undecided = next(item for item, answer in answers if answer is None)
        known = (f"only the soname's version {undecided.version} is known"
                 if undecided.version is not None else "its version is not known")
        why = f" ({undecided.reason})" if undecided.reason else ""
        return unknown(requirement,
                       f"{name}: {known} for {undecided.path} ({undecided.source}){why}, and "
                       f"{specifier} needs the release; found {seen}",
                       found=f"{undecided.path} ({undecided.source})")
    return unmet(requirement, f"{chosen.path} ({chosen.source})",
                 f"{name} {chosen.version} does not satisfy {specifier}; found {seen}",
                 hint=hints.library_hint(name))


def _found(chosen: Candidate, facts: LibraryFacts) -> str:
    from pytest_envguard.probes import loader

    if chosen is facts.candidates[0] and facts.reach == loader.REACH_PACKAGE_RPATH:
        return f"{chosen.path} ({chosen.source}; not on the loader's path)"
    return f"{chosen.path} ({chosen.source})"


def _library_reason(chosen: Candidate, candidates: list[Candidate], facts: LibraryFacts) -> str:
    from pytest_envguard.probes import loader

    shown = os.path.basename(chosen.soname or chosen.path)
    version = f"{chosen.version} ({chosen.version_source})" if chosen.version_source and \
        chosen.version else (chosen.version or "")
    reason = f"{shown} {version} found through {chosen.source}".replace("  ", " ")
    if chosen is candidates[0] and facts.reach == loader.REACH_LOADED:
        reason = f"{shown} {version} is already loaded in this process: dlopen returns it"
    elif chosen is candidates[0] and facts.reach == loader.REACH_PACKAGE_RPATH:
        reason = (f"{shown} {version} found only in {chosen.source}, where the packages that "
                  f"use it (the torch, CuPy, JAX wheels) load it through their RPATH; a plain "
                  f"dlopen('{os.path.basename(chosen.path)}') finds nothing: it is not on "
                  "LD_LIBRARY_PATH, in ld.so.cache or in the system dirs").replace("  ", " ")
    if chosen is not candidates[0]:
        first = candidates[0]
        reason += f"; searched first: {first.path} ({first.source}, {first.version or '?'})"
    others = [item for item in candidates[candidates.index(chosen) + 1:]
              if (item.soname or "") == (chosen.soname or "")]
    if others and chosen is candidates[0]:
        # Copies in site-packages nvidia/*/lib or a conda prefix are loaded through
        # the RPATHs of the packages that use them, so they are not shadowed.
        other = others[0]
        beyond = other.source in (loader.SOURCE_NVIDIA, loader.SOURCE_CONDA)
        reason += (f"; also in {other.path} ({other.source})" if beyond
                   else f"; it shadows {other.path} ({other.source})")
    return reason


# -- extensions ------------------------------------------------------------------------------


def _native_hint(problem: NativeProblem, env: Environment,
                 owners: NativeOwners | None = None) -> str:
    from pytest_envguard import hints
    from pytest_envguard.checks.conda import across_managers_hint
    from pytest_envguard.probes import extensions as kinds

    dist = problem.distribution or "the distribution"
    across = across_managers_hint(problem, owners)
    if across is not None:  # a pip module against conda's library, in a conda prefix
        return across
    if problem.source == "LD_LIBRARY_PATH" and problem.library_path:
        return hints.ld_library_path_hint(problem.library_path, problem.interpreter)
    if problem.kind == kinds.MISSING_VERSION and problem.version:
        if problem.interpreter:
            return hints.interpreter_hint(problem.library)
        return hints.version_hint(problem.version, problem.library, env.platform.machine,
                                  problem.distribution)
    if problem.kind == kinds.MISSING_LIBRARY and problem.library:
        if problem.interpreter:
            return hints.interpreter_hint(problem.library)
        if hints.is_vendored(problem.library):
            return hints.vendored_hint(problem.library, dist)
        return hints.library_hint(problem.library) or (
            f"install the package that provides {problem.library}, or add its directory "
            "to LD_LIBRARY_PATH")
    if problem.kind == kinds.LOADER_ERROR and problem.library_path:
        return hints.broken_file_hint(problem.library_path, problem.source, dist)
    if problem.kind == kinds.WRONG_PYTHON:
        return hints.wrong_python_hint(dist)
    if problem.kind == kinds.WRONG_ARCHITECTURE:
        return f"reinstall it for this interpreter: pip install --force-reinstall --no-deps {dist}"
    if problem.kind == kinds.UNDEFINED_SYMBOL and not problem.interpreter:
        return (f"a library it loads is not the one {dist} was built against (older, or "
                f"another build): install {dist} and the packages it builds on at versions "
                f"made for each other (pip install --force-reinstall {dist})")
    if problem.interpreter:
        return hints.interpreter_hint(None)
    return f"reinstall it: pip install --force-reinstall --no-deps {dist}"


def _native_cause(problem: NativeProblem, owners: NativeOwners | None = None) -> str:
    """Why the module does not load; in a conda prefix (``owners``), with who owns the
    library named, and for a library not found, the copies conda put in the prefix."""
    from pytest_envguard.checks.conda import conda_copies, owned
    from pytest_envguard.probes import extensions as kinds

    via = f" (via {os.path.basename(problem.via)})" if problem.via else ""
    where = f" from {problem.source}" if problem.source == "LD_LIBRARY_PATH" else ""
    if problem.kind == kinds.MISSING_LIBRARY:
        return f"{problem.library} not found{via}{conda_copies(problem.library or '', owners)}"
    if problem.kind == kinds.MISSING_VERSION:
        has = f"has up to {problem.available}" if problem.available else "lacks it"
        library = owned(problem.library_path or "?", owners)
        return f"{problem.version} not in {library}{where}{via} ({has})"
    if problem.kind == kinds.LOADER_ERROR:
        return f"the loader stops at {problem.detail}{where}{via}"
    if problem.kind == kinds.WRONG_PYTHON:
        return f"not a module of this interpreter: {problem.detail}"
    if problem.kind == kinds.UNDEFINED_SYMBOL and problem.library_path:
        return (f"{problem.detail}{via}, with {os.path.basename(problem.library_path)}"
                f"{where}")
    return f"{problem.detail}{via}"


def check_extensions(requirement: Requirement, env: Environment) -> Verdict:
    from pytest_envguard.checks.conda import duplicate_hint, duplicate_problems, native_owners

    facts = env.extensions(requirement.argument)
    if facts.failure is Failure.MISSING:
        return unmet(requirement, "not installed", facts.reason or "not installed",
                     hint=f"pip install {requirement.argument}")
    if facts.failure is not None:
        return unknown(requirement, facts.reason or "the extension modules could not be checked")
    missed = tuple(Problem(NOT_SCANNED, f"{item.distribution}: not scanned: {item.reason}")
                   for item in facts.not_scanned)
    unscanned = (f"; not scanned: {listing([_not_scanned(item) for item in facts.not_scanned])}"
                 if facts.not_scanned else "")
    if facts.not_scanned and requirement.argument is not None and not facts.problems:
        # Its modules are unknown, so whether they load is too: never met (here or there).
        return unknown(requirement, f"not scanned: {facts.not_scanned[0].reason}; whether "
                       f"the extension modules of {requirement.argument} load is not known",
                       hint=_not_scanned_hint(facts.not_scanned[0].distribution),
                       problems=missed)
    if env.rehearsed_libc() is not None:
        return _rehearsed_extensions(requirement, env, facts, missed, unscanned)
    own = (f", {facts.interpreter_modules} of them the interpreter's own"
           if facts.interpreter_modules else "")
    owners = native_owners(env, requirement.argument, facts)  # in a conda prefix only
    twice = duplicate_problems(owners) if owners is not None else []
    if not facts.problems and not twice:
        scanned = " in the distributions scanned" if facts.not_scanned else ""
        found = plural(facts.modules, "module") + (
            f" ({plural(len(facts.not_scanned), 'distribution')} not scanned)"
            if facts.not_scanned else "")
        return met(requirement, found,
                   f"{plural(facts.modules, 'extension module')}{own}{scanned} "
                   f"({plural(facts.files, 'ELF file')}) find every library and symbol version "
                   f"they need{unscanned}", problems=missed)
    # One line per cause, naming the files it breaks: a missing libcudnn breaks dozens.
    causes: dict[str, list[str]] = {}
    for problem in facts.problems:
        causes.setdefault(_native_cause(problem, owners), []).append(_module(problem, owners))
    parts = []
    for cause, files in causes.items():
        more = f" (+{len(files) - 1} more)" if len(files) > 1 else ""
        parts.append(f"{files[0]}{more}: {cause}")
    parts += [problem.text for problem in twice]
    broken = len({problem.file for problem in facts.problems})
    loaded_twice = f"{len(twice)} {'library' if len(twice) == 1 else 'libraries'} loaded twice"
    found = f"{broken} of {plural(facts.modules, 'module')} broken"
    if any(problem.startup for problem in facts.problems):
        found = "the interpreter does not start"  # so no module imports
    if twice:
        found = f"{found}, {loaded_twice}" if facts.problems else loaded_twice
    if facts.problems:
        hint: str | None = _native_hint(_most_telling(facts.problems), env, owners)
    else:
        hint = duplicate_hint(owners) if owners is not None else None
    return unmet(requirement, found, listing(parts) + unscanned, hint=hint,
                 problems=tuple(Problem(problem.kind, f"{_module(problem, owners)}: "
                                                      f"{_native_cause(problem, owners)}")
                                for problem in facts.problems) + tuple(twice) + missed)


def _module(problem: NativeProblem, owners: NativeOwners | None) -> str:
    """The module as the verdict names it; in a conda prefix, with who owns it."""
    from pytest_envguard.checks.conda import owned

    if owners is None or owners.owner(problem.file) is None:
        return problem.display
    return owned(problem.file, owners).replace(problem.file, problem.display, 1)


#: The kind of the problem that names a distribution whose modules were not checked.
NOT_SCANNED = "not-scanned"


#: Why a distribution was not scanned, by the failure of its file list, in a few words.
_UNLISTED = {Failure.MISSING: "no RECORD", Failure.UNREADABLE: "RECORD unreadable",
             Failure.NOT_REGULAR: "RECORD not a file", Failure.TOO_LARGE: "RECORD over the bound"}


def _not_scanned(item: NotScanned) -> str:
    return f"{item.distribution} ({_UNLISTED.get(item.failure, f'RECORD {item.failure}')})"


def _not_scanned_hint(distribution: str) -> str:
    return (f"reinstall it so that its file list (RECORD) is written again: pip install "
            f"--force-reinstall --no-deps {distribution}")


def _most_telling(problems: tuple[NativeProblem, ...]) -> NativeProblem:
    """The problem whose fix the hint names: a leak through LD_LIBRARY_PATH first (it
    breaks the others), then the first."""
    return next((problem for problem in problems if problem.source == "LD_LIBRARY_PATH"),
                next((problem for problem in problems if problem.startup), problems[0]))


# -- extensions on a rehearsed machine (glibc or musl overridden, a target) --------------------

#: The problem kinds a rehearsal adds (``Problem.kind`` in the JSON document).
ABOVE_TARGET = "above-target"  # a symbol version the rehearsed machine's library lacks
OUTSIDE_TARGET = "outside-target"  # a system library the target is not known to provide

#: Libraries every machine that runs the module has: the dynamic loader and the interpreter.
_ALWAYS_THERE = re.compile(r"(ld-linux[\w.-]*|ld64)\.so(\.\d+)*$|libpython\d")

#: Directories of the system's own libraries: a site directory is never one of them, so
#: a sys.path entry holding one ("/", a cwd of "/usr") does not make them the environment's.
_SYSTEM_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")


@dataclass(frozen=True)
class _Rehearsal:
    """What the rehearsed machine's system libraries define, and where the environment's
    own files (which travel with it) live."""

    ceilings: dict[str, tuple[int, ...] | None]  # family → highest version there; None: none
    shown: dict[str, str]  # family → "glibc 2.17 (target manylinux2014)"
    libraries: frozenset[str] | None  # the system libraries the target provides (None: any)
    libraries_source: str
    own_dirs: tuple[str, ...]

    def travels(self, path: str | None) -> bool:
        """Whether ``path`` is the environment's own file (vendored in site-packages, in a
        conda prefix), which the rehearsed machine would load as it is."""
        if path is None:
            return False
        real = os.path.realpath(path)
        return any(real == directory or real.startswith(directory + os.sep)
                   for directory in self.own_dirs)

    def above(self, version: str) -> tuple[str, str] | None:
        """(family, what the machine has) when it lacks ``version``; None when it has
        it or the version is not one it describes."""
        from pytest_envguard.probes.extensions import version_family
        from pytest_envguard.targets import NAMED_VERSIONS, version_tuple

        named = NAMED_VERSIONS.get(version)
        if named is not None:
            family, number = named[0], version_tuple(named[1])
        else:
            parsed = version_family(version)
            if parsed is None:
                return None
            family, number = parsed
        if family not in self.ceilings:
            return None
        ceiling = self.ceilings[family]
        if ceiling is not None and number is not None and number <= ceiling:
            return None
        return family, self.shown[family]


def _rehearsal(env: Environment) -> _Rehearsal | str:
    """The rehearsed machine's libraries, or why the override cannot be read."""
    from pytest_envguard.targets import version_tuple

    libc = env.rehearsed_libc() or {}
    ceilings: dict[str, tuple[int, ...] | None] = {}
    shown: dict[str, str] = {}
    glibc = libc.get("glibc")
    glibc_source = env.override_source("glibc" if env.override("glibc") is not None else "musl")
    if glibc is None:
        ceilings["GLIBC"] = None
        shown["GLIBC"] = f"no glibc ({glibc_source})"
    else:
        number = version_tuple(glibc)
        if number is None:
            return (f"{glibc_source}={glibc!r} is not a glibc version (e.g. 2.17): the "
                    "extension modules cannot be judged against it")
        ceilings["GLIBC"] = number
        shown["GLIBC"] = f"glibc {glibc} ({glibc_source})"
    target = env.target
    libraries = None
    if target is not None:
        if target.ceiling_machine == env.platform.machine:
            for family, version in target.ceilings:
                ceilings[family] = version_tuple(version)
                shown[family] = f"{family}_{version} (target {target.name})"
        if target.libraries is not None:
            libraries = frozenset(target.libraries)
    return _Rehearsal(ceilings, shown, libraries, f"target {target.name}" if target else "",
                      _own_dirs(env))


def _own_dirs(env: Environment) -> tuple[str, ...]:
    """Where the environment's own files live: its site directories, and a conda prefix's
    ``lib`` (conda's libstdc++ comes with the environment)."""
    directories = list(env.installed.paths)
    if env.in_conda_prefix():
        directories.append(os.path.join(env.python.prefix, "lib"))
    own = []
    for directory in directories:
        real = os.path.realpath(directory).rstrip(os.sep)
        if real and not any(system == real or system.startswith(real + os.sep)
                            for system in _SYSTEM_DIRS):
            own.append(real)
    return tuple(dict.fromkeys(own))


def _rehearsal_judges(problem: NativeProblem, rehearsal: _Rehearsal) -> bool:
    """A missing version the rehearsal judges instead (against the rehearsed library)."""
    from pytest_envguard.probes import extensions as kinds

    return (problem.kind == kinds.MISSING_VERSION and problem.version is not None
            and not rehearsal.travels(problem.library_path)
            and _family_of(problem.version) in rehearsal.ceilings)


def _family_of(version: str) -> str | None:
    from pytest_envguard.probes.extensions import version_family
    from pytest_envguard.targets import NAMED_VERSIONS

    if version in NAMED_VERSIONS:
        return NAMED_VERSIONS[version][0]
    parsed = version_family(version)
    return parsed[0] if parsed else None


def _rehearsed_extensions(requirement: Requirement, env: Environment, facts: ExtensionsFacts,
                          missed: tuple[Problem, ...], unscanned: str) -> Verdict:
    """``extensions`` as on the rehearsed machine: every version a module needs of a system
    library is judged against what that machine's library defines (glibc's against the
    rehearsed glibc; a target's other families against its policy), and, for a target
    that lists its system libraries, every system library a module loads must be one."""
    rehearsal = _rehearsal(env)
    if isinstance(rehearsal, str):
        return unknown(requirement, rehearsal, overridden=True)
    # (display, file, kind, cause) of what breaks a module there, and of what may.
    breaks: list[tuple[str, str, str, str]] = [
        (problem.display, problem.file, problem.kind, _native_cause(problem))
        for problem in facts.problems if not _rehearsal_judges(problem, rehearsal)]
    doubts: list[tuple[str, str, str, str]] = []
    for module in facts.needs:
        # Only what travels with the environment (the module, vendored libraries) keeps
        # its needs there: the machine's own libraries are its own builds.
        for need in module.versions:
            if rehearsal.travels(need.library_path) or (
                    need.needed_by is not None and not rehearsal.travels(need.needed_by)):
                continue
            lacking = rehearsal.above(need.version)
            if lacking is not None:
                via = f" (via {os.path.basename(need.needed_by)})" if need.needed_by else ""
                machine = (f"above {lacking[1]}" if rehearsal.ceilings[lacking[0]] is not None
                           else f"but the rehearsed machine has {lacking[1]}")
                breaks.append((module.display, module.file, ABOVE_TARGET,
                               f"needs {need.version} from {need.library}{via}, {machine}"))
        if rehearsal.libraries is None:
            continue
        for name, path, needer in module.libraries:
            if path is None or rehearsal.travels(path) or name in rehearsal.libraries \
                    or _ALWAYS_THERE.search(name) or (
                        needer is not None and not rehearsal.travels(needer)):
                continue
            doubts.append((module.display, module.file, OUTSIDE_TARGET,
                           f"loads {name} from this machine ({path}); "
                           f"{rehearsal.libraries_source} is not known to provide it"))
    where = " and ".join(dict.fromkeys(rehearsal.shown.values()))
    own = (f", {facts.interpreter_modules} of them the interpreter's own (not judged against "
           "the rehearsed libraries: that machine brings its own Python)"
           if facts.interpreter_modules else "")
    modules = plural(facts.modules, "module")
    if not breaks and not doubts:
        scanned = " in the distributions scanned" if facts.not_scanned else ""
        return met(requirement, f"{modules} (overridden)",
                   f"{plural(facts.modules, 'extension module')}{own}{scanned} find every library "
                   f"and symbol version they need on a machine with {where}{unscanned}",
                   overridden=True, problems=missed)
    found_in = breaks or doubts
    parts = _grouped(found_in)
    count = len({file for _, file, _, _ in found_in})
    problems = tuple(Problem(kind, f"{display}: {cause}")
                     for display, _, kind, cause in breaks + doubts) + missed
    if not breaks:
        return unknown(requirement, listing(parts) + f" (judged on a machine with {where})"
                       + unscanned,
                       found=f"{count} of {modules} unknown (overridden)", overridden=True,
                       hint="vendor the library into the wheel (auditwheel repair does), or "
                            "make sure the worker has it installed", problems=problems)
    return unmet(requirement, f"{count} of {modules} broken (overridden)", listing(parts) + unscanned,
                 hint=_rehearsal_hint(breaks, rehearsal, env), overridden=True, problems=problems)


def _grouped(findings: list[tuple[str, str, str, str]]) -> list[str]:
    """One part per cause, naming the first module it breaks and how many more."""
    causes: dict[str, list[str]] = {}
    for display, _, _, cause in findings:
        causes.setdefault(cause, []).append(display)
    return [f"{files[0]}{f' (+{len(files) - 1} more)' if len(files) > 1 else ''}: {cause}"
            for cause, files in causes.items()]


def _rehearsal_hint(breaks: list[tuple[str, str, str, str]], rehearsal: _Rehearsal,
                    env: Environment) -> str:
    from pytest_envguard import hints

    if not any(kind == ABOVE_TARGET for _, _, kind, _ in breaks):
        return "fix what breaks the modules on this machine first"
    glibc = rehearsal.ceilings.get("GLIBC")
    machine = env.platform.machine
    if glibc is None:
        return ("the rehearsed machine has no glibc: install musllinux wheels, or build the "
                "modules there")
    if len(glibc) >= 2:
        tag = hints.manylinux_tag(glibc[0], glibc[1], machine)
        return (f"install wheels built for {tag} or older (pip picks them there), or build the "
                "modules on such an image")
    return "install wheels built for the rehearsed machine, or build the modules there"


# -- import ----------------------------------------------------------------------------------


def check_import(requirement: Requirement, env: Environment) -> Verdict:
    from pytest_envguard import hints

    name = requirement.argument or ""
    facts = env.module_import(name)
    if facts.failure is None:
        found = f"{name} {facts.version}" if facts.version else name
        return met(requirement, found,
                   f"import {name} succeeds in a subprocess ({facts.elapsed:.2f} s)")
    if facts.failure is Failure.MISSING:
        return unmet(requirement, "not installed", f"{facts.error}",
                     hint=f"install the distribution that provides {name.split('.')[0]}")
    if facts.failure in (Failure.TIMEOUT, Failure.ERROR):
        return unknown(requirement, facts.error or str(facts.failure), found=str(facts.failure))
    if facts.failure is Failure.CRASHED:
        return unmet(requirement, f"crashed ({facts.signal})", facts.error or "crashed",
                     hint=f"run python -X faulthandler -c 'import {name}' to see where")
    loading = f" (loading {facts.native_file})" if facts.native_file else ""
    cause = f"; {facts.cause}" if facts.cause else ""
    hint = None
    if facts.leak is not None:
        hint = hints.import_leak_hint(name, facts.leak)
    elif facts.missing_kind == "library" and facts.missing:
        hint = hints.library_hint(facts.missing)
    elif facts.missing_kind == "version" and facts.missing:
        hint = hints.version_hint(facts.missing, None, env.platform.machine, name.split(".")[0])
    elif facts.missing_kind == "symbol":
        hint = ("an extension module was built against another version of a library it "
                "links to: reinstall the two so that they match")
    elif facts.missing_kind == "module" and facts.missing:
        hint = f"install the distribution that provides {facts.missing.split('.')[0]}"
    return unmet(requirement, "installed but broken", f"{facts.error}{loading}{cause}",
                 hint=hint or f"run python -c 'import {name}' to see the full traceback")


CHECKS: dict[str, Callable[[Requirement, Environment], Verdict]] = {
    "library": check_library,
    "extensions": check_extensions,
    "import": check_import,
}
