"""Lock files → the distributions and versions they pin.

Formats: pinned ``requirements.txt`` (``==``/``===``, ``--hash``, ``-r``/``-c``
includes, environment markers), ``pylock.toml`` (PEP 751), ``uv.lock`` and
``poetry.lock``; and conda's ``pixi.lock``, ``conda-lock.yml``, explicit spec
files and ``environment.yml``, read in :mod:`pytest_envguard.probes.conda_locks`
(their conda packages carry ``manager="conda"``). The format is chosen by the
file name (``pylock.*.toml`` counts as pylock); a requirements file holding
conda's ``@EXPLICIT`` line is an explicit spec file.

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
from typing import TYPE_CHECKING, Any

from pytest_envguard.probes import Facts, Failure, describe_error
from pytest_envguard.probes._io import TomlError, TooLarge, explain, failure_of, load_toml, read_bytes
from pytest_envguard.probes.distributions import canonical_name

if TYPE_CHECKING:
    from packaging.requirements import Requirement


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
    # extra → its edges; for a root, also each dependency group its installer leaves out
    # by default, as "group:NAME" (what an installed package may be pinned by)
    optional: tuple[tuple[str, tuple[Dependency, ...]], ...] = ()
    manager: str = "pypi"  # "conda": a conda package (pixi.lock, conda-lock, explicit, env.yml)
    build: str | None = None  # a conda package's build string, when pinned
    spec: str | None = None  # a conda match spec to judge it by (environment.yml)

    @property
    def display(self) -> str:
        """``numpy 1.26.4 py311_0``, or the match spec it was given as."""
        if self.spec:
            return self.spec
        return " ".join(part for part in (self.name, self.version, self.build) if part)


@dataclass(frozen=True)
class LockFacts(Facts):
    """A lock file, parsed: its packages and graph, or why it cannot be used."""

    path: str
    format: str  # "requirements", "pylock", "uv", "poetry"
    packages: tuple[LockedPackage, ...] = ()
    graph: bool = False  # True: walk dependencies from the roots (uv, poetry 2.0)
    extras: tuple[str, ...] = ()  # the project's extras (poetry's [extras]): optional pins
    reason: str | None = None  # "path:line: reason" — the file could not be used
    failure: Failure | None = None
    selection: str | None = None  # which part of the lock applies ("environment 'default', linux-64")

    @property
    def conda(self) -> bool:
        """A conda lock format: its conda packages are judged against conda's records."""
        from pytest_envguard.probes.conda_locks import CONDA_FORMATS

        return self.format in CONDA_FORMATS

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
    """The format a lock file's name says. A ``requirements`` file (and any other
    ``*.lock``) holding conda's ``@EXPLICIT`` line is read as an explicit spec file."""
    from pytest_envguard.probes.conda_locks import conda_lock_format

    name = os.path.basename(path).lower()
    conda = conda_lock_format(path)
    if conda is not None:
        return conda
    if name.startswith("conda-") and name.endswith(".lock"):
        return "requirements"  # conda-lock's explicit render (conda-linux-64.lock): @EXPLICIT
    if name == "uv.lock":
        return "uv"
    if name == "poetry.lock":
        return "poetry"
    if re.fullmatch(r"pylock(\.[^.]+)?\.toml", name):
        return "pylock"
    if name.endswith((".txt", ".in")) or "requirements" in name:
        return "requirements"
    return None


def read_lock(path: str, prefix: str | None = None,
              environ: Mapping[str, str] | None = None) -> LockFacts:
    """The lock at ``path``; never raises (a problem goes to ``failure`` and ``reason``).
    ``prefix`` and ``environ`` say which environment of a ``pixi.lock`` this is."""
    kind = lock_format(path)
    if kind is None:
        return LockFacts(path, "unknown", reason=(
            f"{path}: unknown lock format (expected requirements*.txt, pylock.toml, "
            "uv.lock, poetry.lock, pixi.lock, conda-lock.yml, environment.yml or an "
            "@EXPLICIT spec file)"), failure=Failure.UNSUPPORTED)
    try:
        if kind in ("pixi", "conda-lock", "environment-yml"):
            return _conda_lock(path, kind, prefix, environ or {})
        if kind == "requirements":
            text = _lock_text(path)
            if any(line.strip() == "@EXPLICIT" for line in text.splitlines()):
                return _explicit(path, text)  # no requirements file can hold this line
            packages = tuple(_RequirementsReader().read(path, required=True, text=text))
            return LockFacts(path, kind, packages)
        document = _load_toml(path)
        if kind == "pylock":
            return LockFacts(path, kind, _pylock(path, document))
        if kind == "uv":
            return LockFacts(path, kind, _uv(path, document), graph=True)
        packages, graph, extras = _poetry(path, document)
        return LockFacts(path, kind, packages, graph=graph, extras=extras)
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


