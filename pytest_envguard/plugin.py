"""pytest hooks, options, marker, fixture and exit codes (DESIGN.md §3).

The only module that knows pytest. With no contract and no ``requires``
marker it does almost nothing: the grammar, the checks and the probes are
imported the first time a requirement needs them.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_envguard.checks import Evaluator, Verdict
    from pytest_envguard.environment import Environment
    from pytest_envguard.grammar import Requirement

#: Exit status when the session contract is not met (DESIGN.md §3).
EXIT_CONTRACT_UNMET = 6

STRICT_MODES = ("false", "true", "ci")


class EnvguardState:
    """Everything the plugin keeps for one session, under a stash key."""

    def __init__(self, config: pytest.Config, contract: list[Requirement], strict: str) -> None:
        self.config = config
        self.contract = contract
        self.strict_mode = strict
        self.contract_verdicts: list[Verdict] = []
        self.contract_left_to_workers = False  # envguard_xdist_controller = skip, on the controller
        self.tests: dict[str, list[Verdict]] = {}
        self.groups: Counter[tuple[str, str]] = Counter()
        self.current_item: pytest.Item | None = None
        self.marker_cache: dict[object, MarkerRequirements] = {}
        self._environment: Environment | None = None
        self._evaluator: Evaluator | None = None

    @property
    def environment(self) -> Environment:
        if self._environment is None:
            from pytest_envguard.environment import Environment

            self._environment = Environment(settings=_settings(self.config))
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
        if self.strict_mode == "true":
            return True
        if self.strict_mode == "ci":
            return is_ci(os.environ.get("CI"))
        return False


STATE = pytest.StashKey[EnvguardState]()


def is_ci(value: str | None) -> bool:
    """``CI`` set to a non-empty value other than ``0``/``false`` (DESIGN.md §3)."""
    return value is not None and value.strip().lower() not in ("", "0", "false")


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
    parser.addini("envguard", type="linelist", default=[],
                  help="the session contract: one requirement line per line")
    parser.addini("envguard_strict", default="false",
                  help="false (skip), true (fail) or ci (fail when $CI is set) for unmet markers")
    parser.addini("envguard_gpu_timeout", default="10",
                  help="seconds NVML may take to answer (default 10)")
    parser.addini("envguard_import_timeout", default="60",
                  help="seconds an 'import MODULE' check may take in its subprocess (default 60)")
    parser.addini("envguard_lock_extras", default="report",
                  help="installed packages missing from a 'lock' file: report (default), ignore or fail")
    parser.addini("envguard_junit_properties", type="bool", default=False,
                  help="add the environment snapshot to the junit-xml report as testsuite properties")
    parser.addini("envguard_xdist_gpus", default="off",
                  help="under pytest-xdist, give each worker its own share of the visible GPUs: "
                       "off (default), auto, or a number of GPUs per worker")
    parser.addini("envguard_xdist_controller", default="check",
                  help="under pytest-xdist, whether the controller checks the session contract too: "
                       "check (default) or skip (leave it to the workers, e.g. on remote --tx hosts)")
    parser.addini("envguard_tox_python", type="bool", default=False,
                  help="under tox, add 'python ==X.Y.*' to the contract from the env's pyXY factor")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*lines, strict=None, reason=None, **keys): skip (or fail, when strict) the test "
        "unless the environment meets these pytest-envguard requirements",
    )
    strict = _ini_choice(config, "envguard_strict", STRICT_MODES,
                         "true" if config.getoption("envguard_strict") else None)
    for name in ("envguard_gpu_timeout", "envguard_import_timeout"):
        _timeout(config, name)
    for name in ("envguard_junit_properties", "envguard_tox_python"):
        _ini_bool(config, name)
    _lock_extras(config)
    _xdist_controller(config)
    _split_gpus_among_workers(config)
    contract = _read_contract(config) + _tox_python_lines(config)
    config.stash[STATE] = EnvguardState(config, contract, strict)


def _ini_source(config: pytest.Config, option: str) -> str:
    inipath = config.inipath
    return f"{inipath.name if inipath else 'ini'} [{option}]"


def _ini_bool(config: pytest.Config, name: str) -> bool:
    """A ``type="bool"`` ini value; pytest before 9 raises a bare ValueError for a bad
    one (an INTERNALERROR wherever it is first read), so it is read here, at configure."""
    try:
        return bool(config.getini(name))
    except ValueError as error:
        raise pytest.UsageError(f"{_ini_source(config, name)}: {error} (expected true or false)") from None


def _timeout(config: pytest.Config, name: str) -> float:
    raw = str(config.getini(name)).strip()
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise pytest.UsageError(
            f"{_ini_source(config, name)}: {raw!r} is not a positive number of seconds"
        )
    return value


def _split_gpus_among_workers(config: pytest.Config) -> None:
    """``envguard_xdist_gpus``: on an xdist worker, narrow ``CUDA_VISIBLE_DEVICES`` to the
    worker's share of what is visible (an outer setting is split, never the physical GPUs).

    This is the one place the plugin changes the process environment, and only when asked:
    it runs before anything could initialise CUDA and before the contract is checked, so
    the worker's contract sees its own share."""
    raw = str(config.getini("envguard_xdist_gpus")).strip().lower()
    per_worker: int | None = None
    if raw not in ("off", "auto"):
        if not raw.isdigit() or int(raw) < 1:
            raise pytest.UsageError(
                f"{_ini_source(config, 'envguard_xdist_gpus')}: invalid value {raw!r} "
                "(expected off, auto, or a number of GPUs per worker)"
            )
        per_worker = int(raw)
    if raw == "off" or not hasattr(config, "workerinput"):
        return
    from pytest_envguard import gpu_workers

    cache = getattr(config, "cache", None)
    plan = gpu_workers.worker_gpus(
        os.environ, per_worker, timeout=_timeout(config, "envguard_gpu_timeout"),
        cache_dir=Path(cache.mkdir("envguard")) if cache is not None else None,
    )
    if plan is not None and plan.devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = plan.devices


