"""Target profiles (``pytest_envguard/targets.py``): the built-in policies held against
auditwheel's own policy data, the CUDA-worker names, the ``ENVGUARD_OVERRIDE_GPUS``
list, and user profiles from TOML, with their errors."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import pytest

from pytest_envguard import hints
from pytest_envguard.environment import Environment
from pytest_envguard.targets import (
    GPU_MODELS,
    MIB,
    POLICIES,
    RehearsedGpu,
    TargetError,
    builtin_target,
    find_target,
    format_gpus,
    parse_gpus,
    user_targets,
)


def auditwheel_policies() -> dict[str, dict[str, Any]]:
    """auditwheel's policy data, as the installed auditwheel (a test extra) ships it."""
    found = {}
    for name in ("manylinux-policy.json", "musllinux-policy.json"):
        text = resources.files("auditwheel.policy").joinpath(name).read_text(encoding="utf-8")
        for policy in json.loads(text):
            if policy["priority"]:
                found[policy["name"]] = policy
    return found


def numbered_max(versions: list[str]) -> str | None:
    numbered = [v for v in versions if re.fullmatch(r"\d+(\.\d+)*", v)]
    return max(numbered, key=lambda v: tuple(map(int, v.split("."))), default=None)


# -- the policies, against auditwheel's data ---------------------------------------------


def test_every_policy_agrees_with_auditwheels_data() -> None:
    theirs = auditwheel_policies()
    assert set(POLICIES) == set(theirs)
    for name, policy in POLICIES.items():
        data = theirs[name]
        assert (policy.alias,) == tuple(data["aliases"] or [None]), name
        assert set(policy.machines) == set(data["symbol_versions"]), name
        assert set(policy.libraries) == set(data["lib_whitelist"]), name
        ceilings = dict(policy.ceilings)
        x86 = data["symbol_versions"].get("x86_64", {})
        for family, versions in x86.items():
            highest = numbered_max(versions)
            if family == "GLIBC":  # the policy's glibc (2_37 adds no symbol version on x86_64)
                assert highest is not None and version_key(highest) <= version_key(policy.version)
            else:
                assert ceilings.get(family) == highest, (name, family)
        assert policy.version == (name.split("_", 1)[1].replace("_", ".")), name


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_a_policy_target_is_its_libc_and_no_other() -> None:
    target = builtin_target("manylinux2014")
    assert target is not None
    assert dict(target.overrides) == {"glibc": "2.17", "musl": ""}
    assert target.name == "manylinux2014"
    assert "auditwheel" in target.source and "PEP 599" in target.source
    assert ("GLIBCXX", "3.4.19") in target.ceilings
    assert "libstdc++.so.6" in (target.libraries or ())
    by_name = builtin_target("manylinux_2_17")
    assert by_name is not None and by_name.overrides == target.overrides
    musl = builtin_target("musllinux_1_2")
    assert musl is not None
    assert dict(musl.overrides) == {"musl": "1.2", "glibc": ""}
    assert musl.libraries == ("libc.so", "libz.so.1")


# -- CUDA workers -----------------------------------------------------------------------------


def test_a_cuda_worker_is_nvidias_driver_and_the_gpus() -> None:
    target = builtin_target("cuda-11.8-t4x2")
    assert target is not None
    overrides = dict(target.overrides)
    assert overrides["cuda"] == "11.8"
    assert overrides["driver"] == hints.CUDA_TOOLKIT_DRIVER[(11, 8)]
    assert parse_gpus(overrides["gpus"]) == (GPU_MODELS["t4"],) * 2
    assert "glibc" not in overrides  # not described: this machine's
    alone = builtin_target("cuda-12.4")
    assert alone is not None and "gpus" not in dict(alone.overrides)
    one = builtin_target("cuda-12.4-a100-80gb")
    assert one is not None and len(parse_gpus(dict(one.overrides)["gpus"])) == 1


@pytest.mark.parametrize(("name", "message"), [
    ("cuda-11.9-t4", "CUDA 11.9 is not in NVIDIA's table"),
    ("cuda-12.4-k80", "unknown GPU model 'k80'"),
    ("cuda-12.4-t4x0", "0 GPUs"),
    ("cuda-12.4-t4x99999", "99999 GPUs"),
])
def test_bad_cuda_worker_names_say_what_is_wrong(name: str, message: str) -> None:
    with pytest.raises(TargetError, match=re.escape(message)):
        builtin_target(name)


def test_an_unknown_name_suggests_the_nearest() -> None:
    with pytest.raises(TargetError, match="did you mean 'manylinux2014'"):
        find_target("manylinux2041")
    assert builtin_target("windows") is None


# -- ENVGUARD_OVERRIDE_GPUS --------------------------------------------------------------


