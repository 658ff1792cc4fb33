"""``python -m pytest_envguard --merge A.json B.json…``: requirements × runs.

The documents come from real runs: a tox matrix of two envs (the tests run tox, offline:
no env installs anything; each runs the test interpreter's pytest with its own
environment) and two pre-flights on targets. The table and the merged document are
checked against the documents' own verdicts, the merged document against the JSON
Schema, and merging the merged document again gives the same matrix.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_envguard.verdicts import Verdict
from tests.fixtures_packages import clean_environ

SUITE = """
import pytest

def test_plain():
    pass

@pytest.mark.requires("gpus >=2")
def test_two_gpus():
    pass

@pytest.mark.requires("glibc >=2.28")
@pytest.mark.parametrize("n", range(2))
def test_new_glibc(n):
    pass
"""

TOX_INI = """
[tox]
env_list = old, new
skipsdist = true

[testenv]
skip_install = true
allowlist_externals = {env:OUTER_PYTHON}
pass_env = OUTER_PYTHON, LD_LIBRARY_PATH
commands = {env:OUTER_PYTHON} -m pytest -p no:cacheprovider -p no:randomly -q \\
    --envguard-json={env_name}.json --envguard-require "python >=3.10" \\
    --envguard-require "glibc >=2.17"

[testenv:old]
set_env = ENVGUARD_OVERRIDE_GLIBC = 2.24
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_envguard", *args], capture_output=True,
                          text=True, check=False, timeout=120, cwd=cwd,
                          env=clean_environ())


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory, no_nvml_dir: Path) -> Path:
    """``old.json``, ``new.json`` from a tox matrix; ``centos7.json``, ``gpu-box.json``
    from pre-flights on two targets; all on a machine without an NVIDIA driver."""
    folder = tmp_path_factory.mktemp("matrix")
    (folder / "test_suite.py").write_text(SUITE, encoding="utf-8")
    (folder / "tox.ini").write_text(TOX_INI, encoding="utf-8")
    environ = clean_environ(OUTER_PYTHON=sys.executable, LD_LIBRARY_PATH=str(no_nvml_dir))
    environ = {key: value for key, value in environ.items()
               if not key.startswith(("PYTEST_", "TOX_", "CUDA_"))}
    tox = subprocess.run([sys.executable, "-m", "tox", "-q"], cwd=folder, env=environ,
                         capture_output=True, text=True, check=False, timeout=300)
    assert (folder / "old.json").is_file() and (folder / "new.json").is_file(), \
        tox.stdout + tox.stderr
    for name, target in (("centos7", "manylinux2014"), ("gpu-box", "cuda-12.4-a100-80gbx2")):
        preflight = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q",
             "--envguard-report", "--envguard-target", target, f"--envguard-json={name}.json",
             "--envguard-require", "python >=3.10", "--envguard-require", "glibc >=2.17"],
            cwd=folder, env=environ, capture_output=True, text=True, check=False, timeout=120)
        assert preflight.returncode == 0, preflight.stdout + preflight.stderr
    return folder


RUNS = ("old.json", "new.json", "centos7.json", "gpu-box.json")


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def test_the_table_shows_requirements_by_runs(documents: Path) -> None:
    result = cli("--merge", *RUNS, cwd=documents)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "== envguard: 4 runs =="
    table = "\n".join(lines)
    assert "centos7  centos7.json" in table and "manylinux2014" in table
    row = next(line for line in lines if line.startswith("  glibc >=2.17"))
    # gpu-box rehearses GPUs, not glibc: its glibc is this machine's, and says so
    gpu_box = load(documents / "gpu-box.json")["contract"][1]["found"]
    assert gpu_box == load(documents / "new.json")["contract"][1]["found"] + " (this machine)"
    assert row.split() == ["glibc", ">=2.17", "ok", "2.24", "(overridden)", "ok",
                           load(documents / "new.json")["contract"][1]["found"], "ok", "2.17",
                           "(overridden)", "ok", *gpu_box.split()]
    gpus = next(line for line in lines if line.startswith("  gpus >=2 (1 test)"))
    # manylinux2014 says nothing of GPUs: centos7's are this machine's (none it can see)
    assert gpus.split()[4:] == ["??", "unknown", "??", "unknown", "??", "unknown", "(this",
                                "machine)", "ok", "2", "(overridden)"]
    assert "markers (tests):" in lines
    misses = lines[lines.index("== envguard: where lines are not met =="):]
    assert "glibc >=2.28 (marker): FAIL on old, centos7" in misses
    assert "gpus >=2 (marker): unknown on old, new, centos7" in misses


