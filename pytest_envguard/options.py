"""Every option resolved once into a frozen, typed :class:`Options` (they are declared in
:mod:`pytest_envguard.option_table`).

The pytest plugin reads the values from pytest's config (ini files,
``pyproject.toml``, ``-o``, the command line); ``python -m pytest_envguard``
reads them from a config file found the way pytest finds one
(:func:`find_config`). Both hand the raw values to :func:`resolve`, which
validates each one and names where a bad one came from. Knows no pytest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from pytest_envguard.option_table import (
    INI_OPTIONS,
    LOCK_EXTRAS,
    STRICT_MODES,
    XDIST_CONTROLLER,
    OptionError,
    Options,
)

if TYPE_CHECKING:
    from pytest_envguard.environment import LockExtras
    from pytest_envguard.grammar import Requirement
    from pytest_envguard.option_table import StrictMode, XdistController, XdistGpus
    from pytest_envguard.targets import Target


def resolve(
    values: Mapping[str, object],
    *,
    source: Callable[[str], str],
    require: Sequence[str] = (),
    require_source: str = "command line --envguard-require",
    strict_flag: bool = False,
    environ: Mapping[str, str] | None = None,
    target: str | None = None,
    target_source: str = "--envguard-target",
    config_dir: Path | None = None,
    cwd: Path | None = None,
) -> Options:
    """Validate the raw ini ``values`` (by option name; absent ones take their
    default) and the command line's ``require`` lines, ``--envguard-strict`` and
    ``--envguard-target`` (``target``: a name, or ``FILE.toml:NAME``; ``FILE`` is
    taken from ``cwd``, ``envguard_targets`` from ``config_dir``). ``source(name)``
    says where an option came from, for messages. Raises :class:`OptionError`, or
    ``RequirementError`` for a contract line."""
    environ = os.environ if environ is None else environ

    def value(name: str) -> object:
        default = next(option.default for option in INI_OPTIONS if option.name == name)
        found = values.get(name)
        return default if found is None else found

    strict = "true" if strict_flag else _choice(value("envguard_strict"), STRICT_MODES,
                                                 source("envguard_strict"))
    tox_python = _bool(value("envguard_tox_python"), source("envguard_tox_python"))
    sources = [(as_lines(value("envguard"), source("envguard")), source("envguard")),
               (list(require), require_source)]
    if tox_python:
        env_name = environ.get("TOX_ENV_NAME", "")
        sources.append((tox_python_lines(env_name), f"tox env {env_name} [envguard_tox_python]"))
    contract: list[Requirement] = []
    for lines, where in sources:
        if lines:  # the grammar is imported only when there is a line to parse
            from pytest_envguard.grammar import parse_lines

            contract += parse_lines(lines, where)
    return Options(
        contract=tuple(contract),
        strict=cast("StrictMode", strict),
        gpu_timeout=_seconds(value("envguard_gpu_timeout"), source("envguard_gpu_timeout")),
        import_timeout=_seconds(value("envguard_import_timeout"), source("envguard_import_timeout")),
        lock_extras=cast("LockExtras", _choice(value("envguard_lock_extras"), LOCK_EXTRAS,
                                             source("envguard_lock_extras"))),
        junit_properties=_bool(value("envguard_junit_properties"),
                               source("envguard_junit_properties")),
        xdist_gpus=_gpus(value("envguard_xdist_gpus"), source("envguard_xdist_gpus")),
        xdist_controller=cast("XdistController", _choice(value("envguard_xdist_controller"),
                                                       XDIST_CONTROLLER,
                                                       source("envguard_xdist_controller"))),
        tox_python=tox_python,
        show_env_values=_bool(value("envguard_show_env_values"), source("envguard_show_env_values")),
        conda_hashes=_bool(value("envguard_conda_hashes"), source("envguard_conda_hashes")),
        strict_flag=strict_flag,
        target=resolve_target(target, str(value("envguard_targets") or ""),
                              name_source=target_source, file_source=source("envguard_targets"),
                              cwd=cwd or Path.cwd(), config_dir=config_dir or cwd or Path.cwd()
                              ) if target else None,
    )


# -- --envguard-target -------------------------------------------------------------------------

#: The largest profile file read.
MAX_PROFILES_BYTES = 1 << 20


def resolve_target(name: str, profiles: str, *, name_source: str, file_source: str, cwd: Path,
                   config_dir: Path) -> Target:
    """The target ``name`` names: ``FILE.toml:NAME`` (a profile of that file, from ``cwd``),
    else a profile of the ``envguard_targets`` file (from ``config_dir``), else a built-in
    target. Raises :class:`OptionError` naming where the bad part came from."""
    from pytest_envguard.targets import TargetError, find_target

    text = name.strip()
    file, colon, profile = text.rpartition(":")
    try:
        if colon and file.endswith(".toml"):
            return find_target(profile, _profiles(cwd / file, f"{name_source} {text}"))
        user = _profiles(config_dir / profiles, file_source) if profiles.strip() else {}
        return find_target(text, user)
    except TargetError as error:
        raise OptionError(f"{name_source} {text}: {error}") from None


def _profiles(path: Path, where: str) -> dict[str, Target]:
    from pytest_envguard.probes._io import TomlError, TooLarge, load_toml
    from pytest_envguard.targets import TargetError, user_targets

    try:
        document = load_toml(str(path), MAX_PROFILES_BYTES)
    except FileNotFoundError:
        raise OptionError(f"{where}: no such file: {path}") from None
    except (OSError, TooLarge, UnicodeDecodeError, TomlError) as error:
        raise OptionError(f"{where}: {path}: {error}") from None
    try:
        return user_targets(document, str(path))
    except TargetError as error:
        raise OptionError(f"{where}: {error}") from None


# -- validators ------------------------------------------------------------------------------


def as_lines(value: object, where: str) -> list[str]:
    """A line list: a list of strings (TOML) or text with one line per line (ini)."""
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    if isinstance(value, list):
        bad = next(item for item in value if not isinstance(item, str))
        raise OptionError(f"{where}: each line must be a string, not {type(bad).__name__} ({bad!r})")
    raise OptionError(f"{where}: must be a list of lines, not {type(value).__name__}")


def _choice(value: object, choices: Sequence[str], where: str) -> str:
    chosen = str(value).strip().lower()
    if chosen not in choices:
        raise OptionError(f"{where}: invalid value {chosen!r} (expected one of {', '.join(choices)})")
    return chosen


def _bool(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    raise OptionError(f"{where}: invalid value {text!r} (expected true or false)")


def _seconds(value: object, where: str) -> float:
    try:
        seconds = float(str(value).strip()) if not isinstance(value, bool) else -1.0
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise OptionError(f"{where}: {value!r} is not a positive number of seconds")
    return seconds


def _gpus(value: object, where: str) -> XdistGpus:
    text = str(value).strip().lower()
    if text in ("off", "auto"):
        return cast("XdistGpus", text)
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise OptionError(f"{where}: invalid value {text!r} "
                          "(expected off, auto, or a number of GPUs per worker)")
    return int(text)


# -- tox: the interpreter matches the env's pyXY factor ---------------------------------------


def tox_python_lines(env_name: str) -> list[str]:
    """The requirement lines that a tox env name's Python factor implies: ``py311`` and
    ``3.11`` give ``python ==3.11.*``; ``py313t`` adds ``abi free-threaded``."""
    import re

    for factor in env_name.split("-"):
        match = re.fullmatch(r"(?:py)?(?P<major>[23])\.?(?P<minor>\d{1,2})(?P<t>t?)", factor)
        if match:
            lines = [f"python =={match['major']}.{match['minor']}.*"]
            if match["t"]:
                lines.append("abi free-threaded")
            return lines
    return []


# -- config files, as pytest finds them (for the CLI) ----------------------------------------

CONFIG_NAMES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml",
                "tox.ini", "setup.cfg")
MAX_CONFIG_BYTES = 16 << 20


def _toml(path: Path) -> dict[str, object]:
    from pytest_envguard.probes._io import TomlError, TooLarge, load_toml

    try:
        return load_toml(str(path), MAX_CONFIG_BYTES)
    except (OSError, TooLarge, UnicodeDecodeError, TomlError) as error:
        raise OptionError(f"{path}: {error}") from None


def _ini_section(path: Path, section: str) -> dict[str, object] | None:
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error, UnicodeDecodeError) as error:
        raise OptionError(f"{path}: {error}") from None
    return dict(parser[section]) if parser.has_section(section) else None


def read_config(path: Path) -> dict[str, object] | None:
    """The pytest options of one config file, or None if it has no pytest section."""
    name = path.name
    if name in ("pytest.toml", ".pytest.toml"):
        table = _toml(path).get("pytest", {})
        return dict(table) if isinstance(table, dict) else {}
    if name == "pyproject.toml":
        tool = _toml(path).get("tool", {})
        pytest_table = tool.get("pytest") if isinstance(tool, dict) else None
        if not isinstance(pytest_table, dict):
            return None
        options = pytest_table.get("ini_options", pytest_table)
        return dict(options) if isinstance(options, dict) else None
    if name == "setup.cfg":
        return _ini_section(path, "tool:pytest")
    if name == "tox.ini":
        return _ini_section(path, "pytest")
    return dict(_ini_section(path, "pytest") or {})


#: Where each config file holds pytest's options: what an explicit ``--config FILE``
#: with no contract is told was looked for (any other name is read as an ini file).
CONFIG_SECTIONS = {
    "pytest.toml": "[pytest]",
    ".pytest.toml": "[pytest]",
    "pyproject.toml": "[tool.pytest.ini_options] (or pytest 9's [tool.pytest])",
    "setup.cfg": "[tool:pytest]",
}


def config_sections(path: Path) -> str:
    """The section(s) of ``path`` that :func:`read_config` reads."""
    return CONFIG_SECTIONS.get(path.name, "[pytest]")


def find_config(start: Path) -> tuple[Path, dict[str, object]] | None:
    """The first pytest config from ``start`` upwards, in pytest's order of names."""
    for directory in (start, *start.parents):
        for name in CONFIG_NAMES:
            candidate = directory / name
            if candidate.is_file():
                options = read_config(candidate)
                if options is not None:
                    return candidate, options
    return None


