"""The cuda, driver, cuda-runtime and GPU checks: hand-built facts, then whole sessions
against the fake libnvidia-ml.so.1."""

from __future__ import annotations

import time

import pytest

from pytest_envguard import checks, grammar
from pytest_envguard.environment import Environment
from pytest_envguard.probes import Failure
from pytest_envguard.probes.cudart import CudaRuntimeFacts
from pytest_envguard.probes.nvml import GpuFacts, NvidiaFacts
from pytest_envguard.verdicts import Status, Verdict
from tests.fixtures_nvml import H100, T4, FakeNvml

GIB = 1 << 30


def card(index: int, name: str = "NVIDIA H100 80GB HBM3", memory_gib: float = 79.6,
         capability: str | None = "9.0") -> GpuFacts:
    return GpuFacts(index, name, f"GPU-{index:04d}", int(memory_gib * GIB), None, capability)


def t4(index: int) -> GpuFacts:
    return card(index, "Tesla T4", 15.0, "7.5")


def nvidia(*devices: GpuFacts, driver: str = "535.104.05", cuda: str | None = "12.2") -> NvidiaFacts:
    return NvidiaFacts(driver, cuda, devices)


NO_NVML = NvidiaFacts(None, None, (), Failure.MISSING,
                      "NVML is not available: libnvidia-ml.so.1 not found (…)", error_code=12)


def evaluate(lines: list[str], facts: NvidiaFacts | None = None, *,
             runtime: CudaRuntimeFacts | None = None, **environ: str) -> list[Verdict]:
    given: dict[str, object] = {}
    if facts is not None:
        given["nvidia"] = facts
    if runtime is not None:
        given["cuda-runtime"] = runtime
    env = Environment(given, environ=environ)
    return checks.evaluate(grammar.parse_lines(lines), env)


def summary(verdicts: list[Verdict]) -> list[tuple[str, str]]:
    return [(verdict.status.value, verdict.found) for verdict in verdicts]


# -- cuda and driver ------------------------------------------------------------------------


def test_cuda_met_and_unmet_with_the_driver_to_install() -> None:
    met, old = evaluate(["cuda >=12.0", "cuda >=12.4"], nvidia(card(0)))
    assert (met.status, met.found) == (Status.MET, "12.2")
    assert (old.status, old.found) == (Status.UNMET, "12.2")
    assert old.reason == "CUDA 12.2 does not satisfy >=12.4 (the highest the driver 535.104.05 supports)"
    assert old.hint is not None
    assert "550.54.14" in old.hint
    assert "525.60.13" in old.hint


def test_cuda_for_an_old_major_names_its_driver() -> None:
    verdict, = evaluate(["cuda >=11.8"], nvidia(card(0), driver="470.82.01", cuda="11.4"))
    assert verdict.status is Status.UNMET
    assert verdict.hint is not None
    assert "520.61.05" in verdict.hint


def test_driver() -> None:
    met, unmet = evaluate(["driver >=525", "driver >=550"], nvidia(card(0)))
    assert (met.status, unmet.status) == (Status.MET, Status.UNMET)
    assert unmet.hint == "upgrade the NVIDIA driver to >= 550"


def test_no_nvml_is_unknown_with_a_hint() -> None:
    for verdict in evaluate(["cuda >=12", "driver >=525", "gpus >=1"], NO_NVML):
        assert verdict.status is Status.UNKNOWN
        assert verdict.reason.startswith("NVML is not available")
        assert verdict.hint is not None
        assert "NVIDIA container toolkit" in verdict.hint


def test_driver_library_mismatch_hint() -> None:
    broken = NvidiaFacts(None, None, (), Failure.BROKEN,
                         "NVML initialisation failed: Driver/library version mismatch "
                         "(NVML error 18)", error_code=18)
    verdict, = evaluate(["cuda >=12"], broken)
    assert verdict.status is Status.UNKNOWN
    assert verdict.hint is not None
    assert "reboot" in verdict.hint
    assert "pin the driver packages" in verdict.hint


