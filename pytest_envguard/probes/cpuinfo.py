"""The CPU's feature flags and model, from ``/proc/cpuinfo`` (the ``cpu`` key)."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_envguard.probes import Facts, Failure
from pytest_envguard.probes._io import explain, failure_of, read_text


@dataclass(frozen=True)
class CpuFacts(Facts):
    """The CPU's feature flags (``cpu``), from ``/proc/cpuinfo``."""

    flags: tuple[str, ...]
    model: str | None
    reason: str | None = None
    failure: Failure | None = None


def probe_cpu(cpuinfo: str = "/proc/cpuinfo") -> CpuFacts:
    try:
        text = read_text(cpuinfo, 16 << 20)
    except (OSError, ValueError) as error:
        return CpuFacts((), None, explain(cpuinfo, error), failure_of(error))
    flags: tuple[str, ...] = ()
    model = None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name in ("flags", "Features") and not flags:
            flags = tuple(sorted(set(value.split())))
        elif name in ("model name", "Processor", "CPU part") and model is None:
            model = value.strip()
        if flags and model:
            break
    if not flags:
        return CpuFacts((), model, f"no CPU flags in {cpuinfo}", Failure.CORRUPT)
    return CpuFacts(flags, model)
