"""Requirement skips behave like pytest's own (DESIGN.md §3): they go through pytest's
skipping, so ``-rs`` shows the test's location; an author's ``skip``/``skipif``/
``xfail(run=False)`` wins in every mode; marker lines are validated at collection;
what a requirement skipped is counted from the reports, once per test, also through a
session-scoped fixture; the JSON document records each test's outcome.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
UNMET = "python >=3.999"
NEEDS = f"envguard: needs python >=3.999 — found {PY}.*"

AUTHORS_MARKS = f"""
import pytest

@pytest.mark.skip(reason="author: skip")
@pytest.mark.requires("{UNMET}")
def test_skip():
    pass

@pytest.mark.skipif(True, reason="author: skipif")
@pytest.mark.requires("{UNMET}")
def test_skipif():
    pass

@pytest.mark.xfail(run=False, reason="author: not run")
@pytest.mark.requires("{UNMET}")
def test_xfail_not_run():
    pass

@pytest.mark.skip(reason="author: class skip")
class TestSkipped:
    @pytest.mark.requires("{UNMET}")
    def test_in_class(self):
        pass

@pytest.mark.skipif(False, reason="author: not now")
@pytest.mark.requires("{UNMET}")
def test_skipif_false():
    pass

@pytest.mark.xfail(False, run=False, reason="author: not here")
@pytest.mark.requires("{UNMET}")
def test_xfail_condition_false():
    pass
"""

MODES = {
    # mode: (ini, CI, whether unmet requirements fail)
    "lax": ("false", None, False),
    "strict": ("true", None, True),
    "ci-on-ci": ("ci", "true", True),
    "ci-on-a-laptop": ("ci", None, False),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_an_authors_skip_skipif_and_xfail_run_false_win_in_every_mode(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    ini, ci, strict = MODES[mode]
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makeini(f"[pytest]\nenvguard_strict = {ini}\n")
    pytester.makepyfile(test_authors=AUTHORS_MARKS)
    result = pytester.runpytest("-rsxE", "--envguard-json", "out.json")
    # The author's four win: their skips, with their own reasons, and the xfail stays one.
    # The two whose condition is false leave the decision to the requirement.
    if strict:
        result.assert_outcomes(skipped=3, xfailed=1, errors=2)
    else:
        result.assert_outcomes(skipped=5, xfailed=1)
    result.stdout.fnmatch_lines_random([
        "SKIPPED [[]1[]] test_authors.py:3: author: skip",
        "SKIPPED [[]1[]] test_authors.py:8: author: skipif",
        "SKIPPED [[]1[]] test_authors.py:20: author: class skip",
        "XFAIL *test_authors.py::test_xfail_not_run - *[[]NOTRUN[]] author: not run",
    ])
    outcome = "error" if strict else "skipped"
    document = json.loads((pytester.path / "out.json").read_text())
    assert document["outcomes"] == {
        "test_authors.py::test_skip": "skipped",
        "test_authors.py::test_skipif": "skipped",
        "test_authors.py::test_xfail_not_run": "xfailed",
        "test_authors.py::TestSkipped::test_in_class": "skipped",
        "test_authors.py::test_skipif_false": outcome,
        "test_authors.py::test_xfail_condition_false": outcome,
    }
    # Only what the requirement decided is counted as the requirement's.
    result.stdout.fnmatch_lines([
        "*envguard: requirements not met*",
        f"2 tests {'failed' if strict else 'skipped'}: needs python >=3.999 — found *",
        f"unmet markers {'fail' if strict else 'skip'}: envguard_strict = {ini}*",
    ])
    if not strict:
        result.stdout.fnmatch_lines_random([
            f"SKIPPED [[]1[]] test_authors.py:24: {NEEDS}",
            f"SKIPPED [[]1[]] test_authors.py:29: {NEEDS}",
        ])
    assert "pytest_envguard/" not in result.stdout.str()  # no skip points into the plugin


def test_a_module_level_skip_wins_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        import pytest
        pytestmark = pytest.mark.skip(reason="author: whole module")

        @pytest.mark.requires("{UNMET}", strict=True)
        def test_x():
            pass
    """)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] *: author: whole module"])
    assert "envguard: requirements not met" not in result.stdout.str()


