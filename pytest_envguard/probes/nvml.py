"""The NVIDIA driver and GPUs, through NVML.

NVML (``libnvidia-ml.so.1``, through ``pynvml``) is asked in a **child
interpreter** (:mod:`~pytest_envguard.probes._child`) with a time limit,
never in the test process:

* a wedged driver can make ``nvmlInit`` hang for good; a child can be killed,
  a thread in the test process cannot, so the session still ends promptly;
* nothing is left loaded or initialised in the test process (NVML state, file
  descriptors on ``/dev/nvidia*``); CUDA itself is never initialised;
* the child runs with the environment snapshot, so its ``LD_LIBRARY_PATH``
  decides which ``libnvidia-ml.so.1`` is loaded (the tests' fake one, say).

The facts list every device NVML reports; which of them a CUDA program here
would see (``CUDA_VISIBLE_DEVICES``) is judged by the checks, through
:mod:`pytest_envguard.cuda_visibility`, so one answer serves every setting.

A successful answer is cached on disk (NVML initialisation takes seconds on a
GPU without persistence mode) for :data:`CACHE_TTL` seconds at most, keyed on
everything that changes the answer without a reboot: the identity of the
``libnvidia-ml.so.1`` the child would load, the loaded driver
(``/proc/driver/nvidia/version``), the device nodes and the GPUs the kernel
lists, the user, the cgroup, the boot. Failures are never cached. Under
pytest-xdist one process asks while the others wait for its answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_envguard.probes import Facts, Failure, describe_error
from pytest_envguard.probes._diskcache import DiskCache
from pytest_envguard.probes._io import read_small

NVML_LIBRARY = "libnvidia-ml.so.1"
# NVML return codes (nvml.h) that the probe explains.
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_COMPUTEMODE_PROHIBITED = 2

CACHE_FILE = "nvml.json"
CACHE_TTL = 600.0  # seconds: a GPU that fell off the bus is seen within this long
BOOT_ID = "/proc/sys/kernel/random/boot_id"
DRIVER_VERSION_FILE = "/proc/driver/nvidia/version"
DRIVER_GPUS_DIR = "/proc/driver/nvidia/gpus"
DEVICE_DIR = "/dev"
SELF_CGROUP = "/proc/self/cgroup"


@dataclass(frozen=True)
class GpuFacts(Facts):
    """One device as NVML lists it: a physical GPU, or a MIG device of one."""

    index: int  # NVML index (PCI bus order); a MIG device has its parent's
    name: str
    uuid: str  # "GPU-…" or "MIG-…"
    memory_total: int | None  # bytes
    memory_free: int | None  # bytes, when probed (a cached answer keeps the old value)
    capability: str | None  # compute capability, "8.0"
    mig: bool | None = None  # MIG mode on (physical GPUs)
    usable: bool = True  # CUDA can run work on it
    note: str | None = None  # why it is not usable, or what NVML did not answer
    parent: str | None = None  # a MIG device's GPU UUID
    instance: tuple[int, int] | None = None  # a MIG device's (GPU instance, compute instance)

    @property
    def label(self) -> str:
        where = f"GPU {self.index}" if self.parent is None else f"MIG device of GPU {self.index}"
        return f"{where} ({self.name})"


@dataclass(frozen=True)
class NvidiaFacts(Facts):
    """The driver and every device NVML lists (MIG devices after their GPU).

    ``failure`` says why NVML gave no answer (``None`` when it did):
    ``MISSING`` (no ``libnvidia-ml.so.1``), ``BROKEN`` (NVML refused to start;
    ``error_code`` is its return code), ``TIMEOUT``, ``CRASHED``, ``CORRUPT`` (an
    answer that makes no sense), ``ERROR`` (the query could not run).
    """

    driver: str | None
    cuda: str | None  # highest CUDA version the driver supports: "12.2"
    devices: tuple[GpuFacts, ...]
    failure: Failure | None = None
    reason: str | None = None
    error_code: int | None = None  # NVML's return code when initialisation failed
    source: str = "NVML"  # "NVML" or "cache (…)"
    elapsed: float = 0.0  # seconds the query took (when not cached)
    notes: tuple[str, ...] = ()  # calls NVML did not support, and the like


# -- the query, run in a child interpreter ---------------------------------------------


def query_nvml() -> dict[str, Any]:
    """Ask NVML everything the probe needs; plain data. Runs in the child."""
    try:
        import pynvml
    except ImportError as error:
        return {"error": f"pynvml (nvidia-ml-py) cannot be imported: {describe_error(error)}"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        return {"error": _nvml_message(pynvml, error), "error_code": error.value}
    notes: list[str] = []

    def ask(function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except pynvml.NVMLError as error:
            notes.append(f"{function.__name__}: {_nvml_message(pynvml, error)}")
        except UnicodeDecodeError as error:  # pynvml decodes names as strict UTF-8
            notes.append(f"{function.__name__}: {describe_error(error)}")
        return None

    try:
        cuda = ask(pynvml.nvmlSystemGetCudaDriverVersion_v2)
        if cuda is None:
            cuda = ask(pynvml.nvmlSystemGetCudaDriverVersion)
        answer: dict[str, Any] = {
            "driver": ask(pynvml.nvmlSystemGetDriverVersion),
            "cuda": cuda,
            "devices": [],
        }
        count = ask(pynvml.nvmlDeviceGetCount) or 0
        for index in range(count):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            except pynvml.NVMLError as error:
                answer["devices"].append({"index": index, "error": _nvml_message(pynvml, error)})
                continue
            device = _describe_device(pynvml, handle, ask)
            device["index"] = index
            device["mode"] = ask(pynvml.nvmlDeviceGetComputeMode, handle)
            mig = ask(pynvml.nvmlDeviceGetMigMode, handle)
            device["mig"] = bool(mig[0]) if mig else None
            device["migs"] = _mig_devices(pynvml, handle, ask) if device["mig"] else []
            answer["devices"].append(device)
        answer["notes"] = notes
        return answer
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def _nvml_message(pynvml: Any, error: Any) -> str:
    # The library's own words ("Driver/library version mismatch"), not pynvml's table.
    try:
        text = pynvml.nvmlErrorString(error.value)
    except pynvml.NVMLError:
        text = str(error)
    return f"{text} (NVML error {error.value})"


def _describe_device(pynvml: Any, handle: Any, ask: Callable[..., Any]) -> dict[str, Any]:
    memory = ask(pynvml.nvmlDeviceGetMemoryInfo, handle)
    capability = ask(pynvml.nvmlDeviceGetCudaComputeCapability, handle)
    return {
        "name": ask(pynvml.nvmlDeviceGetName, handle),
        "uuid": ask(pynvml.nvmlDeviceGetUUID, handle),
        "memory_total": int(memory.total) if memory is not None else None,
        "memory_free": int(memory.free) if memory is not None else None,
        "capability": f"{capability[0]}.{capability[1]}" if capability else None,
    }


def _mig_devices(pynvml: Any, handle: Any, ask: Callable[..., Any]) -> list[dict[str, Any]]:
    devices = []
    for slot in range(ask(pynvml.nvmlDeviceGetMaxMigDeviceCount, handle) or 0):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except pynvml.NVMLError:  # NOT_FOUND: an empty slot
            continue
        device = _describe_device(pynvml, mig, ask)
        device["gi"] = ask(pynvml.nvmlDeviceGetGpuInstanceId, mig)
        device["ci"] = ask(pynvml.nvmlDeviceGetComputeInstanceId, mig)
        devices.append(device)
    return devices


# The child's program (after the runner's prologue, which defines answer()).
_CHILD = "from pytest_envguard.probes import nvml\nanswer(nvml.query_nvml())\n"


def run_query(environ: Mapping[str, str], timeout: float) -> NvidiaFacts | dict[str, Any]:
    """:func:`query_nvml` in a child with ``environ``: its answer, or the facts of
    why there is none."""
    from pytest_envguard.probes._child import module_dirs, run_python

    result = run_python(_CHILD, environ=environ, timeout=timeout,
                        path=module_dirs("pynvml", "pytest_envguard"))
    if result.failure is Failure.TIMEOUT:
        return _failed(Failure.TIMEOUT, f"NVML did not answer in {timeout:g} s", result.elapsed)
    if result.failure is not None:
        return _failed(result.failure, f"the NVML query failed: {result.reason}", result.elapsed)
    if not isinstance(result.answer, dict):
        tail = result.stderr_tail
        return _failed(Failure.BROKEN, f"the NVML query exited with status {result.returncode}"
                                       + (f": {tail}" if tail else ""), result.elapsed)
    return result.answer


def _failed(failure: Failure, reason: str, elapsed: float = 0.0,
            code: int | None = None, source: str = "NVML") -> NvidiaFacts:
    return NvidiaFacts(None, None, (), failure, reason, code, source, elapsed)


# -- facts from an answer ----------------------------------------------------------------


def facts_from_answer(answer: Mapping[str, Any], *, source: str = "NVML",
                      elapsed: float = 0.0) -> NvidiaFacts:
    """Build the facts from :func:`query_nvml`'s answer (fresh or cached).

    Raises ``KeyError``/``TypeError``/``ValueError`` on a malformed answer
    (the caller makes it ``Failure.CORRUPT``).
    """
    from pytest_envguard.units import cuda_version

    error = answer.get("error")
    if error is not None:
        code = answer.get("error_code")
        code = int(code) if code is not None else None
        failure = Failure.MISSING if code == NVML_ERROR_LIBRARY_NOT_FOUND else (
            Failure.ERROR if code is None else Failure.BROKEN)
        return _failed(failure, _init_reason(str(error), code), elapsed, code, source)
    devices: list[GpuFacts] = []
    for entry in answer["devices"]:
        devices.extend(_gpu_entries(entry))
    cuda = answer.get("cuda")
    return NvidiaFacts(
        driver=str(answer["driver"]) if answer.get("driver") else None,
        cuda=cuda_version(int(cuda)) if cuda else None,
        devices=tuple(devices),
        source=source,
        elapsed=elapsed,
        notes=tuple(str(note) for note in answer.get("notes", ())),
    )


def _init_reason(error: str, code: int | None) -> str:
    if code == NVML_ERROR_LIBRARY_NOT_FOUND:
        return (f"NVML is not available: {NVML_LIBRARY} not found (no NVIDIA driver installed, "
                "or not mounted into this container)")
    if code == NVML_ERROR_DRIVER_NOT_LOADED:
        return f"NVML: {error}: the NVIDIA kernel module is not loaded"
    if code is None:
        return error
    return f"NVML initialisation failed: {error}"


def _gpu_entries(entry: Mapping[str, Any]) -> list[GpuFacts]:
    index = int(entry["index"])
    if entry.get("error"):
        return [GpuFacts(index, "unknown", "", None, None, None, usable=False,
                         note=f"NVML gives no handle: {entry['error']}")]
    mig = entry.get("mig")
    note = None
    usable = True
    prohibited = entry.get("mode") == NVML_COMPUTEMODE_PROHIBITED
    if prohibited:
        usable, note = False, "its compute mode is Prohibited"
    elif mig:
        usable = False  # its MIG devices are the CUDA devices
        note = "MIG mode is on" + ("" if entry.get("migs") else " and it has no MIG devices")
    gpu = GpuFacts(index, str(entry.get("name") or "unknown"), str(entry.get("uuid") or ""),
                   _int(entry.get("memory_total")), _int(entry.get("memory_free")),
                   entry.get("capability"), mig=None if mig is None else bool(mig),
                   usable=usable, note=note)
    entries = [gpu]
    for child in entry.get("migs") or ():
        gi, ci = child.get("gi"), child.get("ci")
        entries.append(GpuFacts(
            index, str(child.get("name") or f"{gpu.name} MIG"), str(child.get("uuid") or ""),
            _int(child.get("memory_total")), _int(child.get("memory_free")),
            child.get("capability") or gpu.capability, parent=gpu.uuid, usable=not prohibited,
            instance=(int(gi), int(ci)) if gi is not None and ci is not None else None))
    return entries


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


# -- the cache ---------------------------------------------------------------------------


def cache_key(environ: Mapping[str, str]) -> str | None:
    """What the NVML answer depends on, as one string; ``None`` where a reboot cannot
    be told (no boot id): then nothing is cached."""
    boot = read_small(BOOT_ID)
    if not boot:
        return None
    from pytest_envguard.probes.loader import find_library

    library = find_library(NVML_LIBRARY, environ)
    identity = "none"
    if library.path is not None:
        try:
            info = os.stat(library.path)
            identity = f"{library.path}:{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"
        except OSError:
            identity = f"{library.path}:?"
    parts = {
        "boot_id": boot.strip(),
        "library": identity,
        "driver": (read_small(DRIVER_VERSION_FILE) or "").strip(),
        "device_nodes": ",".join(_listing(DEVICE_DIR, r"nvidia(\d+|ctl|-uvm.*|-caps)")),
        "kernel_gpus": ",".join(_listing(DRIVER_GPUS_DIR, r".+")),
        "user": str(os.geteuid()),
        "cgroup": (read_small(SELF_CGROUP) or "").strip(),
        "NVIDIA_VISIBLE_DEVICES": environ.get("NVIDIA_VISIBLE_DEVICES", ""),
        "LD_LIBRARY_PATH": environ.get("LD_LIBRARY_PATH", ""),
        "python": sys.executable,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _listing(directory: str, pattern: str) -> list[str]:
    try:
        return sorted(name for name in os.listdir(directory) if re.fullmatch(pattern, name))
    except OSError:
        return []


# -- the probe -----------------------------------------------------------------------------


def probe_nvidia(environ: Mapping[str, str], *, timeout: float = 10.0,
                 cache_dir: Path | None = None) -> NvidiaFacts:
    """Driver, CUDA version and every device, from NVML or a fresh-enough cached
    answer. Never raises: what NVML cannot tell becomes ``failure`` and ``reason``."""
    key = cache_key(environ) if cache_dir is not None else None
    cache = DiskCache(cache_dir if key is not None else None, CACHE_FILE, max_bytes=1 << 22,
                      ttl=CACHE_TTL)
    cached = _cached(cache, key)
    if cached is not None:
        return cached
    # Under xdist every worker starts at once: one asks NVML, the others wait for
    # its answer (a little longer than it may take), then read it from the cache.
    with cache.lock(timeout + 5) as held:
        if held:
            cached = _cached(cache, key)
            if cached is not None:
                return cached
        started = time.monotonic()
        answer = run_query(environ, timeout)
        elapsed = time.monotonic() - started
        if isinstance(answer, NvidiaFacts):
            return answer
        try:
            facts = facts_from_answer(answer, elapsed=elapsed)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            return _failed(Failure.CORRUPT, f"unexpected NVML answer: {describe_error(error)}",
                           elapsed)
        if key is not None and facts.failure is None:
            cache.write({key: answer})
        return facts


def _cached(cache: DiskCache, key: str | None) -> NvidiaFacts | None:
    if key is None:
        return None
    entries = cache.read()
    answer = entries.get(key) if entries else None
    if not isinstance(answer, dict) or "error" in answer:
        return None
    try:
        return facts_from_answer(answer, source=f"cache ({cache.path})")
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # corrupt: ask NVML again
