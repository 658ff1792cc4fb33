"""Target machines to rehearse: what ``--envguard-target NAME`` judges as if on.

A target is a set of overrides (DESIGN.md §3, ``ENVGUARD_OVERRIDE_<KEY>``) with
a name and a source: the plugin applies it as it applies the variables, never
touching the hardware or the process environment. Three kinds:

* the manylinux and musllinux policies (``manylinux2014``, ``manylinux_2_28``,
  ``musllinux_1_2``, …): a C library and its version, the machines the policy
  covers, the system libraries a wheel of that policy may load from the
  machine, and the highest symbol version of each family those libraries
  define there (:data:`POLICIES`);
* CUDA workers, named ``cuda-X.Y[-GPU[xN]]`` (``cuda-11.8-t4x2``): the driver
  NVIDIA ships with that toolkit (:data:`pytest_envguard.hints.CUDA_TOOLKIT_DRIVER`)
  and N GPUs of a model in :data:`GPU_MODELS`;
* a user's profiles, from a small TOML file (:func:`user_targets`).

Pure: knowledge as data and the parsing of override values; no OS access.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from pytest_envguard import units


class TargetError(ValueError):
    """A target name, profile or override value that is not valid (the message says
    what was given and where it came from)."""


#: The keys a target (or an ``ENVGUARD_OVERRIDE_<KEY>`` variable) may describe.
TARGET_KEYS = ("glibc", "musl", "cuda", "driver", "gpus", "compute-capability")


# -- rehearsed GPUs: ENVGUARD_OVERRIDE_GPUS ---------------------------------------------------

#: The most GPUs one override may describe: a bound on what a variable makes us build.
MAX_REHEARSED_GPUS = 1024
MIB = 1 << 20


class RehearsedGpu(NamedTuple):
    """One GPU of a rehearsed machine: what an ``ENVGUARD_OVERRIDE_GPUS`` list says
    of it (``None``: a count alone says nothing of it)."""

    name: str | None
    memory: int | None  # bytes
    capability: str | None  # "8.0"


_CAPABILITY = re.compile(r"\d{1,3}\.\d{1,3}")


def parse_gpus(text: str) -> tuple[RehearsedGpu, ...]:
    """``ENVGUARD_OVERRIDE_GPUS``: a count (``2``; empty: none) or a list
    ``name:MiB:cc;…`` (``A100 80GB:81920:8.0;A100 80GB:81920:8.0``). A count gives
    GPUs whose properties are unknown. Raises :class:`TargetError`."""
    stripped = text.strip()
    if not stripped:
        return ()
    if ":" not in stripped:
        try:
            count = units.parse_count(stripped)
        except units.UnitError as error:
            raise TargetError(f"{error} (expected a count, or a list name:MiB:cc;…)") from None
        if count > MAX_REHEARSED_GPUS:
            raise TargetError(f"{count} GPUs: more than {MAX_REHEARSED_GPUS}")
        return (RehearsedGpu(None, None, None),) * count
    items = [item.strip() for item in stripped.split(";") if item.strip()]
    if len(items) > MAX_REHEARSED_GPUS:
        raise TargetError(f"{len(items)} GPUs: more than {MAX_REHEARSED_GPUS}")
    return tuple(_one_gpu(item) for item in items)


def _one_gpu(item: str) -> RehearsedGpu:
    parts = item.rsplit(":", 2)  # the name may hold a colon, the numbers never do
    if len(parts) != 3 or not parts[0].strip():
        raise TargetError(f"{item!r} is not name:MiB:cc (e.g. 'A100 80GB:81920:8.0')")
    name, memory, capability = (part.strip() for part in parts)
    if not memory.isdigit() or int(memory) == 0:
        raise TargetError(f"{item!r}: the memory {memory!r} is not a number of MiB (e.g. 81920)")
    if not _CAPABILITY.fullmatch(capability):
        raise TargetError(f"{item!r}: the compute capability {capability!r} is not major.minor "
                          "(e.g. 8.0)")
    return RehearsedGpu(name, int(memory) * MIB, capability)


def format_gpus(gpus: tuple[RehearsedGpu, ...]) -> str:
    """The override value that describes ``gpus`` (the inverse of :func:`parse_gpus`)."""
    if all(gpu.name is None for gpu in gpus):
        return str(len(gpus))
    return ";".join(f"{gpu.name}:{(gpu.memory or 0) // MIB}:{gpu.capability}" for gpu in gpus)


# -- GPU models of the CUDA-worker profiles ----------------------------------------------------

# Source: the name, total memory and compute capability NVML reports for each card, as
# nvidia-smi --query-gpu=name,memory.total,compute_cap prints them (memory in MiB: less
# than the data sheet's nominal size on most cards, and what `gpu-memory` is judged by);
# the H100's from the real H100 80GB HBM3 this project's tests replay
# (tests/test_nvml.py::test_replay_of_a_real_h100). Capabilities: NVIDIA's "CUDA GPUs"
# table (developer.nvidia.com/cuda-gpus).
GPU_MODELS: dict[str, RehearsedGpu] = {
    "t4": RehearsedGpu("Tesla T4", 15360 * MIB, "7.5"),
    "v100": RehearsedGpu("Tesla V100-SXM2-16GB", 16384 * MIB, "7.0"),
    "a10g": RehearsedGpu("NVIDIA A10G", 23028 * MIB, "8.6"),
    "l4": RehearsedGpu("NVIDIA L4", 23034 * MIB, "8.9"),
    "a100-40gb": RehearsedGpu("NVIDIA A100-SXM4-40GB", 40960 * MIB, "8.0"),
    "a100-80gb": RehearsedGpu("NVIDIA A100-SXM4-80GB", 81920 * MIB, "8.0"),
    "h100": RehearsedGpu("NVIDIA H100 80GB HBM3", 81559 * MIB, "9.0"),
}


# -- the manylinux and musllinux policies ---------------------------------------------------------

# Source: auditwheel's policy data (src/auditwheel/policy/manylinux-policy.json and
# musllinux-policy.json, auditwheel 6.x): for each policy, its libc version, the
# machines it covers ("symbol_versions" keys), its "lib_whitelist" (the system
# libraries a wheel of that policy may leave to the machine), and the highest
# numbered symbol version of each family in its x86_64 column. PEP 513, 571, 599
# and 600 define the tags; PEP 656 the musllinux ones.

_LIBS_2_5 = ("libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0",
             "libresolv.so.2", "libutil.so.1", "libnsl.so.1", "libanl.so.1", "libgcc_s.so.1",
             "libstdc++.so.6", "libatomic.so.1", "libz.so.1", "libGL.so.1", "libX11.so.6",
             "libXext.so.6", "libXrender.so.1", "libICE.so.6", "libSM.so.6",
             "libglib-2.0.so.0", "libgobject-2.0.so.0", "libgthread-2.0.so.0")
_LIBS_2_12 = (*_LIBS_2_5, "libexpat.so.1")  # manylinux2010 and manylinux2014
_LIBS_2_24 = (*_LIBS_2_12, "libmvec.so.1")  # from manylinux_2_24 on
_LIBS_MUSL = ("libc.so", "libz.so.1")

_MANYLINUX_MACHINES = ("x86_64", "i686", "aarch64", "ppc64le", "s390x", "armv7l")


class Policy(NamedTuple):
    """One manylinux or musllinux policy, as auditwheel's policy data describes it."""

    name: str  # "manylinux_2_17"
    alias: str | None  # "manylinux2014"
    libc: str  # "glibc" or "musl"
    version: str  # "2.17"
    machines: tuple[str, ...]
    libraries: tuple[str, ...]  # the system libraries its wheels may load from the machine
    ceilings: tuple[tuple[str, str], ...]  # (family, highest version) on x86_64, libc's too
    pep: str


