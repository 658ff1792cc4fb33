"""Per-test requirements: the ``requires`` marker and ``envguard.require()``.

Imported only when a collected test has a ``requires`` marker, a test asks for
the ``envguard`` fixture, or a requirement is unmet: a suite with neither never
loads this module (:mod:`pytest_envguard.hooks` looks for the marker first).

How a test's requirements are enforced, so that they behave like pytest's own
skips: marker lines are parsed at collection (a bad one is a collection error
naming the test); when the run loop starts, before any test is set up, the
markers of the tests about to run are judged, and an unmet one becomes a
``skip`` mark on the item, which pytest's skipping raises at set-up with the
test's location, and an author's ``skip``/``skipif``/``xfail(run=False)``
wins; in strict mode the test fails at set-up after pytest's skipping had its
say and before its fixtures are set up. What was skipped or failed because of a
requirement is counted from the reports, not from the decision.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

if TYPE_CHECKING:
    from pytest_envguard.environment import Environment
    from pytest_envguard.grammar import Requirement
    from pytest_envguard.hooks import EnvguardState
    from pytest_envguard.verdicts import Verdict

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


class MarkerError(ValueError):
    """A ``requires`` marker that is not valid; the message names the test."""


def _marker_requirements(item: pytest.Item, cache: dict[object, MarkerRequirements],
                         marks: Sequence[pytest.Mark] | None = None) -> MarkerRequirements:
    """The requirements of the item's ``requires`` markers (``marks``, closest first, when
    the caller has them), parsed once per distinct set of marker arguments (parametrized
    and similar tests share them). Raises :class:`MarkerError`."""
    if marks is None:
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


def parse_collected(config: pytest.Config, state: EnvguardState,
                    marked: list[tuple[pytest.Item, tuple[pytest.Mark, ...]]],
                    items: list[pytest.Item]) -> None:
    """Parse the ``requires`` markers of the collected tests that carry one (``marked``:
    each with its marks, closest first; collected before any
    ``pytest_collection_modifyitems`` ran, deselected or not); a bad one is a collection
    error naming the test, which is taken out of ``items``."""
    bad: set[int] = set()
    for item, marks in marked:
        try:
            state.marks[id(item)] = _marker_requirements(item, state.marker_cache, marks)
        except MarkerError as error:
            bad.add(id(item))
            report = pytest.CollectReport(item.nodeid, "failed", str(error), [])
            config.hook.pytest_collectreport(report=report)
    if bad:
        items[:] = [item for item in items if id(item) not in bad]
    state.work_at_setup = bool(state.marks)  # until the run loop judged them


def judge(state: EnvguardState, items: Sequence[pytest.Item]) -> None:
    """When the run loop starts, before any test is set up: evaluate the markers of the
    tests about to run (the tests that share a marker share its verdicts). An unmet one in
    lax mode becomes a ``skip`` mark, which pytest's skipping raises at set-up with the
    test's location — unless the author's own ``skip`` mark is there (it wins) or an
    ``xfail(run=False)`` mark may apply (then :func:`at_setup` decides, once pytest's
    skipping let the test through); a strict one is failed by :func:`at_setup`."""
    state.work_at_setup = False
    state.judged_at_start = True
    marks = state.marks
    judge_requirements = state.evaluator.judge
    recorded: dict[str, tuple[Verdict, ...]] = {}
    for item in items:
        wanted = marks.get(id(item))
        if wanted is None:
            continue
        verdicts, met = judge_requirements(wanted.requirements)
        if state.recording:
            recorded[item.nodeid] = verdicts
        if not met:
            _decide(state, item, wanted, verdicts)
    if recorded:
        state.config.pluginmanager.register(VerdictRecorder(state, recorded))


def _decide(state: EnvguardState, item: pytest.Item, wanted: MarkerRequirements,
            verdicts: Sequence[Verdict]) -> None:
    unmet = unmet_of(state, verdicts, wanted.strict, wanted.reason)
    assert unmet is not None  # a verdict is not ok
    to_skipping = (not unmet.strict and item.config.pluginmanager.hasplugin("skipping")
                   and not _may_xfail_without_running(item))
    if to_skipping and item.get_closest_marker("skip") is None:
        item.add_marker(pytest.mark.skip(reason=unmet.message), append=True)
    state.mark_reports()
    state.unmet[id(item)] = unmet._replace(left_to_skipping=to_skipping)
    if not to_skipping:
        state.work_at_setup = True


def at_setup(state: EnvguardState, item: pytest.Item) -> None:
    """After pytest's skipping let the test through: fail it when strict, or skip it when
    its ``xfail(run=False)`` mark did not apply, if its markers were not met. A test the
    run loop did not judge (added after collection, or the loop was another plugin's) is
    judged now: its markers parsed (and the test failed if one is bad), and an unmet one
    raised here, as the author's skips have had their say."""
    unmet = state.unmet.get(id(item))
    if unmet is not None:
        if not unmet.left_to_skipping:
            _raise_unmet(state, unmet, (), recorded_for=item.nodeid, from_hook=True)
        return
    if id(item) in state.collected:
        wanted = None if state.judged_at_start else state.marks.get(id(item))
        if wanted is None:
            return
    else:
        state.collected[id(item)] = item
        marks = list(item.iter_markers("requires"))
        if not marks:
            return
        try:
            wanted = state.marks[id(item)] = _marker_requirements(item, state.marker_cache,
                                                                  marks)
        except MarkerError as error:
            raise pytest.fail.Exception(str(error), pytrace=False) from None
    verdicts, met = state.evaluator.judge(wanted.requirements)
    if state.recording:
        state.tests.setdefault(item.nodeid, []).extend(verdicts)
    if not met:
        unmet = unmet_of(state, verdicts, wanted.strict, wanted.reason)
        assert unmet is not None  # a verdict is not ok
        state.unmet[id(item)] = unmet
        _raise_unmet(state, unmet, (), recorded_for=item.nodeid, from_hook=True)


class VerdictRecorder:
    """Records the verdicts of each judged test's markers once it is set up (its set-up
    report), for the JSON document: registered by :func:`judge` when one is written."""

    def __init__(self, state: EnvguardState, verdicts: dict[str, tuple[Verdict, ...]]) -> None:
        self.state = state
        self.verdicts = verdicts  # by node id, those of the tests not set up yet

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "setup":
            return
        verdicts = self.verdicts.pop(report.nodeid, None)
        if verdicts is not None:
            # First: a test's markers are judged before its fixtures call require().
            tests = self.state.tests
            tests[report.nodeid] = [*verdicts, *tests.get(report.nodeid, ())]


def _may_xfail_without_running(item: pytest.Item) -> bool:
    return any(mark.kwargs.get("run", True) is False for mark in item.iter_markers("xfail"))


def unmet_of(state: EnvguardState, verdicts: Sequence[Verdict], strict: bool | None,
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
    unmet = state.unmet.get(id(item))
    if (unmet is not None and unmet.left_to_skipping and when == "setup"
            and isinstance(value, pytest.skip.Exception) and value.msg == unmet.message):
        return unmet, False  # the skip mark, raised by pytest's skipping
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
            unmet = unmet_of(state, verdicts, strict, reason)
            if unmet is None:
                return verdicts
            _raise_unmet(state, unmet, verdicts, recorded_for=nodeid)
        pytest.fail(message, pytrace=False)


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
