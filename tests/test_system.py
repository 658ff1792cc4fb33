"""The interpreter and system probes, on this machine and on crafted files."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

from pytest_envguard.probes import Failure, abi, commands, cpuinfo, distributions, elf, interpreter, system


def test_python_matches_sys() -> None:
    facts = interpreter.probe_python()
    assert facts.version.startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert facts.implementation == sys.implementation.name
    assert facts.prefix == sys.prefix


def test_abi_lists_this_interpreters_tags() -> None:
    facts = abi.probe_abi()
    assert facts.abis[0].startswith(("cp", "pp"))
    assert "none" not in facts.abis


def test_platform_matches_platform_module() -> None:
    facts = system.probe_platform()
    assert (facts.platform, facts.machine) == (sys.platform, platform.machine())


def test_libc_on_this_machine_is_glibc_from_confstr() -> None:
    facts = system.probe_libc()
    assert facts.name == "glibc"
    assert facts.version == os.confstr("CS_GNU_LIBC_VERSION").split()[1]


def test_elf_interpreter_of_this_python() -> None:
    interp = elf.read_interpreter(os.path.realpath(sys.executable))
    assert interp is not None and "ld-linux" in interp


def test_elf_interpreter_of_garbage(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"\x7fELF" + b"\xff" * 10)
    assert elf.read_interpreter(str(tmp_path / "x")) is None
    assert elf.read_interpreter(str(tmp_path / "missing")) is None


def test_cpu_from_a_crafted_cpuinfo(tmp_path: Path) -> None:
    crafted = tmp_path / "cpuinfo"
    crafted.write_text("processor\t: 0\nmodel name\t: Crafted CPU\nflags\t\t: fpu sse4_2 avx2\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n")
    facts = cpuinfo.probe_cpu(str(crafted))
    assert facts.flags == ("avx2", "fpu", "sse4_2")
    assert facts.model == "Crafted CPU"


def test_cpu_arm_features(tmp_path: Path) -> None:
    crafted = tmp_path / "cpuinfo"
    crafted.write_text("processor\t: 0\nFeatures\t: fp asimd sve\nCPU part\t: 0xd0c\n")
    facts = cpuinfo.probe_cpu(str(crafted))
    assert facts.flags == ("asimd", "fp", "sve")


def test_unreadable_cpuinfo_is_a_kind_and_a_reason_not_an_exception(tmp_path: Path) -> None:
    facts = cpuinfo.probe_cpu(str(tmp_path / "absent"))
    assert (facts.flags, facts.failure) == ((), Failure.MISSING)
    assert facts.reason and "FileNotFoundError" in facts.reason
    (tmp_path / "empty").write_text("processor : 0\n")
    assert cpuinfo.probe_cpu(str(tmp_path / "empty")).failure is Failure.CORRUPT


def test_usable_cpus_agree_with_psutil() -> None:
    # Differential: psutil's affinity, on this machine (the probe itself reads none of psutil).
    psutil = pytest.importorskip("psutil")
    facts = system.probe_cpus()
    expected = len(psutil.Process().cpu_affinity())
    assert facts.usable is not None and facts.usable <= expected
    if facts.source == "CPU affinity":
        assert facts.usable == expected


def cgroup_tree(tmp_path: Path, relative: str) -> tuple[str, str]:
    """A cgroup v2 tree under ``tmp_path`` and a ``/proc/self/cgroup`` naming ``relative``."""
    root = tmp_path / "cgroup"
    (root / relative.strip("/")).mkdir(parents=True)
    self_cgroup = tmp_path / "self-cgroup"
    self_cgroup.write_text(f"0::{relative}\n")
    return str(root), str(self_cgroup)


def test_cgroup_cpu_quota_limits_usable_cpus(tmp_path: Path) -> None:
    root, self_cgroup = cgroup_tree(tmp_path, "/")
    affinity = len(os.sched_getaffinity(0))
    for content, expected in (("150000 100000\n", min(2, affinity)), ("max 100000\n", affinity),
                              ("garbage\n", affinity), ("1 0\n", affinity)):
        Path(root, "cpu.max").write_text(content)
        assert system.probe_cpus(root, self_cgroup).usable == expected, content


def test_the_tightest_cgroup_quota_up_the_tree_wins(tmp_path: Path) -> None:
    root, self_cgroup = cgroup_tree(tmp_path, "/job.slice/step.scope")
    Path(root, "job.slice", "cpu.max").write_text("100000 100000\n")  # 1 CPU for the job
    Path(root, "job.slice", "step.scope", "cpu.max").write_text("max 100000\n")
    facts = system.probe_cpus(root, self_cgroup)
    assert (facts.usable, facts.source) == (1, "cgroup cpu.max quota (/job.slice)")


def test_cgroup_memory_limit(tmp_path: Path) -> None:
    root, self_cgroup = cgroup_tree(tmp_path, "/ci/job")
    Path(root, "ci", "memory.max").write_text(f"{512 * 1024**2}\n")
    Path(root, "ci", "memory.current").write_text(f"{100 * 1024**2}\n")
    Path(root, "ci", "job", "memory.max").write_text("max\n")
    facts = system.probe_memory(cgroup_root=root, self_cgroup=self_cgroup)
    assert facts.total == 512 * 1024**2
    assert facts.available is not None and facts.available <= 412 * 1024**2
    assert facts.source == "cgroup v2 memory.max"


def test_memory_agrees_with_psutil(tmp_path: Path) -> None:
    # Differential: /proc/meminfo read directly against psutil's view of it.
    psutil = pytest.importorskip("psutil")
    root, self_cgroup = cgroup_tree(tmp_path, "/")
    facts = system.probe_memory(cgroup_root=root, self_cgroup=self_cgroup)
    memory = psutil.virtual_memory()
    assert facts.source == "/proc/meminfo"
    assert facts.total == memory.total
    assert facts.available is not None and abs(facts.available - memory.available) < 256 * 1024**2


def test_without_proc_meminfo_psutil_answers_in_a_child(tmp_path: Path) -> None:
    root, self_cgroup = cgroup_tree(tmp_path, "/")
    facts = system.probe_memory(str(tmp_path / "no-meminfo"), root, self_cgroup)
    assert facts.source == "psutil" and facts.total and facts.available


def test_a_corrupt_meminfo_falls_back_to_psutil(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("nothing useful\n")
    root, self_cgroup = cgroup_tree(tmp_path, "/")
    facts = system.probe_memory(str(tmp_path / "meminfo"), root, self_cgroup)
    # psutil, in its child, reads the real /proc/meminfo
    assert facts.source == "psutil" and facts.total


def test_command_uses_the_given_path(tmp_path: Path) -> None:
    tool = tmp_path / "mytool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert commands.probe_command("mytool", {"PATH": str(tmp_path)}).path == str(tool)
    assert commands.probe_command("mytool", {"PATH": "/nonexistent"}).path is None


def test_distribution_probe() -> None:
    assert distributions.probe_distribution("pytest").version
    missing = distributions.probe_distribution("surely-not-installed-xyz")
    assert (missing.version, missing.failure) == (None, Failure.MISSING)