def test_a_skip_from_a_conftests_own_set_up_hook_wins_too(pytester: pytest.Pytester) -> None:
    """The usual "slow tests are off" conftest skips in its own ``pytest_runtest_setup``:
    that skip is an author's too, and wins over a strict unmet marker, from the root's
    conftest (loaded before the plugin's configure hook) and from a folder's."""
    hook = """
        import pytest

        def pytest_runtest_setup(item):
            if item.get_closest_marker("slow"):
                pytest.skip("author: slow tests are off")
    """
    pytester.makeconftest(hook)
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n")
    test = f"""
        import pytest

        @pytest.mark.slow
        @pytest.mark.requires("{UNMET}", strict=True)
        def test_x():
            pass
    """
    pytester.makepyfile(test_root=test)
    pytester.mkpydir("folder")
    (pytester.path / "folder" / "conftest.py").write_text(textwrap.dedent(hook), encoding="utf-8")
    (pytester.path / "folder" / "test_folder.py").write_text(textwrap.dedent(test),
                                                              encoding="utf-8")
    (pytester.path / "conftest.py").write_text("", encoding="utf-8")  # only the folder's
    result = pytester.runpytest("-rs", "folder")
    result.assert_outcomes(skipped=1)
    pytester.makeconftest(hook)
    result = pytester.runpytest("-rs", "test_root.py")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] *: author: slow tests are off"])


LOCATIONS = f"""
import pytest


@pytest.fixture
def needs_the_future(envguard):
    envguard.require("{UNMET}", reason="from a fixture")


@pytest.mark.requires("{UNMET}", reason="marker")
def test_marker():
    pass


def test_require_in_the_test(envguard):
    envguard.require("{UNMET}", reason="in the test")


def test_require_in_a_fixture(needs_the_future):
    pass


class TestInAClass:
    @pytest.mark.requires("{UNMET}", reason="in a class")
    def test_method(self):
        pass
"""


def test_requirement_skips_show_where_the_test_is_not_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_where=LOCATIONS)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=4)
    # Where pytest's own skips point: a mark at its test, pytest.skip() in a test at its
    # line, pytest.skip() in a fixture at the test that uses it.
    result.stdout.fnmatch_lines_random([
        f"SKIPPED [[]1[]] test_where.py:9: {NEEDS} (marker)",
        f"SKIPPED [[]1[]] test_where.py:15: {NEEDS} (in the test)",
        f"SKIPPED [[]1[]] test_where.py:18: {NEEDS} (from a fixture)",
        f"SKIPPED [[]1[]] test_where.py:23: {NEEDS} (in a class)",
    ])
    assert "pytest_envguard/" not in result.stdout.str()  # no skip points into the plugin


