"""Native libraries: ``library``, ``extensions``, ``import``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from pytest_envguard.environment import Environment
from pytest_envguard.grammar import Requirement
from pytest_envguard.probes import Failure
from pytest_envguard.verdicts import Problem, Verdict, listing, met, plural, unknown, unmet

if TYPE_CHECKING:
    from pytest_envguard.probes.extensions import NativeProblem


def check_library(requirement: Requirement, env: Environment) -> Verdict:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    from pytest_envguard import hints
    from pytest_envguard.probes import loader

    name = requirement.argument or ""
    facts = env.library(name)
    if facts.path is None:
        if facts.failure is not Failure.MISSING:
            return unknown(requirement, facts.reason or f"{name}: the search could not run")
        return unmet(requirement, "not found", facts.reason or f"{name} not found",
                     hint=hints.library_hint(name)
                     or f"install the package that provides {name}, or add its directory "
                        "to LD_LIBRARY_PATH")
    candidates = list(facts.candidates)
    chosen = candidates[0]
    if requirement.specifier:
        def fits(version: str | None) -> bool:
            try:
                return version is not None and SpecifierSet(requirement.specifier).contains(
                    Version(version), prereleases=True)
            except InvalidVersion:
                return False

        if ".so" not in name:  # a short name: any of its sonames will do
            chosen = next((item for item in candidates if fits(item.version)), chosen)
        if not fits(chosen.version):
            seen = ", ".join(f"{item.version or '?'} ({item.path})" for item in candidates[:3])
            status = unknown if chosen.version is None else unmet
            return status(requirement, f"{chosen.path} ({chosen.source})",
                          f"{name} {chosen.version or 'of unknown version'} does not satisfy "
                          f"{requirement.specifier}; found {seen}",
                          hint=hints.library_hint(name))
    shown = os.path.basename(chosen.soname or chosen.path)
    reason = f"{shown} {chosen.version or ''} found through {chosen.source}".replace("  ", " ")
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
    return met(requirement, f"{chosen.path} ({chosen.source})", reason)


def _native_hint(problem: NativeProblem, env: Environment) -> str:
    from pytest_envguard import hints

    dist = problem.distribution or "the distribution"
    if problem.kind == "missing-version" and problem.version:
        return hints.version_hint(problem.version, problem.library, env.platform.machine,
                                  problem.distribution)
    if problem.kind == "missing-library" and problem.library:
        return hints.library_hint(problem.library) or (
            f"install the package that provides {problem.library}, or add its directory "
            "to LD_LIBRARY_PATH")
    if problem.kind == "wrong-architecture":
        return f"reinstall it for this interpreter: pip install --force-reinstall --no-deps {dist}"
    return f"reinstall it: pip install --force-reinstall --no-deps {dist}"


def _native_cause(problem: NativeProblem) -> str:
    via = f" (via {os.path.basename(problem.via)})" if problem.via else ""
    if problem.kind == "missing-library":
        return f"{problem.library} not found{via}"
    if problem.kind == "missing-version":
        has = f"has up to {problem.available}" if problem.available else "lacks it"
        return f"{problem.version} not in {problem.library_path}{via} ({has})"
    return f"{problem.detail}{via}"


def check_extensions(requirement: Requirement, env: Environment) -> Verdict:
    facts = env.extensions(requirement.argument)
    if facts.failure is Failure.MISSING:
        return unmet(requirement, "not installed", facts.reason or "not installed",
                     hint=f"pip install {requirement.argument}")
    if facts.failure is not None:
        return unknown(requirement, facts.reason or "the extension modules could not be checked")
    unscanned = (f"; not scanned (no RECORD): {', '.join(facts.unscanned[:5])}"
                 if facts.unscanned else "")
    if not facts.problems:
        return met(requirement, plural(facts.modules, "module"),
                   f"{plural(facts.modules, 'extension module')} ({plural(facts.files, 'ELF file')}) "
                   f"find every library and symbol version they need{unscanned}")
    # One line per cause, naming the files it breaks: a missing libcudnn breaks dozens.
    causes: dict[str, list[str]] = {}
    for problem in facts.problems:
        causes.setdefault(_native_cause(problem), []).append(problem.display)
    parts = []
    for cause, files in causes.items():
        more = f" (+{len(files) - 1} more)" if len(files) > 1 else ""
        parts.append(f"{files[0]}{more}: {cause}")
    broken = len({problem.file for problem in facts.problems})
    return unmet(requirement, f"{broken} of {plural(facts.modules, 'module')} broken",
                 listing(parts) + unscanned, hint=_native_hint(facts.problems[0], env),
                 problems=tuple(Problem(problem.kind, f"{problem.display}: {_native_cause(problem)}")
                                for problem in facts.problems))


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
    hint = None
    if facts.missing_kind == "library" and facts.missing:
        hint = hints.library_hint(facts.missing)
    elif facts.missing_kind == "version" and facts.missing:
        hint = hints.version_hint(facts.missing, None, env.platform.machine, name.split(".")[0])
    elif facts.missing_kind == "symbol":
        hint = ("an extension module was built against another version of a library it "
                "links to: reinstall the two so that they match")
    elif facts.missing_kind == "module" and facts.missing:
        hint = f"install the distribution that provides {facts.missing.split('.')[0]}"
    return unmet(requirement, "installed but broken", f"{facts.error}{loading}",
                 hint=hint or f"run python -c 'import {name}' to see the full traceback")


CHECKS: dict[str, Callable[[Requirement, Environment], Verdict]] = {
    "library": check_library,
    "extensions": check_extensions,
    "import": check_import,
}
