"""Conda prefixes: what ``conda-meta/`` records, who owns which file, and conda's own graph.

A conda prefix (conda, mamba, micromamba, pixi — any installer that writes
``conda-meta/*.json``) keeps one JSON record per package: its name, version,
build, ``depends`` and ``constrains`` match specs, and every file it linked
(``files``, ``paths_data`` with sizes and sha256). pip knows none of it, and
conda knows nothing of what pip did. This module reads both sides:

* :func:`probe_conda` reads the records (plain JSON, bounded), the broken ones
  as such, and pixi's marker file (``conda-meta/pixi``);
* :func:`verify_files` is ``conda doctor``'s missing/altered-files check,
  cheaper: sizes first, a sha256 only for a file whose size or mtime says it
  changed (or for every file, when asked);
* :func:`probe_overlaps` finds what another installer wrote over conda's files
  (a pip ``RECORD`` that lists a path a conda record owns);
* :func:`probe_graph` asks py-rattler (the optional ``conda`` extra), the conda
  library behind pixi, whether every record's ``depends`` is satisfied and every
  ``constrains`` respected by the installed records, with conda's version order
  and match-spec semantics — the same question ``PackageRecord.validate``
  answers, with every answer instead of the first.

py-rattler is imported only by the functions that need it; a prefix with no
``conda-meta/`` costs one ``stat``. Facts only: what is a problem is judged in
:mod:`pytest_envguard.checks.conda`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from pytest_envguard.probes import Facts, Failure, describe_error
from pytest_envguard.probes._io import (
    TooLarge,
    explain,
    failure_of,
    open_regular,
    read_bytes,
    read_small,
)

if TYPE_CHECKING:
    from pytest_envguard.probes.distributions import InstalledDistribution, InstalledFacts

CONDA_META = "conda-meta"
#: A record larger than this is refused unread (the largest real ones, CUDA toolkits
#: with tens of thousands of files, are a few MiB).
MAX_RECORD_BYTES = 64 << 20
MAX_RECORDS = 50_000  # records read per prefix
MAX_PIXI_MARKER = 64 << 10
MAX_RECORD_FILE = 16 << 20  # a pip RECORD
HASH_CHUNK = 1 << 20
#: What ``conda doctor`` leaves out of its missing/altered checks: compiled
#: bytecode, which conda itself may write or remove after linking.
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
INSTALL_HINT = "pip install 'pytest-envguard[conda]' (py-rattler gives conda's semantics)"


# -- the records -----------------------------------------------------------------------------


class CondaPath(NamedTuple):
    """One ``paths_data`` entry of a record: a file as conda linked it. (A NamedTuple, not a
    dataclass: a prefix has tens of thousands, made in one pass.)"""

    path: str  # relative to the prefix
    kind: str  # "hardlink", "softlink", "directory", "pyc_file", …
    size: int | None = None  # size_in_bytes: the size in the prefix
    sha256: str | None = None  # sha256_in_prefix when recorded, else sha256
    placeholder: bool = False  # the prefix was written into it at link time
    in_prefix_hash: bool = False  # ``sha256`` is the hash after that replacement


@dataclass(frozen=True)
class CondaRecord(Facts):
    """One ``conda-meta/NAME-VERSION-BUILD.json``."""

    name: str
    version: str
    build: str
    source: str  # the record's path
    build_number: int = 0
    subdir: str | None = None
    channel: str | None = None
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    paths: tuple[CondaPath, ...] = ()  # empty when the record has no paths_data
    modified: float | None = None  # the record's mtime: when it was linked
    notes: tuple[str, ...] = ()  # what the record lacks or gets wrong (incomplete)

    @property
    def display(self) -> str:
        """``zed 1.0 py311_0``: how conda lists a package."""
        return f"{self.name} {self.version} {self.build}"

    @property
    def spec(self) -> str:
        """The exact match spec of this record: ``zed=1.0=py311_0``."""
        return f"{self.name}={self.version}={self.build}"


@dataclass(frozen=True)
class BrokenRecord(Facts):
    """A ``conda-meta/*.json`` that is no usable record."""

    path: str
    reason: str
    failure: Failure = Failure.CORRUPT


@dataclass(frozen=True)
class PixiMarker(Facts):
    """``conda-meta/pixi``: what pixi writes into each environment it installs."""

    manifest_path: str | None
    environment: str | None
    pixi_version: str | None


@dataclass(frozen=True)
class CondaFacts(Facts):
    """The conda side of a prefix: every record, and what could not be read."""

    prefix: str
    present: bool  # the prefix has a conda-meta/ directory
    records: tuple[CondaRecord, ...] = ()
    broken: tuple[BrokenRecord, ...] = ()
    pixi: PixiMarker | None = None
    reason: str | None = None
    failure: Failure | None = None

    @property
    def kind(self) -> str | None:
        """``pixi``, ``conda`` (conda, mamba, micromamba, rattler), or None."""
        if not self.present:
            return None
        from pytest_envguard.probes.isolation import pixi_environment_of

        return "pixi" if self.pixi is not None or pixi_environment_of(self.prefix) else "conda"

    def by_name(self) -> dict[str, CondaRecord]:
        return {record.name.lower(): record for record in self.records}

    def summary(self) -> str:
        if not self.present:
            return ""
        broken = f", {len(self.broken)} broken" if self.broken else ""
        return f"{self.kind} {len(self.records)} packages{broken}"

    def to_dict(self) -> dict[str, Any]:
        # The file lists would swamp the document: name → "version build" is what a
        # matrix comparison needs.
        return {
            "prefix": self.prefix,
            "present": self.present,
            "kind": self.kind,
            "count": len(self.records),
            "packages": {record.name: f"{record.version} {record.build}"
                         for record in self.records},
            "broken": [broken.to_dict() for broken in self.broken],
            "pixi": self.pixi.to_dict() if self.pixi else None,
            "reason": self.reason,
            "failure": self.failure.value if self.failure else None,
        }


def _strings(value: object) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def _paths_data(value: object, notes: list[str]) -> tuple[CondaPath, ...]:
    if value is None:
        return ()
    entries = value.get("paths") if isinstance(value, dict) else None
    if not isinstance(entries, list):
        notes.append("'paths_data' has no list of paths")
        return ()
    paths = []
    bad = 0
    for entry in entries:
        path = entry.get("_path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path:
            bad += 1
            continue
        size = entry.get("size_in_bytes")
        in_prefix = entry.get("sha256_in_prefix")
        digest = in_prefix if isinstance(in_prefix, str) else entry.get("sha256")
        paths.append(CondaPath(
            path, str(entry.get("path_type") or "hardlink"),
            size if isinstance(size, int) and not isinstance(size, bool) else None,
            digest.lower() if isinstance(digest, str) else None,
            placeholder=isinstance(entry.get("prefix_placeholder"), str),
            in_prefix_hash=isinstance(in_prefix, str)))
    if bad:
        notes.append(f"{bad} 'paths_data' entries without a path")
    return tuple(paths)


def read_record(path: str) -> CondaRecord | BrokenRecord:
    """One ``conda-meta/*.json``: a record, or why it is none (corrupt JSON, no name,
    version or build). A record that is usable but lacks a part conda writes (its
    file list, its depends) carries that in ``notes``."""
    try:
        data = read_bytes(path, MAX_RECORD_BYTES)
        modified = os.stat(path).st_mtime
    except (OSError, TooLarge) as error:
        return BrokenRecord(path, explain(path, error), failure_of(error))
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:  # (UnicodeDecodeError is a ValueError)
        return BrokenRecord(path, f"{path}: not valid JSON ({describe_error(error)})")
    if not isinstance(document, dict):
        return BrokenRecord(path, f"{path}: not a JSON object")
    identity = [document.get(key) for key in ("name", "version", "build")]
    missing = [key for key, value in zip(("name", "version", "build"), identity, strict=True)
               if not isinstance(value, str) or not value]
    if missing:
        return BrokenRecord(path, f"{path}: no {', '.join(repr(key) for key in missing)}")
    name, version, build = (str(value) for value in identity)
    notes: list[str] = []
    expected = f"{name}-{version}-{build}.json"
    if os.path.basename(path) != expected:
        notes.append(f"its file name should be {expected}")
    depends = _strings(document.get("depends", []))
    if depends is None:
        notes.append("'depends' is not a list of strings")
    constrains = _strings(document.get("constrains", []))
    if constrains is None:
        notes.append("'constrains' is not a list of strings")
    files = _strings(document.get("files"))
    if files is None:
        notes.append("no 'files' list" if "files" not in document
                     else "'files' is not a list of strings")
    build_number = document.get("build_number", 0)
    subdir = document.get("subdir")
    channel = document.get("channel")
    return CondaRecord(
        name=name, version=version, build=build, source=path,
        build_number=build_number if isinstance(build_number, int) else 0,
        subdir=subdir if isinstance(subdir, str) else None,
        channel=channel if isinstance(channel, str) else None,
        depends=depends or (), constrains=constrains or (), files=files or (),
        paths=_paths_data(document.get("paths_data"), notes),
        modified=modified, notes=tuple(notes))


def read_pixi_marker(prefix: str) -> PixiMarker | None:
    """pixi's ``conda-meta/pixi`` (JSON: ``manifest_path``, ``environment_name``,
    ``pixi_version``); None when absent. An unreadable one still marks a pixi env."""
    path = os.path.join(prefix, CONDA_META, "pixi")
    if not os.path.lexists(path):
        return None
    try:
        document = json.loads(read_bytes(path, MAX_PIXI_MARKER))
    except (OSError, TooLarge, ValueError, RecursionError):
        document = {}
    if not isinstance(document, dict):
        document = {}

    def text(key: str) -> str | None:
        value = document.get(key)
        return value if isinstance(value, str) else None

    return PixiMarker(text("manifest_path"), text("environment_name"), text("pixi_version"))


def probe_conda(prefix: str) -> CondaFacts:
    """The records of the conda prefix ``prefix``; ``present=False`` when it has no
    ``conda-meta/`` (which is all a venv pays)."""
    meta = os.path.join(prefix, CONDA_META)
    if not os.path.isdir(meta):
        return CondaFacts(prefix, present=False)
    try:
        with os.scandir(meta) as entries:
            names = sorted(entry.name for entry in entries if entry.name.endswith(".json"))
    except OSError as error:
        return CondaFacts(prefix, True, reason=explain(meta, error), failure=failure_of(error))
    records: list[CondaRecord] = []
    broken: list[BrokenRecord] = []
    for name in names[:MAX_RECORDS]:
        found = read_record(os.path.join(meta, name))
        (records if isinstance(found, CondaRecord) else broken).append(found)  # type: ignore[arg-type]
    reason = (f"{meta}: more than {MAX_RECORDS} records, the rest not read"
              if len(names) > MAX_RECORDS else None)
    return CondaFacts(prefix, True, tuple(records), tuple(broken), read_pixi_marker(prefix),
                      reason=reason, failure=Failure.TOO_LARGE if reason else None)


# -- files: what conda doctor checks ----------------------------------------------------------


@dataclass(frozen=True)
class FileIssue(Facts):
    """A file of a record that is not as conda linked it."""

    record: str  # the record's display: "zed 1.0 py311_0"
    name: str  # the package name
    path: str  # relative to the prefix
    kind: str  # "missing" or "altered"
    detail: str = ""  # "size 12, recorded 10", "sha256 differs", "unreadable: …"


@dataclass(frozen=True)
class CondaFilesFacts(Facts):
    """Every missing or altered file of the prefix's records."""

    issues: tuple[FileIssue, ...] = ()
    checked: int = 0  # files looked at
    hashed: int = 0  # files whose sha256 was computed
    all_hashed: bool = False  # every file with a recorded hash was hashed (asked for)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open_regular(path, follow_symlinks=False) as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(prefix: str, record: CondaRecord, entry: CondaPath, hashes: bool,
                ) -> tuple[FileIssue | None, bool]:
    """The issue with one file, if any, and whether it was hashed."""
    full = os.path.join(prefix, entry.path)
    try:
        info = os.lstat(full)
    except OSError:
        return FileIssue(record.display, record.name, entry.path, "missing"), False
    if entry.kind not in ("hardlink", "softlink") or stat.S_ISLNK(info.st_mode):
        return None, False  # a directory, a pyc, an entry point: present is all conda asks
    size_known = entry.size is not None and not (entry.placeholder and not entry.in_prefix_hash)
    if size_known and info.st_size != entry.size:
        if entry.sha256 is None or not entry.placeholder:
            return FileIssue(record.display, record.name, entry.path, "altered",
                             f"size {info.st_size}, recorded {entry.size}"), False
    elif not hashes and (record.modified is None or info.st_mtime <= record.modified):
        return None, False  # same size, not written since conda linked it
    if entry.sha256 is None or (entry.placeholder and not entry.in_prefix_hash):
        return None, False  # no hash of the file as linked to compare with
    try:
        actual = _sha256(full)
    except OSError as error:
        return FileIssue(record.display, record.name, entry.path, "altered",
                         f"unreadable: {describe_error(error)}"), True
    if actual != entry.sha256:
        return FileIssue(record.display, record.name, entry.path, "altered",
                         "its sha256 differs from the recorded one"), True
    return None, True


def verify_files(conda: CondaFacts, *, hashes: bool = False) -> CondaFilesFacts:
    """Every file each record lists, as ``conda doctor`` checks them (``.pyc``/``.pyo``
    left out): missing, or altered — its size differs from ``size_in_bytes``, or it was
    written after the record (its mtime is newer) and its sha256 differs. With
    ``hashes``, every file with a recorded sha256 is hashed."""
    issues: list[FileIssue] = []
    checked = hashed = 0
    for record in conda.records:
        entries = record.paths or tuple(CondaPath(path, "hardlink") for path in record.files)
        for entry in entries:
            if entry.path.endswith(EXCLUDED_SUFFIXES):
                continue
            checked += 1
            issue, was_hashed = _check_file(conda.prefix, record, entry, hashes)
            hashed += was_hashed
            if issue is not None:
                issues.append(issue)
    return CondaFilesFacts(tuple(issues), checked, hashed, all_hashed=hashes)


# -- ownership: conda's files and another installer's ------------------------------------------


def _listed(record: CondaRecord) -> tuple[str, ...]:
    return record.files or tuple(entry.path for entry in record.paths)


def owners(conda: CondaFacts) -> dict[str, CondaRecord]:
    """Every path a record lists (relative to the prefix, as conda writes it: normalised,
    ``/``-separated) → its record."""
    owned: dict[str, CondaRecord] = {}
    for record in conda.records:
        for path in _listed(record):
            owned.setdefault(path, record)
    return owned


def metadata_owners(conda: CondaFacts) -> dict[str, CondaRecord]:
    """Each Python metadata directory (``…/site-packages/zed-1.0.dist-info``, relative to
    the prefix) that a record installed → that record."""
    found: dict[str, CondaRecord] = {}
    for record in conda.records:
        for path in _listed(record):
            if ".dist-info/" in path or ".egg-info" in path:  # a substring test: cheap
                directory = os.path.dirname(path)
                if directory.endswith((".dist-info", ".egg-info")):
                    found.setdefault(directory, record)
                elif path.endswith(".egg-info"):  # distutils' egg-info *file*
                    found.setdefault(path, record)
    return found


@dataclass(frozen=True)
class Overlap(Facts):
    """Files that a distribution another installer put in the prefix lists in its
    ``RECORD`` and that a conda record owns: what ``pip install`` wrote over conda's."""

    distribution: str  # canonical name
    version: str
    installer: str | None
    metadata: str  # its metadata directory
    record: str  # the conda record's display
    package: str  # the conda package name
    files: tuple[str, ...]  # relative to the prefix


@dataclass(frozen=True)
class OverlapFacts(Facts):
    overlaps: tuple[Overlap, ...] = ()
    unread: tuple[str, ...] = ()  # metadata directories whose RECORD could not be read


def record_files(metadata: str, location: str) -> list[str] | None:
    """The files a ``*.dist-info/RECORD`` lists, as absolute paths (None: no RECORD)."""
    path = os.path.join(metadata, "RECORD")
    try:
        text = read_bytes(path, MAX_RECORD_FILE).decode("utf-8", "surrogateescape")
    except (OSError, TooLarge):
        return None
    found = []
    for line in text.splitlines():
        name = line.split(",", 1)[0].strip()
        if name:
            found.append(os.path.normpath(os.path.join(location, name)))
    return found


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def relative_to_prefix(path: str, prefix: str) -> str | None:
    real_prefix = os.path.realpath(prefix)
    real = os.path.realpath(path)
    if not _inside(real, real_prefix):
        return None
    return os.path.relpath(real, real_prefix)


def probe_overlaps(conda: CondaFacts, installed: InstalledFacts) -> OverlapFacts:
    """For each distribution in the prefix that no conda record installed, the files of
    its ``RECORD`` that a record owns."""
    if not conda.present:
        return OverlapFacts()
    owned = owners(conda)
    if not owned:
        return OverlapFacts()
    conda_metadata = metadata_owners(conda)
    overlaps: list[Overlap] = []
    unread: list[str] = []
    for dist in installed.distributions:
        metadata = relative_to_prefix(dist.path, conda.prefix)
        if metadata is None or metadata in conda_metadata:
            continue  # outside the prefix, or conda's own (an edit of it is judged apart)
        files = record_files(dist.path, dist.location)
        if files is None:
            if os.path.isdir(dist.path) and dist.path.endswith(".dist-info"):
                unread.append(dist.path)
            continue
        by_record: dict[str, tuple[CondaRecord, list[str]]] = {}
        for path in files:
            relative = relative_to_prefix(path, conda.prefix)
            record = owned.get(relative) if relative is not None else None
            if record is not None and relative is not None:
                by_record.setdefault(record.source, (record, []))[1].append(relative)
        for record, shared in by_record.values():
            overlaps.append(Overlap(dist.name, dist.version, dist.installer, dist.path,
                                    record.display, record.name, tuple(shared)))
    return OverlapFacts(tuple(overlaps), tuple(unread))


@dataclass(frozen=True)
class MetadataState(Facts):
    """A Python metadata directory a conda record installed, as it is now."""

    path: str  # absolute
    record: str  # the record's display
    package: str
    exists: bool
    installer: str | None = None  # INSTALLER now
    installer_altered: bool = False  # INSTALLER differs from what conda linked


@dataclass(frozen=True)
class MetadataFacts(Facts):
    states: tuple[MetadataState, ...] = ()


def metadata_states(conda: CondaFacts, files: CondaFilesFacts) -> MetadataFacts:
    """Each metadata directory the records installed: whether it is still there, what its
    ``INSTALLER`` says now, and whether conda linked a different ``INSTALLER``."""
    altered = {(issue.name, issue.path) for issue in files.issues}
    states = []
    for relative, record in metadata_owners(conda).items():
        path = os.path.join(conda.prefix, relative)
        installer_path = os.path.join(relative, "INSTALLER")
        text = read_small(os.path.join(conda.prefix, installer_path), 4096)
        listed = installer_path in record.files
        states.append(MetadataState(
            path, record.display, record.name, os.path.isdir(path) or os.path.isfile(path),
            (text or "").strip() or None,
            installer_altered=(record.name, installer_path) in altered or (
                not listed and bool(text and text.strip() and text.strip() != "conda"))))
    return MetadataFacts(tuple(states))


# -- conda's graph, as py-rattler sees it -------------------------------------------------------


@dataclass(frozen=True)
class GraphIssue(Facts):
    """One way the records break conda's own graph."""

    kind: str  # "missing", "conflict", "constrains", "invalid-spec", "unreadable"
    package: str  # the record's display ("zed 1.0 py311_0"), or its path when unreadable
    spec: str | None = None  # the depends/constrains entry
    installed: tuple[str, ...] = ()  # the records of that name that do not match
    detail: str | None = None


@dataclass(frozen=True)
class CondaGraphFacts(Facts):
    """conda's graph of the prefix, judged by py-rattler."""

    checked: int = 0  # records judged
    issues: tuple[GraphIssue, ...] = ()
    virtual: tuple[str, ...] = ()  # virtual-package specs left out (``__glibc >=2.17``)
    rattler: str | None = None  # py-rattler's version
    reason: str | None = None
    failure: Failure | None = None  # MISSING: py-rattler is not installed


def _rattler_errors() -> tuple[type[BaseException], ...]:
    """The errors py-rattler raises: its own classes (one per Rust error kind) and the
    built-in ones its bindings use."""
    from rattler import exceptions

    own = tuple(value for value in vars(exceptions).values()
                if isinstance(value, type) and issubclass(value, Exception))
    return (*own, OSError, ValueError, TypeError)


def import_rattler() -> tuple[Any, str | None]:
    """py-rattler, or None and why it cannot be imported."""
    try:
        import rattler
    except ImportError as error:
        return None, f"py-rattler is not installed ({describe_error(error)}): {INSTALL_HINT}"
    return rattler, None


def prefix_records(rattler: Any, records: Iterable[CondaRecord],
                   ) -> tuple[list[tuple[CondaRecord, Any]], list[GraphIssue]]:
    """Each record as py-rattler reads it (``PrefixRecord.from_path``), or why it cannot."""
    errors = _rattler_errors()
    read = []
    issues = []
    for record in records:
        try:
            read.append((record, rattler.PrefixRecord.from_path(record.source)))
        except errors as error:
            issues.append(GraphIssue("unreadable", record.source,
                                     detail=describe_error(error).splitlines()[0]))
    return read, issues


def probe_graph(conda: CondaFacts) -> CondaGraphFacts:
    """Every ``depends`` not met and every ``constrains`` broken, judged by py-rattler's
    ``MatchSpec`` against the installed records (each read by its ``PrefixRecord``).
    As ``PackageRecord.validate`` does, virtual packages (``__glibc``, ``__cuda``) are
    left out: no record provides them."""
    rattler, why = import_rattler()
    if rattler is None:
        return CondaGraphFacts(reason=why, failure=Failure.MISSING)
    errors = _rattler_errors()
    read, issues = prefix_records(rattler, conda.records)
    by_name: dict[str, list[tuple[CondaRecord, Any]]] = {}
    for record, prefix_record in read:
        by_name.setdefault(prefix_record.name.normalized, []).append((record, prefix_record))
    virtual: list[str] = []

    def candidates(spec: Any, text: str) -> list[tuple[CondaRecord, Any]]:
        exact = spec.name.as_package_name()
        if exact is not None:
            return by_name.get(exact.normalized, [])
        # A name glob (``foo*``): the records whose name it matches.
        pattern = re.match(r"[^\s=<>!~\[]+", text)
        named = rattler.MatchSpec(pattern.group(0) if pattern else text, strict=False,
                                  exact_names_only=False)
        return [pair for pair in read if named.matches(pair[1])]

    def parsed(text: str, record: CondaRecord) -> Any | None:
        """The spec, or None with an ``invalid-spec`` issue."""
        try:
            return rattler.MatchSpec(text, strict=False, exact_names_only=False)
        except errors as error:
            issues.append(GraphIssue("invalid-spec", record.display, text,
                                     detail=describe_error(error).splitlines()[0]))
            return None

    for record, prefix_record in read:
        for text in prefix_record.depends:
            if text.startswith("__"):
                virtual.append(f"{record.display}: {text}")
                continue
            spec = parsed(text, record)
            if spec is None:
                continue
            found = candidates(spec, text)
            if not found:
                issues.append(GraphIssue("missing", record.display, text))
            elif not any(spec.matches(other) for _, other in found):
                issues.append(GraphIssue("conflict", record.display, text,
                                         tuple(other.display for other, _ in found)))
        for text in prefix_record.constrains:
            spec = parsed(text, record)
            if spec is None:
                continue
            wrong = [other for other, pair in candidates(spec, text) if not spec.matches(pair)]
            if wrong:
                issues.append(GraphIssue("constrains", record.display, text,
                                         tuple(other.display for other in wrong)))
    return CondaGraphFacts(len(read), tuple(issues), tuple(virtual),
                           rattler=getattr(rattler, "__version__", None))


@dataclass(frozen=True)
class SpecMatches:
    """Which installed records a conda match spec matches, as py-rattler judges."""

    spec: str
    matching: tuple[str, ...]  # displays
    same_name: tuple[str, ...]  # every record of that name
    error: str | None = None  # the spec does not parse


def match_specs(conda: CondaFacts, specs: Iterable[str]) -> tuple[list[SpecMatches], str | None]:
    """Each spec against the prefix's records (py-rattler's ``MatchSpec``); and None, or
    why nothing could be judged (py-rattler is missing)."""
    rattler, why = import_rattler()
    if rattler is None:
        return [], why
    errors = _rattler_errors()
    read, _ = prefix_records(rattler, conda.records)
    by_name: dict[str, list[tuple[CondaRecord, Any]]] = {}
    for record, prefix_record in read:
        by_name.setdefault(prefix_record.name.normalized, []).append((record, prefix_record))
    answers = []
    for text in specs:
        try:
            spec = rattler.MatchSpec(text, strict=False)
        except errors as error:
            answers.append(SpecMatches(text, (), (), describe_error(error).splitlines()[0]))
            continue
        exact = spec.name.as_package_name()
        same = by_name.get(exact.normalized, []) if exact is not None else []
        answers.append(SpecMatches(text, tuple(r.display for r, p in same if spec.matches(p)),
                                   tuple(r.display for r, _ in same)))
    return answers, None


# -- point 3, from the outside: which manager owns a file ---------------------------------------


@dataclass(frozen=True)
class Owner(Facts):
    """Who put a file in the environment."""

    manager: str  # "conda", "pip", "uv", "uv-pixi", … or "unknown"
    package: str | None  # the conda record's display, or the distribution's "name version"

    def describe(self) -> str:
        return f"{self.manager} ({self.package})" if self.package else self.manager


@dataclass
class FileOwners:
    """Answers "which manager owns this file?" for files of a prefix: conda's records
    first (``conda-meta`` ``files``), then each installed distribution's ``RECORD``."""

    conda: CondaFacts
    installed: InstalledFacts
    _conda: dict[str, CondaRecord] | None = None
    _python: dict[str, InstalledDistribution] = field(default_factory=dict)
    _read: bool = False

    def owner(self, path: str) -> Owner:
        if self._conda is None:
            self._conda = owners(self.conda) if self.conda.present else {}
        relative = relative_to_prefix(path, self.conda.prefix) if self.conda.present else None
        record = self._conda.get(relative) if relative is not None else None
        if record is not None:
            return Owner("conda", record.display)
        if not self._read:
            self._read = True
            for dist in self.installed.distributions:
                for listed in record_files(dist.path, dist.location) or ():
                    self._python.setdefault(os.path.realpath(listed), dist)
        found = self._python.get(os.path.realpath(path))
        if found is not None:
            return Owner(found.installer or "unknown", found.display)
        return Owner("unknown", None)


def owners_of(paths: Iterable[str], conda: CondaFacts, installed: InstalledFacts,
              ) -> Mapping[str, Owner]:
    """Which manager owns each path (see :class:`FileOwners`)."""
    index = FileOwners(conda, installed)
    return {path: index.owner(path) for path in paths}


_SONAME_STEM = re.compile(r"^(lib[^/]*?)(?:-[0-9a-f]{8})?\.so(?:\.[0-9.]+)?$")


def library_stem(path: str) -> str | None:
    """``libgomp`` for ``libgomp.so.1``, ``libgomp-a34b3233.so.1.0.0`` (auditwheel's
    renamed vendored copy) and ``libgomp.so``: what makes two files one library."""
    match = _SONAME_STEM.match(os.path.basename(path))
    return match.group(1) if match else None