def test_a_timeout_hint() -> None:
    hung = NvidiaFacts(None, None, (), Failure.TIMEOUT, "NVML did not answer in 10 s")
    verdict, = evaluate(["driver >=1"], hung)
    assert verdict.hint is not None
    assert "envguard_gpu_timeout" in verdict.hint


def test_cuda_version_unreported() -> None:
    verdict, = evaluate(["cuda >=12"], nvidia(card(0), cuda=None))
    assert verdict.status is Status.UNKNOWN


# -- overrides -------------------------------------------------------------------------------


def test_overrides_replace_the_probe_and_say_so() -> None:
    # NO_NVML: the overridden keys never look at it.
    cuda, driver, gpus, capability = evaluate(
        ["cuda >=12.4", "driver >=550", "gpus >=2", "compute-capability >=8.0"], NO_NVML,
        ENVGUARD_OVERRIDE_CUDA="12.4", ENVGUARD_OVERRIDE_DRIVER="550.54.14",
        ENVGUARD_OVERRIDE_GPUS="2", ENVGUARD_OVERRIDE_COMPUTE_CAPABILITY="9.0")
    assert summary([cuda, driver, gpus, capability]) == [
        ("met", "12.4 (overridden)"), ("met", "550.54.14 (overridden)"), ("met", "2 (overridden)"),
        ("met", "2× 9.0 (overridden)")]
    assert all(verdict.overridden for verdict in (cuda, driver, gpus, capability))


def test_empty_overrides_mean_absent() -> None:
    cuda, gpus = evaluate(["cuda >=12", "gpus >=1"], nvidia(card(0)),
                          ENVGUARD_OVERRIDE_CUDA="", ENVGUARD_OVERRIDE_GPUS="")
    assert (cuda.status, cuda.found) == (Status.UNMET, "absent (overridden)")
    assert (gpus.status, gpus.found) == (Status.UNMET, "0 (overridden)")
    assert gpus.overridden
    zero, = evaluate(["gpus ==0"], NO_NVML, ENVGUARD_OVERRIDE_GPUS="")
    assert zero.status is Status.MET
    capability, = evaluate(["compute-capability >=7"], nvidia(card(0)),
                           ENVGUARD_OVERRIDE_COMPUTE_CAPABILITY="")
    assert (capability.status, capability.found) == (Status.UNMET, "absent (overridden)")


def test_overridden_gpus_are_the_rehearsed_machines_the_real_ones_are_not_asked() -> None:
    """A count says how many GPUs the rehearsed machine has, nothing of them: a property
    line is unknown (never unmet), and names the override that would answer it; the
    real GPUs (here one H100) are not mixed in."""
    memory, gpus = evaluate(["gpu-memory >=16GiB", "gpus >=2"], nvidia(card(0)),
                            ENVGUARD_OVERRIDE_GPUS="2")
    assert memory.status is Status.UNKNOWN
    assert "ENVGUARD_OVERRIDE_GPUS gives only a count; a list name:MiB:cc;…" in memory.reason
    assert (gpus.status, gpus.found) == (Status.UNKNOWN, "0 (+2 unknown) (overridden)")
    fewer, = evaluate(["gpus >=2"], nvidia(card(0), card(1)), ENVGUARD_OVERRIDE_GPUS="1")
    assert (fewer.status, fewer.found) == (Status.UNMET, "1 (overridden)")


def test_a_count_with_property_lines_is_never_an_unmet_no_gpu_caused() -> None:
    """The issue's case: ``gpus >=3`` with two GPUs of unknown memory is unmet by the
    count alone; the memory line is unknown, not unmet."""
    memory, gpus = evaluate(["gpu-memory >=16GiB", "gpus >=3"], NO_NVML,
                            ENVGUARD_OVERRIDE_GPUS="2")
    assert (gpus.status, gpus.found) == (Status.UNMET, "0 (+2 unknown) (overridden)")
    assert (memory.status, memory.found) == (Status.UNKNOWN, "2× unknown (overridden)")
    assert memory.overridden and gpus.overridden


