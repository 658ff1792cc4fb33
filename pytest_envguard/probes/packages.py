"""Installed distributions: versions, locations, installers, requirements, wheel tags.

Two ways in:

* :func:`probe_distribution` asks ``importlib.metadata`` about one name (the
  ``package`` key);
* :func:`scan_distributions` walks every ``sys.path`` entry once with
  ``os.scandir``, reading only the header block of each ``METADATA`` /
  ``PKG-INFO`` (never the long description) plus ``INSTALLER`` and
  ``WHEEL``. That is what ``consistent``, ``wheels`` and ``lock`` judge, and
  why they cost milliseconds where ``pip check`` costs most of a second.

The judgements themselves (:func:`find_problems`, :func:`unsupported_wheels`)
are pure functions of the facts, so tests build the facts by hand.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_envguard.probes import Facts, describe_error, open_regular

if TYPE_CHECKING:
    from packaging.requirements import Requirement


@dataclass(frozen=True)
class DistributionFacts(Facts):
    name: str  # as asked
    version: str | None  # None: not installed
    location: str | None = None
    reason: str | None = None


def probe_distribution(name: str) -> DistributionFacts:
    from importlib import metadata

    try:
        distribution = metadata.distribution(name)  # finds the directory; reads nothing yet
        version = _version_of(distribution)
        location = str(distribution.locate_file(""))
    except metadata.PackageNotFoundError:
        return DistributionFacts(name, None, reason="not installed")
    except (OSError, ValueError) as error:  # (UnicodeDecodeError is a ValueError)
        return DistributionFacts(name, None, reason=describe_error(error))
    if not version:
        return DistributionFacts(name, None, location, "its metadata has no Version")
    return DistributionFacts(name, version, location)


def _version_of(distribution: Any) -> str | None:
    """The Version header, read the way :func:`scan_distributions` reads it when the
    metadata lies on disk: ``importlib.metadata`` would open a FIFO named METADATA and
    wait for a writer forever. Other finders' distributions (zips, custom) are asked."""
    path = getattr(distribution, "_path", None)  # PathDistribution's metadata directory
    if isinstance(path, os.PathLike) and type(path).__module__.startswith("pathlib"):
        meta = os.fspath(path)
        if os.path.isdir(meta):
            names = ("METADATA", "PKG-INFO")
            meta = next((os.path.join(meta, name) for name in names
                         if os.path.lexists(os.path.join(meta, name))), os.path.join(meta, names[0]))
        return next(iter(read_metadata_headers(meta).get("version", ())), None)
    # ``get_all``, not ``.version``: from 3.12 a missing header through ``[]`` warns.
    return next(iter(distribution.metadata.get_all("Version") or ()), None)


# -- every installed distribution ----------------------------------------------------


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: ``Foo_Bar.baz`` → ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class InstalledDistribution(Facts):
    """One ``*.dist-info`` or ``*.egg-info`` found on ``sys.path``."""

    name: str  # canonical (PEP 503)
    version: str  # "" when the metadata has none
    path: str  # the metadata directory (or egg-info file)
    location: str  # the sys.path entry it was found in
    installer: str | None = None  # INSTALLER ("pip", "uv", "conda"), or found in conda-meta
    requires: tuple[str, ...] = ()  # Requires-Dist, or requires.txt converted
    extras: tuple[str, ...] = ()  # Provides-Extra
    wheel_tags: tuple[str, ...] | None = None  # WHEEL's Tag lines; None: no WHEEL file
    shadowed: bool = False  # a distribution of that name earlier on sys.path wins
    reason: str | None = None  # what is wrong with its metadata

    @property
    def display(self) -> str:
        return f"{self.name} {self.version or '(no version)'}"


