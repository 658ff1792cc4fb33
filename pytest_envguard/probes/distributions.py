"""Installed distributions: versions, locations, installers, requirements, wheel tags.

Two ways in:

* :func:`probe_distribution` asks ``importlib.metadata`` about one name (the
  ``package`` key);
* :func:`scan_distributions` walks every ``sys.path`` entry once with
  ``os.scandir``, reading the header block of each ``METADATA`` /
  ``PKG-INFO`` (one read of at most :data:`HEADER_CHUNK` bytes: never the
  whole long description) plus ``INSTALLER`` and ``WHEEL``. That is what
  ``consistent``, ``wheels`` and ``lock`` judge, and why they cost
  milliseconds where ``pip check`` costs most of a second.

Facts only: what is inconsistent, unsupported or off the lock is judged in
:mod:`pytest_envguard.checks.hygiene`. Every read is bounded (header lines,
header count, file sizes), so a hostile ``METADATA`` or ``WHEEL`` costs
nothing more than a well-formed one.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_envguard.probes import Facts, Failure, describe_error
from pytest_envguard.probes._io import TooLarge, failure_of, open_regular, read_prefix, read_small

#: Bounds on what one distribution's metadata may make the scan read.
MAX_HEADER_LINE = 64 << 10  # characters in one header line (folded lines joined)
MAX_HEADERS = 10_000  # header lines read per file (past them: Failure.TOO_LARGE)
MAX_SMALL_FILE = 1 << 20  # INSTALLER, WHEEL, requires.txt


@dataclass(frozen=True)
class DistributionFacts(Facts):
    """One distribution as ``importlib.metadata`` finds it (the ``package`` key)."""

    name: str  # as asked
    version: str | None  # None: not installed, or no readable version
    location: str | None = None
    reason: str | None = None
    failure: Failure | None = None  # MISSING: not installed


def probe_distribution(name: str) -> DistributionFacts:
    from importlib import metadata

    try:
        distribution = metadata.distribution(name)  # finds the directory; reads nothing yet
        version = _version_of(distribution)
        location = str(distribution.locate_file(""))
    except metadata.PackageNotFoundError:
        return DistributionFacts(name, None, reason="not installed", failure=Failure.MISSING)
    except (OSError, TooLarge, ValueError) as error:  # (UnicodeDecodeError is a ValueError)
        return DistributionFacts(name, None, reason=describe_error(error), failure=failure_of(error))
    if not version:
        return DistributionFacts(name, None, location, "its metadata has no Version",
                                 Failure.CORRUPT)
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


_SEPARATORS = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: ``Foo_Bar.baz`` → ``foo-bar-baz``. The rule itself, not
    ``packaging.utils.canonicalize_name``: importing that module imports
    ``packaging.tags`` (and ``platform``, ``subprocess``, ``logging``), a third of
    what ``python -m pytest_envguard consistent`` would otherwise cost. A test
    holds the two to the same answers."""
    return _SEPARATORS.sub("-", name).lower()


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
    shadowed: bool = False  # a copy of that name found before it wins (see scan_distributions)
    reason: str | None = None  # what is wrong with its metadata
    # why its metadata could not be read (CORRUPT: not UTF-8), or not whole (TOO_LARGE:
    # more header lines than MAX_HEADERS; those read are kept)
    failure: Failure | None = None
    directory_version: str | None = None  # the version in a *.dist-info name (what pip reads)
    scope: str = "env"  # where its location lies: see SCOPES
    modified: float | None = None  # mtime of its metadata, read only for names found twice
    conda_package: str | None = None  # the conda package whose conda-meta record lists it

    @property
    def display(self) -> str:
        return f"{self.name} {self.version or '(no version)'}"

    @property
    def manager(self) -> str:
        """Which package manager installed it: ``conda`` when a conda record lists its
        metadata (whatever its ``INSTALLER`` says now), else its ``INSTALLER`` (``pip``,
        ``uv``, ``uv-pixi``, …), else ``unknown``."""
        return "conda" if self.conda_package else (self.installer or "unknown")


#: Where a distribution's location lies, relative to the interpreter's environment:
#: ``env``: inside ``sys.prefix`` (or anywhere, when the interpreter is not in a venv);
#: ``base``: inside the base environment of a venv made with ``--system-site-packages``;
#: ``outside``: neither (a ``PYTHONPATH`` entry, the user site, a source tree).
SCOPES = ("env", "base", "outside")


