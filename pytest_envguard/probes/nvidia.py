"""The NVIDIA driver and GPUs through NVML, what CUDA would see, and the CUDA runtime.

NVML (``libnvidia-ml.so.1``, through ``pynvml``) is asked in a **child
interpreter** with a time limit, never in the test process:

* a wedged driver can make ``nvmlInit`` hang for good; a child can be killed,
  a thread in the test process cannot, so the session still ends promptly;
* nothing is left loaded or initialised in the test process (NVML state, file
  descriptors on ``/dev/nvidia*``), which forked tests and a later change of
  ``CUDA_VISIBLE_DEVICES`` would trip over; CUDA itself is never initialised;
* the child runs with the environment snapshot, so its ``LD_LIBRARY_PATH``
  decides which ``libnvidia-ml.so.1`` is loaded (the tests' fake one, say).

The answer is cached in pytest's cache dir (NVML initialisation takes seconds
on a GPU without persistence mode), keyed on what would change it: the boot,
the loaded driver (``/proc/driver/nvidia/version``), the device nodes, and
the variables that choose the library and the devices a container sees.
``CUDA_VISIBLE_DEVICES`` is applied afterwards, as CUDA applies it
(:func:`visible_gpus`), so one cached answer serves every xdist worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_envguard.probes import Facts, describe_error, open_regular

NVML_LIBRARY = "libnvidia-ml.so.1"
# NVML return codes (nvml.h) that the probe explains.
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_COMPUTEMODE_PROHIBITED = 2

CACHE_FILE = "nvml.json"
CACHE_SCHEMA = 1
BOOT_ID = "/proc/sys/kernel/random/boot_id"
DRIVER_VERSION_FILE = "/proc/driver/nvidia/version"


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
    """The driver, every device NVML lists, and the ones a CUDA program here would see.

    ``reason`` says why NVML gave no answer (``None`` when it did). ``visible``
    is known even then when ``CUDA_VISIBLE_DEVICES`` hides everything
    (``visible_known``).
    """

    driver: str | None
    cuda: str | None  # highest CUDA version the driver supports: "12.2"
    devices: tuple[GpuFacts, ...]
    visible: tuple[GpuFacts, ...]
    visibility: str  # how ``visible`` follows from CUDA_VISIBLE_DEVICES, in words
    visible_known: bool = True
    reason: str | None = None
    error_code: int | None = None  # NVML's return code when initialisation failed
    source: str = "NVML"  # "NVML" or "cache (…)"
    elapsed: float = 0.0  # seconds the query took (when not cached)
    notes: tuple[str, ...] = ()  # calls NVML did not support, and the like

    def summary(self) -> str:
        """The report header's part: ``2× NVIDIA H100 80GB HBM3 · driver 535.104.05 · CUDA 12.2``."""
        if self.reason is not None:
            if self.visible_known and not self.visible:
                return f"no GPU visible ({self.visibility})"
            return f"GPUs unknown: {self.reason}"
        parts = [describe_gpus(self.visible) if self.visible
                 else f"no GPU visible ({self.visibility})"]
        if self.driver:
            parts.append(f"driver {self.driver}")
        if self.cuda:
            parts.append(f"CUDA {self.cuda}")
        return " · ".join(parts)


@dataclass(frozen=True)
class CudaRuntimeFacts(Facts):
    """The CUDA runtime (libcudart) this process has loaded or would load."""

    version: str | None  # "12.4.127", "12.4", or just the major "12"
    path: str | None
    source: str | None  # "loaded in this process", "LD_LIBRARY_PATH", "site-packages nvidia/*/lib"…
    version_source: str | None = None  # where the version came from
    reason: str | None = None


def describe_gpus(gpus: Sequence[GpuFacts]) -> str:
    """``2× NVIDIA H100 80GB HBM3`` or ``NVIDIA A100-SXM4-40GB + Tesla T4``."""
    counts: dict[str, int] = {}
    for gpu in gpus:
        counts[gpu.name] = counts.get(gpu.name, 0) + 1
    return " + ".join(f"{count}× {name}" if count > 1 else name for name, count in counts.items())