@dataclass(frozen=True)
class InstalledFacts(Facts):
    """Every distribution on the interpreter's ``sys.path``, in ``sys.path`` order."""

    distributions: tuple[InstalledDistribution, ...]
    paths: tuple[str, ...]  # the sys.path entries scanned
    marker_environment: tuple[tuple[str, str], ...]  # PEP 508 values of this interpreter
    reason: str | None = None

    def active(self) -> dict[str, InstalledDistribution]:
        """The distribution ``importlib.metadata`` returns for each name: the first."""
        return {dist.name: dist for dist in self.distributions if not dist.shadowed}

    def installers(self) -> dict[str, int]:
        """How many distributions each installer put there (``?``: unknown)."""
        counts: dict[str, int] = {}
        for dist in self.distributions:
            key = dist.installer or "?"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def summary(self) -> str:
        installers = ", ".join(f"{name} {count}" for name, count in self.installers().items())
        return f"{len(self.distributions)} distributions ({installers or 'none'})"

    def to_dict(self) -> dict[str, Any]:
        # The full requirement lists would swamp the report; name → version is
        # what a matrix comparison needs.
        return {
            "count": len(self.distributions),
            "installers": self.installers(),
            "distributions": {
                dist.name: dist.version for dist in self.distributions if not dist.shadowed
            },
            "shadowed": [f"{dist.display} in {dist.location}"
                         for dist in self.distributions if dist.shadowed],
            "reason": self.reason,
        }


_META_SUFFIXES = (".dist-info", ".egg-info")
_HEADERS = ("name", "version", "requires-dist", "provides-extra")


def read_metadata_headers(path: str) -> dict[str, list[str]]:
    """The header block of a METADATA/PKG-INFO file (RFC 822 style), stopping at
    the body: ``{"name": ["foo"], "requires-dist": [...]}``, lower-cased keys."""
    headers: dict[str, list[str]] = {}
    last: str | None = None
    with open_regular(path, "utf-8", "surrogateescape") as file:
        for raw in file:
            line = raw.rstrip("\r\n")
            if not line:
                break
            if line[0] in " \t":  # a folded continuation line
                if last is not None and last in headers:
                    headers[last][-1] += " " + line.strip()
                continue
            key, colon, value = line.partition(":")
            if not colon:
                break  # not a header: the body started without a blank line
            last = key.strip().lower()
            if last in _HEADERS:
                headers.setdefault(last, []).append(value.strip())
    return headers


def requires_txt_requirements(text: str) -> list[str]:
    """setuptools' ``requires.txt`` as ``Requires-Dist`` strings:
    ``[extra:marker]`` sections become ``(marker) and extra == "extra"``."""
    requirements: list[str] = []
    extra = marker = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            extra, _, marker = line[1:-1].partition(":")
            extra = canonical_name(extra.strip()) if extra.strip() else ""
            marker = marker.strip()
            continue
        if extra and marker:
            condition = f'({marker}) and extra == "{extra}"'
        elif extra:
            condition = f'extra == "{extra}"'
        else:
            condition = marker
        requirements.append(f"{line} ; {condition}" if condition else line)
    return requirements


def _read_small(path: str) -> str | None:
    try:
        with open_regular(path, "utf-8", "replace") as file:
            text: str = file.read(64 << 20)
            return text
    except OSError:
        return None


def _wheel_tags(text: str) -> tuple[str, ...]:
    tags = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "tag" and value.strip():
            tags.append(value.strip())
    return tuple(tags)


def read_distribution(meta_path: str, location: str) -> InstalledDistribution:
    """One metadata directory (or distutils' egg-info *file*)."""
    base = os.path.basename(meta_path)
    stem = base.rpartition(".")[0]
    guessed = canonical_name(stem.partition("-")[0])
    is_dir = os.path.isdir(meta_path)
    if is_dir:
        metadata_file = os.path.join(
            meta_path, "METADATA" if base.lower().endswith(".dist-info") else "PKG-INFO")
    else:
        metadata_file = meta_path
    try:
        headers = read_metadata_headers(metadata_file)
    except (OSError, UnicodeError) as error:
        return InstalledDistribution(guessed, "", meta_path, location,
                                     reason=f"unreadable metadata: {describe_error(error)}")
    name = (headers.get("name") or [""])[0]
    version = (headers.get("version") or [""])[0]
    requires = tuple(headers.get("requires-dist", ()))
    installer = wheel_tags = None
    if is_dir:
        if not requires and not base.lower().endswith(".dist-info"):
            text = _read_small(os.path.join(meta_path, "requires.txt"))
            if text:
                requires = tuple(requires_txt_requirements(text))
        installer = (_read_small(os.path.join(meta_path, "INSTALLER")) or "").strip() or None
        wheel = _read_small(os.path.join(meta_path, "WHEEL"))
        wheel_tags = _wheel_tags(wheel) if wheel is not None else None
    reason = None
    if not name:
        reason = "its metadata has no Name"
    elif not version:
        reason = "its metadata has no Version"
    return InstalledDistribution(
        name=canonical_name(name) if name else guessed,
        version=version,
        path=meta_path,
        location=location,
        installer=installer,
        requires=requires,
        extras=tuple(canonical_name(extra) for extra in headers.get("provides-extra", ())),
        wheel_tags=wheel_tags,
        reason=reason,
    )