@dataclass(frozen=True)
class InstalledFacts(Facts):
    """Every distribution on the interpreter's ``sys.path``, in the order
    ``importlib.metadata`` finds them: ``sys.path`` order, and within one directory
    the directory's own listing order (``os.listdir``), so the first copy of a name
    is the one ``importlib.metadata.distribution()`` returns."""

    distributions: tuple[InstalledDistribution, ...]
    paths: tuple[str, ...]  # the sys.path entries scanned
    reason: str | None = None
    failure: Failure | None = None
    venv: bool = False  # the interpreter runs in a venv (sys.prefix != sys.base_prefix)

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

    def managers(self) -> dict[str, int]:
        """How many distributions in effect each package manager installed (see
        :attr:`InstalledDistribution.manager`)."""
        counts: dict[str, int] = {}
        for dist in self.active().values():
            counts[dist.manager] = counts.get(dist.manager, 0) + 1
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
            "managers": self.managers(),
            "installed_by": {dist.name: dist.manager for dist in self.distributions
                             if not dist.shadowed},
            "conda_packages": {dist.name: dist.conda_package for dist in self.distributions
                               if not dist.shadowed and dist.conda_package},
        }


_META_SUFFIXES = (".dist-info", ".egg-info")
_HEADERS = ("name", "version", "requires-dist", "provides-extra")


def read_metadata_headers(path: str) -> dict[str, list[str]]:
    """The header block of a METADATA/PKG-INFO file (RFC 822 style), stopping at
    the body: ``{"name": ["foo"], "requires-dist": [...]}``, lower-cased keys."""
    return _read_headers(path)[0]


#: The first read of a metadata file: the header block of nearly every distribution fits
#: (the body, a long description, is not read); a longer block is read again line by line.
HEADER_CHUNK = 32 << 10


def _read_headers(path: str) -> tuple[dict[str, list[str]], bool]:
    """The headers, and whether the block goes on past :data:`MAX_HEADERS` lines
    (then the headers after that were not read).

    One read of :data:`HEADER_CHUNK` bytes, split into lines as a text file is
    (universal newlines: ``\\n``, ``\\r\\n``, ``\\r``); when the block does not end
    within it, the file is read again through a text file object, line by line. A
    test holds the two ways to the same answers on every input, at every chunk size."""
    data, whole = read_prefix(path, HEADER_CHUNK)
    text = io.StringIO(data.decode("utf-8", "surrogateescape"), newline=None)
    parsed = _parse_headers(text.readline, path, whole)
    if parsed is None:
        with open_regular(path, "utf-8", "surrogateescape") as file:
            parsed = _parse_headers(file.readline, path, True)
    assert parsed is not None  # the whole file was there to read
    return parsed


def _parse_headers(readline: Callable[[int], str], path: str, whole: bool,
                   ) -> tuple[dict[str, list[str]], bool] | None:
    """:func:`_read_headers` over the lines ``readline`` gives; None when they run out
    before the block ends and are not the ``whole`` file (the rest was not read)."""
    headers: dict[str, list[str]] = {}
    last: str | None = None
    kept = 0
    while True:
        raw = readline(MAX_HEADER_LINE + 1)
        if not whole and not raw.endswith("\n"):
            return None  # the read ended within this line (or before it)
        if len(raw) > MAX_HEADER_LINE:
            raise TooLarge(f"{path}: a header line longer than {MAX_HEADER_LINE} characters")
        line = raw.rstrip("\r\n")
        if not line:
            break
        if kept == MAX_HEADERS:
            return headers, True  # one more header line: the block goes on
        kept += 1
        if line[0] in " \t":  # a folded continuation line
            if last is not None and last in headers:
                joined = headers[last][-1] + " " + line.strip()
                if len(joined) > MAX_HEADER_LINE:
                    raise TooLarge(f"{path}: a header longer than {MAX_HEADER_LINE} characters")
                headers[last][-1] = joined
            continue
        key, colon, value = line.partition(":")
        if not colon:
            break  # not a header: the body started without a blank line
        last = key.strip().lower()
        if last in _HEADERS:
            headers.setdefault(last, []).append(value.strip())
    return headers, False


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