def summary(facts: NvidiaFacts) -> str:
    """The one-line summary of the GPU facts (as :meth:`NvidiaFacts.summary`)."""
    return facts.summary()


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


def main() -> None:
    """The child's entry point: print :func:`query_nvml`'s answer as JSON."""
    sys.stdout.write(json.dumps(query_nvml()) + "\n")


# The child imports this module from the directory the parent found it in.
_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); "
          "from pytest_envguard.probes import nvidia; nvidia.main()")

# Children that did not die when killed (stuck in the kernel): kept referenced so
# that their Popen objects are not collected (and warned about) mid-session.
_ABANDONED: list[subprocess.Popen[bytes]] = []


def run_query(environ: Mapping[str, str], timeout: float) -> tuple[dict[str, Any] | None, str | None]:
    """:func:`query_nvml` in a child with ``environ``; ``(answer, None)`` or ``(None, why)``."""
    root = str(Path(__file__).resolve().parents[2])
    try:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, root], env=dict(environ),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
    except OSError as error:
        return None, f"cannot start the NVML query: {describe_error(error)}"
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        try:
            child.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            _ABANDONED.append(child)
        return None, f"NVML did not answer in {timeout:g} s"
    if child.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        how = (f"was killed by signal {-child.returncode}" if child.returncode < 0
               else f"exited with status {child.returncode}")
        return None, f"the NVML query {how}" + (f": {lines[-1]}" if lines else "")
    try:
        answer = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, "the NVML query printed no answer"
    if not isinstance(answer, dict):
        return None, "the NVML query printed no answer"
    return answer, None


# -- facts from an answer ----------------------------------------------------------------


def facts_from_answer(answer: Mapping[str, Any], environ: Mapping[str, str], *,
                      source: str = "NVML", elapsed: float = 0.0) -> NvidiaFacts:
    """Build the facts from :func:`query_nvml`'s answer (fresh or cached).

    Raises ``KeyError``/``TypeError``/``ValueError`` on a malformed answer
    (a corrupt cache file): the caller then asks NVML again.
    """
    setting = environ.get("CUDA_VISIBLE_DEVICES")
    error = answer.get("error")
    if error is not None:
        code = answer.get("error_code")
        visible, visibility, known = _visible_without_nvml(setting)
        return NvidiaFacts(None, None, (), visible, visibility, known, _init_reason(str(error), code),
                           error_code=int(code) if code is not None else None, source=source,
                           elapsed=elapsed)
    devices: list[GpuFacts] = []
    for entry in answer["devices"]:
        devices.extend(_gpu_entries(entry))
    cuda = answer.get("cuda")
    visible, visibility = visible_gpus(devices, setting, environ.get("CUDA_DEVICE_ORDER"))
    return NvidiaFacts(
        driver=str(answer["driver"]) if answer.get("driver") else None,
        cuda=cuda_version(int(cuda)) if cuda else None,
        devices=tuple(devices),
        visible=visible,
        visibility=visibility,
        source=source,
        elapsed=elapsed,
        notes=tuple(str(note) for note in answer.get("notes", ())),
    )


def cuda_version(value: int) -> str:
    """NVML's integer CUDA version: ``12020`` → ``"12.2"``."""
    major, rest = divmod(value, 1000)
    return f"{major}.{rest // 10}"


def _init_reason(error: str, code: Any) -> str:
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


# -- CUDA_VISIBLE_DEVICES, applied as CUDA applies it --------------------------------------

_LEADING_NUMBER = re.compile(r"\+?\d+")