def _manylinux(minor: int, alias: str | None, machines: tuple[str, ...],
               libraries: tuple[str, ...], cxxabi: str, gcc: str, glibcxx: str,
               zlib: str | None, libatomic: str | None, pep: str) -> Policy:
    ceilings = [("GLIBC", f"2.{minor}"), ("CXXABI", cxxabi), ("GCC", gcc), ("GLIBCXX", glibcxx)]
    ceilings += [("ZLIB", zlib)] if zlib else []
    ceilings += [("LIBATOMIC", libatomic)] if libatomic else []
    return Policy(f"manylinux_2_{minor}", alias, "glibc", f"2.{minor}", machines, libraries,
                  tuple(ceilings), pep)


_WIDE = (*_MANYLINUX_MACHINES, "riscv64")
_WIDEST = (*_WIDE, "loongarch64")

POLICIES: dict[str, Policy] = {policy.name: policy for policy in (
    _manylinux(5, "manylinux1", ("x86_64", "i686"), _LIBS_2_5, "1.3.1", "4.2.0", "3.4.8",
               None, None, "PEP 513"),
    _manylinux(12, "manylinux2010", ("x86_64", "i686"), _LIBS_2_12, "1.3.3", "4.3.0", "3.4.13",
               "1.2.2.4", None, "PEP 571"),
    _manylinux(17, "manylinux2014", (*_MANYLINUX_MACHINES, "ppc64"), _LIBS_2_12, "1.3.7",
               "4.8.0", "3.4.19", "1.2.5.2", None, "PEP 599"),
    _manylinux(24, None, _MANYLINUX_MACHINES, _LIBS_2_24, "1.3.10", "4.8.0", "3.4.22",
               "1.2.5.2", "1.2", "PEP 600"),
    _manylinux(26, None, _MANYLINUX_MACHINES, _LIBS_2_24, "1.3.10", "4.8.0", "3.4.22",
               "1.2.5.2", "1.2", "PEP 600"),
    _manylinux(27, None, _MANYLINUX_MACHINES, _LIBS_2_24, "1.3.11", "7.0.0", "3.4.24",
               "1.2.9", "1.2", "PEP 600"),
    _manylinux(28, None, _MANYLINUX_MACHINES, _LIBS_2_24, "1.3.11", "7.0.0", "3.4.24",
               "1.2.9", "1.2", "PEP 600"),
    _manylinux(31, None, _WIDE, _LIBS_2_24, "1.3.12", "7.0.0", "3.4.28", "1.2.9", "1.2",
               "PEP 600"),
    _manylinux(34, None, _WIDE, _LIBS_2_24, "1.3.13", "7.0.0", "3.4.29", "1.2.9", "1.2",
               "PEP 600"),
    _manylinux(35, None, _WIDE, _LIBS_2_24, "1.3.13", "12.0.0", "3.4.30", "1.2.9", "1.2",
               "PEP 600"),
    _manylinux(36, None, _WIDEST, _LIBS_2_24, "1.3.13", "12.0.0", "3.4.30", "1.2.9", "1.2",
               "PEP 600"),
    _manylinux(37, None, _WIDEST, _LIBS_2_24, "1.3.13", "12.0.0", "3.4.30", "1.2.12", "1.2",
               "PEP 600"),
    _manylinux(38, None, _WIDEST, _LIBS_2_24, "1.3.13", "12.0.0", "3.4.30", "1.2.12", "1.2",
               "PEP 600"),
    _manylinux(39, None, _WIDEST, _LIBS_2_24, "1.3.15", "14.0.0", "3.4.33", "1.2.12", "1.2",
               "PEP 600"),
    _manylinux(40, None, _WIDEST, _LIBS_2_24, "1.3.15", "14.0.0", "3.4.33", "1.2.12", "1.2",
               "PEP 600"),
    _manylinux(41, None, _WIDEST, _LIBS_2_24, "1.3.15", "14.0.0", "3.4.33", "1.2.12", "1.2",
               "PEP 600"),
    Policy("musllinux_1_1", None, "musl", "1.1", _WIDE, _LIBS_MUSL, (), "PEP 656"),
    Policy("musllinux_1_2", None, "musl", "1.2", _WIDEST, _LIBS_MUSL, (), "PEP 656"),
)}