def test_each_cell_is_the_runs_own_verdict(documents: Path, tmp_path: Path) -> None:
    result = cli("--merge", *RUNS, "--json", str(tmp_path / "merged.json"), cwd=documents)
    assert result.returncode == 0
    merged = load(tmp_path / "merged.json")
    assert [run["name"] for run in merged["runs"]] == ["old", "new", "centos7", "gpu-box"]
    assert merged["runs"][2]["target"] == "manylinux2014"
    for run, source in zip(merged["runs"], RUNS, strict=True):
        assert run["document"] == load(documents / source)
    rows = {(row["kind"], row["line"]): row["runs"] for row in merged["matrix"]}
    for source in RUNS:
        document, name = load(documents / source), source.removesuffix(".json")
        for data in document["contract"]:
            verdict = Verdict.from_dict(data)
            cell = rows[("contract", verdict.line)][name]
            assert (cell["status"], cell["found"]) == (verdict.status.value, verdict.found)
        for verdicts in document["tests"].values():
            for data in verdicts:
                verdict = Verdict.from_dict(data)
                assert rows[("tests", verdict.line)][name]["status"] == verdict.status.value
    assert rows[("tests", "glibc >=2.28")]["centos7"] == {"status": "unmet",
                                                           "found": "2.17 (overridden)", "tests": 2}


def test_the_merged_document_follows_the_schema_and_merges_again(documents: Path,
                                                                 tmp_path: Path) -> None:
    import jsonschema

    cli("--merge", *RUNS, "--json", str(tmp_path / "merged.json"), cwd=documents)
    merged = load(tmp_path / "merged.json")
    schema = json.loads((Path(__file__).parent.parent / "pytest_envguard" / "schema.json")
                        .read_text(encoding="utf-8"))
    jsonschema.validate(merged, schema)
    for source in RUNS:
        jsonschema.validate(load(documents / source), schema)
    again = cli("--merge", str(tmp_path / "merged.json"), "--json", "-", cwd=documents)
    assert again.returncode == 0
    assert json.loads(again.stdout)["matrix"] == merged["matrix"]


def test_an_unmet_contract_in_any_run_exits_6(documents: Path, tmp_path: Path) -> None:
    bad = load(documents / "new.json")
    bad["contract"][0]["status"] = "unmet"
    (tmp_path / "worker.json").write_text(json.dumps(bad), encoding="utf-8")
    result = cli("--merge", str(documents / "new.json"), str(tmp_path / "worker.json"),
                 cwd=tmp_path)
    assert result.returncode == 6
    assert "python >=3.10: FAIL on worker" in result.stdout


def test_xdist_workers_are_runs_of_their_own(documents: Path, tmp_path: Path) -> None:
    document = load(documents / "new.json")
    unmet = dict(document["contract"][1], status="unmet", found="2.17 (overridden)")
    document["workers"] = {"gw0": {"host": "gpu-1", "contract": document["contract"]},
                           "gw1": {"host": "gpu-2", "contract": [document["contract"][0], unmet]}}
    (tmp_path / "xdist.json").write_text(json.dumps(document), encoding="utf-8")
    result = cli("--merge", "xdist.json", cwd=tmp_path)
    assert result.returncode == 6
    assert "glibc >=2.17: FAIL on xdist/gw1" in result.stdout
    assert any(line.startswith("xdist/gw0") and "gpu-1" in line
               for line in result.stdout.splitlines())


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "not JSON"),
    ("[1, 2]", "not a pytest-envguard document (a JSON list)"),
    ('{"schema": "pytest-envguard/2"}', "not a pytest-envguard/1 document (schema "
                                        "'pytest-envguard/2')"),
    ('{"schema": "pytest-envguard/1", "contract": [{"line": "gpus >=1"}]}',
     "contract[0]: not a verdict (KeyError"),
    ('{"schema": "pytest-envguard/1", "contract": [{"line": "x", "status": "maybe", '
     '"found": "", "reason": "", "requirement": {"key": "x"}}]}', "not a verdict (ValueError"),
    ('{"schema": "pytest-envguard/1", "tests": []}', "'tests' is not an object"),
    ('{"schema": "pytest-envguard/1", "runs": [{"name": "a"}]}', "runs[0] holds no document"),
])
def test_a_file_that_is_no_document_is_a_usage_error(tmp_path: Path, content: str,
                                                     message: str) -> None:
    (tmp_path / "bad.json").write_text(content, encoding="utf-8")
    result = cli("--merge", "bad.json", cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr.startswith("envguard: bad.json: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    missing = cli("--merge", "nowhere.json", cwd=tmp_path)
    assert (missing.returncode, missing.stderr.strip()) == (4, "envguard: nowhere.json: no such file")


def test_merge_takes_no_lines(tmp_path: Path) -> None:
    result = cli("--merge", "a.json", "--target", "manylinux2014", cwd=tmp_path)
    assert result.returncode == 4  # a usage error, as pytest's own
    assert "--merge takes JSON documents and --json only" in result.stderr
