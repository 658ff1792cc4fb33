"""Environment hygiene: ``consistent``, ``wheels``, ``lock``, ``isolated``.

The judgements live here, as pure functions of the facts: which installed
requirements are broken (:func:`find_problems`, the verdicts of ``pip
check`` and more), which wheels this interpreter cannot use
(:func:`unsupported_wheels`), which locked packages apply to this interpreter
(:func:`applicable`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_envguard.environment import Environment
from pytest_envguard.grammar import Requirement
from pytest_envguard.probes import Failure
from pytest_envguard.verdicts import Problem as Problem_
from pytest_envguard.verdicts import Verdict, listing, met, plural, unknown, unmet

if TYPE_CHECKING:
    from packaging.requirements import Requirement as Pep508

    from pytest_envguard.checks.conda import CondaProblem
    from pytest_envguard.probes.distributions import InstalledDistribution, InstalledFacts
    from pytest_envguard.probes.locks import Dependency, LockedPackage, LockFacts


def canonical_name(name: str) -> str:
    from pytest_envguard.probes.distributions import canonical_name as canonical

    return canonical(name)


# -- consistency: the verdicts of `pip check`, and more ----------------------------------

#: What ``consistent`` reports beyond ``pip check``: the kind each such problem carries
#: in the JSON document (``pip-check`` for the rest), and why. Source for what pip
#: does: pip's ``commands/check.py`` and ``operations/check.py`` (pip 24.1+), and its
#: ``metadata/importlib`` backend (one copy per name, metadata it cannot parse skipped).
EXTENSIONS: dict[str, str] = {
    "requested-extra": "a requirement of an extra that another installed distribution "
                       "requests (pip check judges only the base requirements)",
    "invalid-requirement": "a Requires-Dist that does not parse (pip check skips the distribution)",
    "invalid-version": "a version that is not PEP 440 (pip check skips the distribution)",
    "broken-metadata": "metadata with no Name or no Version, or that cannot be read "
                       "(pip check skips the distribution)",
    "skipped-by-pip": "a requirement of a distribution whose metadata pip check cannot "
                      "parse, judged here all the same",
    "duplicate": "one name installed twice on sys.path (pip check sees only the copy in effect)",
    "unsupported-outside-env": "a wheel this interpreter does not support, installed outside "
                               "the venv (pip check looks only inside it)",
}

#: Names pip check never reports as unsupported (pip's ``stdlib_pkgs``).
_PIP_SKIPS = frozenset({"python", "wsgiref", "argparse"})


@dataclass(frozen=True)
class Problem:
    """One reason the installed set is inconsistent.

    ``kind`` is ``missing`` / ``conflict`` (a requirement not met), ``unsupported``
    (a wheel whose tags this interpreter does not support), ``invalid`` (a
    ``Requires-Dist`` that does not parse), ``invalid-version``, ``broken`` (metadata
    without a name or version, or unreadable) or ``duplicate`` (one name installed
    twice). ``extension`` is None when ``pip check`` reports the problem too, else the
    :data:`EXTENSIONS` entry that says why only this check does.
    """

    kind: str
    distribution: str  # "foo 1.0"
    requirement: str | None = None
    dependency: str | None = None  # canonical name of what is required
    installed: str | None = None  # its installed version (conflict)
    via: str | None = None  # "extra 'gpu' requested by bar 2.0"
    detail: str | None = None
    extension: str | None = None

    @property
    def pip_check(self) -> bool:
        """Whether ``pip check`` reports this problem too."""
        return self.extension is None

    @property
    def json_kind(self) -> str:
        """The kind the JSON document shows: ``pip-check``, or the extension's name."""
        return self.extension or "pip-check"

    def describe(self) -> str:
        via = f" (for {self.via})" if self.via else ""
        if self.kind == "missing":
            if self.detail:  # installed, but pip check cannot read it: "not installed" to pip
                return (f"{self.distribution} requires {self.dependency}{via}, whose metadata "
                        f"pip check cannot read ({self.detail})")
            return f"{self.distribution} requires {self.dependency}{via}, which is not installed"
        if self.kind == "conflict":
            return (f"{self.distribution} has requirement {self.requirement}{via}, "
                    f"but you have {self.dependency} {self.installed}")
        if self.kind == "unsupported":
            return f"{self.distribution} is not supported on this platform: {self.detail}"
        if self.kind == "invalid":
            return f"{self.distribution} has an invalid requirement {self.requirement!r}: {self.detail}"
        if self.kind == "duplicate":
            return f"{self.distribution} is installed twice: {self.detail}"
        return f"{self.distribution}: {self.detail}"


