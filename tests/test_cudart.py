"""probes/cudart.py: the CUDA runtime found, and its version, from fake libcudart builds."""

from __future__ import annotations

import os
from pathlib import Path

from pytest_envguard.probes import Failure, cudart
from pytest_envguard.probes.loader import LibraryFacts

# -- the CUDA runtime --------------------------------------------------------------------------


def test_cuda_runtime_version_from_the_file_name(fake_cudart: dict[str, Path]) -> None:
    facts = cudart.probe_cuda_runtime({**os.environ, "LD_LIBRARY_PATH": str(fake_cudart["toolkit"])},
                                      maps=os.devnull)
    assert facts.version == "12.4.127"
    assert facts.path is not None
    assert os.path.realpath(facts.path) == str(fake_cudart["toolkit"] / "libcudart.so.12.4.127")
    assert facts.source == "LD_LIBRARY_PATH"
    assert facts.version_source == "file name libcudart.so.12.4.127"


def test_cuda_runtime_version_from_the_pip_distribution(fake_cudart: dict[str, Path]) -> None:
    from pytest_envguard.probes.loader import find_library

    versions = {"nvidia-cuda-runtime-cu12": "12.4.127"}
    facts = cudart.probe_cuda_runtime(
        {}, maps=os.devnull, distribution_version=versions.get,
        find=lambda name: find_library(name, {"LD_LIBRARY_PATH": str(fake_cudart["pip"])}))
    assert facts.version == "12.4.127"
    assert facts.version_source == "distribution nvidia-cuda-runtime-cu12"


def test_cuda_runtime_version_asked_from_the_library(fake_cudart: dict[str, Path]) -> None:
    facts = cudart.probe_cuda_runtime({**os.environ, "LD_LIBRARY_PATH": str(fake_cudart["bare"])},
                                      maps=os.devnull)
    assert facts.version == "12.6"
    assert facts.version_source == "cudaRuntimeGetVersion()"


def test_cuda_runtime_already_loaded(fake_cudart: dict[str, Path], tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    library = fake_cudart["toolkit"] / "libcudart.so.12.4.127"
    maps.write_text(f"7f00-7f10 r-xp 00000000 08:01 1234      {library}\n"
                    "7f10-7f20 r--p 00000000 00:00 0 \n")
    facts = cudart.probe_cuda_runtime({}, maps=str(maps))
    assert facts.source == "loaded in this process"
    assert facts.version == "12.4.127"


def test_cuda_runtime_not_found() -> None:
    missing = LibraryFacts("cudart", None, None, None, None, reason="no libcudart.so* in …",
                           failure=Failure.MISSING)
    facts = cudart.probe_cuda_runtime({}, maps=os.devnull, find=lambda name: missing)
    assert facts.path is None
    assert facts.reason == "no libcudart.so* in …"


def test_cuda_runtime_that_tells_no_version(tmp_path: Path) -> None:
    plain = tmp_path / "libcudart.so.12"
    plain.write_text("")  # only the name matters to the probe; the library cannot be asked
    found = LibraryFacts("cudart", str(plain), "LD_LIBRARY_PATH", "libcudart.so.12", "12")
    facts = cudart.probe_cuda_runtime({}, maps=os.devnull, find=lambda name: found)
    assert facts.version == "12"
    unversioned = tmp_path / "libcudart.so"
    unversioned.write_text("")
    found = LibraryFacts("cudart", str(unversioned), "LD_LIBRARY_PATH", None, None)
    facts = cudart.probe_cuda_runtime({}, maps=os.devnull, find=lambda name: found)
    assert facts.version is None
    assert facts.reason is not None