LOCK_EXTRAS = ("report", "ignore", "fail")
XDIST_CONTROLLER = ("check", "skip")


def _ini_choice(config: pytest.Config, name: str, choices: Sequence[str], value: str | None = None) -> str:
    """One of ``choices`` (case-insensitive), from ``value`` or else the ini option ``name``."""
    chosen = (str(config.getini(name)) if value is None else value).strip().lower()
    if chosen not in choices:
        raise pytest.UsageError(
            f"{_ini_source(config, name)}: invalid value {chosen!r} (expected one of {', '.join(choices)})"
        )
    return chosen


def _xdist_controller(config: pytest.Config) -> str:
    return _ini_choice(config, "envguard_xdist_controller", XDIST_CONTROLLER)


def _lock_extras(config: pytest.Config) -> str:
    return _ini_choice(config, "envguard_lock_extras", LOCK_EXTRAS)


def _settings(config: pytest.Config) -> Any:
    from pytest_envguard.environment import Settings

    cache_dir = None
    # The cache provider may be disabled (-p no:cacheprovider): then nothing is cached on disk.
    cache = getattr(config, "cache", None)
    if cache is not None:
        cache_dir = Path(cache.mkdir("envguard"))
    return Settings(
        cache_dir=cache_dir,
        gpu_timeout=_timeout(config, "envguard_gpu_timeout"),
        import_timeout=_timeout(config, "envguard_import_timeout"),
        extra={"rootdir": str(config.rootpath), "lock_extras": _lock_extras(config)},
    )


def _read_contract(config: pytest.Config) -> list[Requirement]:
    ini_lines: list[str] = config.getini("envguard")
    cli_lines: list[str] = config.getoption("envguard_require") or []
    if not ini_lines and not cli_lines:
        return []
    from pytest_envguard.grammar import RequirementError, parse_lines

    try:
        return parse_lines(ini_lines, _ini_source(config, "envguard")) + parse_lines(
            cli_lines, "command line --envguard-require"
        )
    except RequirementError as error:
        raise pytest.UsageError(f"envguard: {error}") from None


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
    state = session.config.stash[STATE]
    report = session.config.getoption("envguard_report")
    if state.contract and not report and _leaves_contract_to_workers(session.config):
        state.contract_left_to_workers = True
    elif state.contract or report:
        state.contract_verdicts = state.evaluator.evaluate(state.contract)
    if not _is_xdist_worker(session.config):
        _publish_snapshot(session.config, state)


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    config = session.config
    state = config.stash[STATE]
    report = bool(config.getoption("envguard_report"))
    met = all(verdict.ok for verdict in state.contract_verdicts)
    if not report and met:
        return
    from pytest_envguard import render

    if report:
        state.environment.probe_all()
        _write(config, "envguard environment", render.environment_lines(state.environment))
        _write(config, "envguard contract", render.verdict_table(state.contract_verdicts))
        pytest.exit(
            f"envguard: report only — contract {'met' if met else 'NOT met'}",
            returncode=0 if met else EXIT_CONTRACT_UNMET,
        )
    unmet = [verdict for verdict in state.contract_verdicts if not verdict.ok]
    # An xdist worker leaves the table to the controller (pytest_testnodedown), which
    # prints it once, naming the worker and its host.
    if not _is_xdist_worker(config):
        _write(config, f"envguard: session contract not met on {render.host()}",
               render.verdict_table(state.contract_verdicts))
    first = unmet[0]
    pytest.exit(
        f"envguard: {len(unmet)} of {len(state.contract_verdicts)} contract requirements not met "
        f"on {render.host()} (first: {first.line} — found {first.found}); no tests were collected",
        returncode=EXIT_CONTRACT_UNMET,
    )


