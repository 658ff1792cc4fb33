"""``python -m pytest_envguard``: the report outside pytest."""

from __future__ import annotations

import json
import os
import shutil
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


@pytest.mark.parametrize(("args", "message"), [
    (("--qiuet",), "unrecognized arguments: --qiuet"),
    (("--json",), "argument --json: expected one argument"),
    (("--suggest", "--migrate", "x"), "--suggest and --migrate are separate commands"),
])
def test_a_bad_command_line_exits_4_as_pytests_own(tmp_path: Path, args: tuple[str, ...],
                                                   message: str) -> None:
    """Not argparse's 2: pytest exits 4 for a bad command line, and so does the report."""
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith("usage: python -m pytest_envguard ")
    assert f"error: {message}" in result.stderr
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


# -- --json PATH: whole or not at all, never through a link -------------------------------------


def json_target(directory: Path, kind: str) -> tuple[Path, Path | None]:
    """``(target, elsewhere)``: a path of the given kind to write the document to, and the
    file a link there points at (which must stay as it was)."""
    target = directory / "report.json"
    elsewhere = directory / "elsewhere" / "victim.txt"
    elsewhere.parent.mkdir()
    if kind == "symlink":
        elsewhere.write_text("precious\n", encoding="utf-8")
        target.symlink_to(elsewhere)
    elif kind == "dangling-symlink":
        target.symlink_to(elsewhere)
    elif kind == "fifo":  # writing through would block until a reader came
        os.mkfifo(target)
    elif kind == "existing-file":
        target.write_text("old\n", encoding="utf-8")
    return target, elsewhere


