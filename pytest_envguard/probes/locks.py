"""Lock files → the distributions and versions they pin.

Formats: pinned ``requirements.txt`` (``==``/``===``, ``--hash``, ``-r``/``-c``
includes, environment markers), ``pylock.toml`` (PEP 751), ``uv.lock`` and
``poetry.lock``. The format is chosen by the file name (``pylock.*.toml``
counts as pylock).

Parsing (:func:`read_lock`) reads the files and keeps markers and the
dependency graph as text; choosing what applies to an interpreter is a
judgement, made in :mod:`pytest_envguard.checks.hygiene`: ``uv.lock`` and
``poetry.lock`` are universal (they pin packages for every platform), and
only a walk of their graph with the markers evaluated tells which of them
this interpreter should have.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pytest_envguard.probes import Facts, Failure, describe_error
from pytest_envguard.probes._io import TomlError, TooLarge, explain, failure_of, load_toml, read_bytes
from pytest_envguard.probes.distributions import canonical_name


@dataclass(frozen=True)
class Dependency(Facts):
    """An edge of a universal lock's graph."""

    name: str  # canonical
    marker: str | None = None
    extras: tuple[str, ...] = ()
    version: str | None = None  # which of several locked versions (uv)


@dataclass(frozen=True)
class LockedPackage(Facts):
    """One package a lock file pins, and the edges of its dependency graph."""

    name: str  # canonical
    version: str | None  # None: pinned by URL or path, only its presence is checked
    source: str  # "requirements.txt:12", "uv.lock [[package]] #4"
    marker: str | None = None  # when it applies (requirements, pylock, poetry 2.1)
    required: bool = True  # False: a constraint or optional package, checked only if installed
    installable: bool = True  # False: a uv "virtual" workspace root (never installed)
    root: bool = False  # where the graph walk starts
    dependencies: tuple[Dependency, ...] = ()
    optional: tuple[tuple[str, tuple[Dependency, ...]], ...] = ()  # extra → its edges


@dataclass(frozen=True)
class LockFacts(Facts):
    """A lock file, parsed: its packages and graph, or why it cannot be used."""

    path: str
    format: str  # "requirements", "pylock", "uv", "poetry"
    packages: tuple[LockedPackage, ...] = ()
    graph: bool = False  # True: walk dependencies from the roots (uv, poetry 2.0)
    reason: str | None = None  # "path:line: reason" — the file could not be used
    failure: Failure | None = None

    @property
    def filename(self) -> str:
        return os.path.basename(self.path)

    def summary(self) -> str:
        return f"lock {self.filename} ({self.format}, {len(self.packages)} packages)"


#: Larger files are refused unread: a lock this size would be a mistake (or a device).
MAX_LOCK_BYTES = 64 << 20


class LockError(ValueError):
    """A lock file that cannot be used; ``str()`` is ``path[:line]: reason``."""

    def __init__(self, message: str, failure: Failure = Failure.CORRUPT) -> None:
        super().__init__(message)
        self.failure = failure


def lock_format(path: str) -> str | None:
    name = os.path.basename(path).lower()
    if name == "uv.lock":
        return "uv"
    if name == "poetry.lock":
        return "poetry"
    if re.fullmatch(r"pylock(\.[^.]+)?\.toml", name):
        return "pylock"
    if name.endswith((".txt", ".in")) or "requirements" in name:
        return "requirements"
    return None


def read_lock(path: str) -> LockFacts:
    """The lock at ``path``; never raises (a problem goes to ``failure`` and ``reason``)."""
    kind = lock_format(path)
    if kind is None:
        return LockFacts(path, "unknown", reason=(
            f"{path}: unknown lock format (expected requirements*.txt, pylock.toml, "
            "uv.lock or poetry.lock)"), failure=Failure.UNSUPPORTED)
    try:
        if kind == "requirements":
            packages = tuple(_RequirementsReader().read(path, required=True))
            return LockFacts(path, kind, packages)
        document = _load_toml(path)
        if kind == "pylock":
            return LockFacts(path, kind, _pylock(path, document))
        if kind == "uv":
            return LockFacts(path, kind, _uv(path, document), graph=True)
        packages, graph = _poetry(path, document)
        return LockFacts(path, kind, packages, graph=graph)
    except LockError as error:
        return LockFacts(path, kind, reason=str(error), failure=error.failure)
    except (TypeError, AttributeError) as error:
        # A table or array where a string belongs (or the reverse), deeper than the
        # checks above look: the document is not the lock format its name says.
        return LockFacts(path, kind, reason=f"{path}: unexpected {kind} lock structure "
                                            f"({describe_error(error)})", failure=Failure.CORRUPT)
    except RecursionError:
        return LockFacts(path, kind, reason=f"{path}: nested too deeply to be a lock file",
                         failure=Failure.CORRUPT)
    except FileNotFoundError:
        return LockFacts(path, kind, reason=f"{path}: no such file", failure=Failure.MISSING)
    except OSError as error:
        return LockFacts(path, kind, reason=explain(path, error), failure=failure_of(error))


