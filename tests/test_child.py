"""probes/_child.py: the one way a child process runs — isolated, answering on a pipe
of its own, and dying with the run that started it.

The children here are the real ones: the NVML query against the fake
``libnvidia-ml.so.1``, the ``import`` check of modules written by the test,
inside a real pytest process that the test interrupts, terminates or kills.
What is alive afterwards is read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_envguard.checks import evaluate
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.grammar import parse_lines
from pytest_envguard.probes import Failure
from pytest_envguard.probes._child import module_dirs, run_program, run_python
from pytest_envguard.verdicts import Status
from tests.fixtures_nvml import FakeNvml, clean_environ

Tried = Callable[[int], None]

# -- processes, as /proc shows them -------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of a process; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields[0], int(fields[1]), int(fields[2])


def _cmdline(pid: int) -> list[bytes]:
    """The arguments of a process; none when it has exited meanwhile."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # gone between the listing and the read: ESRCH or ENOENT
        return []


def _processes() -> dict[int, tuple[str, int, int]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None:
                found[int(entry)] = info
    return found


def descendants(pid: int) -> set[int]:
    table = _processes()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, (_, parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def living(pids: set[int], groups: set[int]) -> list[str]:
    """Those of ``pids``, and the members of ``groups``, that are alive (not zombies)."""
    alive = []
    for pid, (state, _, group) in _processes().items():
        if state != "Z" and (pid in pids or group in groups):
            command = b" ".join(_cmdline(pid))[:120]
            alive.append(f"{pid} (group {group}): {command.decode(errors='replace')}")
    return alive


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(0.05)


@contextlib.contextmanager
def reaped(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


# -- isolation: the cwd cannot answer for a child (issue 12, point 3) ---------------------------

#: What the NVML query answered before the redesign, on the last line of its stdout.
FOUR_GPUS = json.dumps({"driver": "550.54.15", "cuda": 12040, "notes": [], "devices": [
    {"index": index, "name": "NVIDIA H100", "uuid": f"GPU-{index}", "memory_total": 85899345920,
     "memory_free": 85899345920, "capability": "9.0", "mode": 0, "mig": False, "migs": []}
    for index in range(4)]})
LIAR = f"import os, sys\nsys.stdout.write({FOUR_GPUS!r} + '\\n')\nsys.stdout.flush()\nos._exit(0)\n"
#: Modules the NVML child imports (or imported before the redesign), as a project might
#: name its own files.
NAMESAKES = ["tempfile", "hashlib", "json", "ctypes", "threading", "string", "dataclasses",
             "pathlib", "selectors", "pynvml", "contextlib"]


def test_project_files_cannot_answer_for_nvml(no_nvml_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              bad_inputs: Tried) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in NAMESAKES:
        (project / f"{name}.py").write_text(LIAR, encoding="utf-8")
    bad_inputs(len(NAMESAKES))
    # The project is the working directory and on sys.path, as under `python -m pytest`.
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))
    environ = clean_environ(LD_LIBRARY_PATH=str(no_nvml_dir))
    env = Environment(environ=environ, settings=Settings(rootdir=project, gpu_timeout=30))
    verdicts = evaluate(parse_lines(["gpus >=4", "cuda >=12"]), env)
    assert [verdict.status for verdict in verdicts] == [Status.UNKNOWN, Status.UNKNOWN], verdicts
    assert "libnvidia-ml.so.1 not found" in verdicts[0].reason


def test_module_dirs_skip_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.machinery import PathFinder

    (tmp_path / "pynvml.py").write_text(LIAR, encoding="utf-8")
    (tmp_path / "envguard_only_here.py").write_text("", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = PathFinder.find_spec("pynvml", sys.path)  # as an import here would search
    assert spec is not None and Path(str(spec.origin)).parent == tmp_path  # the namesake wins
    dirs = module_dirs("pynvml", "envguard_only_here", "pytest_envguard")
    assert str(tmp_path) not in dirs
    assert Path(dirs[0], "pynvml").is_dir() or Path(dirs[0], "pynvml.py").is_file()
    assert Path(dirs[-1], "pytest_envguard", "__init__.py").is_file()


STDOUT_LIES = {
    # The pre-redesign import child's report line, then a plain JSON answer.
    "old-report-line-then-raise": (
        "import sys\nprint('@@envguard-import@@ ' + '{\"ok\": true, \"file\": null, \"version\": \"1\"}')\n"
        "print('{\"ok\": true}')\nsys.stdout.flush()\nraise ImportError('really broken')\n"),
    "old-report-line-then-exit": (
        "import os, sys\nprint('@@envguard-import@@ ' + '{\"ok\": true, \"file\": null, \"version\": \"1\"}')\n"
        "sys.stdout.flush()\nos._exit(0)\n"),
    "json-on-stderr-then-raise": (
        "import sys\nsys.stderr.write('{\"ok\": true}\\n')\nraise ImportError('really broken')\n"),
}


@pytest.mark.parametrize("lie", sorted(STDOUT_LIES))
def test_a_module_printing_an_answer_cannot_fool_the_import_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lie: str, bad_inputs: Tried) -> None:
    (tmp_path / "liar_module.py").write_text(STDOUT_LIES[lie], encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    bad_inputs(1)
    env = Environment(environ=dict(os.environ), settings=Settings(import_timeout=30))
    [verdict] = evaluate(parse_lines(["import liar_module"]), env)
    assert verdict.status is Status.UNMET, verdict
    expected = "exited with status 0" if lie.endswith("exit") else "really broken"
    assert expected in verdict.reason, verdict


def test_a_project_traceback_py_does_not_replace_the_import_childs_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad_inputs: Tried) -> None:
    # The import child runs with the test process's sys.path, where the project comes first;
    # the modules the child itself uses must still be the standard library's.
    for name in ("traceback", "faulthandler", "importlib"):
        (tmp_path / f"{name}.py").write_text("import os\nos._exit(0)\n", encoding="utf-8")
    (tmp_path / "broken_module.py").write_text("raise ImportError('the real reason')\n",
                                               encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    bad_inputs(3)
    env = Environment(environ=dict(os.environ), settings=Settings(import_timeout=30))
    [verdict] = evaluate(parse_lines(["import broken_module"]), env)
    assert verdict.status is Status.UNMET and "the real reason" in verdict.reason, verdict


def test_the_child_runs_isolated_in_a_neutral_directory(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    environ = {"PATH": os.defpath, "PYTHONPATH": str(tmp_path), "PYTHONSTARTUP": "/nowhere"}
    result = run_python("import os, sys\nanswer([os.getcwd(), sys.flags.isolated, "
                        "sys.stdin.read(), os.getpgrp() == os.getpid(), os.getsid(0) == os.getpid(),"
                        f" {str(tmp_path)!r} in sys.path])", environ=environ, timeout=30)
    assert result.failure is None, result
    assert result.answer == ["/", 1, "", True, True, False]


# -- children die with the run (point 4) -----------------------------------------------------

HANGS_AT_IMPORT = "import time\ntime.sleep(600)\n"


#: pytest, exec'd with SIGINT and SIGQUIT at their defaults, as a terminal's foreground
#: job has them: a shell without job control starts background commands with both ignored
#: (``cmd &`` in a script, nohup), children inherit that, and Python then installs no
#: KeyboardInterrupt handler, so Ctrl-C would do nothing.
AS_A_FOREGROUND_JOB = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "signal.signal(signal.SIGQUIT, signal.SIG_DFL)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'pytest', *sys.argv[1:]])\n"
)


def start_pytest(project: Path, environ: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """pytest in a session of its own, with the signals of a terminal's foreground job."""
    return subprocess.Popen(
        [sys.executable, "-c", AS_A_FOREGROUND_JOB, "-p", "no:randomly", "-p", "no:cacheprovider",
         "-p", "no:xdist", *args], cwd=project, env=environ, start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def a_python_child(pytest_pid: int) -> bool:
    return any(b"-I" in _cmdline(pid) for pid in descendants(pytest_pid))


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("hang", ["nvml", "import"])
def test_a_hung_child_dies_with_pytest(fake_nvml: FakeNvml, tmp_path: Path, hang: str,
                                       how: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_x.py").write_text("def test_x():\n    pass\n", encoding="utf-8")
    (project / "hangs_at_import.py").write_text(HANGS_AT_IMPORT, encoding="utf-8")
    environ = {**fake_nvml.environ(hang="init"), "PYTHONPATH": str(project)}
    line = "gpus >=1" if hang == "nvml" else "import hangs_at_import"
    process = start_pytest(project, environ, "--envguard-require", line,
                           "-o", "envguard_gpu_timeout=300", "-o", "envguard_import_timeout=300")
    with reaped(process):
        if hang == "nvml":  # nvmlInit was entered: the fake logs it before it hangs
            wait_for(lambda: fake_nvml.inits() == 1, 60, "nvmlInit")
        else:
            wait_for(lambda: a_python_child(process.pid), 60, "the import child")
        time.sleep(1.0)
        family = descendants(process.pid)
        groups = {process.pid} | {info[2] for pid in family if (info := _stat(pid)) is not None}
        assert family and len(groups) == 2, (family, groups)  # the child has a group of its own
        # Ctrl-C reaches the terminal's whole foreground job; a CI runner's cancel, timeout(1)
        # or the OOM killer signal the pytest process alone.
        send = os.killpg if how == "SIGINT" else os.kill
        send(process.pid, getattr(signal, how))
        process.wait(timeout=30)
        deadline = time.monotonic() + 5
        while living(family, groups) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not living(family, groups)
        if how == "SIGINT":
            output = process.stdout.read().decode() if process.stdout else ""
            assert "KeyboardInterrupt" in output and "INTERNALERROR" not in output, output


HELPER_AT_IMPORT = """
import os, subprocess, sys
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(os.environ["ENVGUARD_TEST_PIDFILE"], "w") as file:
    file.write(str(helper.pid))
"""


def test_a_helper_started_at_import_is_timed_right_and_does_not_outlive_the_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "starts_a_helper.py").write_text(HELPER_AT_IMPORT, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    pidfile = tmp_path / "helper.pid"
    env = Environment(environ={**os.environ, "ENVGUARD_TEST_PIDFILE": str(pidfile)},
                      settings=Settings(import_timeout=60))
    started = time.monotonic()
    try:
        [verdict] = evaluate(parse_lines(["import starts_a_helper"]), env)
        elapsed = time.monotonic() - started
        helper = int(pidfile.read_text())
        assert verdict.status is Status.MET, verdict  # not a timeout: its helper holds stderr open
        assert elapsed < 20, elapsed
        facts = env.module_import("starts_a_helper")
        assert facts.failure is None and facts.elapsed < 20
        wait_for(lambda: living({helper}, set()) == [], 5, "the helper's end")
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_a_program_is_killed_at_its_time_limit_with_its_group(tmp_path: Path) -> None:
    script = tmp_path / "forks.sh"
    script.write_text("#!/bin/sh\nsleep 600 &\necho $! > \"$1\"\nsleep 600\n", encoding="utf-8")
    script.chmod(0o755)
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    result = run_program([str(script), str(pidfile)], environ={"PATH": os.defpath}, timeout=1.0)
    assert result.failure is Failure.TIMEOUT and time.monotonic() - started < 10
    wait_for(lambda: living({int(pidfile.read_text())}, set()) == [], 5, "the grandchild's end")


def test_the_answer_is_bounded_and_must_be_json() -> None:
    environ = {"PATH": os.defpath}
    code = "import os\nos.write(_setup['fd'], ARGS[0].encode() * ARGS[1])\nos._exit(0)"
    assert run_python(code, ["[", 1], environ=environ, timeout=30).failure is Failure.CORRUPT
    too_large = run_python(code, ["x", (4 << 20) + 1], environ=environ, timeout=30)
    assert too_large.failure is Failure.CORRUPT and "too large" in str(too_large.reason)
