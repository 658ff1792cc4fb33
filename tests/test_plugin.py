"""Whole pytest sessions: every row of DESIGN.md §3."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pytest_envguard.plugin import EXIT_CONTRACT_UNMET
from tests.fixtures_nvml import H100, FakeNvml

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
MET = f"python >={PY}"
UNMET = "python >=3.999"

SENTINEL_MODULE = """
import pathlib
pathlib.Path("collected.txt").write_text("collected")
def test_one():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A suite whose collection leaves a trace, to prove nothing was collected."""
    pytester.makepyfile(test_sentinel=SENTINEL_MODULE)
    return pytester


CONFIGS = {
    "pytest.ini": "[pytest]\nenvguard =\n    {lines}\n",
    "tox.ini": "[pytest]\nenvguard =\n    {lines}\n",
    "setup.cfg": "[tool:pytest]\nenvguard =\n    {lines}\n",
    "pyproject.toml": '[tool.pytest.ini_options]\nenvguard = ["{lines}"]\n',
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_contract_met_from_every_config_format(suite: pytest.Pytester, name: str) -> None:
    (suite.path / name).write_text(CONFIGS[name].format(lines=MET))
    result = suite.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["envguard: *contract: 1 met*"])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_contract_unmet_from_every_config_format_exits_6_before_collection(
    suite: pytest.Pytester, name: str
) -> None:
    (suite.path / name).write_text(CONFIGS[name].format(lines=UNMET))
    result = suite.runpytest()
    assert result.ret == EXIT_CONTRACT_UNMET
    result.stdout.fnmatch_lines([
        "*envguard: session contract not met on *",
        f"FAIL  python >=3.999 *{PY}.*{name} [[]envguard[]]*",
        "*does not satisfy >=3.999*",
        "*interpreter*",
    ])
    assert not (suite.path / "collected.txt").exists()


def test_unmet_contract_message_names_the_host_and_first_line(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--envguard-require", MET, "--envguard-require", UNMET)
    assert result.ret == 6
    result.stdout.fnmatch_lines(["*1 of 2 contract requirements not met on *(first: python >=3.999*"])


def test_cli_lines_add_to_the_ini_contract(suite: pytest.Pytester) -> None:
    suite.makeini(f"[pytest]\nenvguard = {MET}\n")
    result = suite.runpytest("--envguard-require", "cpus >=1", "--envguard-require", "memory >=1MiB")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*contract: 3 met*"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("cdua >=12", "*unknown key 'cdua' — did you mean 'cuda'?*"),
        ("python >=3.1O", "*invalid version specifier '>=3.1O'*"),
        ("memory >=16XB", "*unknown size unit 'XB'*"),
        ("python; nonexistent == '1'", "*invalid environment marker*"),
        ("python; __import__('os').system('touch pwned')", "*invalid environment marker*"),
    ],
)
def test_bad_cli_line_is_a_usage_error(suite: pytest.Pytester, line: str, message: str) -> None:
    result = suite.runpytest("--envguard-require", line)
    assert result.ret == pytest.ExitCode.USAGE_ERROR == 4
    result.stderr.fnmatch_lines(["ERROR: envguard: command line --envguard-require: " + message])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert not (suite.path / "pwned").exists()
    assert not (suite.path / "collected.txt").exists()


def test_bad_ini_line_names_the_file_and_option(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\nenvguard =\n    python >=3\n    gpus >= two\n")
    result = suite.runpytest()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["ERROR: envguard: tox.ini [[]envguard[]]: not a whole number: 'two'",
                                 "    gpus >= two", "            ^^^"])


def test_empty_contract_is_fine(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\nenvguard =\n")
    result = suite.runpytest()
    result.assert_outcomes(passed=1)
    assert "envguard:" not in result.stdout.str()


# -- --envguard-report -------------------------------------------------------------------------


def test_report_met_exits_0_and_runs_nothing(suite: pytest.Pytester) -> None:
    suite.makeini(f"[pytest]\nenvguard = {MET}\n")
    result = suite.runpytest("--envguard-report")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*envguard environment*", "python * version=*", "platform *",
                                 "*envguard contract*", f"ok    python >={PY}*",
                                 "*report only — contract met*"])
    assert not (suite.path / "collected.txt").exists()


def test_report_unmet_exits_6(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--envguard-report", "--envguard-require", UNMET)
    assert result.ret == 6
    result.stdout.fnmatch_lines(["FAIL  python >=3.999*", "*report only — contract NOT met*"])


def test_report_with_no_contract_shows_the_environment(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--envguard-report")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*envguard environment*", "libc *", "(no requirements)"])


# -- the marker ----------------------------------------------------------------------------------

MARKED = f"""
import pytest

