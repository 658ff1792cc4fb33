"""A real-looking project's suite, run as its users would run it.

``tests/real_suite`` is a small project of its own (``inventory``: a ``src/``
layout, three test modules, a ``conftest.py`` with session- and
function-scoped fixtures, parametrize, test classes, ``skip``/``skipif``/
``xfail``/``importorskip``/``pytest.skip()``, ``tmp_path``, ``monkeypatch``,
``capsys``). Without a contract the plugin must change nothing: every
outcome equals the one pytest gives with ``-p no:envguard``. With
``requires`` markers added (as an adopter would add them), the marked tests
skip at their own locations, through pytest's own skipping, the author's
skips win, the rest is untouched, and the JSON document's outcomes agree with
pytest's own per-test verdicts.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest

REAL_SUITE = Path(__file__).parent / "real_suite"

#: pytest's ``-v`` words for each outcome, and the JSON document's.
VERBOSE_OUTCOMES = {"PASSED": "passed", "FAILED": "failed", "SKIPPED": "skipped",
                    "XFAIL": "xfailed", "XPASS": "xpassed", "ERROR": "error"}

BASELINE = {"passed": 20, "skipped": 3, "xfailed": 2, "xpassed": 1}


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CI", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):
        monkeypatch.delenv(name, raising=False)
    shutil.copytree(REAL_SUITE, pytester.path, dirs_exist_ok=True)
    return pytester.path


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", *args,
                                         timeout=180)


def verbose_outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Each test's outcome as pytest's ``-v`` lines say it."""
    found = {}
    for line in result.stdout.lines:
        match = re.match(r"(\S+::\S+) (PASSED|FAILED|SKIPPED|XFAIL|XPASS|ERROR)\b", line)
        if match:
            found[match[1]] = VERBOSE_OUTCOMES[match[2]]
    return found


def short_summary(result: pytest.RunResult) -> list[str]:
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "short test summary info" in line)
    return lines[start + 1:-1]


def test_without_a_contract_every_outcome_equals_pytests_without_the_plugin(
        pytester: pytest.Pytester, project: Path) -> None:
    without = run(pytester, "-v", "-rA", "-p", "no:envguard")
    with_plugin = run(pytester, "-v", "-rA", "--envguard-json=out.json")
    assert without.ret == with_plugin.ret == 0
    assert without.parseoutcomes() == with_plugin.parseoutcomes() == BASELINE
    assert verbose_outcomes(with_plugin) == verbose_outcomes(without)
    assert short_summary(with_plugin) == short_summary(without)
    assert not [line for line in with_plugin.stdout.lines if "envguard:" in line]
    # The document records every test's outcome, as pytest's own -v lines say it.
    document = json.loads((project / "out.json").read_text())
    assert document["outcomes"] == verbose_outcomes(without)
    assert document["contract"] == [] and document["tests"] == {}


# -- adding markers, as an adopter would ------------------------------------------------------


def insert_before(path: Path, anchor: str, text: str) -> None:
    source = path.read_text()
    assert source.count(anchor) == 1, anchor
    path.write_text(source.replace(anchor, text + anchor))


def add_markers(project: Path) -> None:
    tests = project / "tests"
    # A method of a class, using the session-scoped catalog fixture.
    insert_before(tests / "test_models.py", "    def test_len(",
                  '    @pytest.mark.requires("gpus >=1")\n')
    # The author's skip wins over the marker.
    insert_before(tests / "test_models.py", "    def test_bulk_import(",
                  '    @pytest.mark.requires("gpus >=1", strict=True)\n')
    # A module-level marker that is met.
    insert_before(tests / "test_models.py", "\n\ndef test_item_is_frozen",
                  '\npytestmark = pytest.mark.requires("python >=3.0")\n')
    # A parametrized test: each of its four cases.
    insert_before(tests / "test_pricing.py", "@pytest.mark.parametrize(\n    (\"percent\"",
                  '@pytest.mark.requires("memory >=1000TiB", reason="loads the full catalogue")\n')
    # xfail(run=False) stays an xfail.
    insert_before(tests / "test_pricing.py", '@pytest.mark.xfail(run=False',
                  '@pytest.mark.requires("gpus >=1")\n')
    # A session-scoped device fixture that requires a GPU, used by two tests.
    (tests / "conftest.py").write_text((tests / "conftest.py").read_text() + '''

@pytest.fixture(scope="session")
def gpu_device(envguard):
    envguard.require("gpus >=1")
    return "cuda:0"
''')
    storage = tests / "test_storage.py"
    storage.write_text(storage.read_text()
                       .replace("def test_round_trip(tmp_path, stock, fmt):",
                                "def test_round_trip(tmp_path, stock, fmt, gpu_device):")
                       .replace("    def test_counts(self):", "    def test_counts(self, gpu_device):"))