def test_a_bad_override_is_unknown() -> None:
    verdict, = evaluate(["gpus >=1"], NO_NVML, ENVGUARD_OVERRIDE_GPUS="two")
    assert verdict.status is Status.UNKNOWN
    assert "ENVGUARD_OVERRIDE_GPUS='two'" in verdict.reason
    bad, = evaluate(["cuda >=12"], NO_NVML, ENVGUARD_OVERRIDE_CUDA="twelve")
    assert bad.status is Status.UNKNOWN


# -- rehearsed GPUs: a list in ENVGUARD_OVERRIDE_GPUS, a target ------------------------------

A100S = "A100 80GB:81920:8.0;A100 80GB:81920:8.0"


def rehearsed(lines: list[str], target: str | None = None, **environ: str
              ) -> tuple[list[Verdict], Environment]:
    """The verdicts with no NVML fact given: a probe of NVML would show in ``probed()``."""
    from pytest_envguard.targets import find_target

    env = Environment({}, environ=environ, target=find_target(target) if target else None)
    return checks.evaluate(grammar.parse_lines(lines), env), env


def test_a_gpu_list_answers_every_gpu_line_and_nvml_is_not_asked() -> None:
    verdicts, env = rehearsed(["gpus >=2", "gpu-memory >=40GiB", "compute-capability >=8.0",
                               "gpu '*A100*'"], ENVGUARD_OVERRIDE_GPUS=A100S)
    assert summary(verdicts) == [("met", "2 (overridden)"), ("met", "2× 80.0 GiB (overridden)"),
                                 ("met", "2× 8.0 (overridden)"),
                                 ("met", "2× A100 80GB (overridden)")]
    assert all(verdict.overridden for verdict in verdicts)
    assert "nvidia" not in env.probed()
    too_big, _ = rehearsed(["gpu-memory >=100GiB"], ENVGUARD_OVERRIDE_GPUS=A100S)
    assert too_big[0].status is Status.UNMET
    assert too_big[0].reason == ("0 of 2 visible GPUs meet it; memory: GPU 0 (A100 80GB): "
                                 "80.0 GiB; GPU 1 (A100 80GB): 80.0 GiB")


def test_a_mixed_list_is_judged_gpu_by_gpu() -> None:
    mixed = "Tesla T4:15360:7.5;A100 80GB:81920:8.0"
    one, _ = rehearsed(["gpus >=1", "gpu-memory >=40GiB"], ENVGUARD_OVERRIDE_GPUS=mixed)
    assert [v.status for v in one] == [Status.MET, Status.MET]
    two, _ = rehearsed(["gpus >=2", "gpu-memory >=40GiB"], ENVGUARD_OVERRIDE_GPUS=mixed)
    assert [(v.status, v.found) for v in two] == [
        (Status.UNMET, "1 (overridden)"), (Status.UNMET, "15.0 GiB, 80.0 GiB (overridden)")]
    assert "GPU 0 (Tesla T4): 15.0 GiB" in two[1].reason


def test_cuda_visible_devices_selects_among_rehearsed_gpus_as_among_real_ones() -> None:
    mixed = "Tesla T4:15360:7.5;A100 80GB:81920:8.0;A100 80GB:81920:8.0"
    for setting, expected in (("1", "A100 80GB (overridden)"), ("2,0", "A100 80GB, Tesla T4 "
                              "(overridden)"), ("", "no GPU (overridden)"),
                              ("0,0", "no GPU (overridden)"), ("1,7,0", "A100 80GB (overridden)")):
        (name,), _ = rehearsed(["gpu '*'"], ENVGUARD_OVERRIDE_GPUS=mixed,
                               CUDA_VISIBLE_DEVICES=setting)
        assert name.found == expected, setting
    # UUIDs name real GPUs; rehearsed ones have none: the entries count as the first GPUs.
    (gpus,), _ = rehearsed(["gpus ==2"], ENVGUARD_OVERRIDE_GPUS=mixed,
                           CUDA_VISIBLE_DEVICES="GPU-aaaa,GPU-bbbb")
    assert gpus.status is Status.MET
    assert "names GPUs by UUID, taken as the first 2" in gpus.reason


