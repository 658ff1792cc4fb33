"""What ``--suggest`` and ``--migrate`` know about the world, kept as data.

Each table names its source, so an entry can be checked and kept current.
The CUDA → driver tables themselves live in :mod:`pytest_envguard.hints`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# -- sonames that glibc itself provides ---------------------------------------------------
# Source: glibc's ``shlib-versions`` file (the sonames one glibc build installs), x86_64 and
# aarch64 rows; musl's single ``libc.so`` is loaded under the names of its dynamic linker.
# A need for one of these is a need for the C library, which the glibc/musl line covers,
# not a ``library`` line.
LIBC_SONAMES: frozenset[str] = frozenset({
    "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1",
    "libresolv.so.2", "libanl.so.1", "libmvec.so.1", "libBrokenLocale.so.1", "libnsl.so.1",
    "libc_malloc_debug.so.0", "libthread_db.so.1", "libmemusage.so", "libpcprofile.so",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "ld-linux.so.2", "ld64.so.2", "ld64.so.1",
    "ld-linux-armhf.so.3", "ld-linux-riscv64-lp64d.so.1",
})

LIBC_PREFIXES = ("ld-musl-", "libc.musl-")  # musl: ld-musl-x86_64.so.1, libc.musl-x86_64.so.1


def is_libc_soname(name: str) -> bool:
    return name in LIBC_SONAMES or name.startswith(LIBC_PREFIXES)


# -- x86-64 micro-architecture levels ---------------------------------------------------------
# Source: the x86-64 psABI, "Micro-Architecture Levels" (x86-64-v2: CMPXCHG16B, LAHF-SAHF,
# POPCNT, SSE3, SSE4_1, SSE4_2, SSSE3; v3 adds AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT, MOVBE,
# OSXSAVE; v4 adds AVX512F, AVX512BW, AVX512CD, AVX512DQ, AVX512VL), with the flag names Linux
# prints in /proc/cpuinfo (arch/x86/include/asm/cpufeatures.h: SSE3 is "pni", LZCNT is "abm",
# OSXSAVE is enabled where "xsave" is listed). glibc's loader picks glibc-hwcaps/x86-64-vN
# subdirectories by the same levels (glibc 2.33 NEWS).
X86_64_LEVELS: dict[str, tuple[str, ...]] = {
    "x86-64-v2": ("cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"),
    "x86-64-v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"),
    "x86-64-v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}


def level_flags(level: str) -> tuple[str, ...]:
    """Every /proc/cpuinfo flag an x86-64 level needs, the lower levels' included."""
    names = list(X86_64_LEVELS)
    if level not in names:
        return ()
    flags: list[str] = []
    for name in names[:names.index(level) + 1]:
        flags += X86_64_LEVELS[name]
    return tuple(flags)


class IsaNeed(NamedTuple):
    """Builds of a distribution that need more than the machine's baseline ISA."""

    distribution: str  # canonical name
    versions: str  # a PEP 440 specifier over the distribution's version ("" = all)
    machine: str  # platform.machine() it applies on
    needs: str  # an x86-64 level ("x86-64-v2") or flags separated by spaces ("avx avx2 fma")
    source: str


#: Wheels known to need more than their platform tag promises (which is only x86-64).
ISA_NEEDS: tuple[IsaNeed, ...] = (
    # NumPy's meson build: baseline "min" became X86_V2 in 2.4 (numpy/_core/meson.build;
    # NumPy's "CPU support & SIMD" page: "SSE4.2 on x86-64 CPUs"); numpy reports it as
    # numpy._core._multiarray_umath.__cpu_baseline__ == ['X86_V2'] and refuses to import below.
    IsaNeed("numpy", ">=2.4", "x86_64", "x86-64-v2",
            "NumPy 2.4's x86-64 baseline (its __cpu_baseline__ is X86_V2)"),
    # TensorFlow 1.6.0 release notes: "Prebuilt binaries will use AVX instructions."
    IsaNeed("tensorflow", ">=1.6", "x86_64", "avx", "TensorFlow >= 1.6 binaries use AVX"),
    IsaNeed("tensorflow-cpu", "", "x86_64", "avx", "TensorFlow >= 1.6 binaries use AVX"),
    # polars' _cpu_check.py warns "The following required CPU features were not detected:
    # avx, avx2, fma" and names polars-lts-cpu as the build for older CPUs.
    IsaNeed("polars", "", "x86_64", "avx avx2 fma",
            "polars' default x86-64 build (polars-lts-cpu is the one without AVX2)"),
)