def test_strict_failures_happen_before_the_fixtures_are_set_up(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        import pathlib
        import pytest

        @pytest.fixture
        def hardware():
            pathlib.Path("fixture-ran").touch()

        @pytest.mark.requires("{UNMET}", strict=True)
        def test_x(hardware):
            pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_x*", NEEDS])
    assert not (pytester.path / "fixture-ran").exists()


def test_an_unmet_requirement_under_a_running_xfail_is_a_skip_as_with_pytests_own(
        pytester: pytest.Pytester) -> None:
    """``skip`` and ``xfail`` on one test give a skip in pytest; the requirement's skip too."""
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.xfail(reason="known bug")
        @pytest.mark.requires("{UNMET}")
        def test_x():
            assert 0

        @pytest.mark.xfail(reason="known bug")
        @pytest.mark.skip(reason="author")
        def test_y():
            assert 0
    """)
    result = pytester.runpytest()
    result.assert_outcomes(skipped=2)


# -- collection ----------------------------------------------------------------------------------


BAD_MARKERS = """
import pytest

@pytest.mark.gpu
@pytest.mark.requires("cdua >= 12")
def test_typo():
    pass

@pytest.mark.requires("python", stict=True)
def test_stict():
    pass

@pytest.mark.requires("python", reasn="why")
def test_reasn():
    pass

def test_good():
    pass
"""


@pytest.mark.parametrize("args", [("--co",), (), ("-m", "not gpu"), ("-k", "test_good")],
                         ids=["collect-only", "run", "deselected-by-mark", "deselected-by-k"])
def test_bad_marker_lines_are_collection_errors_naming_the_test(pytester: pytest.Pytester,
                                                                args: tuple[str, ...]) -> None:
    """A typo in a GPU-only test shows in the CPU job, and in ``pytest --co``."""
    pytester.makeini("[pytest]\nmarkers =\n    gpu: needs a GPU\n")
    pytester.makepyfile(test_bad=BAD_MARKERS)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines_random([
        "envguard: requires marker of test_bad.py::test_typo: unknown key 'cdua' — did you mean 'cuda'?",
        "envguard: requires marker of test_bad.py::test_stict: unknown keyword stict= — did you mean strict=?",
        "envguard: requires marker of test_bad.py::test_reasn: unknown keyword reasn= — did you mean reason=?",
        "*Interrupted: 3 errors during collection*",
    ])
    assert "passed" not in result.stdout.str()


def test_bad_marker_lines_under_xdist_are_collection_errors(pytester: pytest.Pytester) -> None:
    """As pytest's own collection errors under xdist: reported, and the run fails (xdist
    runs the tests that did collect)."""
    pytester.makepyfile(test_bad=BAD_MARKERS.replace("@pytest.mark.gpu\n", ""))
    result = pytester.runpytest_subprocess("-n", "2", timeout=120)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(["*requires marker of test_bad.py::test_typo: unknown key 'cdua'*"])


@pytest.mark.parametrize("args", [(), ("-k", "not gpu")], ids=["run", "deselected-by-k"])
def test_markers_a_conftest_adds_at_collection_are_judged_and_validated(
        pytester: pytest.Pytester, args: tuple[str, ...]) -> None:
    """The usual way to mark a directory: a conftest's own ``pytest_collection_modifyitems``
    adds ``requires`` after the plugin's would have run. Those markers are judged at set-up
    (not ignored) and a bad one is a collection error, deselected or not."""
    pytester.makeconftest(f"""
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                if "gpu" in item.name:
                    item.add_marker(pytest.mark.requires("{UNMET}"))
                if "typo" in item.name:
                    item.add_marker(pytest.mark.requires("cdua >= 12"))
    """)
    pytester.makepyfile(test_dir="""
        def test_gpu():
            pass

        def test_gpu_typo():
            pass

        def test_cpu():
            pass
    """)
    result = pytester.runpytest("-rs", *args)
    result.stdout.fnmatch_lines([
        "*envguard: requires marker of test_dir.py::test_gpu_typo: unknown key 'cdua'*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED
    bad = pytester.runpytest("-rs", "-p", "no:envguard", *args)  # the control: no plugin, no error
    assert bad.ret == pytest.ExitCode.OK
    pytester.makeconftest(f"""
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                if "gpu" in item.name:
                    item.add_marker(pytest.mark.requires("{UNMET}"))
    """)
    result = pytester.runpytest("-rs", *args)
    if args:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(passed=1, skipped=2)
        result.stdout.fnmatch_lines([f"SKIPPED [[]2[]] test_dir.py*: {NEEDS}"])


MARKS_AT_EVERY_LEVEL = f"""
    import unittest

    import pytest

    pytestmark = [pytest.mark.slow]

    class TestPlain:
        def test_unmarked(self):
            pass

    @pytest.mark.requires("{UNMET}")
    class TestMarkedClass:
        def test_in_marked_class(self):
            pass

        class TestNested:
            def test_in_nested_class(self):
                pass

    @pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.requires("{UNMET}"))])
    def test_param(n):
        pass

    @pytest.mark.requires("{UNMET}")
    @pytest.mark.parametrize("n", [1, 2])
    def test_marked_params(n):
        pass

    class TestCase(unittest.TestCase):
        def test_unittest(self):
            pass

    def test_plain():
        pass