def visible_gpus(devices: Sequence[GpuFacts], setting: str | None,
                 order: str | None = None) -> tuple[tuple[GpuFacts, ...], str]:
    """The devices a CUDA program would see, in its order, and why, in words.

    ``setting`` is ``CUDA_VISIBLE_DEVICES`` (``None``: unset). As CUDA reads it:
    a comma-separated list of indices, or of ``GPU-``/``MIG-`` UUIDs (a unique
    prefix is enough); the list stops at the first entry that names no device
    (``-1``, ``7`` on a 2-GPU machine, garbage after the leading digits is
    ignored: ``1gpu`` is ``1``); a device named twice hides every device; an
    empty value hides every device. Devices CUDA cannot use (compute mode
    Prohibited, no access) are not counted, a GPU in MIG mode counts as its
    MIG devices, and a CUDA process enumerates at most one MIG device.
    """
    physical = [gpu for gpu in devices if gpu.parent is None]
    migs = [gpu for gpu in devices if gpu.parent is not None]
    hidden: list[str] = []

    def expand(gpu: GpuFacts) -> list[GpuFacts]:
        if gpu.mig:
            children = [child for child in migs if child.parent == gpu.uuid]
            if not children:
                hidden.append(f"{gpu.label}: {gpu.note}")
            return children
        if not gpu.usable:
            hidden.append(f"{gpu.label}: {gpu.note}")
            return []
        return [gpu]

    chosen: list[GpuFacts] = []
    if setting is None:
        for gpu in physical:
            chosen.extend(expand(gpu))
        how = f"CUDA_VISIBLE_DEVICES is unset: all {len(physical)} GPU{_s(physical)} NVML lists"
    elif not setting.strip():
        return (), "CUDA_VISIBLE_DEVICES is empty"
    else:
        entries, stop = _select(setting, physical, migs)
        if stop == "repeated":
            return (), f"CUDA_VISIBLE_DEVICES={setting} names a device twice, so CUDA sees none"
        for entry in entries:
            chosen.extend([entry] if entry.parent is not None else expand(entry))
        how = f"CUDA_VISIBLE_DEVICES={setting}"
        if stop:
            how += (f": {stop!r} names no device here, so the list stops there" if stop != "-1"
                    else ": -1 ends the list")
        if (entries and order != "PCI_BUS_ID" and any(_LEADING_NUMBER.match(part.strip())
                                                      for part in setting.split(","))
                and len({gpu.name for gpu in physical}) > 1):
            how += ("; indices are taken in PCI bus order, as with CUDA_DEVICE_ORDER=PCI_BUS_ID "
                    "(CUDA's default order puts the fastest GPU first)")
    mig_chosen = [gpu for gpu in chosen if gpu.parent is not None]
    if len(mig_chosen) > 1:
        extra = {id(gpu) for gpu in mig_chosen[1:]}
        chosen = [gpu for gpu in chosen if id(gpu) not in extra]
        hidden.append(f"{len(extra)} more MIG device{'s' if len(extra) > 1 else ''} "
                      "(a CUDA process enumerates one MIG device)")
    if hidden:
        how += "; not counted: " + "; ".join(hidden)
    return tuple(chosen), how


def _s(items: Sequence[object]) -> str:
    return "" if len(items) == 1 else "s"


def _select(setting: str, physical: Sequence[GpuFacts],
            migs: Sequence[GpuFacts]) -> tuple[list[GpuFacts], str | None]:
    """The devices ``setting`` names, in its order, and the entry it stopped at
    (``"repeated"`` when a device was named twice)."""
    parts = [part.strip() for part in setting.split(",")]
    by_uuid = parts[0].startswith(("GPU-", "MIG-"))
    chosen: list[GpuFacts] = []
    for part in parts:
        if by_uuid:
            device = _by_uuid(part, physical, migs)
        else:
            match = _LEADING_NUMBER.match(part)
            index = int(match.group(0)) if match else -1
            device = physical[index] if 0 <= index < len(physical) else None
        if device is None:
            return chosen, part
        if any(device is seen for seen in chosen):
            return [], "repeated"
        chosen.append(device)
    return chosen, None


def _by_uuid(part: str, physical: Sequence[GpuFacts], migs: Sequence[GpuFacts]) -> GpuFacts | None:
    if part.startswith("GPU-"):
        pool = [gpu for gpu in physical if gpu.uuid.startswith(part)]
    elif part.startswith("MIG-GPU-"):  # the CUDA 11.0 form: MIG-GPU-<uuid>/<gi>/<ci>
        uuid, _, ids = part[4:].partition("/")
        try:
            instance = tuple(int(number) for number in ids.split("/"))
        except ValueError:
            return None
        parents = [gpu.uuid for gpu in physical if gpu.uuid.startswith(uuid)]
        pool = [mig for mig in migs if mig.parent in parents[:1] and mig.instance == instance]
        if len(parents) != 1:
            return None
    elif part.startswith("MIG-"):
        pool = [mig for mig in migs if mig.uuid.startswith(part)]
    else:
        return None
    return pool[0] if len(pool) == 1 else None  # unknown or ambiguous: invalid


