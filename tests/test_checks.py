"""Core checks against environments built by hand: no OS is touched."""

from __future__ import annotations

import pytest

from pytest_envguard.checks import Evaluator, evaluate
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.grammar import parse_line, parse_lines
from pytest_envguard.probes import Failure
from pytest_envguard.probes.abi import AbiFacts
from pytest_envguard.probes.commands import CommandFacts
from pytest_envguard.probes.cpuinfo import CpuFacts
from pytest_envguard.probes.distributions import DistributionFacts
from pytest_envguard.probes.interpreter import PythonFacts
from pytest_envguard.probes.system import CpusFacts, LibcFacts, MemoryFacts, PlatformFacts
from pytest_envguard.verdicts import Status, Verdict

GiB = 1024**3


def make_env(**overrides: object) -> Environment:
    facts: dict[object, object] = {
        "python": PythonFacts("3.11.7", "cpython", "3.11.7", "/usr/bin/python3", "/venv", "/usr"),
        "abi": AbiFacts(False, ("cp311", "abi3")),
        "platform": PlatformFacts("linux", "x86_64", "Linux", "6.1.0"),
        "libc": LibcFacts("glibc", "2.31", "confstr"),
        "cpu": CpuFacts(("avx", "avx2", "sse4_2"), "Test CPU"),
        "cpus": CpusFacts(4, 8, "CPU affinity"),
        "memory": MemoryFacts(16 * GiB, 3 * GiB, "/proc/meminfo"),
        ("distribution", "numpy"): DistributionFacts("numpy", "1.26.4", "/venv/lib"),
        ("distribution", "torch"): DistributionFacts("torch", None, reason="not installed",
                                                     failure=Failure.MISSING),
        ("distribution", "weird"): DistributionFacts("weird", "not-a-version", "/venv/lib"),
        ("command", "gcc"): CommandFacts("gcc", "/usr/bin/gcc"),
        ("command", "nvcc"): CommandFacts("nvcc", None),
    }
    environ = overrides.pop("environ", {"CI": "true", "MODE": "gpu"})
    facts.update(overrides)
    return Environment(facts, environ=environ)  # type: ignore[arg-type]


def verdict(line: str, env: Environment | None = None) -> Verdict:
    return evaluate([parse_line(line, "test")], env or make_env())[0]


CASES = [
    ("python >=3.10", Status.MET, "3.11.7"),
    ("python >=3.12", Status.UNMET, "3.11.7"),
    ("python ==3.11.*", Status.MET, "3.11.7"),
    ("python", Status.MET, "3.11.7"),
    ("implementation cpython", Status.MET, "cpython"),
    ("implementation pypy", Status.UNMET, "cpython"),
    ("abi gil", Status.MET, "cp311 (gil)"),
    ("abi free-threaded", Status.UNMET, "cp311 (gil)"),
    ("abi cp311", Status.MET, "cp311 (gil)"),
    ("abi abi3", Status.MET, "cp311 (gil)"),
    ("abi cp313t", Status.UNMET, "cp311 (gil)"),
    ("platform linux", Status.MET, "linux"),
    ("platform darwin", Status.UNMET, "linux"),
    ("machine x86_64", Status.MET, "x86_64"),
    ("machine aarch64", Status.UNMET, "x86_64"),
    ("glibc >=2.28", Status.MET, "2.31"),
    ("glibc >=2.34", Status.UNMET, "2.31"),
    ("musl", Status.UNMET, "glibc 2.31"),
    ("cpu avx2", Status.MET, "avx2"),
    ("cpu avx512f", Status.UNMET, "absent"),
    ("cpus >=4", Status.MET, "4"),
    ("cpus >=8", Status.UNMET, "4"),
    ("cpus ==4", Status.MET, "4"),
    ("memory >=16GiB", Status.MET, "16.0 GiB"),
    ("memory >=17GB", Status.MET, "16.0 GiB"),
    ("memory >=18GB", Status.UNMET, "16.0 GiB"),
    ("memory-available >=4GiB", Status.UNMET, "3.0 GiB"),
    ("memory-available >=2GiB,<4GiB", Status.MET, "3.0 GiB"),
    ("package numpy>=1.26", Status.MET, "numpy 1.26.4"),
    ("package numpy>=2", Status.UNMET, "numpy 1.26.4"),
    ("package numpy", Status.MET, "numpy 1.26.4"),
    ("package torch", Status.UNMET, "not installed"),
    ("package weird>=1", Status.UNKNOWN, "weird not-a-version"),
    ("command gcc", Status.MET, "/usr/bin/gcc"),
    ("command nvcc", Status.UNMET, "none"),
    ("env CI", Status.MET, "set"),
    ("env HOME", Status.UNMET, "unset"),
    ("env MODE=gpu", Status.MET, "set, matches"),
    ("env MODE=cpu", Status.UNMET, "set, differs"),
    ("python >=3.12; sys_platform == 'nonexistent'", Status.NA, "-"),
]