def test_the_capability_override_applies_to_the_list() -> None:
    (capability,), _ = rehearsed(["compute-capability >=9.0"], ENVGUARD_OVERRIDE_GPUS=A100S,
                                 ENVGUARD_OVERRIDE_COMPUTE_CAPABILITY="9.0")
    assert (capability.status, capability.found) == (Status.MET, "2× 9.0 (overridden)")


@pytest.mark.parametrize("value", ["A100:80GB:8.0", "two", "A100:81920", "-1"])
def test_a_bad_gpu_value_makes_every_gpu_line_unknown(value: str) -> None:
    verdicts, env = rehearsed(["gpus >=1", "gpu-memory >=1GiB"], ENVGUARD_OVERRIDE_GPUS=value)
    assert [v.status for v in verdicts] == [Status.UNKNOWN, Status.UNKNOWN]
    assert all(f"ENVGUARD_OVERRIDE_GPUS={value!r}" in v.reason for v in verdicts)
    assert all(v.overridden for v in verdicts)
    assert "nvidia" not in env.probed()


def test_a_cuda_worker_target_rehearses_driver_cuda_and_gpus() -> None:
    verdicts, env = rehearsed(["cuda >=12.1", "driver >=520", "gpus >=2", "gpu-memory >=16GiB",
                               "gpu '*T4*'"], target="cuda-11.8-t4x2")
    cuda, driver, gpus, memory, name = verdicts
    assert (cuda.status, cuda.found) == (Status.UNMET, "11.8 (overridden)")
    assert (driver.status, driver.found) == (Status.MET, "520.61.05 (overridden)")
    assert (gpus.status, gpus.found) == (Status.UNMET, "0 (overridden)")
    assert "target cuda-11.8-t4x2 (2 GPUs)" in gpus.reason
    assert (memory.status, memory.found) == (Status.UNMET, "2× 15.0 GiB (overridden)")
    assert name.status is Status.MET
    assert "nvidia" not in env.probed()
    # A count from a user profile names the profile as what gives only a count.
    from pytest_envguard.targets import user_targets

    profile = user_targets({"profile": {"two": {"gpus": 2}}}, "t.toml")["two"]
    env = Environment({}, environ={}, target=profile)
    memory_line, = checks.evaluate(grammar.parse_lines(["gpu-memory >=1GiB"]), env)
    assert memory_line.status is Status.UNKNOWN
    assert "target two gives only a count" in memory_line.reason


# -- the GPU lines together ------------------------------------------------------------------


def test_gpus_defaults_and_counts() -> None:
    assert summary(evaluate(["gpus >=2"], nvidia(card(0), card(1)))) == [("met", "2")]
    assert summary(evaluate(["gpus >=2"], nvidia(card(0)))) == [("unmet", "1")]
    assert summary(evaluate(["gpus ==0"], nvidia())) == [("met", "0")]
    assert summary(evaluate(["gpus >=1, <=2"], nvidia(card(0), card(1), card(2)))) == [
        ("unmet", "3")]


def test_gpus_hidden_by_cuda_visible_devices_are_named() -> None:
    verdict, = evaluate(["gpus >=2"], nvidia(card(0), card(1)), CUDA_VISIBLE_DEVICES="1")
    assert (verdict.status, verdict.found) == (Status.UNMET, "1")
    assert "CUDA_VISIBLE_DEVICES=1" in verdict.reason
    assert verdict.hint == "CUDA_VISIBLE_DEVICES hides GPUs: unset it or name more devices"