def _wheel_tags(text: str) -> tuple[str, ...]:
    """The ``Tag`` headers of a WHEEL file, read as pip reads them (an RFC 822 header
    block: it ends at the first blank line)."""
    tags = []
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        if key.strip().lower() == "tag" and value.strip():
            tags.append(value.strip())
    return tuple(tags)


def _directory_identity(meta_path: str, location: str) -> tuple[str, str | None]:
    """The name (canonical) and version a metadata directory's own name gives: how
    ``importlib.metadata`` finds a distribution by name, and what pip reads first
    (``name-version.dist-info``; ``name[-version[-pyX.Y]].egg-info``; an ``.egg``
    directory's ``EGG-INFO`` is named by the egg)."""
    base = os.path.basename(meta_path)
    if base.lower() == "egg-info":
        base = os.path.basename(location)
    stem = base.rpartition(".")[0]
    name, dash, version = stem.partition("-")
    directory_version = version if dash and base.lower().endswith(".dist-info") else None
    return canonical_name(name), directory_version


def read_distribution(meta_path: str, location: str) -> InstalledDistribution:
    """One metadata directory (or distutils' egg-info *file*)."""
    base = os.path.basename(meta_path)
    guessed, directory_version = _directory_identity(meta_path, location)
    is_dir = os.path.isdir(meta_path)
    if is_dir:
        metadata_file = os.path.join(
            meta_path, "METADATA" if base.lower().endswith(".dist-info") else "PKG-INFO")
    else:
        metadata_file = meta_path
    try:
        headers, cut = _read_headers(metadata_file)
    except (OSError, TooLarge, UnicodeError) as error:
        return InstalledDistribution(guessed, "", meta_path, location,
                                     reason=f"unreadable metadata: {describe_error(error)}",
                                     failure=failure_of(error),
                                     directory_version=directory_version)
    name = (headers.get("name") or [""])[0]
    version = (headers.get("version") or [""])[0]
    requires = tuple(headers.get("requires-dist", ()))
    installer = wheel_tags = None
    if is_dir:
        if not requires and not base.lower().endswith(".dist-info"):
            text = read_small(os.path.join(meta_path, "requires.txt"), MAX_SMALL_FILE)
            if text:
                requires = tuple(requires_txt_requirements(text))
        installer = (read_small(os.path.join(meta_path, "INSTALLER"), 4096) or "").strip() or None
        wheel = read_small(os.path.join(meta_path, "WHEEL"), MAX_SMALL_FILE)
        wheel_tags = _wheel_tags(wheel) if wheel is not None else None
    reason = failure = None
    if not name:
        reason = "its metadata has no Name"
    elif not version:
        reason = "its metadata has no Version"
    elif cut:
        # What lies past the bound (a Requires-Dist among them) was not read: the facts
        # say so, and the checks report it, never judge the rest as the whole.
        reason = (f"its metadata has more than {MAX_HEADERS:,} header lines; those after "
                  f"line {MAX_HEADERS:,} (a Requires-Dist among them) were not read")
        failure = Failure.TOO_LARGE
    return InstalledDistribution(
        # Found by its directory's name, as importlib.metadata.distribution() and pip find it.
        name=guessed or canonical_name(name),
        version=version,
        path=meta_path,
        location=location,
        installer=installer,
        requires=requires,
        extras=tuple(canonical_name(extra) for extra in headers.get("provides-extra", ())),
        wheel_tags=wheel_tags,
        reason=reason,  # incomplete, but read: no failure, unless cut at the bound
        failure=failure,
        directory_version=directory_version,
    )


def _metadata_entries(location: str) -> Iterator[str]:
    """The metadata directories of one ``sys.path`` entry, in ``importlib.metadata``'s
    order: the directory's listing order (never sorted: when one name has two
    ``*.dist-info`` here, the first listed is the one every library sees), then the
    ``EGG-INFO`` of an ``.egg`` directory on ``sys.path``."""
    try:
        with os.scandir(location) as entries:
            names = [entry.name for entry in entries
                     if entry.name.lower().endswith(_META_SUFFIXES)
                     or entry.name.lower() == "egg-info"]
    except OSError:  # missing, not a directory (a zip on sys.path), unreadable
        return
    is_egg = location.lower().endswith(".egg")
    for name in names:
        if name.lower() != "egg-info":
            yield os.path.join(location, name)
    for name in names:
        if name.lower() == "egg-info" and is_egg:
            yield os.path.join(location, name)


