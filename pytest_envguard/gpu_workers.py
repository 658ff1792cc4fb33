"""One GPU (or a few) per pytest-xdist worker: an opt-in split of the visible devices.

With ``pytest -n 4`` on a 4-GPU machine every worker sees every GPU and
frameworks put their work on device 0, so four workers pile onto one GPU and
run out of memory. :func:`split_for_worker` gives each worker its share of
what *this job* may use, as a ``CUDA_VISIBLE_DEVICES`` value:

* when ``CUDA_VISIBLE_DEVICES`` is already set (by a scheduler like Slurm or
  Kubernetes, or by hand), its entries are split, never the physical GPUs: a
  job given ``2,3`` hands ``2`` to one worker and ``3`` to the other;
* when it is unset, the CUDA device ordinals ``0…n-1`` are split, ``n``
  being the GPUs CUDA would see (from NVML), so the order is CUDA's own;
* with more GPUs than workers each worker gets a contiguous block; with fewer,
  workers share them round robin (``gw0`` and ``gw2`` on GPU 0, …);
* ``per_worker=k`` gives every worker ``k`` devices, wrapping round.

The value must be set before anything in the worker initialises CUDA, so the
plugin applies it in ``pytest_configure`` of each worker, before the session
contract is checked (which then sees the worker's share).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_ORDINAL = re.compile(r"\+?\d+")


@dataclass(frozen=True)
class WorkerGpus:
    """What one xdist worker should see."""

    worker: str  # "gw1"
    devices: str | None  # the CUDA_VISIBLE_DEVICES value to set; None: leave it alone
    reason: str  # in words, for the report


def visible_entries(setting: str | None, visible_count: int | None) -> list[str] | None:
    """The entries of ``CUDA_VISIBLE_DEVICES`` that name a visible device, in order.

    ``None`` when they cannot be told (unset, and NVML did not answer).
    """
    if setting is None:
        return None if visible_count is None else [str(index) for index in range(visible_count)]
    entries: list[str] = []
    parts = [part.strip() for part in setting.split(",")]
    by_uuid = parts[0].startswith(("GPU-", "MIG-"))
    for part in parts:
        valid = part.startswith(("GPU-", "MIG-")) if by_uuid else bool(_ORDINAL.match(part))
        if not valid:
            break
        if part in entries:  # CUDA sees nothing when a device is named twice
            return []
        entries.append(part)
    # Entries past the first one naming no device are not visible either.
    return entries if visible_count is None else entries[:visible_count]


def split_for_worker(environ: Mapping[str, str], visible_count: int | None,
                     per_worker: int | None = None) -> WorkerGpus | None:
    """This worker's share of the visible GPUs; ``None`` outside an xdist worker.

    ``environ`` gives ``PYTEST_XDIST_WORKER`` (``gw3``, set by xdist in each
    worker), ``PYTEST_XDIST_WORKER_COUNT`` and the outer ``CUDA_VISIBLE_DEVICES``;
    ``visible_count`` is how many GPUs CUDA sees with that setting
    (``len(NvidiaFacts.visible)``), ``None`` when unknown.
    """
    worker = environ.get("PYTEST_XDIST_WORKER", "")
    match = re.fullmatch(r"gw(\d+)", worker)
    try:
        workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT", ""))
    except ValueError:
        return None
    if not match or workers < 1:
        return None
    index = int(match.group(1)) % workers
    setting = environ.get("CUDA_VISIBLE_DEVICES")
    entries = visible_entries(setting, visible_count)
    outer = "CUDA_VISIBLE_DEVICES unset" if setting is None else f"CUDA_VISIBLE_DEVICES={setting}"
    if entries is None:
        return WorkerGpus(worker, None, f"{outer} and the GPUs are unknown: not split")
    if not entries:
        return WorkerGpus(worker, None, f"{outer}: no visible GPU to split")
    count = len(entries)
    if per_worker is not None and per_worker > 0:
        chosen = [entries[(index * per_worker + step) % count] for step in range(min(per_worker, count))]
    elif count >= workers:
        base, extra = divmod(count, workers)
        start = index * base + min(index, extra)
        chosen = entries[start:start + base + (1 if index < extra else 0)]
    else:
        chosen = [entries[index % count]]
    devices = ",".join(chosen)
    return WorkerGpus(worker, devices, f"worker {worker} of {workers} gets {devices} of "
                                       f"{','.join(entries)} ({outer})")


def worker_gpus(environ: Mapping[str, str], per_worker: int | None = None, *,
                timeout: float = 10.0, cache_dir: Path | None = None) -> WorkerGpus | None:
    """:func:`split_for_worker` with the visible GPUs counted through NVML (cached)."""
    if "PYTEST_XDIST_WORKER" not in environ:
        return None
    from pytest_envguard.probes import nvidia

    facts = nvidia.probe_nvidia(environ, timeout=timeout, cache_dir=cache_dir)
    known = facts.reason is None or facts.visible_known
    return split_for_worker(environ, len(facts.visible) if known else None, per_worker)
