"""Under pytest-xdist: every process checks its own environment, the controller reports once.

A worker gets an environment of its own through xdist's ``--tx popen//env:NAME=value``
spec, as a remote host would have: ``ENVGUARD_OVERRIDE_GLIBC=2.17`` plays a host with an
old C library.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

PY = f"{sys.version_info.major}.{sys.version_info.minor}"

SENTINEL_MODULE = """
import pathlib
pathlib.Path("collected-" + __import__("os").environ.get("PYTEST_XDIST_WORKER", "main")).touch()

def test_one():
    pass
"""

MARKED_MODULE = """
import pytest

@pytest.mark.requires("python >=3.999")
@pytest.mark.parametrize("n", range(6))
def test_future(n):
    pass

@pytest.mark.requires("python >=3.0")
@pytest.mark.parametrize("n", range(3))
def test_now(n):
    pass

def test_fixture(envguard):
    envguard.require("env ENVGUARD_DOES_NOT_EXIST")
"""

OLD_GLIBC_WORKER = ["-d", "--tx", "popen//env:ENVGUARD_OVERRIDE_GLIBC=2.17", "--tx", "popen"]


def collected(pytester: pytest.Pytester) -> list[str]:
    return sorted(path.name for path in pytester.path.glob("collected-*"))


def test_a_worker_that_misses_the_contract_ends_the_run_with_6_naming_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_sentinel=SENTINEL_MODULE)
    result = pytester.runpytest_subprocess(
        *OLD_GLIBC_WORKER, "--envguard-require", "glibc >=2.28", "--envguard-json", "out.json",
        timeout=120,
    )
    assert result.ret == 6
    result.stdout.fnmatch_lines([
        "*envguard: session contract not met on worker gw0 (host *)*",
        "FAIL  glibc >=2.28  2.17 (overridden)  command line --envguard-require",
        "*glibc 2.17 does not satisfy >=2.28*",
        "*contract requirements not met on worker gw0 (host *)*no tests were run*",
    ])
    assert result.stdout.str().count("session contract not met") == 1  # printed once
    # the failing worker collected nothing; no test ran anywhere
    assert "collected-gw0" not in collected(pytester)
    assert "passed" not in result.stdout.str()
    document = json.loads((pytester.path / "out.json").read_text())
    assert document["contract"][0]["status"] == "met"  # the controller's own environment
    assert document["workers"]["gw0"]["contract"][0]["status"] == "unmet"
    assert document["workers"]["gw0"]["contract"][0]["overridden"] is True


def test_the_controller_checks_its_own_environment_too(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # When this suite itself runs under xdist, the inner controller must not inherit the marks.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    # PYTEST_XDIST_WORKER is set in each worker only: this line fails on the controller alone.
    pytester.makepyfile(test_sentinel=SENTINEL_MODULE)
    result = pytester.runpytest_subprocess("-n", "2", "--envguard-require", "env PYTEST_XDIST_WORKER",
                                           timeout=120)
    assert result.ret == 6
    result.stdout.fnmatch_lines(["*envguard: session contract not met on *",
                                 "FAIL  env PYTEST_XDIST_WORKER*"])
    # The table is the controller's own. (Under load xdist may also print node-down lines
    # for workers it tears down, which name them: only the table's title matters here.)
    assert "session contract not met on worker" not in result.stdout.str()
    assert result.stdout.str().count("session contract not met") == 1


def test_the_controller_can_leave_the_contract_to_the_workers(pytester: pytest.Pytester,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``envguard_xdist_controller = skip``: a laptop driving ``--tx ssh=gpu-host`` workers."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    pytester.makeini("[pytest]\nenvguard_xdist_controller = skip\n")
    pytester.makepyfile(test_sentinel=SENTINEL_MODULE)
    met = pytester.runpytest_subprocess("-n", "2", "--envguard-require", "env PYTEST_XDIST_WORKER",
                                        "--envguard-json", "out.json", timeout=120)
    met.assert_outcomes(passed=1)
    met.stdout.fnmatch_lines(["envguard: contract (1 line) left to the xdist workers"])
    document = json.loads((pytester.path / "out.json").read_text())
    assert document["contract"] == []  # the controller checked nothing
    assert {worker["contract"][0]["status"] for worker in document["workers"].values()} == {"met"}
    # The workers still check theirs: one that misses it ends the run with 6.
    unmet = pytester.runpytest_subprocess(*OLD_GLIBC_WORKER, "--envguard-require", "glibc >=2.28",
                                          timeout=120)
    assert unmet.ret == 6
    unmet.stdout.fnmatch_lines(["*envguard: session contract not met on worker gw0 (host *)*"])
    # Without xdist there is no worker to leave it to: the process checks it itself.
    alone = pytester.runpytest_subprocess("--envguard-require", "env PYTEST_XDIST_WORKER")
    assert alone.ret == 6


def test_a_bad_controller_mode_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nenvguard_xdist_controller = sometimes\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*tox.ini [[]envguard_xdist_controller[]]: invalid value 'sometimes' "
                                 "(expected one of check, skip)"])


def test_every_worker_meeting_the_contract_runs_the_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sentinel=SENTINEL_MODULE)
    result = pytester.runpytest_subprocess("-n", "2", "--envguard-require", f"python >={PY}",
                                           "--envguard-json", "out.json", timeout=120)
    result.assert_outcomes(passed=1)
    document = json.loads((pytester.path / "out.json").read_text())
    assert sorted(document["workers"]) == ["gw0", "gw1"]
    for worker in document["workers"].values():
        assert [verdict["status"] for verdict in worker["contract"]] == ["met"]


def test_the_controller_counts_the_workers_skips_without_json(pytester: pytest.Pytester) -> None:
    """The controller runs no test and marks no report: it counts the skips from the
    reports its workers send, with or without ``--envguard-json``."""
    pytester.makepyfile(test_marked=MARKED_MODULE)
    result = pytester.runpytest_subprocess("-n", "2", timeout=120)
    result.assert_outcomes(passed=3, skipped=7)
    result.stdout.fnmatch_lines([
        "*envguard: requirements not met*",
        "6 tests skipped: needs python >=3.999 — found *",
        "1 test skipped: needs env ENVGUARD_DOES_NOT_EXIST — found *",
    ])


def test_marker_skips_and_json_aggregate_across_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_marked=MARKED_MODULE)
    result = pytester.runpytest_subprocess("-n", "2", "--envguard-json", "out.json", timeout=120)
    result.assert_outcomes(passed=3, skipped=7)
    result.stdout.fnmatch_lines([
        "*envguard: requirements not met*",
        "6 tests skipped: needs python >=3.999 — found *",
        "1 test skipped: needs env ENVGUARD_DOES_NOT_EXIST — found *",
    ])
    document = json.loads((pytester.path / "out.json").read_text())
    assert len(document["tests"]) == 10
    statuses = {nodeid.split("::")[1]: [v["status"] for v in verdicts]
                for nodeid, verdicts in document["tests"].items()}
    assert statuses["test_future[0]"] == ["unmet"]
    assert statuses["test_now[2]"] == ["met"]
    assert statuses["test_fixture"] == ["unmet"]
    assert document["tests"]["test_marked.py::test_future[5]"][0]["source"] == "requires marker"
    assert document["tests"]["test_marked.py::test_fixture"][0]["source"] == (
        "envguard.require() in test_marked.py::test_fixture")


def test_strict_failures_are_counted_across_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_marked=MARKED_MODULE)
    result = pytester.runpytest_subprocess("-n", "2", "--envguard-strict", timeout=120)
    result.assert_outcomes(passed=3, errors=6, failed=1)  # envguard.require() in the test body fails it
    result.stdout.fnmatch_lines(["6 tests failed: needs python >=3.999 — found *",
                                 "1 test failed: needs env ENVGUARD_DOES_NOT_EXIST — found *"])


def test_without_contract_or_markers_xdist_runs_see_no_envguard(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sentinel=SENTINEL_MODULE)
    result = pytester.runpytest_subprocess("-n", "2", "--envguard-json", "out.json", timeout=120)
    result.assert_outcomes(passed=1)
    assert not [line for line in result.outlines if line.startswith(("envguard", "---", "==="))
                and "envguard" in line]
    document = json.loads((pytester.path / "out.json").read_text())
    assert "workers" not in document
    assert document["tests"] == {}


def test_report_mode_under_xdist_prints_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sentinel=SENTINEL_MODULE)
    result = pytester.runpytest_subprocess("-n", "2", "--envguard-report",
                                           "--envguard-require", f"python >={PY}", timeout=120)
    assert result.ret == 0
    assert result.stdout.str().count("envguard contract") == 1
    assert collected(pytester) == []


def test_a_worker_payload_crosses_as_plain_data(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a worker sends must survive execnet: only str, int, bool, None, list and dict.
    pytester.makeconftest("""
