"""`isolated`, `consistent`, `wheels` as checks: the isolation probe, verdicts, whole sessions."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_envguard import checks, grammar
from pytest_envguard.environment import Environment
from pytest_envguard.probes.distributions import InstalledDistribution, InstalledFacts, SupportedTags
from pytest_envguard.probes.isolation import environment_root, probe_isolation
from pytest_envguard.verdicts import Status, Verdict
from tests.fixtures_packages import MakeVenv, Venv, clean_environ, write_dist_info


def make_venv_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    (path / "lib").mkdir()
    return path


def make_conda_dir(path: Path) -> Path:
    (path / "conda-meta").mkdir(parents=True)
    (path / "lib").mkdir()
    return path


def verdict(env: Environment, line: str) -> Verdict:
    (result,) = checks.evaluate(grammar.parse_lines([line]), env)
    return result


# -- the isolation probe ------------------------------------------------------------------


def test_environment_root_finds_the_nearest_env(tmp_path: Path) -> None:
    conda = make_conda_dir(tmp_path / "conda")
    nested = make_conda_dir(conda / "envs" / "ml")
    assert environment_root(str(nested / "lib")) == str(nested)
    assert environment_root(str(conda / "lib")) == str(conda)
    assert environment_root(str(tmp_path / "plain")) is None


def test_venv_with_no_leaks(tmp_path: Path) -> None:
    venv = make_venv_dir(tmp_path / "venv")
    environ = {"VIRTUAL_ENV": str(venv), "LD_LIBRARY_PATH": f"{venv / 'lib'}::/usr/lib",
               "PYTHONPATH": ""}
    facts = probe_isolation(environ, prefix=str(venv), base_prefix="/usr")
    assert (facts.kind, facts.base_kind, facts.leaks) == ("venv", "system", ())
    assert facts.summary() == f"venv {venv}"


def test_every_leak_is_named_with_a_hint(tmp_path: Path) -> None:
    venv = make_venv_dir(tmp_path / "venv")
    conda = make_conda_dir(tmp_path / "conda")
    other = make_venv_dir(tmp_path / "other")
    environ = {
        "PYTHONPATH": "/src",
        "PYTHONHOME": "/opt/py",
        "LD_LIBRARY_PATH": f"{conda / 'lib'}:{other / 'lib'}:/usr/local/cuda/lib64",
        "CONDA_PREFIX": str(conda),
        "VIRTUAL_ENV": str(other),
    }
    facts = probe_isolation(environ, prefix=str(venv), base_prefix="/usr")
    assert [leak.variable for leak in facts.leaks] == [
        "PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "LD_LIBRARY_PATH", "CONDA_PREFIX",
        "VIRTUAL_ENV"]
    reasons = [leak.reason for leak in facts.leaks]
    assert reasons[2] == f"entry {conda / 'lib'} lies inside another conda env ({conda})"
    assert reasons[3] == f"entry {other / 'lib'} lies inside another venv ({other})"
    assert "conda deactivate" in facts.leaks[4].hint
    assert "conda run" in facts.leaks[2].hint
    assert all(leak.hint for leak in facts.leaks)
    assert facts.summary().endswith("leaks: PYTHONPATH, PYTHONHOME, LD_LIBRARY_PATH, "
                                    "LD_LIBRARY_PATH, CONDA_PREFIX, VIRTUAL_ENV")


def test_conda_env_and_a_venv_made_from_conda(tmp_path: Path) -> None:
    conda = make_conda_dir(tmp_path / "conda")
    facts = probe_isolation({"CONDA_PREFIX": str(conda), "LD_LIBRARY_PATH": str(conda / "lib")},
                            prefix=str(conda), base_prefix=str(conda))
    assert (facts.kind, facts.leaks) == ("conda", ())
    venv = make_venv_dir(tmp_path / "venv")
    facts = probe_isolation({"LD_LIBRARY_PATH": str(conda / "lib")}, prefix=str(venv),
                            base_prefix=str(conda))
    assert (facts.kind, facts.base_kind, facts.leaks) == ("venv", "conda", ())
    assert facts.summary() == f"venv on conda {venv}"


def test_system_python_is_not_isolated(tmp_path: Path) -> None:
    facts = probe_isolation({}, prefix=str(tmp_path), base_prefix=str(tmp_path))
    assert facts.kind == "system"
    assert [leak.variable for leak in facts.leaks] == ["sys.prefix"]
    assert "-m venv" in facts.leaks[0].hint


def test_probe_reads_the_given_mapping_not_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/leak")
    assert not any(leak.variable == "PYTHONPATH" for leak in probe_isolation({}).leaks)
    assert any(leak.variable == "PYTHONPATH" for leak in probe_isolation({"PYTHONPATH": "/x"}).leaks)


# -- verdicts --------------------------------------------------------------------------------


def test_isolated_verdicts(tmp_path: Path) -> None:
    venv = make_venv_dir(tmp_path / "venv")
    clean = Environment({"isolation": probe_isolation({}, str(venv), "/usr")}, environ={})
    result = verdict(clean, "isolated")
    assert (result.status, result.found) == (Status.MET, "venv")
    leaky = Environment({"isolation": probe_isolation({"PYTHONPATH": "/src", "PYTHONHOME": "/x"},
                                                      str(venv), "/usr")}, environ={})
    result = verdict(leaky, "isolated")
    assert (result.status, result.found) == (Status.UNMET, "venv, 2 leaks")
    assert result.reason == ("$PYTHONPATH adds paths outside the environment; "
                             "$PYTHONHOME adds paths outside the environment")
    assert result.hint is not None
    assert result.hint.startswith("unset PYTHONPATH")


def test_isolated_probes_the_environment_snapshot() -> None:
    env = Environment(environ={"PYTHONPATH": "/snapshot"})
    result = verdict(env, "isolated")
    assert result.status is Status.UNMET
    assert "$PYTHONPATH" in result.reason


def installed(*dists: InstalledDistribution) -> InstalledFacts:
    return InstalledFacts(dists, ("/site",))


def test_consistent_and_wheels_verdicts_on_hand_built_facts() -> None:
    facts = installed(
        InstalledDistribution("app", "1", "/site/app-1.dist-info", "/site", requires=("lib>=2",),
                              wheel_tags=("cp27-cp27mu-linux_x86_64",)),
        InstalledDistribution("lib", "1", "/site/lib-1.dist-info", "/site", installer="conda"),
    )
    env = Environment({"installed": facts,
                       "supported-tags": SupportedTags(("cp311-cp311-linux_x86_64",
                                                        "py3-none-any"))}, environ={})
    consistent = verdict(env, "consistent")
    assert (consistent.status, consistent.found) == (Status.UNMET, "2 problems")
    assert consistent.reason == (
        "app 1 has requirement lib>=2, but you have lib 1; app 1 is not supported on this "
        "platform: cp27-cp27mu-linux_x86_64: interpreter cp27 is not supported here; "
        "abi cp27mu is not supported here")
    assert [problem.kind for problem in consistent.problems] == ["pip-check", "pip-check"]
    assert consistent.hint == "pip install 'lib>=2'"
    wheels = verdict(env, "wheels")
    assert (wheels.status, wheels.found) == (Status.UNMET, "1 unsupported")
    assert wheels.reason == ("app 1 (cp27-cp27mu-linux_x86_64): interpreter cp27 is not "
                             "supported here; abi cp27mu is not supported here")
    assert wheels.hint == ("reinstall for this interpreter (cp311-cp311-linux_x86_64): "
                           "pip install --force-reinstall --no-deps app")


def test_duplicate_hint_removes_the_shadowed_copy_never_the_one_in_effect() -> None:
    # Issue 14, point 9: `pip uninstall numpy` would remove the copy in effect (pip
    # removes the first it finds) and leave the stale one active.
    facts = installed(
        InstalledDistribution("numpy", "2.0", "/a/site-packages/numpy-2.0.dist-info",
                              "/a/site-packages", installer="pip"),
        InstalledDistribution("numpy", "1.26", "/b/site-packages/numpy-1.26.dist-info",
                              "/b/site-packages", installer="pip", shadowed=True),
    )
    result = verdict(Environment({"installed": facts}, environ={}), "consistent")
    assert result.status is Status.UNMET
    assert result.reason.startswith("numpy 2.0 is installed twice: 2.0 in /a/site-packages/")
    assert result.hint == (
        "remove the copy not in effect: delete /b/site-packages/numpy-1.26.dist-info and the "
        "files its RECORD lists (a plain `pip uninstall numpy` would remove the copy in effect, "
        "2.0 in /a/site-packages)")
    conda = installed(facts.distributions[0], dataclasses.replace(
        facts.distributions[1], installer="conda"))
    result = verdict(Environment({"installed": conda}, environ={}), "consistent")
    assert result.hint == "conda remove --force numpy (removes conda's copy, in /b/site-packages)"


def test_duplicate_hint_in_one_directory_names_the_older_install() -> None:
    facts = installed(
        InstalledDistribution("te", "4.5.0", "/s/te-4.5.0.dist-info", "/s", modified=100.0),
        InstalledDistribution("te", "4.16.0", "/s/te-4.16.0.dist-info", "/s", modified=200.0,
                              shadowed=True),
    )
    result = verdict(Environment({"installed": facts}, environ={}), "consistent")
    assert result.hint == (
        "delete the stale metadata directory /s/te-4.5.0.dist-info (the older install), or run "
        "`pip uninstall te` as many times as there are copies, then `pip install te==4.16.0`")
    unknown_age = installed(*(dataclasses.replace(d, modified=None) for d in facts.distributions))
    result = verdict(Environment({"installed": unknown_age}, environ={}), "consistent")
    assert result.hint is not None
    assert result.hint.startswith("delete the metadata directory you did not mean to keep "
                                  "(/s/te-4.5.0.dist-info or /s/te-4.16.0.dist-info)")
    assert result.hint.endswith("then `pip install te`")


def test_following_the_duplicate_hint_keeps_the_copy_in_effect(make_venv: MakeVenv,
                                                               wheelhouse: Path) -> None:
    # The hint, followed to the letter on a real venv: the copy in effect stays in
    # effect, the stale one is gone, and pip check and `consistent` are both clean.
    venv = make_venv("dup-hint")
    venv.pip("install", "--no-index", "--find-links", str(wheelhouse), "beta==2.0")
    other = venv.root / "other-site"
    stale = write_dist_info(other, "beta", "1.5")
    (stale / "RECORD").write_text("beta/__init__.py,,\nbeta-1.5.dist-info/METADATA,,\n",
                                  encoding="utf-8")
    (other / "beta").mkdir()
    (other / "beta" / "__init__.py").write_text("", encoding="utf-8")
    (venv.site / "zz-other.pth").write_text(f"{other}\n", encoding="utf-8")
    in_effect = venv.in_effect()["beta"]
    hint = venv.verdict("consistent")["hint"]
    assert hint.startswith(f"remove the copy not in effect: delete {stale} and the files its "
                           "RECORD lists")
    for line in (stale / "RECORD").read_text(encoding="utf-8").splitlines():
        (other / line.split(",")[0]).unlink()
    shutil.rmtree(stale)
    assert venv.in_effect()["beta"] == in_effect
    assert venv.verdict("consistent")["status"] == "met"
    assert venv.pip_check() == (0, set())


def test_met_verdicts_on_this_interpreter() -> None:
    env = Environment()
    assert verdict(env, "wheels").status is Status.MET
    summary = env.installed.summary()
    assert summary.startswith(f"{len(env.installed.distributions)} distributions (")


# -- real interpreters, real variables --------------------------------------------------------


def test_isolated_in_a_real_venv(consistent_venv: Venv, tmp_path: Path) -> None:
    conda = make_conda_dir(tmp_path / "conda")
    assert consistent_venv.envguard("isolated").returncode == 0
    activated = consistent_venv.envguard(
        "isolated", env=clean_environ(VIRTUAL_ENV=str(consistent_venv.root)))
    assert activated.returncode == 0
    leaky = consistent_venv.envguard(
        "--json", "-", "isolated",
        env=clean_environ(PYTHONPATH=str(tmp_path), LD_LIBRARY_PATH=str(conda / "lib"),
                          CONDA_PREFIX=str(conda)))
    assert leaky.returncode == 6
    (result,) = json.loads(leaky.stdout)["contract"]
    assert result["found"] == "venv, 3 leaks"
    assert "PYTHONPATH" in result["reason"]
    assert f"lies inside another conda env ({conda})" in result["reason"]
    assert f"$CONDA_PREFIX names an activated conda env ({conda})" in result["reason"]


def test_report_shows_kind_and_installers(consistent_venv: Venv) -> None:
    result = consistent_venv.run("-m", "pytest_envguard", "--json", "-", "isolated")
    environment = json.loads(result.stdout)["environment"]
    assert environment["isolation"]["kind"] == "venv"
    assert environment["installed"]["installers"] == {"pip": 4}


# -- whole sessions ------------------------------------------------------------------------------


def run_session(directory: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", *args],
                          cwd=directory, capture_output=True, text=True, check=False,
                          env=clean_environ(**environ), timeout=120)


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nenvguard =\n    isolated\n    consistent\n    wheels\n", encoding="utf-8")
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n", encoding="utf-8")
    return tmp_path


def test_session_contract_met_then_broken_by_a_leak(suite: Path) -> None:
    # The suite is meant to run in a venv or conda env; if the test interpreter is
    # a system Python, the clean session must say so instead.
    clean = probe_isolation(clean_environ())
    met = run_session(suite)
    assert met.returncode == (6 if clean.leaks else 0), met.stdout + met.stderr
    assert ("1 passed" in met.stdout) is not bool(clean.leaks)
    leaked = run_session(suite, PYTHONPATH=str(suite / "elsewhere"))
    assert leaked.returncode == 6, leaked.stdout + leaked.stderr
    assert "PYTHONPATH" in leaked.stdout + leaked.stderr
    assert "1 passed" not in leaked.stdout


def test_requires_marker_skips_on_a_drifted_lock(pytester: pytest.Pytester) -> None:
    import pluggy

    pytester.makefile(".txt", requirements=f"pluggy=={pluggy.__version__}\n")
    pytester.makefile(".txt", drifted="pluggy==0.0.1\n")
    pytester.makepyfile("""
        import pytest

        @pytest.mark.requires("lock requirements.txt")
        def test_locked():
            pass

        @pytest.mark.requires("lock drifted.txt")
        def test_drifted():
            pass
    """)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*envguard: needs lock drifted.txt — found 1 differ, 0 missing: "
                                 "drifted.txt: pluggy * installed, lock has 0.0.1*"])


# -- the user site: a leak only the interpreter's own sys.path shows ----------------------------


def user_base_with_a_module(root: Path) -> Path:
    """A ``PYTHONUSERBASE`` whose site-packages holds what `pip install --user` would."""
    site = root / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    site.mkdir(parents=True)
    (site / "leaky_user_module.py").write_text("", encoding="utf-8")
    return site


ORACLE = ("import importlib.util, json, sys\n"
          "spec = importlib.util.find_spec('leaky_user_module')\n"
          "origin = spec.origin if spec else None\n"
          "inside = bool(origin) and any(origin.startswith(p + '/') for p in "
          "{sys.prefix, sys.base_prefix})\n"
          "print(json.dumps(bool(origin) and not inside))")


@pytest.mark.parametrize("system_site", [True, False])
def test_isolated_sees_a_user_site_leak(tmp_path: Path, envguard_shim: Path,
                                        system_site: bool) -> None:
    # Issue 14, point 8: in a venv with system site packages, PYTHONUSERBASE (or
    # ~/.local) puts a user site on sys.path and its modules are importable. The oracle:
    # the venv's own interpreter, asked where that module would come from.
    root = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root),
                    *(["--system-site-packages"] if system_site else [])],
                   check=True, env=clean_environ(), timeout=120)
    venv = Venv(root)
    (venv.site / "envguard-shim.pth").write_text(f"{envguard_shim}\n", encoding="utf-8")
    user_site = user_base_with_a_module(tmp_path / "userbase")
    for environ, leaks in ((clean_environ(PYTHONUSERBASE=str(tmp_path / "userbase")), system_site),
                           (clean_environ(PYTHONUSERBASE=str(tmp_path / "userbase"),
                                          PYTHONNOUSERSITE="1"), False)):
        oracle = venv.run("-c", ORACLE, env=environ)
        assert json.loads(oracle.stdout) is leaks, oracle.stderr
        result = venv.verdict("isolated", env=environ)
        assert (result["status"] == "unmet") is leaks, result
        if leaks:
            assert f"the user site-packages {user_site} is on sys.path" in result["reason"]
            assert "PYTHONNOUSERSITE=1" in result["hint"]


def test_an_empty_user_site_is_no_leak(tmp_path: Path) -> None:
    venv = make_venv_dir(tmp_path / "venv")
    empty = tmp_path / "user-site"
    empty.mkdir()
    facts = probe_isolation({}, str(venv), "/usr", path=[str(empty)], user_site=str(empty))
    assert facts.leaks == ()
    (empty / "mod.py").write_text("", encoding="utf-8")
    facts = probe_isolation({}, str(venv), "/usr", path=[str(empty)], user_site=str(empty))
    assert [leak.variable for leak in facts.leaks] == ["user site"]
    # Not on sys.path (python -s, PYTHONNOUSERSITE): nothing leaks from it.
    assert probe_isolation({}, str(venv), "/usr", path=[], user_site=str(empty)).leaks == ()
