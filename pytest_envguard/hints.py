"""Knowledge kept as data: what usually fixes an unmet requirement.

Each table names its source, so an entry can be checked and kept current.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_envguard.grammar import Requirement

# -- glibc → manylinux ---------------------------------------------------------------
# Source: PEP 600 (manylinux_x_y is glibc x.y) and PEP 599 / PEP 571 / PEP 513 for the
# legacy aliases (manylinux2014 = glibc 2.17, manylinux2010 = 2.12, manylinux1 = 2.5).
MANYLINUX_ALIASES: dict[tuple[int, int], str] = {
    (2, 5): "manylinux1",
    (2, 12): "manylinux2010",
    (2, 17): "manylinux2014",
}


def manylinux_tag(major: int, minor: int, machine: str = "x86_64") -> str:
    """The wheel platform tag of a glibc version: (2, 28) → ``manylinux_2_28_x86_64``."""
    tag = f"manylinux_{major}_{minor}_{machine}"
    alias = MANYLINUX_ALIASES.get((major, minor))
    return f"{tag} (alias {alias}_{machine})" if alias else tag


def libc_hint(requirement: Requirement) -> str:
    if requirement.key == "musl":
        return "run on a musl-based image (Alpine) with a new enough musl"
    return (
        "run on a newer OS image (glibc is part of the OS), "
        "or install wheels built for an older manylinux tag"
    )


# -- environment hygiene: consistent, wheels, lock, isolated -------------------------------
# Source: pip's user guide ("pip check", "Requirements File Format"), uv's docs
# ("uv sync", "uv pip sync"), Poetry's CLI docs ("poetry sync", Poetry 2; "poetry install
# --sync" before it), pip-tools' README (pip-sync), PEP 751 (pylock.toml).

#: How to make an environment equal each lock format again.
LOCK_SYNC: dict[str, str] = {
    "requirements": "pip-sync {path} (pip-tools), or pip install --no-deps -r {path}",
    "pylock": "uv pip sync {path}, or pip install -r {path} with a pip that reads PEP 751 locks",
    "uv": "uv sync --locked",
    "poetry": "poetry sync (Poetry 2; poetry install --sync before it)",
    # Sources: pixi's CLI docs ("pixi install --frozen": install from the lock as it is),
    # the header conda-lock writes into conda-lock.yml, the header of `conda list
    # --explicit`, conda's docs ("Updating an environment": conda env update --prune).
    "pixi": "pixi install --frozen (in the project of {path})",
    "conda-lock": "conda-lock install --name ENV {path}",
    "explicit": "conda create --name ENV --file {path} (a fresh env, as the file's header says)",
    "environment-yml": "conda env update --file {path} --prune",
}

#: Distributions lock tools leave out by default, so never "extra" when installed.
#: Source: pip-tools' UNSAFE_PACKAGES (setuptools, distribute, pip); uv's and
#: pip's own installers seed pip and, on older Pythons, setuptools and wheel.
LOCK_EXEMPT: frozenset[str] = frozenset({"pip", "setuptools", "distribute", "wheel"})

#: How to remove a copy of a duplicate that is *not* in effect, by the installer that
#: put it there, when that installer can aim at that copy alone. Source: conda's
#: docs ("conda remove --force" removes the named package from the prefix's records,
#: whatever sys.path says). pip and uv are absent on purpose: ``pip uninstall NAME``
#: removes the first copy on sys.path, the one in effect (pip's user guide,
#: "pip uninstall"), which would leave the stale copy active.
REMOVE_SHADOWED: dict[str, str] = {
    "conda": "conda remove --force {name} (removes conda's copy, in {location})",
}


# -- conda prefixes -----------------------------------------------------------------------
# Source: py-rattler's README (the conda library behind pixi: MatchSpec, Version,
# PrefixRecord, LockFile), and this project's pyproject.toml extra.

#: What to install so that conda prefixes and conda lock files are judged.
CONDA_EXTRA_HINT = "pip install 'pytest-envguard[conda]' (adds py-rattler, for conda's semantics)"

#: What restores a coherent conda prefix, per kind of ``consistent`` problem. Sources:
#: conda's CLI docs (``conda install --force-reinstall`` relinks a package's files and
#: record; ``conda doctor --fix`` does it for missing and altered files; ``conda remove``),
#: pip's user guide ("pip uninstall" removes the first copy on sys.path: the one in effect).
CONDA_FIXES: dict[str, str] = {
    "conda-depends": "conda install {spec}",
    "conda-constrains": "conda install {spec}",
    "conda-invalid-spec": "conda install --force-reinstall {package}",
    "conda-broken-record": "conda install --force-reinstall {package}",
    "conda-unusable-record": ("conda cannot see the package it describes: reinstall that package "
                              "(conda install --force-reinstall NAME) or restore {file}"),
    "conda-missing-files": "conda install --force-reinstall {package} (what conda doctor --fix does)",
    "conda-altered-files": "conda install --force-reinstall {package} (what conda doctor --fix does)",
    "pip-replaced-conda": ("pip uninstall {name} && conda install --force-reinstall {package} "
                           "(or, to keep {version}, pip uninstall {name} && conda install "
                           "'{package}={version}')"),
    "pip-shadows-conda": ("pip uninstall {name} (removes the copy in effect; conda's {conda_version} "
                          "takes over), or make conda install it: conda install "
                          "'{package}={version}'"),
    "pip-beside-conda": ("delete {path} and the files its RECORD lists (pip uninstall {name} "
                         "would remove the copy in effect, conda's)"),
    "pip-over-conda": "pip uninstall {name} && conda install --force-reinstall {package}",
    "conda-metadata-edited": "conda install --force-reinstall {package}",
    "conda-leftover": "delete {path} (and the files its RECORD lists)",
    "name-spelling": "keep one: pip uninstall {name}, or conda remove {package}",
    # native libraries from two managers (`extensions` in a conda prefix)
    "native-across-managers": ("{name} ({manager}) needs {needed}, which conda's {package} "
                               "does not give: it was built against another release. Install "
                               "{name} with conda (conda install {name}: its conda build uses "
                               "conda's library), or build it here (pip install "
                               "--force-reinstall --no-binary {name} {name})"),
    "duplicate-library": ("two {stem} in one process can clash (two OpenMP runtimes abort, two "
                          "libstdc++ mix up their state): install {name} with conda (conda "
                          "install {name}), so that conda's {stem} ({package}) serves them both"),
}


def conda_fix(kind: str, **values: str) -> str:
    """The fix of one kind of conda-prefix problem, filled in."""
    return CONDA_FIXES[kind].format(**values)


def lock_hint(kind: str, path: str) -> str:
    return "sync the environment with the lock: " + LOCK_SYNC.get(
        kind, "reinstall from the lock").format(path=path)


def remove_shadowed_copy(name: str, path: str, location: str, installer: str | None,
                         in_effect_installer: str | None, in_effect: str) -> str:
    """How to remove the copy at ``path`` that another copy (``in_effect``) shadows."""
    if installer in REMOVE_SHADOWED and installer != in_effect_installer:
        return REMOVE_SHADOWED[installer].format(name=name, location=location)
    return (f"remove the copy not in effect: delete {path} and the files its RECORD lists "
            f"(a plain `pip uninstall {name}` would remove the copy in effect, {in_effect})")


def duplicate_in_one_directory(name: str, stale: list[str], known: bool,
                               newest: str | None) -> str:
    """Two metadata directories of ``name`` in one directory: which to delete, or how
    to start clean (``pip uninstall`` removes one copy per run)."""
    fresh = (f"or run `pip uninstall {name}` as many times as there are copies, "
             f"then `pip install {name}{'==' + newest if newest else ''}`")
    if known:
        return f"delete the stale metadata directory {' and '.join(stale)} (the older install), {fresh}"
    return f"delete the metadata directory you did not mean to keep ({' or '.join(stale)}), {fresh}"


# -- native libraries: library, extensions, import ---------------------------------------
# Sources: the PyPI projects NVIDIA publishes its CUDA libraries as (nvidia-cudnn-cu12,
# nvidia-cublas-cu12, … on pypi.org), Debian's package search (packages.debian.org,
# "search the contents of packages"), Fedora's package index (packages.fedoraproject.org)
# and the conda-forge feedstocks of the same names.

_DRIVER = ("it comes with the NVIDIA driver, not with pip or conda: install the driver on "
           "the host (in a container, use the NVIDIA container toolkit)")


def _cuda_wheel(project: str, conda: str) -> str:
    # From CUDA 13 on, NVIDIA publishes the toolkit libraries without the -cuXY suffix
    # (nvidia-cublas 13.x; nvidia-cublas-cu13 is an empty pointer to it).
    return (f"pip install nvidia-{project}-cu12 for CUDA 12 (nvidia-{project} for CUDA 13), "
            f"or conda install {conda}")


#: Library stem (the file name before ``.so``) → how it is usually installed.
LIBRARY_PACKAGES: dict[str, str] = {
    "libcudnn": "pip install nvidia-cudnn-cu12 (-cu13 for CUDA 13, -cu11 for CUDA 11), "
                "or conda install cudnn",
    "libcublas": _cuda_wheel("cublas", "libcublas"),
    "libcublasLt": _cuda_wheel("cublas", "libcublas"),
    "libcudart": _cuda_wheel("cuda-runtime", "cuda-cudart"),
    "libcufft": _cuda_wheel("cufft", "libcufft"),
    "libcurand": _cuda_wheel("curand", "libcurand"),
    "libcusolver": _cuda_wheel("cusolver", "libcusolver"),
    "libcusparse": _cuda_wheel("cusparse", "libcusparse"),
    "libnccl": "pip install nvidia-nccl-cu12 (-cu13 for CUDA 13), or conda install nccl",
    "libnvrtc": _cuda_wheel("cuda-nvrtc", "cuda-nvrtc"),
    "libnvJitLink": _cuda_wheel("nvjitlink", "libnvjitlink"),
    "libcuda": _DRIVER,
    "libnvidia-ml": _DRIVER,
    "libgomp": "apt install libgomp1 / dnf install libgomp, or conda install libgomp",
    "libomp": "apt install libomp-dev / dnf install libomp, or conda install llvm-openmp",
    "libiomp5": "pip install intel-openmp, or conda install intel-openmp",
    "libssl": "apt install libssl3 / dnf install openssl-libs, or conda install openssl",
    "libcrypto": "apt install libssl3 / dnf install openssl-libs, or conda install openssl",
    "libstdc++": "apt install libstdc++6 / dnf install libstdc++, "
                 "or conda install -c conda-forge libstdcxx-ng",
    "libgcc_s": "apt install libgcc-s1 / dnf install libgcc, or conda install libgcc-ng",
    "libgfortran": "apt install libgfortran5 / dnf install libgfortran, "
                   "or conda install libgfortran-ng",
    "libopenblas": "apt install libopenblas0 / dnf install openblas, or conda install libopenblas",
    "libGL": "apt install libgl1 / dnf install mesa-libGL (for OpenCV: pip install "
             "opencv-python-headless instead)",
    "libglib-2.0": "apt install libglib2.0-0 / dnf install glib2, or conda install glib",
    "libz": "apt install zlib1g / dnf install zlib, or conda install zlib",
    "libffi": "apt install libffi8 / dnf install libffi, or conda install libffi",
    "libsndfile": "apt install libsndfile1 / dnf install libsndfile, or conda install libsndfile",
}

# -- GLIBCXX → GCC ----------------------------------------------------------------------
# Source: GCC's libstdc++ manual, "ABI Policy and Guidelines" (the list of symbol
# versions each GCC release added; GLIBCXX_3.4.N ships as libstdc++.so.6.0.N).
GLIBCXX_GCC: dict[tuple[int, ...], str] = {
    (3, 4, 19): "4.8.3", (3, 4, 20): "4.9", (3, 4, 21): "5.1", (3, 4, 22): "6.1",
    (3, 4, 23): "7.1", (3, 4, 24): "7.2", (3, 4, 25): "8.1", (3, 4, 26): "9.1",
    (3, 4, 27): "9.2", (3, 4, 28): "9.3", (3, 4, 29): "11.1", (3, 4, 30): "12.1",
    (3, 4, 31): "13.1", (3, 4, 32): "13.2", (3, 4, 33): "14.1",
}


#: Where a leaked LD_LIBRARY_PATH usually comes from, and what clears it.
#: Source: conda's docs ("Activating an environment" sets no LD_LIBRARY_PATH; it is
#: users' .bashrc and module systems that do), Environment Modules / Lmod docs
#: (module load prepends LD_LIBRARY_PATH), CUDA installation guide (post-install
#: "export LD_LIBRARY_PATH=/usr/local/cuda/lib64…").
LD_LIBRARY_PATH_ORIGINS = ("a shell profile, `module load`, a CUDA post-install export or "
                           "another environment's activation")


def _directory(path: str) -> str:
    import os

    return os.path.dirname(path) or path


def ld_library_path_hint(path: str, interpreter: bool = False) -> str:
    """A library from ``LD_LIBRARY_PATH`` breaks a module (or the interpreter's own)."""
    whose = "the interpreter's own modules were" if interpreter else "it was"
    return (f"LD_LIBRARY_PATH makes the loader pick {path} before the copy {whose} "
            f"built against: remove {_directory(path)} from LD_LIBRARY_PATH (set by "
            f"{LD_LIBRARY_PATH_ORIGINS}), or unset it for the test run")


def broken_file_hint(path: str, source: str | None, distribution: str | None = None) -> str:
    """The loader stops at a file it cannot load (a directory, text, a cut copy)."""
    if source == "LD_LIBRARY_PATH":
        return (f"the loader stops at {path} and never reaches a good copy: remove it (or "
                f"{_directory(path)} from LD_LIBRARY_PATH)")
    owner = distribution or "the package that installed it"
    return (f"{path} is not a loadable library: reinstall {owner} "
            f"(pip install --force-reinstall --no-deps {owner}), or remove the file")


def is_vendored(name: str) -> bool:
    """A library auditwheel (or delocate) copied into a wheel: a hash in its name,
    ``libgfortran-040039e1.so.5.0.0``. Source: auditwheel's repair (``lib-HASH.so``)."""
    import re

    return bool(re.search(r"-[0-9a-f]{8}(?:\.so|$)", name))


def vendored_hint(library: str, distribution: str) -> str:
    return (f"{library} is a copy {distribution}'s wheel ships (in its *.libs directory): it was "
            f"deleted, renamed or made unreadable; reinstall: pip install --force-reinstall "
            f"--no-deps {distribution}")


def wrong_python_hint(distribution: str) -> str:
    return (f"{distribution} holds modules built for another Python version: reinstall it with "
            f"this interpreter (python -m pip install --force-reinstall --no-deps {distribution})")


def interpreter_hint(library: str | None) -> str:
    """One of the interpreter's own modules (``lib-dynload``) cannot load."""
    what = f"{library_stem(library)}: {LIBRARY_PACKAGES[library_stem(library)]}" \
        if library and library_stem(library) in LIBRARY_PACKAGES else \
        "the libraries the interpreter was built against"
    return (f"the interpreter's own modules need {what}; if the interpreter was copied or its "
            "system libraries changed, reinstall it (pyenv install --force, or the OS package)")


def import_leak_hint(module: str, leak: str) -> str:
    return (f"LD_LIBRARY_PATH is the cause: import {module} works without it, but with it the "
            f"loader picks {leak}; remove {_directory(leak)} from LD_LIBRARY_PATH (set by "
            f"{LD_LIBRARY_PATH_ORIGINS}), or unset it for the test run")


def library_stem(name: str) -> str:
    """``libcudnn.so.9`` → ``libcudnn``; a vendored ``libgfortran-040039e1.so.5`` →
    ``libgfortran``; a short name ``cudnn`` → ``libcudnn``."""
    import re

    stem = name.split(".so", 1)[0]
    stem = re.sub(r"(-[0-9a-f]{8})+$", "", stem)
    return stem if stem.startswith("lib") else f"lib{stem}"


def library_hint(name: str) -> str | None:
    """Which package usually provides a missing library, when it is well known."""
    provider = LIBRARY_PACKAGES.get(library_stem(name))
    return f"{library_stem(name)}: {provider}" if provider else None


def version_hint(version: str, library: str | None, machine: str, distribution: str | None) -> str:
    """What fixes a missing symbol version: a too-new ``GLIBC_x.y`` names the
    manylinux tag the wheel was built for; ``GLIBCXX_x`` names the GCC it needs."""
    import re

    match = re.fullmatch(r"(GLIBC|GLIBCXX|CXXABI)_(\d+(?:\.\d+)*)", version)
    dist = distribution or "the package"
    if match and match.group(1) == "GLIBC":
        major, minor = (int(part) for part in [*match.group(2).split("."), "0"][:2])
        return (f"{dist} was built for {manylinux_tag(major, minor, machine)} (glibc >= "
                f"{major}.{minor}): install a wheel built for an older manylinux tag (an older "
                f"release, or pip install --no-binary {dist} {dist}), or run on a newer OS")
    if match and match.group(1) == "GLIBCXX":
        parts = tuple(int(part) for part in match.group(2).split("."))
        gcc = GLIBCXX_GCC.get(parts)
        needs = f"the libstdc++ of GCC >= {gcc}" if gcc else "a newer libstdc++"
        return (f"{version} needs {needs}: upgrade the system's libstdc++ (apt install "
                "libstdc++6 from a newer release), or conda install -c conda-forge "
                "libstdcxx-ng; check that LD_LIBRARY_PATH does not put an older "
                f"{library or 'libstdc++'} first")
    return (f"{library or 'the library'} is older than {dist} expects: upgrade it, or install "
            f"a build of {dist} made against the older version")


# -- CUDA and GPUs: cuda, driver, cuda-runtime, gpus ---------------------------------------
# Source: NVIDIA's CUDA Toolkit release notes, table "CUDA Toolkit and Corresponding Driver
# Versions" (Linux x86_64 column; the GA release of each toolkit), and NVIDIA's "CUDA
# Compatibility" guide, "Minor Version Compatibility" (the minimum driver of each CUDA major).

#: CUDA major → the oldest Linux driver that runs every toolkit of that major
#: (minor version compatibility: no PTX JIT of code newer than the driver).
CUDA_MAJOR_MIN_DRIVER: dict[int, str] = {13: "580", 12: "525.60.13", 11: "450.80.02"}

#: CUDA (major, minor) → the Linux driver shipped with that toolkit (full support).
CUDA_TOOLKIT_DRIVER: dict[tuple[int, int], str] = {
    (13, 0): "580.65.06",
    (12, 9): "575.51.03", (12, 8): "570.26", (12, 6): "560.28.03", (12, 5): "555.42.02",
    (12, 4): "550.54.14", (12, 3): "545.23.06", (12, 2): "535.54.03", (12, 1): "530.30.02",
    (12, 0): "525.60.13",
    (11, 8): "520.61.05", (11, 7): "515.43.04", (11, 6): "510.39.01", (11, 5): "495.29.05",
    (11, 4): "470.42.01", (11, 3): "465.19.01", (11, 2): "460.27.03", (11, 1): "455.23",
    (11, 0): "450.36.06",
    (10, 2): "440.33", (10, 1): "418.39", (10, 0): "410.48",
    (9, 2): "396.26", (9, 1): "390.46", (9, 0): "384.81",
}

# Source: NVML's API reference (nvmlReturn_t) for the codes; the fixes are the usual ones
# (NVIDIA's driver installation guide, "Driver Persistence" for slow initialisation).
_PIN_DRIVER = ("pin the driver packages so unattended upgrades cannot replace the driver under a "
               "running kernel module (apt-mark hold 'nvidia-*' / dnf versionlock add 'nvidia-*')")

#: NVML error code → what usually fixes it.
NVML_ERROR_HINTS: dict[int, str] = {
    18: ("the NVIDIA driver was upgraded but the old kernel module is still loaded: reboot, or "
         "reload the module (rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && modprobe "
         f"nvidia); then {_PIN_DRIVER}"),
    9: "load the NVIDIA kernel module (modprobe nvidia; see dmesg for why it failed)",
    12: ("install the NVIDIA driver on the host; in a container, expose the GPUs "
         "(docker run --gpus all, or the NVIDIA container toolkit)"),
    4: "give this user access to /dev/nvidia* (the video group), or run the job where it has it",
}

NVML_TIMEOUT_HINT = ("check nvidia-smi on the host (a wedged GPU or driver); enable persistence "
                     "mode (nvidia-persistenced, or nvidia-smi -pm 1) if initialisation is slow, "
                     "or raise envguard_gpu_timeout")


def nvml_hint(code: int | None, *, timed_out: bool = False) -> str | None:
    """What fixes an NVML failure, by its error code (or a time-out)."""
    if code is not None and code in NVML_ERROR_HINTS:
        return NVML_ERROR_HINTS[code]
    return NVML_TIMEOUT_HINT if timed_out else None


def driver_for_cuda(version: str) -> str | None:
    """``"12.4"`` → ``"upgrade the NVIDIA driver to >= 550.54.14 (the driver of CUDA 12.4;
    >= 525.60.13 runs CUDA 12.x with minor version compatibility)"``."""
    parts = [int(part) for part in version.split(".")[:2] if part.isdigit()]
    if not parts:
        return None
    major, minor = parts[0], parts[1] if len(parts) > 1 else 0
    full = CUDA_TOOLKIT_DRIVER.get((major, minor))
    floor = CUDA_MAJOR_MIN_DRIVER.get(major)
    if full and floor and full != floor:
        return (f"upgrade the NVIDIA driver to >= {full} (the driver of CUDA {major}.{minor}; "
                f">= {floor} runs CUDA {major}.x with minor version compatibility)")
    if full or floor:
        return f"upgrade the NVIDIA driver to >= {full or floor} for CUDA {major}.{minor}"
    return f"upgrade the NVIDIA driver to one that supports CUDA {major}.{minor}"
