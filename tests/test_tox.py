"""tox: the opt-in check that the interpreter matches the env's pyXY factor."""

from __future__ import annotations

import sys

import pytest

from pytest_envguard.options import tox_python_lines

MAJOR, MINOR = sys.version_info[:2]


@pytest.mark.parametrize(
    ("env_name", "lines"),
    [
        ("py311", ["python ==3.11.*"]),
        ("py310-pytest74", ["python ==3.10.*"]),
        ("lint-py312", ["python ==3.12.*"]),
        ("3.13", ["python ==3.13.*"]),
        ("py313t-gpu", ["python ==3.13.*", "abi free-threaded"]),
        ("py27", ["python ==2.7.*"]),
        ("lint", []),
        ("docs-py", []),
        ("pypy3", []),  # no minor version: nothing to check
        ("", []),
    ],
)
def test_factor_to_lines(env_name: str, lines: list[str]) -> None:
    assert tox_python_lines(env_name) == lines


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    return pytester


def test_matching_factor_is_met(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOX_ENV_NAME", f"py{MAJOR}{MINOR}-cpu")
    result = suite.runpytest("-o", "envguard_tox_python=true")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["envguard: *contract: 1 met*"])


def test_wrong_interpreter_for_the_factor_exits_6(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOX_ENV_NAME", "py39-gpu")
    suite.makeini("[pytest]\nenvguard_tox_python = true\n")
    result = suite.runpytest()
    assert result.ret == 6
    result.stdout.fnmatch_lines([
        f"FAIL  python ==3.9.*  {MAJOR}.{MINOR}.* tox env py39-gpu [[]envguard_tox_python[]]",
    ])


def test_off_by_default_and_outside_tox(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOX_ENV_NAME", "py39")
    suite.runpytest().assert_outcomes(passed=1)  # not opted in
    monkeypatch.delenv("TOX_ENV_NAME")
    result = suite.runpytest("-o", "envguard_tox_python=true")  # opted in, not under tox
    result.assert_outcomes(passed=1)
    assert "envguard" not in "\n".join(result.outlines[:3])
