"""``isolated`` knows conda's and pixi's activation: the variables ``conda activate``,
``conda activate --stack`` and ``pixi shell`` set, judged against the prefix in use.

The environments are directories laid out as conda and pixi lay them out (a
``conda-meta/`` directory, pixi's ``conda-meta/pixi`` marker, ``.pixi/envs/NAME``);
the variables are the ones each tool's activation exports (conda's
``activate``: ``CONDA_PREFIX``, ``CONDA_SHLVL``, ``CONDA_PREFIX_<n>``, ``PATH``;
pixi's ``shell-hook``: ``PIXI_PROJECT_ROOT``, ``PIXI_ENVIRONMENT_NAME``,
``CONDA_PREFIX``). One whole run goes through the real interpreter of a real
conda prefix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pytest_envguard.probes.isolation import probe_isolation
from tests.fixtures_conda import MakePrefix
from tests.fixtures_packages import clean_environ


def conda_env(path: Path) -> Path:
    (path / "conda-meta").mkdir(parents=True)
    (path / "conda-meta" / "history").write_text("", encoding="utf-8")
    (path / "bin").mkdir()
    (path / "lib").mkdir()
    return path


def venv(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    (path / "bin").mkdir()
    return path


def leaks(facts: object) -> dict[str, str]:
    return {leak.variable: leak.reason for leak in facts.leaks}  # type: ignore[attr-defined]


def test_an_activated_conda_env_is_isolated(tmp_path: Path) -> None:
    env = conda_env(tmp_path / "miniforge" / "envs" / "ml")
    environ = {"CONDA_PREFIX": str(env), "CONDA_SHLVL": "1",
               "PATH": f"{env / 'bin'}:{tmp_path / 'miniforge' / 'condabin'}:/usr/bin",
               "LD_LIBRARY_PATH": str(env / "lib")}
    facts = probe_isolation(environ, prefix=str(env), base_prefix=str(env))
    assert (facts.kind, facts.environment_kind, facts.leaks) == ("conda", "conda", ())
    assert facts.summary() == f"conda {env}"


def test_a_base_env_activated_under_a_venv(tmp_path: Path) -> None:
    """``conda activate base`` (or auto_activate_base), then a venv made from base's python."""
    base = conda_env(tmp_path / "miniforge")
    project = venv(tmp_path / "project" / ".venv")
    environ = {"CONDA_PREFIX": str(base), "CONDA_SHLVL": "1", "VIRTUAL_ENV": str(project),
               "PATH": f"{project / 'bin'}:{base / 'bin'}:{base / 'condabin'}:/usr/bin"}
    facts = probe_isolation(environ, prefix=str(project), base_prefix=str(base))
    assert (facts.kind, facts.base_kind, facts.environment_kind) == ("venv", "conda", "venv")
    found = leaks(facts)
    assert set(found) == {"CONDA_PREFIX"}  # base's own bin/ is the venv's base: not a leak
    assert "is activated under this venv, which was made from it" in found["CONDA_PREFIX"]
    assert facts.leaks[0].hint == "conda deactivate, then activate only the venv"


def test_conda_path_and_library_path_leak_into_a_plain_venv(tmp_path: Path) -> None:
    """A conda env left on PATH and LD_LIBRARY_PATH (``export PATH=~/miniforge/bin:$PATH``
    in a shell profile) reaches a venv that has nothing to do with conda."""
    other = conda_env(tmp_path / "miniforge")
    project = venv(tmp_path / ".venv")
    environ = {"PATH": f"{other / 'bin'}:/usr/bin", "LD_LIBRARY_PATH": str(other / "lib")}
    facts = probe_isolation(environ, prefix=str(project), base_prefix="/usr")
    found = leaks(facts)
    assert set(found) == {"PATH", "LD_LIBRARY_PATH"}
    assert f"lies inside another conda env ({other})" in found["PATH"]
    assert "conda deactivate" in facts.leaks[1].hint


