"""``--envguard-target NAME`` in whole pytest sessions (and ``--target`` in the CLI): the
header names the target, markers are judged as there, ``--envguard-report`` adds a
pre-flight of every test's markers without running one, user profiles come from the
``envguard_targets`` file or ``FILE.toml:NAME``, and a bad name or file is a usage
error, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_nvml import FakeNvml

SUITE = """
import pathlib
import pytest

def test_plain():
    pathlib.Path("ran-plain").touch()

@pytest.mark.requires("glibc >=2.28")
@pytest.mark.parametrize("n", range(3))
def test_new_glibc(n):
    pathlib.Path("ran-new-glibc").touch()

@pytest.mark.requires("gpus >=2", "gpu-memory >=40GiB")
def test_two_big_gpus():
    pathlib.Path("ran-gpus").touch()

@pytest.mark.requires("cuda >=12.1", strict=True)
def test_cuda_12():
    pathlib.Path("ran-cuda").touch()
"""

PROFILES = """
[profile.old-gpu]
extends = "manylinux2014"
cuda = "11.8"
driver = "520.61.05"
gpus = "Tesla T4:15360:7.5;Tesla T4:15360:7.5"

[profile.big-box]
extends = "manylinux_2_28"
cuda = "12.4"
gpus = "NVIDIA A100-SXM4-80GB:81920:8.0;NVIDIA A100-SXM4-80GB:81920:8.0"
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, fake_nvml: FakeNvml, no_nvml_dir: Path,
          monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The suite above, on a machine without an NVIDIA driver."""
    fake_nvml.setenv(monkeypatch, None)
    monkeypatch.setenv("LD_LIBRARY_PATH", str(no_nvml_dir))
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_suite=SUITE)
    (pytester.path / "targets.toml").write_text(PROFILES, encoding="utf-8")
    return pytester


def ran(pytester: pytest.Pytester) -> list[str]:
    return sorted(path.name for path in pytester.path.glob("ran-*"))


def test_a_run_on_a_target_judges_markers_there_and_names_it(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess("--envguard-target", "old-gpu", "-o",
                                        "envguard_targets=targets.toml", "-rs")
    result.stdout.fnmatch_lines([
        "envguard: target old-gpu (manylinux2014, cuda 11.8, driver 520.61.05, 2× Tesla T4)*",
    ])
    result.assert_outcomes(passed=1, skipped=4, errors=1)
    result.stdout.fnmatch_lines_random([
        "*3 tests skipped: needs glibc >=2.28 — found 2.17 (overridden)*",
        "*1 test skipped: needs gpus >=2 — found 0 (overridden)*",
        "*1 test failed: needs cuda >=12.1 — found 11.8 (overridden)*",
    ])


def test_the_report_is_a_preflight_of_every_tests_markers(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess("--envguard-report", "--envguard-target", "old-gpu",
                                        "-o", "envguard_targets=targets.toml",
                                        "--envguard-require", "python >=3.8",
                                        "--envguard-json=preflight.json")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "*envguard environment*",
        "target*old-gpu (manylinux2014, *); source: *targets.toml [[]profile.old-gpu[]], "
        "extending manylinux2014*",
        "*envguard contract*",
        "ok    python >=3.8*",
        "*envguard: the tests on target old-gpu*",
        "3 tests would be skipped: needs glibc >=2.28 — found 2.17 (overridden)*",
        "1 test would be skipped: needs gpus >=2 — found 0 (overridden)*",
        "1 test would fail: needs cuda >=12.1 — found 11.8 (overridden)*",
        "1 of 6 tests would run*",
        "envguard: report only — contract met (1 met)",
    ])
    assert ran(suite) == []  # nothing ran
    document = json.loads((suite.path / "preflight.json").read_text(encoding="utf-8"))
    assert document["environment"]["target"]["name"] == "old-gpu"
    assert document["environment"]["overrides"]["ENVGUARD_OVERRIDE_GLIBC"] == "2.17"
    statuses = {nodeid.split("::")[1]: [v["status"] for v in verdicts]
                for nodeid, verdicts in document["tests"].items()}
    assert statuses == {"test_new_glibc[0]": ["unmet"], "test_new_glibc[1]": ["unmet"],
                        "test_new_glibc[2]": ["unmet"], "test_two_big_gpus": ["unmet", "unmet"],
                        "test_cuda_12": ["unmet"]}
    assert document["outcomes"] == {}
    # The bigger box: every test would run.
    big = suite.runpytest_subprocess("--envguard-report", "--envguard-target",
                                     "targets.toml:big-box")
    assert big.ret == 0
    big.stdout.fnmatch_lines(["*the tests on target big-box*", "6 of 6 tests would run*"])


def test_an_unmet_contract_on_the_target_still_shows_the_tests(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess("--envguard-report", "--envguard-target", "manylinux2014",
                                        "--envguard-require", "glibc >=2.28")
    assert result.ret == 6
    result.stdout.fnmatch_lines(["FAIL  glibc >=2.28  2.17 (overridden)*",
                                 "3 tests would be skipped: needs glibc >=2.28*",
                                 "*report only — contract NOT met (1 unmet)"])
    assert ran(suite) == []


def test_what_the_target_does_not_describe_says_it_is_this_machines(
        suite: pytest.Pytester) -> None:
    # manylinux2014 describes the C library, not the CPUs, the interpreter or the GPUs.
    suite.makepyfile(test_cpus="""
import pytest

