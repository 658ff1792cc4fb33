"""``lock`` with conda's formats: pixi.lock, conda-lock.yml, explicit spec files, environment.yml.

The prefixes are real (py-rattler installs them from the test channel). The locks
are written the ways the tools write them: ``pixi.lock`` by py-rattler's lock-file
API (pixi's own writer), ``conda-lock.yml`` in conda-lock's format (and a real,
trimmed one from rattler's test data), explicit files as ``conda list --explicit``
prints them, ``environment.yml`` as ``conda env export`` writes it and as people
write it by hand. The oracle for the conda side: py-rattler's installer, asked to
make a copy of the prefix equal the lock — it plans no operation exactly when
``lock`` finds nothing that differs, is missing or (conda-side) extra.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_envguard import checks, grammar
from pytest_envguard.probes import Failure
from pytest_envguard.probes.conda_locks import conda_platform, parse_environment_yml
from pytest_envguard.probes.locks import LockError, read_lock
from pytest_envguard.verdicts import Status, Verdict
from tests.fixtures_conda import CondaPrefix, MakePrefix, prefix_environment

DATA = Path(__file__).parent / "conda_data"
PLATFORM = conda_platform() or "linux-64"


def lock_verdict(prefix: CondaPrefix, lock: Path, **settings: Any) -> Verdict:
    env = prefix_environment(prefix, rootdir=lock.parent, **settings)
    (result,) = checks.evaluate(grammar.parse_lines([f"lock {lock.name}"]), env)
    return result


def kinds(result: Verdict) -> list[str]:
    return [problem.kind for problem in result.problems]


def write_pixi_lock(path: Path, environments: dict[str, list[Any]],
                    pypi: dict[str, tuple[str, str]] | None = None) -> Path:
    """A pixi.lock written by py-rattler's lock-file API, as pixi writes it."""
    import rattler

    platform = rattler.LockPlatform(PLATFORM)
    lock = rattler.LockFile([platform])
    for name, records in environments.items():
        lock.set_channels(name, [rattler.LockChannel("https://conda.anaconda.org/envguard/")])
        for record in records:
            lock.add_conda_package(name, platform, record)
        for project, (version, url) in (pypi or {}).items():
            lock.add_pypi_package(name, platform, project, version, url)
    lock.to_path(path)
    return path