def _metadata_entries(location: str) -> Iterator[str]:
    try:
        with os.scandir(location) as entries:
            names = [entry.name for entry in entries
                     if entry.name.lower().endswith(_META_SUFFIXES)]
    except OSError:  # missing, not a directory (a zip on sys.path), unreadable
        return
    # Sorted, so that two versions in one directory come out the same on every run.
    for name in sorted(names):
        yield os.path.join(location, name)


def _conda_meta_names(location: str, cache: dict[str, frozenset[str] | None]) -> frozenset[str] | None:
    """The metadata directory names that conda's ``conda-meta/*.json`` list
    for the environment holding ``location`` (None: not a conda env)."""
    root = location
    for _ in range(4):  # site-packages → pythonX.Y → lib → prefix
        if root in cache:
            return cache[root]
        if os.path.isdir(os.path.join(root, "conda-meta")):
            break
        parent = os.path.dirname(root)
        if parent == root:
            return None
        root = parent
    else:
        return None
    names: set[str] = set()
    pattern = re.compile(r'([^"/\\]+\.(?:dist-info|egg-info))[/\\"]')
    try:
        with os.scandir(os.path.join(root, "conda-meta")) as entries:
            for entry in entries:
                if entry.name.endswith(".json"):
                    # A substring scan, not a JSON parse: these files can be large
                    # and all we need is which metadata directories they own.
                    names.update(pattern.findall(_read_small(entry.path) or ""))
    except OSError:
        cache[root] = None
        return None
    cache[root] = frozenset(names)
    return cache[root]


def marker_environment() -> dict[str, str]:
    """The PEP 508 marker values of this interpreter."""
    from packaging.markers import default_environment

    return {key: str(value) for key, value in default_environment().items()}


def scan_distributions(
    paths: Sequence[str], environment: Mapping[str, str] | None = None,
) -> InstalledFacts:
    """Every distribution on ``paths`` (in that order, later ones of a name shadowed)."""
    seen: set[str] = set()
    scanned: list[str] = []
    distributions: list[InstalledDistribution] = []
    conda_cache: dict[str, frozenset[str] | None] = {}
    for entry in paths:
        location = os.path.abspath(entry or os.curdir)
        if location in scanned:
            continue
        scanned.append(location)
        for meta_path in _metadata_entries(location):
            dist = read_distribution(meta_path, location)
            if dist.installer is None:
                owned = _conda_meta_names(location, conda_cache)
                if owned is not None and os.path.basename(meta_path) in owned:
                    dist = _replace(dist, installer="conda")
            if dist.name in seen:
                dist = _replace(dist, shadowed=True)
            seen.add(dist.name)
            distributions.append(dist)
    env = dict(environment) if environment is not None else marker_environment()
    return InstalledFacts(tuple(distributions), tuple(scanned), tuple(sorted(env.items())))


def _replace(dist: InstalledDistribution, **changes: Any) -> InstalledDistribution:
    from dataclasses import replace

    return replace(dist, **changes)


def probe_installed() -> InstalledFacts:
    """The distributions of this interpreter, as its ``sys.path`` stands now."""
    try:
        return scan_distributions(list(sys.path))
    except (OSError, ValueError) as error:  # pragma: no cover - scandir errors are caught inside
        return InstalledFacts((), (), (), reason=describe_error(error))