def _visible_without_nvml(setting: str | None) -> tuple[tuple[GpuFacts, ...], str, bool]:
    """Without NVML the devices are unknown, unless the setting hides them all."""
    if setting is not None:
        first = setting.split(",")[0].strip()
        if not setting.strip():
            return (), "CUDA_VISIBLE_DEVICES is empty", True
        if not first.startswith(("GPU-", "MIG-")) and not _LEADING_NUMBER.match(first):
            return (), f"CUDA_VISIBLE_DEVICES={setting} hides every GPU", True
    return (), ("CUDA_VISIBLE_DEVICES is unset" if setting is None
                else f"CUDA_VISIBLE_DEVICES={setting}"), False


# -- the cache ---------------------------------------------------------------------------


def cache_key(environ: Mapping[str, str]) -> dict[str, str] | None:
    """What the cached NVML answer depends on; ``None`` where a reboot cannot be told."""
    boot = _read_small(BOOT_ID)
    if not boot:
        return None
    try:
        nodes = ",".join(sorted(name for name in os.listdir("/dev")
                                if re.fullmatch(r"nvidia(\d+|ctl)", name)))
    except OSError:
        nodes = ""
    return {
        "boot_id": boot.strip(),
        "driver": (_read_small(DRIVER_VERSION_FILE) or "").strip(),
        "device_nodes": nodes,
        "LD_LIBRARY_PATH": environ.get("LD_LIBRARY_PATH", ""),
        "NVIDIA_VISIBLE_DEVICES": environ.get("NVIDIA_VISIBLE_DEVICES", ""),
        "python": sys.executable,
    }


def _read_small(path: str) -> str | None:
    try:
        with open_regular(path, "utf-8", "replace") as file:
            text: str = file.read(65536)
            return text
    except OSError:
        return None


def read_cache(cache_dir: Path, key: Mapping[str, str]) -> dict[str, Any] | None:
    """The cached answer for ``key``; ``None`` when absent, stale or corrupt."""
    try:
        with open_regular(str(cache_dir / CACHE_FILE), "utf-8") as file:
            document = json.loads(file.read(1 << 22))
    except (OSError, ValueError):
        return None
    if (not isinstance(document, dict) or document.get("schema") != CACHE_SCHEMA
            or document.get("key") != dict(key) or not isinstance(document.get("answer"), dict)):
        return None
    answer: dict[str, Any] = document["answer"]
    return answer


def write_cache(cache_dir: Path, key: Mapping[str, str], answer: Mapping[str, Any]) -> None:
    """Write the answer atomically (a temporary file renamed over the old one)."""
    document = {"schema": CACHE_SCHEMA, "key": dict(key), "answer": dict(answer),
                "written": time.time()}
    try:
        cache_dir.mkdir(exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".nvml-", suffix=".tmp", dir=cache_dir)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(document, file)
            os.replace(temporary, cache_dir / CACHE_FILE)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:
        pass  # a read-only cache dir: probe again next time


# -- the probe -----------------------------------------------------------------------------


def probe_nvidia(environ: Mapping[str, str], *, timeout: float = 10.0,
                 cache_dir: Path | None = None) -> NvidiaFacts:
    """Driver, CUDA version and GPUs from NVML (or the cache), with ``CUDA_VISIBLE_DEVICES``
    applied. Never raises: what NVML cannot tell becomes ``reason``."""
    key = cache_key(environ) if cache_dir is not None else None
    if cache_dir is not None and key is not None:
        cached = read_cache(cache_dir, key)
        if cached is not None:
            try:
                return facts_from_answer(cached, environ, source=f"cache ({cache_dir / CACHE_FILE})")
            except (KeyError, TypeError, ValueError, AttributeError):
                pass  # corrupt: ask NVML again
    started = time.monotonic()
    answer, failure = run_query(environ, timeout)
    elapsed = time.monotonic() - started
    if answer is None:
        visible, visibility, known = _visible_without_nvml(environ.get("CUDA_VISIBLE_DEVICES"))
        return NvidiaFacts(None, None, (), visible, visibility, known, failure, elapsed=elapsed)
    try:
        facts = facts_from_answer(answer, environ, elapsed=elapsed)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        visible, visibility, known = _visible_without_nvml(environ.get("CUDA_VISIBLE_DEVICES"))
        return NvidiaFacts(None, None, (), visible, visibility, known,
                           f"unexpected NVML answer: {describe_error(error)}", elapsed=elapsed)
    if cache_dir is not None and key is not None and facts.reason is None:
        write_cache(cache_dir, key, answer)
    return facts


