"""CUDA and GPUs: ``cuda``, ``driver``, ``cuda-runtime``, and the GPU lines
(``gpus``, ``gpu-memory``, ``compute-capability``, ``gpu``) judged together."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from pytest_envguard import units
from pytest_envguard.checks.basic import compare_version, satisfies
from pytest_envguard.environment import Environment, override_name
from pytest_envguard.grammar import Requirement
from pytest_envguard.probes import Failure
from pytest_envguard.verdicts import NOTHING_FOUND, Status, Verdict, listing, met, plural, unknown, unmet

if TYPE_CHECKING:
    from pytest_envguard.probes.nvml import GpuFacts, NvidiaFacts
    from pytest_envguard.targets import RehearsedGpu


def _nvml_hint(facts: NvidiaFacts) -> str | None:
    from pytest_envguard import hints

    return hints.nvml_hint(facts.error_code, timed_out=facts.failure is Failure.TIMEOUT)


def _nvml_unknown(requirement: Requirement, env: Environment, **kw: Any) -> Verdict:
    facts = env.nvidia
    return unknown(requirement, facts.reason or "NVML gave no answer", hint=_nvml_hint(facts), **kw)


def _lower_bound(requirement: Requirement) -> str | None:
    """The lowest version a specifier asks for (``>=12.4``, ``==12.*`` → ``12``), if any."""
    for op, value in requirement.constraints:
        if op in (">=", ">", "==", "~=", "==="):
            return value.removesuffix(".*")
    return None


def _overridden_version(requirement: Requirement, env: Environment, key: str,
                        what: str, hint: Callable[[], str | None]) -> Verdict | None:
    """The verdict from ``ENVGUARD_OVERRIDE_<KEY>``, or None when it is not set."""
    value = env.override(key)
    if value is None:
        return None
    if not value:
        source = env.override_source(key)
        absent = (f"{source} is empty: no {what}" if source == override_name(key)
                  else f"{source} has no {what}")
        return unmet(requirement, "absent (overridden)", absent, hint=hint(), overridden=True)
    return compare_version(requirement, value, what=what, hint=hint, overridden=True)


def check_cuda(requirement: Requirement, env: Environment) -> Verdict:
    wanted = _lower_bound(requirement)

    def hint() -> str | None:
        from pytest_envguard import hints

        return hints.driver_for_cuda(wanted) if wanted else None

    overridden = _overridden_version(requirement, env, "cuda", "CUDA", hint)
    if overridden is not None:
        return overridden
    facts = env.nvidia
    if facts.failure is not None:
        return _nvml_unknown(requirement, env)
    if facts.cuda is None:
        return unknown(requirement, "NVML did not report the CUDA version: "
                       + (listing(list(facts.notes)) or "no answer"))
    verdict = compare_version(requirement, facts.cuda, what="CUDA", hint=hint)
    return replace(verdict, reason=f"{verdict.reason} (the highest the driver "
                                   f"{facts.driver or '?'} supports)")


def check_driver(requirement: Requirement, env: Environment) -> Verdict:
    wanted = _lower_bound(requirement)

    def hint() -> str:
        return f"upgrade the NVIDIA driver to >= {wanted}" if wanted else "install the NVIDIA driver"

    overridden = _overridden_version(requirement, env, "driver", "NVIDIA driver", hint)
    if overridden is not None:
        return overridden
    facts = env.nvidia
    if facts.failure is not None:
        return _nvml_unknown(requirement, env)
    return compare_version(requirement, facts.driver, what="NVIDIA driver", hint=hint,
                           missing="NVML did not report the driver version")


def _major_minor(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:2]:
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def check_cuda_runtime(requirement: Requirement, env: Environment) -> Verdict:
    from pytest_envguard import hints

    facts = env.cuda_runtime
    if facts.path is None:
        if facts.failure is not Failure.MISSING:
            return unknown(requirement, facts.reason or "the CUDA runtime could not be looked for")
        return unmet(requirement, NOTHING_FOUND, facts.reason or "no libcudart.so found",
                     hint=hints.library_hint("libcudart"))
    if facts.version is None:
        return unknown(requirement, facts.reason or f"the version of {facts.path} is unknown")
    verdict = compare_version(requirement, facts.version, what="the CUDA runtime",
                              hint=lambda: hints.library_hint("libcudart"))
    reason = f"{verdict.reason}: {facts.path} ({facts.source}; version from {facts.version_source})"
    # Against the driver: a runtime of a newer CUDA major than the driver supports fails
    # with "CUDA driver version is insufficient"; a newer minor runs (minor version
    # compatibility) but cannot JIT newer PTX.
    driver_cuda, overridden = env.override("cuda"), True
    if driver_cuda is None:
        nvidia = env.nvidia
        driver_cuda, overridden = (nvidia.cuda if nvidia.failure is None else None), False
    runtime, driver = _major_minor(facts.version), _major_minor(driver_cuda or "")
    if runtime and driver:
        source = env.override_source("cuda") if overridden else "the driver"
        if runtime[0] > driver[0]:
            return unmet(requirement, verdict.found,
                         f"{reason}; but {source} supports only CUDA {driver_cuda}: CUDA programs "
                         "fail with 'CUDA driver version is insufficient'",
                         hint=hints.driver_for_cuda(".".join(map(str, runtime))),
                         overridden=overridden)
        if runtime[0] == driver[0] and len(runtime) > 1 and runtime > driver:
            reason += (f"; newer than CUDA {driver_cuda} of {source}: it runs through minor "
                       "version compatibility, but PTX newer than the driver cannot be JIT-compiled")
    # Judged against an overridden driver: said so.
    return replace(verdict, reason=reason,
                   overridden=verdict.overridden or (overridden and bool(runtime and driver)))


@dataclass(frozen=True)
class _Gpu:
    """One GPU as the GPU lines see it (a real one, or one an override adds)."""

    label: str
    name: str | None
    memory: int | None
    capability: str | None  # "" when ENVGUARD_OVERRIDE_COMPUTE_CAPABILITY says absent


@dataclass(frozen=True)
class _Pool:
    """The GPUs the GPU lines are judged against, and why those."""

    gpus: tuple[_Gpu, ...]
    visibility: str  # why these GPUs, in words
    hidden: bool = False  # CUDA_VISIBLE_DEVICES hides GPUs NVML lists
    reason: str | None = None  # why the GPUs are unknown
    hint: str | None = None
    count_overridden: bool = False  # the GPUs are rehearsed (ENVGUARD_OVERRIDE_GPUS, a target)
    capability_overridden: bool = False
    count_only: str | None = None  # what rehearses them, when it gives only a count


@dataclass(frozen=True)
class GpuView:
    """The GPUs a CUDA program here would see, as far as they are known."""

    devices: tuple[GpuFacts, ...]
    explanation: str  # how CUDA_VISIBLE_DEVICES selects them, in words
    entries: tuple[str, ...] | None  # the CUDA_VISIBLE_DEVICES entries naming them (None: unknown)
    known: bool  # False: NVML did not answer and the setting alone does not tell
    hides: bool = False  # CUDA_VISIBLE_DEVICES hides GPUs NVML lists (or may)
    reason: str | None = None  # why NVML did not answer (or the override cannot be read)
    rehearsed: tuple[RehearsedGpu, ...] | None = None  # per device, when the GPUs are rehearsed


def rehearsed_gpus(env: Environment) -> tuple[RehearsedGpu, ...] | None:
    """The GPUs ``ENVGUARD_OVERRIDE_GPUS`` (or the target) describes, in NVML's order;
    None when the GPUs are not rehearsed. Raises ``TargetError`` for a value that does
    not parse."""
    value = env.override("gpus")
    if value is None:
        return None
    from pytest_envguard.targets import parse_gpus

    return parse_gpus(value)


def _rehearsed_device(index: int, gpu: RehearsedGpu) -> GpuFacts:
    from pytest_envguard.probes.nvml import GpuFacts

    return GpuFacts(index, gpu.name or "overridden", f"GPU-rehearsed-{index:04d}", gpu.memory,
                    None, gpu.capability)


def _rehearsed_view(env: Environment, gpus: tuple[RehearsedGpu, ...]) -> GpuView:
    """What CUDA_VISIBLE_DEVICES leaves visible of the rehearsed GPUs, as CUDA would apply
    it to that many real ones (so each xdist worker's share is what it would be there)."""
    from pytest_envguard import cuda_visibility

    setting = env.environ.get("CUDA_VISIBLE_DEVICES")
    source = env.override_source("gpus")
    devices = [_rehearsed_device(index, gpu) for index, gpu in enumerate(gpus)]
    if setting is not None and setting.strip() and \
            cuda_visibility.split_setting(setting)[0].startswith(("GPU-", "MIG-")):
        # UUIDs name real GPUs; the rehearsed ones have none: the entries count as
        # the first GPUs.
        entries = cuda_visibility.visible_entries(setting, len(devices)) or ()
        named = devices[:len(entries)]
        return GpuView(tuple(named), f"{source} ({len(devices)} GPUs); CUDA_VISIBLE_DEVICES="
                       f"{setting} names GPUs by UUID, taken as the first {len(named)}",
                       tuple(entries), True, hides=len(named) < len(devices),
                       rehearsed=tuple(gpus[device.index] for device in named))
    selection = cuda_visibility.select(devices, setting, env.environ.get("CUDA_DEVICE_ORDER"))
    chosen = cast("tuple[GpuFacts, ...]", selection.devices)
    explanation = selection.explanation.replace(
        f"all {len(devices)} GPU{'' if len(devices) == 1 else 's'} NVML lists",
        f"all {len(devices)}")
    return GpuView(chosen, f"{source} ({len(devices)} GPUs); {explanation}", selection.entries,
                   True, hides=selection.hides,
                   rehearsed=tuple(gpus[device.index] for device in chosen))


def visible_gpus(env: Environment) -> GpuView:
    """What ``CUDA_VISIBLE_DEVICES`` (and ``CUDA_DEVICE_ORDER``) leave visible of the
    devices NVML lists, as CUDA applies them — or of the rehearsed GPUs, when
    ``ENVGUARD_OVERRIDE_GPUS`` (or a target) describes them: NVML is then not asked."""
    from pytest_envguard import cuda_visibility
    from pytest_envguard.targets import TargetError

    try:
        rehearsed = rehearsed_gpus(env)
    except TargetError as error:
        return GpuView((), "", None, known=False,
                       reason=f"{env.override_source('gpus')}={env.override('gpus')!r}: {error}")
    if rehearsed is not None:
        return _rehearsed_view(env, rehearsed)
    facts = env.nvidia
    setting = env.environ.get("CUDA_VISIBLE_DEVICES")
    if facts.failure is not None:
        hides, how = cuda_visibility.hides_everything(setting)
        return GpuView((), how, cuda_visibility.visible_entries(setting, None), known=hides,
                       hides=hides or setting is not None, reason=facts.reason)
    selection = cuda_visibility.select(facts.devices, setting, env.environ.get("CUDA_DEVICE_ORDER"))
    devices = cast("tuple[GpuFacts, ...]", selection.devices)
    return GpuView(devices, selection.explanation, selection.entries, True, hides=selection.hides)


def _gpu_pool(env: Environment) -> _Pool:
    capability_override = env.override("compute-capability")
    view = visible_gpus(env)
    overridden = env.override("gpus") is not None
    if not view.known:
        return _Pool((), "", reason=view.reason, count_overridden=overridden,
                     hint=None if overridden else _nvml_hint(env.nvidia))
    if view.rehearsed is not None:
        gpus = [_Gpu(device.label if gpu.name else f"GPU {device.index} (overridden)",
                     gpu.name, gpu.memory, gpu.capability)
                for device, gpu in zip(view.devices, view.rehearsed, strict=True)]
    else:
        gpus = [_Gpu(gpu.label, gpu.name, gpu.memory_total, gpu.capability)
                for gpu in view.devices]
    if capability_override is not None:
        gpus = [replace(gpu, capability=capability_override) for gpu in gpus]
    count_only = None
    if view.rehearsed is not None and any(gpu.name is None for gpu in view.rehearsed):
        count_only = env.override_source("gpus")
    return _Pool(tuple(gpus), view.explanation, view.hides, count_overridden=overridden,
                 capability_overridden=capability_override is not None, count_only=count_only)


def _gpu_meets(requirement: Requirement, gpu: _Gpu) -> bool | None:
    """Whether one GPU meets one GPU line; None when its value is unknown."""
    import fnmatch

    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    if requirement.key == "gpu-memory":
        return None if gpu.memory is None else satisfies(gpu.memory, requirement.constraints,
                                                         size=True)
    if requirement.key == "compute-capability":
        if gpu.capability is None:
            return None
        if not gpu.capability:
            return False
        try:
            version = Version(gpu.capability)
        except InvalidVersion:
            return None
        return SpecifierSet(requirement.specifier).contains(version, prereleases=True)
    if gpu.name is None:
        return None
    return fnmatch.fnmatchcase(gpu.name.lower(), (requirement.argument or "").lower())


def _gpu_value(requirement: Requirement, gpu: _Gpu) -> str:
    if requirement.key == "gpu-memory":
        return units.format_size(gpu.memory) if gpu.memory is not None else "unknown"
    if requirement.key == "compute-capability":
        return gpu.capability or ("absent" if gpu.capability == "" else "unknown")
    return gpu.name or "unknown"


def _gpu_found(requirement: Requirement, gpus: Sequence[_Gpu]) -> str:
    """The GPUs' values for one line: ``2× 79.6 GiB`` or ``9.0, 7.5``."""
    if not gpus:
        return "no GPU"
    counts: dict[str, int] = {}
    for gpu in gpus:
        value = _gpu_value(requirement, gpu)
        counts[value] = counts.get(value, 0) + 1
    return ", ".join(f"{n}× {value}" if n > 1 else value for value, n in counts.items())


_GPU_WHAT = {"gpu-memory": "memory", "compute-capability": "compute capability", "gpu": "name"}

_GPU_HINTS = {
    "gpu-memory": "run on a GPU with more memory (CUDA_VISIBLE_DEVICES can pick the larger one)",
    "compute-capability": "run on a newer GPU, or install a build compiled for this GPU's "
                          "architecture",
    "gpu": "run on a worker with that GPU model (the argument is a glob: '*H100*')",
}


def check_gpu_group(requirements: Sequence[Requirement], env: Environment) -> list[Verdict]:
    """``gpus``, ``gpu-memory``, ``compute-capability``, ``gpu`` as one question:
    at least N visible GPUs each of which meets the other GPU lines (DESIGN.md §1).

    ``gpus`` lines count the visible GPUs that meet every other GPU line
    (``gpus >=1`` when there is none). When the group is met every line is;
    when not, a property line is unmet if some visible GPU fails it, and met
    if every visible GPU meets it (it is not the cause).
    """
    property_lines = [r for r in requirements if r.key != "gpus"]
    count_lines = [r.constraints for r in requirements if r.key == "gpus"] or [((">=", "1"),)]
    pool = _gpu_pool(env)
    if pool.reason is not None:
        return [unknown(r, pool.reason, hint=pool.hint, overridden=pool.count_overridden)
                for r in requirements]
    gpus = pool.gpus
    meets = [[_gpu_meets(r, gpu) for gpu in gpus] for r in property_lines]
    every: list[bool | None] = []
    for column in range(len(gpus)):
        answers = [row[column] for row in meets]
        every.append(False if False in answers else None if None in answers else True)
    yes, maybe = every.count(True), every.count(None)

    def counted(n: int, constraints: Sequence[Sequence[tuple[str, str]]]) -> bool:
        return all(satisfies(n, clauses, size=False) for clauses in constraints)

    def status(constraints: Sequence[Sequence[tuple[str, str]]]) -> Status:
        if counted(yes, constraints):
            return Status.MET
        if any(counted(n, constraints) for n in range(yes + 1, yes + maybe + 1)):
            return Status.UNKNOWN
        return Status.UNMET

    group = status(count_lines)
    lines = ", ".join(str(r) for r in property_lines)
    gpu_lines = iter(meets)
    verdicts = []
    for requirement in requirements:
        if requirement.key == "gpus":
            own = status([requirement.constraints])
            found = str(yes) + (f" (+{maybe} unknown)" if maybe else "")
            if pool.count_overridden:
                found += " (overridden)"
            reason = (f"{_of_visible(yes, len(gpus))} {lines}" if property_lines
                      else plural(len(gpus), "visible GPU")) + f" ({pool.visibility})"
            hint = None
            if own is Status.UNMET:
                hint = ("CUDA_VISIBLE_DEVICES hides GPUs: unset it or name more devices"
                        if pool.hidden else "too few of the rehearsed machine's GPUs meet "
                        "it: describe another one (ENVGUARD_OVERRIDE_GPUS, --envguard-target)"
                        if pool.count_overridden else "run on a worker with (more) NVIDIA "
                        "GPUs, or set ENVGUARD_OVERRIDE_GPUS to exercise the suite's GPU gating")
            verdicts.append(Verdict(requirement, own, found, reason, hint,
                                    overridden=pool.count_overridden))
            continue
        row = next(gpu_lines)
        found = _gpu_found(requirement, gpus)
        overridden = pool.count_overridden or (
            requirement.key == "compute-capability" and pool.capability_overridden)
        if overridden:
            found += " (overridden)"
        what = _GPU_WHAT[requirement.key]
        fitting = [gpu.label for gpu, ok in zip(gpus, row, strict=True) if ok]
        failing = [f"{gpu.label}: {_gpu_value(requirement, gpu)}"
                   for gpu, ok in zip(gpus, row, strict=True) if ok is False]
        if group is Status.MET:
            verdicts.append(met(requirement, found, f"{plural(len(fitting), 'visible GPU')} "
                                f"{'meets' if len(fitting) == 1 else 'meet'} it: "
                                f"{listing(fitting)}", overridden=overridden))
        elif not gpus:
            verdicts.append(unmet(requirement, found, f"no visible GPU ({pool.visibility})",
                                  hint=_GPU_HINTS[requirement.key], overridden=overridden))
        elif not failing and None not in row:
            verdicts.append(met(requirement, found, f"every visible GPU meets it ({what}: {found})",
                                overridden=overridden))
        elif None in row and (group is Status.UNKNOWN or (pool.count_only and not failing)):
            # Rehearsed GPUs of which only the count is known: none fails the line, and
            # their values are unknown by construction, so it is never unmet.
            verdicts.append(unknown(requirement, _unknown_values(what, gpus, row, pool),
                                    found=found, overridden=overridden))
        else:
            together = (" — but not with the other GPU lines on the same GPUs"
                        if len(property_lines) > 1 and counted(len(fitting), count_lines) else "")
            verdicts.append(unmet(requirement, found,
                                  f"{_of_visible(len(fitting), len(gpus))} it"
                                  f"{together}; {what}: {listing(failing) or found}",
                                  hint=_GPU_HINTS[requirement.key], overridden=overridden))
    return verdicts


def _unknown_values(what: str, gpus: Sequence[_Gpu], row: Sequence[bool | None],
                    pool: _Pool) -> str:
    """Whose value is unknown, and which override would tell it."""
    unknowns = [gpu.label for gpu, ok in zip(gpus, row, strict=True) if ok is None]
    reason = f"the {what} of {listing(unknowns)} is unknown"
    if pool.count_only:
        reason += (f": {pool.count_only} gives only a count; a list name:MiB:cc;… "
                   "(e.g. 'A100 80GB:81920:8.0') would answer it")
    return reason


def _of_visible(count: int, total: int) -> str:
    """``0 of 1 visible GPU meets``, ``1 of 2 visible GPUs meets``, ``0 of 2 visible GPUs meet``."""
    verb = "meets" if 1 in (count, total) else "meet"
    return f"{count} of {plural(total, 'visible GPU')} {verb}"


def _one_gpu_line(requirement: Requirement, env: Environment) -> Verdict:
    return check_gpu_group([requirement], env)[0]


CHECKS: dict[str, Callable[[Requirement, Environment], Verdict]] = {
    "cuda": check_cuda,
    "driver": check_driver,
    "cuda-runtime": check_cuda_runtime,
    "gpus": _one_gpu_line,
    "gpu-memory": _one_gpu_line,
    "compute-capability": _one_gpu_line,
    "gpu": _one_gpu_line,
}
