"""pytest hooks, the ``requires`` marker, the ``envguard`` fixture, exit codes (DESIGN.md §3).

With no contract and no ``requires`` marker it does almost nothing: the
options are resolved once at configure time, and the grammar, the checks and
the probes are imported the first time a requirement needs them. pytest-xdist
hooks live in :mod:`pytest_envguard.xdist`, CI reports in
:mod:`pytest_envguard.ci_reports`.

How a test's requirements are enforced, so that they behave like pytest's own
skips: marker lines are parsed at collection (a bad one is a collection error
naming the test); at set-up, before pytest's skipping plugin, an unmet marker
becomes a ``skip`` mark on the item, which pytest's skipping raises with the
test's location, and an author's ``skip``/``skipif``/``xfail(run=False)``
wins; in strict mode the test fails after pytest's skipping had its say and
before its fixtures are set up. What was skipped or failed because of a
requirement is counted from the reports, not from the decision.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from pytest_envguard.options import (
    EXIT_CONTRACT_UNMET,
    EXIT_OK,
    INI_OPTIONS,
    OptionError,
    Options,
    find_config,
    resolve,
)

if TYPE_CHECKING:
    from pytest_envguard.checks import Evaluator
    from pytest_envguard.environment import Environment
    from pytest_envguard.grammar import Requirement
    from pytest_envguard.verdicts import Verdict

__all__ = ["EXIT_CONTRACT_UNMET", "STATE", "EnvguardFixture", "EnvguardState"]

#: The source of marker requirements in verdicts; errors name the test instead.
MARKER_SOURCE = "requires marker"

#: The keywords of the marker and of ``envguard.require()`` that are not requirement keys.
OWN_KEYWORDS = ("strict", "reason")

#: The attribute a test report carries when a requirement skipped or failed it: the
#: unmet line's skip reason. Plain data, so it crosses the xdist wire with the report.
REPORT_ATTRIBUTE = "envguard_unmet"


class MarkerRequirements(NamedTuple):
    """What one test's ``requires`` markers ask for."""

    requirements: tuple[Requirement, ...]
    strict: bool | None
    reason: str | None


class Unmet(NamedTuple):
    """A test's unmet requirement, as decided: the summary's group (the first unmet
    line's skip reason), the message the test is skipped or failed with, whether it
    fails, and whether pytest's skipping plugin was left to raise the skip."""

    group: str
    message: str
    strict: bool
    left_to_skipping: bool = False


class Raised(NamedTuple):
    """An exception :meth:`EnvguardFixture.require` (or the marker, after pytest's
    skipping) raised, and what it stands for. A session-scoped fixture's exception is
    raised again for every test that uses it: each of those tests is counted."""

    error: BaseException
    unmet: Unmet
    verdicts: tuple[Verdict, ...]
    recorded_for: str | None  # the test whose verdicts already hold ``verdicts``
    from_hook: bool  # raised by a hook: the report takes the test's location


class Stop(NamedTuple):
    """Why this session runs no test (report only, or the contract is not met): the
    one-line status that ends the output, and the exit status."""

    status: str
    exit_status: int
    shown_by_pytest: bool = False  # the message of the exception that interrupted the run


#: Per item: its parsed ``requires`` markers (set at collection) and its unmet decision.
MARKS = pytest.StashKey[MarkerRequirements]()
#: What :data:`MARKS` holds for a collected test with no ``requires`` marker.
NO_MARKS = MarkerRequirements((), None, None)
UNMET = pytest.StashKey[Unmet]()


class EnvguardState:
    """Everything the plugin keeps for one session, under :data:`STATE`."""

    def __init__(self, config: pytest.Config, options: Options) -> None:
        self.config = config
        self.options = options
        self.cache_dir = cache_dir(config)
        self.contract_verdicts: list[Verdict] = []
        self.contract_left_to_workers = False  # envguard_xdist_controller = skip, on the controller
        self.stop: Stop | None = None
        self.tests: dict[str, list[Verdict]] = {}
        self.outcomes: dict[str, str] = {}
        self.groups: Counter[tuple[str, str]] = Counter()
        self.current_item: pytest.Item | None = None
        self.marker_cache: dict[object, MarkerRequirements] = {}
        self.raised: dict[int, Raised] = {}  # by id() of the exception
        self._environment: Environment | None = None
        self._evaluator: Evaluator | None = None
        self._marking_reports = False

    def mark_reports(self) -> None:
        """From now on, mark the reports that an unmet requirement ends up in."""
        if not self._marking_reports:
            self._marking_reports = True
            self.config.pluginmanager.register(ReportMarking(self), "envguard-reports")

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
        self.stop = Stop(status, exit_status, shown_by_pytest)


