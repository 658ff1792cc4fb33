"""Fixtures for the GPU tests: a fake ``libnvidia-ml.so.1`` and a fake ``libcudart``.

The fake NVML is compiled from ``tests/fake_nvml/fake_nvml.c`` with ``cc`` once
per session; its answers come from ``FAKE_NVML_*`` environment variables (see
the C file). The probe asks NVML in a child interpreter with the environment
snapshot, so a test points the *real* pynvml at the fake by putting its
directory on ``LD_LIBRARY_PATH`` in the environment it hands over — or, for a
whole pytest session, with ``monkeypatch.setenv`` and
``pytester.runpytest_subprocess``.

With ``ENVGUARD_REAL_GPU=1`` the ``nvml_driver`` fixture switches the tests
named ``test_real_driver_*`` to the machine's real driver, and compares the
probe with ``nvidia-smi``; every other test keeps using the fake (which
``LD_LIBRARY_PATH`` puts before the real library), so the whole file passes
on a GPU machine as well as in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SOURCE_DIR = Path(__file__).parent / "fake_nvml"

#: Two GPUs as a real H100 box and an old T4 report them (memory in MiB).
H100 = "NVIDIA H100 80GB HBM3|GPU-6f3a1b2c-0000-1111-2222-333344445555|81559|81000|9.0|"
T4 = "Tesla T4|GPU-9d8e7f60-aaaa-bbbb-cccc-ddddeeeeffff|15360|15000|7.5|"
A100_MIG = "NVIDIA A100-SXM4-40GB|GPU-a1000000-1111-2222-3333-444455556666|40960|40000|8.0|mig"
MIGS = ("0|MIG-11111111-2222-3333-4444-555566667777|9856|1|0;"
        "0|MIG-88888888-9999-aaaa-bbbb-ccccddddeeee|9856|2|0")


def gpu(name: str, uuid: str, total_mib: int, capability: str, flags: str = "",
        free_mib: int | None = None) -> str:
    """One entry of ``FAKE_NVML_GPUS``."""
    free = total_mib if free_mib is None else free_mib
    return f"{name}|{uuid}|{total_mib}|{free}|{capability}|{flags}"


def compile_library(source: Path, output: Path, soname: str, *defines: str) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", *defines, "-o",
                    str(output), f"-Wl,-soname,{soname}", str(source)], check=True)
    return output


@pytest.fixture(scope="session")
def fake_nvml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the fake ``libnvidia-ml.so.1``."""
    directory = tmp_path_factory.mktemp("fake-nvml")
    compile_library(SOURCE_DIR / "fake_nvml.c", directory / "libnvidia-ml.so.1",
                    "libnvidia-ml.so.1")
    return directory