# -- the CUDA runtime ----------------------------------------------------------------------

#: The pip distributions that ship libcudart, by CUDA major (CUDA 13 dropped the suffix).
CUDART_DISTRIBUTIONS = ("nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu11",
                        "nvidia-cuda-runtime")

_ASK_CUDART = ("import ctypes, sys\n"
               "library = ctypes.CDLL(sys.argv[1])\n"
               "version = ctypes.c_int()\n"
               "status = library.cudaRuntimeGetVersion(ctypes.byref(version))\n"
               "print(version.value if status == 0 else -1)\n")


def loaded_cudart(maps: str = "/proc/self/maps") -> str | None:
    """The libcudart this process has already loaded (by torch, say), if any."""
    try:
        with open_regular(maps, "utf-8", "replace") as file:
            for line in file:
                path = line.split(None, 5)[-1].strip() if line.count(" ") >= 5 else ""
                if re.search(r"/libcudart\.so(\.\d+)*$", path):
                    return path
    except OSError:
        return None
    return None


def probe_cuda_runtime(environ: Mapping[str, str], *,
                       find: Callable[[str], Any] | None = None,
                       distribution_version: Callable[[str], str | None] | None = None,
                       maps: str = "/proc/self/maps", timeout: float = 10.0) -> CudaRuntimeFacts:
    """The version of the libcudart that is loaded here, or that ``dlopen`` would find.

    The version comes from the real file's name (``libcudart.so.12.4.127``);
    when that says only the major (pip's ``nvidia-cuda-runtime-cu12`` ships
    ``libcudart.so.12``), from the distribution that installed it, and last
    from ``cudaRuntimeGetVersion`` in a child process with a time limit (it
    needs no GPU and initialises nothing, but it is still not done here).
    """
    from pytest_envguard.probes import loader

    loaded = loaded_cudart(maps)
    source: str | None = "loaded in this process"
    if loaded:
        path = loaded
    else:
        found = (find or (lambda name: loader.find_library(name, environ)))("cudart")
        if found.path is None:
            return CudaRuntimeFacts(None, None, None, reason=found.reason or "no libcudart.so found")
        path, source = str(found.path), found.source
    real = os.path.realpath(path)
    version = loader.library_version(os.path.basename(path), real)
    version_source = f"file name {os.path.basename(real)}"
    if version is None or "." not in version:
        if os.sep + os.path.join("nvidia", "cuda_runtime", "lib") in path and distribution_version:
            for name in CUDART_DISTRIBUTIONS:
                candidate = distribution_version(name)
                if candidate and (version is None or candidate.split(".")[0] == version):
                    return CudaRuntimeFacts(candidate, path, source, f"distribution {name}")
        asked = _ask_cudart(path, environ, timeout)
        if asked is not None:
            return CudaRuntimeFacts(asked, path, source, "cudaRuntimeGetVersion()")
    if version is None:
        return CudaRuntimeFacts(None, path, source,
                                reason=f"the version of {path} is not in its name and the library "
                                       "did not tell it")
    return CudaRuntimeFacts(version, path, source, version_source)


def _ask_cudart(path: str, environ: Mapping[str, str], timeout: float) -> str | None:
    try:
        result = subprocess.run([sys.executable, "-c", _ASK_CUDART, path], env=dict(environ),
                                capture_output=True, text=True, timeout=timeout, check=False)
        value = int(result.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return cuda_version(value) if value > 0 else None

