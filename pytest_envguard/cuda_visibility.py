"""``CUDA_VISIBLE_DEVICES`` as CUDA reads it, and each xdist worker's share of it.

Pure functions of their arguments: no OS access. :func:`select` answers
"which of the devices NVML lists would a CUDA program here see, in what
order, and why"; :func:`split_for_worker` gives one pytest-xdist worker its
share of what is visible.

As CUDA reads the variable: a comma-separated list of indices, or of
``GPU-``/``MIG-`` UUIDs (a unique prefix is enough); the list stops at the
first entry that names no device (``-1``, ``7`` on a 2-GPU machine; garbage
after the leading digits is ignored: ``1gpu`` is ``1``); a device named twice
hides every device; an empty value hides every device. Devices CUDA cannot
use (compute mode Prohibited) are not counted, a GPU in MIG mode counts as its
MIG devices, and a CUDA process enumerates at most one MIG device.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

_LEADING_NUMBER = re.compile(r"\+?\d+")
_UUID_PREFIXES = ("GPU-", "MIG-")


class Device(Protocol):
    """What the selection needs of a device (``probes.nvml.GpuFacts`` has it)."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def uuid(self) -> str: ...
    @property
    def mig(self) -> bool | None: ...
    @property
    def usable(self) -> bool: ...
    @property
    def note(self) -> str | None: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def instance(self) -> tuple[int, int] | None: ...
    @property
    def label(self) -> str: ...


@dataclass(frozen=True)
class Selection:
    """The devices CUDA would see, the variable's entries naming them, and why."""

    devices: tuple[Device, ...]
    entries: tuple[str, ...]  # CUDA_VISIBLE_DEVICES entries (CUDA ordinals when it is unset)
    explanation: str
    hides: bool = False  # the variable hides devices NVML lists


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def split_setting(setting: str) -> list[str]:
    return [part.strip() for part in setting.split(",")]


def select(devices: Sequence[Device], setting: str | None, order: str | None = None) -> Selection:
    """What a CUDA program would see of ``devices`` (every device NVML lists,
    MIG devices after their GPU) with ``CUDA_VISIBLE_DEVICES=setting``
    (``None``: unset) and ``CUDA_DEVICE_ORDER=order``."""
    physical = [device for device in devices if device.parent is None]
    migs = [device for device in devices if device.parent is not None]
    hidden: list[str] = []

    def expand(gpu: Device) -> list[Device]:
        children, note = _cuda_devices(gpu, migs)
        if note:
            hidden.append(note)
        return children

    everything = 0 if setting is None else len(select(devices, None).devices)
    chosen: list[tuple[str, Device]] = []
    if setting is None:
        for gpu in physical:
            chosen.extend(("", device) for device in expand(gpu))
        how = f"CUDA_VISIBLE_DEVICES is unset: all {len(physical)} GPU{_s(len(physical))} NVML lists"
    elif not setting.strip():
        return Selection((), (), "CUDA_VISIBLE_DEVICES is empty", hides=everything > 0)
    else:
        named, stop = _resolve(setting, physical, migs)
        if stop == "repeated":
            return Selection((), (), f"CUDA_VISIBLE_DEVICES={setting} names a device twice, so "
                                     "CUDA sees none", hides=everything > 0)
        for entry, device in named:
            if device.parent is not None:
                chosen.append((entry, device))
            else:
                chosen.extend((entry, child) for child in expand(device))
        how = f"CUDA_VISIBLE_DEVICES={setting}"
        if stop:
            how += (f": {stop!r} names no device here, so the list stops there" if stop != "-1"
                    else ": -1 ends the list")
        if (named and order != "PCI_BUS_ID"
                and any(_LEADING_NUMBER.match(part) for part in split_setting(setting))
                and len({gpu.name for gpu in physical}) > 1):
            how += ("; indices are taken in PCI bus order, as with CUDA_DEVICE_ORDER=PCI_BUS_ID "
                    "(CUDA's default order puts the fastest GPU first)")
    mig_chosen = [pair for pair in chosen if pair[1].parent is not None]
    if len(mig_chosen) > 1:
        extra = {id(pair[1]) for pair in mig_chosen[1:]}
        chosen = [pair for pair in chosen if id(pair[1]) not in extra]
        hidden.append(f"{len(extra)} more MIG device{_s(len(extra))} "
                      "(a CUDA process enumerates one MIG device)")
    if hidden:
        how += "; not counted: " + "; ".join(hidden)
    entries = tuple(entry or str(ordinal) for ordinal, (entry, _) in enumerate(chosen))
    return Selection(tuple(device for _, device in chosen), entries, how, hides=len(chosen) < everything)


def _cuda_devices(gpu: Device, migs: Sequence[Device]) -> tuple[list[Device], str | None]:
    """The CUDA devices one physical GPU gives (itself, its MIG devices, or none),
    and why it gives none."""
    if gpu.mig:
        children = [child for child in migs if child.parent == gpu.uuid]
        return children, None if children else f"{gpu.label}: {gpu.note}"
    if not gpu.usable:
        return [], f"{gpu.label}: {gpu.note}"
    return [gpu], None