@pytest.mark.requires("cpus >=100000")
def test_many_cpus():
    pass
""")
    result = suite.runpytest_subprocess("--envguard-target", "manylinux2014", "-rs",
                                        "--envguard-require", "python >=3.8",
                                        "--envguard-require", "glibc >=2.17",
                                        "--envguard-require", "env HOME; sys_platform == 'win32'",
                                        "--envguard-json=run.json", "test_cpus.py")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*1 test skipped: needs cpus >=100000 — found * (this machine)*"])
    document = json.loads((suite.path / "run.json").read_text(encoding="utf-8"))
    found = {verdict["requirement"]["key"]: (verdict["found"], verdict["overridden"])
             for verdict in document["contract"]}
    python = ".".join(map(str, sys.version_info[:3]))
    assert found["python"] == (f"{python} (this machine)", False)
    assert found["glibc"] == ("2.17 (overridden)", True)
    assert not found["env"][0].endswith("(this machine)")  # n/a: its condition is false
    [cpus] = document["tests"].values()
    assert cpus[0]["found"].endswith(" (this machine)") and not cpus[0]["overridden"]
    # The same run without a target: every value is this machine's, and nothing says so.
    plain = suite.runpytest_subprocess("-rs", "--envguard-require", "python >=3.8",
                                       "--envguard-report")
    assert plain.ret == 0 and "(this machine)" not in plain.stdout.str()


def test_an_unmet_contract_names_the_target_it_was_judged_as(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess("--envguard-target", "cuda-11.8-t4x2",
                                        "--envguard-require", "cuda >=12.1",
                                        "--envguard-require", "glibc >=2.17")
    assert result.ret == 6
    result.stdout.fnmatch_lines([
        "*envguard: session contract not met on target cuda-11.8-t4x2 (rehearsed on *)*",
        "FAIL  cuda >=12.1   11.8 (overridden)*",
        "ok    glibc >=2.17  * (this machine)*",  # a CUDA worker's profile has no glibc
        "envguard: 1 of 2 contract requirements not met on target cuda-11.8-t4x2 "
        "(rehearsed on *) (first: cuda >=12.1 — found 11.8 (overridden)); no tests were "
        "collected",
    ])
    assert ran(suite) == []


def test_a_preflight_that_cannot_collect_keeps_pytests_status(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_broken="import not_a_module_anywhere_xyz\n")
    result = suite.runpytest_subprocess("--envguard-report", "--envguard-target", "manylinux2014")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*not_a_module_anywhere_xyz*"])


def test_the_profile_file_is_found_from_the_config_file(suite: pytest.Pytester) -> None:
    (suite.path / "sub").mkdir()
    suite.makeini("[pytest]\nenvguard_targets = targets.toml\n")
    result = suite.runpytest_subprocess("--envguard-report", "--envguard-target", "old-gpu",
                                        str(suite.path / "test_suite.py"))
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*the tests on target old-gpu*"])


@pytest.mark.parametrize(("args", "message"), [
    (["--envguard-target", "manylinux2041"],
     "*--envguard-target manylinux2041: unknown target 'manylinux2041' — did you mean "
     "'manylinux2014'?*"),
    (["--envguard-target", "old-gpu"], "*unknown target 'old-gpu'*"),  # no profile file named
    (["--envguard-target", "nowhere.toml:old-gpu"], "*--envguard-target nowhere.toml:old-gpu: "
     "no such file: *nowhere.toml"),
    (["--envguard-target", "targets.toml:old-gpus"], "*unknown target 'old-gpus' — did you mean "
     "'old-gpu'?*"),
    (["--envguard-target", "cuda-12.4-k80"], "*unknown GPU model 'k80'*"),
    (["-o", "envguard_targets=bad.toml", "--envguard-target", "x"],
     "*-o envguard_targets: *bad.toml*"),
])
def test_a_bad_target_is_a_usage_error(suite: pytest.Pytester, args: list[str],
                                       message: str) -> None:
    (suite.path / "bad.toml").write_text("[profile.x\n", encoding="utf-8")
    result = suite.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert ran(suite) == []


def test_a_bad_profile_names_the_file_and_table(suite: pytest.Pytester) -> None:
    (suite.path / "targets.toml").write_text('[profile.x]\nglibc = 2.28\n', encoding="utf-8")
    result = suite.runpytest_subprocess("--envguard-target", "targets.toml:x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*targets.toml [[]profile.x[]]: glibc must be a string*"])


# -- the CLI ------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_envguard", *args], capture_output=True,
                          text=True, check=False, timeout=120, cwd=cwd)


def test_the_cli_takes_a_target_and_the_configs_profiles(tmp_path: Path) -> None:
    (tmp_path / "targets.toml").write_text(PROFILES, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\nenvguard = glibc >=2.17\n    cuda >=12\n"
                                         "envguard_targets = targets.toml\n", encoding="utf-8")
    old = cli("--target", "old-gpu", cwd=tmp_path)
    assert old.returncode == 6, old.stdout + old.stderr
    assert "== envguard environment on " in old.stdout and "as on target old-gpu ==" in old.stdout
    assert "FAIL  cuda >=12     11.8 (overridden)" in old.stdout
    big = cli("--target", "big-box", "-q", cwd=tmp_path)
    assert big.returncode == 0, big.stdout
    bad = cli("--target", "nope", cwd=tmp_path)
    assert bad.returncode == 4
    assert bad.stderr.startswith("envguard: --target nope: unknown target 'nope'")
