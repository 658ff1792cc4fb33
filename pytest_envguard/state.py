"""What the plugin keeps for one session (:class:`EnvguardState`, under :data:`STATE`) and
the stash keys its hooks share.

Imported in every run, with the plugin: nothing here imports the grammar, the
checks or the probes, which come the first time a requirement needs them.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_envguard.checks import Evaluator
    from pytest_envguard.contract import Stop
    from pytest_envguard.environment import Environment
    from pytest_envguard.grammar import Requirement
    from pytest_envguard.option_table import Options
    from pytest_envguard.per_test import MarkerRequirements, Raised, Unmet
    from pytest_envguard.verdicts import Verdict

#: The attribute a test report carries when a requirement skipped or failed it: the
#: unmet line's skip reason. Plain data, so it crosses the xdist wire with the report.
REPORT_ATTRIBUTE = "envguard_unmet"

#: Per item: the unmet decision of its markers, when they are not met.
UNMET: pytest.StashKey[Unmet] = pytest.StashKey()


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
        # By id() of the item: every collected test (kept, so that an id is not reused)
        # and the parsed ``requires`` markers of those that carry one.
        self.collected: dict[int, pytest.Item] = {}
        self.marks: dict[int, MarkerRequirements] = {}
        self.raised: dict[int, Raised] = {}  # by id() of the exception
        self._environment: Environment | None = None
        self._evaluator: Evaluator | None = None
        self.refusals = False  # a test's unmet requirement is left to the refusal at set-up
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
        outcome. Registered when first needed: a hook on every report would cost a suite
        that meets everything some 1%."""
        if not self._tallying:
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


class Tally:
    """Counts requirement skips and failures, and records each test's outcome (for the
    JSON document), from the reports themselves."""

    def __init__(self, state: EnvguardState, *, outcomes: bool) -> None:
        self.state = state
        self.outcomes = outcomes

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
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