MARKED = {  # test → why it no longer runs
    "tests/test_models.py::TestStock::test_len": "gpus",
    "tests/test_pricing.py::test_discounted[none]": "memory",
    "tests/test_pricing.py::test_discounted[ten]": "memory",
    "tests/test_pricing.py::test_discounted[third]": "memory",
    "tests/test_pricing.py::test_discounted[all]": "memory",
    "tests/test_storage.py::test_round_trip[json]": "gpus (fixture)",
    "tests/test_storage.py::TestLegacy::test_counts": "gpus (fixture)",
}


def definition_lines(path: Path) -> dict[str, range]:
    """Each test function's lines from its first decorator to its ``def``: where pytest
    may point a skip of that test."""
    spans = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            spans[node.name] = range(first, node.lineno + 1)
    return spans


def test_markers_skip_at_the_tests_own_locations_and_leave_the_rest_alone(
        pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = verbose_outcomes(run(pytester, "-v"))
    add_markers(project)
    monkeypatch.setenv("ENVGUARD_OVERRIDE_GPUS", "0")
    result = run(pytester, "-v", "-rA", "--envguard-json=out.json")
    assert result.ret == 0
    assert result.parseoutcomes() == {"passed": 13, "skipped": 10, "xfailed": 2, "xpassed": 1}
    outcomes = verbose_outcomes(result)
    assert {test for test, outcome in outcomes.items() if outcome != baseline[test]} == set(MARKED)
    assert all(outcomes[test] == "skipped" for test in MARKED)
    # The author's skip and xfail(run=False) won, with their own reasons.
    result.stdout.fnmatch_lines_random([
        "SKIPPED [[]1[]] tests/test_models.py:*: bulk import is not written yet",
        "XFAIL*tests/test_pricing.py::test_never_run*[[]NOTRUN[]] hangs on CI",
    ])
    # Counted once per test, by unmet line; the author's skip is not envguard's.
    result.stdout.fnmatch_lines([
        "*envguard: requirements not met*",
        "4 tests skipped: needs memory >=1000TiB — found *",
        "3 tests skipped: needs gpus >=1 — found 0 (overridden): *",
    ])
    # Each requirement skip points at its own test, never at the plugin.
    skips = [line for line in result.stdout.lines if line.startswith("SKIPPED") and "envguard:" in line]
    assert skips and "pytest_envguard/" not in result.stdout.str()
    for line in skips:
        where = re.match(r"SKIPPED \[(\d+)\] (tests/\w+\.py):(\d+): envguard: needs", line)
        assert where, line
        spans = definition_lines(project / where[2])
        owner = [name for name, span in spans.items() if int(where[3]) in span]
        assert owner, line
        assert any(test.endswith(f"::{owner[0]}") or f"::{owner[0]}[" in test for test in MARKED), line
    assert sum(int(re.match(r"SKIPPED \[(\d+)\]", line)[1]) for line in skips) == len(MARKED)
    # The document agrees with pytest's own per-test verdicts.
    document = json.loads((project / "out.json").read_text())
    assert document["outcomes"] == outcomes
    unmet = {test for test, verdicts in document["tests"].items()
             if any(verdict["status"] == "unmet" for verdict in verdicts)}
    assert unmet == set(MARKED) | {"tests/test_models.py::TestStock::test_bulk_import",
                                   "tests/test_pricing.py::test_never_run"}


def test_marked_suite_in_strict_mode_and_under_xdist(pytester: pytest.Pytester, project: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    add_markers(project)
    monkeypatch.setenv("ENVGUARD_OVERRIDE_GPUS", "0")
    lax = run(pytester)
    distributed = run(pytester, "-n", "2")
    assert lax.parseoutcomes() == distributed.parseoutcomes()
    distributed.stdout.fnmatch_lines(["*envguard: requirements not met*",
                                      "4 tests skipped: needs memory >=1000TiB*",
                                      "3 tests skipped: needs gpus >=1*"])
    # On CI with envguard_strict = ci: the requirement's tests error, the author's skip and
    # xfail(run=False) do not.
    monkeypatch.setenv("CI", "true")
    strict = run(pytester, "-o", "envguard_strict=ci", "-rsx")
    assert strict.ret == 1
    assert strict.parseoutcomes() == {"passed": 13, "skipped": 3, "xfailed": 2, "xpassed": 1,
                                      "errors": 7}
    strict.stdout.fnmatch_lines_random([
        "SKIPPED [[]1[]] tests/test_models.py:*: bulk import is not written yet",
        "XFAIL*test_never_run*[[]NOTRUN[]] hangs on CI",
        "4 tests failed: needs memory >=1000TiB*",
        "3 tests failed: needs gpus >=1*",
        "unmet markers fail: envguard_strict = ci and CI is set ('true')*",
    ])