"""


def test_the_marker_scan_finds_the_marks_iter_markers_yields(pytester: pytest.Pytester) -> None:
    """The ``requires`` marks of each collected test are read from each node's
    ``own_markers`` up the chain (the nodes above shared): the same marks in the same order
    as pytest's ``iter_markers``, for marks on modules, classes, nested classes,
    parameters, unittest cases and those a conftest adds."""
    pytester.makepyfile(test_levels=MARKS_AT_EVERY_LEVEL)
    pytester.makepyfile(test_module_marked=f"""
        import pytest

        pytestmark = pytest.mark.requires("{UNMET}")

        class TestInMarkedModule:
            def test_method(self):
                pass

        def test_function():
            pass

        @pytest.mark.requires("python >=3")
        class TestLayers:  # three marks, on the method, the class and the module
            @pytest.mark.requires("cpus >=1")
            def test_layers(self):
                pass
    """)
    pytester.makeconftest("""
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                if item.name == "test_plain":
                    item.add_marker(pytest.mark.requires("python >=3"))

        def pytest_collection_finish(session):
            from pytest_envguard.hooks import _requires_marks

            seen = {}
            answers = {item.nodeid: (_requires_marks(item, seen),
                                     tuple(item.iter_markers("requires")))
                       for item in session.items}
            assert len(answers) == 12
            # The same Mark objects in the same order (closest first), not merely equal ones.
            assert [nodeid for nodeid, (ours, pytests) in answers.items()
                    if list(map(id, ours)) != list(map(id, pytests))] == []
            assert sum(bool(pytests) for _, pytests in answers.values()) == 9
            assert max(len(pytests) for _, pytests in answers.values()) == 3
    """)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=4, skipped=8)


def test_markers_of_a_test_added_after_collection_are_judged_at_set_up(
        pytester: pytest.Pytester) -> None:
    """A plugin may add tests once collection finished: their markers were never seen at
    collection, so set-up parses and judges them (a bad one fails that test)."""
    pytester.makeconftest(f"""
        import pytest

        def pytest_collection_finish(session):
            module = session.items[0].parent
            for name, marker in [("test_late_unmet", "{UNMET}"), ("test_late_typo", "cdua >= 12"),
                                 ("test_late_plain", None)]:
                item = pytest.Function.from_parent(module, name=name,
                                                   callobj=module.obj.template)
                if marker is not None:
                    item.add_marker(pytest.mark.requires(marker))
                session.items.append(item)
    """)
    pytester.makepyfile(test_late="""
        def template():
            pass

        def test_collected():
            pass
    """)
    result = pytester.runpytest("-rs", "-p", "no:randomly")
    result.assert_outcomes(passed=2, skipped=1, errors=1)  # a set-up failure
    result.stdout.fnmatch_lines(["*ERROR at setup of test_late_typo*",
                                 "envguard: requires marker of test_late.py::test_late_typo: "
                                 "unknown key 'cdua'*",
                                 f"SKIPPED [[]1[]] test_late.py*: {NEEDS}"])
    assert "During handling" not in result.stdout.str()


def test_markers_are_judged_at_set_up_when_another_plugin_runs_the_loop(
        pytester: pytest.Pytester) -> None:
    """The markers are judged once, when the run loop starts; a plugin whose own
    ``tryfirst`` loop runs the tests instead (ours then never starts) must not turn an
    unmet marker into a pass: set-up judges each test then."""
    pytester.makeconftest("""
        import pytest

        @pytest.hookimpl(tryfirst=True)
        def pytest_runtestloop(session):
            for index, item in enumerate(session.items):
                following = session.items[index + 1] if index + 1 < len(session.items) else None
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=following)
            return True
    """)
    pytester.makepyfile(test_own_loop=f"""
        import pytest

        @pytest.mark.requires("{UNMET}")
        def test_lax():
            pass

        @pytest.mark.requires("{UNMET}", strict=True)
        def test_strict():
            pass

        @pytest.mark.requires("python")
        def test_met():
            pass

        def test_plain():
            pass
    """)
    result = pytester.runpytest("-rsE", "-p", "no:randomly", "--envguard-json", "out.json")
    result.assert_outcomes(passed=2, skipped=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_strict*", NEEDS,
                                 f"SKIPPED [[]1[]] test_own_loop.py:3: {NEEDS}"])
    document = json.loads((pytester.path / "out.json").read_text())
    assert sorted(document["tests"]) == [f"test_own_loop.py::test_{name}"
                                         for name in ("lax", "met", "strict")]


def test_json_keeps_the_verdicts_of_the_tests_set_up_marker_first(
        pytester: pytest.Pytester) -> None:
    """The markers of every test about to run are judged before the first one, but the
    document has the verdicts of those that were set up (``-x`` stops after the first
    failure), a marker's first and then those of ``envguard.require()``."""
    pytester.makepyfile(test_stops=f"""
        import pytest

        @pytest.mark.requires("python")
        def test_both(envguard):
            envguard.require("cpus >=1")

        def test_fails():
            assert False

        @pytest.mark.requires("{UNMET}")
        def test_never_set_up():
            pass
    """)
    result = pytester.runpytest("-x", "-p", "no:randomly", "--envguard-json", "out.json")
    result.assert_outcomes(passed=1, failed=1)
    document = json.loads((pytester.path / "out.json").read_text())
    assert list(document["tests"]) == ["test_stops.py::test_both"]
    assert [(verdict["line"], verdict["source"]) for verdict in document["tests"][
        "test_stops.py::test_both"]] == [
        ("python", "requires marker"),
        ("cpus >=1", "envguard.require() in test_stops.py::test_both")]
    assert document["outcomes"] == {"test_stops.py::test_both": "passed",
                                    "test_stops.py::test_fails": "failed"}


