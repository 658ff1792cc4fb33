"""Conda lock formats → the packages they pin: ``pixi.lock``, ``conda-lock.yml``,
explicit spec files, ``environment.yml``.

* ``pixi.lock`` and ``conda-lock.yml`` are read by py-rattler's ``LockFile`` (the
  reader pixi itself uses; it reads conda-lock's version-1 format too), for the
  environment this prefix is (pixi's ``conda-meta/pixi`` marker, the
  ``.pixi/envs/NAME`` path, ``PIXI_ENVIRONMENT_NAME``, else ``default``) and this
  machine's conda platform (``linux-64``…): conda packages by name, version and
  build, PyPI packages by name and version.
* Explicit spec files (``conda list --explicit``, conda-lock's ``--kind explicit``):
  ``@EXPLICIT`` then one package URL a line, ``…/NAME-VERSION-BUILD.conda`` — read
  here, line by line, so a problem names its line.
* ``environment.yml``: its ``dependencies`` are conda match specs (``numpy=1.26.4=py311_0``,
  ``numpy==1.26.4``, ``python=3.11``), judged later with py-rattler's ``MatchSpec``;
  its ``pip:`` section is a requirements list. A small reader of the YAML subset
  conda writes (``conda env export``) and people write by hand: block mappings and
  sequences, one ``pip:`` sub-list, flow lists ``[a, b]``, comments, quotes; anything
  else is refused with its line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from pytest_envguard.probes import Failure, describe_error

#: conda's platform (subdir) for each (sys.platform-like system, machine). Source:
#: conda's ``KNOWN_SUBDIRS`` / rattler's ``Platform`` names.
CONDA_PLATFORMS: Mapping[tuple[str, str], str] = {
    ("linux", "x86_64"): "linux-64",
    ("linux", "aarch64"): "linux-aarch64",
    ("linux", "ppc64le"): "linux-ppc64le",
    ("linux", "s390x"): "linux-s390x",
    ("linux", "armv7l"): "linux-armv7l",
    ("linux", "i686"): "linux-32",
    ("darwin", "x86_64"): "osx-64",
    ("darwin", "arm64"): "osx-arm64",
}

CONDA_FORMATS = ("pixi", "conda-lock", "explicit", "environment-yml")
_ARCHIVE = re.compile(r"(?P<stem>[^/]+?)(?P<ext>\.tar\.bz2|\.conda)$")


def conda_platform() -> str | None:
    """This machine's conda platform, ``linux-64``; None when conda has none for it."""
    uname = os.uname()
    return CONDA_PLATFORMS.get((uname.sysname.lower(), uname.machine))


def conda_lock_format(path: str) -> str | None:
    """The conda format a lock file's name says, if any (explicit files are told by
    their ``@EXPLICIT`` line: see :func:`is_explicit`)."""
    name = os.path.basename(path).lower()
    if name == "pixi.lock":
        return "pixi"
    if name.endswith(("conda-lock.yml", "conda-lock.yaml")):
        return "conda-lock"
    if name.endswith((".yml", ".yaml")):
        return "environment-yml"
    return None


def is_explicit(path: str, head: int = 8 << 10) -> bool:
    """Whether ``path`` is an explicit spec file: ``@EXPLICIT`` is its first line that
    is neither blank nor a comment, as ``conda list --explicit`` writes it (only the
    first ``head`` bytes are read; False for anything that cannot be)."""
    from pytest_envguard.probes._io import open_regular

    try:
        with open_regular(path) as file:
            data: bytes = file.read(head)
    except OSError:
        return False
    for line in data.decode("utf-8", "replace").splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            return text == "@EXPLICIT"
    return False


def pixi_environment(prefix: str | None, environ: Mapping[str, str]) -> str:
    """Which pixi environment the prefix is: its ``conda-meta/pixi`` marker, its
    ``.pixi/envs/NAME`` path, ``PIXI_ENVIRONMENT_NAME``, else ``default``."""
    if prefix:
        from pytest_envguard.probes.conda import read_pixi_marker
        from pytest_envguard.probes.isolation import pixi_environment_of

        marker = read_pixi_marker(prefix)
        if marker is not None and marker.environment:
            return marker.environment
        by_path = pixi_environment_of(prefix)
        if by_path:
            return by_path
    return environ.get("PIXI_ENVIRONMENT_NAME") or "default"