# -- conda formats (read in probes.conda_locks) --------------------------------------------


def _conda_lock(path: str, kind: str, prefix: str | None,
                environ: Mapping[str, str]) -> LockFacts:
    from pytest_envguard.probes import conda_locks

    if kind in ("pixi", "conda-lock"):
        environment = conda_locks.pixi_environment(prefix, environ)
        found, selection = conda_locks.read_rattler_lock(path, kind, environment,
                                                         conda_locks.conda_platform())
        packages = [_from_plain(item) for item in found]
        return LockFacts(path, kind, tuple(packages), selection=selection)
    found, name = conda_locks.environment_yml_packages(path, _lock_text(path))
    packages = []
    for item in found:
        if "pip" in item:
            packages.extend(_pip_entry(path, item["pip"], item["line"]))
        else:
            packages.append(_from_plain(item))
    return LockFacts(path, kind, tuple(packages), selection=f"name: {name}" if name else None)


def _explicit(path: str, text: str) -> LockFacts:
    from pytest_envguard.probes import conda_locks

    found, platform = conda_locks.read_explicit(path, text)
    return LockFacts(path, "explicit", tuple(_from_plain(item) for item in found),
                     selection=platform)


def _from_plain(item: Mapping[str, Any]) -> LockedPackage:
    name = str(item["name"])
    if item["manager"] != "conda":
        name = canonical_name(name)
    return LockedPackage(name, item.get("version"), str(item["source"]),
                         manager=str(item["manager"]), build=item.get("build"),
                         spec=item.get("spec"))


def _lock_text(path: str) -> str:
    try:
        data = read_bytes(path, MAX_LOCK_BYTES)
    except TooLarge:
        raise LockError(f"{path}: larger than {MAX_LOCK_BYTES >> 20} MiB, not a lock file",
                        Failure.TOO_LARGE) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LockError(f"{path}: not UTF-8 text ({error.reason})") from None


def _pip_entry(path: str, entry: str, number: int) -> list[LockedPackage]:
    """One entry of an ``environment.yml`` ``pip:`` list, read as a requirements line
    (a ``-r`` include, ``-e``, a path, ``name==version``); one not pinned with ``==``
    is checked for presence only (conda passes the list to pip as it is)."""
    where = f"{path}:{number}"
    reader = _RequirementsReader()
    reader.seen.add(os.path.realpath(path))
    if entry.startswith("-"):
        return [replace(p, source=p.source.replace(path, os.path.basename(path), 1))
                for p in reader._option(path, where, entry, True)]
    if _LOCAL_TARGET.match(entry):
        return [LockedPackage(local_project_name(where, entry, os.path.dirname(path)), None,
                              f"{os.path.basename(path)}:{number}")]
    requirement = _requirement(entry, where)
    specifiers = list(requirement.specifier)
    version = (specifiers[0].version if len(specifiers) == 1 and specifiers[0].operator in
               ("==", "===") and not specifiers[0].version.endswith(".*") else None)
    return [LockedPackage(canonical_name(requirement.name), version,
                          f"{os.path.basename(path)}:{number}",
                          str(requirement.marker) if requirement.marker else None)]


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

    def read(self, path: str, *, required: bool, text: str | None = None) -> list[LockedPackage]:
        real = os.path.realpath(path)
        if real in self.seen:
            return []  # an include cycle: each file counts once
        self.seen.add(real)
        if text is None:
            text = _lock_text(path)
        packages: list[LockedPackage] = []
        for number, line in _logical_lines(text):
            where = f"{path}:{number}"
            if line.startswith("-"):
                packages.extend(self._option(path, where, line, required))
            elif _LOCAL_TARGET.match(line):  # a project or wheel by path: its name is on disk
                option = _OPTION_START.search(line)
                target = line[: option.start()].strip() if option else line
                name = local_project_name(where, target, os.path.dirname(path))
                packages.append(LockedPackage(name, None, where, required=required))
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
            if not value:
                raise LockError(f"{where}: {option} needs a path or URL")
            egg = re.search(r"#egg=([A-Za-z0-9][A-Za-z0-9._-]*)", value)
            if egg is not None:
                return [LockedPackage(canonical_name(egg.group(1)), None, where, required=required)]
            name = local_project_name(where, value, os.path.dirname(path))
            return [LockedPackage(name, None, where, required=required)]
        if option in _IGNORED_OPTIONS:
            if option in _TAKES_VALUE and not value:
                raise LockError(f"{where}: {option} needs a value")
            return []
        raise LockError(f"{where}: unknown option {option!r}")


