"""cuda_visibility.py: CUDA_VISIBLE_DEVICES as CUDA reads it, and each pytest-xdist
worker's share of the visible GPUs."""

from __future__ import annotations

import json

import pytest

from pytest_envguard.cuda_visibility import hides_everything, select, split_for_worker, visible_entries
from pytest_envguard.probes.nvml import GpuFacts
from tests.fixtures_nvml import H100, FakeNvml

# -- CUDA_VISIBLE_DEVICES, as CUDA reads it ----------------------------------------------------

DEVICES = tuple(GpuFacts(index, "NVIDIA A100", uuid, 16 << 30, None, "8.0") for index, uuid in
                enumerate(["GPU-aaaa1111-0000", "GPU-bbbb2222-0000", "GPU-bbbb3333-0000"]))


@pytest.mark.parametrize(("setting", "expected"), [
    (None, "012"),
    ("", ""),
    ("   ", ""),
    ("-1", ""),
    ("1", "1"),
    ("2,0", "20"),
    (" 2 , 0 ", "20"),
    ("0,2,-1,1", "02"),  # -1 ends the list
    ("0,7,1", "0"),  # 7 names no device: the list stops there
    ("1gpu,2", "12"),  # the leading digits count, as strtoul reads them
    ("+1", "1"),
    ("x,0", ""),
    ("0,0", ""),  # a device named twice: CUDA sees none
    ("GPU-aaaa", "0"),
    ("GPU-bbbb3,GPU-aaaa1111-0000", "20"),
    ("GPU-bbbb", ""),  # an ambiguous prefix names no device
    ("GPU-zzzz,GPU-aaaa", ""),
    ("GPU-aaaa,1", "0"),  # a list of UUIDs stops at an index
    ("0,GPU-bbbb2", "0"),  # a list of indices stops at a UUID
    ("GPU-aaaa,GPU-aaaa1", ""),
])
def test_cuda_visible_devices(setting: str | None, expected: str) -> None:
    selection = select(DEVICES, setting)
    assert "".join(str(device.index) for device in selection.devices) == expected, selection.explanation
    # The entries naming them are what a worker split hands out.
    assert len(selection.entries) == len(expected)
    assert selection.hides is (setting is not None and len(expected) < 3)


def test_cuda_visible_devices_explains_itself() -> None:
    assert select(DEVICES, "0,7").explanation == (
        "CUDA_VISIBLE_DEVICES=0,7: '7' names no device here, so the list stops there")
    assert select(DEVICES, "0,0").explanation == (
        "CUDA_VISIBLE_DEVICES=0,0 names a device twice, so CUDA sees none")
    assert select(DEVICES, "1,-1").explanation == "CUDA_VISIBLE_DEVICES=1,-1: -1 ends the list"
    assert select(DEVICES, None).explanation == (
        "CUDA_VISIBLE_DEVICES is unset: all 3 GPUs NVML lists")


def test_the_entries_keep_the_settings_own_forms() -> None:
    assert select(DEVICES, None).entries == ("0", "1", "2")
    assert select(DEVICES, "2, 0").entries == ("2", "0")
    assert select(DEVICES, "GPU-bbbb3,GPU-aaaa1111-0000").entries == ("GPU-bbbb3",
                                                                      "GPU-aaaa1111-0000")


def test_index_order_caveat_for_different_models() -> None:
    mixed = (*DEVICES[:1], GpuFacts(1, "Tesla T4", "GPU-ffff", None, None, "7.5"))
    assert "PCI bus order" in select(mixed, "1").explanation
    assert "PCI bus order" not in select(mixed, "1", order="PCI_BUS_ID").explanation


@pytest.mark.parametrize(("setting", "hides"), [
    (None, False), ("", True), ("-1", True), ("none", True), ("0", False), ("GPU-x", False)])
def test_without_the_device_list(setting: str | None, hides: bool) -> None:
    assert hides_everything(setting)[0] is hides



# -- each xdist worker's share -------------------------------------------------------------


def shares(count: int, visible: int | None, per_worker: int | None = None,
           setting: str | None = None) -> list[str | None]:
    entries = visible_entries(setting, visible)
    plans = [split_for_worker(f"gw{index}", count, entries, setting, per_worker)
             for index in range(count)]
    return [plan.devices if plan else "not a worker" for plan in plans]


def test_not_a_worker() -> None:
    assert split_for_worker("", 2, ("0",), None) is None
    assert split_for_worker("master", 2, ("0",), None) is None
    assert split_for_worker("gw0", 0, ("0",), None) is None


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
    assert shares(2, 2, setting="2,3") == ["2", "3"]
    assert shares(2, 2, setting="GPU-aaaa,GPU-bbbb") == ["GPU-aaaa", "GPU-bbbb"]
    # Entries past one that names no device are not visible: not handed out.
    assert shares(2, 1, setting="3,9") == ["3", "3"]
    assert shares(2, None, setting="1,-1,2") == ["1", "1"]