def write_conda_lock(path: Path, records: list[Any], pypi: dict[str, str] | None = None) -> Path:
    """A conda-lock.yml in conda-lock's (version 1) format."""
    lines = ["metadata:", "  channels:", "    - url: envguard", "      used_env_vars: []",
             "  content_hash:", f"    {PLATFORM}: 0", "  platforms:", f"    - {PLATFORM}",
             "  sources:", "    - environment.yml", "package:"]
    for record in records:
        lines += ["  - category: main", "    dependencies: {}", "    hash:",
                  f"      md5: {record.md5.hex()}", f"      sha256: {record.sha256.hex()}",
                  "    manager: conda", f"    name: {record.name.normalized}",
                  "    optional: false", f"    platform: {PLATFORM}", f"    url: {record.url}",
                  f'    version: "{record.version}"']
    for name, version in (pypi or {}).items():
        lines += ["  - category: main", "    dependencies: {}", "    hash:",
                  f"      sha256: {'0' * 64}", "    manager: pip", f"    name: {name}",
                  "    optional: false", f"    platform: {PLATFORM}",
                  f"    url: https://files.example.invalid/{name}-{version}-py3-none-any.whl",
                  f'    version: "{version}"']
    lines.append("version: 1")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_explicit(path: Path, records: list[Any]) -> Path:
    """What ``conda list --explicit --md5`` prints."""
    lines = ["# This file may be used to create an environment using:",
             "# $ conda create --name <env> --file <this file>", f"# platform: {PLATFORM}",
             "@EXPLICIT"]
    lines += [f"{record.url}#{record.md5.hex()}" for record in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rattler_would_change(prefix: CondaPrefix, records: list[Any], tmp_path: Path) -> int:
    """The oracle: how many operations py-rattler's installer plans to make a copy of
    the prefix hold exactly ``records``."""
    import asyncio

    import rattler

    copy = tmp_path / "oracle-copy"
    shutil.copytree(prefix.root, copy, symlinks=True)
    planned: list[int] = []

    class Reporter:
        def on_transaction_start(self, total_operations: int) -> None:
            planned.append(total_operations)

    asyncio.run(rattler.install(records, copy, cache_dir=tmp_path / "oracle-pkgs",
                                show_progress=False, execute_link_scripts=False,
                                reporter=Reporter()))
    shutil.rmtree(copy)
    return planned[0] if planned else 0


def lock_records(lock: Path, environment: str = "default") -> list[Any]:
    import rattler

    found = rattler.LockFile.from_path(lock).environment(environment)
    assert found is not None
    platform = next(p for p in found.platforms() if p.name == PLATFORM)
    return [package.repo_data_record() for package in found.packages(platform) or []
            if type(package).__name__ == "CondaLockedBinaryPackage"]


# -- pixi.lock and conda-lock.yml ------------------------------------------------------------------


@pytest.fixture
def locked_prefix(make_prefix: MakePrefix, conda_wheels: Path) -> CondaPrefix:
    prefix = make_prefix("zed", "tool")
    prefix.pip("install", "--no-index", "--find-links", str(conda_wheels), "plain==1.0")
    return prefix


WHEEL_URL = "https://files.example.invalid/plain-1.0-py3-none-any.whl"


@pytest.mark.parametrize("form", ["pixi", "conda-lock"])
def test_a_lock_the_prefix_was_made_from_is_met(form: str, locked_prefix: CondaPrefix,
                                                tmp_path: Path) -> None:
    records = locked_prefix.installed_records()
    if form == "pixi":
        lock = write_pixi_lock(tmp_path / "pixi.lock", {"default": records},
                               {"plain": ("1.0", WHEEL_URL)})
    else:
        lock = write_conda_lock(tmp_path / "conda-lock.yml", records, {"plain": "1.0"})
    result = lock_verdict(locked_prefix, lock)
    assert result.status is Status.MET, result.reason
    assert result.found == "6 pinned"
    assert "(5 conda, 1 PyPI)" in result.reason
    assert f"environment 'default', {PLATFORM}" in result.reason
    assert rattler_would_change(locked_prefix, lock_records(lock), tmp_path) == 0


@pytest.mark.parametrize("form", ["pixi", "conda-lock"])
def test_differ_missing_and_extra_as_the_installer_sees_them(
        form: str, locked_prefix: CondaPrefix, tmp_path: Path) -> None:
    wanted = [r for r in locked_prefix.installed_records() if r.name.normalized != "tool"]
    wanted = [r for r in wanted if r.name.normalized != "libzed"]
    wanted += locked_prefix.channel.records("libzed ==1.9", "typing_extensions")
    if form == "pixi":
        lock = write_pixi_lock(tmp_path / "pixi.lock", {"default": wanted},
                               {"plain": ("2.0", WHEEL_URL)})
    else:
        lock = write_conda_lock(tmp_path / "conda-lock.yml", wanted, {"plain": "2.0"})
    result = lock_verdict(locked_prefix, lock, lock_extras="fail")
    assert result.status is Status.UNMET
    assert result.found == "2 differ, 1 missing, 1 extra"
    texts = sorted(problem.text for problem in result.problems)
    assert any(t.startswith("libzed 1.10 h0 installed, lock has 1.9 h0 (") for t in texts), texts
    assert any(t.startswith("plain 1.0 installed, lock has 2.0 (") for t in texts), texts
    assert any(t.startswith("missing typing_extensions 4.7.1 pyha770c72_0 (") for t in texts)
    assert "tool is not in the lock" in texts
    assert sorted(kinds(result)) == ["differs", "differs", "extra", "missing"]
    assert rattler_would_change(locked_prefix, lock_records(lock), tmp_path) > 0


def test_the_pixi_environment_of_the_prefix_is_the_one_judged(locked_prefix: CondaPrefix,
                                                              tmp_path: Path) -> None:
    records = locked_prefix.installed_records()
    older = [r for r in records if r.name.normalized != "libzed"]
    lock = write_pixi_lock(tmp_path / "pixi.lock",
                           {"default": older + locked_prefix.channel.records("libzed ==1.9"),
                            "test": records}, {"plain": ("1.0", WHEEL_URL)})
    assert lock_verdict(locked_prefix, lock).status is Status.UNMET  # default has libzed 1.9
    (locked_prefix.meta / "pixi").write_text('{"environment_name": "test"}', encoding="utf-8")
    result = lock_verdict(locked_prefix, lock)
    assert result.status is Status.MET, result.reason
    assert "environment 'test'" in result.reason
    (locked_prefix.meta / "pixi").write_text('{"environment_name": "docs"}', encoding="utf-8")
    result = lock_verdict(locked_prefix, lock)
    assert result.status is Status.UNKNOWN
    assert "no environment 'docs' (it has: default, test)" in result.reason


def test_a_real_conda_lock_file_is_read_for_this_platform(tmp_path: Path) -> None:
    facts = read_lock(str(DATA / "numpy-conda-lock.yml"))
    assert facts.failure is None, facts.reason
    assert facts.format == "conda-lock"
    if PLATFORM == "linux-64":
        assert [(p.name, p.version, p.build) for p in facts.packages] == [
            ("_libgcc_mutex", "0.1", "conda_forge"), ("ca-certificates", "2022.12.7", "ha878542_0"),
            ("numpy", "1.24.2", "py39h7360e5f_0")]
    renamed = tmp_path / "conda-lock.yml"
    renamed.write_text("metadata: [\n", encoding="utf-8")
    broken = read_lock(str(renamed))
    assert broken.failure is Failure.CORRUPT
    assert "py-rattler cannot read it as a conda-lock lock" in (broken.reason or "")


def test_without_py_rattler_a_pixi_lock_is_unknown_with_the_extra(
        locked_prefix: CondaPrefix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = write_pixi_lock(tmp_path / "pixi.lock", {"default": locked_prefix.installed_records()})
    monkeypatch.setitem(sys.modules, "rattler", None)
    result = lock_verdict(locked_prefix, lock)
    assert result.status is Status.UNKNOWN
    assert result.hint == "pip install 'pytest-envguard[conda]' (adds py-rattler, for conda's semantics)"
    assert read_lock(str(lock)).failure is Failure.UNSUPPORTED


# -- explicit spec files ---------------------------------------------------------------------------


def test_an_explicit_file_names_the_line_of_each_problem(locked_prefix: CondaPrefix,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    records = locked_prefix.installed_records()
    lock = write_explicit(tmp_path / "spec-file.txt", records)
    monkeypatch.setitem(sys.modules, "rattler", None)  # explicit files need no py-rattler
    result = lock_verdict(locked_prefix, lock)
    assert result.status is Status.MET, result.reason
    assert "plain" in result.reason  # pip's plain is not in an explicit (conda-only) file
    monkeypatch.delitem(sys.modules, "rattler")
    changed = [r for r in records if r.name.normalized != "libzed"]
    changed += locked_prefix.channel.records("libzed ==2.0")
    lock = write_explicit(tmp_path / "conda-linux-64.lock", changed)
    result = lock_verdict(locked_prefix, lock)
    assert result.status is Status.UNMET
    (problem,) = result.problems
    line = next(number for number, text in enumerate(lock.read_text().splitlines(), 1)
                if "libzed-2.0" in text)
    assert problem.text == f"libzed 1.10 h0 installed, lock has 2.0 h0 (conda-linux-64.lock:{line})"
    assert result.hint == "sync the environment with the lock: conda create --name ENV --file " \
                          "conda-linux-64.lock (a fresh env, as the file's header says)"


@pytest.mark.parametrize(("text", "error"), [
    ("https://x/y/zed-1.0-0.conda\n@EXPLICIT\n", "comes before the @EXPLICIT line"),
    ("@EXPLICIT\nhttps://x/y/not-a-package.whl\n", "is not a conda package URL"),
    ("@EXPLICIT\nhttps://x/y/nodashes.conda\n", "is not a conda package URL"),
])
def test_a_bad_explicit_file_is_refused_with_its_line(text: str, error: str,
                                                      tmp_path: Path) -> None:
    path = tmp_path / "explicit.txt"
    path.write_text("# platform: linux-64\n" + text, encoding="utf-8")
    facts = read_lock(str(path))
    assert facts.failure is Failure.CORRUPT
    assert error in (facts.reason or "")
    assert facts.reason and facts.reason.startswith(f"{path}:")


# -- environment.yml -----------------------------------------------------------------------------------


def test_environment_yml_specs_are_judged_with_conda_semantics(locked_prefix: CondaPrefix,
                                                               tmp_path: Path) -> None:
    lock = tmp_path / "environment.yml"
    lock.write_text(f"""\
name: work  # as conda env export writes it, and by hand
channels:
  - {locked_prefix.channel.url}
dependencies:
  - python={sys.version_info.major}.{sys.version_info.minor}
  - zed=1.0=py{sys.version_info.major}{sys.version_info.minor}_0
  - libzed>=1.10,<2.0a0
  - tool==0.5
  - pip:
    - plain==1.0
""", encoding="utf-8")
    result = lock_verdict(locked_prefix, lock)
    assert result.status is Status.MET, result.reason
    assert "(name: work)" in result.reason
    lock.write_text(lock.read_text().replace("libzed>=1.10,<2.0a0", "libzed 1.9.*")
                    .replace("plain==1.0", "plain==2.0").replace("tool==0.5", "tool==0.5.0"),
                    encoding="utf-8")
    result = lock_verdict(locked_prefix, lock)
    assert result.status is Status.UNMET
    texts = sorted(problem.text for problem in result.problems)
    # conda compares 0.5 and 0.5.0 as one version; 1.10 is not 1.9.*
    assert texts == ["libzed 1.10 h0 installed, lock has libzed 1.9.* (environment.yml:7)",
                     "plain 1.0 installed, lock has 2.0 (environment.yml:10)"]


def test_environment_yml_without_py_rattler_is_unknown(locked_prefix: CondaPrefix,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / "environment.yml"
    lock.write_text("dependencies:\n  - zed=1.0\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "rattler", None)
    result = lock_verdict(locked_prefix, lock)
    assert result.status is Status.UNKNOWN
    assert "pytest-envguard[conda]" in (result.hint or "")


def test_the_environment_yml_reader() -> None:
    document = parse_environment_yml("env.yml", """\
# comment
name: "quoted"
channels: [conda-forge, nodefaults]
dependencies:
  - numpy=1.26.4=py311h64a7726_0   # exported
  - conda-forge::scipy
  - pip
  - pip:
      - requests==2.31.0
      - git+https://example.invalid/x.git#egg=x
  - zlib
variables:
  KEY: value
""")
    assert document["name"] == "quoted"
    assert [spec for _, spec in document["channels"]] == ["conda-forge", "nodefaults"]
    assert document["dependencies"] == [(5, "numpy=1.26.4=py311h64a7726_0"),
                                        (6, "conda-forge::scipy"), (7, "pip"), (11, "zlib")]
    assert document["pip"] == [(9, "requests==2.31.0"),
                               (10, "git+https://example.invalid/x.git#egg=x")]


@pytest.mark.parametrize(("text", "error"), [
    ("dependencies:\n\t- zlib\n", "env.yml:2: a tab in the indentation"),
    ("dependencies:\n  - conda: [x]\n", "env.yml:2: 'conda': only a 'pip:' list"),
    ("dependencies:\n  zlib\n", "env.yml:2: expected a '- item' under dependencies:"),
    ("- zlib\n", "env.yml:1: expected 'key: value' at the top level"),
])
def test_environment_yml_it_cannot_read_is_refused_with_its_line(text: str, error: str) -> None:
    with pytest.raises(LockError, match=error.replace("[", r"\[")):
        parse_environment_yml("env.yml", text)


def test_a_conda_lock_in_a_venv_finds_every_conda_package_missing(tmp_path: Path) -> None:
    from pytest_envguard.environment import Environment, Settings

    lock = tmp_path / "environment.yml"
    lock.write_text("dependencies:\n  - zlib=1.3\n", encoding="utf-8")
    env = Environment(settings=Settings(rootdir=tmp_path))
    (result,) = checks.evaluate(grammar.parse_lines(["lock environment.yml"]), env)
    assert result.status is Status.UNMET
    assert [p.text for p in result.problems] == ["missing zlib=1.3 (environment.yml:2)"]


# -- envguard --suggest proposes them ----------------------------------------------------------------


def test_suggest_proposes_each_conda_lock_the_prefix_meets(locked_prefix: CondaPrefix,
                                                           tmp_path: Path) -> None:
    """In a project root with conda's lock files, ``--suggest`` proposes a ``lock`` line
    for each file the ``lock`` key reads — kept when met here, left out (with the
    verdict) when not — and none for other YAML or text files."""
    from pytest_envguard.adopt.suggest import Dropped, lock_lines, suggest, verified

    root = tmp_path / "project"
    root.mkdir()
    records = locked_prefix.installed_records()
    write_pixi_lock(root / "pixi.lock", {"default": records}, {"plain": ("1.0", WHEEL_URL)})
    write_conda_lock(root / "conda-lock.yml", records, {"plain": "1.0"})
    write_explicit(root / "spec-file.txt", records)
    write_explicit(root / "conda-linux-64.lock", [r for r in records if r.name.normalized != "libzed"]
                   + locked_prefix.channel.records("libzed ==2.0"))  # not what is installed
    (root / "environment.yml").write_text("name: work\ndependencies:\n  - zed=1.0\n  - tool\n",
                                          encoding="utf-8")
    (root / "mkdocs.yml").write_text("site_name: x\nnav:\n  - index.md\n", encoding="utf-8")
    (root / "notes.txt").write_text("# notes\nnot a spec file\n@EXPLICIT\n", encoding="utf-8")
    env = prefix_environment(locked_prefix, rootdir=root)

    judged = verified(lock_lines(root), env)
    kept = sorted(entry.line for entry in judged if not isinstance(entry, Dropped))
    assert kept == ["lock conda-lock.yml", "lock environment.yml", "lock pixi.lock",
                    "lock spec-file.txt"]
    [dropped] = [entry for entry in judged if isinstance(entry, Dropped)]
    assert dropped.line == "lock conda-linux-64.lock"
    assert dropped.verdict.startswith("unmet here: found 1 differ")
    # The same lines, met, in the whole suggestion; and each one met as its verdict says.
    suggestion = suggest(env, root)
    assert {c.line for c in suggestion.lines if c.line.startswith("lock ")} == set(kept)
    verdicts = checks.evaluate(grammar.parse_lines(kept), env)
    assert [v.status for v in verdicts] == [Status.MET] * 4