#: Symbol versions without a number that only a glibc of some version defines.
#: Source: glibc 2.36's NEWS (DT_RELR support: binaries linked with -z pack-relative-relocs
#: need GLIBC_ABI_DT_RELR, which glibc defines from 2.36 on).
NAMED_VERSIONS: dict[str, tuple[str, str]] = {"GLIBC_ABI_DT_RELR": ("GLIBC", "2.36")}


def version_tuple(text: str) -> tuple[int, ...] | None:
    """``"2.17"`` → (2, 17); None when it is not dotted numbers."""
    parts = text.strip().split(".")
    if not all(part.isdigit() for part in parts) or len(parts) > 8:
        return None
    return tuple(int(part) for part in parts)


# -- targets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A described machine: the overrides that stand for it, and where it comes from.

    ``overrides`` holds :data:`TARGET_KEYS` values as ``ENVGUARD_OVERRIDE_<KEY>`` would
    (``""``: absent). ``libraries`` (None: not described) are the system libraries the
    machine is known to provide; ``ceilings`` the highest symbol version of each family
    its system libraries define (on ``ceiling_machine``), besides the libc's own.
    """

    name: str
    description: str
    source: str
    overrides: tuple[tuple[str, str], ...] = ()
    machines: tuple[str, ...] = ()
    libraries: tuple[str, ...] | None = None
    ceilings: tuple[tuple[str, str], ...] = field(default=())
    ceiling_machine: str | None = None

    def override(self, key: str) -> str | None:
        return dict(self.overrides).get(key)

    def summary(self) -> str:
        """``manylinux2014 (glibc 2.17 …)``: for the report's header."""
        return f"{self.name} ({self.description})"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "description": self.description, "source": self.source,
                "overrides": dict(self.overrides), "machines": list(self.machines),
                "libraries": list(self.libraries) if self.libraries is not None else None,
                "ceilings": dict(self.ceilings)}