def _parse_requirement(text: str) -> Pep508:
    from packaging.requirements import Requirement

    return Requirement(text)


def _is_pep440(version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


def _contains(requirement: Pep508, version: str) -> bool:
    return requirement.specifier.contains(version, prereleases=True)


def _is_build_leftover(dist: InstalledDistribution) -> bool:
    """A setuptools ``*.egg-info`` in a source tree (not a site directory): what
    building an editable install leaves next to the code."""
    return (dist.path.lower().endswith(".egg-info")
            and os.path.basename(dist.location) not in ("site-packages", "dist-packages"))


def _copies(installed: InstalledFacts) -> dict[str, list[InstalledDistribution]]:
    """Every copy of each name, the one in effect first."""
    groups: dict[str, list[InstalledDistribution]] = {}
    for dist in installed.distributions:
        groups.setdefault(dist.name, []).append(dist)
    return groups


def _shadows_base(in_effect: InstalledDistribution, other: InstalledDistribution) -> bool:
    """A venv's copy over its base environment's: what ``--system-site-packages`` is for."""
    return in_effect.scope == "env" and other.scope == "base"


def shadowing_base(installed: InstalledFacts) -> list[str]:
    """The names whose venv copy shadows a copy in the venv's base environment."""
    return [name for name, dists in _copies(installed).items()
            if len(dists) > 1 and any(_shadows_base(dists[0], other) for other in dists[1:])]


def duplicate_copies(installed: InstalledFacts) -> dict[str, list[InstalledDistribution]]:
    """The names installed more than once, each with the copies that count (the one in
    effect first): a base environment's copy under a venv's and the ``*.egg-info`` an
    editable build leaves in its source tree (same version) do not count."""
    found = {}
    for name, dists in _copies(installed).items():
        if len(dists) < 2:
            continue
        counted = [dists[0], *(d for d in dists[1:] if not _shadows_base(dists[0], d))]
        versions = {dist.version for dist in counted}
        leftovers = [dist for dist in counted if _is_build_leftover(dist)]
        if len(counted) < 2 or (len(versions) == 1 and leftovers
                                and len(counted) - len(leftovers) <= 1):
            continue
        found[name] = counted
    return found


def _duplicates(installed: InstalledFacts) -> list[Problem]:
    problems = []
    for dists in duplicate_copies(installed).values():
        where = "; ".join(
            f"{dist.version or '?'} in {dist.path} (installer {dist.installer or 'unknown'}"
            f"{', in effect' if not dist.shadowed else ''})" for dist in dists)
        problems.append(Problem("duplicate", dists[0].display, detail=where, extension="duplicate"))
    return problems


def _pip_sees_local(installed: InstalledFacts, dist: InstalledDistribution) -> bool:
    """Whether ``pip check`` looks at this distribution's wheel tags: in a venv, only at
    those inside it (pip's ``local_only``)."""
    return not installed.venv or dist.scope == "env"


def pip_version(dist: InstalledDistribution) -> str:
    """The version pip judges a distribution by: the one in its ``*.dist-info``
    directory's name, else its metadata's (pip's ``metadata.importlib`` backend)."""
    return dist.directory_version or dist.version


def _read_metadata(active: Mapping[str, InstalledDistribution], problems: list[Problem],
                   ) -> tuple[dict[str, list[Pep508]], dict[str, str]]:
    """Each distribution's parsed requirements, and for those whose metadata ``pip
    check`` cannot parse (and so leaves out), why; the metadata problems go to
    ``problems``."""
    from packaging.requirements import InvalidRequirement

    parsed: dict[str, list[Pep508]] = {}
    unread: dict[str, str] = {}
    for dist in active.values():
        if dist.reason:
            problems.append(Problem("broken", dist.display, detail=f"{dist.reason} ({dist.path})",
                                    extension="broken-metadata"))
        if dist.version and not _is_pep440(dist.version):
            problems.append(Problem("invalid-version", dist.display, detail=(
                f"its version {dist.version!r} is not a PEP 440 version ({dist.path})"),
                extension="invalid-version"))
        version = pip_version(dist)
        if dist.failure is Failure.CORRUPT:  # pip's importlib.metadata raises on it
            unread[dist.name] = "its metadata is not UTF-8"
        elif not version:
            unread[dist.name] = "it has no version"
        elif not _is_pep440(version):
            unread[dist.name] = f"version {version!r} is not PEP 440"
        requirements = []
        for text in dist.requires:
            try:
                requirements.append(_parse_requirement(text))
            except InvalidRequirement as error:
                problems.append(Problem("invalid", dist.display, requirement=text,
                                        detail=str(error).splitlines()[0],
                                        extension="invalid-requirement"))
                unread.setdefault(dist.name, f"invalid requirement {text!r}")
            except RecursionError:
                problems.append(Problem("invalid", dist.display, requirement=text[:80] + "…",
                                        detail="its marker is nested too deeply",
                                        extension="invalid-requirement"))
                unread.setdefault(dist.name, "a requirement nested too deeply")
        parsed[dist.name] = requirements
    return parsed, unread


def find_problems(installed: InstalledFacts, environment: Mapping[str, str],
                  supported: Iterable[str] | None = None) -> tuple[Problem, ...]:
    """Every unmet ``Requires-Dist`` of the distributions in effect, judged as ``pip
    check`` judges them (markers evaluated for this interpreter, ``extra`` empty,
    pre-releases allowed, the copy ``importlib.metadata`` returns), plus, with
    ``supported`` tags, the wheels this interpreter does not support (``pip check``
    since pip 24.1); then what only this check sees (:data:`EXTENSIONS`)."""
    active = installed.active()
    problems: list[Problem] = []
    parsed, unread = _read_metadata(active, problems)

    def applies(requirement: Pep508, extra: str) -> bool:
        if requirement.marker is None:
            return not extra
        try:
            return bool(requirement.marker.evaluate({**environment, "extra": extra}))
        except (ValueError, KeyError):  # an undefined marker name or comparison
            return False

    requested: list[tuple[str, str, str]] = []  # (distribution, extra, who asked)

    def judge(dist: InstalledDistribution, requirement: Pep508, via: str | None) -> None:
        name = canonical_name(requirement.name)
        extension = ("requested-extra" if via else
                     "skipped-by-pip" if dist.name in unread else None)
        found = active.get(name)
        if found is None or name in unread:
            # pip check leaves out what it cannot parse, so to it that is "not installed".
            problems.append(Problem("missing", dist.display, requirement=str(requirement),
                                    dependency=name, via=via, detail=unread.get(name),
                                    extension=extension))
            return
        if not _contains(requirement, pip_version(found)):
            problems.append(Problem("conflict", dist.display, requirement=str(requirement),
                                    dependency=name, installed=pip_version(found), via=via,
                                    extension=extension))
        for extra in requirement.extras:
            requested.append((name, canonical_name(extra), dist.display))

    for dist in active.values():
        for requirement in parsed[dist.name]:
            if applies(requirement, ""):
                judge(dist, requirement, None)
    done: set[tuple[str, str]] = set()
    while requested:
        name, extra, asker = requested.pop(0)
        if (name, extra) in done:
            continue
        done.add((name, extra))
        dist = active[name]
        for requirement in parsed[name]:
            # Only what the extra adds: the base requirements were judged above.
            if applies(requirement, extra) and not applies(requirement, ""):
                judge(dist, requirement, f"extra '{extra}' requested by {asker}")
    if supported is not None:
        for dist, mismatch in _mismatches(installed, supported):
            pip_sees = _pip_sees_local(installed, dist) and dist.name not in _PIP_SKIPS
            problems.append(Problem("unsupported", dist.display, detail=mismatch.describe_tags(),
                                    extension=None if pip_sees else "unsupported-outside-env"))
    problems.extend(_duplicates(installed))
    # What pip check would say first, then what only this check sees.
    order = ("missing", "conflict", "unsupported", "invalid", "invalid-version", "broken",
             "duplicate")
    return tuple(sorted(problems, key=lambda p: (not p.pip_check, order.index(p.kind))))



# -- wheel tags ------------------------------------------------------------------------


@dataclass(frozen=True)
class WheelMismatch:
    """An installed wheel none of whose tags this interpreter supports."""

    distribution: str  # "foo 1.0"
    tags: tuple[str, ...]  # as the WHEEL file has them (compressed sets expanded)
    closest: str  # the tag that comes nearest
    parts: tuple[str, ...]  # which parts of it do not fit: "interpreter", "abi", "platform"
    detail: str

    def describe(self) -> str:
        return f"{self.distribution} ({self.closest}): {self.detail}"

    def describe_tags(self) -> str:
        """What is wrong with the tags alone (the distribution named elsewhere)."""
        return f"{self.closest}: {self.detail}" if self.tags else self.detail


#: Tags one installed wheel may declare, its compressed tag sets expanded: real
#: wheels declare a handful (numpy's manylinux wheel: 2); a WHEEL file of a few KB
#: can otherwise expand to billions.
MAX_WHEEL_TAGS = 1024


def _expand(tag_texts: Iterable[str]) -> list[tuple[str, str, str]] | None:
    """Every tag of the compressed tag sets (``cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64``),
    or None when they expand to more than :data:`MAX_WHEEL_TAGS`."""
    from packaging.tags import parse_tag

    expanded: list[tuple[str, str, str]] = []
    for text in tag_texts:
        parts = text.split("-")
        size = 1
        for part in parts:
            size *= len(part.split("."))
        if len(parts) != 3 or len(expanded) + size > MAX_WHEEL_TAGS:
            if len(parts) != 3:
                continue  # not a tag: it cannot match
            return None
        try:
            expanded += [(tag.interpreter, tag.abi, tag.platform) for tag in parse_tag(text)]
        except ValueError:  # packaging's InvalidTag: an empty part ("cp3..-none-any")
            continue
    return expanded


_PARTS = ("interpreter", "abi", "platform")


def _mismatch(dist: InstalledDistribution, supported: set[str],
              parts_of: Callable[[], tuple[set[str], set[str], set[str]]],
              ) -> WheelMismatch | None:
    if dist.wheel_tags is None:
        return None
    expanded = _expand(dist.wheel_tags)
    if expanded is None:
        return WheelMismatch(dist.display, (), "?", (),
                             f"its WHEEL file declares more than {MAX_WHEEL_TAGS} tags (not expanded)")
    if any("-".join(tag) in supported for tag in expanded):
        return None
    if not expanded:  # pip check: no Tag at all supports nothing
        return WheelMismatch(dist.display, (), "none", (), "its WHEEL file has no valid Tag line")

    parts_supported = parts_of()

    def misfit(tag: tuple[str, str, str]) -> tuple[str, ...]:
        return tuple(_PARTS[i] for i in range(3) if tag[i] not in parts_supported[i])

    closest = min(expanded, key=lambda tag: len(misfit(tag)))
    parts = misfit(closest)
    if parts:
        detail = "; ".join(f"{name} {closest[_PARTS.index(name)]} is not supported here"
                           for name in parts)
    else:
        detail = "each part is supported, but not in this combination"
    return WheelMismatch(dist.display, tuple(dist.wheel_tags), "-".join(closest), parts, detail)


def _mismatches(installed: InstalledFacts, supported: Iterable[str],
                ) -> list[tuple[InstalledDistribution, WheelMismatch]]:
    supported_set = set(supported)

    @functools.cache
    def parts_of() -> tuple[set[str], set[str], set[str]]:
        """Each part of the supported tags on its own: what says which part of a
        wheel's tag does not fit (built when the first wheel does not fit)."""
        parts: tuple[set[str], set[str], set[str]] = (set(), set(), set())
        for tag in supported_set:
            for index, part in enumerate(tag.split("-")):
                parts[index].add(part)
        return parts

    found = []
    for dist in installed.active().values():
        mismatch = _mismatch(dist, supported_set, parts_of)
        if mismatch is not None:
            found.append((dist, mismatch))
    return found


def unsupported_wheels(
    installed: InstalledFacts, supported: Iterable[str],
) -> tuple[WheelMismatch, ...]:
    """Distributions in effect none of whose WHEEL tags this interpreter supports. Those
    with no WHEEL file (sdists, eggs, conda builds) are never offenders; a WHEEL file
    with no Tag line is (pip check reports it: an empty tag set supports nothing)."""
    return tuple(mismatch for _, mismatch in _mismatches(installed, supported))


# -- what a lock file asks of this interpreter --------------------------------------------


def marker_holds(marker: str | None, environment: Mapping[str, str], extra: str = "") -> bool:
    """A lock's marker for this interpreter; one that cannot be evaluated holds
    (better a false "missing" than a silently unchecked pin)."""
    if not marker:
        return True
    from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName

    values: dict[str, Any] = {**environment, "extra": extra,
                              "extras": frozenset({extra} if extra else ()),
                              "dependency_groups": frozenset()}
    try:
        parsed = Marker(marker)
    except (InvalidMarker, TypeError, RecursionError):  # a non-string, or nested too deeply
        return True
    try:
        try:
            return bool(parsed.evaluate(values, "lock_file"))  # type: ignore[call-arg,unused-ignore]
        except TypeError:  # packaging < 25 has no evaluation context
            return bool(parsed.evaluate(values))
    except (UndefinedComparison, UndefinedEnvironmentName, ValueError, KeyError, RecursionError):
        return True


def _holds_for_an_extra(package: LockedPackage, extras: Iterable[str],
                        environment: Mapping[str, str]) -> bool:
    return any(marker_holds(package.marker, environment, extra) for extra in ("", *extras))


def applicable(lock: LockFacts, environment: Mapping[str, str]) -> list[LockedPackage]:
    """The locked packages this interpreter should have (``required``), and those it may
    have, which an installed copy must match (``required`` False): constraints, and
    what only an extra or a dependency group left out by default would install."""
    from dataclasses import replace

    if not lock.graph:
        return [p for p in lock.packages if p.installable and (
            marker_holds(p.marker, environment) if p.required
            else _holds_for_an_extra(p, lock.extras, environment))]
    by_name: dict[str, list[LockedPackage]] = {}
    for package in lock.packages:
        by_name.setdefault(package.name, []).append(package)
    roots = [p for p in lock.packages if p.root]
    if not roots:  # no workspace member recorded: every package counts
        return [p for p in lock.packages if p.installable]
    default = _walk(by_name, [(root, "") for root in roots], environment)
    everything = _walk(by_name, [(root, key) for root in roots for key in ("", *dict(root.optional))]
                       + [(p, "") for name in _extra_members(lock) for p in by_name.get(name, [])],
                       environment)
    chosen = [p for p in default.values() if p.installable]
    optional = [replace(p, required=False) for key, p in everything.items()
                if key not in default and p.installable]
    return chosen + optional


def _extra_members(lock: LockFacts) -> list[str]:
    """The packages a lock lists under the project's own extras (Poetry's ``[extras]``):
    reached in its graph through no edge."""
    names = {edge.name for package in lock.packages for key, edges in package.optional
             if key in lock.extras for edge in edges}
    return sorted(names)


def _walk(by_name: Mapping[str, list[LockedPackage]], start: list[tuple[LockedPackage, str]],
          environment: Mapping[str, str]) -> dict[tuple[str, str | None], LockedPackage]:
    """The packages reached from ``start`` (package, extra or ``group:NAME``) along the
    edges whose markers hold."""

    def pick(edge: Dependency) -> list[LockedPackage]:
        candidates = by_name.get(edge.name, [])
        if edge.version is not None:
            candidates = [p for p in candidates if p.version == edge.version] or candidates
        if len(candidates) > 1:
            fitting = [p for p in candidates if marker_holds(p.marker, environment)]
            candidates = fitting or candidates
        return candidates

    chosen: dict[tuple[str, str | None], LockedPackage] = {}
    queue = list(start)
    done: set[tuple[str, str | None, str]] = set()
    while queue:
        package, extra = queue.pop()
        key = (package.name, package.version, extra)
        if key in done:
            continue
        done.add(key)
        chosen[(package.name, package.version)] = package
        edges = list(package.dependencies) if not extra else list(
            dict(package.optional).get(extra, ()))
        marker_extra = "" if extra.startswith("group:") else extra
        for edge in edges:
            if not marker_holds(edge.marker, environment, marker_extra):
                continue
            for target in pick(edge):
                queue.append((target, ""))
                queue.extend((target, e) for e in edge.extras)
    return chosen


# -- the checks ------------------------------------------------------------------------------


def _duplicate_hint(copies: list[InstalledDistribution]) -> str:
    """Which copy to remove, and how, never by a command that would remove the copy
    in effect (a plain ``pip uninstall NAME`` removes the first copy it finds: the
    one in effect)."""
    from pytest_envguard import hints

    in_effect, others = copies[0], copies[1:]
    name = in_effect.name
    if all(other.location == in_effect.location for other in others):
        # Two metadata directories in one directory: one is what an interrupted
        # uninstall (or a copy by hand) left behind; the newer one is the live install.
        times = [dist.modified for dist in copies]
        newest = max(copies, key=lambda d: d.modified or 0.0)
        stale = [dist for dist in copies if dist is not newest]
        known = None not in times and len(set(times)) == len(times)
        return hints.duplicate_in_one_directory(
            name, [dist.path for dist in stale] if known else [dist.path for dist in copies],
            known, newest.version if known else None)
    return "; ".join(hints.remove_shadowed_copy(
        name, other.path, other.location, other.installer, in_effect.installer,
        f"{in_effect.version} in {in_effect.location}") for other in others)


def _problem_hint(problem: Problem, env: Environment) -> str:
    if problem.kind in ("missing", "conflict") and not problem.detail:
        return f"pip install '{problem.requirement}'"
    name = problem.distribution.split()[0]
    if problem.kind == "duplicate":
        copies = duplicate_copies(env.installed).get(name)
        if copies:
            return _duplicate_hint(copies)
    if problem.kind == "unsupported":
        tags = env.supported_tags.tags
        best = f" ({tags[0]})" if tags else ""
        return f"reinstall it for this interpreter{best}: pip install --force-reinstall --no-deps {name}"
    if problem.kind == "missing":  # installed, but its metadata is unreadable to pip
        name = problem.dependency or name
    return f"reinstall it: pip install --force-reinstall --no-deps {name}"


def check_consistent(requirement: Requirement, env: Environment) -> Verdict:
    verdict = _consistent(requirement, env)
    if env.rehearsed_libc() is None:
        return verdict
    # The unsupported-wheel part is judged for the rehearsed C library: said so.
    from dataclasses import replace

    return replace(verdict, overridden=True, found=f"{verdict.found} (overridden)")


def _consistent(requirement: Requirement, env: Environment) -> Verdict:
    installed = env.installed
    if installed.failure is not None:
        return unknown(requirement, installed.reason or "the installed distributions are unknown")
    supported = env.supported_tags
    if not supported.tags and any(d.wheel_tags is not None for d in installed.active().values()):
        return unknown(requirement, "cannot tell which wheels this interpreter supports: "
                                    f"{supported.reason or 'no supported tags'}")
    problems = list(find_problems(installed, env.markers, supported.tags))
    conda_found: list[CondaProblem] = []
    graph_unknown = None
    if env.in_conda_prefix():  # a venv pays one stat for this
        from pytest_envguard.checks.conda import conda_problems

        conda_found, graph_unknown = conda_problems(env)
        covered = {problem.covers for problem in conda_found if problem.covers}
        # conda's copy and another installer's of one name: said once, as the conda kind.
        problems = [p for p in problems
                    if not (p.kind == "duplicate" and p.distribution.split()[0] in covered)]
    count = len(installed.active())
    if not problems and not conda_found:
        if graph_unknown is not None:
            from pytest_envguard.checks.conda import unknown_without_rattler

            return unknown_without_rattler(requirement, graph_unknown, count)
        conda_part = ""
        if env.in_conda_prefix():
            from pytest_envguard.checks.conda import graph_summary

            conda_part = f", and {graph_summary(env)}"
        shadowing = shadowing_base(installed)
        if shadowing:
            # Not a problem: a --system-site-packages venv exists to let its own copies win.
            return met(requirement, f"{count} distributions, {len(shadowing)} shadowing the base "
                                    "environment's",
                       f"every requirement of the {count} installed distributions is met; "
                       f"this venv's {', '.join(shadowing)} shadow the copies in its base "
                       f"environment (as a --system-site-packages venv intends){conda_part}")
        return met(requirement, f"{count} distributions",
                   f"every requirement of the {count} installed distributions is met{conda_part}")
    texts = [problem.describe() for problem in problems] + [c.text for c in conda_found]
    not_judged = (f"; conda's own graph was not judged: {graph_unknown}"
                  if graph_unknown is not None else "")
    return unmet(requirement, plural(len(texts), "problem"),
                 listing(texts) + not_judged,
                 hint=_problem_hint(problems[0], env) if problems else conda_found[0].hint,
                 problems=tuple(Problem_(problem.json_kind, problem.describe())
                                for problem in problems)
                 + tuple(problem.problem() for problem in conda_found))


def rehearsed_libc_text(env: Environment) -> str | None:
    """``glibc 2.17 (target manylinux2014)``: the C library a rehearsal judges wheel tags
    with; None when neither glibc nor musl is overridden."""
    libc = env.rehearsed_libc()
    if libc is None:
        return None
    shown = [f"{name} {version}" for name, version in libc.items() if version] or ["no C library"]
    sources = [env.override_source(name) for name in libc if env.override(name) is not None]
    return f"{' and '.join(shown)} ({', '.join(dict.fromkeys(sources))})"


def check_wheels(requirement: Requirement, env: Environment) -> Verdict:
    installed, supported = env.installed, env.supported_tags
    rehearsal = rehearsed_libc_text(env)
    overridden = rehearsal is not None
    if installed.failure is not None or not supported.tags:
        return unknown(requirement, installed.reason or supported.reason or "no supported tags",
                       overridden=overridden)
    wheels = sum(1 for dist in installed.active().values() if dist.wheel_tags)
    mismatches = unsupported_wheels(installed, supported.tags)
    mark = " (overridden)" if overridden else ""
    where = f"this interpreter with {rehearsal}" if rehearsal else "this interpreter"
    if not mismatches:
        return met(requirement, f"{wheels} wheels{mark}",
                   f"every installed wheel has a tag {where} supports ({supported.tags[0]}, …)",
                   overridden=overridden)
    first = mismatches[0].distribution.split()[0]
    hint = (f"reinstall for this interpreter ({supported.tags[0]}): "
            f"pip install --force-reinstall --no-deps {first}")
    if rehearsal:
        platform = next((tag.split("-")[2] for tag in supported.tags
                         if tag.split("-")[2].startswith(("manylinux", "musllinux"))), None)
        hint = (f"on that machine pip takes wheels tagged {platform} or older: install builds "
                f"of {first} made for it (pip download --only-binary=:all: --platform "
                f"{platform} {first})" if platform else
                f"that machine takes no manylinux or musllinux wheel: build {first} there")
    listed = listing([mismatch.describe() for mismatch in mismatches])
    return unmet(requirement, f"{len(mismatches)} unsupported{mark}",
                 f"{where}: {listed}" if rehearsal else listed,
                 hint=hint, overridden=overridden,
                 problems=tuple(Problem_("unsupported-wheel", mismatch.describe())
                                for mismatch in mismatches))


def same_version(installed: str, locked: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(installed) == Version(locked)
    except InvalidVersion:
        return installed == locked


def check_lock(requirement: Requirement, env: Environment) -> Verdict:
    from pytest_envguard import hints

    lock = env.lock(requirement.argument or "")
    if lock.failure is Failure.UNSUPPORTED and lock.conda:  # py-rattler is not installed
        return unknown(requirement, f"lock file unusable: {lock.reason}", found="unreadable",
                       hint=hints.CONDA_EXTRA_HINT)
    if lock.failure is not None:
        # The line parsed; the file did not. `unknown` (which fails a contract)
        # carries the file:line, since the plugin cannot read the file at parse time.
        return unknown(requirement, f"lock file unusable: {lock.reason}", found="unreadable",
                       hint="fix or regenerate the lock file")
    if lock.conda:
        from pytest_envguard.checks.conda import check_conda_lock

        return check_conda_lock(requirement, env, lock)
    installed = env.installed
    active = installed.active()
    wanted = applicable(lock, env.markers)
    differ: list[str] = []
    missing: list[str] = []
    for name in dict.fromkeys(package.name for package in wanted):
        versions = [package for package in wanted if package.name == name]
        found = active.get(name)
        if found is None:
            if any(package.required for package in versions):
                pinned = versions[0]
                missing.append(f"{name}{'==' + pinned.version if pinned.version else ''} "
                               f"({pinned.source})")
            continue
        pinned_versions = [package.version for package in versions if package.version]
        if pinned_versions and not any(same_version(found.version, v) for v in pinned_versions):
            differ.append(f"{name} {found.version} installed, lock has {pinned_versions[0]} "
                          f"({versions[0].source})")
    locked_names = {package.name for package in lock.packages}
    extra = sorted(name for name in active if name not in locked_names
                   and name not in hints.LOCK_EXEMPT)
    mode = env.settings.lock_extras
    name = lock.filename
    extra_text = f"; not in the lock: {', '.join(extra[:8])}{' …' if len(extra) > 8 else ''}" \
        if extra and mode != "ignore" else ""
    if differ or missing or (extra and mode == "fail"):
        parts = [f"{len(differ)} differ", f"{len(missing)} missing"]
        if mode == "fail":
            parts.append(f"{len(extra)} extra")
        problems = differ + [f"missing {item}" for item in missing]
        listed = ([Problem_("differs", item) for item in differ]
                  + [Problem_("missing", f"missing {item}") for item in missing]
                  + [Problem_("extra", f"{item} is not in the lock") for item in extra
                     if mode == "fail"])
        return unmet(requirement, ", ".join(parts),
                     f"{name}: " + listing(problems) + extra_text if problems
                     else f"{name}: installed distributions are not in the lock{extra_text}",
                     hint=hints.lock_hint(lock.format, requirement.argument or lock.path),
                     problems=tuple(listed))
    return met(requirement, f"{len(wanted)} pinned",
               f"{name}: the {len(wanted)} packages locked for this interpreter are installed "
               f"at the locked versions{extra_text}")


def check_isolated(requirement: Requirement, env: Environment) -> Verdict:
    facts = env.isolation
    if not facts.leaks:
        return met(requirement, facts.kind, f"running in a {facts.kind} ({facts.prefix}) "
                                            "with no activation leaks")
    return unmet(requirement,
                 f"{facts.kind}, {len(facts.leaks)} leak{'s' if len(facts.leaks) > 1 else ''}",
                 "; ".join(leak.reason for leak in facts.leaks),
                 hint="; ".join(dict.fromkeys(leak.hint for leak in facts.leaks)))



CHECKS: dict[str, Callable[[Requirement, Environment], Verdict]] = {
    "consistent": check_consistent,
    "wheels": check_wheels,
    "lock": check_lock,
    "isolated": check_isolated,
}