# -- pixi.lock, conda-lock.yml (py-rattler) --------------------------------------------------------


def read_rattler_lock(path: str, kind: str, environment: str, platform: str | None,
                      ) -> tuple[list[dict[str, Any]], str]:
    """The packages of one environment and platform of a lock py-rattler reads, as
    plain dicts (``name``, ``version``, ``build``, ``manager``, ``source``); and what
    was selected. Raises ``LockError``."""
    from pytest_envguard.probes.conda import INSTALL_HINT, _rattler_errors, import_rattler
    from pytest_envguard.probes.locks import LockError

    rattler, why = import_rattler()
    if rattler is None:
        # UNSUPPORTED: this installation cannot read the format (the extra is missing).
        raise LockError(f"{path}: reading a {kind} lock needs py-rattler: {why or INSTALL_HINT}",
                        Failure.UNSUPPORTED)
    if not os.path.isfile(path):
        raise LockError(f"{path}: no such file", Failure.MISSING)
    try:
        lock = rattler.LockFile.from_path(path)
        if kind == "conda-lock":
            environment = "default"  # conda-lock's format has one environment
        chosen = lock.environment(environment)
        names = sorted(name for name, _ in lock.environments())
        if chosen is None:
            raise LockError(f"{path}: no environment {environment!r} (it has: "
                            f"{', '.join(names) or 'none'})")
        platforms = {p.name: p for p in chosen.platforms()}
        if platform is None or platform not in platforms:
            raise LockError(f"{path}: environment {environment!r} locks no packages for "
                            f"{platform or 'this platform'} (it locks: "
                            f"{', '.join(sorted(platforms)) or 'none'})")
        selection = f"environment {environment!r}, {platform}"
        found = []
        for package in chosen.packages(platforms[platform]) or []:
            where = f"{os.path.basename(path)} [{environment} {platform}] {package.name}"
            if type(package).__name__ == "PypiLockedPackage":
                found.append({"name": package.name, "version": str(package.version),
                              "build": None, "manager": "pypi", "source": where})
                continue
            record = package.package_record
            found.append({"name": package.name,
                          "version": str(record.version) if record is not None else None,
                          "build": str(record.build) if record is not None else None,
                          "manager": "conda", "source": where})
    except LockError:
        raise
    except _rattler_errors() as error:
        message = describe_error(error).split(": ", 1)[-1].splitlines()[0]
        raise LockError(f"{path}: py-rattler cannot read it as a {kind} lock: {message}") from None
    return found, selection


# -- explicit spec files -------------------------------------------------------------------


def read_explicit(path: str, text: str) -> tuple[list[dict[str, Any]], str | None]:
    """``@EXPLICIT`` URLs → packages (``name``, ``version``, ``build``), each with its
    line; and the ``# platform:`` the file names. Raises ``LockError``."""
    from urllib.parse import unquote, urlsplit

    from pytest_envguard.probes.locks import LockError

    found = []
    platform = None
    started = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = re.match(r"#\s*platform:\s*(\S+)", line)
            if match:
                platform = match.group(1)
            continue
        if line == "@EXPLICIT":
            started = True
            continue
        where = f"{path}:{number}"
        if not started:
            raise LockError(f"{where}: {line!r} comes before the @EXPLICIT line")
        url = line.split("#", 1)[0].strip()  # the fragment is the archive's md5 or sha256
        try:
            name = unquote(urlsplit(url).path).rstrip("/").rpartition("/")[2]
        except ValueError as error:  # "Invalid IPv6 URL": a '[' in the host part
            raise LockError(f"{where}: {url!r} is not a URL ({error})") from None
        match = _ARCHIVE.fullmatch(name)
        parts = match.group("stem").rsplit("-", 2) if match else []
        if len(parts) != 3 or not all(parts):
            raise LockError(f"{where}: {url!r} is not a conda package URL "
                            "(…/NAME-VERSION-BUILD.conda or .tar.bz2)")
        found.append({"name": parts[0], "version": parts[1], "build": parts[2],
                      "manager": "conda", "source": f"{os.path.basename(path)}:{number}"})
    if not started:
        raise LockError(f"{path}: no @EXPLICIT line (not an explicit spec file)")
    return found, platform


# -- environment.yml -------------------------------------------------------------------------------


