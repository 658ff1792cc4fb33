"""Fault injection: every probe, with the OS failing under it, still yields a
verdict — within its time limit, and without raising.

Permission errors are real ones: the probe runs in a child interpreter for
which file modes hold (root drops its capabilities first, see
``tests/fixtures_reliability.py``). Vanished files are really deleted, while
a probe runs. /proc- and /sys-like files are given through the probes' path
parameters.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_envguard.checks import evaluate
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.grammar import parse_lines
from pytest_envguard.probes import cpuinfo, distributions, locks, system
from pytest_envguard.verdicts import Status
from tests.fixtures_reliability import make_unreadable, restore, run_unprivileged

# -- permission errors --------------------------------------------------------------------------

PERMISSION_PROBES = """
import json, os, sys
from pytest_envguard.probes import cpuinfo, distributions, elf, isolation, locks, system
root = sys.argv[1] if len(sys.argv) > 1 else {root!r}
out = {{}}
out["cpu"] = cpuinfo.probe_cpu(os.path.join(root, "cpuinfo")).reason
cgroup, no_self = os.path.join(root, "cgroup"), os.path.join(root, "no-self-cgroup")
out["cpus"] = system.probe_cpus(cgroup, no_self).source
memory = system.probe_memory(os.path.join(root, "meminfo"), cgroup, no_self)
out["memory"] = [memory.total is not None, memory.source, memory.reason]
out["lock"] = locks.read_lock(os.path.join(root, "requirements.txt")).reason
out["lock-include"] = locks.read_lock(os.path.join(root, "including.txt")).reason
out["uv"] = locks.read_lock(os.path.join(root, "locked", "uv.lock")).reason
facts = distributions.scan_distributions([os.path.join(root, "site"), os.path.join(root, "closed-site")])
out["dists"] = {{d.name: [d.version, d.reason, d.installer, d.wheel_tags] for d in facts.distributions}}
out["interp"] = elf.read_interpreter(os.path.join(root, "cpuinfo"))
isolation = isolation.probe_isolation({{"LD_LIBRARY_PATH": os.path.join(root, "closed-site", "lib")}})
out["isolation"] = [leak.variable for leak in isolation.leaks]
out["elf"] = elf.read_elf(os.path.join(root, "cpuinfo")).reason
from pathlib import Path
from pytest_envguard.checks import evaluate
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.grammar import parse_lines
env = Environment({{"cpu": cpuinfo.probe_cpu(os.path.join(root, "cpuinfo")), "installed": facts}},
                  settings=Settings(rootdir=Path(root)))
lines = ["cpu avx2", "cpus >=1", "consistent", "wheels", "lock requirements.txt", "lock locked/uv.lock"]
out["verdicts"] = [[v.status.value, v.reason] for v in evaluate(parse_lines(lines), env)]
try:
    open(os.path.join(root, "cpuinfo"))
    out["enforced"] = False
except PermissionError:
    out["enforced"] = True