# -- consistency: the verdicts of `pip check`, and more ----------------------------------


@dataclass(frozen=True)
class Problem(Facts):
    """One reason the installed set is inconsistent.

    ``kind`` is ``missing`` / ``conflict`` (what ``pip check`` reports, or
    with ``via`` set, through a requested extra), ``invalid`` (a
    ``Requires-Dist`` that does not parse), ``broken`` (metadata without a
    name or version) or ``duplicate`` (one name installed twice on sys.path).
    """

    kind: str
    distribution: str  # "foo 1.0"
    requirement: str | None = None
    dependency: str | None = None  # canonical name of what is required
    installed: str | None = None  # its installed version (conflict)
    via: str | None = None  # "extra 'gpu' requested by bar 2.0"
    detail: str | None = None

    @property
    def pip_check(self) -> bool:
        """Whether ``pip check`` reports this problem too."""
        return self.kind in ("missing", "conflict") and self.via is None

    def describe(self) -> str:
        via = f" (for {self.via})" if self.via else ""
        if self.kind == "missing":
            return f"{self.distribution} requires {self.dependency}{via}, which is not installed"
        if self.kind == "conflict":
            return (f"{self.distribution} has requirement {self.requirement}{via}, "
                    f"but you have {self.dependency} {self.installed}")
        if self.kind == "invalid":
            return f"{self.distribution} has an invalid requirement {self.requirement!r}: {self.detail}"
        if self.kind == "duplicate":
            return f"{self.distribution} is installed twice: {self.detail}"
        return f"{self.distribution}: {self.detail}"


def _parse_requirement(text: str) -> Requirement:
    from packaging.requirements import Requirement

    return Requirement(text)


def _contains(requirement: Requirement, version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(version)
    except InvalidVersion:
        # Only an empty specifier admits a version PEP 440 cannot read.
        return not requirement.specifier
    return requirement.specifier.contains(parsed, prereleases=True)


def _is_build_leftover(dist: InstalledDistribution) -> bool:
    """A setuptools ``*.egg-info`` in a source tree (not a site directory): what
    building an editable install leaves next to the code."""
    return (dist.path.lower().endswith(".egg-info")
            and os.path.basename(dist.location) not in ("site-packages", "dist-packages"))


def _duplicates(installed: InstalledFacts) -> list[Problem]:
    groups: dict[str, list[InstalledDistribution]] = {}
    for dist in installed.distributions:
        groups.setdefault(dist.name, []).append(dist)
    problems = []
    for dists in groups.values():
        if len(dists) < 2:
            continue
        versions = {dist.version for dist in dists}
        leftovers = [dist for dist in dists if _is_build_leftover(dist)]
        if len(versions) == 1 and leftovers and len(dists) - len(leftovers) <= 1:
            continue  # same version, the extra copy is an editable build's egg-info
        where = "; ".join(
            f"{dist.version or '?'} in {dist.path} (installer {dist.installer or 'unknown'}"
            f"{', in effect' if not dist.shadowed else ''})" for dist in dists)
        problems.append(Problem("duplicate", dists[0].display, detail=where))
    return problems


def find_problems(installed: InstalledFacts) -> tuple[Problem, ...]:
    """Every unmet ``Requires-Dist`` of the distributions in effect, as ``pip
    check`` judges them (markers evaluated for this interpreter, ``extra``
    empty), plus the requirements of extras that another installed
    distribution asked for, plus invalid metadata and duplicates."""
    from packaging.requirements import InvalidRequirement

    environment = dict(installed.marker_environment)
    active = installed.active()
    problems: list[Problem] = []
    parsed: dict[str, list[Requirement]] = {}
    for dist in active.values():
        if dist.reason:
            problems.append(Problem("broken", dist.display, detail=f"{dist.reason} ({dist.path})"))
        requirements = []
        for text in dist.requires:
            try:
                requirements.append(_parse_requirement(text))
            except InvalidRequirement as error:
                problems.append(Problem("invalid", dist.display, requirement=text,
                                        detail=str(error).splitlines()[0]))
            except RecursionError:
                problems.append(Problem("invalid", dist.display, requirement=text[:80] + "…",
                                        detail="its marker is nested too deeply"))
        parsed[dist.name] = requirements

    def applies(requirement: Requirement, extra: str) -> bool:
        if requirement.marker is None:
            return not extra
        try:
            return bool(requirement.marker.evaluate({**environment, "extra": extra}))
        except (ValueError, KeyError):  # an undefined marker name or comparison
            return False

    requested: list[tuple[str, str, str]] = []  # (distribution, extra, who asked)

    def judge(dist: InstalledDistribution, requirement: Requirement, via: str | None) -> None:
        name = canonical_name(requirement.name)
        found = active.get(name)
        if found is None:
            problems.append(Problem("missing", dist.display, requirement=str(requirement),
                                    dependency=name, via=via))
            return
        if not _contains(requirement, found.version):
            problems.append(Problem("conflict", dist.display, requirement=str(requirement),
                                    dependency=name, installed=found.version, via=via))
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
    problems.extend(_duplicates(installed))
    # What pip check would say first, then what only this check sees.
    order = ("missing", "conflict", "invalid", "broken", "duplicate")
    return tuple(sorted(problems, key=lambda p: (p.via is not None, order.index(p.kind))))


# -- wheel tags ------------------------------------------------------------------------


@dataclass(frozen=True)
class SupportedTags(Facts):
    """The wheel tags this interpreter accepts (``packaging.tags.sys_tags``), best first."""

    tags: tuple[str, ...]
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"best": self.tags[0] if self.tags else None, "count": len(self.tags),
                "reason": self.reason}


