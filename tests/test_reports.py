"""CI reports: junit-xml testsuite properties, pytest-metadata, the JSON document's schema."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

# Imported before any in-process pytester run, which would otherwise drop the modules it
# imported first, leaving two Status classes apart.
from pytest_envguard import render
from pytest_envguard.ci_reports import snapshot_properties
from pytest_envguard.grammar import parse_line
from pytest_envguard.verdicts import Status, Verdict

PY = f"{sys.version_info.major}.{sys.version_info.minor}"

SUITE = """
import pytest

@pytest.mark.requires("python >=3.999")
def test_future():
    pass

@pytest.mark.requires(cpus=">=1")
def test_now():
    pass

def test_fixture(envguard):
    envguard.require("memory >=1KiB")
"""


def properties(path: Path) -> list[tuple[str, str]]:
    root = ET.parse(path).getroot()  # noqa: S314 (our own report, written by the test)
    return [(p.get("name", ""), p.get("value", "")) for p in root.iter("property")]


def by_name(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped


@pytest.fixture
def schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(files("pytest_envguard").joinpath("schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(document)
    return document


# -- junit-xml ------------------------------------------------------------------------------------


def test_junit_properties_are_opt_in(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--junitxml=plain.xml", "--envguard-require", f"python >={PY}")
    result.assert_outcomes(passed=2, skipped=1)
    assert not [name for name, _ in properties(pytester.path / "plain.xml") if name.startswith("envguard")]


def test_junit_properties_hold_the_snapshot_and_the_contract(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nenvguard_junit_properties = true\nenvguard =\n"
                     f"    python >={PY}\n    machine {platform.machine()}\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--junitxml=report.xml")
    result.assert_outcomes(passed=2, skipped=1)
    found = by_name(properties(pytester.path / "report.xml"))
    assert found["envguard.schema"] == ["pytest-envguard/1"]
    assert found["envguard.python.version"] == [platform.python_version()]
    assert found["envguard.platform.machine"] == [platform.machine()]
    assert found["envguard.host"][0]
    # every cheap facet is there, not only those the contract needed
    assert "envguard.memory.total" in found
    assert "envguard.isolation.kind" in found
    assert found["envguard.contract"] == [
        f"met: python >={PY} — found {platform.python_version()}",
        f"met: machine {platform.machine()} — found {platform.machine()}",
    ]
    assert all(value for values in found.values() for value in values)  # no empty properties


def test_junit_properties_without_junitxml_are_harmless(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nenvguard_junit_properties = true\n")
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest().assert_outcomes(passed=2, skipped=1)


def test_junit_properties_under_xdist_name_each_worker(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"[pytest]\nenvguard_junit_properties = true\nenvguard = python >={PY}\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-n", "2", "--junitxml=report.xml", timeout=120)
    result.assert_outcomes(passed=2, skipped=1)
    found = by_name(properties(pytester.path / "report.xml"))
    assert found["envguard.worker.gw0"] == [f"{found['envguard.host'][0]}: contract 1 met"]
    assert "envguard.worker.gw1" in found


@pytest.mark.parametrize("option", ["envguard_junit_properties", "envguard_tox_python"])
def test_a_bad_boolean_option_value_is_a_usage_error(pytester: pytest.Pytester, option: str) -> None:
    pytester.makeini(f"[pytest]\n{option} = maybe\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    # pytest 9 says so itself; before, envguard does (naming the option).
    result.stderr.fnmatch_lines(["*invalid truth value 'maybe'*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_snapshot_properties_flatten_facets() -> None:
    from pytest_envguard.environment import Environment
    from pytest_envguard.probes.system import PlatformFacts

    env = Environment({"platform": PlatformFacts(platform="linux", machine="riscv64", system="Linux",
                                                 release="")},
                      environ={"ENVGUARD_OVERRIDE_GPUS": "0"})
    pairs = snapshot_properties(env, [], "h")
    assert ("envguard.platform.machine", "riscv64") in pairs
    assert "envguard.platform.release" not in dict(pairs)  # empty values are left out
    assert ("envguard.overrides.ENVGUARD_OVERRIDE_GPUS", "0") in pairs


# -- pytest-metadata ------------------------------------------------------------------------------

METADATA_TEST = """
def test_metadata(metadata):
    print("ENVGUARD", repr(metadata.get("envguard")))