print(json.dumps(out))
"""


@pytest.fixture
def closed_tree(tmp_path: Path) -> Iterator[Path]:
    """Files and directories every probe reads, with the permissions taken away."""
    (tmp_path / "cpuinfo").write_text("flags : avx2 sse2\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cpu.max").write_text("200000 100000\n")
    (cgroup / "memory.max").write_text("1073741824\n")
    (tmp_path / "meminfo").write_text("MemTotal: 1024 kB\nMemAvailable: 512 kB\n")
    (tmp_path / "requirements.txt").write_text("numpy==1.26.4\n")
    (tmp_path / "included.txt").write_text("numpy==1.26.4\n")
    (tmp_path / "including.txt").write_text("-r included.txt\n")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "uv.lock").write_text("version = 1\n")
    site = tmp_path / "site"
    for name, closed in (("meta", "METADATA"), ("wheel", "WHEEL"), ("installer", "INSTALLER")):
        directory = site / f"{name}-1.0.dist-info"
        directory.mkdir(parents=True)
        (directory / "METADATA").write_text(f"Name: {name}\nVersion: 1.0\n")
        (directory / "WHEEL").write_text("Tag: py3-none-any\n")
        (directory / "INSTALLER").write_text("pip\n")
        make_unreadable(directory / closed)
    closed_dir = site / "closed-1.0.dist-info"
    closed_dir.mkdir()
    (closed_dir / "METADATA").write_text("Name: closed\nVersion: 1.0\n")
    closed_site = tmp_path / "closed-site"
    (closed_site / "lib").mkdir(parents=True)
    (closed_site / "pyvenv.cfg").write_text("home = /usr\n")
    for path in (tmp_path / "cpuinfo", cgroup / "cpu.max", cgroup / "memory.max", tmp_path / "meminfo",
                 tmp_path / "requirements.txt", tmp_path / "included.txt", tmp_path / "locked",
                 closed_dir, closed_site):
        make_unreadable(path)
    yield tmp_path
    restore(*[path for path in tmp_path.rglob("*") if not path.is_symlink()])


def test_permission_errors_under_every_probe(closed_tree: Path) -> None:
    result = run_unprivileged(PERMISSION_PROBES.format(root=str(closed_tree)))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["enforced"] is True  # the child really is refused
    assert "PermissionError" in out["cpu"]
    assert out["cpus"] == "CPU affinity"  # the cgroup quota refused: affinity answers
    assert out["memory"][0] is True and out["memory"][1] == "psutil"  # meminfo refused: psutil
    assert "PermissionError" in out["lock"]
    assert "PermissionError" in out["lock-include"]
    assert "PermissionError" in out["uv"]
    assert "PermissionError" in out["dists"]["meta"][1]
    assert out["dists"]["wheel"][:2] == ["1.0", None] and out["dists"]["wheel"][3] is None
    assert out["dists"]["installer"][2] is None
    assert "PermissionError" in out["dists"]["closed"][1]
    assert out["interp"] is None
    assert "PermissionError" in out["elf"]
    statuses = [status for status, _ in out["verdicts"]]
    assert statuses[0] == "unknown" and "PermissionError" in out["verdicts"][0][1]
    assert statuses[1] == "met"
    assert statuses[4] == statuses[5] == "unknown"
    assert all("probe failed" not in reason for _, reason in out["verdicts"])


# -- vanished files ---------------------------------------------------------------------------


def _churn(site: Path, stop: threading.Event) -> None:
    """Create and delete dist-info folders and lock files as fast as possible."""
    index = 0
    while not stop.is_set():
        directory = site / f"churn{index % 7}-1.0.dist-info"
        try:
            directory.mkdir()
            (directory / "METADATA").write_text(f"Name: churn{index % 7}\nVersion: 1\n")
            (directory / "WHEEL").write_text("Tag: py3-none-any\n")
            (site / "requirements.txt").write_text("churn0==1\n")
            shutil.rmtree(directory)
            (site / "requirements.txt").unlink()
        except OSError:
            pass
        index += 1


def test_files_vanishing_while_probes_read_them(tmp_path: Path) -> None:
    """Files created, replaced and deleted as fast as possible while the probes read
    them: no probe fails, and a lock read fails only because the file is gone. (A file
    replaced between its check and its open is read anew: the interleaving this churn
    hits about once in 8,000 reads under load is made deterministic in
    tests/test_io.py::test_a_file_replaced_while_it_is_opened_is_read_anew.)"""
    site = tmp_path / "site"
    site.mkdir()
    stop = threading.Event()
    churner = threading.Thread(target=_churn, args=(site, stop), daemon=True)
    churner.start()
    errors: list[str] = []
    try:
        for _ in range(300):
            facts = distributions.scan_distributions([str(site)])
            lock = locks.read_lock(str(site / "requirements.txt"))
            if lock.reason and not ("no such file" in lock.reason or "FileNotFound" in lock.reason):
                errors.append(lock.reason)
            env = Environment({"installed": facts}, environ={}, settings=Settings(rootdir=site))
            for verdict in evaluate(parse_lines(["consistent", "wheels", "lock requirements.txt"]), env):
                if "probe failed" in verdict.reason:
                    errors.append(verdict.reason)
    finally:
        stop.set()
        churner.join()
    assert not errors, errors[:5]


def test_vanished_working_directory(tmp_path: Path) -> None:
    """The process's cwd deleted under it: relative paths cannot be resolved."""
    code = """
import json, os
os.chdir({cwd!r})
os.rmdir({cwd!r})
from pytest_envguard.checks import evaluate
from pytest_envguard.environment import Environment
from pytest_envguard.grammar import parse_lines
from pytest_envguard import render
env = Environment()
verdicts = evaluate(parse_lines(["python", "consistent", "wheels", "lock requirements.txt",
                                 "isolated", "command ls", "cpus >=1", "memory >=1"]), env)
env.probe_cheap()
render.environment_lines(env)
print(json.dumps([[v.status.value, v.reason] for v in verdicts]))
""".format(cwd=str(tmp_path / "gone"))
    (tmp_path / "gone").mkdir()
    # -P (3.11+): no '' on sys.path. CPython 3.13.0 itself fails any AttributeError on a
    # module with SystemError when '' is there and the cwd is gone (``import socket`` does).
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    result = subprocess.run([sys.executable, *safe_path, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    verdicts = json.loads(result.stdout)
    assert verdicts[0][0] == "met"
    assert verdicts[3][0] == "unknown"
    assert len(verdicts) == 8


# -- /proc- and /sys-like files with unexpected contents ------------------------------------

CPUINFO = {
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "no-flags": b"processor : 0\nmodel name : X\n",
    "colons": b":::\n::\nflags\nflags:\n",
    "huge": b"processor : 0\n" * 200000 + b"flags : avx2\n",
    "non-utf8": b"model name : \xff\xfe\nflags : avx2 \xff\n",
    "arm": b"Processor : ARMv7\nFeatures : neon vfp\n",
}
CPU_MAX = {"max": b"max 100000\n", "zero": b"0 100000\n", "negative": b"-1 100000\n", "div0": b"1 0\n",
           "garbage": b"abc def\n", "float": b"1.5 2\n", "one-field": b"100000\n",
           "huge": b"99999999999999999999999 1\n", "non-ascii": b"\xff\xfe\n", "empty": b""}
MEMORY_MAX = {"max": b"max\n", "negative": b"-1\n", "zero": b"0\n", "huge": b"9" * 40 + b"\n",
              "garbage": b"lots\n", "non-ascii": b"\xff\n", "empty": b""}


@pytest.mark.parametrize("name", sorted(CPUINFO))
def test_cpuinfo_contents(tmp_path: Path, name: str) -> None:
    (tmp_path / "cpuinfo").write_bytes(CPUINFO[name])
    facts = cpuinfo.probe_cpu(str(tmp_path / "cpuinfo"))
    [cpu] = evaluate(parse_lines(["cpu avx2"]), Environment({"cpu": facts}))
    expected = {"huge": Status.MET, "non-utf8": Status.MET, "arm": Status.UNMET}
    assert cpu.status is expected.get(name, Status.UNKNOWN), cpu


@pytest.mark.parametrize("name", sorted(CPU_MAX))
def test_cgroup_cpu_max_contents(tmp_path: Path, name: str) -> None:
    (tmp_path / "cpu.max").write_bytes(CPU_MAX[name])
    facts = system.probe_cpus(str(tmp_path), str(tmp_path / "no-self-cgroup"))
    assert facts.usable is not None and facts.usable >= 1
    [verdict] = evaluate(parse_lines(["cpus >=1"]), Environment({"cpus": facts}))
    assert verdict.status is Status.MET


@pytest.mark.parametrize("name", sorted(MEMORY_MAX))
def test_cgroup_memory_max_contents(tmp_path: Path, name: str) -> None:
    (tmp_path / "memory.max").write_bytes(MEMORY_MAX[name])
    (tmp_path / "memory.current").write_bytes(MEMORY_MAX[name])
    facts = system.probe_memory(cgroup_root=str(tmp_path), self_cgroup=str(tmp_path / "no-self"))
    verdicts = evaluate(parse_lines(["memory >=0", "memory-available >=0"]), Environment({"memory": facts}))
    assert [verdict.status for verdict in verdicts] == [Status.MET, Status.MET]


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "loop", "missing"])
def test_proc_files_of_the_wrong_kind(tmp_path: Path, kind: str) -> None:
    """A FIFO would block a plain open() until a writer came: run in a child with a limit."""
    for name in ("cpuinfo", "cpu.max", "memory.max", "meminfo"):
        path = tmp_path / name
        if kind == "directory":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "device":
            path.symlink_to("/dev/zero")
        elif kind == "loop":
            path.symlink_to(path)
    no_self = str(tmp_path / "no-self-cgroup")
    code = (f"from pytest_envguard.probes import cpuinfo, system\n"
            f"cpu = cpuinfo.probe_cpu({str(tmp_path / 'cpuinfo')!r})\n"
            f"cpus = system.probe_cpus({str(tmp_path)!r}, {no_self!r})\n"
            f"memory = system.probe_memory({str(tmp_path / 'meminfo')!r}, {str(tmp_path)!r}, "
            f"{no_self!r})\n"
            "print(cpu.reason); print(cpus.source); print(memory.source)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    reason, usable_source, memory_source = result.stdout.splitlines()
    assert str(tmp_path / "cpuinfo") in reason
    assert not usable_source.startswith("cgroup cpu.max quota")
    assert memory_source == "psutil"  # no /proc/meminfo to read: psutil answers, in a child


# -- an `import` check whose module hangs, crashes or misbehaves ----------------------------

MODULES = {
    "hangs_forever": "import time\ntime.sleep(600)\n",
    "hangs_with_a_child": (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "open(os.environ['ENVGUARD_TEST_PIDFILE'], 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"),
    "segfaults": "import ctypes\nctypes.string_at(0)\n",
    "exits": "import sys\nsys.exit(3)\n",
    "kills_itself": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "floods_stdout": "import sys\nsys.stdout.write('x' * (8 << 20))\nsys.stdout.flush()\nraise ImportError('after the flood')\n",
    "closes_stdout": "import os\nos.close(1)\nos.close(2)\n",
    "binary_error": "raise ImportError(b'\\xff\\xfe'.decode('latin-1') + '\\udcff'.encode('utf-8', 'surrogatepass').decode('latin-1'))\n",
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_import_check_of_a_misbehaving_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              module: str) -> None:
    import time

    (tmp_path / f"{module}.py").write_text(MODULES[module], encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    pidfile = tmp_path / "child.pid"
    environ = {**os.environ, "ENVGUARD_TEST_PIDFILE": str(pidfile)}
    env = Environment(environ=environ, settings=Settings(import_timeout=3.0))
    started = time.monotonic()
    try:
        [verdict] = evaluate(parse_lines([f"import {module}"]), env)
    finally:
        if pidfile.exists():  # the grandchild outlives its killed parent: end it here
            with_pid = int(pidfile.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(with_pid, signal.SIGKILL)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0 + 10, elapsed  # the time limit, plus the interpreter's start-up
    assert "probe failed" not in verdict.reason
    if module.startswith("hangs"):
        assert verdict.status is Status.UNKNOWN and "3" in verdict.reason
    elif module in ("segfaults", "kills_itself"):
        assert verdict.status is Status.UNMET and "crashed" in verdict.found
    elif module == "closes_stdout":
        # The import does succeed: the child's answer travels on a pipe of its own, which
        # closing stdout and stderr does not touch.
        assert verdict.status is Status.MET, verdict
    else:
        assert verdict.status in (Status.UNMET, Status.UNKNOWN), verdict


# -- NVML failing: every documented error code, unsupported calls, a wedged driver -------------

GPU_LINES = ["cuda >=11", "driver >=400", "gpus >=1", "gpu-memory >=1GiB", "compute-capability >=7.0",
             "gpu '*H100*'"]


def nvml_error_codes() -> list[int]:
    """Every nvmlReturn_t error pynvml documents (nvml.h), plus one no header names."""
    import pynvml

    codes = {value for name, value in vars(pynvml).items()
             if name.startswith("NVML_ERROR_") and isinstance(value, int)}
    return [*sorted(codes), 12345]


def fake_nvml_functions() -> list[str]:
    import re as regex

    source = (Path(__file__).parent / "fake_nvml" / "fake_nvml.c").read_text(encoding="utf-8")
    names = set(regex.findall(r"^\w[\w \*]*?\b(nvml\w+)\(", source, flags=regex.MULTILINE))
    return sorted(names - {"nvmlErrorString", "nvmlShutdown"})


def judge_gpu_lines(environ: dict[str, str], timeout: float = 5.0) -> tuple[list[Any], float]:
    import time

    env = Environment(environ=environ, settings=Settings(gpu_timeout=timeout))
    started = time.monotonic()
    verdicts = evaluate(parse_lines(GPU_LINES), env)
    elapsed = time.monotonic() - started
    for verdict in verdicts:
        assert verdict.status in set(Status), verdict
        assert verdict.reason.strip() and "probe failed" not in verdict.reason, verdict
    return verdicts, elapsed


@pytest.mark.parametrize("code", nvml_error_codes())
def test_nvml_init_fails_with_every_error_code(fake_nvml: Any, code: int) -> None:
    verdicts, _ = judge_gpu_lines(fake_nvml.environ(init_error=str(code)))
    assert all(verdict.status in (Status.UNKNOWN, Status.UNMET) for verdict in verdicts), verdicts
    assert any(verdict.status is Status.UNKNOWN for verdict in verdicts)


@pytest.mark.parametrize("function", fake_nvml_functions())
def test_nvml_function_not_supported(fake_nvml: Any, function: str) -> None:
    verdicts, _ = judge_gpu_lines(fake_nvml.environ(unsupported=function))
    assert len(verdicts) == len(GPU_LINES)


@pytest.mark.parametrize("where", ["init", "devices"])
def test_nvml_hangs_and_the_verdict_comes_within_the_time_limit(fake_nvml: Any, where: str) -> None:
    verdicts, elapsed = judge_gpu_lines(fake_nvml.environ(hang=where), timeout=2.0)
    assert elapsed < 2.0 + 8, elapsed  # the limit, plus starting and killing the child
    assert all(verdict.status is Status.UNKNOWN for verdict in verdicts
               if verdict.requirement.key != "gpus"), verdicts
    assert any("2 s" in verdict.reason for verdict in verdicts), verdicts


NVML_ANSWERS = {
    "no-gpus": "",
    "empty-fields": "||||",
    "not-numbers": "X|GPU-1|lots|none|a.b|",
    "negative": "X|GPU-1|-1|-5|-1.-1|",
    "huge": "X|GPU-1|99999999999999999999|1|999999.999999|",
    "many": ";".join(f"G{index}|GPU-{index}|1024|1024|8.0|" for index in range(40)),
    "non-utf8-name": "N\udce9\udcff|GPU-1|1024|1024|8.0|",  # raw bytes 0xe9 0xff
    "long-name": "N" * 500 + "|GPU-1|1024|1024|8.0|",
    "unknown-flags": "X|GPU-1|1024|1024|8.0|mig,bogus,,noperm",
    "all-noperm": "X|GPU-1|1024|1024|8.0|noperm;Y|GPU-2|1024|1024|8.0|noperm",
    "prohibited": "X|GPU-1|1024|1024|8.0|prohibited",
    "separators": ";;;|;|",
}


@pytest.mark.parametrize("name", sorted(NVML_ANSWERS))
def test_nvml_answers_that_make_no_sense(fake_nvml: Any, name: str) -> None:
    verdicts, _ = judge_gpu_lines(fake_nvml.environ(NVML_ANSWERS[name]))
    assert len(verdicts) == len(GPU_LINES)


VISIBLE = ["", "-1", "0,0", "99", "0,99,1", "GPU-", "GPU-6f3a", "MIG-nothing", "abc", "0,,1", " 0 ",
           "\udcff", "1" * 200, "NoDevFiles", "all"]


@pytest.mark.parametrize("setting", VISIBLE, ids=range(len(VISIBLE)))
def test_cuda_visible_devices_garbage_with_a_driver(fake_nvml: Any, setting: str) -> None:
    verdicts, _ = judge_gpu_lines(fake_nvml.environ(cuda_visible_devices=setting))
    assert len(verdicts) == len(GPU_LINES)


# -- no /proc at all, and psutil failing (a minimal container, a chroot) ----------------------

NO_PROC_LINES = ["cpu avx2", "cpus >=1", "memory >=1GiB", "memory-available >=1", "gpus >=1",
                 f"python >={sys.version_info.major}", "isolated"]

# The probes' /proc paths pointed at a directory that does not exist, and psutil's import
# made to fail in the child that asks it, then the entry point named by argv[2].
_WITHOUT_PROC = """
import sys
from pytest_envguard.probes import cpuinfo, cudart, loader, nvml, system
missing, entry = sys.argv[1], sys.argv[2]
del sys.argv[1:3]
cpuinfo.probe_cpu.__defaults__ = (missing + "/cpuinfo",)
system.probe_cpus.__defaults__ = (missing + "/cgroup", missing + "/self/cgroup")
system.probe_memory.__defaults__ = (missing + "/meminfo", missing + "/cgroup", missing + "/self/cgroup")
system._PSUTIL_MEMORY = "import sys\\nsys.modules['psutil'] = None\\n" + system._PSUTIL_MEMORY
loader.loaded_objects.__defaults__ = (missing + "/self/maps",)
nvml.BOOT_ID = missing + "/boot_id"
nvml.DRIVER_VERSION_FILE = missing + "/driver/nvidia/version"
nvml.DRIVER_GPUS_DIR = missing + "/driver/nvidia/gpus"
nvml.SELF_CGROUP = missing + "/self/cgroup"
if entry == "cli":
    from pytest_envguard.__main__ import main
    sys.exit(main(sys.argv[1:]))
import pytest
sys.exit(pytest.console_main())
"""


def _namespaces_allowed() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, "-Urm", "sh", "-c", "mount -t tmpfs none /proc && ! test -e /proc/self"],
                           capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def _without_proc(how: str, entry: str, args: list[str], cwd: Path,
                  environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if how == "patched":
        command = [sys.executable, "-c", _WITHOUT_PROC, str(cwd / "no-proc"), entry, *args]
    else:  # an empty /proc in a mount namespace of its own: the real thing
        if not _namespaces_allowed():
            pytest.skip("unshare -Urm is not allowed here (user namespaces are off)")
        python = [sys.executable, "-m", "pytest_envguard" if entry == "cli" else "pytest"]
        command = ["unshare", "-Urm", "sh", "-c", 'mount -t tmpfs none /proc && exec "$0" "$@"',
                   *python, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                          cwd=cwd, env=environ)


@pytest.mark.parametrize("entry", ["cli", "report"])
@pytest.mark.parametrize("how", ["patched", "namespace"])
def test_without_proc_the_report_ends_in_unknowns_with_reasons(
        no_nvml_dir: Path, tmp_path: Path, how: str, entry: str) -> None:
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n", encoding="utf-8")
    environ = {**os.environ, "LD_LIBRARY_PATH": str(no_nvml_dir)}
    environ.pop("PYTEST_XDIST_WORKER", None)
    if entry == "cli":
        args = [*NO_PROC_LINES, "--json", "out.json"]
    else:
        args = ["-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:xdist",
                "--envguard-report", "--envguard-json", "out.json"]
        args += [part for line in NO_PROC_LINES for part in ("--envguard-require", line)]
    result = _without_proc(how, entry, args, tmp_path, environ)
    output = result.stdout + result.stderr
    for bad in ("Traceback", "INTERNALERROR", "probe failed"):
        assert bad not in output, output
    assert result.returncode == 6, output
    document = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    statuses = {verdict["line"]: (verdict["status"], verdict["reason"])
                for verdict in document["contract"]}
    assert statuses["cpu avx2"][0] == "unknown" and "cpuinfo" in statuses["cpu avx2"][1]
    assert statuses["cpus >=1"][0] == "met"  # the affinity mask needs no /proc
    for line in ("memory >=1GiB", "memory-available >=1"):
        assert statuses[line][0] == "unknown" and "meminfo" in statuses[line][1], statuses[line]
        assert "psutil" in statuses[line][1], statuses[line]
    assert statuses["gpus >=1"][0] == "unknown"
    assert statuses[NO_PROC_LINES[5]][0] == "met"
    assert "cpu avx2" in result.stdout and "??" in result.stdout  # the table shows the unknowns


# -- the environment it inspects is left as it was --------------------------------------------

ENVIRON_WITNESS = """
import json, os, pytest

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.stash[BEFORE] = dict(os.environ)

def pytest_unconfigure(config):
    before, after = config.stash[BEFORE], dict(os.environ)
    changed = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
    with open(os.environ["ENVIRON_REPORT"], "a") as report:
        report.write(json.dumps(changed) + "\\n")

BEFORE = pytest.StashKey()
"""

EVERY_KIND_OF_CHECK = """
import pytest

@pytest.mark.requires("gpus >=1", "cuda >=12", "import json", "env HOME", "isolated")
def test_marked():
    pass

def test_fixture(envguard):
    envguard.require("extensions", "consistent", "wheels", "memory >=1", "cpus >=1")
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_session_leaves_os_environ_as_it_found_it(pytester: pytest.Pytester, fake_nvml: Any,
                                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    xdist: list[str]) -> None:
    """Every kind of probe, in the contract and per test, in one process and in xdist workers
    (``envguard_xdist_gpus`` is off: the opt-in GPU split is the one thing that writes
    ``CUDA_VISIBLE_DEVICES``, on the workers, and test_cuda_visibility.py tests it)."""
    from tests.fixtures_nvml import H100

    fake_nvml.setenv(monkeypatch, H100)
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # pytest's own, removed at its end
    report = tmp_path / "environ.jsonl"
    monkeypatch.setenv("ENVIRON_REPORT", str(report))
    pytester.makeconftest(ENVIRON_WITNESS)
    pytester.makepyfile(test_every_kind=EVERY_KIND_OF_CHECK)
    result = pytester.runpytest_subprocess(
        *xdist, "-p", "no:randomly", "--envguard-require", "gpus >=1", "--envguard-require",
        "python >=3", "--envguard-require", "memory >=1", timeout=180)
    assert result.ret in (0, 1), result.stdout.str()  # the venv may be inconsistent: not the point
    changes = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert len(changes) == (3 if xdist else 1)  # the controller and each worker
    assert changes == [[]] * len(changes)
