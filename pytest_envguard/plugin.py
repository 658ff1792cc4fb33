"""pytest hooks, the ``requires`` marker, the ``envguard`` fixture, exit codes (DESIGN.md §3).

With no contract and no ``requires`` marker it does almost nothing: the
options are resolved once at configure time, and the grammar, the checks and
the probes are imported the first time a requirement needs them. pytest-xdist
hooks live in :mod:`pytest_envguard.xdist`, CI reports in
:mod:`pytest_envguard.ci_reports`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from pytest_envguard.options import EXIT_CONTRACT_UNMET, INI_OPTIONS, Options, resolve

if TYPE_CHECKING:
    from pytest_envguard.checks import Evaluator
    from pytest_envguard.environment import Environment
    from pytest_envguard.grammar import Requirement
    from pytest_envguard.verdicts import Verdict

__all__ = ["EXIT_CONTRACT_UNMET", "STATE", "EnvguardFixture", "EnvguardState"]

#: The source of marker requirements in verdicts; errors name the test instead.
MARKER_SOURCE = "requires marker"


class MarkerRequirements(NamedTuple):
    """What one test's ``requires`` markers ask for."""

    requirements: tuple[Requirement, ...]
    strict: bool | None
    reason: str | None


class EnvguardState:
    """Everything the plugin keeps for one session, under :data:`STATE`."""

    def __init__(self, config: pytest.Config, options: Options) -> None:
        self.config = config
        self.options = options
        self.cache_dir = cache_dir(config)
        self.contract_verdicts: list[Verdict] = []
        self.contract_left_to_workers = False  # envguard_xdist_controller = skip, on the controller
        self.tests: dict[str, list[Verdict]] = {}
        self.groups: Counter[tuple[str, str]] = Counter()
        self.current_item: pytest.Item | None = None
        self.marker_cache: dict[object, MarkerRequirements] = {}
        self._environment: Environment | None = None
        self._evaluator: Evaluator | None = None

    @property
    def contract(self) -> tuple[Requirement, ...]:
        return self.options.contract

    @property
    def environment(self) -> Environment:
        if self._environment is None:
            from pytest_envguard.environment import Environment

            self._environment = Environment(settings=self.options.settings(
                cache_dir=self.cache_dir, rootdir=self.config.rootpath))
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
        help="write the environment, contract verdicts and per-test outcomes as JSON",
    )
    for option in INI_OPTIONS:
        parser.addini(option.name, option.help, type=_ini_type(option.kind), default=option.default)


def _ini_source(config: pytest.Config, option: str) -> str:
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
        return resolve(values, source=lambda name: _ini_source(config, name),
                       require=config.getoption("envguard_require") or [],
                       strict_flag=bool(config.getoption("envguard_strict")))
    except ValueError as error:  # an OptionError, or a RequirementError from a contract line
        raise pytest.UsageError(f"envguard: {error}") from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*lines, strict=None, reason=None, **keys): skip (or fail, when strict) the test "
        "unless the environment meets these pytest-envguard requirements",
    )
    options = _resolve_options(config)
    state = config.stash[STATE] = EnvguardState(config, options)
    if config.pluginmanager.hasplugin("xdist"):
        from pytest_envguard import xdist

        xdist.register(config, state)


# -- the session contract ----------------------------------------------------------------------


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(STATE, None)
    if state is None or (not state.contract and state.environment_if_made is None):
        return None
    if state.contract_left_to_workers:
        count = len(state.contract)
        return f"envguard: contract ({count} line{'s' * (count != 1)}) left to the xdist workers"
    from pytest_envguard import render

    return render.header_line(state.environment_if_made, state.contract_verdicts)


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
    if not _is_xdist_worker(config) and (state.options.junit_properties
                                         or config.pluginmanager.hasplugin("metadata")):
        from pytest_envguard import ci_reports

        ci_reports.publish_snapshot(config, state)


def _is_xdist_worker(config: pytest.Config) -> bool:
    # xdist gives each worker's config a ``workerinput`` dict: the documented way to tell.
    return hasattr(config, "workerinput")


def _leaves_contract_to_workers(config: pytest.Config, options: Options) -> bool:
    if options.xdist_controller != "skip":
        return False
    from pytest_envguard import xdist

    return xdist.leaves_contract_to_workers(config, options)


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    config = session.config
    state = config.stash[STATE]
    report = bool(config.getoption("envguard_report"))
    met = all(verdict.ok for verdict in state.contract_verdicts)
    if not report and met:
        return
    from pytest_envguard import render
    from pytest_envguard.render import write_section

    if report:
        state.environment.probe_cheap()
        write_section(config, "envguard environment", render.environment_lines(state.environment))
        write_section(config, "envguard contract", render.verdict_table(state.contract_verdicts))
        pytest.exit(
            f"envguard: report only — contract {'met' if met else 'NOT met'}",
            returncode=0 if met else EXIT_CONTRACT_UNMET,
        )
    unmet = [verdict for verdict in state.contract_verdicts if not verdict.ok]
    # An xdist worker leaves the table to the controller, which prints it once,
    # naming the worker and its host.
    if not _is_xdist_worker(config):
        write_section(config, f"envguard: session contract not met on {render.host()}",
                      render.verdict_table(state.contract_verdicts))
    first = unmet[0]
    pytest.exit(
        f"envguard: {len(unmet)} of {len(state.contract_verdicts)} contract requirements not met "
        f"on {render.host()} (first: {first.line} — found {first.found}); no tests were collected",
        returncode=EXIT_CONTRACT_UNMET,
    )