def test_near_keywords_of_require_are_named_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_x(envguard):
            envguard.require("python", stict=True)
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*envguard: envguard.require() in test_near_keywords_of_require_are"
                                 "_named_too.py::test_x: unknown keyword stict= — did you mean strict=?"])


# -- a session-scoped fixture's skip counts for every test it skips -----------------------------


def test_require_in_a_session_fixture_counts_every_test_it_skips(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(f"""
        import pytest

        @pytest.fixture(scope="session")
        def device(envguard):
            envguard.require("{UNMET}")
            return "cuda:0"
    """)
    pytester.makepyfile(test_a="""
        import pytest

        @pytest.mark.parametrize("n", range(3))
        def test_on_device(device, n):
            pass
    """, test_b="""
        def test_one(device):
            pass

        def test_without():
            pass

        def test_two(device):
            pass
    """)
    result = pytester.runpytest("-rs", "--envguard-json", "out.json")
    result.assert_outcomes(passed=1, skipped=5)
    result.stdout.fnmatch_lines([
        "*envguard: requirements not met*",
        "5 tests skipped: needs python >=3.999 — found *",
    ])
    document = json.loads((pytester.path / "out.json").read_text())
    skipped = sorted(nodeid for nodeid, outcome in document["outcomes"].items() if outcome == "skipped")
    assert skipped == ["test_a.py::test_on_device[0]", "test_a.py::test_on_device[1]",
                       "test_a.py::test_on_device[2]", "test_b.py::test_one", "test_b.py::test_two"]
    assert sorted(document["tests"]) == skipped
    assert {verdicts[0]["status"] for verdicts in document["tests"].values()} == {"unmet"}


def test_require_in_a_session_fixture_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(f"""
        import pytest

        @pytest.fixture(scope="session")
        def device(envguard):
            envguard.require("{UNMET}")
    """)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_on_device(device, n):
            pass
    """)
    result = pytester.runpytest_subprocess("-n", "2", "--envguard-json", "out.json", timeout=120)
    result.assert_outcomes(skipped=6)
    result.stdout.fnmatch_lines(["6 tests skipped: needs python >=3.999 — found *"])
    document = json.loads((pytester.path / "out.json").read_text())
    assert len(document["tests"]) == 6
    assert set(document["outcomes"].values()) == {"skipped"}


# -- each test's outcome in the JSON document ---------------------------------------------------

OUTCOMES = f"""
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("set-up fails")

@pytest.fixture
def breaks_on_teardown():
    yield
    raise RuntimeError("tear-down fails")

def test_passed():
    pass

def test_failed():
    assert 0

@pytest.mark.skip(reason="plain")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known")
def test_xfailed():
    assert 0

@pytest.mark.xfail(reason="known")
def test_xpassed():
    pass

def test_error(broken):
    pass

def test_teardown_error(breaks_on_teardown):
    pass

@pytest.mark.requires("{UNMET}", strict=True)
def test_strict():
    pass

@pytest.mark.requires("{UNMET}")
def test_lax():
    pass
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["alone", "xdist"])
def test_json_records_each_tests_outcome(pytester: pytest.Pytester, xdist: bool) -> None:
    pytester.makepyfile(test_outcomes=OUTCOMES)
    result = pytester.runpytest_subprocess(*(("-n", "2") if xdist else ()),
                                           "--envguard-json", "out.json", timeout=120)
    result.assert_outcomes(passed=2, failed=1, skipped=2, xfailed=1, xpassed=1, errors=3)
    document = json.loads((pytester.path / "out.json").read_text())
    assert document["outcomes"] == {
        f"test_outcomes.py::test_{name}": outcome for name, outcome in [
            ("passed", "passed"), ("failed", "failed"), ("skipped", "skipped"),
            ("xfailed", "xfailed"), ("xpassed", "xpassed"), ("error", "error"),
            ("teardown_error", "error"), ("strict", "error"), ("lax", "skipped")]
    }
    # `tests` keeps its type: the verdicts of the tests that have requirements.
    assert sorted(document["tests"]) == ["test_outcomes.py::test_lax", "test_outcomes.py::test_strict"]