def test_nothing_to_split() -> None:
    for setting in ("", "0,0", None):
        plan = split_for_worker("gw0", 2, visible_entries(setting, 0 if setting is not None else None),
                                setting)
        assert plan is not None
        assert plan.devices is None, setting
    plan = split_for_worker("gw1", 2, None, None)
    assert plan is not None
    assert plan.reason == "CUDA_VISIBLE_DEVICES unset and the GPUs are unknown: not split"


def test_per_worker() -> None:
    assert shares(2, 4, per_worker=1) == ["0", "1"]
    assert shares(3, 4, per_worker=2) == ["0,1", "2,3", "0,1"]
    assert shares(2, 1, per_worker=2) == ["0", "0"]


def test_reason() -> None:
    plan = split_for_worker("gw1", 2, visible_entries("4,5", 2), "4,5")
    assert plan is not None
    assert plan.reason == "worker gw1 of 2 gets 5 of 4,5 (CUDA_VISIBLE_DEVICES=4,5)"


def test_visible_entries() -> None:
    assert visible_entries(None, 3) == ("0", "1", "2")
    assert visible_entries(None, None) is None
    assert visible_entries(" 1 , 0 ", None) == ("1", "0")
    assert visible_entries("GPU-a,0", None) == ("GPU-a",)
    assert visible_entries("1,2,3", 2) == ("1", "2")


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


# -- rehearsed GPUs are split as real ones ------------------------------------------------------

SPLIT_MODULE = """
import os
import pathlib
import pytest

@pytest.mark.parametrize("n", range(8))
def test_sees_its_gpus(n):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    pathlib.Path(f"seen-{worker}").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
"""

A100_LIST = ";".join(["NVIDIA A100-SXM4-80GB:81920:8.0"] * 4)


@pytest.mark.parametrize("outer", [None, "3,1,2,0"])
def test_overridden_gpus_are_split_as_four_real_ones(
        pytester: pytest.Pytester, fake_nvml: FakeNvml, no_nvml_dir: object,
        monkeypatch: pytest.MonkeyPatch, outer: str | None) -> None:
    """``-n 2`` with ``envguard_xdist_gpus = auto``: the fake driver's 4 GPUs, a list of 4
    in ``ENVGUARD_OVERRIDE_GPUS``, a count of 4, and a target of 4 (with no driver at all)
    give each worker the same ``CUDA_VISIBLE_DEVICES``, and each worker's contract counts
    its own share."""
    pytester.makeini("[pytest]\nenvguard_xdist_gpus = auto\nenvguard = gpus >=2\n")
    pytester.makepyfile(test_split=SPLIT_MODULE)
    visible = {} if outer is None else {"cuda_visible_devices": outer}

    def run(*args: str, **variables: str) -> tuple[dict[str, str], dict[str, str]]:
        for seen in pytester.path.glob("seen-*"):
            seen.unlink()
        result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "-p", "no:randomly",
                                               "--envguard-json=r.json", *args, timeout=180)
        result.assert_outcomes(passed=8)
        shares = {path.name[5:]: path.read_text() for path in pytester.path.glob("seen-*")}
        document = json.loads((pytester.path / "r.json").read_text())
        found = {worker: data["contract"][0]["found"] for worker, data in document["workers"].items()}
        return shares, found

    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    fake_nvml.setenv(monkeypatch, ";".join([H100] * 4), **visible)
    real, real_found = run()
    assert set(real) == {"gw0", "gw1"} and real_found == {"gw0": "2", "gw1": "2"}
    assert real == ({"gw0": "0,1", "gw1": "2,3"} if outer is None else {"gw0": "3,1", "gw1": "2,0"})
    for override in (A100_LIST, "4") if outer is None else (A100_LIST,):
        fake_nvml.setenv(monkeypatch, None, ENVGUARD_OVERRIDE_GPUS=override, **visible)
        monkeypatch.setenv("LD_LIBRARY_PATH", str(no_nvml_dir))  # no driver here
        shares, found = run()
        assert shares == real, override
        assert found == {"gw0": "2 (overridden)", "gw1": "2 (overridden)"}
    if outer is not None:
        return
    fake_nvml.setenv(monkeypatch, None)
    monkeypatch.setenv("LD_LIBRARY_PATH", str(no_nvml_dir))
    shares, found = run("--envguard-target", "cuda-12.4-a100-80gbx4")
    assert shares == real
    assert found == {"gw0": "2 (overridden)", "gw1": "2 (overridden)"}
