"""probes/nvml.py: the real pynvml against the fake libnvidia-ml.so.1 (or a real driver).

Run ``ENVGUARD_REAL_GPU=1 pytest tests/test_nvidia.py -k real_driver`` on a
machine with an NVIDIA GPU to compare the probe with ``nvidia-smi``; without
the variable the same tests run against the fake driver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_envguard import cuda_visibility, render
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.probes import Failure, nvml
from pytest_envguard.probes.nvml import GpuFacts, NvidiaFacts
from tests.fixtures_nvml import (
    A100_MIG,
    H100,
    MIGS,
    SOURCE_DIR,
    T4,
    FakeNvml,
    NvmlDriver,
    clean_environ,
    compile_library,
    gpu,
)


def visible(facts: NvidiaFacts, environ: dict[str, str] | None = None) -> tuple[GpuFacts, ...]:
    """The devices CUDA would see, as the checks judge it."""
    environ = environ or {}
    selection = cuda_visibility.select(facts.devices, environ.get("CUDA_VISIBLE_DEVICES"),
                                       environ.get("CUDA_DEVICE_ORDER"))
    return selection.devices  # type: ignore[return-value]


def explanation(facts: NvidiaFacts, environ: dict[str, str] | None = None) -> str:
    environ = environ or {}
    return cuda_visibility.select(facts.devices, environ.get("CUDA_VISIBLE_DEVICES")).explanation


def summary(facts: NvidiaFacts, environ: dict[str, str] | None = None) -> str:
    """The report header's GPU part for these facts."""
    return render.gpu_summary(Environment({"nvidia": facts}, environ=environ or {}))


# -- against the driver (the fake here; the real one with ENVGUARD_REAL_GPU=1) -------------


def test_real_driver_probe_matches_reference(nvml_driver: NvmlDriver) -> None:
    facts = nvml.probe_nvidia(nvml_driver.environ)
    assert facts.reason is None, facts.reason
    assert facts.driver == nvml_driver.driver
    assert facts.cuda == nvml_driver.cuda
    physical = [device for device in facts.devices if device.parent is None]
    assert [device.name for device in physical] == [ref.name for ref in nvml_driver.gpus]
    assert [device.uuid for device in physical] == [ref.uuid for ref in nvml_driver.gpus]
    assert [device.capability for device in physical] == [ref.capability for ref in nvml_driver.gpus]
    assert [(device.memory_total or 0) >> 20 for device in physical] == [
        ref.memory_mib for ref in nvml_driver.gpus]
    assert explanation(facts).startswith("CUDA_VISIBLE_DEVICES is unset")


def test_real_driver_summary_and_json(nvml_driver: NvmlDriver) -> None:
    env = Environment(environ=nvml_driver.environ)
    header = render.gpu_summary(env)
    assert f"driver {nvml_driver.driver}" in header
    assert header.endswith(f"CUDA {nvml_driver.cuda}")
    document = json.loads(json.dumps(env.to_dict()))
    assert [item["uuid"] for item in document["nvidia"]["devices"] if not item["parent"]] == [
        ref.uuid for ref in nvml_driver.gpus]


def test_real_driver_visible_devices_select_by_index_and_uuid(nvml_driver: NvmlDriver) -> None:
    from pytest_envguard.checks.gpu import visible_gpus

    last = len(nvml_driver.gpus) - 1
    by_index = visible_gpus(Environment(environ={**nvml_driver.environ,
                                                 "CUDA_VISIBLE_DEVICES": str(last)}))
    assert [device.uuid for device in by_index.devices] == [nvml_driver.gpus[last].uuid]
    prefix = nvml_driver.gpus[0].uuid[:12]
    by_uuid = visible_gpus(Environment(environ={**nvml_driver.environ,
                                                "CUDA_VISIBLE_DEVICES": prefix}))
    assert [device.uuid for device in by_uuid.devices] == [nvml_driver.gpus[0].uuid]
    hidden = visible_gpus(Environment(environ={**nvml_driver.environ, "CUDA_VISIBLE_DEVICES": ""}))
    assert hidden.devices == ()
    assert hidden.explanation == "CUDA_VISIBLE_DEVICES is empty"