_LOCAL_TARGET = re.compile(r"(\.|/|~|file:)")


def _local_path(target: str, base: str) -> str:
    """A path or ``file:`` URL (extras and fragment dropped), absolute, from ``base``."""
    from urllib.parse import unquote, urlsplit

    target = target.split("#", 1)[0].strip()
    if target.startswith("file:"):
        parts = urlsplit(target)
        target = unquote(parts.path)
    target = re.sub(r"\[[^\]]*\]$", "", target)  # ".[dev]": the extras are not the path
    target = os.path.expanduser(target)
    return os.path.normpath(target if os.path.isabs(target) else os.path.join(base, target))


def _name_in_metadata(path: str) -> str | None:
    from pytest_envguard.probes.distributions import read_metadata_headers

    try:
        return next(iter(read_metadata_headers(path).get("name", ())), None)
    except (OSError, TooLarge, UnicodeError):
        return None


def project_name(directory: str) -> str | None:
    """The name of the project in ``directory``, as its build would say it: a static
    ``[project] name`` (PEP 621) or ``[tool.poetry] name`` in ``pyproject.toml``,
    ``[metadata] name`` in ``setup.cfg``, or the ``PKG-INFO`` of an ``*.egg-info`` an
    earlier build left (setuptools, in the project or under ``src/``)."""
    import configparser

    try:
        document = load_toml(os.path.join(directory, "pyproject.toml"), MAX_LOCK_BYTES)
    except (OSError, TooLarge, UnicodeDecodeError, TomlError):
        document = {}
    for table in (document.get("project"), document.get("tool", {}).get("poetry")):
        if isinstance(table, dict) and isinstance(table.get("name"), str) and table["name"]:
            return str(table["name"])
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(read_bytes(os.path.join(directory, "setup.cfg"), 1 << 20).decode())
        if parser.get("metadata", "name", fallback=""):
            return parser.get("metadata", "name")
    except (OSError, TooLarge, UnicodeDecodeError, configparser.Error):
        pass
    for where in (directory, os.path.join(directory, "src")):
        try:
            infos = sorted(entry for entry in os.listdir(where) if entry.endswith(".egg-info"))
        except OSError:
            continue
        for info in infos:
            name = _name_in_metadata(os.path.join(where, info, "PKG-INFO"))
            if name:
                return name
    return None


def local_project_name(where: str, target: str, base: str) -> str:
    """The canonical name of the project an ``-e PATH`` / ``-e file:///…`` / bare path
    line installs (a path relative to the requirements file's directory, as uv reads
    it). A line whose project cannot be named cannot be checked: a :class:`LockError`."""
    if "\x00" in target:  # no path holds one (os.path and pwd raise ValueError on it)
        raise LockError(f"{where}: {target!r}: a path with a NUL character")
    path = _local_path(target, base)
    if os.path.isfile(path) and path.endswith(".whl"):
        return canonical_name(os.path.basename(path).split("-", 1)[0])
    if not os.path.isdir(path):
        raise LockError(f"{where}: {target!r}: no project at {path}", Failure.MISSING)
    name = project_name(path)
    if name is None:
        raise LockError(f"{where}: {target!r}: cannot tell the name of the project at {path} "
                        "(no static [project] name, setup.cfg name or *.egg-info); "
                        "add '#egg=NAME' to the line")
    return canonical_name(name)


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