def test_an_empty_cuda_visible_devices_is_known_without_nvml() -> None:
    hidden = NvidiaFacts(None, None, (), Failure.MISSING, "NVML is not available: …",
                         error_code=12)
    verdict, = evaluate(["gpus >=1"], hidden, CUDA_VISIBLE_DEVICES="")
    assert (verdict.status, verdict.found) == (Status.UNMET, "0")
    assert verdict.skip_reason() == (
        "envguard: needs gpus >=1 — found 0: 0 visible GPUs (CUDA_VISIBLE_DEVICES is empty)")


def test_property_lines_imply_at_least_one_gpu() -> None:
    verdict, = evaluate(["gpu-memory >=16GiB"], nvidia())
    assert (verdict.status, verdict.found) == (Status.UNMET, "no GPU")
    verdict, = evaluate(["gpu-memory >=16GiB"], nvidia(t4(0), card(1)))
    assert (verdict.status, verdict.found) == (Status.MET, "15.0 GiB, 79.6 GiB")


def test_too_little_memory() -> None:
    memory, = evaluate(["gpu-memory >=24GiB"], nvidia(t4(0)))
    assert (memory.status, memory.found) == (Status.UNMET, "15.0 GiB")
    assert memory.reason == "0 of 1 visible GPU meets it; memory: GPU 0 (Tesla T4): 15.0 GiB"
    assert memory.hint is not None


def test_too_low_capability() -> None:
    capability, = evaluate(["compute-capability >=8.0"], nvidia(t4(0), t4(1)))
    assert (capability.status, capability.found) == (Status.UNMET, "2× 7.5")
    assert evaluate(["compute-capability ==9.*"], nvidia(card(0)))[0].status is Status.MET


def test_wrong_name() -> None:
    name, = evaluate(["gpu '*H100*'"], nvidia(t4(0)))
    assert (name.status, name.found) == (Status.UNMET, "Tesla T4")
    assert evaluate(["gpu '*h100*'"], nvidia(card(0)))[0].status is Status.MET  # any case
    exact, = evaluate(["gpu H100"], nvidia(card(0)))  # a glob, not a substring
    assert exact.status is Status.UNMET


def test_at_least_n_gpus_each_meeting_every_line() -> None:
    # Two GPUs, but only one meets both the memory and the capability line.
    lines = ["gpus >=2", "gpu-memory >=40GiB", "compute-capability >=8.0"]
    gpus, memory, capability = evaluate(lines, nvidia(card(0), t4(1)))
    assert (gpus.status, gpus.found) == (Status.UNMET, "1")
    assert gpus.reason.startswith("1 of 2 visible GPUs meets gpu-memory >=40GiB, "
                                  "compute-capability >=8.0")
    assert memory.status is Status.UNMET
    assert capability.status is Status.UNMET
    # The same lines with one GPU wanted are met.
    assert {v.status for v in evaluate(["gpus >=1", *lines[1:]], nvidia(card(0), t4(1)))} == {
        Status.MET}


def test_lines_that_every_gpu_meets_are_not_blamed() -> None:
    gpus, name = evaluate(["gpus >=4", "gpu '*H100*'"], nvidia(card(0), card(1)))
    assert (gpus.status, name.status) == (Status.UNMET, Status.MET)
    assert name.reason.startswith("every visible GPU meets it")


def test_no_single_gpu_meets_all_lines() -> None:
    big_old = card(0, "Tesla V100", 32, "7.0")
    small_new = card(1, "NVIDIA L4", 22, "8.9")
    memory, capability = evaluate(["gpu-memory >=24GiB", "compute-capability >=8.0"],
                                  nvidia(big_old, small_new))
    assert (memory.status, capability.status) == (Status.UNMET, Status.UNMET)
    assert "not with the other GPU lines" in memory.reason