import json, os, pytest

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    output = getattr(session.config, "workeroutput", None)
    if output is not None and "envguard" in output:
        with open(os.environ["PAYLOAD_FILE"], "a") as file:
            file.write(json.dumps(output["envguard"]) + "\\n")
""")
    pytester.makepyfile(test_marked=MARKED_MODULE)
    payload_file = tmp_path / "payloads.jsonl"
    monkeypatch.setenv("PAYLOAD_FILE", str(payload_file))
    # (A worker keeps each test's verdicts for the controller's JSON document, when it writes one.)
    result = pytester.runpytest_subprocess("-n", "2", "--envguard-json", "out.json", timeout=120)
    result.assert_outcomes(passed=3, skipped=7)
    payloads = [json.loads(line) for line in payload_file.read_text().splitlines()]
    assert len(payloads) == 2
    # (The skip groups and the outcomes come with the test reports, counted by the controller.)
    assert {key for payload in payloads for key in payload} == {"host", "contract", "tests"}
    assert sum(1 for payload in payloads for verdicts in payload["tests"].values()
               if verdicts[0]["status"] != "met") == 7


ODD_LINES_MODULE = r"""
import pytest

@pytest.mark.requires("gpu a\"b\"c'd'")
@pytest.mark.parametrize("n", range(3))
def test_odd_gpu_name(n):
    pass