def _policy_target(policy: Policy, asked: str) -> Target:
    other = "musl" if policy.libc == "glibc" else "glibc"
    alias = f" = {policy.alias}" if policy.alias else ""
    name = asked if asked in (policy.name, policy.alias) else policy.name
    return Target(
        name=name,
        description=f"{policy.libc} {policy.version}, {policy.name}{alias}",
        source=f"auditwheel's {policy.name} policy ({policy.pep})",
        overrides=((policy.libc, policy.version), (other, "")),
        machines=policy.machines,
        libraries=policy.libraries,
        ceilings=tuple((family, version) for family, version in policy.ceilings
                       if family != "GLIBC"),
        ceiling_machine="x86_64",
    )


_CUDA_WORKER = re.compile(r"cuda-(?P<major>\d+)\.(?P<minor>\d+)"
                          r"(?:-(?P<gpu>[a-z0-9-]+?)(?:x(?P<count>\d+))?)?")


def _cuda_target(name: str) -> Target | None:
    from pytest_envguard.hints import CUDA_TOOLKIT_DRIVER

    match = _CUDA_WORKER.fullmatch(name)
    if not match:
        return None
    version = (int(match["major"]), int(match["minor"]))
    driver = CUDA_TOOLKIT_DRIVER.get(version)
    if driver is None:
        known = ", ".join(f"{a}.{b}" for a, b in sorted(CUDA_TOOLKIT_DRIVER, reverse=True))
        raise TargetError(f"target {name!r}: CUDA {version[0]}.{version[1]} is not in NVIDIA's "
                          f"table of toolkit drivers (known: {known})")
    cuda = f"{version[0]}.{version[1]}"
    overrides = [("cuda", cuda), ("driver", driver)]
    description = f"CUDA {cuda}, driver {driver}"
    if match["gpu"]:
        model = GPU_MODELS.get(match["gpu"])
        if model is None:
            raise TargetError(f"target {name!r}: unknown GPU model {match['gpu']!r} "
                              f"(known: {', '.join(GPU_MODELS)})")
        count = int(match["count"] or 1)
        if not 1 <= count <= MAX_REHEARSED_GPUS:
            raise TargetError(f"target {name!r}: {count} GPUs (1 to {MAX_REHEARSED_GPUS})")
        overrides.append(("gpus", format_gpus((model,) * count)))
        description += f", {count}× {model.name}"
    return Target(name, description,
                  "NVIDIA's table of CUDA toolkit drivers (hints.CUDA_TOOLKIT_DRIVER) and "
                  "the GPU models of targets.GPU_MODELS", tuple(overrides))