# -- the fake driver's answers ----------------------------------------------------------------


def test_two_gpus_and_the_header_summary(fake_nvml: FakeNvml) -> None:
    facts = nvml.probe_nvidia(fake_nvml.environ(H100 + ";" + H100))
    assert summary(facts) == "2× NVIDIA H100 80GB HBM3 · driver 535.104.05 · CUDA 12.2"
    assert facts.devices[0].memory_total == 81559 << 20
    assert facts.devices[0].memory_free == 81000 << 20
    assert facts.source == "NVML"
    assert facts.notes == ()


def test_mixed_gpus_summary(fake_nvml: FakeNvml) -> None:
    facts = nvml.probe_nvidia(fake_nvml.environ(H100 + ";" + T4))
    assert summary(facts).startswith("NVIDIA H100 80GB HBM3 + Tesla T4 · ")


def test_no_gpu_at_all(fake_nvml: FakeNvml) -> None:
    facts = nvml.probe_nvidia(fake_nvml.environ(""))
    assert facts.failure is None
    assert visible(facts) == ()
    assert summary(facts).startswith("no GPU visible (")


@pytest.mark.parametrize(("value", "expected"), [
    (12020, "12.2"), (11080, "11.8"), (13000, "13.0"), (12090, "12.9"), (10010, "10.1")])
def test_cuda_version_integers(value: int, expected: str) -> None:
    from pytest_envguard.units import cuda_version

    assert cuda_version(value) == expected


def test_cuda_version_from_the_driver(fake_nvml: FakeNvml) -> None:
    assert nvml.probe_nvidia(fake_nvml.environ(cuda="11080")).cuda == "11.8"