@pytest.mark.parametrize(("line", "status", "found"), CASES)
def test_core_checks(line: str, status: Status, found: str) -> None:
    result = verdict(line)
    assert (result.status, result.found) == (status, found), result.reason
    assert result.reason and "\n" not in result.reason
    assert result.ok is (status in (Status.MET, Status.NA))


# -- `env NAME=value`: the live value may be a secret -----------------------------------------

LIVE_VALUE = "hunter2-d41d8cd98f00b204"  # what a token in the environment looks like


def test_env_verdicts_never_show_the_value() -> None:
    env = make_env(environ={"TOKEN": LIVE_VALUE})
    for line in ("env TOKEN=expected", "env TOKEN=" + LIVE_VALUE, "env TOKEN"):
        shown = verdict(line, env)
        assert LIVE_VALUE not in shown.found + shown.reason + (shown.hint or ""), shown
        assert LIVE_VALUE not in shown.skip_reason() or shown.requirement.text.endswith(LIVE_VALUE)
    assert verdict("env TOKEN=expected", env).reason == "$TOKEN is set to another value"


def test_env_values_are_shown_when_asked_for() -> None:
    env = Environment(make_env().probed(), environ={"TOKEN": LIVE_VALUE},
                      settings=Settings(show_env_values=True))
    unmet = verdict("env TOKEN=expected", env)
    assert (unmet.status, unmet.found) == (Status.UNMET, f"TOKEN={LIVE_VALUE}")
    assert LIVE_VALUE in unmet.reason
    assert verdict(f"env TOKEN={LIVE_VALUE}", env).found == f"TOKEN={LIVE_VALUE}"


ENV_MARKER_MODULE = """
import pytest

@pytest.mark.requires("env TOKEN=expected")
def test_needs_the_token():
    pass
"""


@pytest.mark.parametrize("show", [False, True])
def test_an_env_value_stays_out_of_every_report(pytester: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch, show: bool) -> None:
    monkeypatch.setenv("TOKEN", LIVE_VALUE)
    pytester.makepyfile(test_secret=ENV_MARKER_MODULE)
    pytester.makeini("[pytest]\nenvguard_junit_properties = true\n"
                     f"envguard_show_env_values = {str(show).lower()}\n")
    result = pytester.runpytest_subprocess(
        "-rs", "--envguard-require", "env TOKEN", "--envguard-json", "out.json",
        "--junitxml", "junit.xml", "-o", "junit_logging=all")
    result.assert_outcomes(skipped=1)
    written = [result.stdout.str(), result.stderr.str(),
               (pytester.path / "out.json").read_text(encoding="utf-8"),
               (pytester.path / "junit.xml").read_text(encoding="utf-8")]
    assert all((LIVE_VALUE in text) is (show and index != 1) for index, text in enumerate(written)), written
    result.stdout.fnmatch_lines(["*needs env TOKEN=expected — found "
                                 + (f"TOKEN={LIVE_VALUE}" if show else "set, differs") + "*"])


def test_unmet_verdicts_have_hints_where_the_field_knows_one() -> None:
    assert "interpreter" in (verdict("python >=3.12").hint or "")
    assert "manylinux" in (verdict("glibc >=2.34").hint or "")
    assert verdict("package numpy>=2").hint == "pip install 'numpy>=2'"


def test_skip_reason_format() -> None:
    assert verdict("python >=3.12").skip_reason() == (
        "envguard: needs python >=3.12 — found 3.11.7: Python 3.11.7 does not satisfy >=3.12"
    )


def test_unknown_facts_give_unknown_with_the_probe_reason() -> None:
    env = make_env(libc=LibcFacts(None, None, "", "neither glibc nor musl found", Failure.MISSING),
                   cpu=CpuFacts((), None, "/proc/cpuinfo: PermissionError", Failure.UNREADABLE),
                   cpus=CpusFacts(None, None, "", "the CPU count is unknown", Failure.UNSUPPORTED),
                   memory=MemoryFacts(None, None, "", "psutil: OSError", Failure.UNREADABLE))
    assert verdict("glibc >=2.17", env).status is Status.UNKNOWN
    assert "neither glibc nor musl" in verdict("glibc >=2.17", env).reason
    assert verdict("cpu avx2", env).reason == "/proc/cpuinfo: PermissionError"
    assert verdict("cpus >=1", env).status is Status.UNKNOWN
    assert verdict("memory >=1GiB", env).status is Status.UNKNOWN