def _write(config: pytest.Config, title: str, lines: Sequence[str]) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        import sys

        sys.stderr.write("\n".join([title, *lines]) + "\n")
        return
    reporter.write_sep("=", title)
    for line in lines:
        reporter.write_line(line)


# -- per-test requirements -----------------------------------------------------------------


MarkerRequirements = tuple[list["Requirement"], "bool | None", "str | None"]

#: The source of marker requirements in verdicts; errors name the test instead.
MARKER_SOURCE = "requires marker"


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
    return requirements, strict, reason


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
        requirements, strict, reason = _marker_requirements(item, state.marker_cache)
    except RequirementError as error:
        message = f"envguard: {error.with_source(f'requires marker of {item.nodeid}')}"
    else:
        _enforce(state, item.nodeid, requirements, strict, reason)
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
        _send_to_controller(config, state)
        return
    if not path or state is None:
        return
    from pytest_envguard import render

    document = render.json_document(state.environment_if_made, state.contract_verdicts,
                                    state.tests)
    workers = config.stash.get(WORKERS, None)
    if workers:
        document["workers"] = workers
    target = Path(path)
    if not target.is_absolute():
        target = Path(config.invocation_params.dir, target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    except OSError as error:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        message = f"envguard: could not write {target}: {error}"
        if reporter is not None:
            reporter.write_line(message, red=True)


# -- pytest-xdist: every process checks its own environment ----------------------------------


def _is_xdist_worker(config: pytest.Config) -> bool:
    # xdist gives each worker's config a ``workerinput`` dict: the documented way to tell.
    return hasattr(config, "workerinput")


def _leaves_contract_to_workers(config: pytest.Config) -> bool:
    """``envguard_xdist_controller = skip`` on an xdist controller that will start workers
    (its ``dsession`` plugin is registered at configure time): the controller runs no
    test, so only the workers' environments matter (``--tx ssh=gpu-host`` from a laptop)."""
    return (_xdist_controller(config) == "skip" and not _is_xdist_worker(config)
            and config.pluginmanager.hasplugin("dsession"))


#: On the xdist controller: what each worker reported, by worker id (for --envguard-json).
WORKERS = pytest.StashKey[dict[str, dict[str, Any]]]()

_WORKEROUTPUT_KEY = "envguard"


def _send_to_controller(config: pytest.Config, state: EnvguardState) -> None:
    """On a worker: hand the contract verdicts, the per-test verdicts and the skip groups to
    the controller through ``config.workeroutput`` (plain data, as it crosses execnet)."""
    if not (state.contract_verdicts or state.tests or state.groups):
        return
    from pytest_envguard import render

    output: dict[str, Any] = config.workeroutput  # type: ignore[attr-defined]
    output[_WORKEROUTPUT_KEY] = {
        "host": render.host(),
        "contract": [verdict.to_dict() for verdict in state.contract_verdicts],
        "tests": {nodeid: [verdict.to_dict() for verdict in verdicts]
                  for nodeid, verdicts in state.tests.items()},
        "groups": [[outcome, reason, count] for (outcome, reason), count in state.groups.items()],
    }


def _verdict_from_dict(data: dict[str, Any]) -> Verdict:
    from pytest_envguard.checks import Status, Verdict
    from pytest_envguard.grammar import parse_line

    return Verdict(parse_line(data["line"], data.get("source") or ""), Status(data["status"]),
                   data["found"], data["reason"], data.get("hint"), bool(data.get("overridden")))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object | None) -> None:
    """pytest-xdist, on the controller: merge what a finished worker found, and end the run
    with exit status 6, naming the worker and its host, when its contract was not met.

    A worker whose contract fails exits before collecting, so the scheduler, which
    waits for every worker's collection, has started no test anywhere yet.
    """
    output = getattr(node, "workeroutput", None)
    if not isinstance(output, dict) or _WORKEROUTPUT_KEY not in output:
        return
    payload = output.pop(_WORKEROUTPUT_KEY)  # xdist may report a crashed worker down twice
    config: pytest.Config = node.config
    state = config.stash.get(STATE, None)
    if state is None:
        return
    worker = str(node.gateway.id)
    contract = [_verdict_from_dict(data) for data in payload["contract"]]
    config.stash.setdefault(WORKERS, {})[worker] = {"host": payload["host"],
                                                    "contract": payload["contract"]}
    for nodeid, verdicts in payload["tests"].items():
        state.tests.setdefault(nodeid, []).extend(_verdict_from_dict(data) for data in verdicts)
    for outcome, reason, count in payload["groups"]:
        state.groups[outcome, reason] += count
    from pytest_envguard import render

    where = f"worker {worker} (host {payload['host']})"
    log = _junit_xml_plugin(config) if _ini_bool(config, "envguard_junit_properties") else None
    if log is not None and contract:
        log.add_global_property(f"envguard.worker.{worker}",
                                f"{payload['host']}: contract {render.contract_summary(contract)}")
    unmet = [verdict for verdict in contract if not verdict.ok]
    if not unmet:
        return
    _write(config, f"envguard: session contract not met on {where}", render.verdict_table(contract))
    first = unmet[0]
    pytest.exit(
        f"envguard: {len(unmet)} of {len(contract)} contract requirements not met on {where} "
        f"(first: {first.line} — found {first.found}); no tests were run",
        returncode=EXIT_CONTRACT_UNMET,
    )


