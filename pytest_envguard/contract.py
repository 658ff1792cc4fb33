"""The session contract's outcomes: the stop when no test is to run, the tables, the
pre-flight of the markers on a target, the JSON document.

Imported when a session has something to say: a report, an unmet contract, a
target, ``--envguard-json``. A session whose contract is met imports nothing
from here.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

from pytest_envguard.option_table import EXIT_CONTRACT_UNMET, EXIT_OK, OptionError
from pytest_envguard.options import find_config
from pytest_envguard.xdist import is_worker

if TYPE_CHECKING:
    from pytest_envguard.hooks import EnvguardState


class Stop(NamedTuple):
    """Why this session runs no test (report only, or the contract is not met): the
    one-line status that ends the output, and the exit status."""

    status: str
    exit_status: int
    shown_by_pytest: bool = False  # the message of the exception that interrupted the run


def values_taken_as_paths(config: pytest.Config, value_options: tuple[str, ...]) -> None:
    """A usage error when ``--envguard-json PATH`` (two words, PATH existing; any of
    ``value_options``) made pytest miss the project's configuration, and with it the
    contract.

    pytest looks for its config file before plugins add their options, so it reads
    the value of an unknown option as a test path, and a path outside the project
    leads it to no config file, or another one: the run would go on without the
    contract. The config pytest used is compared with the one found from the real
    test paths; ``--envguard-json=PATH`` is never misread.
    """
    invocation = config.invocation_params
    args = [str(arg) for arg in invocation.args]
    taken = [(flag, value) for flag, value in itertools.pairwise(args)
             if flag in value_options and Path(invocation.dir, value).exists()]
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


def stop(state: EnvguardState, *, report: bool) -> Stop | None:
    """Why no test runs here, if none does: a report, or an unmet contract."""
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
                f"{render.judged_on(state.options.target)} (first: {first.line} — found "
                f"{first.found}); no tests were collected", EXIT_CONTRACT_UNMET)


def show_stop(session: pytest.Session, state: EnvguardState) -> bool | None:
    """No test is to run: print the tables; True when nothing is to be collected either
    (the terminal summary ends with the status line and the plugin's
    ``pytest_sessionfinish`` sets the exit status)."""
    config = session.config
    from pytest_envguard import render
    from pytest_envguard.render import write_section

    if config.getoption("envguard_report"):
        state.environment.probe_cheap()
        write_section(config, "envguard environment", render.environment_lines(state.environment))
        write_section(config, "envguard contract", render.verdict_table(state.contract_verdicts))
        if state.options.target is not None:
            return None  # collected for the pre-flight of the markers; no test runs
    elif is_worker(config):
        # The controller prints the table once, naming this worker and its host, and ends
        # the run; shouldstop would end it too if that failed.
        worker = f"worker {os.environ.get('PYTEST_XDIST_WORKER', '?')} (host {render.host()})"
        session.shouldstop = ("envguard: session contract not met on "
                              f"{render.judged_on(state.options.target, worker)}")
    else:
        write_section(config, "envguard: session contract not met on "
                      f"{render.judged_on(state.options.target)}",
                      render.verdict_table(state.contract_verdicts))
    return True


def preflight(session: pytest.Session, state: EnvguardState) -> None:
    """``--envguard-report --envguard-target NAME``: every collected test's ``requires``
    markers judged as on the target, without running anything — which tests would be
    skipped or fail there, grouped by the first unmet line."""
    config = session.config
    target = state.options.target
    if target is None:
        return
    from pytest_envguard import render
    from pytest_envguard.per_test import unmet_of

    would: Counter[tuple[str, str]] = Counter()
    ready = 0
    for item in session.items:
        wanted = state.marks.get(id(item))
        if wanted is None:
            ready += 1
            continue
        verdicts = state.evaluator.evaluate(wanted.requirements)
        state.tests[item.nodeid] = list(verdicts)
        unmet = unmet_of(state, verdicts, wanted.strict, wanted.reason)
        if unmet is None:
            ready += 1
        else:
            would["would fail" if unmet.strict else "would be skipped", unmet.group] += 1
    render.write_section(config, f"envguard: the tests on target {target.name}",
                         [*render.preflight_lines(would, ready, len(session.items)),
                          state.options.strict_explanation(os.environ)])


def write_json(config: pytest.Config, state: EnvguardState, path: str) -> None:
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