def builtin_target(name: str) -> Target | None:
    """The built-in target ``name``: a policy by name or alias, or a CUDA worker;
    None when there is none. Raises :class:`TargetError` for a CUDA worker name
    with an unknown CUDA version or GPU."""
    for policy in POLICIES.values():
        if name in (policy.name, policy.alias):
            return _policy_target(policy, name)
    return _cuda_target(name)


def builtin_names() -> list[str]:
    """The names of the built-in policy targets (aliases first), and the CUDA-worker form."""
    names = [policy.alias for policy in POLICIES.values() if policy.alias]
    return names + list(POLICIES) + ["cuda-X.Y[-GPU[xN]]"]


# -- user profiles (TOML) --------------------------------------------------------------------

#: The keys a ``[profile.NAME]`` table may hold: the target keys, and these.
PROFILE_EXTRA_KEYS = ("extends", "description")


def user_targets(document: Mapping[str, object], source: str) -> dict[str, Target]:
    """The ``[profile.NAME]`` tables of a TOML document::

        [profile.old-gpu]
        extends = "manylinux2014"       # a built-in target or another profile of the file
        cuda = "11.8"
        driver = "520.61.05"
        gpus = "T4:15360:7.5;T4:15360:7.5"

    ``source`` names the file in messages. Raises :class:`TargetError`."""
    tables = document.get("profile")
    if not isinstance(tables, Mapping) or not tables:
        raise TargetError(f"{source}: no [profile.NAME] table")
    raw: dict[str, Mapping[str, object]] = {}
    for name, table in tables.items():
        where = f"{source} [profile.{name}]"
        if not isinstance(table, Mapping):
            raise TargetError(f"{where}: must be a table of keys, not {type(table).__name__}")
        if _is_builtin(str(name)):
            raise TargetError(f"{where}: {name!r} is the name of a built-in target; "
                              "choose another name (extends = \"{name}\" builds on it)")
        raw[str(name)] = table
    resolved: dict[str, Target] = {}
    for name in raw:
        _resolve_profile(name, raw, source, resolved, ())
    return resolved


def _is_builtin(name: str) -> bool:
    try:
        return builtin_target(name) is not None
    except TargetError:
        return True  # cuda-X.Y-… names belong to the built-in form


