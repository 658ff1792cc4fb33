"""probes/_diskcache.py and the two caches built on it (NVML's answer, ELF facts).

A cache may only ever cost a fresh probe, never turn a verdict green: an
answer is reused only while nothing that changes it has changed (the
library NVML would load, the driver, the GPUs the kernel lists, the device
nodes, the cgroup, the boot, the time-to-live), and only from a file that
this user wrote and nobody else could have. Under pytest-xdist the
processes share the cache: one asks NVML while the others wait, and ELF
facts saved at once by several processes are merged, not lost.

Every forged-cache test first shows that the same forged content *is*
believed when written as the plugin writes its own cache — so the test can
fail — and then that each forgery is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_envguard import __version__
from pytest_envguard.checks import evaluate
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.grammar import parse_lines
from pytest_envguard.probes import Failure, elf, nvml
from pytest_envguard.probes._diskcache import SCHEMA, DiskCache
from pytest_envguard.probes.distributions import scan_distributions
from pytest_envguard.verdicts import Status
from tests.fixtures_native import NativeBuild, _write_dist
from tests.fixtures_nvml import H100, FakeNvml, clean_environ

Tried = Callable[[int], None]
NOBODY = 65534


def gpu_statuses(environ: dict[str, str], cache: Path) -> list[Status]:
    env = Environment(environ=environ, settings=Settings(cache_dir=cache))
    return [verdict.status for verdict in evaluate(parse_lines(["gpus >=1", "cuda >=12"]), env)]


# -- the NVML answer: keyed on everything that changes it (issue 12, point 1) ------------------


@pytest.fixture
def own_driver(fake_nvml: FakeNvml, tmp_path: Path) -> Path:
    """A directory of its own holding a copy of the fake ``libnvidia-ml.so.1``."""
    directory = tmp_path / "driver"
    directory.mkdir()
    shutil.copy(fake_nvml.directory / "libnvidia-ml.so.1", directory / "libnvidia-ml.so.1")
    return directory


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` as a driver upgrade does: a new file renamed over the old one."""
    new = path.with_name(path.name + ".new")
    new.write_bytes(data)
    os.replace(new, path)


