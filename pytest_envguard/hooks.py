"""The bodies of the pytest hooks, the ``requires`` marker's set-up, the ``envguard``
fixture, the session's state under :data:`STATE`, exit codes (DESIGN.md §3), which
:mod:`pytest_envguard.plugin` (the module pytest loads) exposes to pytest.

Kept to the hooks and the state: what the hooks do when there is something to do lives
in :mod:`pytest_envguard.contract` (a report, an unmet contract, a target, the JSON
document) and :mod:`pytest_envguard.per_test` (the ``requires`` marker and
``envguard.require()``), imported the first time a run needs them, as are the grammar,
the checks and the probes. With no contract and no ``requires`` marker a run imports
only this module, :mod:`~pytest_envguard.plugin` and
:mod:`~pytest_envguard.option_table`; the options are resolved
(:mod:`~pytest_envguard.options`) when one of them is set. pytest-xdist hooks live in
:mod:`pytest_envguard.xdist`, CI reports in :mod:`pytest_envguard.ci_reports`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_envguard.option_table import EXIT_CONTRACT_UNMET, EXIT_OK, INI_OPTIONS, Options

if TYPE_CHECKING:
    from pytest_envguard.checks import Evaluator
    from pytest_envguard.contract import Stop
    from pytest_envguard.environment import Environment
    from pytest_envguard.grammar import Requirement
    from pytest_envguard.per_test import EnvguardFixture, MarkerRequirements, Raised, Unmet
    from pytest_envguard.verdicts import Verdict

__all__ = ["EXIT_CONTRACT_UNMET", "STATE", "EnvguardState"]

#: The command-line options that take a value: pytest may read that value as a test
#: path while it looks for its configuration, when written as two words.
VALUE_OPTIONS = ("--envguard-require", "--envguard-json", "--envguard-target")


# -- the session's state -----------------------------------------------------------------------


class EnvguardState:
    """Everything the plugin keeps for one session, under :data:`STATE`."""

    def __init__(self, config: pytest.Config, options: Options) -> None:
        self.config = config
        self.options = options
        self.contract_verdicts: list[Verdict] = []
        self.contract_left_to_workers = False  # envguard_xdist_controller = skip, on the controller
        self.stop: Stop | None = None
        self.tests: dict[str, list[Verdict]] = {}
        self.outcomes: dict[str, str] = {}
        self.groups: Counter[tuple[str, str]] = Counter()
        self.current_item: pytest.Item | None = None
        self.marker_cache: dict[object, MarkerRequirements] = {}
        # By id() of the item: every collected test (kept, so that an id is not reused; one
        # that is not among them was added later, and is judged at set-up) and the parsed
        # ``requires`` markers of those that carry one.
        self.collected: dict[int, pytest.Item] = {}
        self.marks: dict[int, MarkerRequirements] = {}
        # (Kept here rather than in each item's stash: a stash key defined in a module that
        # pytester's in-process runs unload and import again would be another key.)
        self.unmet: dict[int, Unmet] = {}  # the unmet decision of a test's markers
        self.raised: dict[int, Raised] = {}  # by id() of the exception
        self._environment: Environment | None = None
        self._evaluator: Evaluator | None = None
        # Whether set-up has work for a collected test: markers the run loop did not judge
        # (yet), or an unmet decision left to the refusal at set-up.
        self.work_at_setup = False
        self.judged_at_start = False
        # Each test's verdicts are kept for the JSON document (on an xdist worker: for the
        # controller's).
        self.recording = bool(config.getoption("envguard_json"))
        self._marking_reports = False
        self._tallying = False
        self._cache_dir: Path | None = None
        self._cache_dir_known = False

    def mark_reports(self) -> None:
        """From now on, mark the reports that an unmet requirement ends up in, and count
        them."""
        if not self._marking_reports:
            from pytest_envguard.per_test import ReportMarking

            self._marking_reports = True
            self.config.pluginmanager.register(ReportMarking(self), "envguard-reports")
        self.tally()

    def tally(self, *, outcomes: bool = False) -> None:
        """From now on, count the reports of requirement skips and failures (on the xdist
        controller: the workers' reports), and with ``outcomes``, record each test's
        outcome (the first call decides: configure makes it, when the JSON document wants
        outcomes). Registered when first needed: a hook on every report would cost a suite
        that meets everything some 1%."""
        if not self._tallying:
            from pytest_envguard.per_test import Tally

            self._tallying = True
            self.config.pluginmanager.register(Tally(self, outcomes=outcomes), "envguard-tally")

    @property
    def cache_dir(self) -> Path | None:
        """``envguard/`` in pytest's cache dir, made the first time a probe may cache;
        None when the cache provider is disabled (``-p no:cacheprovider``): then nothing
        is cached on disk."""
        if not self._cache_dir_known:
            cache: Any = getattr(self.config, "cache", None)
            self._cache_dir = Path(cache.mkdir("envguard")) if cache is not None else None
            self._cache_dir_known = True
        return self._cache_dir

    @property
    def contract(self) -> tuple[Requirement, ...]:
        return self.options.contract

    @property
    def environment(self) -> Environment:
        if self._environment is None:
            from pytest_envguard.environment import Environment

            self._environment = Environment(settings=self.options.settings(
                cache_dir=self.cache_dir, rootdir=self.config.rootpath),
                target=self.options.target)
        return self._environment

    @property
    def evaluator(self) -> Evaluator:
        if self._evaluator is None:
            from pytest_envguard.checks import Evaluator

            self._evaluator = Evaluator(self.environment)
        return self._evaluator

    @property
    def environment_if_made(self) -> Environment | None:
        return self._environment

    def strict(self) -> bool:
        return self.options.strict_now(os.environ)

    def stop_run(self, status: str, exit_status: int, *, shown_by_pytest: bool = False) -> None:
        """No test runs (or, on the xdist controller, no more): end with ``status``."""
        from pytest_envguard.contract import Stop

        self.stop = Stop(status, exit_status, shown_by_pytest)


STATE = pytest.StashKey[EnvguardState]()


def is_xdist_worker(config: pytest.Config) -> bool:
    # xdist gives each worker's config a ``workerinput`` dict: the documented way to tell.
    return hasattr(config, "workerinput")


# -- options ---------------------------------------------------------------------------------


def _ini_type(kind: str) -> Any:
    """The ini type to declare: what pytest's own validation can take of each kind.
    pytest 9's native ``[tool.pytest]`` table checks TOML types, so numbers are
    declared as numbers there (as numbers or strings from 9.2, which takes unions)."""
    if kind == "lines":
        return "linelist"
    if kind == "bool":
        return "bool"
    version = tuple(pytest.version_tuple[:2])
    if kind in ("seconds", "gpus") and version >= (9, 2):
        return (float if kind == "seconds" else int) | str
    if kind == "seconds" and version >= (9, 0):
        return "float"
    return "string"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("envguard", "environment requirements (pytest-envguard)")
    group.addoption(
        "--envguard-require", action="append", default=[], metavar="LINE",
        help="add a line to the session contract, e.g. 'cuda >=12.1' (repeatable)",
    )
    group.addoption(
        "--envguard-strict", action="store_true", default=False,
        help="unmet 'requires' markers fail the test instead of skipping it",
    )
    group.addoption(
        "--envguard-report", action="store_true", default=False,
        help="print the environment and the contract's verdicts, run no tests (exit 0 if met, 6 if not)",
    )
    group.addoption(
        "--envguard-json", metavar="PATH", default=None,
        help="write the environment, contract verdicts and per-test outcomes as JSON "
             "(write --envguard-json=PATH: pytest may take a PATH that exists for a test path)",
    )
    group.addoption(
        "--envguard-target", metavar="NAME", default=None,
        help="judge the contract and the markers as on a described machine: a built-in target "
             "(manylinux2014, manylinux_2_28, musllinux_1_2, cuda-11.8-t4x2, …), a profile of "
             "the envguard_targets file, or FILE.toml:NAME; nothing is asked of the hardware",
    )
    for option in INI_OPTIONS:
        parser.addini(option.name, option.help, type=_ini_type(option.kind), default=option.default)


def _ini_source(config: pytest.Config, option: str) -> str:
    """Where an ini option's value came from, for messages and the ``source`` of contract
    lines: ``-o envguard`` when the command line overrode it, else the config file."""
    overrides = config.getoption("override_ini", None) or []
    if any(str(entry).split("=", 1)[0].strip() == option for entry in overrides):
        return f"-o {option}"
    inipath = config.inipath
    return f"{inipath.name if inipath else 'ini'} [{option}]"


def _resolve_options(config: pytest.Config) -> Options:
    """Every option, read and validated once; a bad one is a usage error naming it. With
    none of them set, the defaults (the resolver and the grammar are not imported)."""
    values: dict[str, object] = {}
    for option in INI_OPTIONS:
        try:
            values[option.name] = config.getini(option.name)
        except (ValueError, TypeError) as error:  # pytest < 9 raises these for a bad bool
            raise pytest.UsageError(f"{_ini_source(config, option.name)}: {error}") from None
    require = config.getoption("envguard_require") or []
    strict_flag = bool(config.getoption("envguard_strict"))
    target = config.getoption("envguard_target")
    if not (require or strict_flag or target) and all(
            values[option.name] == option.default for option in INI_OPTIONS):
        return Options()
    from pytest_envguard.options import resolve

    try:
        inipath = config.inipath
        return resolve(values, source=lambda name: _ini_source(config, name), require=require,
                       strict_flag=strict_flag, target=target,
                       config_dir=inipath.parent if inipath else config.rootpath,
                       cwd=config.invocation_params.dir)
    except ValueError as error:  # an OptionError, or a RequirementError from a contract line
        raise pytest.UsageError(f"envguard: {error}") from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*lines, strict=None, reason=None, **keys): skip (or fail, when strict) the test "
        "unless the environment meets these pytest-envguard requirements",
    )
    if any(str(arg) in VALUE_OPTIONS for arg in config.invocation_params.args):
        from pytest_envguard import contract

        contract.values_taken_as_paths(config, VALUE_OPTIONS)
    options = _resolve_options(config)
    state = config.stash[STATE] = EnvguardState(config, options)
    worker = is_xdist_worker(config)
    if config.getoption("envguard_json") and not worker:  # a worker writes no JSON document
        state.tally(outcomes=True)
    elif not worker and getattr(config.option, "dist", "no") != "no":
        state.tally()  # an xdist controller counts what its workers' reports say
    if config.getoption("envguard_report"):
        # Reporting runs no test: pytest-xdist (whose configure hook runs after this one)
        # must not start workers for it.
        config.pluginmanager.set_blocked("dsession")
    if config.pluginmanager.hasplugin("xdist"):
        from pytest_envguard import xdist

        xdist.register(config, state)


# -- the session contract ----------------------------------------------------------------------


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(STATE, None)
    if state is None or (not state.contract and state.environment_if_made is None
                         and state.options.target is None):
        return None
    if state.contract_left_to_workers:
        count = len(state.contract)
        return f"envguard: contract ({count} line{'s' * (count != 1)}) left to the xdist workers"
    from pytest_envguard import render

    environment = state.environment if state.options.target else state.environment_if_made
    return render.header_line(environment, state.contract_verdicts)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # Evaluated here, before the terminal reporter prints the header, so the
    # header can summarise what the contract probed; acted on in
    # pytest_collection, after the header, before anything is collected.
    config = session.config
    state = config.stash[STATE]
    report = config.getoption("envguard_report")
    if state.contract and not report and _leaves_contract_to_workers(config, state.options):
        state.contract_left_to_workers = True
    elif state.contract or report:
        verdicts = state.contract_verdicts = state.evaluator.evaluate(state.contract)
        if report or not all(verdict.ok for verdict in verdicts):
            from pytest_envguard import contract

            state.stop = contract.stop(state, report=bool(report))
    if not is_xdist_worker(config) and (state.options.junit_properties
                                        or config.pluginmanager.hasplugin("metadata")):
        from pytest_envguard import ci_reports

        ci_reports.publish_snapshot(config, state)


def _leaves_contract_to_workers(config: pytest.Config, options: Options) -> bool:
    if options.xdist_controller != "skip":  # the default: xdist.py need not be imported
        return False
    from pytest_envguard import xdist

    return xdist.leaves_contract_to_workers(config, options)


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> bool | None:
    """When no test is to run, print the tables and collect nothing; the terminal summary
    ends with the status line and :func:`pytest_sessionfinish` sets the exit status."""
    state = session.config.stash[STATE]
    if state.stop is None:
        return None
    from pytest_envguard import contract

    return contract.show_stop(session, state)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """Stops the run when the contract did; otherwise judges the markers of the tests about
    to run, once, before any of them is set up (see :func:`pytest_envguard.per_test.judge`)."""
    state = session.config.stash[STATE]
    if state.stop is not None:
        if state.options.target is not None and session.testsfailed:
            return None  # a pre-flight whose collection failed: pytest says so (and runs nothing)
        return True
    option = session.config.option
    if option.collectonly or (session.testsfailed and not option.continue_on_collection_errors):
        return None  # pytest runs no test
    if state.marks:
        from pytest_envguard import per_test

        per_test.judge(state, session.items)
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    """``--envguard-report --envguard-target NAME``: the pre-flight of the markers."""
    config = session.config
    state = config.stash.get(STATE, None)
    if state is not None and state.options.target is not None and config.getoption(
            "envguard_report"):
        from pytest_envguard import contract

        contract.preflight(session, state)


# -- per-test requirements ---------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> Generator[None, Any, None]:
    """Parse every collected test's ``requires`` markers — those a conftest's own
    ``pytest_collection_modifyitems`` adds included — once the other implementations
    ran, but for every test collected before them, so that a typo in a GPU-only test
    that ``-m``/``-k``/``--deselect`` leave out shows in every job. A bad marker is a
    collection error naming the test, which is not run."""
    collected = list(items)
    yield
    state = config.stash[STATE]
    state.collected.update(zip(map(id, collected), collected, strict=True))
    seen: dict[int, tuple[pytest.Mark, ...]] = {}
    marked = [(item, marks) for item in collected if (marks := _requires_marks(item, seen))]
    if marked:
        from pytest_envguard import per_test

        per_test.parse_collected(config, state, marked, items)


def _requires_marks(node: pytest.Item | pytest.Collector,
                    seen: dict[int, tuple[pytest.Mark, ...]]) -> tuple[pytest.Mark, ...]:
    """The ``requires`` marks of ``node`` and of the nodes above it, closest first, as
    ``iter_markers("requires")`` yields them (the ``own_markers`` of each node up the
    chain), with each node's kept in ``seen`` by identity: the tests of a module share
    the nodes above them, so each test costs a look at its own marks."""
    known = seen.get(id(node))
    if known is None:
        parent = node.parent
        known = () if parent is None else _requires_marks(parent, seen)
        own = [mark for mark in node.own_markers if getattr(mark, "name", None) == "requires"]
        if own:
            known = (*own, *known)
        seen[id(node)] = known
    return known


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tells ``envguard.require()`` which test is running; fails a strict test, or skips
    one whose ``xfail(run=False)`` mark did not apply, once pytest's skipping plugin let it
    through and before its fixtures are set up; judges a test added after collection.

    The one hook the plugin runs for every test. Registered with the plugin, after
    pytest's own plugins, so it runs after pytest's skipping plugin (``tryfirst``) and
    before pytest's runner sets up the fixtures, and before the conftest files, whose own
    set-up hooks run first (a skip they raise wins, as an author's skip mark does)."""
    state = item.config.stash[STATE]
    state.current_item = item
    if state.work_at_setup or id(item) not in state.collected:
        from pytest_envguard import per_test

        per_test.at_setup(state, item)


@pytest.fixture(scope="session")
def envguard(pytestconfig: pytest.Config) -> EnvguardFixture:
    """The environment snapshot (``.environment``) and ``.require(*lines, **keys)``."""
    from pytest_envguard.per_test import EnvguardFixture

    return EnvguardFixture(pytestconfig.stash[STATE])


# -- the end of the session -------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any) -> None:
    state = terminalreporter.config.stash.get(STATE, None)
    if state is None:
        return
    if state.groups:
        from pytest_envguard import render

        terminalreporter.write_sep("-", "envguard: requirements not met")
        for line in render.skip_summary(state.groups):
            terminalreporter.write_line(line)
        terminalreporter.write_line(state.options.strict_explanation(os.environ))
    if state.stop is not None and not state.stop.shown_by_pytest:
        terminalreporter.write_line(state.stop.status, bold=True,
                                    red=state.stop.exit_status != EXIT_OK,
                                    green=state.stop.exit_status == EXIT_OK)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    state = config.stash.get(STATE, None)
    if state is None:
        return
    preflight_broken = state.options.target is not None and session.testsfailed > 0
    if state.stop is not None and not preflight_broken:
        # No test ran, by design: the status of DESIGN.md §3, not pytest's "no tests
        # collected" (or "interrupted", when an xdist worker's contract stopped the run).
        # (A pre-flight whose collection failed keeps pytest's status.)
        session.exitstatus = state.stop.exit_status
    if is_xdist_worker(config):
        from pytest_envguard import xdist

        xdist.send_to_controller(config, state)
        return
    path = config.getoption("envguard_json")
    if path:
        from pytest_envguard import contract

        contract.write_json(config, state, path)