def _strip_comment(line: str) -> str:
    """A YAML comment starts a line or follows whitespace (``#egg=`` in a URL is none)."""
    match = re.search(r"(^|\s)#", line)
    return line[: match.start()].rstrip() if match else line.rstrip()


def _scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _flow_list(text: str, where: str) -> list[str]:
    from pytest_envguard.probes.locks import LockError

    inner = text.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise LockError(f"{where}: expected a list")
    return [_scalar(item) for item in inner[1:-1].split(",") if item.strip()]


def _top_level(document: dict[str, Any], body: str, number: int, where: str) -> str:
    """A ``key: value`` line at indent 0: the section it opens."""
    from pytest_envguard.probes.locks import LockError

    key, colon, value = body.partition(":")
    if not colon or body.startswith("-"):
        raise LockError(f"{where}: expected 'key: value' at the top level")
    section = key.strip()
    if value.strip():
        if section == "name":
            document["name"] = _scalar(value)
        elif section in ("channels", "dependencies"):
            document[section].extend((number, spec) for spec in _flow_list(value, where))
    return section


def _dependency(document: dict[str, Any], entry: str, number: int, where: str) -> bool:
    """One ``- item`` of ``dependencies:``; True when it opens a ``pip:`` block list."""
    from pytest_envguard.probes.locks import LockError

    mapping = re.match(r"([A-Za-z_][\w-]*)\s*:(?:\s+|$)(.*)", entry)  # not "chan::name"
    if not mapping:
        document["dependencies"].append((number, _scalar(entry)))
        return False
    if mapping.group(1) != "pip":
        raise LockError(f"{where}: {mapping.group(1)!r}: only a 'pip:' list may sit among "
                        "the dependencies")
    if mapping.group(2).strip():
        document["pip"].extend((number, item) for item in _flow_list(mapping.group(2), where))
        return False
    return True


def parse_environment_yml(path: str, text: str) -> dict[str, Any]:
    """The parts of an ``environment.yml`` a lock check needs: ``name``, ``channels``,
    ``dependencies`` (each ``(line, spec)``) and ``pip`` (each ``(line, entry)``).
    Raises ``LockError`` for what this subset does not read."""
    from pytest_envguard.probes.locks import LockError

    document: dict[str, Any] = {"name": None, "channels": [], "dependencies": [], "pip": []}
    section: str | None = None
    item_indent = -1
    in_pip = False
    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise LockError(f"{where}: a tab in the indentation (YAML forbids it)")
        line = _strip_comment(raw)
        body = line.strip()
        if not body or body in ("---", "..."):
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            section, in_pip = _top_level(document, body, number, where), False
            continue
        if section not in ("dependencies", "channels"):
            continue  # variables:, prefix's continuation… nothing a lock check reads
        if not body.startswith("-"):
            raise LockError(f"{where}: expected a '- item' under {section}:")
        entry = body[1:].strip()
        if in_pip and indent > item_indent:
            document["pip"].append((number, _scalar(entry)))
        elif section == "channels":
            document["channels"].append((number, _scalar(entry)))
        else:
            item_indent = indent
            in_pip = _dependency(document, entry, number, where)
    return document


_CONDA_NAME = re.compile(r"(?:[^\s:]+::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.+-]*)")


def environment_yml_packages(path: str, text: str) -> tuple[list[dict[str, Any]], str | None]:
    """The conda dependencies (as match specs) and the ``pip:`` entries of an
    ``environment.yml``; and its ``name``. Raises ``LockError``."""
    from pytest_envguard.probes.locks import LockError

    document = parse_environment_yml(path, text)
    base = os.path.basename(path)
    found: list[dict[str, Any]] = []
    for number, spec in document["dependencies"]:
        match = _CONDA_NAME.match(spec)
        if not match:
            raise LockError(f"{path}:{number}: {spec!r} is not a conda package spec")
        rest = spec[match.end():].strip()
        version = build = None
        pinned = re.fullmatch(r"==?\s*([^=\s,<>!|*]+)(?:=([^=\s]+))?", rest)
        if pinned and (rest.startswith("==") or pinned.group(2)):
            version, build = pinned.group(1), pinned.group(2)
        found.append({"name": match.group("name"), "version": version, "build": build,
                      "spec": spec, "manager": "conda", "source": f"{base}:{number}"})
    for number, entry in document["pip"]:
        found.append({"pip": entry, "line": number, "source": f"{base}:{number}"})
    return found, document["name"]