# -- CUDA builds among installed distributions -------------------------------------------------
# Sources: the PyPI projects NVIDIA publishes the CUDA toolkit as (nvidia-cuda-runtime-cu12
# 12.4.127 is the CUDA 12.4 runtime; from CUDA 13 the projects drop the suffix, e.g.
# nvidia-cuda-runtime 13.0.x); PyTorch's wheel indexes (local versions +cu118, +cu124, +cu130);
# CuPy's installation guide (cupy-cuda11x, cupy-cuda12x, cupy-cuda13x; older cupy-cuda117…);
# JAX's installation guide (jax-cuda12-plugin, jax-cuda12-pjrt; jaxlib +cuda12… before 0.4.26).


class CudaBuild(NamedTuple):
    """What one distribution says about the CUDA it was built for."""

    distribution: str  # "nvidia-cuda-runtime-cu12 12.4.127"
    major: int
    minor: int | None  # None: only the major is known (a -cu12 suffix)


_CUDA_RUNTIME = re.compile(r"nvidia-cuda-runtime(?:-cu(\d+))?")
_NVIDIA_SUFFIX = re.compile(r"nvidia-[a-z0-9-]+-cu(\d+)")
_CUPY = re.compile(r"cupy-cuda(\d+)x?")
_JAX = re.compile(r"jax-cuda(\d+)-(?:plugin|pjrt)")
_LOCAL_CUDA = re.compile(r"\+cu(?:da)?(\d+)")


def cuda_build(name: str, version: str) -> CudaBuild | None:
    """The CUDA version a distribution (canonical ``name``, ``version``) was built for."""
    shown = f"{name} {version}"
    release = [int(part) for part in re.findall(r"\d+", version.split("+", maxsplit=1)[0])[:2]]
    runtime = _CUDA_RUNTIME.fullmatch(name)
    if runtime and len(release) == 2 and (runtime.group(1) is None
                                          or int(runtime.group(1)) == release[0]):
        return CudaBuild(shown, release[0], release[1])
    for pattern in (_NVIDIA_SUFFIX, _JAX):
        match = pattern.fullmatch(name)
        if match:
            return CudaBuild(shown, int(match.group(1)), None)
    cupy = _CUPY.fullmatch(name)
    if cupy:
        digits = cupy.group(1)  # "12" (cupy-cuda12x) or "117" (cupy-cuda117: CUDA 11.7)
        if len(digits) == 3:
            return CudaBuild(shown, int(digits[:2]), int(digits[2]))
        return CudaBuild(shown, int(digits), None)
    local = _LOCAL_CUDA.search(version)
    if name in ("torch", "torchvision", "torchaudio", "jaxlib") and local:
        digits = local.group(1)  # torch "+cu124" → 12.4, "+cu92" → 9.2; jaxlib "+cuda12" → 12
        if name == "jaxlib":
            return CudaBuild(shown, int(digits), None)
        if len(digits) >= 2:
            return CudaBuild(shown, int(digits[:-1]), int(digits[-1]))
    return None


# -- lock files a project keeps in its root ----------------------------------------------------
# The names the lock key reads (pytest_envguard.probes.locks.lock_format): uv, Poetry, PEP 751,
# and the pinned requirements file of pip-tools and Rye.
LOCK_FILE_NAMES: tuple[str, ...] = ("uv.lock", "poetry.lock", "pylock.toml", "requirements.lock",
                                    "requirements.txt")
LOCK_FILE_PATTERN = re.compile(r"pylock\.[^.]+\.toml")
# conda's, as their tools name them (the lock key reads them too: probes/conda_locks.py):
# pixi's lock; conda-lock's unified lock (its default name, and `--lockfile
# NAME.conda-lock.yml`) and its explicit renders (`conda-lock render --kind explicit`:
# conda-linux-64.lock); the environment file `conda env create` reads by default.
# Explicit spec files (`conda list --explicit > spec-file.txt`) are told by their
# @EXPLICIT line, not their name.
CONDA_LOCK_FILE_NAMES: tuple[str, ...] = ("pixi.lock", "conda-lock.yml", "conda-lock.yaml",
                                          "environment.yml", "environment.yaml")
CONDA_LOCK_FILE_PATTERN = re.compile(r"[\w.-]+\.conda-lock\.ya?ml|conda-[a-z0-9]+-[a-z0-9_]+\.lock")