def _resolve(setting: str, physical: Sequence[Device],
             migs: Sequence[Device]) -> tuple[list[tuple[str, Device]], str | None]:
    """The devices ``setting`` names, in its order, with the entry naming each, and
    the entry it stopped at (``"repeated"`` when a device was named twice)."""
    parts = split_setting(setting)
    by_uuid = parts[0].startswith(_UUID_PREFIXES)
    chosen: list[tuple[str, Device]] = []
    for part in parts:
        if by_uuid:
            device = _by_uuid(part, physical, migs)
        else:
            match = _LEADING_NUMBER.match(part)
            index = int(match.group(0)) if match else -1
            device = physical[index] if 0 <= index < len(physical) else None
        if device is None:
            return chosen, part
        if any(device is seen for _, seen in chosen):
            return [], "repeated"
        chosen.append((part, device))
    return chosen, None


def _by_uuid(part: str, physical: Sequence[Device], migs: Sequence[Device]) -> Device | None:
    if part.startswith("GPU-"):
        pool = [gpu for gpu in physical if gpu.uuid.startswith(part)]
    elif part.startswith("MIG-GPU-"):  # the CUDA 11.0 form: MIG-GPU-<uuid>/<gi>/<ci>
        uuid, _, ids = part[4:].partition("/")
        try:
            instance = tuple(int(number) for number in ids.split("/"))
        except ValueError:
            return None
        parents = [gpu.uuid for gpu in physical if gpu.uuid.startswith(uuid)]
        if len(parents) != 1:
            return None
        pool = [mig for mig in migs if mig.parent == parents[0] and mig.instance == instance]
    elif part.startswith("MIG-"):
        pool = [mig for mig in migs if mig.uuid.startswith(part)]
    else:
        return None
    return pool[0] if len(pool) == 1 else None  # unknown or ambiguous: invalid


def hides_everything(setting: str | None) -> tuple[bool, str]:
    """Without the device list: whether the setting alone hides every GPU, and
    how the setting reads. Only an empty value, or a first entry that is
    neither an index nor a UUID, tells that much."""
    if setting is None:
        return False, "CUDA_VISIBLE_DEVICES is unset"
    if not setting.strip():
        return True, "CUDA_VISIBLE_DEVICES is empty"
    first = split_setting(setting)[0]
    if not first.startswith(_UUID_PREFIXES) and not _LEADING_NUMBER.match(first):
        return True, f"CUDA_VISIBLE_DEVICES={setting} hides every GPU"
    return False, f"CUDA_VISIBLE_DEVICES={setting}"


def visible_entries(setting: str | None, count: int | None) -> tuple[str, ...] | None:
    """The visible entries when the devices themselves are not known, only how many
    GPUs are visible (an overridden ``gpus``; ``None``: not even that): CUDA ordinals
    when the variable is unset, else its leading entries that CUDA accepts, at most
    ``count`` of them. ``None`` when nothing can be told."""
    if setting is None:
        return None if count is None else tuple(str(index) for index in range(count))
    if not setting.strip():
        return ()
    parts = split_setting(setting)
    by_uuid = parts[0].startswith(_UUID_PREFIXES)
    entries: list[str] = []
    for part in parts:
        if not (part.startswith(_UUID_PREFIXES) if by_uuid else _LEADING_NUMBER.match(part)):
            break
        if part in entries:
            return ()  # a device named twice: CUDA sees none
        entries.append(part)
    return tuple(entries if count is None else entries[:count])


# -- one share per xdist worker ------------------------------------------------------------


@dataclass(frozen=True)
class WorkerShare:
    """What one xdist worker should see."""

    worker: str  # "gw1"
    devices: str | None  # the CUDA_VISIBLE_DEVICES value to set; None: leave it alone
    reason: str  # in words, for the report


_WORKER = re.compile(r"gw(\d+)")


def split_for_worker(worker: str, workers: int, entries: Sequence[str] | None, outer: str | None,
                     per_worker: int | None = None) -> WorkerShare | None:
    """Worker ``worker`` (``gw3``) of ``workers``: its share of ``entries`` (the visible
    entries; ``None`` when unknown). ``outer`` is the ``CUDA_VISIBLE_DEVICES`` the run
    started with. More GPUs than workers: each gets a contiguous block; fewer: workers
    share them round robin; ``per_worker=k``: ``k`` devices each, wrapping round."""
    match = _WORKER.fullmatch(worker)
    if not match or workers < 1:
        return None
    index = int(match.group(1)) % workers
    where = "CUDA_VISIBLE_DEVICES unset" if outer is None else f"CUDA_VISIBLE_DEVICES={outer}"
    if entries is None:
        return WorkerShare(worker, None, f"{where} and the GPUs are unknown: not split")
    if not entries:
        return WorkerShare(worker, None, f"{where}: no visible GPU to split")
    count = len(entries)
    if per_worker is not None and per_worker > 0:
        chosen = [entries[(index * per_worker + step) % count] for step in range(min(per_worker, count))]
    elif count >= workers:
        base, extra = divmod(count, workers)
        start = index * base + min(index, extra)
        chosen = list(entries[start:start + base + (1 if index < extra else 0)])
    else:
        chosen = [entries[index % count]]
    devices = ",".join(chosen)
    return WorkerShare(worker, devices, f"worker {worker} of {workers} gets {devices} of "
                                        f"{','.join(entries)} ({where})")
