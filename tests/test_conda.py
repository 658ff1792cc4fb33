"""Conda prefixes: ``consistent`` with conda's own graph, pip over conda, conda doctor's checks.

Every prefix here is real: packages built at test time, indexed and installed by
py-rattler (:mod:`tests.fixtures_conda`), then broken the ways users break them —
``conda remove --force`` / ``conda install --no-deps`` (py-rattler transactions
that are no solution), the real pip installing into the prefix's interpreter,
files deleted, edited or rewritten, records corrupted. The oracles: py-rattler's
``PackageRecord.validate`` for conda's graph, real ``pip check`` for the Python
side, a full sha256 recomputation for the files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_envguard import checks, grammar
from pytest_envguard.environment import Environment
from pytest_envguard.probes import Failure
from pytest_envguard.probes.conda import (
    CondaFacts,
    probe_conda,
    probe_graph,
    read_record,
    verify_files,
)
from pytest_envguard.verdicts import Status, Verdict
from tests.fixtures_conda import (
    PY,
    PY_NODOT,
    SITE,
    CondaPrefix,
    MakePrefix,
    prefix_environment,
)
from tests.fixtures_packages import clean_environ


def verdict(env: Environment, line: str = "consistent") -> Verdict:
    (result,) = checks.evaluate(grammar.parse_lines([line]), env)
    return result


def kinds(result: Verdict) -> list[str]:
    return [problem.kind for problem in result.problems]


def validate(prefix: CondaPrefix) -> str | None:
    """py-rattler's own verdict on the prefix's records: None, or its error."""
    import rattler
    from rattler.exceptions import ValidatePackageRecordsError

    try:
        rattler.PackageRecord.validate(prefix.prefix_records())
    except ValidatePackageRecordsError as error:
        return str(error)
    return None


def assert_graph_agrees_with_rattler(prefix: CondaPrefix) -> list[Any]:
    """The differential oracle of conda's graph: our issues are empty exactly when
    py-rattler's ``PackageRecord.validate`` accepts the records, and the one problem
    validate reports (it stops at the first) is among ours."""
    graph = probe_graph(probe_conda(str(prefix.root)))
    assert graph.failure is None, graph.reason
    oracle = validate(prefix)
    assert (oracle is None) is (not graph.issues), (oracle, graph.issues)
    if oracle is not None:
        assert any(issue.spec and issue.spec in oracle for issue in graph.issues), (oracle,
                                                                                    graph.issues)
    return list(graph.issues)


# -- conda's graph ------------------------------------------------------------------------------


def test_a_solved_prefix_is_consistent_and_rattler_agrees(make_prefix: MakePrefix) -> None:
    prefix = make_prefix("zed", "tool", "typing_extensions", "pyyaml")
    assert assert_graph_agrees_with_rattler(prefix) == []
    result = verdict(prefix_environment(prefix))
    assert result.status is Status.MET, result.reason
    assert "conda graph of 7 packages holds" in result.reason
    assert "py-rattler" in result.reason
    assert prefix.pip_check() == (0, "No broken requirements found.\n")


GRAPH_BREAKS = {
    # conda remove --force libzed: zed's dependency is gone
    "missing": (lambda p: p.remove("libzed"), "missing", "libzed >=1.10,<2.0a0"),
    # conda install --no-deps libzed=1.9: conda orders 1.9 before 1.10 (string order would not)
    "version-order": (lambda p: p.add("libzed ==1.9"), "conflict", "libzed >=1.10,<2.0a0"),
    # ... and 2.0 after the 2.0a0 bound
    "pre-release-bound": (lambda p: p.add("libzed ==2.0"), "conflict", "libzed >=1.10,<2.0a0"),
    # the free-threaded python_abi: its build string misses zed's *_cp3XX glob
    "build-glob": (lambda p: p.add(f"python_abi {PY} *_cp{PY_NODOT}t"), "conflict",
                   f"python_abi {PY}.* *_cp{PY_NODOT}"),
    # a package whose `constrains` rules out the installed libzed
    "constrains": (lambda p: p.add("pinner"), "constrains", "libzed <1.10"),
}


@pytest.mark.parametrize("case", sorted(GRAPH_BREAKS))
def test_a_broken_graph_is_found_as_rattler_finds_it(case: str, make_prefix: MakePrefix) -> None:
    prefix = make_prefix("zed", "tool")
    breaking, kind, spec = GRAPH_BREAKS[case]
    breaking(prefix)
    issues = assert_graph_agrees_with_rattler(prefix)
    # (the python_abi spec breaks both zed's and python's depends)
    assert {(issue.kind, issue.spec) for issue in issues} == {(kind, spec)}
    result = verdict(prefix_environment(prefix))
    assert result.status is Status.UNMET
    assert set(kinds(result)) == {"conda-constrains" if kind == "constrains" else "conda-depends"}
    assert spec in result.reason
    assert result.hint == f"conda install '{spec}'"
    # pip check does not see conda's graph at all
    assert prefix.pip_check()[0] == 0


def test_virtual_packages_are_left_out_as_rattler_leaves_them(make_prefix: MakePrefix,
                                                              tmp_path: Path) -> None:
    prefix = make_prefix("zed")
    record = prefix.record_path("zed")
    data = json.loads(record.read_text(encoding="utf-8"))
    data["depends"].append("__glibc >=2.17")
    record.write_text(json.dumps(data), encoding="utf-8")
    graph = probe_graph(probe_conda(str(prefix.root)))
    assert graph.issues == ()
    assert graph.virtual == (f"zed 1.0 py{PY_NODOT}_0: __glibc >=2.17",)
    assert validate(prefix) is None


def test_an_unparsable_spec_is_its_own_problem(make_prefix: MakePrefix) -> None:
    prefix = make_prefix("zed")
    record = prefix.record_path("zed")
    data = json.loads(record.read_text(encoding="utf-8"))
    data["depends"].append("libzed >=>1")
    record.write_text(json.dumps(data), encoding="utf-8")
    graph = probe_graph(probe_conda(str(prefix.root)))
    assert [(issue.kind, issue.spec) for issue in graph.issues] == [("invalid-spec", "libzed >=>1")]
    assert validate(prefix) is not None  # rattler refuses it too
    assert kinds(verdict(prefix_environment(prefix))) == ["conda-invalid-spec"]


def test_without_py_rattler_the_graph_is_unknown_never_guessed(
        make_prefix: MakePrefix, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = make_prefix("zed")
    prefix.remove("libzed")  # broken, but only conda's semantics can tell
    monkeypatch.setitem(sys.modules, "rattler", None)  # `import rattler` raises ImportError
    env = prefix_environment(prefix)
    assert env.conda_graph.failure is Failure.MISSING
    result = verdict(env)
    assert result.status is Status.UNKNOWN
    assert result.hint == "pip install 'pytest-envguard[conda]' (adds py-rattler, for conda's semantics)"
    assert "conda's own graph was not judged" in result.reason


def test_without_py_rattler_other_problems_still_fail(make_prefix: MakePrefix,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = make_prefix("zed")
    (prefix.root / "lib" / "libzed.so.1.10").unlink()
    monkeypatch.setitem(sys.modules, "rattler", None)
    result = verdict(prefix_environment(prefix))
    assert result.status is Status.UNMET
    assert kinds(result) == ["conda-missing-files"]
    assert "conda's own graph was not judged" in result.reason


def test_the_prefixes_own_interpreter_judges_it_end_to_end(make_prefix: MakePrefix) -> None:
    """``python -m pytest_envguard consistent`` run by the prefix's interpreter: the
    facets read ``sys.prefix``, which is the conda prefix."""
    prefix = make_prefix("zed", "tool")
    assert prefix.verdict("consistent")["status"] == "met"
    prefix.remove("libzed")
    result = prefix.verdict("consistent")
    assert result["status"] == "unmet"
    assert [p["kind"] for p in result["problems"]] == ["conda-depends"]
    prefix.with_rattler(False)
    result = prefix.verdict("consistent")
    assert result["status"] == "unknown"
    assert "pytest-envguard[conda]" in result["hint"]


# -- pip over conda: the real pip, in the prefix ------------------------------------------------


def pip_install(prefix: CondaPrefix, wheels: Path, *args: str) -> None:
    prefix.pip("install", "--no-index", "--find-links", str(wheels), *args)


def test_pip_upgrading_a_conda_package_is_a_replacement(make_prefix: MakePrefix,
                                                        conda_wheels: Path) -> None:
    prefix = make_prefix("zed", "tool")
    pip_install(prefix, conda_wheels, "zed==2.0")
    assert prefix.pip_check()[0] == 0  # pip sees nothing wrong: it replaced zed itself
    result = verdict(prefix_environment(prefix))
    assert result.status is Status.UNMET
    assert kinds(result) == ["pip-replaced-conda"]
    assert "pip's zed 2.0 replaced conda's zed 1.0" in result.reason
    assert f"zed 1.0 py{PY_NODOT}_0" in result.reason
    assert result.hint is not None
    assert result.hint.startswith("pip uninstall zed && conda install --force-reinstall zed")


def test_pip_reinstalling_a_conda_package_edits_its_metadata(make_prefix: MakePrefix,
                                                             conda_wheels: Path) -> None:
    prefix = make_prefix("zed")
    pip_install(prefix, conda_wheels, "--force-reinstall", "--no-deps", "zed==1.0")
    info = prefix.site / "zed-1.0.dist-info"
    assert (info / "INSTALLER").read_text().strip() == "pip"
    env = prefix_environment(prefix)
    result = verdict(env)
    assert kinds(result) == ["conda-metadata-edited"], result.reason
    assert "rewritten by pip" in result.reason
    assert env.installed.active()["zed"].manager == "conda"  # conda's record still lists it


def test_a_user_site_copy_shadows_conda(make_prefix: MakePrefix, conda_wheels: Path,
                                        tmp_path: Path) -> None:
    """``pip install --user`` in a conda env: the user site comes first on sys.path."""
    prefix = make_prefix("zed", "tool")
    user = tmp_path / "userbase"
    environ = clean_environ(PYTHONUSERBASE=str(user))
    result = prefix.run("-m", "pip", "--version", env=environ)
    del result  # (pip is not in the prefix: the test interpreter's pip installs for it)
    target = user / "lib" / f"python{PY}" / "site-packages"
    pip_install(prefix, conda_wheels, "--target", str(target), "zed==2.0")
    in_effect = prefix.run("-c", "import importlib.metadata as m; print(m.version('zed'))",
                           env=environ)
    assert in_effect.stdout.strip() == "2.0"
    verdict_json = prefix.verdict("consistent", env=environ)
    assert [p["kind"] for p in verdict_json["problems"]] == ["pip-shadows-conda"]
    assert "shadows conda's zed 1.0" in verdict_json["reason"]


def test_pip_beside_conda_in_one_directory(make_prefix: MakePrefix, conda_wheels: Path) -> None:
    """``pip install --ignore-installed``: pip's copy lands beside conda's (and writes over
    conda's module)."""
    prefix = make_prefix("zed")
    pip_install(prefix, conda_wheels, "--ignore-installed", "--no-deps", "zed==2.0")
    result = verdict(prefix_environment(prefix))
    assert sorted(kinds(result)) == ["pip-over-conda", "pip-shadows-conda"], result.reason
    assert "duplicate" not in kinds(result)  # said once, as the conda kind


def test_pip_writing_over_conda_files_names_both_owners(make_prefix: MakePrefix,
                                                        conda_wheels: Path) -> None:
    """conda's py-plain ships the module `plain` with no pip metadata; pip installs the
    PyPI `plain` over it."""
    prefix = make_prefix("py-plain")
    pip_install(prefix, conda_wheels, "plain==1.0")
    result = verdict(prefix_environment(prefix))
    assert kinds(result) == ["pip-over-conda"]
    assert result.reason.startswith("pip's plain 1.0 wrote over 1 file of conda's py-plain 1.0 0:")
    assert f"{SITE}/plain/__init__.py" in result.reason
    assert result.hint == "pip uninstall plain && conda install --force-reinstall py-plain"


def test_two_spellings_of_one_name_across_managers(make_prefix: MakePrefix,
                                                   conda_wheels: Path) -> None:
    prefix = make_prefix("ruamel_yaml")
    pip_install(prefix, conda_wheels, "ruamel.yaml==0.18.6")
    result = verdict(prefix_environment(prefix))
    assert kinds(result) == ["name-spelling"]
    assert "conda package ruamel_yaml 0.15.100" in result.reason
    assert "ruamel.yaml 0.18.6" in result.reason


def test_a_dist_info_conda_left_behind(make_prefix: MakePrefix, tmp_path: Path) -> None:
    """conda unlinked typing_extensions but its metadata directory survived (an unlink
    that failed half-way)."""
    prefix = make_prefix("typing_extensions")
    info = prefix.site / "typing_extensions-4.7.1.dist-info"
    shutil.copytree(info, tmp_path / "kept")
    prefix.remove("typing_extensions")
    shutil.copytree(tmp_path / "kept", info)
    result = verdict(prefix_environment(prefix))
    assert kinds(result) == ["conda-leftover"]
    assert "no conda record lists it" in result.reason


def test_pip_check_problems_in_a_conda_prefix_agree_with_pip(make_prefix: MakePrefix,
                                                             conda_wheels: Path) -> None:
    """pip check sees conda's Python distributions as any others: what it reports there,
    consistent reports as ``pip-check``."""
    prefix = make_prefix("zed")
    pip_install(prefix, conda_wheels, "--no-deps", "needs-new-zed==1.0")
    status, output = prefix.pip_check()
    assert status == 1
    assert "needs-new-zed 1.0 has requirement zed>=2.0, but you have zed 1.0." in output
    result = verdict(prefix_environment(prefix))
    assert kinds(result) == ["pip-check"]
    assert result.problems[0].text == ("needs-new-zed 1.0 has requirement zed>=2.0, "
                                       "but you have zed 1.0")


# -- what conda doctor checks ---------------------------------------------------------------------


def full_check(prefix: CondaPrefix) -> set[tuple[str, str]]:
    """The oracle: every recorded file hashed, with no shortcut."""
    import hashlib

    found = set()
    for record_path in prefix.meta.glob("*.json"):
        record = json.loads(record_path.read_text(encoding="utf-8"))
        for entry in record["paths_data"]["paths"]:
            path = prefix.root / entry["_path"]
            if entry["_path"].endswith((".pyc", ".pyo")):
                continue
            if not os.path.lexists(path):
                found.add((entry["_path"], "missing"))
            elif entry.get("path_type") == "hardlink" and not path.is_symlink():
                expected = entry.get("sha256_in_prefix") or entry["sha256"]
                if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
                    found.add((entry["_path"], "altered"))
    return found


def test_missing_and_altered_files_as_a_full_hash_finds_them(make_prefix: MakePrefix) -> None:
    prefix = make_prefix("zed", "tool", "pyyaml")
    (prefix.root / "lib" / "libzed.so.1.10").unlink()  # missing
    with (prefix.site / "yaml" / "__init__.py").open("a") as stream:
        stream.write("# patched\n")  # altered: its size changed
    same_size = prefix.site / "zed" / "__init__.py"
    same_size.write_text(same_size.read_text().replace("1.0", "9.9"))  # same size, newer
    facts = verify_files(probe_conda(str(prefix.root)))
    ours = {(issue.path, issue.kind) for issue in facts.issues}
    assert ours == full_check(prefix)
    assert ours == {("lib/libzed.so.1.10", "missing"), (f"{SITE}/yaml/__init__.py", "altered"),
                    (f"{SITE}/zed/__init__.py", "altered")}
    assert facts.hashed == 1  # only the file whose mtime says it changed
    result = verdict(prefix_environment(prefix))
    assert sorted(kinds(result)) == ["conda-altered-files", "conda-altered-files",
                                     "conda-missing-files"]
    assert "libzed 1.10 h0: 1 file missing: lib/libzed.so.1.10" in result.reason
    assert result.hint is not None and "--force-reinstall" in result.hint


def test_an_edit_hidden_by_an_old_mtime_needs_every_hash(make_prefix: MakePrefix) -> None:
    """Sizes and mtimes are the cheap test; an edit that keeps both (a restored mtime) is
    found only when every file is hashed (``Settings.conda_hashes``)."""
    prefix = make_prefix("zed")
    path = prefix.site / "zed" / "__init__.py"
    before = path.stat()
    path.write_text(path.read_text().replace("1.0", "9.9"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    conda = probe_conda(str(prefix.root))
    assert verify_files(conda).issues == ()
    hashed = verify_files(conda, hashes=True)
    assert [(issue.path, issue.kind) for issue in hashed.issues] == [
        (f"{SITE}/zed/__init__.py", "altered")]
    assert hashed.all_hashed
    assert verdict(prefix_environment(prefix, conda_hashes=True)).status is Status.UNMET


def test_the_ini_option_asks_for_every_hash(make_prefix: MakePrefix, tmp_path: Path) -> None:
    """``envguard_conda_hashes = true`` in the pytest config reaches the check: the edit
    hidden by a restored mtime is found by the command the prefix's own python runs."""
    prefix = make_prefix("zed")
    path = prefix.site / "zed" / "__init__.py"
    before = path.stat()
    path.write_text(path.read_text().replace("1.0", "9.9"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    for value, status in (("false", "met"), ("true", "unmet")):
        (tmp_path / "pytest.ini").write_text(
            f"[pytest]\nenvguard = consistent\nenvguard_conda_hashes = {value}\n")
        result = prefix.run("-m", "pytest_envguard", "-q", "--json", "-", cwd=tmp_path)
        [verdict] = json.loads(result.stdout)["contract"]
        assert verdict["status"] == status, (value, verdict)
    assert [problem["kind"] for problem in verdict["problems"]] == ["conda-altered-files"]
    (tmp_path / "pytest.ini").write_text("[pytest]\nenvguard = consistent\n"
                                         "envguard_conda_hashes = sometimes\n")
    bad = prefix.run("-m", "pytest_envguard", "-q", cwd=tmp_path)
    assert bad.returncode == 4
    assert "pytest.ini [envguard_conda_hashes]: invalid value 'sometimes'" in bad.stderr


def test_prefix_replaced_files_are_judged_by_their_hash_in_the_prefix(
        make_prefix: MakePrefix) -> None:
    prefix = make_prefix("zed")
    record_path = prefix.record_path("zed")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    entry = next(e for e in record["paths_data"]["paths"] if e["_path"].endswith("__init__.py"))
    entry["prefix_placeholder"] = "/opt/placeholder"
    entry["size_in_bytes"] += 40  # what it was before the prefix went in: no longer the size
    record_path.write_text(json.dumps(record), encoding="utf-8")
    os.utime(record_path)
    assert verify_files(probe_conda(str(prefix.root))).issues == ()


BROKEN_RECORDS = {
    "truncated": (lambda text: text[: len(text) // 2], "not valid JSON"),
    "no-name": (lambda text: json.dumps({k: v for k, v in json.loads(text).items()
                                         if k != "name"}), "no 'name'"),
    "not-an-object": (lambda text: "[1, 2]", "not a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_RECORDS))
def test_a_corrupt_record_is_named(case: str, make_prefix: MakePrefix) -> None:
    prefix = make_prefix("zed")
    path = prefix.record_path("libzed")
    change, words = BROKEN_RECORDS[case]
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")
    conda = probe_conda(str(prefix.root))
    assert [b.path for b in conda.broken] == [str(path)]
    assert words in conda.broken[0].reason
    result = verdict(prefix_environment(prefix))
    assert "conda-broken-record" in kinds(result)
    assert "libzed-1.10-h0.json" in result.reason


def test_an_incomplete_record_and_a_package_recorded_twice(make_prefix: MakePrefix) -> None:
    prefix = make_prefix("zed")
    path = prefix.record_path("libzed")
    record = json.loads(path.read_text(encoding="utf-8"))
    del record["files"]
    path.write_text(json.dumps(record), encoding="utf-8")
    shutil.copy(prefix.record_path("zed"), prefix.meta / "zed-0.9-py_0.json")
    result = verdict(prefix_environment(prefix))
    texts = [p.text for p in result.problems if p.kind == "conda-broken-record"]
    assert any("libzed 1.10 h0: its conda record libzed-1.10-h0.json is incomplete: "
               "no 'files' list" in text for text in texts), texts
    assert any("zed has 2 conda records" in text for text in texts), texts
    assert any("its file name should be" in text for text in texts), texts


def test_a_record_read_by_hand_matches_rattlers_reading(make_prefix: MakePrefix) -> None:
    """Our JSON reading of each record agrees with py-rattler's ``PrefixRecord``."""
    prefix = make_prefix("zed", "tool", "pyyaml")
    ours = {(r.name, r.version, r.build, r.build_number, tuple(r.depends), tuple(r.files))
            for r in probe_conda(str(prefix.root)).records}
    theirs = {(r.name.normalized, str(r.version), str(r.build), r.build_number,
               tuple(r.depends), tuple(str(f) for f in r.files))
              for r in prefix.prefix_records()}
    assert ours == theirs


def test_a_venv_has_no_conda_side(tmp_path: Path) -> None:
    facts = probe_conda(str(tmp_path))
    assert facts == CondaFacts(str(tmp_path), present=False)
    assert facts.summary() == ""


def test_an_unreadable_record_directory(tmp_path: Path) -> None:
    (tmp_path / "conda-meta").mkdir()
    (tmp_path / "conda-meta" / "dir.json").mkdir()
    broken = read_record(str(tmp_path / "conda-meta" / "dir.json"))
    assert not hasattr(broken, "version")
    assert broken.failure is Failure.NOT_REGULAR  # type: ignore[union-attr]


# -- managers, kinds, the JSON document ------------------------------------------------------------


def test_the_document_names_the_kind_managers_and_owner_of_each_distribution(
        make_prefix: MakePrefix, conda_wheels: Path) -> None:
    import jsonschema

    prefix = make_prefix("zed", "tool", "pyyaml")
    pip_install(prefix, conda_wheels, "plain==1.0")
    document = prefix.envguard_json("consistent")
    schema = json.loads((Path(checks.__file__).parent.parent / "schema.json").read_text())
    jsonschema.validate(document, schema)
    environment = document["environment"]
    assert environment["isolation"]["environment_kind"] == "conda"
    installed = environment["installed"]
    assert installed["managers"] == {"conda": 3, "pip": 1}
    assert installed["installed_by"] == {"zed": "conda", "tool": "conda", "pyyaml": "conda",
                                         "plain": "pip"}
    assert installed["conda_packages"] == {"zed": "zed", "tool": "tool", "pyyaml": "pyyaml"}
    assert environment["conda"]["kind"] == "conda"
    assert environment["conda"]["packages"]["libzed"] == "1.10 h0"


def test_a_pixi_environment_is_told_apart(make_prefix: MakePrefix) -> None:
    prefix = make_prefix("zed")
    (prefix.meta / "pixi").write_text(json.dumps({
        "manifest_path": "/project/pixi.toml", "environment_name": "test",
        "pixi_version": "0.40.0", "environment_lock_file_hash": "abc"}), encoding="utf-8")
    document = prefix.envguard_json("consistent", "isolated")
    assert document["environment"]["isolation"]["environment_kind"] == "pixi"
    assert document["environment"]["conda"]["pixi"] == {
        "manifest_path": "/project/pixi.toml", "environment": "test", "pixi_version": "0.40.0"}
    assert document["contract"][1]["found"] == "conda"  # the isolated key's kind is unchanged


def test_a_venv_pays_nothing_for_conda_support(make_venv: Any, tmp_path: Path) -> None:
    """Outside a conda prefix: no py-rattler import, no conda probe module, no conda-meta
    read — one stat of ``sys.prefix/conda-meta``."""
    venv = make_venv("no-conda")
    (tmp_path / "requirements.txt").write_text("", encoding="utf-8")
    code = (
        "import sys\n"
        "from pytest_envguard.checks import evaluate\n"
        "from pytest_envguard.environment import Environment\n"
        "from pytest_envguard.grammar import parse_lines\n"
        "verdicts = evaluate(parse_lines(['consistent', 'isolated', 'lock requirements.txt']),"
        " Environment())\n"
        "print([v.status.value for v in verdicts])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rattler' or m in ("
        "'pytest_envguard.probes.conda', 'pytest_envguard.checks.conda')))\n")
    result = venv.run("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['met', 'met', 'met']", "[]"]


def test_every_conda_kind_has_a_fix_and_is_documented() -> None:
    from pytest_envguard import hints
    from pytest_envguard.checks.conda import KINDS

    docs = (Path(__file__).parent.parent / "docs" / "conda.md").read_text(encoding="utf-8")
    schema = (Path(checks.__file__).parent.parent / "schema.json").read_text(encoding="utf-8")
    for kind in KINDS:
        assert kind in hints.CONDA_FIXES, kind
        assert f"| `{kind}` |" in docs, kind
        assert kind in schema, kind