def test_unknown_values_make_unknown_verdicts() -> None:
    mystery = card(0, capability=None)
    capability, = evaluate(["compute-capability >=8.0"], nvidia(mystery))
    assert capability.status is Status.UNKNOWN
    assert "compute capability of GPU 0" in capability.reason
    # An unknown value that cannot change the answer is no reason for doubt.
    gpus, capability = evaluate(["gpus >=3", "compute-capability >=8.0"], nvidia(mystery))
    assert (gpus.status, capability.status) == (Status.UNMET, Status.UNMET)


def test_gpu_lines_of_one_marker_are_judged_together_with_markers_false() -> None:
    verdicts = evaluate(["gpus >=8; python_version < '3'", "gpus >=1"], nvidia(card(0)))
    assert [verdict.status for verdict in verdicts] == [Status.NA, Status.MET]


# -- cuda-runtime ----------------------------------------------------------------------------

RUNTIME_12_4 = CudaRuntimeFacts("12.4.127", "/venv/nvidia/cuda_runtime/lib/libcudart.so.12",
                                "site-packages nvidia/*/lib", "distribution nvidia-cuda-runtime-cu12")


def test_cuda_runtime_met() -> None:
    verdict, = evaluate(["cuda-runtime >=12.1"], nvidia(card(0), cuda="12.4"), runtime=RUNTIME_12_4)
    assert (verdict.status, verdict.found) == (Status.MET, "12.4.127")
    assert "site-packages nvidia/*/lib" in verdict.reason


def test_cuda_runtime_newer_major_than_the_driver() -> None:
    verdict, = evaluate(["cuda-runtime >=12"], nvidia(card(0), driver="470.82.01", cuda="11.4"),
                        runtime=RUNTIME_12_4)
    assert verdict.status is Status.UNMET
    assert "CUDA driver version is insufficient" in verdict.reason
    assert verdict.hint is not None
    assert "550.54.14" in verdict.hint


def test_cuda_runtime_newer_minor_runs_with_a_note() -> None:
    verdict, = evaluate(["cuda-runtime"], nvidia(card(0), cuda="12.2"), runtime=RUNTIME_12_4)
    assert verdict.status is Status.MET
    assert "minor version compatibility" in verdict.reason


def test_cuda_runtime_against_an_overridden_cuda() -> None:
    verdict, = evaluate(["cuda-runtime"], NO_NVML, runtime=RUNTIME_12_4,
                        ENVGUARD_OVERRIDE_CUDA="11.8")
    assert verdict.status is Status.UNMET
    assert verdict.overridden
    assert "ENVGUARD_OVERRIDE_CUDA supports only CUDA 11.8" in verdict.reason


def test_cuda_runtime_without_a_driver_is_judged_alone() -> None:
    verdict, = evaluate(["cuda-runtime >=12.4"], NO_NVML, runtime=RUNTIME_12_4)
    assert verdict.status is Status.MET


def test_cuda_runtime_missing_or_unversioned() -> None:
    missing, = evaluate(["cuda-runtime"], NO_NVML,
                        runtime=CudaRuntimeFacts(None, None, None, reason="no libcudart.so*",
                                                         failure=Failure.MISSING))
    assert (missing.status, missing.found) == (Status.UNMET, "none")
    assert missing.hint is not None
    assert "nvidia-cuda-runtime-cu12 for CUDA 12" in missing.hint
    assert "nvidia-cuda-runtime for CUDA 13" in missing.hint  # unsuffixed from CUDA 13 on
    unversioned, = evaluate(["cuda-runtime"], NO_NVML,
                            runtime=CudaRuntimeFacts(None, "/x/libcudart.so", "LD_LIBRARY_PATH",
                                                     reason="no version"))
    assert unversioned.status is Status.UNKNOWN


def test_cuda_runtime_from_the_loader(fake_nvml: FakeNvml, fake_cudart: dict[str, object]) -> None:
    environ = fake_nvml.environ(H100, cuda="11080")
    environ["LD_LIBRARY_PATH"] = f"{fake_nvml.directory}:{fake_cudart['toolkit']}"
    env = Environment(environ=environ)
    verdict, = checks.evaluate(grammar.parse_lines(["cuda-runtime >=12"]), env)
    assert verdict.status is Status.UNMET, verdict
    assert verdict.found == "12.4.127"
    assert "the driver supports only CUDA 11.8" in verdict.reason