def _requirement(text: str, where: str) -> Requirement:
    """``text`` as a PEP 508 requirement. Raises :class:`LockError` naming ``where``."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(text)
    except InvalidRequirement as error:
        raise LockError(f"{where}: {text!r} is not a requirement: "
                        f"{str(error).splitlines()[0]}") from None


def _pinned(line: str, where: str, required: bool) -> LockedPackage:

    # Per-requirement options (--hash=…, --config-settings …) follow the requirement.
    option = _OPTION_START.search(line)
    text = line[: option.start()].strip() if option else line
    requirement = _requirement(text, where)
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


def _beside(lock_path: str) -> dict[str, Any]:
    """The ``pyproject.toml`` next to a lock file (what ``uv sync`` and ``poetry
    install`` read their settings from), or ``{}``."""
    try:
        return load_toml(os.path.join(os.path.dirname(lock_path), "pyproject.toml"), MAX_LOCK_BYTES)
    except (OSError, TooLarge, UnicodeDecodeError, TomlError):
        return {}


def _uv_default_groups(lock_path: str, recorded: object) -> tuple[str, ...] | None:
    """The dependency groups ``uv sync`` installs by default (None: every group):
    ``[tool.uv] default-groups`` of the project (a list, or ``"all"``), else the copy a
    recent uv records in the lock, else ``["dev"]`` (uv's documented default)."""
    tool = _beside(lock_path).get("tool", {})
    setting = tool.get("uv", {}).get("default-groups") if isinstance(tool, dict) and \
        isinstance(tool.get("uv"), dict) else None
    for value in (setting, recorded):
        if value == "all":
            return None
        if isinstance(value, list) and all(isinstance(group, str) for group in value):
            return tuple(canonical_name(group) for group in value)
    return ("dev",)


def _uv_groups(path: str, name: str, table: object) -> dict[str, tuple[Dependency, ...]]:
    if not isinstance(table, dict):
        return {}
    return {canonical_name(group): _uv_edges(path, name, edges) for group, edges in table.items()}


def _uv(path: str, document: Mapping[str, Any]) -> tuple[LockedPackage, ...]:
    """uv's lock. The roots are what ``uv sync`` run beside the lock installs: the
    project at the workspace root (source ``editable``/``virtual`` ``"."``), or, in a
    workspace whose root is no project, every member; each with its default groups
    (and a non-project root's own ``[manifest] dependency-groups``)."""
    if "version" not in document:
        raise LockError(f"{path}: no 'version' (not a uv lock file)")
    manifest = document.get("manifest", {})
    manifest = manifest if isinstance(manifest, dict) else {}
    members = {canonical_name(name) for name in manifest.get("members", []) if isinstance(name, str)}
    items = _table_list(path, document, "package")

    def local_source(item: Mapping[str, Any]) -> str | None:
        source = item.get("source", {})
        if not isinstance(source, dict):
            return None
        value = source.get("editable", source.get("virtual"))
        return value if isinstance(value, str) else None

    project_root = any(local_source(item) in (".", "./") for item in items)
    packages = []
    for index, item in enumerate(items):
        name, version = _name_version(path, "package", index, item)
        source = item.get("source", {})
        source = source if isinstance(source, dict) else {}
        virtual = "virtual" in source
        local = local_source(item)
        # uv sync beside the lock installs the root project, or in a workspace whose
        # root is no project, every member.
        root = (local in (".", "./")) if project_root else (
            name in members if members else local is not None)
        resolution = item.get("resolution-markers")
        marker = " or ".join(f"({m})" for m in resolution) if resolution else None
        optional = [(canonical_name(extra), _uv_edges(path, name, edges))
                    for extra, edges in (item.get("optional-dependencies") or {}).items()]
        dependencies = _uv_edges(path, name, item.get("dependencies", []))
        if root:
            defaults = _uv_default_groups(path, item.get("default-groups",
                                                         manifest.get("default-groups")))
            for group, edges in _uv_groups(path, name, item.get("dev-dependencies")).items():
                if defaults is None or group in defaults:
                    dependencies += edges
                else:
                    optional.append((f"group:{group}", edges))
        packages.append(LockedPackage(
            name, version, f"uv.lock [[package]] {name}", marker, installable=not virtual,
            root=root, dependencies=dependencies, optional=tuple(optional)))
    groups = _uv_groups(path, "[manifest]", manifest.get("dependency-groups"))
    if groups and not project_root:
        # A workspace root that is no project still has groups of its own: a virtual root.
        defaults = _uv_default_groups(path, manifest.get("default-groups"))
        chosen = tuple(edge for group, edges in groups.items()
                       if defaults is None or group in defaults for edge in edges)
        rest = tuple((f"group:{group}", edges) for group, edges in groups.items()
                     if defaults is not None and group not in defaults)
        packages.append(LockedPackage("(workspace)", None, "uv.lock [manifest]", installable=False,
                                      root=True, dependencies=chosen, optional=rest))
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


def _poetry_optional_groups(lock_path: str) -> set[str]:
    """The dependency groups ``poetry install`` leaves out by default: those its
    ``pyproject.toml`` marks ``[tool.poetry.group.NAME] optional = true``."""
    tool = _beside(lock_path).get("tool", {})
    poetry = tool.get("poetry", {}) if isinstance(tool, dict) else {}
    groups = poetry.get("group", {}) if isinstance(poetry, dict) else {}
    if not isinstance(groups, dict):
        return set()
    return {canonical_name(name) for name, table in groups.items()
            if isinstance(table, dict) and table.get("optional") is True}


def _poetry_marker(marker: object, groups: set[str]) -> str | None:
    """A package's marker for the installed ``groups``: Poetry 2 writes one string, or one
    marker per group (``{main = "…", dev = "…"}``)."""
    if isinstance(marker, dict):
        chosen = [value for group, value in marker.items()
                  if canonical_name(group) in groups and isinstance(value, str)]
        if not chosen:
            return None
        return " or ".join(f"({m})" for m in chosen)
    return marker if isinstance(marker, str) else None


def _poetry(path: str, document: Mapping[str, Any],
            ) -> tuple[tuple[LockedPackage, ...], bool, tuple[str, ...]]:
    """Poetry's lock. From lock-version 2.1 (Poetry 2) every package carries the
    ``groups`` it belongs to and, unless it applies everywhere, its ``markers``: a
    package applies when one of its groups is installed by default (``main`` and every
    group ``pyproject.toml`` does not mark optional) and its marker holds. Older locks
    only have markers on the edges, so the graph is walked from its roots. ``optional =
    true`` packages (extras) and those of optional groups are pins an installed copy
    must match."""
    if "metadata" not in document:
        raise LockError(f"{path}: no [metadata] table (not a poetry lock file)")
    items = _table_list(path, document, "package")
    metadata = document.get("metadata")
    lock_version = metadata.get("lock-version") if isinstance(metadata, dict) else None
    grouped = any("groups" in item for item in items) or _version_at_least(lock_version, (2, 1))
    optional_groups = _poetry_optional_groups(path) if grouped else set()
    packages = []
    targets: set[str] = set()
    for index, item in enumerate(items):
        name, version = _name_version(path, "package", index, item)
        edges = _poetry_edges(path, name, item.get("dependencies", {}))
        targets.update(edge.name for edge in edges)
        optional = tuple((canonical_name(extra), _poetry_extra_edges(entries))
                         for extra, entries in (item.get("extras") or {}).items())
        required = not item.get("optional", False)
        marker = item.get("markers")
        if grouped:
            groups = {canonical_name(g) for g in item.get("groups", ["main"]) if isinstance(g, str)}
            installed_groups = groups - optional_groups
            required = required and bool(installed_groups)
            marker = _poetry_marker(marker, installed_groups or groups)
        packages.append(LockedPackage(
            name, version, f"poetry.lock [[package]] {name}",
            marker if grouped and isinstance(marker, str) else None,
            required=required, dependencies=edges, optional=optional))
    extras = document.get("extras")
    extra_names = tuple(canonical_name(e) for e in extras) if isinstance(extras, dict) else ()
    if grouped:
        return tuple(packages), False, extra_names
    rooted = tuple(replace(package, root=package.required and package.name not in targets)
                   for package in packages)
    return rooted, True, extra_names


def _version_at_least(text: object, wanted: tuple[int, ...]) -> bool:
    if not isinstance(text, str):
        return False
    try:
        return tuple(int(part) for part in text.split(".")) >= wanted
    except ValueError:
        return False