"""


def test_metadata_gains_the_snapshot_summary_with_a_contract(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_meta=METADATA_TEST)
    result = pytester.runpytest("-s", "--envguard-require", f"python >={PY}")
    result.assert_outcomes(passed=1)
    line = next(line for line in result.outlines if "ENVGUARD" in line)
    assert "'contract': '1 met'" in line
    assert f"'environment': 'Python {platform.python_version()} " in line
    assert "'host': '" in line


def test_metadata_is_untouched_without_a_contract(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_meta=METADATA_TEST)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ENVGUARD None*"])


# -- the JSON document and its schema ------------------------------------------------------------


def test_session_documents_validate(pytester: pytest.Pytester, schema: dict[str, Any]) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--envguard-json", "out.json", "--envguard-require", f"python >={PY}",
                                "--envguard-require", "cpu no_such_flag; sys_platform == 'nope'")
    result.assert_outcomes(passed=2, skipped=1)
    document = json.loads((pytester.path / "out.json").read_text())
    jsonschema.validate(document, schema)
    assert [verdict["status"] for verdict in document["contract"]] == ["met", "n/a"]
    assert len(document["tests"]) == 3
    assert document["outcomes"] == {"test_suite.py::test_future": "skipped",
                                    "test_suite.py::test_now": "passed",
                                    "test_suite.py::test_fixture": "passed"}


def test_xdist_documents_validate(pytester: pytest.Pytester, schema: dict[str, Any]) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest_subprocess("--envguard-json", "out.json",
                                  "--envguard-require", "glibc >=2.28",
                                  "--tx", "popen//env:ENVGUARD_OVERRIDE_GLIBC=2.17", "--tx", "popen",
                                  "-d", timeout=120)
    document = json.loads((pytester.path / "out.json").read_text())
    jsonschema.validate(document, schema)
    assert document["workers"]["gw0"]["contract"][0]["status"] == "unmet"


def test_python_m_documents_validate(tmp_path: Path, schema: dict[str, Any]) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "pytest_envguard", "--json", "-", f"python >={PY}", "memory >=1KiB",
         "consistent"],
        capture_output=True, text=True, cwd=tmp_path, check=False,
        env={"PATH": "/usr/bin:/bin", "ENVGUARD_OVERRIDE_CUDA": "12.4"},
    )
    assert process.returncode == 0, process.stderr
    document = json.loads(process.stdout)
    jsonschema.validate(document, schema)
    assert document["environment"]["overrides"] == {"ENVGUARD_OVERRIDE_CUDA": "12.4"}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda d: d.pop("contract"), "'contract' is a required property"),
        (lambda d: d.update(schema="pytest-envguard/2"), "'pytest-envguard/1' was expected"),
        (lambda d: d["contract"][0].update(status="ok"), "'ok' is not one of"),
        (lambda d: d["contract"][0].pop("hint"), "'hint' is a required property"),
        (lambda d: d["tests"].update({"t::x": [{"line": "python"}]}), "is a required property"),
        (lambda d: d["environment"]["python"].update(version=3.11), "3.11 is not of type 'string'"),
        (lambda d: d.update(outcomes={"t::x": "ok"}), "'ok' is not one of"),
        (lambda d: d.update(outcomes={"t::x": ["passed"]}), "is not one of"),
    ],
)
def test_the_schema_rejects_renamed_removed_or_retyped_keys(
    change: Any, complaint: str, schema: dict[str, Any]
) -> None:
    document = {
        "schema": "pytest-envguard/1", "host": "h",
        "environment": {"python": {"version": "3.11.7", "implementation": "cpython"}},
        "contract": [{"line": "python >=3.10", "source": "pytest.ini [envguard]", "status": "met",
                      "found": "3.11.7", "reason": "r", "hint": None, "overridden": False}],
        "tests": {},
    }
    jsonschema.validate(document, schema)
    change(document)
    with pytest.raises(jsonschema.ValidationError, match=complaint.replace("(", r"\(")):
        jsonschema.validate(document, schema)


def test_environment_lines_show_sizes_and_milliseconds() -> None:
    """The report's environment section: byte counts as sizes, the NVML query time in ms."""
    from pytest_envguard import render
    from pytest_envguard.environment import Environment
    from pytest_envguard.probes import Failure
    from pytest_envguard.probes.nvml import NvidiaFacts
    from pytest_envguard.probes.system import MemoryFacts

    env = Environment(facts={
        "memory": MemoryFacts(total=24 * 2**30, available=3 * 2**29, source="/proc/meminfo"),
        "nvidia": NvidiaFacts(None, None, (), Failure.MISSING, reason="NVML is not available",
                              elapsed=0.131096448),
    })
    lines = render.environment_lines(env)
    assert lines[0] == "memory         total=24.0 GiB, available=1.5 GiB, source=/proc/meminfo"
    assert ", elapsed=131 ms" in lines[1]
    assert lines[2].startswith("extensions     not probed (no 'extensions' requirement")