# -- whole sessions against the fake driver ---------------------------------------------------

CONFTEST_FREE_TESTS = """
import pytest

@pytest.mark.requires("gpus >=2", "gpu-memory >=40GiB")
def test_two_big_gpus():
    pass

@pytest.mark.requires(gpus=">=1")
def test_one_gpu():
    pass

def test_cpu():
    pass
"""


def test_session_contract_too_few_gpus(pytester: pytest.Pytester, fake_nvml: FakeNvml,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.setenv(monkeypatch, H100)
    pytester.makeini("[pytest]\nenvguard =\n    gpus >=2\n    cuda >=12.0\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == 6
    result.stdout.fnmatch_lines(["*gpus >=2*1*"])
    result.stdout.no_fnmatch_line("*1 passed*")


def test_session_markers_skip_with_the_reason(pytester: pytest.Pytester, fake_nvml: FakeNvml,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.setenv(monkeypatch, T4)
    pytester.makepyfile(test_gpu=CONFTEST_FREE_TESTS)
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*envguard: needs gpus >=2 — found 0: 0 of 1 visible GPU meets "
                                 "gpu-memory >=40GiB*"])


def test_session_cuda_visible_devices_empty(pytester: pytest.Pytester, fake_nvml: FakeNvml,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.setenv(monkeypatch, H100, cuda_visible_devices="")
    pytester.makepyfile(test_gpu=CONFTEST_FREE_TESTS)
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*needs gpus >=1 — found 0: 0 visible GPUs (CUDA_VISIBLE_DEVICES "
                                 "is empty)*"])


def test_session_report_shows_the_gpus(pytester: pytest.Pytester, fake_nvml: FakeNvml,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.setenv(monkeypatch, H100 + ";" + H100)
    pytester.makeini("[pytest]\nenvguard = gpus >=2\n")
    result = pytester.runpytest_subprocess("--envguard-report")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*2× NVIDIA H100 80GB HBM3 · driver 535.104.05 · CUDA 12.2*"])


def test_session_driver_library_mismatch(pytester: pytest.Pytester, fake_nvml: FakeNvml,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.setenv(monkeypatch, H100, init_error="18")
    pytester.makeini("[pytest]\nenvguard = driver >=525\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == 6
    result.stdout.fnmatch_lines(["*Driver/library version mismatch (NVML error 18)*",
                                 "*reboot*"])


def test_session_hang_ends_promptly(pytester: pytest.Pytester, fake_nvml: FakeNvml,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.setenv(monkeypatch, H100, hang="init")
    pytester.makeini("[pytest]\nenvguard = gpus >=1\nenvguard_gpu_timeout = 0.5\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    started = time.monotonic()
    result = pytester.runpytest_subprocess()
    assert time.monotonic() - started < 20
    assert result.ret == 6
    result.stdout.fnmatch_lines(["*NVML did not answer in 0.5 s*"])


def test_session_overrides_on_a_cpu_machine(pytester: pytest.Pytester, fake_nvml: FakeNvml,
                                            monkeypatch: pytest.MonkeyPatch,
                                            no_nvml_dir: object) -> None:
    fake_nvml.setenv(monkeypatch, None, ENVGUARD_OVERRIDE_GPUS="2",
                     ENVGUARD_OVERRIDE_CUDA="12.4")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(no_nvml_dir))
    pytester.makepyfile(test_gpu="""
import pytest

@pytest.mark.requires("gpus >=2", "cuda >=12.4")
def test_gated():
    pass

@pytest.mark.requires("cuda >=13")
def test_too_new():
    pass
""")
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*needs cuda >=13 — found 12.4 (overridden)*"])
