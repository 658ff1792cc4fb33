"""``python -m pytest_envguard [LINE…]`` (also the ``envguard`` command): the report, outside pytest.

With no lines, the contract is read from the pytest configuration found the
way pytest finds it (``pytest.ini``, ``pyproject.toml``, ``tox.ini``,
``setup.cfg`` in the current directory or above); with ``--config FILE``, from
that file, and the lines add to it. Exit status as in pytest: 0 when the
contract is met, 6 when it is not, 4 when a line, an option or the file is
not valid (an explicit ``--config`` with no ``envguard`` setting is one).

Run as ``python -m``, the current directory is dropped from ``sys.path``
(where ``-m`` puts it), so that a checkout's source tree does not shadow what
is installed: the report sees the environment as the ``envguard`` command and
pytest's test process do.

``--suggest`` prints a contract derived from the installed binaries;
``--migrate PATH…`` reports (and with ``--write`` rewrites) the skip
conditions of a test suite that a ``requires`` line expresses (see
:mod:`pytest_envguard.adopt`). ``--target NAME`` judges as on a described
machine (:mod:`pytest_envguard.targets`); ``--merge A.json B.json…`` prints one
table of requirements × runs (:mod:`pytest_envguard.merge`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pytest_envguard import __version__
from pytest_envguard.option_table import (
    EXIT_CONTRACT_UNMET,
    EXIT_OK,
    EXIT_USAGE,
    OptionError,
    Options,
)
from pytest_envguard.options import config_sections, find_config, read_config, resolve

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

EXIT_STATUSES = f"""\
exit status:
  {EXIT_OK}  the contract is met (--suggest, --migrate: done)
  1  --migrate: a file could not be read or parsed, and was left as it is
  {EXIT_USAGE}  a requirement line, an option or the config file is not valid (an unknown
     option, options that do not go together)
  {EXIT_CONTRACT_UNMET}  the contract is not met
  {128 + signal.SIGPIPE}  the reader closed the output early (| head): it stopped quietly

The same exit statuses as pytest with the plugin (pytest --envguard-report).
"""


def program_name(argv0: str) -> str:
    """How the user ran it: ``envguard`` (the console script) or ``python -m pytest_envguard``."""
    return "envguard" if Path(argv0).name == "envguard" else "python -m pytest_envguard"


class _Parser(argparse.ArgumentParser):
    """argparse, with pytest's exit status for a bad command line (4, not argparse's 2),
    and a reader that stops early treated as everywhere else."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        # argparse (3.11+) swallows a failed write, so that ``--help | head`` would end 0
        # or 141 by the stream's buffering; written here, it ends 141 as every other output.
        if message:
            (file or sys.stderr).write(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=program_name(sys.argv[0] if sys.argv else ""),
        description="Check the live environment against requirement lines and print a report.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("lines", nargs="*", metavar="LINE",
                        help="requirement lines; with --config, added to the file's contract "
                             "(default: the 'envguard' contract of the pytest config found from "
                             "the current directory)")
    parser.add_argument("-c", "--config", type=Path, metavar="FILE",
                        help="read the contract from this pytest config file (it must have an "
                             "'envguard' setting)")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON document here ('-': stdout)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the verdict table, not the environment")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    rehearse = parser.add_argument_group("rehearsing other machines")
    rehearse.add_argument("--target", metavar="NAME",
                          help="judge as on a described machine: a built-in target "
                               "(manylinux2014, manylinux_2_28, musllinux_1_2, cuda-11.8-t4x2, "
                               "…), a profile of the config's envguard_targets file, or "
                               "FILE.toml:NAME; nothing is asked of the hardware")
    rehearse.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                          help="one table of requirements × runs from the JSON documents of "
                               "several runs (tox envs, workers, targets); with --json, also "
                               "the merged document")
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
    if args.lines or args.config or args.json or args.quiet or args.target or args.merge:
        parser.error("--suggest and --migrate take no LINE, --config, --json, --quiet, "
                     "--target or --merge")
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


def _quiet_when_the_reader_stops(run: Callable[..., int]) -> Callable[..., int]:
    """``envguard | head``: when the reader closes the pipe, stop without a traceback,
    as a command killed by SIGPIPE does (status 128 + SIGPIPE), and keep the flush at
    exit from complaining too (the recipe of Python's ``signal`` documentation)."""

    @functools.wraps(run)
    def quiet(*args: object, **kwargs: object) -> int:
        try:
            try:
                return run(*args, **kwargs)
            finally:  # a pipe's buffer is written here, not at exit (--help ends in SystemExit)
                sys.stdout.flush()
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 128 + signal.SIGPIPE

    return quiet