def test_environment_lines_show_gpus_one_per_record() -> None:
    """Lists of records (GPUs, library candidates) are shown compactly, not as raw dicts."""
    from pytest_envguard import render
    from pytest_envguard.environment import Environment
    from pytest_envguard.probes.nvml import GpuFacts, NvidiaFacts

    h100 = GpuFacts(0, "NVIDIA H100 80GB HBM3", "GPU-f72ff167-dae6-8146-4d64-2836ab7a7734",
                    81559 << 20, 81003 << 20, "9.0", mig=False)
    a100 = GpuFacts(1, "NVIDIA A100-SXM4-40GB", "GPU-a1000000-1111-2222-3333-444455556666",
                    40960 << 20, None, "8.0", mig=True, usable=False, note="MIG mode is on")
    mig = GpuFacts(1, "MIG 1g.10gb", "MIG-11111111-2222-3333-4444-555566667777", 9856 << 20, None,
                   "8.0", parent=a100.uuid, instance=(1, 0))
    env = Environment(facts={"nvidia": NvidiaFacts("580.159.04", "13.0", (h100, a100, mig))},
                      environ={"CUDA_VISIBLE_DEVICES": "GPU-f72ff167,MIG-1111"})
    line, visible, not_probed = render.environment_lines(env)
    assert ("devices=[#0 NVIDIA H100 80GB HBM3, 79.6 GiB, cc 9.0, "
            "GPU-f72ff167-dae6-8146-4d64-2836ab7a7734; "
            "#1 NVIDIA A100-SXM4-40GB, 40.0 GiB, cc 8.0, MIG on, not usable: MIG mode is on, "
            "GPU-a1000000-1111-2222-3333-444455556666; "
            "MIG on #1: MIG 1g.10gb, 9.6 GiB, cc 8.0, "
            "MIG-11111111-2222-3333-4444-555566667777]") in line
    assert visible == ("visible GPUs   [#0 MIG-11111111-2222-3333-4444-555566667777] "
                       "(CUDA_VISIBLE_DEVICES=GPU-f72ff167,MIG-1111)")
    assert "{" not in line
    assert not_probed.startswith("extensions     not probed")
    records = render._shown_field("leaks", [{"variable": "X", "count": 0, "flag": False, "note": None}])
    assert records == "[variable=X count=0]"  # a zero is a value; False and None are not


# -- output a CI log reader trusts ---------------------------------------------------------------


def test_the_installed_facet_reads_as_a_sentence_and_says_what_a_question_mark_is() -> None:
    from pytest_envguard import render
    from pytest_envguard.environment import Environment

    env = Environment(facts={"installed": {
        "count": 12, "installers": {"pip": 11, "?": 1},
        "distributions": {"numpy": "2.1.0", "torch": "2.4.0"},
        "shadowed": ["numpy 1.26.4 in /usr/lib/python3/dist-packages"], "reason": None}})
    line = render.environment_lines(env)[0]
    assert line == ("installed      12 distributions; installers: pip 11, ? 1 (?: no INSTALLER "
                    "file); 1 shadowed: numpy 1.26.4 in /usr/lib/python3/dist-packages")