def test_a_replaced_nvml_library_is_asked_again(fake_nvml: FakeNvml, own_driver: Path,
                                                tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    environ = {**fake_nvml.environ(H100), "LD_LIBRARY_PATH": str(own_driver)}
    library = own_driver / "libnvidia-ml.so.1"
    assert nvml.probe_nvidia(environ, cache_dir=cache).source == "NVML"
    assert nvml.probe_nvidia(environ, cache_dir=cache).source.startswith("cache (")
    assert fake_nvml.inits() == 1
    # The same bytes as a new file (new inode and mtime), as a driver reinstall leaves it.
    replace_file(library, library.read_bytes())
    assert nvml.probe_nvidia(environ, cache_dir=cache).source == "NVML"
    assert fake_nvml.inits() == 2
    # A user-space library replaced by one that cannot load (the mismatch that NVML
    # reports as error 18 after an upgrade): the cached answer must not stand in for it.
    replace_file(library, b"not a shared object\n")
    facts = nvml.probe_nvidia(environ, cache_dir=cache)
    assert facts.source == "NVML" and facts.failure is Failure.MISSING, facts
    assert gpu_statuses(environ, cache) == [Status.UNKNOWN, Status.UNKNOWN]


def _rewrite_written(cache: Path, written: float) -> None:
    path = cache / nvml.CACHE_FILE
    document = json.loads(path.read_text(encoding="utf-8"))
    document["written"] = written
    path.write_text(json.dumps(document), encoding="utf-8")


@pytest.mark.parametrize("age", [nvml.CACHE_TTL + 1, -60.0], ids=["expired", "from-the-future"])
def test_an_answer_past_its_time_to_live_is_asked_again(fake_nvml: FakeNvml, tmp_path: Path,
                                                        age: float) -> None:
    cache = tmp_path / "cache"
    environ = fake_nvml.environ(H100)
    nvml.probe_nvidia(environ, cache_dir=cache)
    _rewrite_written(cache, time.time() - nvml.CACHE_TTL + 60)  # still fresh: the control
    assert nvml.probe_nvidia(environ, cache_dir=cache).source.startswith("cache (")
    _rewrite_written(cache, time.time() - age)
    assert nvml.probe_nvidia(environ, cache_dir=cache).source == "NVML"
    assert fake_nvml.inits() == 2


#: What the kernel shows of the driver and the GPUs, pointed at files a test changes:
#: (the constant of probes/nvml.py, what it is, how the test changes it).
KERNEL_VIEWS: dict[str, tuple[str, str]] = {
    "driver-version": ("DRIVER_VERSION_FILE", "file"),
    "gpu-listed-by-the-kernel": ("DRIVER_GPUS_DIR", "directory"),
    "device-node": ("DEVICE_DIR", "directory"),
    "cgroup": ("SELF_CGROUP", "file"),
    "boot": ("BOOT_ID", "file"),
}


@pytest.mark.parametrize("view", sorted(KERNEL_VIEWS))
def test_a_change_the_kernel_shows_is_asked_again(fake_nvml: FakeNvml, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  view: str) -> None:
    constant, kind = KERNEL_VIEWS[view]
    target = tmp_path / view
    if kind == "file":
        target.write_text("NVRM version: 550.54.15\nboot-1\n0::/job/1\n", encoding="utf-8")
    else:
        target.mkdir()
        (target / ("0000:17:00.0" if view.startswith("gpu") else "nvidia0")).touch()
    monkeypatch.setattr(nvml, constant, str(target))
    cache = tmp_path / "cache"
    environ = fake_nvml.environ(H100)
    nvml.probe_nvidia(environ, cache_dir=cache)
    assert nvml.probe_nvidia(environ, cache_dir=cache).source.startswith("cache (")
    if kind == "file":
        target.write_text("NVRM version: 560.28.03\nboot-2\n0::/job/2\n", encoding="utf-8")
    else:  # a GPU fell off the bus, or another job's container shows another one
        (target / ("0000:17:00.0" if view.startswith("gpu") else "nvidia0")).unlink()
        (target / ("0000:65:00.0" if view.startswith("gpu") else "nvidia1")).touch()
    assert nvml.probe_nvidia(environ, cache_dir=cache).source == "NVML"
    assert fake_nvml.inits() == 2


def test_the_key_holds_the_user_and_the_process_environment(fake_nvml: FakeNvml) -> None:
    environ = fake_nvml.environ(H100)
    key = nvml.cache_key(environ)
    assert key is not None and key == nvml.cache_key(dict(environ))
    for name, value in (("NVIDIA_VISIBLE_DEVICES", "1"), ("LD_LIBRARY_PATH", "/nowhere")):
        assert nvml.cache_key({**environ, name: value}) != key, name
    # CUDA_VISIBLE_DEVICES is applied to the answer (one answer serves every worker).
    assert nvml.cache_key({**environ, "CUDA_VISIBLE_DEVICES": "1"}) == key
    code = ("import json, os, sys\nfrom pytest_envguard.probes import nvml\n"
            "environ = json.loads(sys.argv[1])\nkey = nvml.cache_key(environ)\n"
            "os.setresuid(65534, 65534, 0)\nprint(json.dumps([key, nvml.cache_key(environ)]))\n")
    if os.geteuid() != 0:
        return  # only root can become another user
    result = subprocess.run([sys.executable, "-c", code, json.dumps(environ)], capture_output=True,
                            text=True, timeout=60, check=True)
    as_root, as_nobody = json.loads(result.stdout)
    assert as_root == key and as_nobody != key


# -- forged cache files (point 2) ---------------------------------------------------------------

#: Four H100s, as query_nvml() would answer.
FOUR_GPUS = {"driver": "550.54.15", "cuda": 12040, "notes": [],
             "devices": [{"index": index, "name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{index}",
                          "memory_total": 85899345920, "memory_free": 85899345920,
                          "capability": "9.0", "mode": 0, "mig": False, "migs": []}
                         for index in range(4)]}


def forge(path: Path, entries: dict[str, Any], **document: Any) -> None:
    """A cache file with ``entries``, as the plugin writes one (mode 0600, this user,
    this schema and plugin version), with ``document``'s keys changed."""
    content = {"schema": SCHEMA, "plugin": __version__, "written": time.time(),
               "entries": entries, **document}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({key: value for key, value in content.items()
                                if value is not None}), encoding="utf-8")
    path.chmod(0o600)


def _another_owner(path: Path) -> None:
    os.chown(path, NOBODY, NOBODY)


def _group_writable(path: Path) -> None:
    path.chmod(0o660)


def _world_writable(path: Path) -> None:
    path.chmod(0o666)


def _a_symlink(path: Path) -> None:
    elsewhere = path.with_name("elsewhere.json")
    path.rename(elsewhere)
    path.symlink_to(elsewhere)


