"""``python -m pytest_envguard [LINE…]`` (also the ``envguard`` command): the report, outside pytest.

With no lines, the contract is read from the pytest configuration found the
way pytest finds it (``pytest.ini``, ``pyproject.toml``, ``tox.ini``,
``setup.cfg`` in the current directory or above). Exit status as in pytest:
0 when the contract is met, 6 when it is not, 4 when a line does not parse.
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