def test_no_python_repr_in_the_report_lines() -> None:
    from pytest_envguard import render
    from pytest_envguard.environment import Environment

    env = Environment(facts={"odd": {"table": {"a": {"b": [1, 2]}, "c": 0.30000000000000004},
                                     "flag": True, "records": [{"x": {"y": "z"}}]}})
    line = render.environment_lines(env)[0]
    assert line == "odd            table=a=b=[1 2] c=0.3, flag=true, records=[x=y=z]"


def verdict(line: str, found: str, reason: str, status: str = "unmet") -> Verdict:
    return Verdict(parse_line(line, "pytest.ini [envguard]"), Status(status), found, reason)


def test_the_found_column_wraps_and_long_paths_stay_whole() -> None:
    """A library's found value (its path) is never clipped; a long path in a reason is
    never broken, so it can be copied."""
    path = "/opt/conda/envs/training-env-2024/lib/python3.11/site-packages/nvidia/cudnn/lib/libcudnn.so.9"
    rows = render.verdict_table([
        verdict("library cudnn >=9", f"{path} (9.1.0)", f"{path} is version 9.1.0", "met"),
        verdict("library libssl.so.3", "/usr/lib/x86_64-linux-gnu/libssl.so.3 (3.0.2) and "
                "two more candidates", "the loader found a libssl.so.3 whose version is 3.0.2, not "
                f"the one at {path}"),
    ])
    text = "\n".join(rows)
    assert "…" not in text
    assert any(path in row for row in rows)  # whole, on one row
    assert sum(path in row for row in rows) == 2  # in the found column and in the reason
    first, wrapped = rows[3], rows[4]
    assert first.startswith("FAIL  library libssl.so.3  /usr/lib/x86_64-linux-gnu/libssl.so.3 ")
    assert first.endswith("pytest.ini [envguard]")
    assert wrapped.strip() and wrapped.index(wrapped.strip()) == first.index("/usr/lib")
    assert all(len(row) <= 100 for row in rows if path not in row)


def test_junit_properties_hold_no_python_repr_and_no_raw_float() -> None:
    from pytest_envguard.environment import Environment
    from pytest_envguard.probes import Failure
    from pytest_envguard.probes.nvml import GpuFacts, NvidiaFacts

    h100 = GpuFacts(0, "NVIDIA H100 80GB HBM3", "GPU-f72ff167-dae6-8146-4d64-2836ab7a7734",
                    81559 << 20, 81003 << 20, "9.0", mig=False)
    env = Environment(facts={
        "nvidia": NvidiaFacts("580.159.04", "13.0", (h100,), elapsed=0.131096448),
        "memory-ish": {"total": 24 * 2**30, "ratio": 0.30000000000000004, "nested": {"k": [1]}},
        "broken": NvidiaFacts(None, None, (), Failure.MISSING, reason="no NVML"),
    })
    pairs = dict(snapshot_properties(env, [], "h"))
    assert pairs["envguard.nvidia.elapsed"] == "131 ms"
    assert pairs["envguard.nvidia.devices"].startswith("[#0 NVIDIA H100 80GB HBM3, 79.6 GiB, cc 9.0")
    assert pairs["envguard.memory-ish.total"] == "24.0 GiB"
    assert pairs["envguard.memory-ish.ratio"] == "0.3"
    assert pairs["envguard.memory-ish.nested"] == "k=[1]"
    for name, value in pairs.items():
        assert "{" not in value and "': " not in value and "['" not in value, (name, value)
        assert not __import__("re").search(r"\d\.\d{5,}", value), (name, value)
    # Lists are kept whole, unlike the report's: an archive keeps every item.
    many = Environment(facts={"cpu-ish": {"flags": [f"f{i}" for i in range(40)]}})
    assert dict(snapshot_properties(many, [], "h"))["envguard.cpu-ish.flags"].count("f") == 40