def probe_supported_tags() -> SupportedTags:
    from packaging import tags

    try:
        return SupportedTags(tuple(str(tag) for tag in tags.sys_tags()))
    except (OSError, ValueError) as error:  # pragma: no cover - sys_tags reads the OS
        return SupportedTags((), reason=describe_error(error))


@dataclass(frozen=True)
class WheelMismatch(Facts):
    """An installed wheel none of whose tags this interpreter supports."""

    distribution: str  # "foo 1.0"
    tags: tuple[str, ...]  # as the WHEEL file has them (compressed sets expanded)
    closest: str  # the tag that comes nearest
    parts: tuple[str, ...]  # which parts of it do not fit: "interpreter", "abi", "platform"
    detail: str

    def describe(self) -> str:
        return f"{self.distribution} ({self.closest}): {self.detail}"


def _expand(tag_text: str) -> list[tuple[str, str, str]]:
    interpreters, _, rest = tag_text.partition("-")
    abis, _, platforms = rest.partition("-")
    return [(i, a, p) for i in interpreters.split(".") for a in abis.split(".")
            for p in platforms.split(".")]


def unsupported_wheels(
    installed: InstalledFacts, supported: Iterable[str],
) -> tuple[WheelMismatch, ...]:
    """Distributions in effect whose WHEEL tags are all unsupported; those with no
    WHEEL file (sdist, egg, conda builds) are never offenders."""
    supported_set = set(supported)
    parts_supported: tuple[set[str], set[str], set[str]] = (set(), set(), set())
    for tag in supported_set:
        for index, part in enumerate(tag.split("-")):
            parts_supported[index].add(part)
    names = ("interpreter", "abi", "platform")
    mismatches = []
    for dist in installed.active().values():
        if not dist.wheel_tags:
            continue
        expanded = [tag for text in dist.wheel_tags for tag in _expand(text)]
        if any("-".join(tag) in supported_set for tag in expanded):
            continue
        if not expanded:
            continue

        def misfit(tag: tuple[str, str, str]) -> tuple[str, ...]:
            return tuple(names[i] for i in range(3) if tag[i] not in parts_supported[i])

        closest = min(expanded, key=lambda tag: len(misfit(tag)))
        parts = misfit(closest)
        if parts:
            detail = "; ".join(
                f"{name} {closest[names.index(name)]} is not supported here" for name in parts)
        else:
            detail = "each part is supported, but not in this combination"
        mismatches.append(WheelMismatch(dist.display, tuple(dist.wheel_tags),
                                        "-".join(closest), parts, detail))
    return tuple(mismatches)
