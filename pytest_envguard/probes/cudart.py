"""The CUDA runtime (``libcudart``) this process has loaded or would load (``cuda-runtime``)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_envguard.probes import Facts, Failure

#: The pip distributions that ship libcudart, by CUDA major (CUDA 13 dropped the suffix).
CUDART_DISTRIBUTIONS = ("nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu11",
                        "nvidia-cuda-runtime")


@dataclass(frozen=True)
class CudaRuntimeFacts(Facts):
    """The CUDA runtime (libcudart) this process has loaded or would load."""

    version: str | None  # "12.4.127", "12.4", or just the major "12"
    path: str | None
    source: str | None  # "loaded in this process", "LD_LIBRARY_PATH", "site-packages nvidia/*/lib"…
    version_source: str | None = None  # where the version came from
    reason: str | None = None
    failure: Failure | None = None  # MISSING: no libcudart; CORRUPT: it tells no version


# The child's program (after the runner's prologue): the library path is ARGS[0].
_ASK_CUDART = """
import ctypes
library = ctypes.CDLL(ARGS[0])
version = ctypes.c_int()
status = library.cudaRuntimeGetVersion(ctypes.byref(version))
answer(version.value if status == 0 else -1)
"""


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

    loaded = next((path for path in loader.loaded_objects(maps)
                   if re.search(r"/libcudart\.so(\.\d+)*$", path)), None)
    source: str | None = "loaded in this process"
    if loaded:
        path = loaded
    else:
        found = (find or (lambda name: loader.find_library(name, environ)))("cudart")
        if found.path is None:
            return CudaRuntimeFacts(None, None, None, reason=found.reason or "no libcudart.so found",
                                    failure=found.failure or Failure.MISSING)
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
                                       "did not tell it", failure=Failure.CORRUPT)
    return CudaRuntimeFacts(version, path, source, version_source)


def _ask_cudart(path: str, environ: Mapping[str, str], timeout: float) -> str | None:
    from pytest_envguard.probes._child import run_python
    from pytest_envguard.units import cuda_version

    result = run_python(_ASK_CUDART, [path], environ=environ, timeout=timeout)
    if result.failure is not None or not isinstance(result.answer, int) or result.answer <= 0:
        return None
    return cuda_version(result.answer)
