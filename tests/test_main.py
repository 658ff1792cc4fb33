"""``python -m pytest_envguard``: the report outside pytest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_envguard", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def test_lines_on_the_command_line(tmp_path: Path) -> None:
    result = run(f"python >={PY}", "cpus >=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "== envguard environment on " in result.stdout
    assert f"ok    python >={PY}" in result.stdout
    assert "contract met: 2 met" in result.stdout


def test_unmet_exits_6(tmp_path: Path) -> None:
    result = run("python >=3.999", cwd=tmp_path)
    assert result.returncode == 6
    assert "FAIL  python >=3.999" in result.stdout
    assert "contract NOT met: 1 unmet" in result.stdout


def test_bad_line_exits_4(tmp_path: Path) -> None:
    result = run("cdua >=12", cwd=tmp_path)
    assert result.returncode == 4
    assert "unknown key 'cdua' — did you mean 'cuda'?" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pytest.ini", "[pytest]\nenvguard =\n    python >=3.999\n"),
        ("tox.ini", "[pytest]\nenvguard =\n    python >=3.999\n"),
        ("setup.cfg", "[tool:pytest]\nenvguard =\n    python >=3.999\n"),
        ("pyproject.toml", '[tool.pytest.ini_options]\nenvguard = ["python >=3.999"]\n'),
    ],
)
def test_contract_from_the_config_of_the_current_directory(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    sub = tmp_path / "sub"
    sub.mkdir()
    result = run(cwd=sub)
    assert result.returncode == 6, result.stdout + result.stderr
    assert f"{name} [envguard]" in result.stdout


def test_explicit_config_and_json(tmp_path: Path) -> None:
    config = tmp_path / "contract.ini"
    config.write_text(f"[pytest]\nenvguard =\n    python >={PY}\n")
    result = run("--config", str(config), "--json", str(tmp_path / "out.json"), "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "envguard environment" not in result.stdout
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["schema"] == "pytest-envguard/1"
    assert document["contract"][0]["source"] == "contract.ini [envguard]"
    assert document["environment"]["python"]["version"].startswith(PY)


def test_json_to_stdout(tmp_path: Path) -> None:
    result = run("--json", "-", "python >=3", cwd=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout)["contract"][0]["status"] == "met"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("pyproject.toml", "[tool.pytest.ini_options\n", "pyproject.toml"),
        ("pytest.ini", "[pytest]\nenvguard = gpus >= many\n", "not a whole number"),
        ("pytest.ini", "not an ini file at all\n", "pytest.ini"),
        ("pyproject.toml", "[tool.pytest.ini_options]\nenvguard = 3\n", "must be a list of lines"),
        ("pytest.ini", "[pytest]\nenvguard_gpu_timeout = -1\n", "not a positive number"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    result = run(cwd=tmp_path)
    assert result.returncode == 4, result.stdout
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = run("--config", "nope.ini", cwd=tmp_path)
    assert result.returncode == 4
    assert "nope.ini: no such file" in result.stderr


def test_the_report_probes_no_gpu_unless_asked(tmp_path: Path) -> None:
    result = run(f"python >={PY}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "nvidia         not probed (no GPU requirement" in result.stdout
    assert "extensions     not probed" in result.stdout
    asked = run("gpus >=0", cwd=tmp_path)
    assert "nvidia         not probed" not in asked.stdout