_CONDA_METADATA = re.compile(r'"([^"\\]*?[^"/\\]+\.(?:dist-info|egg-info))(?:/[^"]*)?"')


def _conda_metadata_owners(location: str, cache: dict[str, tuple[str, dict[str, str]] | None],
                           ) -> tuple[str, dict[str, str]] | None:
    """The conda environment holding ``location`` (site-packages → pythonX.Y → lib →
    prefix) and, for every metadata directory its ``conda-meta/*.json`` records list
    (relative to the prefix), the conda package that installed it; None: not a conda env."""
    root = location
    for _ in range(4):
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
    owned: dict[str, str] = {}
    try:
        with os.scandir(os.path.join(root, "conda-meta")) as entries:
            for entry in entries:
                if entry.name.endswith(".json"):
                    # A substring scan, not a JSON parse: these files can be large and all
                    # this needs is which metadata directories they own; the record's
                    # name is in its file name (NAME-VERSION-BUILD.json).
                    package = entry.name[:-5].rsplit("-", 2)[0]
                    for path in _CONDA_METADATA.findall(read_small(entry.path, 64 << 20) or ""):
                        owned.setdefault(os.path.normpath(path), package)
    except OSError:
        cache[root] = None
        return None
    cache[root] = (root, owned)
    return cache[root]


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def scope_of(location: str, prefix: str | None, base_prefix: str | None) -> str:
    """Which of :data:`SCOPES` ``location`` lies in (``env`` when no prefix is given)."""
    if prefix is None:
        return "env"
    real = os.path.realpath(location)
    prefixes = {os.path.realpath(prefix)}
    if base_prefix is None or os.path.realpath(base_prefix) in prefixes:
        return "env" if any(_inside(real, p) for p in prefixes) else "outside"
    if any(_inside(real, p) for p in prefixes):
        return "env"
    return "base" if _inside(real, os.path.realpath(base_prefix)) else "outside"


def _modified(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def scan_distributions(paths: Sequence[str], prefix: str | None = None,
                       base_prefix: str | None = None) -> InstalledFacts:
    """Every distribution on ``paths``, in ``importlib.metadata``'s order; every copy
    of a name after the first is ``shadowed``. With ``prefix`` (``sys.prefix``) and
    ``base_prefix`` (``sys.base_prefix``), each carries its :data:`SCOPES` entry."""
    seen: set[str] = set()
    scanned: list[str] = []
    distributions: list[InstalledDistribution] = []
    conda_cache: dict[str, tuple[str, dict[str, str]] | None] = {}
    twice: set[str] = set()
    for entry in paths:
        location = os.path.abspath(entry or os.curdir)
        if location in scanned:
            continue
        scanned.append(location)
        scope = scope_of(location, prefix, base_prefix)
        entries = list(_metadata_entries(location))
        # conda-meta: looked for once per location, and only where there is metadata.
        conda = _conda_metadata_owners(location, conda_cache) if entries else None
        for meta_path in entries:
            dist = read_distribution(meta_path, location)
            if conda is not None:
                package = conda[1].get(os.path.relpath(meta_path, conda[0]))
                if package is not None:
                    dist = replace(dist, conda_package=package,
                                   installer=dist.installer or "conda")
            if scope != "env":
                dist = replace(dist, scope=scope)
            if dist.name in seen:
                dist = replace(dist, shadowed=True)
                twice.add(dist.name)
            seen.add(dist.name)
            distributions.append(dist)
    if twice:  # which copy was written last: only for the rare names installed twice
        distributions = [replace(dist, modified=_modified(dist.path)) if dist.name in twice
                         else dist for dist in distributions]
    venv = (prefix is not None and base_prefix is not None
            and os.path.realpath(prefix) != os.path.realpath(base_prefix))
    return InstalledFacts(tuple(distributions), tuple(scanned), venv=venv)


def probe_installed() -> InstalledFacts:
    """The distributions of this interpreter, as its ``sys.path`` stands now."""
    try:
        return scan_distributions(list(sys.path), sys.prefix, sys.base_prefix)
    except (OSError, ValueError) as error:  # pragma: no cover - scandir errors are caught inside
        return InstalledFacts((), (), reason=describe_error(error), failure=failure_of(error))


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