@pytest.fixture(scope="session")
def no_nvml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose ``libnvidia-ml.so.1`` is not ELF: ``dlopen`` stops there with an
    error, so NVML is "not found" even on a machine that has the real library."""
    directory = tmp_path_factory.mktemp("no-nvml")
    (directory / "libnvidia-ml.so.1").write_text("not a shared object\n")
    return directory


def clean_environ(**extra: str) -> dict[str, str]:
    """``os.environ`` without anything that changes what NVML or CUDA would see."""
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("FAKE_NVML_", "ENVGUARD_OVERRIDE_", "CUDA_", "PYTEST_XDIST"))
               and key not in ("LD_LIBRARY_PATH", "NVIDIA_VISIBLE_DEVICES")}
    environ.update(extra)
    return environ


@dataclass
class FakeNvml:
    """Builds environments in which the real pynvml loads the fake library."""

    directory: Path
    log: Path
    defaults: dict[str, str] = field(default_factory=dict)

    def environ(self, gpus: str | None = H100 + ";" + H100, **variables: str) -> dict[str, str]:
        """An environment for the probe: ``gpus`` is ``FAKE_NVML_GPUS``; keyword
        ``cuda_visible_devices=`` sets ``CUDA_VISIBLE_DEVICES``, others ``FAKE_NVML_<NAME>``."""
        environ = clean_environ(LD_LIBRARY_PATH=str(self.directory), FAKE_NVML_LOG=str(self.log))
        if gpus is not None:
            environ["FAKE_NVML_GPUS"] = gpus
        for name, value in variables.items():
            key = name.upper() if name.upper().startswith(("CUDA_", "ENVGUARD_")) \
                else f"FAKE_NVML_{name.upper()}"
            environ[key] = value
        return environ

    def setenv(self, monkeypatch: pytest.MonkeyPatch, gpus: str | None = H100 + ";" + H100,
               **variables: str) -> None:
        """The same, applied to ``os.environ`` (for a pytester session)."""
        wanted = self.environ(gpus, **variables)
        for key in list(os.environ):
            if key not in wanted:
                monkeypatch.delenv(key)
        for key, value in wanted.items():
            monkeypatch.setenv(key, value)

    def inits(self) -> int:
        """How often ``nvmlInit`` ran since the test began."""
        return self.log.read_text().count("init") if self.log.exists() else 0


@pytest.fixture
def fake_nvml(fake_nvml_dir: Path, tmp_path: Path) -> FakeNvml:
    return FakeNvml(fake_nvml_dir, tmp_path / "nvml-calls.log")


# -- the real driver, when asked for ------------------------------------------------------

REAL_GPU = os.environ.get("ENVGUARD_REAL_GPU", "") not in ("", "0")


def real_environ() -> dict[str, str]:
    """The machine's own environment for the real driver: :func:`clean_environ`, but the
    loader path kept, since the driver's libraries may be found only through it (GKE-style
    nodes and some images: ``LD_LIBRARY_PATH=/usr/local/nvidia/lib64``)."""
    environ = clean_environ()
    for key in ("LD_LIBRARY_PATH", "NVIDIA_VISIBLE_DEVICES"):
        if key in os.environ:
            environ[key] = os.environ[key]
    return environ


@dataclass(frozen=True)
class ReferenceGpu:
    name: str
    uuid: str
    memory_mib: int
    capability: str


@dataclass(frozen=True)
class NvmlDriver:
    """An environment for the probe and what the probe must find in it."""

    environ: Mapping[str, str]
    driver: str
    cuda: str
    gpus: tuple[ReferenceGpu, ...]
    real: bool


def nvidia_smi_reference(environ: Mapping[str, str]) -> NvmlDriver:
    """What ``nvidia-smi`` (the driver's own tool) reports."""
    smi = shutil.which("nvidia-smi")
    assert smi, "ENVGUARD_REAL_GPU=1 needs nvidia-smi on PATH"
    query = subprocess.run([smi, "--query-gpu=name,uuid,memory.total,compute_cap,driver_version",
                            "--format=csv,noheader,nounits"], capture_output=True, text=True,
                           check=True, env=dict(environ))
    rows = [[cell.strip() for cell in line.split(",")] for line in query.stdout.splitlines()
            if line.strip()]
    header = subprocess.run([smi], capture_output=True, text=True, check=True, env=dict(environ))
    cuda = re.search(r"CUDA Version:\s*(\d+\.\d+)", header.stdout)
    assert cuda, header.stdout
    return NvmlDriver(environ, rows[0][4], cuda.group(1),
                      tuple(ReferenceGpu(row[0], row[1], int(row[2]), row[3]) for row in rows),
                      real=True)


@pytest.fixture
def nvml_driver(fake_nvml: FakeNvml) -> Iterator[NvmlDriver]:
    """The fake driver with two known GPUs — or, with ENVGUARD_REAL_GPU=1, the real one."""
    if REAL_GPU:
        yield nvidia_smi_reference(real_environ())
        return
    environ = fake_nvml.environ(H100 + ";" + T4, driver="550.54.15", cuda="12040")
    yield NvmlDriver(environ, "550.54.15", "12.4", (
        ReferenceGpu("NVIDIA H100 80GB HBM3", "GPU-6f3a1b2c-0000-1111-2222-333344445555",
                     81559, "9.0"),
        ReferenceGpu("Tesla T4", "GPU-9d8e7f60-aaaa-bbbb-cccc-ddddeeeeffff", 15360, "7.5"),
    ), real=False)


# -- a fake CUDA runtime ------------------------------------------------------------------

CUDART_SOURCE = """\
int cudaRuntimeGetVersion(int *version) { *version = CUDART_VERSION; return 0; }
"""


@pytest.fixture(scope="session")
def fake_cudart(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Directories holding libcudart builds, as a toolkit and pip install them:

    * ``toolkit``: ``libcudart.so.12 -> libcudart.so.12.4.127`` (the version in the name);
    * ``pip``: ``<site>/nvidia/cuda_runtime/lib/libcudart.so.12`` (the major only);
      ``site`` is that site-packages directory;
    * ``bare``: ``libcudart.so.12`` that answers ``cudaRuntimeGetVersion`` with 12.6.
    """
    root = tmp_path_factory.mktemp("cudart")
    source = root / "cudart.c"
    source.write_text(CUDART_SOURCE)
    toolkit = root / "toolkit"
    compile_library(source, toolkit / "libcudart.so.12.4.127", "libcudart.so.12",
                    "-DCUDART_VERSION=12040")
    (toolkit / "libcudart.so.12").symlink_to("libcudart.so.12.4.127")
    site = root / "site-packages"
    pip = site / "nvidia" / "cuda_runtime" / "lib"
    compile_library(source, pip / "libcudart.so.12", "libcudart.so.12", "-DCUDART_VERSION=12040")
    bare = root / "bare"
    compile_library(source, bare / "libcudart.so.12", "libcudart.so.12", "-DCUDART_VERSION=12060")
    return {"toolkit": toolkit, "pip": pip, "site": site, "bare": bare}