def test_glibc_override() -> None:
    env = make_env(environ={"ENVGUARD_OVERRIDE_GLIBC": "2.17"})
    result = verdict("glibc >=2.28", env)
    assert (result.status, result.found, result.overridden) == (Status.UNMET, "2.17 (overridden)", True)
    absent = verdict("glibc", make_env(environ={"ENVGUARD_OVERRIDE_GLIBC": ""}))
    assert absent.status is Status.UNMET and absent.overridden


def test_a_probe_that_raises_becomes_unknown() -> None:
    class Broken:
        @property
        def version(self) -> str:
            raise PermissionError(13, "Permission denied", "/proc/self")

    result = verdict("python >=3", make_env(python=Broken()))
    assert result.status is Status.UNKNOWN
    assert result.reason.startswith("probe failed: PermissionError")


def test_markers_compare_as_pep_508_says() -> None:
    # A value that is not a version compares as text (PEP 508), so this is false, not an error.
    assert verdict("python; python_version > 'not a version'").status is Status.NA
    assert verdict("python; python_version >= '3'").status is Status.MET


def test_evaluator_memoises_per_distinct_line() -> None:
    calls = []

    class Counting:
        @property
        def version(self) -> str:
            calls.append(1)
            return "3.11.7"

    env = make_env()
    env._facts["python"] = Counting()  # the facet itself is memoised by Environment
    evaluator = Evaluator(env)
    lines = parse_lines(["python >=3.10"], "a")
    for _ in range(1000):
        evaluator.evaluate(lines)
    assert len(calls) == 1
    other_source = evaluator.evaluate(parse_lines(["python>=3.10"], "b"))
    assert other_source[0].requirement.source == "b"
    assert len(calls) == 1


def test_verdict_to_dict_is_the_json_contract() -> None:
    result = verdict("python >=3.12")
    assert result.to_dict() == {
        "line": "python >=3.12", "source": "test", "status": "unmet", "found": "3.11.7",
        "reason": "Python 3.11.7 does not satisfy >=3.12",
        "hint": "run the suite with a matching interpreter (tox -e, pyenv, uv python)",
        "overridden": False,
        "requirement": {"key": "python", "argument": None, "specifier": ">=3.12", "marker": None},
    }
    assert Verdict.from_dict(result.to_dict()) == result


@pytest.mark.parametrize("line", [
    "gpu a\"b\"c'd'", "env 'X=a;b'", "package foo[bar]>=1; python_version >= '3'",
    "lock 'my lock.txt'", "library ssl >=3; sys_platform == 'linux'",
])
def test_verdicts_travel_without_reparsing(line: str) -> None:
    # The xdist controller rebuilds verdicts from their dict: the requirement travels in
    # structured form, so even a line that does not print back to itself arrives intact.
    original = parse_line(line, "worker")
    from pytest_envguard.verdicts import unknown

    sent = unknown(original, "why").to_dict()
    assert Verdict.from_dict(sent).requirement == original
    assert Verdict.from_dict(sent).requirement.source == "worker"


def test_environment_to_dict_lists_probed_facets_and_overrides() -> None:
    env = make_env(environ={"ENVGUARD_OVERRIDE_CUDA": "12.4"})
    document = env.to_dict()
    assert document["python"]["version"] == "3.11.7"
    assert document["distribution:numpy"]["version"] == "1.26.4"
    assert document["overrides"] == {"ENVGUARD_OVERRIDE_CUDA": "12.4"}
    assert "CI" not in str(document)  # the process environment is not dumped


def test_markers_are_judged_against_the_environment_not_the_interpreter() -> None:
    # A hand-built 3.9 on darwin: conditions are evaluated as that interpreter would,
    # whatever interpreter runs this test.
    env = make_env(python=PythonFacts("3.9.18", "cpython", "3.9.18", "/usr/bin/python3", "/v", "/usr"),
                   platform=PlatformFacts("darwin", "arm64", "Darwin", "23.1.0"))
    assert verdict("python >=3.9; python_version < '3.10'", env).status is Status.MET
    assert verdict("python; sys_platform == 'linux'", env).status is Status.NA
    assert verdict("python; platform_machine == 'arm64' and platform_system == 'Darwin'",
                   env).status is Status.MET
    assert verdict("python; python_full_version >= '3.10'", env).status is Status.NA


def test_the_marker_environment_equals_packagings() -> None:
    # Differential: the facet built from our probes against packaging's own view of
    # this interpreter.
    from packaging.markers import default_environment

    assert Environment().markers == default_environment()