def test_a_gpu_list_and_a_count() -> None:
    a100 = RehearsedGpu("A100 80GB", 81920 * MIB, "8.0")
    assert parse_gpus("A100 80GB:81920:8.0;A100 80GB:81920:8.0") == (a100, a100)
    assert parse_gpus(" 2 ") == (RehearsedGpu(None, None, None),) * 2
    assert parse_gpus("") == ()
    assert parse_gpus("NVIDIA A100-SXM4-80GB: MIG 1g:10240:8.0") == (
        RehearsedGpu("NVIDIA A100-SXM4-80GB: MIG 1g", 10240 * MIB, "8.0"),)  # a colon in the name
    assert format_gpus(parse_gpus("T4:15360:7.5;T4:15360:7.5")) == "T4:15360:7.5;T4:15360:7.5"
    assert format_gpus(parse_gpus("3")) == "3"


@pytest.mark.parametrize(("value", "message"), [
    ("two", "not a whole number"),
    ("-1", "not a whole number"),
    ("A100:80GB:8.0", "not a number of MiB"),
    ("A100:0:8.0", "not a number of MiB"),
    ("A100:81920:eight", "not major.minor"),
    (":81920:8.0", "is not name:MiB:cc"),
    ("A100:81920", "is not name:MiB:cc"),
    ("5000", "more than 1024"),
    (";".join(["T4:15360:7.5"] * 1025), "more than 1024"),
])
def test_bad_gpu_values_say_what_is_wrong(value: str, message: str) -> None:
    with pytest.raises(TargetError, match=re.escape(message)):
        parse_gpus(value)


# -- user profiles ------------------------------------------------------------------------------


def test_a_user_profile_extends_a_builtin_one() -> None:
    profiles = user_targets({"profile": {
        "old-gpu": {"extends": "manylinux2014", "cuda": "11.8", "driver": "520.61.05",
                    "gpus": "T4:15360:7.5;T4:15360:7.5"},
        "bigger": {"extends": "old-gpu", "gpus": 4, "description": "four of them"},
        "musl-box": {"musl": "1.2"},
    }}, "targets.toml")
    old = profiles["old-gpu"]
    assert dict(old.overrides) == {"glibc": "2.17", "musl": "", "cuda": "11.8",
                                   "driver": "520.61.05", "gpus": "T4:15360:7.5;T4:15360:7.5"}
    assert old.libraries is not None  # the policy's, inherited
    assert old.source.startswith("targets.toml [profile.old-gpu], extending manylinux2014")
    assert dict(profiles["bigger"].overrides)["gpus"] == "4"
    assert profiles["bigger"].description == "four of them"
    assert dict(profiles["musl-box"].overrides) == {"glibc": "", "musl": "1.2"}
    assert find_target("old-gpu", profiles) is old


@pytest.mark.parametrize(("document", "message"), [
    ({}, "no [profile.NAME] table"),
    ({"profile": {"x": "glibc"}}, "must be a table"),
    ({"profile": {"x": {"glibc": 2.17}}}, "glibc must be a string"),
    ({"profile": {"x": {"glibc": "2.x"}}}, "is not a version like 2.17"),
    ({"profile": {"x": {"gpus": "T4:15GiB:7.5"}}}, "not a number of MiB"),
    ({"profile": {"x": {"gpu": "2"}}}, "unknown key 'gpu' — did you mean 'gpus'?"),
    ({"profile": {"x": {"extends": "manylinux2041"}}}, "did you mean 'manylinux2014'?"),
    ({"profile": {"x": {"extends": "y"}, "y": {"extends": "x"}}}, "goes round in a circle"),
    ({"profile": {"manylinux2014": {"cuda": "12.0"}}}, "the name of a built-in target"),
    ({"profile": {"cuda-12.0-t4": {"cuda": "12.0"}}}, "the name of a built-in target"),
    ({"profile": {"x": {"description": 3}}}, "description must be a string"),
])
def test_bad_profiles_name_the_file_and_the_table(document: dict[str, Any], message: str) -> None:
    with pytest.raises(TargetError, match=re.escape(message)) as raised:
        user_targets(document, "targets.toml")
    assert "targets.toml" in str(raised.value)


# -- a target is a set of overrides ----------------------------------------------------------


def test_a_target_acts_as_overrides_and_a_variable_wins() -> None:
    target = find_target("cuda-11.8-t4x2")
    env = Environment({}, environ={"ENVGUARD_OVERRIDE_CUDA": "12.4"}, target=target)
    assert env.override("cuda") == "12.4"
    assert env.override_source("cuda") == "ENVGUARD_OVERRIDE_CUDA"
    assert env.override("driver") == hints.CUDA_TOOLKIT_DRIVER[(11, 8)]
    assert env.override_source("driver") == "target cuda-11.8-t4x2"
    document = env.to_dict()
    assert document["target"]["name"] == "cuda-11.8-t4x2"
    assert document["overrides"]["ENVGUARD_OVERRIDE_CUDA"] == "12.4"
    assert "rehearsed" in document["not_probed"]["nvidia"]