STATE = pytest.StashKey[EnvguardState]()


def cache_dir(config: pytest.Config) -> Path | None:
    """``envguard/`` in pytest's cache dir; None when the cache provider is disabled
    (``-p no:cacheprovider``): then nothing is cached on disk."""
    cache = getattr(config, "cache", None)
    return Path(cache.mkdir("envguard")) if cache is not None else None


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


#: The command-line options that take a value: pytest may read that value as a test
#: path while it looks for its configuration, when written as two words.
VALUE_OPTIONS = ("--envguard-require", "--envguard-json", "--envguard-target")


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
    """Every option, read and validated once; a bad one is a usage error naming it."""
    values: dict[str, object] = {}
    for option in INI_OPTIONS:
        try:
            values[option.name] = config.getini(option.name)
        except (ValueError, TypeError) as error:  # pytest < 9 raises these for a bad bool
            raise pytest.UsageError(f"{_ini_source(config, option.name)}: {error}") from None
    try:
        inipath = config.inipath
        return resolve(values, source=lambda name: _ini_source(config, name),
                       require=config.getoption("envguard_require") or [],
                       strict_flag=bool(config.getoption("envguard_strict")),
                       target=config.getoption("envguard_target"),
                       config_dir=inipath.parent if inipath else config.rootpath,
                       cwd=config.invocation_params.dir)
    except ValueError as error:  # an OptionError, or a RequirementError from a contract line
        raise pytest.UsageError(f"envguard: {error}") from None


def _values_taken_as_paths(config: pytest.Config) -> None:
    """A usage error when ``--envguard-json PATH`` (two words, PATH existing) made pytest
    miss the project's configuration, and with it the contract.

    pytest looks for its config file before plugins add their options, so it reads
    the value of an unknown option as a test path, and a path outside the project
    leads it to no config file, or another one: the run would go on without the
    contract. The config pytest used is compared with the one found from the real
    test paths; ``--envguard-json=PATH`` is never misread.
    """
    invocation = config.invocation_params
    args = [str(arg) for arg in invocation.args]
    taken = [(flag, value) for flag, value in itertools.pairwise(args)
             if flag in VALUE_OPTIONS and Path(invocation.dir, value).exists()]
    if not taken or config.getoption("inifilename", None):  # -c FILE: no search was made
        return
    try:
        expected = find_config(_common_test_directory(config))
    except OptionError as error:  # pytest would have read it, and reported it
        missed = f"the project's configuration ({str(error).splitlines()[0]})"
    else:
        if expected is None or (config.inipath is not None
                                and expected[0].resolve() == config.inipath.resolve()):
            return
        holds = any(name == "envguard" or name.startswith("envguard_") for name in expected[1])
        missed = f"{expected[0]}{', which holds the envguard settings,' if holds else ''}"
    flag, value = taken[0]
    used = f"{config.inipath} instead" if config.inipath else "no configuration file"
    raise pytest.UsageError(
        f"envguard: pytest took the value of '{flag} {value}' for a test path (the path exists) "
        f"while looking for its configuration, and found {used}: {missed} would not apply. "
        f"Write {flag}={value} (one word)."
    )


def _common_test_directory(config: pytest.Config) -> Path:
    """The directory pytest starts its config search from, for the real test paths."""
    base = config.invocation_params.dir
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        return base
    directories = []
    for arg in config.args:
        path = Path(base, str(arg).split("::", 1)[0])
        if path.exists():
            directories.append(path if path.is_dir() else path.parent)
    return Path(os.path.commonpath(directories)) if directories else base


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*lines, strict=None, reason=None, **keys): skip (or fail, when strict) the test "
        "unless the environment meets these pytest-envguard requirements",
    )
    _values_taken_as_paths(config)
    options = _resolve_options(config)
    state = config.stash[STATE] = EnvguardState(config, options)
    # Outcomes go only into the JSON document, which a worker never writes.
    outcomes = bool(config.getoption("envguard_json")) and not _is_xdist_worker(config)
    config.pluginmanager.register(PerTestHooks(state, outcomes=outcomes), "envguard-per-test")
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
        state.contract_verdicts = state.evaluator.evaluate(state.contract)
        state.stop = _stop(state, report=bool(report))
    if not _is_xdist_worker(config) and (state.options.junit_properties
                                         or config.pluginmanager.hasplugin("metadata")):
        from pytest_envguard import ci_reports

        ci_reports.publish_snapshot(config, state)