def test_conda_activate_stack_keeps_the_previous_env_on_path(tmp_path: Path) -> None:
    """``conda activate --stack tools``: CONDA_SHLVL=2, the first env still on PATH."""
    base = conda_env(tmp_path / "miniforge")
    tools = conda_env(base / "envs" / "tools")
    ml = conda_env(base / "envs" / "ml")
    environ = {"CONDA_PREFIX": str(tools), "CONDA_SHLVL": "2", "CONDA_PREFIX_1": str(ml),
               "PATH": f"{tools / 'bin'}:{ml / 'bin'}:/usr/bin"}
    facts = probe_isolation(environ, prefix=str(tools), base_prefix=str(tools))
    assert list(leaks(facts)) == ["PATH"]
    assert "an activation stack: CONDA_SHLVL=2, CONDA_PREFIX_1=" in facts.leaks[0].reason
    # a second plain `conda activate` (no --stack) leaves only CONDA_PREFIX_1 behind: harmless
    environ["PATH"] = f"{tools / 'bin'}:/usr/bin"
    assert probe_isolation(environ, prefix=str(tools), base_prefix=str(tools)).leaks == ()


def test_a_conda_env_activated_for_another_interpreter(tmp_path: Path) -> None:
    base = conda_env(tmp_path / "miniforge")
    ml = conda_env(base / "envs" / "ml")
    gpu = conda_env(base / "envs" / "gpu")
    environ = {"CONDA_PREFIX": str(ml), "CONDA_SHLVL": "2", "CONDA_PREFIX_1": str(base),
               "PATH": f"{ml / 'bin'}:{base / 'condabin'}:/usr/bin"}
    facts = probe_isolation(environ, prefix=str(gpu), base_prefix=str(gpu))
    assert set(leaks(facts)) == {"CONDA_PREFIX", "PATH"}
    assert f"names an activated conda env ({ml})" in leaks(facts)["CONDA_PREFIX"]


def test_a_pixi_environment_and_pixis_activation(tmp_path: Path) -> None:
    project = tmp_path / "project"
    default = conda_env(project / ".pixi" / "envs" / "default")
    test = conda_env(project / ".pixi" / "envs" / "test")
    (test / "conda-meta" / "pixi").write_text(json.dumps({
        "manifest_path": str(project / "pixi.toml"), "environment_name": "test",
        "pixi_version": "0.40.0"}), encoding="utf-8")
    shell = {"PIXI_PROJECT_ROOT": str(project), "PIXI_ENVIRONMENT_NAME": "test",
             "CONDA_PREFIX": str(test), "PATH": f"{test / 'bin'}:/usr/bin"}
    facts = probe_isolation(shell, prefix=str(test), base_prefix=str(test))
    assert (facts.environment_kind, facts.leaks) == ("pixi", ())
    assert facts.summary() == f"pixi {test}"
    # `pixi shell -e test`, then the default environment's python
    facts = probe_isolation(shell, prefix=str(default), base_prefix=str(default))
    assert set(leaks(facts)) == {"PIXI_ENVIRONMENT_NAME", "PATH"}
    assert (f"pixi activated environment 'test' of the project at {project} ({test}), "
            f"but this interpreter's sys.prefix is {default}") in leaks(facts)["PIXI_ENVIRONMENT_NAME"]
    assert "pixi run -e test" in facts.leaks[-1].hint
    # PIXI_PROJECT_ROOT alone (pixi run with no CONDA_PREFIX exported): the default env
    facts = probe_isolation({"PIXI_PROJECT_ROOT": str(project)}, prefix=str(default),
                            base_prefix=str(default))
    assert facts.leaks == ()


def test_a_real_prefix_sees_conda_prefix_leak_end_to_end(make_prefix: MakePrefix,
                                                         tmp_path: Path) -> None:
    prefix = make_prefix("zed")
    other = conda_env(tmp_path / "other")
    environ = clean_environ(CONDA_PREFIX=str(other), CONDA_SHLVL="1",
                            PATH=f"{other / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = prefix.verdict("isolated", env=environ)
    assert result["status"] == "unmet"
    assert result["found"] == "conda, 2 leaks"
    assert prefix.verdict("isolated")["status"] == "met"
