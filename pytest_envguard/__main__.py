"""``python -m pytest_envguard [LINE…]`` (also the ``envguard`` command): the report, outside pytest.

With no lines, the contract is read from the pytest configuration found the
way pytest finds it (``pytest.ini``, ``pyproject.toml``, ``tox.ini``,
``setup.cfg`` in the current directory or above). Exit status as in pytest:
0 when the contract is met, 6 when it is not, 4 when a line does not parse.

``--suggest`` prints a contract derived from the installed binaries;
``--migrate PATH…`` reports (and with ``--write`` rewrites) the skip
conditions of a test suite that a ``requires`` line expresses (see
:mod:`pytest_envguard.adopt`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_envguard.options import (
    EXIT_CONTRACT_UNMET,
    EXIT_OK,
    EXIT_USAGE,
    OptionError,
    find_config,
    read_config,
    resolve,
)


def _parser() -> argparse.ArgumentParser:
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
    adopt = parser.add_argument_group("adopting envguard in an existing suite")
    adopt.add_argument("--suggest", action="store_true",
                       help="print a contract derived from the installed binaries; every line "
                            "is met on this machine")
    adopt.add_argument("--format", choices=("ini", "toml"),
                       help="--suggest: a [pytest] block (ini, the default) or "
                            "[tool.pytest.ini_options] (toml)")
    adopt.add_argument("--migrate", nargs="+", type=Path, metavar="PATH",
                       help="report the skipif/importorskip/unittest.skip* conditions of these "
                            "test files or directories that a requires line expresses")
    adopt.add_argument("--write", nargs="?", const="", metavar="FILE",
                       help="--suggest: merge into this config file; --migrate: rewrite the "
                            "files in place and print the diff")
    return parser


def _adopt(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--suggest`` and ``--migrate``: their arguments checked, then run."""
    from pytest_envguard import adopt

    if args.suggest and args.migrate:
        parser.error("--suggest and --migrate are separate commands")
    if args.lines or args.config or args.json or args.quiet:
        parser.error("--suggest and --migrate take no LINE, --config, --json or --quiet")
    if args.migrate:
        # `--migrate a.py --write b.py`: argparse reads b.py as --write's value.
        paths = [*args.migrate, *([Path(args.write)] if args.write else [])]
        if args.format:
            parser.error("--format goes with --suggest")
        return adopt.run_migrate(paths, args.write is not None)
    if args.write == "":
        parser.error("--suggest --write needs a FILE (pyproject.toml, pytest.ini, tox.ini, …)")
    try:
        cwd = Path.cwd()
    except OSError as error:
        print(f"envguard: the working directory is gone: {error}", file=sys.stderr)
        return EXIT_USAGE
    return adopt.run_suggest(args.format, Path(args.write) if args.write else None, cwd=cwd)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.suggest or args.migrate:
        return _adopt(parser, args)
    if args.format or args.write is not None:
        parser.error("--format and --write go with --suggest or --migrate")
    from pytest_envguard import render
    from pytest_envguard.checks import Evaluator
    from pytest_envguard.environment import Environment
    from pytest_envguard.grammar import RequirementError

    try:
        cwd = Path.cwd()
    except OSError as error:
        print(f"envguard: the working directory is gone: {error}", file=sys.stderr)
        return EXIT_USAGE
    values: dict[str, object] = {}
    source = "command line"
    try:
        if args.config is not None:
            if not args.config.is_file():
                raise OptionError(f"{args.config}: no such file")
            values = read_config(args.config) or {}
            source = args.config.name
        elif not args.lines:
            found = find_config(cwd)
            if found is not None:
                values = found[1]
                source = found[0].name
        if args.lines:
            values = {**values, "envguard": []}
        options = resolve(values, source=lambda name: f"{source} [{name}]", require=args.lines,
                          require_source="command line", environ={})
    except (OptionError, RequirementError) as error:
        print(f"envguard: {error}", file=sys.stderr)
        return EXIT_USAGE
    requirements = options.contract

    env = Environment(settings=options.settings(cache_dir=None, rootdir=cwd))
    verdicts = Evaluator(env).evaluate(requirements)
    met = all(verdict.ok for verdict in verdicts)
    if args.json == "-":
        print(json.dumps(render.json_document(env, verdicts, {}), indent=2))
        return EXIT_OK if met else EXIT_CONTRACT_UNMET
    if not args.quiet:
        env.probe_cheap()
        print(f"== envguard environment on {render.host()} ==")
        print("\n".join(render.environment_lines(env)))
    print("== envguard contract ==")
    print("\n".join(render.verdict_table(verdicts)))
    print(f"contract {'met' if met else 'NOT met'}: {render.contract_summary(verdicts) or 'empty'}")
    if args.json:
        try:
            render.write_json(args.json, render.json_document(env, verdicts, {}))
        except OSError as error:
            print(f"envguard: could not write {args.json}: {error}", file=sys.stderr)
            return EXIT_USAGE
    return EXIT_OK if met else EXIT_CONTRACT_UNMET


if __name__ == "__main__":
    sys.exit(main())