def _stop(state: EnvguardState, *, report: bool) -> Stop | None:
    """Why no test runs here, if none does."""
    verdicts = state.contract_verdicts
    met = all(verdict.ok for verdict in verdicts)
    if report:
        from pytest_envguard import render

        summary = render.contract_summary(verdicts) or "no requirements"
        return Stop(f"envguard: report only — contract {'met' if met else 'NOT met'} ({summary})",
                    EXIT_OK if met else EXIT_CONTRACT_UNMET)
    if met:
        return None
    from pytest_envguard import render

    unmet = [verdict for verdict in verdicts if not verdict.ok]
    first = unmet[0]
    return Stop(f"envguard: {len(unmet)} of {len(verdicts)} contract requirements not met on "
                f"{render.host()} (first: {first.line} — found {first.found}); no tests were "
                "collected", EXIT_CONTRACT_UNMET)


def _is_xdist_worker(config: pytest.Config) -> bool:
    # xdist gives each worker's config a ``workerinput`` dict: the documented way to tell.
    return hasattr(config, "workerinput")


def _leaves_contract_to_workers(config: pytest.Config, options: Options) -> bool:
    if options.xdist_controller != "skip":
        return False
    from pytest_envguard import xdist

    return xdist.leaves_contract_to_workers(config, options)


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> bool | None:
    """When no test is to run, print the tables and collect nothing; the terminal summary
    ends with the status line and :func:`pytest_sessionfinish` sets the exit status."""
    config = session.config
    state = config.stash[STATE]
    if state.stop is None:
        return None
    from pytest_envguard import render
    from pytest_envguard.render import write_section

    if config.getoption("envguard_report"):
        state.environment.probe_cheap()
        write_section(config, "envguard environment", render.environment_lines(state.environment))
        write_section(config, "envguard contract", render.verdict_table(state.contract_verdicts))
        if state.options.target is not None:
            return None  # collected for the pre-flight of the markers; no test runs
    elif _is_xdist_worker(config):
        # The controller prints the table once, naming this worker and its host, and ends
        # the run; shouldstop would end it too if that failed.
        session.shouldstop = (f"envguard: session contract not met on worker "
                              f"{os.environ.get('PYTEST_XDIST_WORKER', '?')} (host {render.host()})")
    else:
        write_section(config, f"envguard: session contract not met on {render.host()}",
                      render.verdict_table(state.contract_verdicts))
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    state = session.config.stash[STATE]
    if state.stop is not None and state.options.target is not None and session.testsfailed:
        return None  # a pre-flight whose collection failed: pytest says so (and runs nothing)
    return True if state.stop is not None else None


def pytest_collection_finish(session: pytest.Session) -> None:
    """``--envguard-report --envguard-target NAME``: every collected test's ``requires``
    markers judged as on the target, without running anything — which tests would be
    skipped or fail there, grouped by the first unmet line."""
    config = session.config
    state = config.stash.get(STATE, None)
    if state is None or state.options.target is None or not config.getoption("envguard_report"):
        return
    from pytest_envguard import render

    would: Counter[tuple[str, str]] = Counter()
    ready = 0
    for item in session.items:
        wanted = item.stash.get(MARKS, NO_MARKS)
        if wanted is NO_MARKS:
            ready += 1
            continue
        verdicts = state.evaluator.evaluate(wanted.requirements)
        state.tests[item.nodeid] = list(verdicts)
        unmet = _unmet(state, verdicts, wanted.strict, wanted.reason)
        if unmet is None:
            ready += 1
        else:
            would["would fail" if unmet.strict else "would be skipped", unmet.group] += 1
    target = state.options.target
    render.write_section(config, f"envguard: the tests on target {target.name}",
                         [*render.preflight_lines(would, ready, len(session.items)),
                          state.options.strict_explanation(os.environ)])