@pytest.mark.requires("{MET}")
def test_met():
    pass

@pytest.mark.requires("{UNMET}")
def test_unmet():
    pass

@pytest.mark.requires(python=">=3.999")
def test_unmet_keyword():
    pass

@pytest.mark.requires("{UNMET}", strict=True)
def test_unmet_strict():
    pass

@pytest.mark.requires("{UNMET}", reason="uses match statements of 3.999")
def test_unmet_reason():
    pass

@pytest.mark.requires("{UNMET}", strict=False)
def test_unmet_never_strict():
    pass

@pytest.mark.requires(python=">=3.999")
class TestClass:
    def test_in_class(self):
        pass
"""


def test_marker_skips_fails_and_groups(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_marked=MARKED)
    result = pytester.runpytest("-rsfE", "--strict-markers")
    # Strict failures happen at set-up, before fixtures that need the hardware run: pytest
    # reports them as errors.
    result.assert_outcomes(passed=1, skipped=5, errors=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        f"SKIPPED * envguard: needs python >=3.999 — found {PY}.*: Python {PY}.* does not satisfy >=3.999",
    ])
    result.stdout.fnmatch_lines(["*envguard: needs python >=3.999*(uses match statements of 3.999)*"])
    result.stdout.fnmatch_lines([
        "*envguard: requirements not met*",
        f"5 tests skipped: needs python >=3.999 — found {PY}.*",
        f"1 test failed: needs python >=3.999 — found {PY}.*",
    ])
    result.stdout.fnmatch_lines(["ERROR *test_unmet_strict - Failed: envguard: needs python*"])


@pytest.mark.parametrize(
    ("args", "ini", "ci", "failed"),
    [
        ((), "false", "1", 0),
        (("--envguard-strict",), "false", None, 1),
        ((), "true", None, 1),
        ((), "ci", "true", 1),
        ((), "ci", "1", 1),
        ((), "ci", None, 0),
        ((), "ci", "", 0),
        ((), "ci", "0", 0),
        ((), "ci", "false", 0),
        ((), "CI", "yes", 1),
    ],
)
def test_strict_modes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                      args: tuple[str, ...], ini: str, ci: str | None, failed: int) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makeini(f"[pytest]\nenvguard_strict = {ini}\n")
    pytester.makepyfile(f"""
        import pytest
        @pytest.mark.requires("{UNMET}")
        def test_x():
            pass
        @pytest.mark.requires("{UNMET}", strict=False)
        def test_never():
            pass
    """)
    result = pytester.runpytest(*args)
    result.assert_outcomes(errors=failed, skipped=2 - failed)


def test_bad_strict_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nenvguard_strict = sometimes\n")
    result = pytester.runpytest()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*envguard_strict*invalid value 'sometimes'*false, true, ci*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('"cdua >=12"', "*unknown key 'cdua' — did you mean 'cuda'?*"),
        ("gpus=2", "*the value of gpus= must be a string or True, not int*"),
        ("None", "*a requirement must be a string, not NoneType*"),
        ('"python", strict="yes"', "*strict= must be True, False or None*"),
        ('"python; os.getcwd() == \'/\'"', "*invalid environment marker*"),
        ('"python; __import__(\'os\').system(\'touch pwned\')"', "*invalid environment marker*"),
    ],
)
def test_bad_marker_is_a_collection_error_naming_the_test(pytester: pytest.Pytester, marker: str,
                                                         message: str) -> None:
    pytester.makepyfile(f"""
        import pytest
        @pytest.mark.requires({marker})
        def test_bad():
            pass
        def test_good():
            pass
    """)
    result = pytester.runpytest()
    # As pytest's own collection errors: reported, and no test runs.
    result.assert_outcomes(errors=1)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([
        "*ERROR collecting*",
        "envguard: requires marker of test_bad_marker_is_a_collection_error_naming_the_test.py::test_bad: "
        + message,
        "*Interrupted: 1 error during collection*",
    ])
    assert "Traceback" not in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str()
    assert not (pytester.path / "pwned").exists()


def test_marker_is_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.requires(*lines, strict=None, reason=None, **keys):*"])


def test_marker_evaluation_is_memoised_across_many_tests(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import pytest
        from pytest_envguard.probes import cpuinfo, system
        calls = []
        def counted(module, name):
            original = getattr(module, name)
            def counting(*args, **kwargs):
                calls.append(name)
                return original(*args, **kwargs)
            setattr(module, name, counting)
        counted(system, "probe_cpus")
        counted(cpuinfo, "probe_cpu")
        def pytest_sessionfinish(session):
            print("probe calls:", ",".join(sorted(calls)))
    """)
    pytester.makepyfile("""
        import pytest
        @pytest.mark.parametrize("i", range(300))
        @pytest.mark.requires("cpus >=1", "cpu sse2")
        def test_many(i):
            pass
    """)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=300)
    result.stdout.fnmatch_lines(["*probe calls: probe_cpu,probe_cpus"])