# -- per-test requirements -----------------------------------------------------------------


def _marker_requirements(item: pytest.Item, cache: dict[object, MarkerRequirements]
                         ) -> MarkerRequirements:
    """The requirements of the item's ``requires`` markers, parsed once per distinct set of
    marker arguments (parametrized and similar tests share them)."""
    marks = list(item.iter_markers("requires"))
    key: object = None
    try:
        key = tuple((mark.args, tuple(sorted(mark.kwargs.items()))) for mark in marks)
        hash(key)
    except TypeError:  # an unhashable argument: parse it uncached, and report it
        key = None
    if key is not None and key in cache:
        return cache[key]
    result = _parse_marks(item, marks)
    if key is not None:
        cache[key] = result
    return result


def _parse_marks(item: pytest.Item, marks: Sequence[pytest.Mark]) -> MarkerRequirements:
    from pytest_envguard.grammar import from_keywords, parse_line

    requirements: list[Requirement] = []
    strict: bool | None = None
    reason: str | None = None
    for marker in marks:
        keywords = dict(marker.kwargs)
        if "strict" in keywords:
            value = keywords.pop("strict")
            if value is not None and not isinstance(value, bool):
                _bad_marker(item, f"strict= must be True, False or None, not {value!r}")
            strict = value if strict is None else strict
        if "reason" in keywords:
            value = keywords.pop("reason")
            if value is not None and not isinstance(value, str):
                _bad_marker(item, f"reason= must be a string, not {type(value).__name__}")
            reason = value if reason is None else reason
        requirements.extend(parse_line(arg, MARKER_SOURCE) for arg in marker.args)
        requirements.extend(from_keywords(keywords, MARKER_SOURCE))
    return MarkerRequirements(tuple(requirements), strict, reason)


def _bad_marker(item: pytest.Item, message: str) -> None:
    pytest.fail(f"envguard: requires marker of {item.nodeid}: {message}", pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    state = item.config.stash[STATE]
    state.current_item = item
    if item.get_closest_marker("requires") is None:
        return
    from pytest_envguard.grammar import RequirementError

    try:
        wanted = _marker_requirements(item, state.marker_cache)
    except RequirementError as error:
        message = f"envguard: {error.with_source(f'requires marker of {item.nodeid}')}"
    else:
        _enforce(state, item.nodeid, wanted.requirements, wanted.strict, wanted.reason)
        return
    pytest.fail(message, pytrace=False)


def _enforce(
    state: EnvguardState,
    nodeid: str | None,
    requirements: Sequence[Requirement],
    strict: bool | None,
    reason: str | None,
) -> list[Verdict]:
    verdicts = state.evaluator.evaluate(requirements)
    if nodeid is not None:
        state.tests.setdefault(nodeid, []).extend(verdicts)
    failing = next((verdict for verdict in verdicts if not verdict.ok), None)
    if failing is None:
        return verdicts
    message = failing.skip_reason()
    if reason:
        message += f" ({reason})"
    if state.strict() if strict is None else strict:
        state.groups["failed", failing.skip_reason()] += 1
        pytest.fail(message, pytrace=False)
    state.groups["skipped", failing.skip_reason()] += 1
    pytest.skip(message)
    raise AssertionError("unreachable")  # pragma: no cover


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
        from pytest_envguard.grammar import RequirementError, from_keywords, parse_line

        item = self._state.current_item
        nodeid = item.nodeid if item is not None else None
        source = f"envguard.require() in {nodeid or 'session set-up'}"
        # The same rules as the marker's (a typed signature does not stop a caller).
        if strict is not None and not isinstance(strict, bool):
            pytest.fail(f"envguard: {source}: strict= must be True, False or None, not {strict!r}",
                        pytrace=False)
        if reason is not None and not isinstance(reason, str):
            pytest.fail(f"envguard: {source}: reason= must be a string, not {type(reason).__name__}",
                        pytrace=False)
        try:
            requirements = [parse_line(line, source) for line in lines]
            requirements += from_keywords(keys, source)
        except RequirementError as error:
            message = f"envguard: {error}"
        else:
            return _enforce(self._state, nodeid, requirements, strict, reason)
        pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def envguard(pytestconfig: pytest.Config) -> EnvguardFixture:
    """The environment snapshot (``.environment``) and ``.require(*lines, **keys)``."""
    return EnvguardFixture(pytestconfig.stash[STATE])


# -- the end of the session -------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any) -> None:
    state = terminalreporter.config.stash.get(STATE, None)
    if state is None or not state.groups:
        return
    from pytest_envguard import render

    terminalreporter.write_sep("-", "envguard: requirements not met")
    for line in render.skip_summary(state.groups):
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    path = config.getoption("envguard_json")
    state = config.stash.get(STATE, None)
    if state is not None and _is_xdist_worker(config):
        from pytest_envguard import xdist

        xdist.send_to_controller(config, state)
        return
    if not path or state is None:
        return
    from pytest_envguard import render, xdist

    document = render.json_document(state.environment_if_made, state.contract_verdicts,
                                    state.tests)
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