# -- per-test requirements: parsed at collection ----------------------------------------------


class MarkerError(ValueError):
    """A ``requires`` marker that is not valid; the message names the test."""


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
    bad: set[int] = set()
    for item in collected:
        if item.get_closest_marker("requires") is None:
            item.stash[MARKS] = NO_MARKS  # set-up need not look again
            continue
        try:
            item.stash[MARKS] = _marker_requirements(item, state.marker_cache)
        except MarkerError as error:
            bad.add(id(item))
            report = pytest.CollectReport(item.nodeid, "failed", str(error), [])
            config.hook.pytest_collectreport(report=report)
    if bad:
        items[:] = [item for item in items if id(item) not in bad]


def _marker_requirements(item: pytest.Item, cache: dict[object, MarkerRequirements]
                         ) -> MarkerRequirements:
    """The requirements of the item's ``requires`` markers, parsed once per distinct set of
    marker arguments (parametrized and similar tests share them). Raises :class:`MarkerError`."""
    marks = list(item.iter_markers("requires"))
    key: object = None
    try:
        key = tuple((mark.args, tuple(sorted(mark.kwargs.items()))) for mark in marks)
        hash(key)
    except TypeError:  # an unhashable argument: parse it uncached, and report it
        key = None
    if key is not None and key in cache:
        return cache[key]
    from pytest_envguard.grammar import RequirementError

    try:
        result = _parse_marks(marks, f"requires marker of {item.nodeid}")
    except RequirementError as error:
        raise MarkerError(f"envguard: {error.with_source(f'requires marker of {item.nodeid}')}"
                          ) from None
    if key is not None:
        cache[key] = result
    return result


def _parse_marks(marks: Sequence[pytest.Mark], where: str) -> MarkerRequirements:
    """The closest marker's ``strict=`` and ``reason=`` win; requirements add up."""
    from pytest_envguard.grammar import from_keywords, parse_line

    requirements: list[Requirement] = []
    strict: bool | None = None
    reason: str | None = None
    for marker in marks:
        keywords = dict(marker.kwargs)
        own_strict, own_reason = keywords.pop("strict", None), keywords.pop("reason", None)
        _check_own_keywords(keywords, own_strict, own_reason, where)
        if strict is None and isinstance(own_strict, bool):
            strict = own_strict
        if reason is None and isinstance(own_reason, str):
            reason = own_reason
        requirements.extend(parse_line(arg, MARKER_SOURCE) for arg in marker.args)
        requirements.extend(from_keywords(keywords, MARKER_SOURCE))
    return MarkerRequirements(tuple(requirements), strict, reason)


def _check_own_keywords(keywords: dict[str, object], strict: object, reason: object,
                        where: str) -> None:
    """``strict=`` and ``reason=`` have the right types, and a keyword that is no
    requirement key but nearly one of them (``stict=``) is named as such. Raises
    :class:`MarkerError`."""
    if strict is not None and not isinstance(strict, bool):
        raise MarkerError(f"envguard: {where}: strict= must be True, False or None, not {strict!r}")
    if reason is not None and not isinstance(reason, str):
        raise MarkerError(f"envguard: {where}: reason= must be a string, not {type(reason).__name__}")
    import difflib

    from pytest_envguard.grammar import KEYS

    for name in keywords:
        if name.replace("_", "-").lower() in KEYS:
            continue
        near = difflib.get_close_matches(name, OWN_KEYWORDS, n=1, cutoff=0.6)
        if near:
            raise MarkerError(f"envguard: {where}: unknown keyword {name}= — did you mean "
                              f"{near[0]}=?")


