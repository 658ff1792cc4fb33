"""The interpreter and system probes, on this machine and on crafted files."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from pytest_envguard.probes import interpreter, packages, system


def test_python_matches_sys() -> None:
    facts = interpreter.probe_python()
    assert facts.version.startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert facts.implementation == sys.implementation.name
    assert facts.prefix == sys.prefix


def test_abi_lists_this_interpreters_tags() -> None:
    facts = interpreter.probe_abi()
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
    interp = system.elf_interpreter(os.path.realpath(sys.executable))
    assert interp is not None and "ld-linux" in interp


def test_elf_interpreter_of_garbage(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"\x7fELF" + b"\xff" * 10)
    assert system.elf_interpreter(str(tmp_path / "x")) is None
    assert system.elf_interpreter(str(tmp_path / "missing")) is None


def test_cpu_from_a_crafted_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Crafted CPU\nflags\t\t: fpu sse4_2 avx2\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n")
    facts = system.probe_cpu(str(cpuinfo), str(tmp_path))
    assert facts.flags == ("avx2", "fpu", "sse4_2")
    assert facts.model == "Crafted CPU"
    assert facts.usable == len(os.sched_getaffinity(0))


def test_cpu_arm_features(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd sve\nCPU part\t: 0xd0c\n")
    facts = system.probe_cpu(str(cpuinfo), str(tmp_path))
    assert facts.flags == ("asimd", "fp", "sve")


def test_unreadable_cpuinfo_is_a_reason_not_an_exception(tmp_path: Path) -> None:
    facts = system.probe_cpu(str(tmp_path / "absent"), str(tmp_path))
    assert facts.flags == ()
    assert facts.reason and "FileNotFoundError" in facts.reason


def test_cgroup_cpu_quota_limits_usable_cpus(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert system.probe_cpu("/proc/cpuinfo", str(tmp_path)).usable == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert system.probe_cpu("/proc/cpuinfo", str(tmp_path)).usable == len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("garbage\n")
    assert system.probe_cpu("/proc/cpuinfo", str(tmp_path)).usable == len(os.sched_getaffinity(0))


def test_cgroup_memory_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text(f"{512 * 1024**2}\n")
    (tmp_path / "memory.current").write_text(f"{100 * 1024**2}\n")
    facts = system.probe_memory(str(tmp_path))
    assert facts.total == 512 * 1024**2
    assert facts.available is not None and facts.available <= 412 * 1024**2
    assert facts.source == "cgroup v2 memory.max"


def test_memory_without_cgroup_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("max\n")
    facts = system.probe_memory(str(tmp_path))
    assert facts.source == "psutil" and facts.total and facts.available


def test_command_uses_the_given_path(tmp_path: Path) -> None:
    tool = tmp_path / "mytool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert system.probe_command("mytool", {"PATH": str(tmp_path)}).path == str(tool)
    assert system.probe_command("mytool", {"PATH": "/nonexistent"}).path is None


def test_distribution_probe() -> None:
    assert packages.probe_distribution("pytest").version
    missing = packages.probe_distribution("surely-not-installed-xyz")
    assert (missing.version, missing.reason) == (None, "not installed")
