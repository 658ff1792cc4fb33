"""Platform, machine, libc, usable CPUs, memory: the facets of the cheap keys.

Read from ``/proc``, cgroup files and the C library directly: the cheap keys
(``cpus``, ``memory``, ``glibc``) import nothing into the test process. Only
where ``/proc`` cannot answer (no ``/proc/meminfo``) is psutil asked, in a
child process.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass

from pytest_envguard.probes import Facts, Failure
from pytest_envguard.probes._io import explain, failure_of, read_small, read_text

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_SELF_CGROUP = "/proc/self/cgroup"


@dataclass(frozen=True)
class PlatformFacts(Facts):
    """The operating system and machine (``platform``, ``machine``, the markers)."""

    platform: str  # sys.platform
    machine: str  # platform.machine()
    system: str  # platform.system()
    release: str  # kernel release
    version: str = ""  # kernel version string: PEP 508's platform_version
    os_name: str = "posix"  # os.name


@dataclass(frozen=True)
class LibcFacts(Facts):
    """The C library: glibc or musl, and its version (``glibc``, ``musl``)."""

    name: str | None  # "glibc", "musl" or None
    version: str | None
    source: str  # how the version was found
    reason: str | None = None  # why it is unknown, when it is
    failure: Failure | None = None


@dataclass(frozen=True)
class CpusFacts(Facts):
    """How many CPUs this process may use (``cpus``): affinity, bounded by a cgroup quota."""

    usable: int | None
    logical: int | None  # CPUs in the machine
    source: str
    reason: str | None = None
    failure: Failure | None = None


@dataclass(frozen=True)
class MemoryFacts(Facts):
    """Total and available memory, bounded by a cgroup limit (``memory``)."""

    total: int | None
    available: int | None
    source: str  # "/proc/meminfo", "cgroup v2 memory.max" …
    reason: str | None = None
    failure: Failure | None = None


def probe_platform() -> PlatformFacts:
    uname = os.uname()
    return PlatformFacts(platform=sys.platform, machine=uname.machine, system=uname.sysname,
                         release=uname.release, version=uname.version, os_name=os.name)


# -- libc ------------------------------------------------------------------------------------


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
        return LibcFacts(None, None, "", f"no libc version to probe on {sys.platform}",
                         Failure.UNSUPPORTED)
    from pytest_envguard.probes.elf import read_interpreter

    interpreter = read_interpreter(executable)
    if interpreter and "musl" in os.path.basename(interpreter):
        return _musl_version(interpreter)
    return LibcFacts(None, None, "", f"neither glibc nor musl found (ELF interpreter {interpreter})",
                     Failure.MISSING)


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


def _musl_version(loader: str) -> LibcFacts:
    # musl's loader prints its version on stderr when run with no arguments.
    from pytest_envguard.probes._child import run_program

    result = run_program([loader], environ={"PATH": os.defpath}, timeout=5)
    if result.failure is not None:
        return LibcFacts("musl", None, loader, f"{loader}: {result.reason}", result.failure)
    match = re.search(r"Version (\d+\.\d+(?:\.\d+)?)", result.stderr)
    if match:
        return LibcFacts("musl", match.group(1), f"{loader} (its version banner)")
    return LibcFacts("musl", None, loader, "the musl loader did not print its version",
                     Failure.CORRUPT)


# -- CPU -----------------------------------------------------------------------------------------


def probe_cpus(cgroup_root: str = CGROUP_ROOT, self_cgroup: str = PROC_SELF_CGROUP) -> CpusFacts:
    """The CPUs this process may run on, bounded by the tightest cgroup v2 ``cpu.max``
    quota of its cgroup and the cgroups above it."""
    logical = os.cpu_count()
    try:
        usable: int | None = len(os.sched_getaffinity(0))
        source = "CPU affinity"
    except (AttributeError, OSError):
        usable, source = logical, "os.cpu_count()"
    for directory in cgroup_dirs(cgroup_root, self_cgroup):
        quota = _cpu_quota(os.path.join(directory, "cpu.max"))
        if quota is not None and (usable is None or quota < usable):
            where = os.path.relpath(directory, cgroup_root)
            usable, source = quota, f"cgroup cpu.max quota ({'/' if where == '.' else '/' + where})"
    if usable is None:
        return CpusFacts(None, logical, "", "the CPU count is unknown", Failure.UNSUPPORTED)
    return CpusFacts(usable, logical, source)


def cgroup_dirs(root: str = CGROUP_ROOT, self_cgroup: str = PROC_SELF_CGROUP) -> list[str]:
    """The cgroup v2 directories whose limits apply to this process: its own and each
    ancestor up to the root (inside a container, the root is the container's)."""
    text = read_small(self_cgroup) or ""
    relative = next((line[3:].strip() for line in text.splitlines() if line.startswith("0::")), "/")
    parts = [part for part in relative.split("/") if part and part not in (".", "..")]
    dirs = [os.path.join(root, *parts[:depth]) for depth in range(len(parts), -1, -1)]
    return [directory for directory in dirs if os.path.isdir(directory)] or [root]


def _cpu_quota(path: str) -> int | None:
    fields = (read_small(path, 4096) or "").split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        return max(1, math.ceil(int(fields[0]) / int(fields[1])))
    except (ValueError, ZeroDivisionError):
        return None


# -- memory -------------------------------------------------------------------------------------


def probe_memory(meminfo: str = "/proc/meminfo", cgroup_root: str = CGROUP_ROOT,
                 self_cgroup: str = PROC_SELF_CGROUP) -> MemoryFacts:
    """Total and available RAM, bounded by the tightest cgroup v2 ``memory.max``."""
    found = _meminfo(meminfo)
    if isinstance(found, MemoryFacts):  # no /proc/meminfo: psutil, in a child
        found = _memory_from_psutil(found)
        if isinstance(found, MemoryFacts):
            return found
    total, available, source = found
    for directory in cgroup_dirs(cgroup_root, self_cgroup):
        limit = _read_int(os.path.join(directory, "memory.max"))
        if limit is not None and 0 < limit < total:  # a non-positive "limit" is a corrupt file
            used = _read_int(os.path.join(directory, "memory.current")) or 0
            total, available = limit, min(available, max(0, limit - used))
            source = "cgroup v2 memory.max"
    return MemoryFacts(total, available, source)


def _meminfo(path: str) -> tuple[int, int, str] | MemoryFacts:
    try:
        text = read_text(path, 1 << 20)
    except (OSError, ValueError) as error:
        return MemoryFacts(None, None, "", explain(path, error), failure_of(error))
    values: dict[str, int] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+):\s+(\d+)\s*kB", line.strip())
        if match:
            values[match.group(1)] = int(match.group(2)) * 1024
    total = values.get("MemTotal")
    if total is None:
        return MemoryFacts(None, None, "", f"no MemTotal in {path}", Failure.CORRUPT)
    available = values.get("MemAvailable", values.get("MemFree", 0) + values.get("Cached", 0))
    return total, available, path


_PSUTIL_MEMORY = """
try:
    import psutil
    memory = psutil.virtual_memory()
    answer({"total": int(memory.total), "available": int(memory.available)})
except Exception as error:
    answer({"error": f"{type(error).__name__}: {error}"})
"""


def _memory_from_psutil(first: MemoryFacts) -> tuple[int, int, str] | MemoryFacts:
    from pytest_envguard.probes._child import module_dirs, run_python

    result = run_python(_PSUTIL_MEMORY, environ={"PATH": os.defpath}, timeout=10,
                        path=module_dirs("psutil"))
    answer = result.answer if isinstance(result.answer, dict) else {}
    total, available = answer.get("total"), answer.get("available")
    if isinstance(total, int) and isinstance(available, int) and total > 0:
        return total, available, "psutil"
    why = answer.get("error") or result.reason or "no answer"
    return MemoryFacts(None, None, "", f"{first.reason}; psutil: {why}", first.failure)


def _read_int(path: str) -> int | None:
    try:
        return int((read_small(path, 4096) or "").strip())
    except ValueError:
        return None