@_quiet_when_the_reader_stops
def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.suggest or args.migrate:
        return _adopt(parser, args)
    if args.format or args.write is not None:
        parser.error("--format and --write go with --suggest or --migrate")
    if args.merge:
        if args.lines or args.config or args.quiet or args.target:
            parser.error("--merge takes JSON documents and --json only (no LINE, --config, "
                         "--quiet or --target)")
        from pytest_envguard.merge import run_merge

        return run_merge(args.merge, args.json)
    from pytest_envguard import render
    from pytest_envguard.checks import Evaluator
    from pytest_envguard.environment import Environment
    from pytest_envguard.grammar import RequirementError

    try:
        cwd = Path.cwd()
    except OSError as error:
        print(f"envguard: the working directory is gone: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        options, origin = _options(args.config, args.lines, cwd, args.target)
    except (OptionError, RequirementError) as error:
        print(f"envguard: {error}", file=sys.stderr)
        return EXIT_USAGE

    env = Environment(settings=options.settings(cache_dir=None, rootdir=cwd),
                      target=options.target)
    verdicts = Evaluator(env).evaluate(options.contract)
    met = all(verdict.ok for verdict in verdicts)
    if args.json == "-":
        print(json.dumps(render.json_document(env, verdicts, {}), indent=2))
        return EXIT_OK if met else EXIT_CONTRACT_UNMET
    if not args.quiet:
        env.probe_cheap()
        on = f" as on target {options.target.name}" if options.target else ""
        print(f"== envguard environment on {render.host()}{on} ==")
        print("\n".join(render.environment_lines(env)))
    print("== envguard contract ==")
    print("\n".join(render.verdict_table(verdicts)))
    if verdicts:
        print(f"contract {'met' if met else 'NOT met'}: {render.contract_summary(verdicts)}")
    else:
        print(f"no requirements to check: {origin}")
    if args.json:
        try:
            render.write_json(args.json, render.json_document(env, verdicts, {}))
        except OSError as error:
            print(f"envguard: could not write {args.json}: {error}", file=sys.stderr)
            return EXIT_USAGE
    return EXIT_OK if met else EXIT_CONTRACT_UNMET


def _options(config: Path | None, lines: Sequence[str], cwd: Path,
             target: str | None = None) -> tuple[Options, str]:
    """The options and contract of this run, and where an empty contract comes from.

    ``--config FILE`` is read, and must hold a contract (a section name with a typo
    would otherwise pass silently); the lines add to it. Without ``--config`` the lines
    alone are the contract, or, when there are none, the config found from ``cwd``.
    Raises :class:`OptionError` or ``RequirementError``."""
    values: dict[str, object] = {}
    source = "command line"
    origin = "no LINE given"
    config_dir = cwd
    if config is not None:
        config_dir = config.parent if config.is_absolute() else (cwd / config).parent
        if not config.is_file():
            raise OptionError(f"{config}: no such file")
        values = read_config(config) or {}
        source = config.name
        if not values.get("envguard"):
            raise OptionError(f"{config}: no 'envguard' setting in {config_sections(config)} — "
                              "the contract --config names must not be empty")
    elif not lines:
        found = find_config(cwd)
        if found is None:
            origin = f"no LINE given, and no pytest config in {cwd} or above"
        else:
            values, source = found[1], found[0].name
            config_dir = found[0].parent
            origin = f"no LINE given, and no 'envguard' setting in {found[0]}"
    options = resolve(values, source=lambda name: f"{source} [{name}]", require=lines,
                      require_source="command line", environ={}, target=target,
                      target_source="--target", config_dir=config_dir, cwd=cwd)
    return options, origin


def _use_the_environment_of_the_installed_command() -> None:
    """Drop the working directory that ``python -m`` puts first on ``sys.path`` (unless
    ``-P``/``-I`` kept it off): a source checkout there (``msgpack/`` without its compiled
    extension) would shadow the installed distribution, for this report only."""
    if getattr(sys.flags, "safe_path", False) or sys.flags.isolated or not sys.path:
        return
    first = sys.path[0]
    try:
        here = os.getcwd()
    except OSError:
        return
    if first == "" or os.path.abspath(first) == here:
        del sys.path[0]


if __name__ == "__main__":
    _use_the_environment_of_the_installed_command()
    sys.exit(main())