# -- requirements.txt ----------------------------------------------------------------

# Options pip accepts in a requirements file that say nothing about what is installed.
_IGNORED_OPTIONS = {
    "-i", "--index-url", "--extra-index-url", "--no-index", "-f", "--find-links",
    "--pre", "--trusted-host", "--prefer-binary", "--only-binary", "--no-binary",
    "--require-hashes", "--use-feature",
}
_TAKES_VALUE = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links",
                "--trusted-host", "--only-binary", "--no-binary", "--use-feature"}
_COMMENT = re.compile(r"(^|\s+)#.*$")
_OPTION_START = re.compile(r"\s-{1,2}[A-Za-z]")


class _RequirementsReader:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def read(self, path: str, *, required: bool) -> list[LockedPackage]:
        real = os.path.realpath(path)
        if real in self.seen:
            return []  # an include cycle: each file counts once
        self.seen.add(real)
        try:
            data = read_bytes(path, MAX_LOCK_BYTES)
        except TooLarge:
            raise LockError(f"{path}: larger than {MAX_LOCK_BYTES >> 20} MiB, not a lock file",
                            Failure.TOO_LARGE) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise LockError(f"{path}: not UTF-8 text ({error.reason})") from None
        packages: list[LockedPackage] = []
        for number, line in _logical_lines(text):
            where = f"{path}:{number}"
            if line.startswith("-"):
                packages.extend(self._option(path, where, line, required))
            else:
                packages.append(_pinned(line, where, required))
        return packages

    def _option(self, path: str, where: str, line: str, required: bool) -> list[LockedPackage]:
        match = re.match(r"(-{1,2}[A-Za-z-]+)(?:\s*=\s*|\s+)?(.*)", line)
        option, value = (match.group(1), match.group(2).strip()) if match else (line, "")
        if option in ("-r", "--requirement", "-c", "--constraint"):
            if not value:
                raise LockError(f"{where}: {option} needs a file name")
            included = value if os.path.isabs(value) else os.path.join(
                os.path.dirname(path), value)
            if not os.path.isfile(included):
                raise LockError(f"{where}: included file {value!r} does not exist")
            constraint = option in ("-c", "--constraint")
            return self.read(included, required=required and not constraint)
        if option in ("-e", "--editable"):
            egg = re.search(r"#egg=([A-Za-z0-9][A-Za-z0-9._-]*)", value)
            if egg is None:
                return []  # a path without a name: nothing to compare
            return [LockedPackage(canonical_name(egg.group(1)), None, where, required=required)]
        if option in _IGNORED_OPTIONS:
            if option in _TAKES_VALUE and not value:
                raise LockError(f"{where}: {option} needs a value")
            return []
        raise LockError(f"{where}: unknown option {option!r}")


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines with comments removed and ``\\`` continuations joined, numbered by
    the physical line they start on."""
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not buffer:
            start = number
        stripped = _COMMENT.sub("", raw)
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1])
            continue
        buffer.append(stripped)
        line = " ".join(part.strip() for part in buffer).strip()
        buffer = []
        if line:
            yield start, line
    if buffer and " ".join(buffer).strip():
        yield start, " ".join(part.strip() for part in buffer).strip()


def _pinned(line: str, where: str, required: bool) -> LockedPackage:
    from packaging.requirements import InvalidRequirement, Requirement

    # Per-requirement options (--hash=…, --config-settings …) follow the requirement.
    option = _OPTION_START.search(line)
    text = line[: option.start()].strip() if option else line
    try:
        requirement = Requirement(text)
    except InvalidRequirement as error:
        raise LockError(f"{where}: {text!r} is not a requirement: "
                        f"{str(error).splitlines()[0]}") from None
    name = canonical_name(requirement.name)
    marker = str(requirement.marker) if requirement.marker else None
    if requirement.url:
        return LockedPackage(name, None, where, marker, required)
    specifiers = list(requirement.specifier)
    if (len(specifiers) != 1 or specifiers[0].operator not in ("==", "===")
            or specifiers[0].version.endswith(".*")):
        raise LockError(f"{where}: {text!r} is not pinned (a lock needs 'name==version')")
    return LockedPackage(name, specifiers[0].version, where, marker, required)


# -- TOML locks ---------------------------------------------------------------------------


def _load_toml(path: str) -> dict[str, Any]:
    try:
        return load_toml(path, MAX_LOCK_BYTES)
    except TooLarge:
        raise LockError(f"{path}: larger than {MAX_LOCK_BYTES >> 20} MiB, not a lock file",
                        Failure.TOO_LARGE) from None
    except UnicodeDecodeError as error:
        raise LockError(f"{path}: not UTF-8 text ({error.reason})") from None
    except TomlError as error:
        where = f"{path}:{error.line}" if error.line else path
        raise LockError(f"{where}: invalid TOML: {error}") from None


def _table_list(path: str, document: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = document.get(key, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise LockError(f"{path}: '{key}' must be an array of tables")
    return items


def _name_version(path: str, key: str, index: int, item: Mapping[str, Any]) -> tuple[str, str | None]:
    name, version = item.get("name"), item.get("version")
    if not isinstance(name, str) or not name:
        raise LockError(f"{path}: [[{key}]] #{index + 1} has no name")
    if version is not None and not isinstance(version, str):
        raise LockError(f"{path}: [[{key}]] {name}: version must be a string")
    return canonical_name(name), version


def _pylock(path: str, document: Mapping[str, Any]) -> tuple[LockedPackage, ...]:
    if "lock-version" not in document:
        raise LockError(f"{path}: no 'lock-version' (not a PEP 751 lock file)")
    packages = []
    for index, item in enumerate(_table_list(path, document, "packages")):
        name, version = _name_version(path, "packages", index, item)
        marker = item.get("marker")
        if marker is not None and not isinstance(marker, str):
            raise LockError(f"{path}: [[packages]] {name}: marker must be a string")
        packages.append(LockedPackage(name, version, f"{os.path.basename(path)} [[packages]] "
                                      f"{name}", marker))
    return tuple(packages)


def _uv_edges(path: str, name: str, items: object) -> tuple[Dependency, ...]:
    if not isinstance(items, list):
        raise LockError(f"{path}: [[package]] {name}: dependencies must be an array")
    edges = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise LockError(f"{path}: [[package]] {name}: a dependency has no name")
        extras = item.get("extra", [])
        edges.append(Dependency(canonical_name(item["name"]), item.get("marker"),
                                tuple(canonical_name(e) for e in extras),
                                item.get("version")))
    return tuple(edges)


def _uv(path: str, document: Mapping[str, Any]) -> tuple[LockedPackage, ...]:
    if "version" not in document:
        raise LockError(f"{path}: no 'version' (not a uv lock file)")
    members = {canonical_name(name) for name in
               document.get("manifest", {}).get("members", []) if isinstance(name, str)}
    packages = []
    for index, item in enumerate(_table_list(path, document, "package")):
        name, version = _name_version(path, "package", index, item)
        source = item.get("source", {})
        source = source if isinstance(source, dict) else {}
        virtual = "virtual" in source
        root = virtual or "editable" in source or name in members
        resolution = item.get("resolution-markers")
        marker = " or ".join(f"({m})" for m in resolution) if resolution else None
        optional = tuple(
            (canonical_name(extra), _uv_edges(path, name, edges))
            for extra, edges in (item.get("optional-dependencies") or {}).items())
        dependencies = _uv_edges(path, name, item.get("dependencies", []))
        if root:
            # uv sync installs a root's default group ("dev") as well.
            dependencies += _uv_edges(path, name, (item.get("dev-dependencies") or {}).get(
                "dev", []))
        packages.append(LockedPackage(
            name, version, f"uv.lock [[package]] {name}", marker, installable=not virtual,
            root=root, dependencies=dependencies, optional=optional))
    return tuple(packages)


def _poetry_edges(path: str, name: str, table: object) -> tuple[Dependency, ...]:
    if not isinstance(table, dict):
        raise LockError(f"{path}: [[package]] {name}: dependencies must be a table")
    edges = []
    for dependency, spec in table.items():
        for constraint in spec if isinstance(spec, list) else [spec]:
            marker = extras = None
            if isinstance(constraint, dict):
                if constraint.get("optional"):
                    continue  # pulled in only through an extra, listed there
                marker = constraint.get("markers")
                extras = constraint.get("extras")
            edges.append(Dependency(canonical_name(dependency), marker,
                                    tuple(canonical_name(e) for e in extras or ())))
    return tuple(edges)


def _poetry_extra_edges(entries: object) -> tuple[Dependency, ...]:
    edges = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, str):
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", entry)
            if match:
                edges.append(Dependency(canonical_name(match.group(1))))
    return tuple(edges)


def _poetry(path: str, document: Mapping[str, Any]) -> tuple[tuple[LockedPackage, ...], bool]:
    if "metadata" not in document:
        raise LockError(f"{path}: no [metadata] table (not a poetry lock file)")
    items = _table_list(path, document, "package")
    # Poetry 2 (lock-version 2.1) writes each package's own markers; older locks
    # only have markers on the edges, so the graph is walked from its roots.
    with_markers = any("markers" in item for item in items)
    packages = []
    targets: set[str] = set()
    for index, item in enumerate(items):
        name, version = _name_version(path, "package", index, item)
        edges = _poetry_edges(path, name, item.get("dependencies", {}))
        targets.update(edge.name for edge in edges)
        marker = item.get("markers")
        if isinstance(marker, dict):  # one marker per dependency group
            marker = " or ".join(f"({m})" for m in marker.values()) or None
        optional = tuple((canonical_name(extra), _poetry_extra_edges(entries))
                         for extra, entries in (item.get("extras") or {}).items())
        packages.append(LockedPackage(
            name, version, f"poetry.lock [[package]] {name}", marker if with_markers else None,
            required=not item.get("optional", False), dependencies=edges, optional=optional))
    if with_markers:
        return tuple(packages), False
    rooted = tuple(replace(package, root=package.required and package.name not in targets)
                   for package in packages)
    return rooted, True