def _resolve_profile(name: str, raw: Mapping[str, Mapping[str, object]], source: str,
                     resolved: dict[str, Target], chain: tuple[str, ...]) -> Target:
    if name in resolved:
        return resolved[name]
    where = f"{source} [profile.{name}]"
    if name in chain:
        raise TargetError(f"{where}: 'extends' goes round in a circle: "
                          f"{' → '.join((*chain, name))}")
    table = raw[name]
    for key in table:
        if key not in (*TARGET_KEYS, *PROFILE_EXTRA_KEYS, "compute_capability"):
            near = difflib.get_close_matches(str(key), (*TARGET_KEYS, *PROFILE_EXTRA_KEYS), 1)
            also = f" — did you mean {near[0]!r}?" if near else ""
            raise TargetError(f"{where}: unknown key {key!r}{also} (a profile holds "
                              f"{', '.join((*TARGET_KEYS, *PROFILE_EXTRA_KEYS))})")
    base: Target | None = None
    extends = table.get("extends")
    if extends is not None:
        if not isinstance(extends, str):
            raise TargetError(f"{where}: extends must be a string naming a target")
        if extends in raw:
            base = _resolve_profile(extends, raw, source, resolved, (*chain, name))
        else:
            base = builtin_target(extends)
            if base is None:
                raise TargetError(f"{where}: extends = {extends!r}, which is neither a profile "
                                  f"of {source} nor a built-in target{_suggest(extends, raw)}")
    own: dict[str, str] = {}
    for key in TARGET_KEYS:
        value = table.get(key, table.get("compute_capability") if key == "compute-capability"
                          else None)
        if value is not None:
            own[key] = _profile_value(key, value, where)
    # A machine with glibc has no musl, and the reverse (unless the profile says both).
    if own.get("glibc") and "musl" not in own:
        own["musl"] = ""
    if own.get("musl") and "glibc" not in own:
        own["glibc"] = ""
    overrides = {**(dict(base.overrides) if base else {}), **own}
    description = table.get("description")
    if description is not None and not isinstance(description, str):
        raise TargetError(f"{where}: description must be a string")
    target = Target(
        name=name,
        description=description or _describe(own, base),
        source=where + (f", extending {base.name} ({base.source})" if base else ""),
        overrides=tuple((key, overrides[key]) for key in TARGET_KEYS if key in overrides),
        machines=base.machines if base else (),
        libraries=base.libraries if base else None,
        ceilings=base.ceilings if base else (),
        ceiling_machine=base.ceiling_machine if base else None,
    )
    resolved[name] = target
    return target


def _profile_value(key: str, value: object, where: str) -> str:
    """One key's value, checked now: a typo is reported with the file, not at judgement."""
    if key == "gpus" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise TargetError(f"{where}: {key} must be a string (write {key} = \"{value}\": as a "
                          f"TOML number, 2.10 would read as 2.1), not {type(value).__name__}")
    if key == "gpus":
        try:
            parse_gpus(value)
        except TargetError as error:
            raise TargetError(f"{where}: gpus = {value!r}: {error}") from None
    elif value and version_tuple(value) is None:
        raise TargetError(f"{where}: {key} = {value!r} is not a version like 2.17 "
                          "(an empty string means absent)")
    return value


def _describe(overrides: Mapping[str, str], base: Target | None) -> str:
    """``manylinux2014, cuda 11.8, 2× Tesla T4``: the base, then what the profile sets."""
    parts = [f"{key} {value or 'absent'}" for key, value in overrides.items()
             if key != "gpus" and (value or key not in ("glibc", "musl"))]
    gpus = overrides.get("gpus")
    if gpus is not None:
        rehearsed = parse_gpus(gpus)
        names = {gpu.name for gpu in rehearsed}
        shown = next(iter(names)) if len(names) == 1 else None
        parts.append(f"{len(rehearsed)}× {shown}" if shown else f"{len(rehearsed)} GPUs")
    text = ", ".join(parts)
    return f"{base.name}, {text}" if base and text else (base.name if base else text or "nothing")


def _suggest(name: str, user: Mapping[str, object]) -> str:
    pool = [*user, *(policy.alias or policy.name for policy in POLICIES.values()),
            *POLICIES]
    near = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return f" — did you mean {near[0]!r}?" if near else ""


def find_target(name: str, user: Mapping[str, Target] | None = None) -> Target:
    """The target ``name``: a user profile, else a built-in one. Raises
    :class:`TargetError` naming the nearest known name."""
    name = name.strip()
    if user and name in user:
        return user[name]
    target = builtin_target(name)
    if target is not None:
        return target
    known = ", ".join([*(user or {}), *builtin_names()])
    raise TargetError(f"unknown target {name!r}{_suggest(name, user or {})} (known: {known})")
