"""gpu_workers.py: each pytest-xdist worker gets its share of the visible GPUs."""

from __future__ import annotations

import json

import pytest

from pytest_envguard import gpu_workers
from pytest_envguard.gpu_workers import split_for_worker, visible_entries
from tests.fixtures_nvml import H100, FakeNvml


def worker(index: int, count: int, **environ: str) -> dict[str, str]:
    return {"PYTEST_XDIST_WORKER": f"gw{index}", "PYTEST_XDIST_WORKER_COUNT": str(count),
            **environ}


def shares(count: int, visible: int | None, per_worker: int | None = None,
           **environ: str) -> list[str | None]:
    plans = [split_for_worker(worker(index, count, **environ), visible, per_worker)
             for index in range(count)]
    return [plan.devices if plan else "not a worker" for plan in plans]


def test_not_a_worker() -> None:
    assert split_for_worker({}, 4) is None
    assert split_for_worker({"PYTEST_XDIST_WORKER": "gw0"}, 4) is None
    assert split_for_worker({"PYTEST_XDIST_WORKER": "master", "PYTEST_XDIST_WORKER_COUNT": "2"},
                            4) is None


@pytest.mark.parametrize(("workers", "gpus", "expected"), [
    (4, 4, ["0", "1", "2", "3"]),
    (2, 4, ["0,1", "2,3"]),
    (3, 4, ["0,1", "2", "3"]),
    (4, 2, ["0", "1", "0", "1"]),  # fewer GPUs than workers: shared round robin
    (1, 3, ["0,1,2"]),
])
def test_split_of_cuda_ordinals(workers: int, gpus: int, expected: list[str]) -> None:
    assert shares(workers, gpus) == expected


def test_an_outer_setting_is_split_not_the_physical_gpus() -> None:
    assert shares(2, 2, CUDA_VISIBLE_DEVICES="2,3") == ["2", "3"]
    assert shares(2, 2, CUDA_VISIBLE_DEVICES="GPU-aaaa,GPU-bbbb") == ["GPU-aaaa", "GPU-bbbb"]
    # Entries past one that names no device are not visible: not handed out.
    assert shares(2, 1, CUDA_VISIBLE_DEVICES="3,9") == ["3", "3"]
    assert shares(2, None, CUDA_VISIBLE_DEVICES="1,-1,2") == ["1", "1"]


def test_nothing_to_split() -> None:
    for environ in ({"CUDA_VISIBLE_DEVICES": ""}, {"CUDA_VISIBLE_DEVICES": "0,0"}, {}):
        plan = split_for_worker(worker(0, 2, **environ), 0 if environ else None)
        assert plan is not None
        assert plan.devices is None, environ
    plan = split_for_worker(worker(1, 2), None)
    assert plan is not None
    assert plan.reason == "CUDA_VISIBLE_DEVICES unset and the GPUs are unknown: not split"


def test_per_worker() -> None:
    assert shares(2, 4, per_worker=1) == ["0", "1"]
    assert shares(3, 4, per_worker=2) == ["0,1", "2,3", "0,1"]
    assert shares(2, 1, per_worker=2) == ["0", "0"]


def test_reason() -> None:
    plan = split_for_worker(worker(1, 2, CUDA_VISIBLE_DEVICES="4,5"), 2)
    assert plan is not None
    assert plan.reason == "worker gw1 of 2 gets 5 of 4,5 (CUDA_VISIBLE_DEVICES=4,5)"


def test_visible_entries() -> None:
    assert visible_entries(None, 3) == ["0", "1", "2"]
    assert visible_entries(None, None) is None
    assert visible_entries(" 1 , 0 ", None) == ["1", "0"]
    assert visible_entries("GPU-a,0", None) == ["GPU-a"]


def test_worker_gpus_counts_through_nvml(fake_nvml: FakeNvml) -> None:
    environ = fake_nvml.environ(";".join([H100] * 4))
    assert gpu_workers.worker_gpus(environ) is None
    plan = gpu_workers.worker_gpus({**environ, **worker(3, 4)})
    assert plan is not None
    assert plan.devices == "3"


def test_under_xdist(pytester: pytest.Pytester, fake_nvml: FakeNvml,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``envguard_xdist_gpus = auto``: each worker sees its own half of the outer
    CUDA_VISIBLE_DEVICES, and its contract is checked against that half."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # when this suite runs under -n
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    fake_nvml.setenv(monkeypatch, ";".join([H100] * 4), cuda_visible_devices="1,2,3,0")
    # The controller runs no tests and counts every GPU (4); each worker counts its share (2).
    pytester.makeini("[pytest]\nenvguard_xdist_gpus = auto\nenvguard = gpus >=2\n")
    pytester.makepyfile(test_gpu="""
import os
import pytest

@pytest.mark.parametrize("n", range(8))
def test_sees_its_gpus(n):
    print("SEEN", os.environ["PYTEST_XDIST_WORKER"], os.environ["CUDA_VISIBLE_DEVICES"])
    expected = {"gw0": "1,2", "gw1": "3,0"}[os.environ["PYTEST_XDIST_WORKER"]]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == expected
""")
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "--envguard-json", "r.json")
    result.assert_outcomes(passed=8)
    document = json.loads((pytester.path / "r.json").read_text())
    assert document["contract"][0]["found"] == "4"
    assert {worker: data["contract"][0]["found"] for worker, data in document["workers"].items()} == {
        "gw0": "2", "gw1": "2"}


def test_xdist_gpus_off_leaves_the_workers_alone(pytester: pytest.Pytester, fake_nvml: FakeNvml,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.setenv(monkeypatch, ";".join([H100] * 4), cuda_visible_devices="1,2,3,0")
    pytester.makepyfile(test_gpu="""
import os

def test_sees_all():
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1,2,3,0"
""")
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("value", ["0", "some", "-1", "1.5"])
def test_bad_xdist_gpus_value_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makeini(f"[pytest]\nenvguard_xdist_gpus = {value}\n")
    result = pytester.runpytest()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*envguard_xdist_gpus*invalid value*off, auto, or a number*"])