# -- the fixture ---------------------------------------------------------------------------------


def test_fixture_environment_and_require(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        import sys
        import pytest

        @pytest.fixture(scope="session")
        def needs_new_python(envguard):
            envguard.require("{UNMET}")

        def test_environment(envguard):
            assert envguard.environment.python.version.startswith("{PY}")
            assert "python" in envguard.environment.to_dict()

        def test_require_met(envguard):
            verdicts = envguard.require("{MET}", cpus=">=1")
            assert [v.status.value for v in verdicts] == ["met", "met"]

        def test_require_unmet(envguard):
            envguard.require(python=">=3.999")

        def test_require_strict(envguard):
            envguard.require("{UNMET}", strict=True)

        def test_from_session_fixture(needs_new_python):
            pass

        def test_require_bad(envguard):
            envguard.require("cdua")
    """)
    result = pytester.runpytest("-rsfE")
    result.assert_outcomes(passed=2, skipped=2, failed=2)
    result.stdout.fnmatch_lines(["*unknown key 'cdua'*"])


# -- --envguard-json -----------------------------------------------------------------------------


def test_json_document(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"[pytest]\nenvguard = {MET}\n")
    pytester.makepyfile(f"""
        import pytest
        @pytest.mark.requires("{UNMET}")
        def test_y():
            pass
        def test_plain():
            pass
    """)
    result = pytester.runpytest("--envguard-json", "out/report.json")
    result.assert_outcomes(passed=1, skipped=1)
    document = json.loads((pytester.path / "out" / "report.json").read_text())
    assert document["schema"] == "pytest-envguard/1"
    assert document["environment"]["python"]["version"].startswith(PY)
    assert document["contract"] == [{
        "line": MET, "source": "tox.ini [envguard]", "status": "met",
        "found": document["environment"]["python"]["version"],
        "reason": f"Python {document['environment']['python']['version']} satisfies >={PY}",
        "hint": None, "overridden": False,
        "requirement": {"key": "python", "argument": None, "specifier": f">={PY}", "marker": None},
    }]
    [(nodeid, verdicts)] = document["tests"].items()
    assert nodeid == "test_json_document.py::test_y"
    assert verdicts[0]["status"] == "unmet" and verdicts[0]["line"] == UNMET


def test_json_is_written_when_the_contract_fails(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--envguard-require", UNMET, "--envguard-json", "r.json")
    assert result.ret == 6
    document = json.loads((suite.path / "r.json").read_text())
    assert document["contract"][0]["status"] == "unmet"
    assert document["tests"] == {}


def test_json_to_an_unwritable_path_is_reported_not_raised(suite: pytest.Pytester) -> None:
    (suite.path / "file").write_text("")
    result = suite.runpytest("--envguard-json", "file/sub/r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*envguard: could not write *r.json*"])


# -- overrides, disabling, no contract -----------------------------------------------------------


def test_override_is_marked_in_reports(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVGUARD_OVERRIDE_GLIBC", "2.17")
    result = suite.runpytest("--envguard-report", "--envguard-require", "glibc >=2.28")
    assert result.ret == 6
    result.stdout.fnmatch_lines(["override * ENVGUARD_OVERRIDE_GLIBC='2.17'",
                                 "FAIL  glibc >=2.28  2.17 (overridden)*"])


def test_plugin_can_be_disabled(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-p", "no:envguard", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # In a subprocess: on pytest 7.4 an in-process usage error under -W error exits 3.
    result = suite.runpytest_subprocess("-p", "no:envguard", "--envguard-require", UNMET)
    assert result.ret == 4  # the option no longer exists
    result.stderr.fnmatch_lines(["*unrecognized arguments: --envguard-require*"])


NO_CONTRACT_SUITE = """
import pytest

def test_pass():
    pass

def test_fail():
    assert 0

@pytest.mark.skip(reason="plain skip")
def test_skip():
    pass

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert 0

@pytest.mark.parametrize("i", range(5))
def test_param(i):
    assert i != 3
"""


def test_no_contract_no_markers_outcomes_are_identical_without_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain=NO_CONTRACT_SUITE)
    with_plugin = pytester.runpytest("-rA")
    without = pytester.runpytest("-rA", "-p", "no:envguard")
    assert with_plugin.parseoutcomes() == without.parseoutcomes()
    assert with_plugin.ret == without.ret == 1
    assert "envguard:" not in with_plugin.stdout.str()

    def summary(result: pytest.RunResult) -> list[str]:
        lines = result.stdout.lines
        start = next(i for i, line in enumerate(lines) if "short test summary info" in line)
        return lines[start:-1]

    assert summary(with_plugin) == summary(without)


def test_with_no_contract_nothing_is_probed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_x(pytestconfig):
            from pytest_envguard.plugin import STATE
            assert pytestconfig.stash[STATE].environment_if_made is None
    """)
    pytester.runpytest().assert_outcomes(passed=1)