def test_no_library(no_nvml_dir: Path) -> None:
    environ = {**os.environ, "LD_LIBRARY_PATH": str(no_nvml_dir)}
    facts = nvml.probe_nvidia(environ)
    assert (facts.failure, facts.error_code) == (Failure.MISSING, nvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    assert facts.reason is not None
    assert "libnvidia-ml.so.1 not found" in facts.reason
    assert facts.driver is None
    assert summary(facts).startswith("GPUs unknown: NVML is not available")


def test_no_library_but_cuda_visible_devices_hides_everything(no_nvml_dir: Path) -> None:
    from pytest_envguard.checks.gpu import visible_gpus

    for setting in ("", "-1", "none"):
        environ = {**os.environ, "LD_LIBRARY_PATH": str(no_nvml_dir), "CUDA_VISIBLE_DEVICES": setting}
        env = Environment(environ=environ)
        view = visible_gpus(env)
        assert view.known and view.devices == (), setting
        assert render.gpu_summary(env).startswith("no GPU visible (CUDA_VISIBLE_DEVICES"), setting


def test_driver_library_mismatch_uses_nvmls_own_words(fake_nvml: FakeNvml) -> None:
    facts = nvml.probe_nvidia(fake_nvml.environ(init_error="18"))
    assert (facts.failure, facts.error_code) == (Failure.BROKEN, 18)
    assert facts.reason == ("NVML initialisation failed: Driver/library version mismatch "
                            "(NVML error 18)")


def test_driver_not_loaded(fake_nvml: FakeNvml) -> None:
    facts = nvml.probe_nvidia(fake_nvml.environ(init_error="9"))
    assert facts.error_code == 9
    assert facts.reason is not None
    assert "kernel module is not loaded" in facts.reason


@pytest.mark.parametrize("where", ["init", "devices"])
def test_a_hang_becomes_a_reason_promptly(fake_nvml: FakeNvml, where: str) -> None:
    started = time.monotonic()
    facts = nvml.probe_nvidia(fake_nvml.environ(hang=where), timeout=0.5)
    assert time.monotonic() - started < 5
    assert (facts.failure, facts.reason) == (Failure.TIMEOUT, "NVML did not answer in 0.5 s")
    assert facts.driver is None


def test_unsupported_calls_become_absent_facts(fake_nvml: FakeNvml) -> None:
    facts = nvml.probe_nvidia(fake_nvml.environ(
        unsupported="nvmlDeviceGetCudaComputeCapability,nvmlSystemGetCudaDriverVersion_v2"))
    assert facts.failure is None
    assert facts.cuda == "12.2"  # from the older nvmlSystemGetCudaDriverVersion
    assert [device.capability for device in facts.devices] == [None, None]
    assert any(note.startswith("nvmlDeviceGetCudaComputeCapability: Not Supported")
               for note in facts.notes)
    none = nvml.probe_nvidia(fake_nvml.environ(
        unsupported="nvmlSystemGetCudaDriverVersion_v2,nvmlSystemGetCudaDriverVersion,"
                    "nvmlDeviceGetMemoryInfo"))
    assert none.cuda is None
    assert none.devices[0].memory_total is None


def test_devices_cuda_cannot_use_are_not_counted(fake_nvml: FakeNvml) -> None:
    gpus = ";".join([H100, gpu("Tesla T4", "GPU-2222", 15360, "7.5", "prohibited"),
                     gpu("Tesla T4", "GPU-3333", 15360, "7.5", "noperm")])
    facts = nvml.probe_nvidia(fake_nvml.environ(gpus))
    assert len(facts.devices) == 3
    assert [device.uuid for device in visible(facts)] == [H100.split("|")[1]]
    assert "compute mode is Prohibited" in explanation(facts)
    assert "Insufficient Permissions" in explanation(facts)


def test_mig_devices_are_listed_and_one_is_visible(fake_nvml: FakeNvml) -> None:
    facts = nvml.probe_nvidia(fake_nvml.environ(A100_MIG, mig=MIGS))
    assert [device.uuid[:12] for device in facts.devices] == [
        "GPU-a1000000", "MIG-11111111", "MIG-88888888"]
    assert facts.devices[1].instance == (1, 0)
    assert facts.devices[1].capability == "8.0"
    assert facts.devices[1].memory_total == 9856 << 20
    assert [device.uuid[:12] for device in visible(facts)] == ["MIG-11111111"]
    assert "a CUDA process enumerates one MIG device" in explanation(facts)
    second = visible(facts, {"CUDA_VISIBLE_DEVICES": "MIG-8888"})
    assert [device.uuid[:12] for device in second] == ["MIG-88888888"]
    old_form = visible(facts, {"CUDA_VISIBLE_DEVICES": "MIG-GPU-a1000000/2/0"})
    assert [device.uuid[:12] for device in old_form] == ["MIG-88888888"]


def test_mig_mode_without_mig_devices_is_not_a_cuda_device(fake_nvml: FakeNvml) -> None:
    facts = nvml.probe_nvidia(fake_nvml.environ(A100_MIG + ";" + T4))
    assert [device.name for device in visible(facts)] == ["Tesla T4"]
    assert "MIG mode is on and it has no MIG devices" in explanation(facts)


# -- CUDA_VISIBLE_DEVICES, applied to the driver's answer (the rules: test_cuda_visibility.py)


def test_cuda_visible_devices_end_to_end(fake_nvml: FakeNvml) -> None:
    from pytest_envguard.checks.gpu import visible_gpus

    environ = fake_nvml.environ(H100 + ";" + T4, cuda_visible_devices="1,0")
    view = visible_gpus(Environment(environ=environ))
    assert [device.name for device in view.devices] == ["Tesla T4", "NVIDIA H100 80GB HBM3"]
    environ = fake_nvml.environ(H100 + ";" + T4, cuda_visible_devices="1,5,0")
    assert [device.name for device in visible_gpus(Environment(environ=environ)).devices] == [
        "Tesla T4"]


# -- the cache ---------------------------------------------------------------------------


def test_the_second_probe_reads_the_cache(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    environ = fake_nvml.environ(H100 + ";" + T4)
    first = nvml.probe_nvidia(environ, cache_dir=cache)
    assert first.source == "NVML"
    assert fake_nvml.inits() == 1
    second = nvml.probe_nvidia(environ, cache_dir=cache)
    assert fake_nvml.inits() == 1
    assert second.source.startswith("cache (")
    assert second.devices == first.devices
    # CUDA_VISIBLE_DEVICES is applied to the answer: one answer serves every worker.
    worker = nvml.probe_nvidia({**environ, "CUDA_VISIBLE_DEVICES": "1"}, cache_dir=cache)
    assert fake_nvml.inits() == 1
    assert [device.name for device in visible(worker, {"CUDA_VISIBLE_DEVICES": "1"})] == ["Tesla T4"]
    assert sorted(path.name for path in cache.iterdir()) == [
        nvml.CACHE_FILE, nvml.CACHE_FILE + ".lock"]  # no temporary left


def test_the_cache_key_follows_the_library_path(fake_nvml: FakeNvml, tmp_path: Path,
                                                no_nvml_dir: Path) -> None:
    cache = tmp_path / "cache"
    environ = fake_nvml.environ()
    nvml.probe_nvidia(environ, cache_dir=cache)
    other = {**environ, "LD_LIBRARY_PATH": f"{no_nvml_dir}"}
    assert nvml.probe_nvidia(other, cache_dir=cache).error_code == 12
    container = {**environ, "NVIDIA_VISIBLE_DEVICES": "1"}
    nvml.probe_nvidia(container, cache_dir=cache)
    assert fake_nvml.inits() == 2


def test_failures_are_not_cached(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    nvml.probe_nvidia(fake_nvml.environ(init_error="18"), cache_dir=cache)
    assert not (cache / nvml.CACHE_FILE).exists()


@pytest.mark.parametrize("content", [
    "{not json", "", "[]", '{"schema": 1, "key": {}, "answer": {}}', "\x00\xff",
    None,  # the right key, a malformed answer
])
def test_a_corrupt_cache_is_ignored_and_rewritten(fake_nvml: FakeNvml, tmp_path: Path,
                                                  content: str | None) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    environ = fake_nvml.environ()
    key = nvml.cache_key(environ)
    assert key is not None
    if content is None:
        from pytest_envguard import __version__
        from pytest_envguard.probes._diskcache import SCHEMA

        content = json.dumps({"schema": SCHEMA, "plugin": __version__, "written": time.time(),
                              "entries": {key: {"devices": [{"index": "x"}], "driver": "1"}}})
    (cache / nvml.CACHE_FILE).write_text(content, encoding="utf-8", errors="surrogateescape")
    (cache / nvml.CACHE_FILE).chmod(0o600)
    facts = nvml.probe_nvidia(environ, cache_dir=cache)
    assert facts.failure is None
    assert facts.source == "NVML"
    assert fake_nvml.inits() == 1
    document = json.loads((cache / nvml.CACHE_FILE).read_text())
    assert document["entries"][key]["driver"] == "535.104.05"


def test_an_unwritable_cache_dir_is_tolerated(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    facts = nvml.probe_nvidia(fake_nvml.environ(), cache_dir=blocked / "cache")
    assert facts.failure is None


def test_environment_facet_uses_settings(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, gpu_timeout=0.5)
    env = Environment(environ=fake_nvml.environ(hang="init"), settings=settings)
    assert env.nvidia.reason == "NVML did not answer in 0.5 s"
    assert env.nvidia is env.nvidia  # memoised
    env = Environment(environ=fake_nvml.environ(), settings=settings)
    env.probe_cheap()
    assert "nvidia" not in env.probed()  # NVML only when something asks for it
    assert env.nvidia.failure is None
    assert (tmp_path / nvml.CACHE_FILE).exists()


def test_a_name_that_is_not_utf8_loses_only_the_name(fake_nvml: FakeNvml) -> None:
    facts = nvml.probe_nvidia(fake_nvml.environ("N\udce9\udcff|GPU-1|1024|1024|8.0|;" + T4))
    assert facts.failure is None
    assert [device.name for device in visible(facts)] == ["unknown", "Tesla T4"]
    assert facts.notes[0].startswith("nvmlDeviceGetName: UnicodeDecodeError")


# -- a replay of a real machine ----------------------------------------------------------------

#: What nvidia-smi and pynvml answered on a real H100 machine on 2026-11-24 (driver 580.159.04,
#: NVML's CUDA version 13000, 81559 MiB, compute capability 9.0, MIG disabled), replayed
#: through the fake library so that CI keeps checking the values real hardware gives.
REAL_H100 = gpu("NVIDIA H100 80GB HBM3", "GPU-f72ff167-dae6-8146-4d64-2836ab7a7734", 81559, "9.0",
                free_mib=81003)


def test_replay_of_a_real_h100(fake_nvml: FakeNvml) -> None:
    from pytest_envguard.checks import evaluate
    from pytest_envguard.grammar import parse_lines
    from pytest_envguard.verdicts import Status

    environ = fake_nvml.environ(REAL_H100, driver="580.159.04", cuda="13000")
    facts = nvml.probe_nvidia(environ)
    assert summary(facts, environ) == "NVIDIA H100 80GB HBM3 · driver 580.159.04 · CUDA 13.0"
    env = Environment({"nvidia": facts}, environ=environ)
    lines = ["driver >=535", "cuda >=12.1", "gpus ==1", "compute-capability >=9.0", 'gpu "*H100*"',
             # An "80GB" card: 81559 MiB is 85.5 GB but only 79.6 GiB.
             "gpu-memory >=80GB"]
    verdicts = evaluate(parse_lines(lines), env)
    assert [v.status for v in verdicts] == [Status.MET] * len(lines), [v.reason for v in verdicts]
    [too_big] = evaluate(parse_lines(["gpu-memory >=80GiB"]), env)
    assert too_big.status is Status.UNMET
    assert too_big.found == "79.6 GiB"


#: nvidia-smi on the rehearsal machine: the two queries the real-driver fixture makes.
NVIDIA_SMI = """#!/bin/sh
if [ "$1" = "--query-gpu=name,uuid,memory.total,compute_cap,driver_version" ]; then
    echo "{name}, {uuid}, {total}, {capability}, {driver}"
else
    echo "| NVIDIA-SMI {driver}     Driver Version: {driver}     CUDA Version: 13.0     |"
fi
"""


@pytest.mark.parametrize(("smi_driver", "passes"), [("580.159.04", True), ("580.95.05", False)])
def test_a_rehearsal_of_the_gpu_machine_mode(tmp_path: Path, smi_driver: str, passes: bool) -> None:
    """``ENVGUARD_REAL_GPU=1`` points the ``real_driver`` tests at the machine's own driver and
    nvidia-smi, which CI lacks: a fake machine plays them (the replayed H100 compiled into the
    fake library, nvidia-smi a script), so that mode runs in CI too. When nvidia-smi and NVML
    disagree, the tests fail."""
    machine = tmp_path / "machine"
    compile_library(SOURCE_DIR / "fake_nvml.c", machine / "lib" / "libnvidia-ml.so.1",
                    "libnvidia-ml.so.1", f'-DMACHINE_GPUS="{REAL_H100}"',
                    '-DMACHINE_DRIVER="580.159.04"', "-DMACHINE_CUDA=13000")
    smi = machine / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    name, uuid, total, _, capability, _ = REAL_H100.split("|")  # the machine compiled in above
    smi.write_text(NVIDIA_SMI.format(name=name, uuid=uuid, total=total, capability=capability,
                                     driver=smi_driver), encoding="utf-8")
    smi.chmod(0o755)
    environ = clean_environ(ENVGUARD_REAL_GPU="1", LD_LIBRARY_PATH=str(machine / "lib"),
                            PATH=f"{smi.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", __file__, "-k", "test_real_driver_"],
        cwd=Path(__file__).parent.parent, env=environ, capture_output=True, text=True, timeout=300,
        check=False)
    output = result.stdout + result.stderr
    if passes:
        assert result.returncode == 0, output
        assert "3 passed" in output, output
    else:
        assert result.returncode == 1, output
        assert "FAILED" in output and "580.95.05" in output, output
