"""Platform, machine, libc, CPU flags and count, memory, executables on PATH."""

from __future__ import annotations

import math
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_envguard.probes import Facts, describe_error, open_regular


@dataclass(frozen=True)
class PlatformFacts(Facts):
    platform: str  # sys.platform
    machine: str  # platform.machine()
    system: str  # platform.system()
    release: str  # kernel release


@dataclass(frozen=True)
class LibcFacts(Facts):
    name: str | None  # "glibc", "musl" or None
    version: str | None
    source: str  # how the version was found
    reason: str | None = None  # why it is unknown, when it is


@dataclass(frozen=True)
class CpuFacts(Facts):
    flags: tuple[str, ...]
    model: str | None
    logical: int | None  # CPUs in the machine
    usable: int | None  # CPUs this process may run on (affinity, cgroup quota)
    usable_source: str
    reason: str | None = None


@dataclass(frozen=True)
class MemoryFacts(Facts):
    total: int | None
    available: int | None
    source: str  # "psutil" or "cgroup v2 (memory.max)" …
    reason: str | None = None


@dataclass(frozen=True)
class CommandFacts(Facts):
    name: str
    path: str | None


def probe_platform() -> PlatformFacts:
    uname = platform.uname()
    return PlatformFacts(
        platform=sys.platform, machine=uname.machine, system=uname.system, release=uname.release
    )


def probe_libc(executable: str = sys.executable) -> LibcFacts:
    """glibc from ``confstr`` (then ``gnu_get_libc_version``); musl from the ELF interpreter."""
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        value = None
    if value and value.startswith("glibc "):
        return LibcFacts("glibc", value.split()[1], "confstr(CS_GNU_LIBC_VERSION)")
    glibc = _glibc_from_ctypes()
    if glibc:
        return LibcFacts("glibc", glibc, "gnu_get_libc_version()")
    if not sys.platform.startswith("linux"):
        return LibcFacts(None, None, "", f"no libc version to probe on {sys.platform}")
    interpreter = elf_interpreter(executable)
    if interpreter and "musl" in os.path.basename(interpreter):
        return _musl_version(interpreter)
    return LibcFacts(None, None, "", f"neither glibc nor musl found (ELF interpreter {interpreter})")


def _glibc_from_ctypes() -> str | None:
    import ctypes

    try:
        process = ctypes.CDLL(None)
        function = process.gnu_get_libc_version
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_char_p
    version = function()
    return version.decode("ascii") if isinstance(version, bytes) else None


def elf_interpreter(path: str) -> str | None:
    """The PT_INTERP of an ELF executable, read from its program headers alone."""
    try:
        with open_regular(path) as file:
            ident = file.read(64)
            if len(ident) < 64 or ident[:4] != b"\x7fELF":
                return None
            is64, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
            if is64:
                phoff, = struct.unpack_from(order + "Q", ident, 32)
                phentsize, phnum = struct.unpack_from(order + "HH", ident, 54)
            else:
                phoff, = struct.unpack_from(order + "I", ident, 28)
                phentsize, phnum = struct.unpack_from(order + "HH", ident, 42)
            for index in range(min(phnum, 256)):
                file.seek(phoff + index * phentsize)
                header = file.read(phentsize)
                if len(header) < (56 if is64 else 32):
                    return None
                p_type, = struct.unpack_from(order + "I", header, 0)
                if p_type != 3:  # PT_INTERP
                    continue
                if is64:
                    offset, = struct.unpack_from(order + "Q", header, 8)
                    size, = struct.unpack_from(order + "Q", header, 32)
                else:
                    offset, = struct.unpack_from(order + "I", header, 4)
                    size, = struct.unpack_from(order + "I", header, 16)
                file.seek(offset)
                found: bytes = file.read(min(size, 4096))
                return found.rstrip(b"\x00").decode("utf-8", "replace")
    except (OSError, ValueError, OverflowError):  # offsets past what seek() takes: corrupt
        return None
    return None


def _musl_version(loader: str) -> LibcFacts:
    # musl's loader prints its version on stderr when run with no arguments.
    try:
        result = subprocess.run([loader], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return LibcFacts("musl", None, loader, describe_error(error))
    match = re.search(r"Version (\d+\.\d+(?:\.\d+)?)", result.stderr)
    if match:
        return LibcFacts("musl", match.group(1), f"{loader} --version")
    return LibcFacts("musl", None, loader, "the musl loader did not print its version")


def probe_cpu(cpuinfo: str = "/proc/cpuinfo", cgroup_root: str = "/sys/fs/cgroup") -> CpuFacts:
    flags: tuple[str, ...] = ()
    model = None
    reason = None
    try:
        with open_regular(cpuinfo, "utf-8", "replace") as file:
            text = file.read(1 << 24)
    except OSError as error:
        text = ""
        reason = f"{cpuinfo}: {describe_error(error)}"
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name in ("flags", "Features") and not flags:
            flags = tuple(sorted(set(value.split())))
        elif name in ("model name", "Processor", "CPU part") and model is None:
            model = value.strip()
        if flags and model:
            break
    logical = os.cpu_count()
    usable, source = _usable_cpus(cgroup_root)
    return CpuFacts(flags, model, logical, usable, source, reason)


def _usable_cpus(cgroup_root: str) -> tuple[int | None, str]:
    try:
        import psutil

        count: int | None = len(psutil.Process().cpu_affinity() or [])
        source = "CPU affinity"
    except (ImportError, AttributeError, OSError):
        try:
            count, source = len(os.sched_getaffinity(0)), "CPU affinity"
        except (AttributeError, OSError):
            count, source = os.cpu_count(), "os.cpu_count()"
    quota = _cgroup_cpu_quota(cgroup_root)
    if quota is not None and (count is None or quota < count):
        return quota, "cgroup cpu.max quota"
    return count, source


def _cgroup_cpu_quota(root: str) -> int | None:
    try:
        with open_regular(os.path.join(root, "cpu.max"), "ascii") as file:
            fields = file.read(4096).split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        return max(1, math.ceil(int(fields[0]) / int(fields[1])))
    except (ValueError, ZeroDivisionError):
        return None


def probe_memory(cgroup_root: str = "/sys/fs/cgroup") -> MemoryFacts:
    """Total and available RAM, bounded by a cgroup v2 memory limit when there is one."""
    try:
        import psutil

        memory = psutil.virtual_memory()
        total, available, source = int(memory.total), int(memory.available), "psutil"
    except (ImportError, OSError) as error:
        return MemoryFacts(None, None, "", describe_error(error))
    limit = _read_int(Path(root_path := cgroup_root, "memory.max"))
    if limit is not None and 0 < limit < total:  # a non-positive "limit" is a corrupt file
        used = _read_int(Path(root_path, "memory.current")) or 0
        return MemoryFacts(limit, min(available, max(0, limit - used)), "cgroup v2 memory.max")
    return MemoryFacts(total, available, source)


def _read_int(path: Path) -> int | None:
    try:
        with open_regular(str(path), "ascii") as file:
            return int(file.read(4096).strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def probe_command(name: str, environ: Mapping[str, str]) -> CommandFacts:
    return CommandFacts(name, shutil.which(name, path=environ.get("PATH", os.defpath)))
