"""Native libraries: ``library``, ``extensions``, ``import``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
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
    from pytest_envguard.probes.extensions import NativeOwners, NativeProblem, NotScanned
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
    return f"{problem.detail}{via}"


def check_extensions(requirement: Requirement, env: Environment) -> Verdict:
    from pytest_envguard.checks.conda import duplicate_hint, duplicate_problems, native_owners

    facts = env.extensions(requirement.argument)
    if facts.failure is Failure.MISSING:
        return unmet(requirement, "not installed", facts.reason or "not installed",
                     hint=f"pip install {requirement.argument}")
    if facts.failure is not None:
        return unknown(requirement, facts.reason or "the extension modules could not be checked")
    own = (f", {facts.interpreter_modules} of them the interpreter's own"
           if facts.interpreter_modules else "")
    owners = native_owners(env, requirement.argument, facts)  # in a conda prefix only
    twice = duplicate_problems(owners) if owners is not None else []
    missed = tuple(Problem(NOT_SCANNED, f"{item.distribution}: not scanned: {item.reason}")
                   for item in facts.not_scanned)
    unscanned = (f"; not scanned: {listing([_not_scanned(item) for item in facts.not_scanned])}"
                 if facts.not_scanned else "")
    if not facts.problems and not twice:
        if facts.not_scanned and requirement.argument is not None:
            # Its modules are unknown, so whether they load is too: never met.
            return unknown(requirement, f"not scanned: {facts.not_scanned[0].reason}; whether "
                           f"the extension modules of {requirement.argument} load is not known",
                           hint=_not_scanned_hint(facts.not_scanned[0].distribution),
                           problems=missed)
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