# -- CI reports: junit-xml testsuite properties, pytest-metadata -----------------------------


def _junit_xml_plugin(config: pytest.Config) -> Any:
    """pytest's junit-xml writer when --junitxml is given, found by the method that
    ``record_testsuite_property`` uses (that fixture only reaches tests, not the session)."""
    for plugin in config.pluginmanager.get_plugins():
        if callable(getattr(plugin, "add_global_property", None)):
            return plugin
    return None


def snapshot_properties(env: Environment, verdicts: Sequence[Verdict], host: str) -> list[tuple[str, str]]:
    """The environment snapshot as flat ``(name, value)`` pairs: ``envguard.<facet>.<field>``
    for each probed facet, then one ``envguard.contract`` per verdict."""
    from pytest_envguard import render

    properties = [("envguard.schema", render.SCHEMA), ("envguard.host", host)]
    for facet, data in env.to_dict().items():
        fields = data if isinstance(data, dict) else {"value": data}
        for field, value in fields.items():
            if value is None or value in ("", [], {}):
                continue
            if isinstance(value, dict):
                shown = " ".join(f"{key}={item}" for key, item in value.items())
            elif isinstance(value, list):
                shown = " ".join(str(item) for item in value)
            else:
                shown = str(value)
            properties.append((f"envguard.{facet}.{field}", shown))
    for verdict in verdicts:
        properties.append(("envguard.contract",
                           f"{verdict.status.value}: {verdict.line} — found {verdict.found}"))
    return properties


def _publish_snapshot(config: pytest.Config, state: EnvguardState) -> None:
    """Opt-in junit-xml properties; the pytest-metadata entry when that plugin is active
    and there is a contract (without one the plugin stays silent and probes nothing)."""
    junit = _ini_bool(config, "envguard_junit_properties")
    metadata = config.pluginmanager.hasplugin("metadata") and bool(state.contract or junit)
    if not (junit or metadata):
        return
    from pytest_envguard import render

    if junit:
        log = _junit_xml_plugin(config)
        if log is not None:
            state.environment.probe_all()
            for name, value in snapshot_properties(state.environment, state.contract_verdicts,
                                                   render.host()):
                log.add_global_property(name, value)
    if metadata:
        # pytest-metadata's public API: the dict under its stash key, filled at configure time.
        from pytest_metadata.plugin import metadata_key

        environment = state.environment_if_made
        config.stash[metadata_key]["envguard"] = {
            "host": render.host(),
            "environment": " · ".join(render.facet_summaries(environment)) if environment else "",
            "contract": render.contract_summary(state.contract_verdicts) or "empty",
        }


# -- tox: the interpreter matches the env's pyXY factor ---------------------------------------

_TOX_PYTHON_FACTOR = re.compile(r"(?:py)?(?P<major>[23])\.?(?P<minor>\d{1,2})(?P<t>t?)")


def tox_python_lines(env_name: str) -> list[str]:
    """The requirement lines that a tox env name's Python factor implies: ``py311`` and
    ``3.11`` give ``python ==3.11.*``; ``py313t`` adds ``abi free-threaded``."""
    for factor in env_name.split("-"):
        match = _TOX_PYTHON_FACTOR.fullmatch(factor)
        if match:
            lines = [f"python =={match['major']}.{match['minor']}.*"]
            if match["t"]:
                lines.append("abi free-threaded")
            return lines
    return []


def _tox_python_lines(config: pytest.Config) -> list[Requirement]:
    if not _ini_bool(config, "envguard_tox_python"):
        return []
    env_name = os.environ.get("TOX_ENV_NAME", "")
    lines = tox_python_lines(env_name)
    if not lines:
        return []
    from pytest_envguard.grammar import parse_lines

    return parse_lines(lines, f"tox env {env_name} [envguard_tox_python]")