def test_bad_timeout_setting_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nenvguard_gpu_timeout = soon\n")
    result = pytester.runpytest()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*envguard_gpu_timeout*'soon' is not a positive number of seconds*"])


def test_header_summarises_what_the_contract_probed(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--envguard-require", MET, "--envguard-require", "cpus >=1")
    result.stdout.fnmatch_lines([f"envguard: Python {PY}.* (cpython) · * CPUs · contract: 2 met"])


# -- every core key, met and unmet, through one real session -------------------------------------

CORE_KEY_LINES = {
    # key: (a line met on any Linux machine running this suite, a line unmet on it)
    "python": (MET, UNMET),
    "implementation": (f"implementation {sys.implementation.name}", "implementation jython"),
    "abi": ("abi gil", "abi cp299"),
    "platform": ("platform linux", "platform win32"),
    "machine": (f"machine {__import__('platform').machine()}", "machine pdp11"),
    "glibc": ("glibc >=2.17", "glibc >=9.0"),
    "musl": ("python", "musl >=1.2"),
    "cpu": ("cpus >=1", "cpu no_such_flag_anywhere"),
    "cpus": ("cpus >=1", "cpus >=100000"),
    "memory": ("memory >=1MiB", "memory >=1000TiB"),
    "memory-available": ("memory-available >=1MiB", "memory-available >=1000TiB"),
    "package": ("package pytest>=7", "package pytest<1"),
    "command": ("command sh", "command surely-no-such-command-xyz"),
    "env": ("env ENVGUARD_TEST_SET=yes", "env ENVGUARD_TEST_UNSET"),
}


def test_every_core_key_met_and_unmet_in_one_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVGUARD_TEST_SET", "yes")
    monkeypatch.delenv("ENVGUARD_TEST_UNSET", raising=False)
    tests = ["import pytest"]
    for index, (key, (met_line, unmet_line)) in enumerate(CORE_KEY_LINES.items()):
        tests.append(f"@pytest.mark.requires({met_line!r})\ndef test_met_{index}():\n    pass")
        tests.append(f"@pytest.mark.requires({unmet_line!r})\ndef test_unmet_{index}():\n    pass")
        assert key in met_line or key in unmet_line
    pytester.makepyfile("\n\n".join(tests))
    result = pytester.runpytest("-rs", "--envguard-json", "r.json")
    result.assert_outcomes(passed=len(CORE_KEY_LINES), skipped=len(CORE_KEY_LINES))
    document = json.loads((pytester.path / "r.json").read_text())
    statuses = {nodeid.split("::")[1]: verdicts[0]["status"] for nodeid, verdicts in document["tests"].items()}
    assert {name for name, status in statuses.items() if status == "met"} == {
        f"test_met_{i}" for i in range(len(CORE_KEY_LINES))}
    assert all(statuses[f"test_unmet_{i}"] == "unmet" for i in range(len(CORE_KEY_LINES)))


def test_contract_without_the_cache_provider(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-p", "no:cacheprovider", "--envguard-require", MET)
    result.assert_outcomes(passed=1)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_bad_lock_extras_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nenvguard_lock_extras = maybe\n")
    result = pytester.runpytest()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*envguard_lock_extras*invalid value 'maybe'*report, ignore, fail*"])


def test_a_cheap_contract_imports_nothing_heavy_into_the_test_process(
        pytester: pytest.Pytester) -> None:
    """The cheap keys read /proc, cgroup files and the C library directly: no psutil,
    pyelftools, pynvml, packaging.markers or hint tables in the process that runs the
    tests (where psutil's own suite, say, must import its checkout, not ours)."""
    import platform

    pytester.makeini("[pytest]\nenvguard =\n    python >=3.10\n    cpus >=1\n    memory >=1GiB\n"
                     f"    glibc >=2.17\n    platform linux\n    machine {platform.machine()}\n"
                     "    env PATH\n    command sh\n    implementation cpython\n")
    pytester.makepyfile("""
        import sys

        HEAVY = ["psutil", "elftools", "pynvml", "packaging.markers", "packaging.requirements",
                 "pytest_envguard.hints", "pytest_envguard.checks.hygiene",
                 "pytest_envguard.checks.native", "pytest_envguard.checks.gpu",
                 # A met contract has no table to show, and no test has a marker.
                 "pytest_envguard.contract", "pytest_envguard.per_test"]

        def test_nothing_heavy_was_imported():
            assert [name for name in HEAVY if name in sys.modules] == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:metadata",
                                           "-p", "no:hypothesispytest", "-p", "no:randomly")
    result.assert_outcomes(passed=1)


def test_no_contract_and_no_marker_loads_only_the_hooks(pytester: pytest.Pytester) -> None:
    """The run developers make dozens of times an hour with no contract: the plugin
    imports its hooks (which hold the session's state) and its option table, nothing else
    of its own, and leaves no cache folder of its own behind."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile("""
        import sys

        def test_only_the_hooks_were_imported():
            own = sorted(name for name in sys.modules if name.startswith("pytest_envguard"))
            assert own == ["pytest_envguard", "pytest_envguard.hooks",
                           "pytest_envguard.option_table", "pytest_envguard.plugin"]
    """)
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:metadata",
                                           "-p", "no:hypothesispytest", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert (pytester.path / ".pytest_cache").is_dir()
    assert not list(pytester.path.glob(".pytest_cache/**/envguard"))


def test_the_plugin_modules_are_not_loaded_through_the_assertion_rewriter(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Installed from a wheel, the package is on pytest's list of modules to rewrite (a
    distribution with a ``pytest11`` entry point lists its files in RECORD); the plugin
    takes it off, so that every module but the entry point itself is loaded by Python's
    own importer, not through pytest's hook (its slow unmarshal, or a rewrite of the
    source in every run where it cannot cache one). An editable install is not on the
    list, so the copy here is put on the path with a distribution whose RECORD names it,
    as a wheel's does."""
    import shutil

    import pytest_envguard

    site = tmp_path / "site"
    shutil.copytree(Path(pytest_envguard.__file__).parent, site / "pytest_envguard",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (site / "envguard_wheel_probe.py").write_text("", encoding="utf-8")
    info = site / "envguard_wheel_probe-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: envguard-wheel-probe\n"
                                   "Version: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[pytest11]\nwheel-probe = envguard_wheel_probe\n",
                                           encoding="utf-8")
    (info / "RECORD").write_text("pytest_envguard/__init__.py,,\nenvguard_wheel_probe.py,,\n",
                                 encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(site))
    pytester.makeini("[pytest]\nenvguard =\n    python >=3.10\n    cpus >=1\n")
    pytester.makepyfile(f"""
        import importlib.machinery, sys

        def test_loaders():
            plugin = sys.modules["pytest_envguard.plugin"]
            assert plugin.__file__.startswith({str(site)!r})
            # The package was on the rewriter's list, as in a wheel's install:
            assert type(plugin.__loader__).__name__ == "AssertionRewritingHook"
            own = [name for name in sys.modules if name.startswith("pytest_envguard.")
                   and name != "pytest_envguard.plugin"]
            assert "pytest_envguard.hooks" in own and "pytest_envguard.grammar" in own
            rewritten = [name for name in own if type(sys.modules[name].__loader__)
                         is not importlib.machinery.SourceFileLoader]
            assert rewritten == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:metadata",
                                           "-p", "no:hypothesispytest", "-p", "no:randomly")
    result.assert_outcomes(passed=1)


def test_no_option_set_means_the_defaults() -> None:
    """With no option set the plugin takes ``Options()`` without resolving anything: the
    resolver must give the same for the defaults."""
    from pytest_envguard.option_table import INI_OPTIONS, Options
    from pytest_envguard.options import resolve

    defaults = {option.name: option.default for option in INI_OPTIONS}
    assert resolve(defaults, source=str, environ={}) == Options()
    assert resolve({}, source=str, environ={}) == Options()


@pytest.mark.parametrize("kind", ["symlink", "dangling-symlink", "fifo", "existing-file"])
def test_json_replaces_whatever_is_at_its_path(suite: pytest.Pytester, kind: str) -> None:
    from tests.test_main import assert_written, json_target

    target, elsewhere = json_target(suite.path, kind)
    result = suite.runpytest_subprocess("--envguard-require", MET, "--envguard-json", target.name,
                                        timeout=120)
    result.assert_outcomes(passed=1)
    assert_written(target, elsewhere, kind)


# -- --envguard-json PATH: the contract cannot silently vanish ----------------------------------


@pytest.fixture
def project_and_artifacts(pytester: pytest.Pytester) -> tuple[pytest.Pytester, Path]:
    """A project whose pyproject.toml holds an unmet contract, and a JSON document left
    outside it by a previous CI run."""
    pytester.makepyprojecttoml(f'[tool.pytest.ini_options]\nenvguard = ["{UNMET}"]\n')
    pytester.makepyfile(test_sentinel=SENTINEL_MODULE)
    artifacts = pytester.path.parent / f"{pytester.path.name}-artifacts"
    artifacts.mkdir()
    previous = artifacts / "envguard.json"
    previous.write_text("{}\n")
    return pytester, previous


def test_json_path_read_as_a_test_path_is_a_usage_error_not_a_lost_contract(
        project_and_artifacts: tuple[pytest.Pytester, Path]) -> None:
    """pytest reads ``--envguard-json PATH`` (two words, PATH existing) as a test path while
    looking for its config: outside the project it finds none, and the run used to go
    green with ``"contract": []``."""
    pytester, previous = project_and_artifacts
    result = pytester.runpytest("--envguard-json", str(previous))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: envguard: pytest took the value of '--envguard-json {previous}' for a test path "
        "(the path exists) while looking for its configuration, and found no configuration file: "
        f"{pytester.path / 'pyproject.toml'}, which holds the envguard settings, would not apply. "
        f"Write --envguard-json={previous} (one word).",
    ])
    assert not (pytester.path / "collected.txt").exists()
    assert previous.read_text() == "{}\n"


def test_json_path_in_one_word_keeps_the_contract(
        project_and_artifacts: tuple[pytest.Pytester, Path]) -> None:
    pytester, previous = project_and_artifacts
    result = pytester.runpytest(f"--envguard-json={previous}")
    assert result.ret == EXIT_CONTRACT_UNMET
    assert json.loads(previous.read_text())["contract"][0]["line"] == UNMET


@pytest.mark.parametrize("where", ["inside", "not-yet-written", "with-test-paths"])
def test_json_path_in_two_words_is_fine_where_pytest_still_finds_its_config(
        project_and_artifacts: tuple[pytest.Pytester, Path], where: str) -> None:
    pytester, previous = project_and_artifacts
    args = {"inside": ["--envguard-json", "envguard.json"],
            "not-yet-written": ["--envguard-json", str(previous.with_name("new.json"))],
            "with-test-paths": ["--envguard-json", str(previous), "test_sentinel.py"]}[where]
    (pytester.path / "envguard.json").write_text("{}\n")
    result = pytester.runpytest(*args)
    assert result.ret == EXIT_CONTRACT_UNMET  # the contract applied


# -- runs that run no test end with the table and one status line --------------------------------


@pytest.mark.parametrize(
    ("args", "status", "last"),
    [
        (("--envguard-report",), 0, "envguard: report only — contract met (no requirements)"),
        (("--envguard-report", "--envguard-require", MET), 0,
         "envguard: report only — contract met (1 met)"),
        (("--envguard-report", "--envguard-require", UNMET), 6,
         "envguard: report only — contract NOT met (1 unmet)"),
        (("--envguard-require", UNMET), 6,
         "envguard: 1 of 1 contract requirements not met on * (first: python >=3.999 — found *); "
         "no tests were collected"),
        (("--envguard-require", UNMET, "--co"), 6, "envguard: 1 of 1 contract requirements not met*"),
    ],
    ids=["report-empty", "report-met", "report-unmet", "contract-unmet", "contract-unmet-co"],
)
def test_runs_that_run_no_test_end_with_a_status_line_not_an_exit_banner(
        suite: pytest.Pytester, args: tuple[str, ...], status: int, last: str) -> None:
    result = suite.runpytest(*args)
    assert result.ret == status
    output = result.stdout.str() + result.stderr.str()
    assert "_pytest.outcomes.Exit" not in output
    assert "!!!" not in output
    lines = [line for line in result.stdout.lines if line.strip()]
    assert pytest.LineMatcher(lines[-2:]).fnmatch_lines([last, "*no tests * in *"]) is None
    assert not (suite.path / "collected.txt").exists()


def test_the_report_under_xdist_starts_no_worker(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess("--envguard-report", "-n", "2", "--envguard-require", MET,
                                        timeout=120)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*envguard contract*", f"ok    {MET}*",
                                 "envguard: report only — contract met (1 met)"])
    assert "workers" not in result.stdout.str()
    assert "bringing up nodes" not in result.stdout.str() + result.stderr.str()


# -- the snapshot is always recorded -------------------------------------------------------------

CHEAP_FACETS = {"python", "platform", "libc", "cpu", "cpus", "memory", "isolation", "installed"}


def test_the_snapshot_holds_the_cheap_facets_without_a_contract(pytester: pytest.Pytester) -> None:
    """What a CI archive keeps: the cheap facets always, and which expensive ones were not
    probed (``to_dict()`` in a fixture, and ``--envguard-json`` with no contract)."""
    pytester.makepyfile("""
        import json
        import pytest

        @pytest.fixture
        def snapshot(envguard):
            return envguard.environment.to_dict()

        def test_snapshot(snapshot):
            with open("fixture.json", "w") as stream:
                json.dump(snapshot, stream)
    """)
    result = pytester.runpytest("--envguard-json", "out.json")
    result.assert_outcomes(passed=1)
    from_fixture = json.loads((pytester.path / "fixture.json").read_text())
    document = json.loads((pytester.path / "out.json").read_text())
    for environment in (from_fixture, document["environment"]):
        assert set(environment) >= CHEAP_FACETS
        assert environment["python"]["version"].startswith(PY)
        assert environment["installed"]["count"] > 0
        assert set(environment["not_probed"]) == {"nvidia", "extensions:*"}
    assert document["contract"] == []


def test_the_json_snapshot_without_a_contract_or_fixture(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--envguard-json", "out.json")
    result.assert_outcomes(passed=1)
    document = json.loads((suite.path / "out.json").read_text())
    assert set(document["environment"]) >= CHEAP_FACETS
    assert document["outcomes"] == {"test_sentinel.py::test_one": "passed"}


# -- pytest 9's native TOML tables take numbers ---------------------------------------------------

NATIVE_TOML = """
envguard = ["python >=3.10", "cpus >=1"]
envguard_gpu_timeout = 5
envguard_import_timeout = 30.5
envguard_xdist_gpus = 2
envguard_junit_properties = true
envguard_strict = "ci"
"""


@pytest.mark.skipif(pytest.version_tuple < (9,), reason="pytest 9 added native TOML tables")
@pytest.mark.parametrize("where", ["pyproject.toml", "pytest.toml"])
def test_numbers_in_pytest_9_native_toml_tables(pytester: pytest.Pytester, where: str) -> None:
    if where == "pyproject.toml":
        pytester.makepyprojecttoml("[tool.pytest]" + NATIVE_TOML)
    else:
        (pytester.path / "pytest.toml").write_text("[pytest]" + NATIVE_TOML)
    pytester.makepyfile("""
        from pytest_envguard.plugin import STATE

        def test_options(pytestconfig):
            options = pytestconfig.stash[STATE].options
            assert (options.gpu_timeout, options.import_timeout) == (5.0, 30.5)
            assert options.xdist_gpus == 2
            assert options.junit_properties is True
            assert options.strict == "ci"
            assert [str(line) for line in options.contract] == ["python >=3.10", "cpus >=1"]
    """)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["envguard: *contract: 2 met*", f"configfile: {where}"])


# -- the probes import no third-party module into the test process -------------------------------

NATIVE_CONTRACT = ("[pytest]\nenvguard =\n    extensions psutil\n    library libc.so.6\n"
                   "    gpus >=0\n    memory >=1MiB\n    cpus >=1\n")


def imported_in_the_test_process(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                 fake_nvml: FakeNvml, names: list[str]) -> pytest.RunResult:
    """A session whose contract probes native libraries, GPUs (the real pynvml, against
    the fake driver), memory and CPUs; its one test fails if any of ``names`` is in the
    test process's ``sys.modules`` (where a suite of psutil, pyelftools or pynvml must
    import its own checkout, not ours)."""
    fake_nvml.setenv(monkeypatch, H100)
    pytester.makeini(NATIVE_CONTRACT)
    pytester.makepyfile(f"""
        import sys

        def test_nothing_third_party_was_imported():
            assert [name for name in {names!r} if name in sys.modules] == []
    """)
    return pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:metadata",
                                         "-p", "no:hypothesispytest", "-p", "no:randomly",
                                         timeout=180)


def test_native_and_gpu_probes_import_neither_psutil_nor_pynvml(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, fake_nvml: FakeNvml) -> None:
    result = imported_in_the_test_process(pytester, monkeypatch, fake_nvml, ["psutil", "pynvml"])
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["envguard: *NVIDIA H100 80GB HBM3*contract: 5 met"])


def test_native_probes_import_no_pyelftools(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, fake_nvml: FakeNvml) -> None:
    result = imported_in_the_test_process(pytester, monkeypatch, fake_nvml, ["elftools"])
    result.assert_outcomes(passed=1)


# -- wording ------------------------------------------------------------------------------------


def test_lines_set_with_dash_o_are_attributed_to_the_override(suite: pytest.Pytester) -> None:
    suite.makepyprojecttoml('[tool.pytest.ini_options]\nenvguard = ["python >=3.0"]\n')
    result = suite.runpytest("-o", f"envguard={UNMET}")
    assert result.ret == 6
    result.stdout.fnmatch_lines([f"FAIL  {UNMET}  *  -o envguard"])
    assert "pyproject.toml [envguard]" not in result.stdout.str()
    bad = suite.runpytest("-o", "envguard_gpu_timeout=soon")
    bad.stderr.fnmatch_lines(["*-o envguard_gpu_timeout: 'soon' is not a positive number of seconds"])


def test_an_overridden_gpu_count_is_marked_in_the_table(suite: pytest.Pytester,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVGUARD_OVERRIDE_GPUS", "2")
    result = suite.runpytest("--envguard-report", "--envguard-require", "gpus >=4")
    assert result.ret == 6
    result.stdout.fnmatch_lines(["FAIL  gpus >=4 * 2 (overridden)  command line --envguard-require"])


def test_an_absent_thing_is_found_none_not_found_not_found(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.requires("command surely-no-such-command-xyz")
        def test_x():
            pass
    """)
    result = pytester.runpytest("-rs")
    result.stdout.fnmatch_lines(["SKIPPED * envguard: needs command surely-no-such-command-xyz — "
                                 "found none: surely-no-such-command-xyz is not on PATH"])
    assert "found not found" not in result.stdout.str()


@pytest.mark.parametrize(
    ("ini", "ci", "says"),
    [
        ("ci", None, "unmet markers skip: envguard_strict = ci and CI is unset"),
        ("ci", "0", "unmet markers skip: envguard_strict = ci and CI is set to '0', which counts "
                    "as not CI"),
        ("ci", "true", "unmet markers fail: envguard_strict = ci and CI is set ('true')"),
        ("false", "true", "unmet markers skip: envguard_strict = false"),
        ("true", None, "unmet markers fail: envguard_strict = true"),
    ],
)
def test_the_summary_says_in_which_mode_markers_were_enforced_and_why(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ini: str, ci: str | None,
        says: str) -> None:
    """Under tox, CI reaches the tests only with pass_env: the summary shows why a CI run
    skipped what it should have failed."""
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makeini(f"[pytest]\nenvguard_strict = {ini}\n")
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.requires("{UNMET}")
        def test_x():
            pass
    """)
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*envguard: requirements not met*", "1 test *",
                                 says + " (a marker's own strict= wins)"])
    flag = pytester.runpytest("--envguard-strict")
    flag.stdout.fnmatch_lines(["unmet markers fail: --envguard-strict*"])


def test_inline_comments_in_the_contract(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"[pytest]\nenvguard =\n    {MET}  # the oldest we test\n    cpus >=1 # any\n")
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["envguard: *contract: 2 met*"])


def test_a_broken_config_above_does_not_turn_the_check_into_a_crash(
        project_and_artifacts: tuple[pytest.Pytester, Path]) -> None:
    """The check reads configs the way pytest finds them; one that does not parse is
    pytest's to report, never an INTERNALERROR of the plugin's."""
    pytester, previous = project_and_artifacts
    (pytester.path / "pytest.ini").write_text("this is not an ini file\n")
    result = pytester.runpytest_subprocess("--envguard-json", str(previous))
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: envguard: pytest took the value of '--envguard-json *' "
                                 "*the project's configuration (*pytest.ini*) would not apply*"])