# -- per-test requirements: decided at set-up ---------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before pytest's skipping plugin: evaluate the item's markers; an unmet one in lax
    mode becomes a ``skip`` mark, which pytest's skipping raises with the test's location —
    unless the author's own ``skip`` mark is there (it wins) or an ``xfail(run=False)``
    mark may apply (then :class:`PerTestHooks` decides, once pytest's skipping let the
    test through)."""
    state = item.config.stash[STATE]
    state.current_item = item
    wanted = item.stash.get(MARKS, None)
    if wanted is NO_MARKS:
        return
    if wanted is None:  # an item added after collection: parsed now, failing here if bad
        if item.get_closest_marker("requires") is None:
            return
        try:
            wanted = item.stash[MARKS] = _marker_requirements(item, state.marker_cache)
        except MarkerError as error:
            pytest.fail(str(error), pytrace=False)
    verdicts = state.evaluator.evaluate(wanted.requirements)
    state.tests.setdefault(item.nodeid, []).extend(verdicts)
    unmet = _unmet(state, verdicts, wanted.strict, wanted.reason)
    if unmet is None:
        return
    to_skipping = (not unmet.strict and item.config.pluginmanager.hasplugin("skipping")
                   and not _may_xfail_without_running(item))
    if to_skipping and item.get_closest_marker("skip") is None:
        item.add_marker(pytest.mark.skip(reason=unmet.message), append=True)
    state.mark_reports()
    item.stash[UNMET] = unmet._replace(left_to_skipping=to_skipping)


def _may_xfail_without_running(item: pytest.Item) -> bool:
    return any(mark.kwargs.get("run", True) is False for mark in item.iter_markers("xfail"))


class PerTestHooks:
    """Hooks that need the session's state and an order the module's hooks cannot have.

    Registered at configure time, after pytest's own plugins: its set-up hook runs after
    pytest's skipping plugin (``tryfirst``) and before the fixtures are set up (pytest's
    runner, registered earlier, runs after it)."""

    def __init__(self, state: EnvguardState, *, outcomes: bool) -> None:
        self.state = state
        self.outcomes = outcomes  # record each test's outcome (for the JSON document)

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Fail a strict test, or skip one whose ``xfail(run=False)`` mark did not apply."""
        unmet = item.stash.get(UNMET, None)
        if unmet is None or unmet.left_to_skipping:
            return
        _raise_unmet(self.state, unmet, (), recorded_for=item.nodeid, from_hook=True)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Count requirement skips and failures, and record each test's outcome, from the
        reports themselves (on the xdist controller, the workers' reports)."""
        state = self.state
        group = getattr(report, REPORT_ATTRIBUTE, None)
        if isinstance(group, str):
            if report.failed:
                state.groups["failed", group] += 1
            elif report.skipped and not hasattr(report, "wasxfail"):
                state.groups["skipped", group] += 1
        if not self.outcomes:
            return
        outcome = outcome_of(report)
        if outcome is not None and (report.nodeid not in state.outcomes or outcome == "error"):
            state.outcomes[report.nodeid] = outcome


def _unmet(state: EnvguardState, verdicts: Sequence[Verdict], strict: bool | None,
           reason: str | None) -> Unmet | None:
    failing = next((verdict for verdict in verdicts if not verdict.ok), None)
    if failing is None:
        return None
    message = failing.skip_reason() + (f" ({reason})" if reason else "")
    return Unmet(failing.skip_reason(), message, state.strict() if strict is None else strict)


def _raise_unmet(state: EnvguardState, unmet: Unmet, verdicts: Sequence[Verdict], *,
                 recorded_for: str | None, from_hook: bool = False) -> None:
    """Skip (or fail, when strict) with pytest's own exceptions, remembered so that each
    report they end up in is counted — once per test, even when a session-scoped
    fixture's exception is raised again for every test that uses it."""
    # A skip shows the line that called envguard.require(); a failure (pytrace=False) shows
    # its message, which needs one visible frame.
    __tracebackhide__ = not unmet.strict
    error: BaseException = (pytest.fail.Exception(unmet.message, pytrace=False) if unmet.strict
                            else pytest.skip.Exception(unmet.message))
    state.raised[id(error)] = Raised(error, unmet, tuple(verdicts), recorded_for, from_hook)
    state.mark_reports()
    raise error


class ReportMarking:
    """Marks a report whose skip or failure is a requirement's: :data:`REPORT_ATTRIBUTE`.

    Registered by :meth:`EnvguardState.mark_reports` when the first requirement is unmet:
    a wrapper around every report would cost a suite that meets everything some 2%."""

    def __init__(self, state: EnvguardState) -> None:
        self.state = state

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Generator[None, Any, None]:
        outcome = yield
        if call.excinfo is None:
            return
        behind = _requirement_behind(self.state, item, call.when, call.excinfo.value)
        if behind is None:
            return
        unmet, from_hook = behind
        report = outcome.get_result()
        setattr(report, REPORT_ATTRIBUTE, unmet.group)
        if from_hook and report.skipped and isinstance(report.longrepr, tuple):
            # Raised by a hook, not by the test: shown at the test's location, as pytest's
            # skipping shows its own.
            path, line = item.reportinfo()[:2]
            report.longrepr = (os.fspath(path), (line or 0) + 1, report.longrepr[2])


def _requirement_behind(state: EnvguardState, item: pytest.Item, when: str, value: BaseException
                        ) -> tuple[Unmet, bool] | None:
    """The unmet requirement that raised ``value``, and whether a hook raised it; None
    when it is no requirement's (an author's skip that won, a test's own failure)."""
    raised = state.raised.get(id(value))
    if raised is not None and raised.error is value:
        if raised.verdicts and item.nodeid != raised.recorded_for and when == "setup":
            # A session-scoped fixture's skip, raised again for another test.
            state.tests.setdefault(item.nodeid, []).extend(raised.verdicts)
        return raised.unmet, raised.from_hook
    unmet = item.stash.get(UNMET, None)
    if (unmet is not None and unmet.left_to_skipping and when == "setup"
            and isinstance(value, pytest.skip.Exception) and value.msg == unmet.message):
        return unmet, False  # the skip mark, raised by pytest's skipping
    return None


def outcome_of(report: pytest.TestReport) -> str | None:
    """What one report says of its test, as pytest's summary counts it: ``passed``,
    ``failed``, ``skipped``, ``xfailed``, ``xpassed`` or ``error`` (a failed set-up or
    tear-down); None for a passing set-up or tear-down, which says nothing yet."""
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if xfail:
            return "xfailed" if report.skipped else "xpassed"
        return str(report.outcome)
    if report.failed:
        return "error"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return None


class EnvguardFixture:
    """What the ``envguard`` fixture gives: the snapshot and a ``require`` callable."""

    def __init__(self, state: EnvguardState) -> None:
        self._state = state

    @property
    def environment(self) -> Environment:
        return self._state.environment

    def require(self, *lines: str, strict: bool | None = None, reason: str | None = None,
                **keys: object) -> list[Verdict]:
        """Skip (or fail, when strict) the running test unless every line is met;
        returns the verdicts when they are."""
        __tracebackhide__ = True  # a skip shows the line that called require()
        from pytest_envguard.grammar import RequirementError, from_keywords, parse_line

        state = self._state
        item = state.current_item
        nodeid = item.nodeid if item is not None else None
        source = f"envguard.require() in {nodeid or 'session set-up'}"
        try:
            # The same rules as the marker's (a typed signature does not stop a caller).
            _check_own_keywords(keys, strict, reason, source)
            requirements = [parse_line(line, source) for line in lines]
            requirements += from_keywords(keys, source)
        except MarkerError as error:
            message = str(error)
        except RequirementError as error:
            message = f"envguard: {error}"
        else:
            verdicts = state.evaluator.evaluate(requirements)
            if nodeid is not None:
                state.tests.setdefault(nodeid, []).extend(verdicts)
            unmet = _unmet(state, verdicts, strict, reason)
            if unmet is None:
                return verdicts
            _raise_unmet(state, unmet, verdicts, recorded_for=nodeid)
        pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def envguard(pytestconfig: pytest.Config) -> EnvguardFixture:
    """The environment snapshot (``.environment``) and ``.require(*lines, **keys)``."""
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
    if _is_xdist_worker(config):
        from pytest_envguard import xdist

        xdist.send_to_controller(config, state)
        return
    path = config.getoption("envguard_json")
    if path:
        _write_json(config, state, path)


def _write_json(config: pytest.Config, state: EnvguardState, path: str) -> None:
    from pytest_envguard import render, xdist

    document = render.json_document(state.environment_if_made, state.contract_verdicts,
                                    state.tests, state.outcomes)
    workers = config.stash.get(xdist.WORKERS, None)
    if workers:
        document["workers"] = workers
    target = Path(path)
    if not target.is_absolute():
        target = Path(config.invocation_params.dir, target)
    try:
        render.write_json(target, document)
    except OSError as error:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        message = f"envguard: could not write {target}: {error}"
        if reporter is not None:
            reporter.write_line(message, red=True)