@pytest.mark.requires("env 'X=a;b'")
def test_odd_env():
    pass

@pytest.mark.requires("gpu '*H100*'")
def test_h100():
    pass

@pytest.mark.requires("python >=3.999")
def test_future():
    pass
"""


def test_lines_that_do_not_print_back_to_themselves_cross_to_the_controller(
        pytester: pytest.Pytester, fake_nvml: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller once re-parsed the workers' printed lines and crashed with an
    INTERNALERROR on ``gpu a"b"c'd'`` (printed as ``gpu "a"b"c'd'"``): verdicts cross as data."""
    from tests.fixtures_nvml import H100

    fake_nvml.setenv(monkeypatch, H100)
    monkeypatch.setenv("X", "a")
    pytester.makepyfile(test_odd=ODD_LINES_MODULE)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly", "--envguard-json",
                                           "out.json", timeout=120)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1, skipped=5)
    result.stdout.fnmatch_lines_random([
        "3 tests skipped: needs gpu a\"b\"c'd' — found *",
        "1 test skipped: needs env 'X=a;b' — found set, differs*",
        "1 test skipped: needs python >=3.999 — found *",
    ])
    document = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    lines = {nodeid.split("::")[1]: [(verdict["line"], verdict["status"]) for verdict in verdicts]
             for nodeid, verdicts in document["tests"].items()}
    assert lines["test_odd_gpu_name[2]"] == [("gpu a\"b\"c'd'", "unmet")]
    assert lines["test_odd_env"] == [("env 'X=a;b'", "unmet")]
    assert lines["test_h100"] == [("gpu *H100*", "met")]
    assert document["tests"]["test_odd.py::test_odd_gpu_name[0]"][0]["requirement"]["argument"] == (
        "a\"b\"c'd'")