def assert_written(target: Path, elsewhere: Path | None, kind: str) -> None:
    assert not target.is_symlink() and target.is_file()
    assert json.loads(target.read_text(encoding="utf-8"))["schema"] == "pytest-envguard/1"
    if elsewhere is not None:
        assert (elsewhere.read_text(encoding="utf-8") if kind == "symlink"
                else not elsewhere.exists()), kind
    assert not [path.name for path in target.parent.iterdir() if path.name.endswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


JSON_TARGETS = ["symlink", "dangling-symlink", "fifo", "existing-file", "new-file"]


@pytest.mark.parametrize("kind", JSON_TARGETS)
def test_the_json_document_replaces_whatever_is_at_its_path(tmp_path: Path, kind: str) -> None:
    target, elsewhere = json_target(tmp_path, kind)
    result = run("--json", str(target), "-q", "python >=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_written(target, elsewhere, kind)


def test_the_json_document_to_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "report.json").mkdir()
    result = run("--json", "report.json", "-q", "python >=3", cwd=tmp_path)
    assert result.returncode == 4
    assert "could not write report.json" in result.stderr and "Traceback" not in result.stderr
    assert [path.name for path in tmp_path.iterdir()] == ["report.json"]  # no temporary left


def test_the_working_directory_gone(tmp_path: Path) -> None:
    """Run from a directory deleted under it (a CI step after a checkout was wiped): a clean
    message and exit status 4, by every interpreter at hand (3.13.0 fails differently)."""
    interpreters = [sys.executable]
    newest = shutil.which("python3.13")
    if newest:  # the binary itself: a pyenv shim is a shell script, which has its own opinion
        resolved = subprocess.run([newest, "-c", "import sys; print(sys.executable)"],
                                  capture_output=True, text=True, timeout=60, check=False,
                                  cwd=Path(__file__).resolve().parent.parent)
        binary = resolved.stdout.strip()
        if binary and os.path.realpath(binary) != os.path.realpath(sys.executable):
            interpreters.append(binary)
    package_root = str(Path(__file__).resolve().parent.parent)
    for interpreter in interpreters:
        gone = tmp_path / "gone"
        gone.mkdir()
        for args in ([], ["python >=3"], ["--json", "out.json"]):
            code = ("import os, subprocess, sys\nos.chdir(sys.argv[1])\nos.rmdir(sys.argv[1])\n"
                    "sys.exit(subprocess.call([sys.argv[2], '-m', 'pytest_envguard', *sys.argv[3:]]))\n")
            gone.mkdir(exist_ok=True)
            result = subprocess.run([sys.executable, "-c", code, str(gone), interpreter, *args],
                                    capture_output=True, text=True, timeout=120, check=False,
                                    env={**os.environ, "PYTHONPATH": package_root})
            assert result.returncode == 4, (interpreter, args, result.stdout, result.stderr)
            assert result.stderr.startswith("envguard: the working directory is gone"), result.stderr
            assert "Traceback" not in result.stdout + result.stderr


# -- --config FILE and lines; an explicit file with no contract --------------------------------


def test_config_file_and_lines_combine(tmp_path: Path) -> None:
    config = tmp_path / "contract.ini"
    config.write_text(f"[pytest]\nenvguard =\n    python >={PY}\n")
    result = run("--config", str(config), "cpus >=1", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok    python >={PY}" in result.stdout
    assert "ok    cpus >=1" in result.stdout
    assert "contract met: 2 met" in result.stdout
    unmet = run("--config", str(config), "python >=3.999", "-q", cwd=tmp_path)
    assert unmet.returncode == 6
    assert "contract NOT met: 1 met, 1 unmet" in unmet.stdout


@pytest.mark.parametrize(
    ("name", "text", "sections"),
    [
        ("pytest.ini", "[pytset]\nenvguard = python >=3.999\n", "[pytest]"),  # a typo
        ("pytest.ini", "[pytest]\naddopts = -ra\n", "[pytest]"),
        ("pytest.ini", "[pytest]\nenvguard =\n", "[pytest]"),
        ("setup.cfg", "[pytest]\nenvguard = python >=3.999\n", "[tool:pytest]"),
        ("pyproject.toml", '[tool.envguard]\nenvguard = ["python >=3.999"]\n',
         "[tool.pytest.ini_options] (or pytest 9's [tool.pytest])"),
        ("pytest.toml", '[tool.pytest]\nenvguard = ["python >=3.999"]\n', "[pytest]"),
    ],
)
def test_an_explicit_config_with_no_contract_is_an_error(tmp_path: Path, name: str, text: str,
                                                         sections: str) -> None:
    """A Dockerfile ``RUN envguard --config setup.cfg`` must not pass with a typo."""
    config = tmp_path / name
    config.write_text(text)
    for extra in ((), ("cpus >=1",)):
        result = run("--config", str(config), *extra, cwd=tmp_path)
        assert result.returncode == 4, result.stdout
        assert result.stderr == (f"envguard: {config}: no 'envguard' setting in {sections} — the "
                                 "contract --config names must not be empty\n")
        assert "Traceback" not in result.stderr


def test_nothing_to_check_says_why(tmp_path: Path) -> None:
    result = run(cwd=tmp_path)
    assert result.returncode == 0
    assert f"no requirements to check: no LINE given, and no pytest config in {tmp_path} or above" \
        in result.stdout
    assert "contract met: empty" not in result.stdout
    (tmp_path / "tox.ini").write_text("[pytest]\naddopts = -ra\n")
    result = run(cwd=tmp_path)
    assert (f"no requirements to check: no LINE given, and no 'envguard' setting in "
            f"{tmp_path / 'tox.ini'}") in result.stdout


# -- the console script and python -m: one behaviour ----------------------------------------

CONSOLE_SCRIPT = Path(sys.executable).parent / "envguard"


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONSOLE_SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_flat_layout_checkout_does_not_shadow_what_is_installed(tmp_path: Path) -> None:
    """``python -m`` puts the working directory first on ``sys.path``: a checkout's
    ``packaging/`` (say, without its compiled parts) would hide the installed one from
    the report, while pytest's test process and the ``envguard`` command see it."""
    (tmp_path / "packaging").mkdir()
    (tmp_path / "packaging" / "__init__.py").write_text("")
    line = "import packaging.version"
    for result in (run("-q", line, cwd=tmp_path), run_script("-q", line, cwd=tmp_path)):
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ok    import packaging.version" in result.stdout


@pytest.mark.parametrize("how", ["script", "module"])
def test_help_names_the_program_and_lists_the_exit_statuses(tmp_path: Path, how: str) -> None:
    invoke = run_script if how == "script" else run
    program = "envguard" if how == "script" else "python -m pytest_envguard"
    result = invoke("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: {program} ")
    for status in ("0  the contract is met", "4  a requirement line", "6  the contract is not met"):
        assert status in result.stdout
    from pytest_envguard import __version__

    version = invoke("--version", cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, f"{program} {__version__}\n")


# -- a reader that stops early (| head) ---------------------------------------------------------


def run_into_a_closed_pipe(command: list[str], cwd: Path, *, unbuffered: bool = False
                           ) -> subprocess.CompletedProcess[str]:
    """``command | head`` where head has already gone: stdout is a pipe whose reading end
    is closed, so every write fails (EPIPE) — deterministically, unlike a real head."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    reading, writing = os.pipe()
    os.close(reading)
    try:
        return subprocess.run(command, cwd=cwd, stdout=writing, stderr=subprocess.PIPE,
                              text=True, timeout=120, check=False, env=env)
    finally:
        os.close(writing)


@pytest.mark.parametrize("args", [["-q", "python >=3"], ["python >=3"], ["--json", "-", "python >=3"],
                                  ["--migrate", "."]], ids=" ".join)
def test_a_reader_that_stops_early_ends_it_quietly(tmp_path: Path, args: list[str]) -> None:
    """As a command killed by SIGPIPE: no traceback, no 'Exception ignored', status 141,
    with stdout buffered or not, ``--help`` too (argparse 3.11+ would swallow the error of
    an unbuffered write and exit 0)."""
    (tmp_path / "test_x.py").write_text("import pytest\n\n@pytest.mark.skipif(True, reason='x')\n"
                                        "def test_x(): pass\n")
    for command in ([sys.executable, "-m", "pytest_envguard", *args],
                    [str(CONSOLE_SCRIPT), *args]):
        for unbuffered in (False, True):
            result = run_into_a_closed_pipe(command, tmp_path, unbuffered=unbuffered)
            assert (result.returncode, result.stderr) == (141, ""), (command, result.stderr)
            helped = run_into_a_closed_pipe([*command[:-len(args)], "--help"], tmp_path,
                                            unbuffered=unbuffered)
            assert (helped.returncode, helped.stderr) == (141, ""), (command, helped.stderr)