def _too_large(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    document["padding"] = "x" * (64 << 20)
    path.write_text(json.dumps(document), encoding="utf-8")


def _without_plugin_version(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    del document["plugin"]
    path.write_text(json.dumps(document), encoding="utf-8")


def _another_plugin_version(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    document["plugin"] = "0.0.1"
    path.write_text(json.dumps(document), encoding="utf-8")


def _another_schema(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    document["schema"] = SCHEMA + 1
    path.write_text(json.dumps(document), encoding="utf-8")


def _a_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


FORGERIES: dict[str, Callable[[Path], None]] = {
    "another-owner": _another_owner,
    "group-writable": _group_writable,
    "world-writable": _world_writable,
    "symlink": _a_symlink,
    "too-large": _too_large,
    "no-plugin-version": _without_plugin_version,
    "another-plugin-version": _another_plugin_version,
    "another-schema": _another_schema,
    "fifo": _a_fifo,
}


def needs_root(forgery: str) -> None:
    if "owner" in forgery and os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")


# The verdicts of the forged machine, judged in a child: a FIFO opened by mistake would
# block, and the child's time limit turns that into a failure instead of a hung suite.
_JUDGE = """
import json, sys
from pathlib import Path
from pytest_envguard.checks import evaluate
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.grammar import parse_lines
environ, cache, lines = json.loads(sys.argv[1])
env = Environment(environ=environ, settings=Settings(cache_dir=Path(cache)))
print(json.dumps([[v.status.value, v.reason] for v in evaluate(parse_lines(lines), env)]))
"""


def judge_in_child(environ: dict[str, str], cache: Path, lines: list[str],
                   extra_env: dict[str, str] | None = None) -> list[list[str]]:
    result = subprocess.run([sys.executable, "-c", _JUDGE, json.dumps([environ, str(cache), lines])],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, **(extra_env or {})})
    assert result.returncode == 0, result.stderr
    verdicts: list[list[str]] = json.loads(result.stdout)
    return verdicts


def test_the_old_nvml_cache_format_is_not_read(no_nvml_dir: Path, tmp_path: Path,
                                              bad_inputs: Tried) -> None:
    """The cache as 0.1.0 before the redesign wrote it: one answer, keyed on the boot,
    the driver file, the device nodes and the loader path only."""
    environ = clean_environ(LD_LIBRARY_PATH=str(no_nvml_dir))
    cache = tmp_path / "cache"
    cache.mkdir()
    old_key = {"boot_id": Path(nvml.BOOT_ID).read_text(encoding="utf-8").strip(), "driver": "",
               "device_nodes": "", "LD_LIBRARY_PATH": str(no_nvml_dir),
               "NVIDIA_VISIBLE_DEVICES": "", "python": sys.executable}
    (cache / nvml.CACHE_FILE).write_text(json.dumps(
        {"schema": 1, "key": old_key, "answer": FOUR_GPUS, "written": time.time()}), encoding="utf-8")
    bad_inputs(1)
    verdicts = judge_in_child(environ, cache, ["gpus >=4", "cuda >=12"])
    assert [status for status, _ in verdicts] == ["unknown", "unknown"], verdicts
    assert "libnvidia-ml.so.1 not found" in verdicts[0][1]


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_nvml_cache_cannot_make_gpus_met(no_nvml_dir: Path, tmp_path: Path, forgery: str,
                                                  bad_inputs: Tried) -> None:
    needs_root(forgery)
    environ = clean_environ(LD_LIBRARY_PATH=str(no_nvml_dir))  # no NVML on this machine
    cache = tmp_path / "cache"
    key = nvml.cache_key(environ)
    assert key is not None
    forge(cache / nvml.CACHE_FILE, {key: FOUR_GPUS})
    # The control: written as the plugin writes its own cache, the answer is believed.
    assert [status for status, _ in judge_in_child(environ, cache, ["gpus >=4", "cuda >=12"])] == [
        "met", "met"]
    FORGERIES[forgery](cache / nvml.CACHE_FILE)
    bad_inputs(1)
    started = time.monotonic()
    verdicts = judge_in_child(environ, cache, ["gpus >=4", "cuda >=12"])
    assert time.monotonic() - started < 30
    assert [status for status, _ in verdicts] == ["unknown", "unknown"], verdicts
    assert "libnvidia-ml.so.1 not found" in verdicts[0][1]


@pytest.fixture
def broken_site(native_build: NativeBuild, tmp_path: Path) -> Path:
    """A distribution whose one extension module needs a library that exists nowhere."""
    site = tmp_path / "site"
    (site / "brokenpkg").mkdir(parents=True)
    module = site / "brokenpkg" / "_missing.so"
    shutil.copy(native_build.ext_missing, module)
    _write_dist(site, "brokenpkg", [module])
    return site


_JUDGE_EXTENSIONS = """
import json, sys
from pathlib import Path
from pytest_envguard.checks import evaluate
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.grammar import parse_lines
from pytest_envguard.probes.distributions import scan_distributions
site, cache, environ = json.loads(sys.argv[1])
env = Environment({"installed": scan_distributions([site])}, environ=environ,
                  settings=Settings(cache_dir=Path(cache)))
[verdict] = evaluate(parse_lines(["extensions brokenpkg"]), env)
print(json.dumps([verdict.status.value, verdict.reason]))
"""


def judge_extensions(site: Path, cache: Path) -> list[str]:
    environ = {"PATH": os.defpath}
    result = subprocess.run([sys.executable, "-c", _JUDGE_EXTENSIONS,
                             json.dumps([str(site), str(cache), environ])],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    verdict: list[str] = json.loads(result.stdout)
    return verdict


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_elf_cache_cannot_make_a_broken_module_met(native_build: NativeBuild,
                                                            broken_site: Path, tmp_path: Path,
                                                            forgery: str, bad_inputs: Tried) -> None:
    needs_root(forgery)
    module = broken_site / "brokenpkg" / "_missing.so"
    cache = tmp_path / "cache"
    assert judge_extensions(broken_site, cache)[0] == "unmet"
    (cache / elf.CACHE_FILE).unlink()
    # The facts of a module that needs only libc, claimed for the broken one.
    innocent = elf.read_elf(str(native_build.ext_plain)).to_dict()
    innocent["path"] = str(module)
    forge(cache / elf.CACHE_FILE, {str(module): [*elf.file_stamp(os.stat(module)), innocent]})
    # The control: the forged facts are believed (its symbols, read from the file itself,
    # still show what the missing library would have defined).
    status, reason = judge_extensions(broken_site, cache)
    assert "libenvguard_absent.so.1" not in reason and "undefined symbol: envguard_dep" in reason
    forge(cache / elf.CACHE_FILE, {str(module): [*elf.file_stamp(os.stat(module)), innocent]})
    FORGERIES[forgery](cache / elf.CACHE_FILE)
    bad_inputs(1)
    status, reason = judge_extensions(broken_site, cache)
    assert status == "unmet" and "libenvguard_absent.so.1" in reason, reason


@pytest.mark.parametrize("where", [elf.CACHE_FILE, elf.CACHE_FILE + ".lock"])
def test_a_fifo_in_the_elf_cache_does_not_hang_extensions(broken_site: Path, tmp_path: Path,
                                                          where: str, bad_inputs: Tried) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    os.mkfifo(cache / where)
    bad_inputs(1)
    status, reason = judge_extensions(broken_site, cache)  # within the child's time limit
    assert status == "unmet" and "libenvguard_absent.so.1" in reason, reason


def test_a_trusted_cache_is_read_without_following_anything(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, "x.json", max_bytes=1 << 20)
    assert cache.write({"a": 1})
    assert cache.read() == {"a": 1}
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o600
    assert [path.name for path in tmp_path.iterdir()] == ["x.json"]  # no temporary left


def test_the_ttl_needs_a_written_time(tmp_path: Path) -> None:
    forge(tmp_path / "x.json", {"a": 1}, written="yesterday")
    assert DiskCache(tmp_path, "x.json", max_bytes=1 << 20).read() == {"a": 1}  # no TTL asked
    assert DiskCache(tmp_path, "x.json", max_bytes=1 << 20, ttl=60).read() is None


# -- under pytest-xdist: one NVML query, ELF entries merged (point 12) ------------------------

_ASK_AT_ONCE = """
import json, os, sys, time
from pathlib import Path
from pytest_envguard.probes import nvml
environ, cache, go, timeout = json.loads(sys.argv[1])
while not os.path.exists(go):
    time.sleep(0.005)
started = time.monotonic()
facts = nvml.probe_nvidia(environ, timeout=timeout, cache_dir=Path(cache))
print(json.dumps([facts.source, facts.failure is None, len(facts.devices),
                  time.monotonic() - started]))
"""


def ask_at_once(environ: dict[str, str], cache: Path, processes: int,
                timeout: float) -> list[list[Any]]:
    """``processes`` processes call probe_nvidia at the same moment; their answers."""
    go = cache.parent / "go"
    children = [subprocess.Popen([sys.executable, "-c", _ASK_AT_ONCE,
                                  json.dumps([environ, str(cache), str(go), timeout])],
                                 stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    time.sleep(0.5)  # every child started and waiting
    go.touch()
    return [json.loads(child.communicate(timeout=60)[0]) for child in children]


def test_processes_asking_at_once_initialise_nvml_once(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    # nvmlInit takes 1.5 s here, as on a GPU without persistence mode: every process
    # arrives while the first is still asking.
    answers = ask_at_once(fake_nvml.environ(H100, init_delay_ms="1500"), tmp_path / "cache", 3, 30)
    assert fake_nvml.inits() == 1, answers
    assert sorted(source.split(" ")[0] for source, _, _, _ in answers) == ["NVML", "cache", "cache"]
    assert all(ok and count == 1 for _, ok, count, _ in answers), answers


def test_a_hung_driver_costs_each_waiting_process_at_most_twice_the_limit(
        fake_nvml: FakeNvml, tmp_path: Path) -> None:
    """A timeout is not cached (it is a failure), so each waiting process asks again in
    turn; one that waited the time limit plus 5 s for the lock asks by itself. No process
    waits longer than twice the limit plus 5 s (plus starting and killing children)."""
    answers = ask_at_once(fake_nvml.environ(H100, hang="init"), tmp_path / "cache", 4, 1)
    assert all(not ok for _, ok, _, _ in answers), answers
    assert max(elapsed for _, _, _, elapsed in answers) < 2 * 1 + 5 + 3, answers
    assert fake_nvml.inits() == 4  # every process asked: a timeout is never cached


XDIST_GPU_MODULE = """
import pytest

@pytest.mark.requires("gpus >=1")
@pytest.mark.parametrize("n", range(4))
def test_gpu(n):
    pass
"""


@pytest.mark.parametrize("controller", ["check", "skip"])
def test_a_whole_xdist_session_initialises_nvml_once(pytester: pytest.Pytester, fake_nvml: FakeNvml,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     controller: str) -> None:
    fake_nvml.setenv(monkeypatch, H100, init_delay_ms="1000")
    pytester.makepyfile(test_gpu=XDIST_GPU_MODULE)
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:randomly", "--envguard-require", "gpus >=1",
        "-o", f"envguard_xdist_controller={controller}", timeout=120)
    result.assert_outcomes(passed=4)
    assert fake_nvml.inits() == 1


_SAVE_AT_ONCE = """
import json, os, sys, time
from pathlib import Path
from pytest_envguard.probes import elf
cache, paths, go = json.loads(sys.argv[1])
facts = elf.ElfCache(Path(cache))
for path in paths:
    facts.read(path)
while not os.path.exists(go):
    time.sleep(0.001)
facts.save()
"""


def test_processes_saving_elf_facts_at_once_keep_every_entry(native_build: NativeBuild,
                                                             tmp_path: Path) -> None:
    libraries = tmp_path / "libraries"
    libraries.mkdir()
    sets = []
    for worker in range(4):
        paths = []
        for index in range(15):
            path = libraries / f"lib{worker}_{index}.so"
            shutil.copy(native_build.ext_plain, path)
            paths.append(str(path))
        sets.append(paths)
    go = tmp_path / "go"
    cache = tmp_path / "cache"
    children = [subprocess.Popen([sys.executable, "-c", _SAVE_AT_ONCE,
                                  json.dumps([str(cache), paths, str(go)])]) for paths in sets]
    time.sleep(1.0)  # every child has read its files and waits to save
    go.touch()
    assert [child.wait(timeout=60) for child in children] == [0, 0, 0, 0]
    merged = elf.ElfCache(cache)
    for paths in sets:
        for path in paths:
            merged.read(path)
    assert (merged.hits, merged.misses) == (60, 0)


def test_extensions_facts_survive_a_session_through_the_cache(broken_site: Path,
                                                              tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = Environment({"installed": scan_distributions([str(broken_site)])},
                      environ={"PATH": os.defpath}, settings=Settings(cache_dir=cache))
    [first] = evaluate(parse_lines(["extensions brokenpkg"]), env)
    document = json.loads((cache / elf.CACHE_FILE).read_text(encoding="utf-8"))
    assert str(broken_site / "brokenpkg" / "_missing.so") in document["entries"]
    assert judge_extensions(broken_site, cache) == [first.status.value, first.reason]

