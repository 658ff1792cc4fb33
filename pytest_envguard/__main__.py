"""``python -m pytest_envguard [LINE…]``: the environment report, outside pytest.

With no lines, the contract is read from the pytest configuration found the
way pytest finds it (``pytest.ini``, ``pyproject.toml``, ``tox.ini``,
``setup.cfg`` in the current directory or above). Exit status as in pytest:
0 when the contract is met, 6 when it is not, 4 when a line does not parse.
"""

from __future__ import annotations

import argparse
import configparser
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_envguard import render
from pytest_envguard.checks import Evaluator
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.grammar import Requirement, RequirementError, parse_lines

EXIT_OK = 0
EXIT_USAGE = 4
EXIT_CONTRACT_UNMET = 6


class ConfigError(Exception):
    """A configuration file that cannot be read."""


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
    try:
        with path.open("rb") as file:
            document: dict[str, Any] = tomllib.load(file)
            return document
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None


def _ini_section(path: Path, section: str) -> dict[str, str] | None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    return dict(parser[section]) if parser.has_section(section) else None


def _as_lines(value: object) -> list[str]:
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    if isinstance(value, list):
        bad = next(item for item in value if not isinstance(item, str))
        raise ConfigError(f"'envguard' must be a list of strings; {bad!r} is a {type(bad).__name__}")
    raise ConfigError(f"'envguard' must be a list of lines, not {type(value).__name__}")


def read_config(path: Path) -> dict[str, object] | None:
    """The pytest options of one config file, or None if it has no pytest section."""
    name = path.name
    if name in ("pytest.ini", ".pytest.ini"):
        return dict(_ini_section(path, "pytest") or {})
    if name in ("pytest.toml", ".pytest.toml"):
        table = _load_toml(path).get("pytest", {})
        return dict(table) if isinstance(table, dict) else {}
    if name == "pyproject.toml":
        tool = _load_toml(path).get("tool", {}).get("pytest")
        if not isinstance(tool, dict):
            return None
        options = tool.get("ini_options", tool)
        return dict(options) if isinstance(options, dict) else None
    if name == "tox.ini":
        section = _ini_section(path, "pytest")
        return dict(section) if section is not None else None
    if name == "setup.cfg":
        section = _ini_section(path, "tool:pytest")
        return dict(section) if section is not None else None
    return dict(_ini_section(path, "pytest") or {})


CONFIG_NAMES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml",
                "tox.ini", "setup.cfg")


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_envguard",
        description="Check the live environment against requirement lines and print a report.",
    )
    parser.add_argument("lines", nargs="*", metavar="LINE",
                        help="requirement lines (default: the 'envguard' contract of the pytest config)")
    parser.add_argument("-c", "--config", type=Path, metavar="FILE",
                        help="read the contract from this pytest config file")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON document here ('-': stdout)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the verdict table, not the environment")
    args = parser.parse_args(argv)

    options: dict[str, object] = {}
    source = "command line"
    try:
        if args.config is not None:
            if not args.config.is_file():
                raise ConfigError(f"{args.config}: no such file")
            options = read_config(args.config) or {}
            source = f"{args.config.name} [envguard]"
        elif not args.lines:
            found = find_config(Path.cwd())
            if found is not None:
                options = found[1]
                source = f"{found[0].name} [envguard]"
        lines = list(args.lines) or _as_lines(options.get("envguard", []))
        requirements: list[Requirement] = parse_lines(lines, source if not args.lines else "command line")
        settings = Settings(gpu_timeout=_seconds(options, "envguard_gpu_timeout", 10.0),
                            import_timeout=_seconds(options, "envguard_import_timeout", 60.0),
                            extra={"rootdir": str(Path.cwd()),
                                   "lock_extras": _lock_extras(options)})
    except (ConfigError, RequirementError) as error:
        print(f"envguard: {error}", file=sys.stderr)
        return EXIT_USAGE

    env = Environment(settings=settings)
    verdicts = Evaluator(env).evaluate(requirements)
    if not args.quiet:
        env.probe_all()
    met = all(verdict.ok for verdict in verdicts)
    if args.json == "-":
        print(json.dumps(render.json_document(env, verdicts, {}), indent=2))
        return EXIT_OK if met else EXIT_CONTRACT_UNMET
    if not args.quiet:
        print(f"== envguard environment on {render.host()} ==")
        print("\n".join(render.environment_lines(env)))
    print("== envguard contract ==")
    print("\n".join(render.verdict_table(verdicts)))
    print(f"contract {'met' if met else 'NOT met'}: {render.contract_summary(verdicts) or 'empty'}")
    if args.json:
        try:
            Path(args.json).write_text(
                json.dumps(render.json_document(env, verdicts, {}), indent=2) + "\n",
                encoding="utf-8",
            )
        except OSError as error:
            print(f"envguard: could not write {args.json}: {error}", file=sys.stderr)
            return EXIT_USAGE
    return EXIT_OK if met else EXIT_CONTRACT_UNMET


def _lock_extras(options: dict[str, object]) -> str:
    value = str(options.get("envguard_lock_extras", "report")).strip().lower()
    if value not in ("report", "ignore", "fail"):
        raise ConfigError(
            f"[envguard_lock_extras]: invalid value {value!r} (expected report, ignore or fail)"
        )
    return value


def _seconds(options: dict[str, object], name: str, default: float) -> float:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = float(str(raw))
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"[{name}]: {raw!r} is not a positive number of seconds")
    return value


if __name__ == "__main__":
    sys.exit(main())
