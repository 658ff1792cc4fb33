"""probes/locks.py and the `lock` key: every format, markers, includes, errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pytest_envguard import checks, grammar
from pytest_envguard.checks.hygiene import applicable
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.probes import Failure, locks
from pytest_envguard.probes.distributions import InstalledDistribution, InstalledFacts
from pytest_envguard.probes.interpreter import PythonFacts
from pytest_envguard.probes.system import PlatformFacts
from pytest_envguard.verdicts import Status, Verdict
from tests.fixtures_packages import MakeVenv, Venv, build_wheel, uv_would_change, write_project

LINUX_311 = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
             "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
             "implementation_name": "cpython", "platform_python_implementation": "CPython",
             "platform_release": "", "platform_version": "", "implementation_version": "3.11.7"}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def pins(lock: locks.LockFacts) -> dict[str, str | None]:
    """What this interpreter must have installed."""
    return {p.name: p.version for p in applicable(lock, LINUX_311) if p.required}


def optional_pins(lock: locks.LockFacts) -> dict[str, str | None]:
    """What an installed copy must match, though nothing needs it installed."""
    return {p.name: p.version for p in applicable(lock, LINUX_311) if not p.required}


# -- requirements.txt -----------------------------------------------------------------------


def test_requirements_with_hashes_includes_markers_and_comments(tmp_path: Path) -> None:
    write(tmp_path / "base.txt", """
        # pip-compile output
        Foo_Bar==1.2.0 \\
            --hash=sha256:aaaa \\
            --hash=sha256:bbbb
        pywin32==306 ; sys_platform == "win32"
        tomli==2.0.1 ; python_version < "3.11"  # only on old Pythons
        --index-url https://example.invalid/simple
        """)
    write(tmp_path / "constraints.txt", "idna==3.6\n")
    write(tmp_path / "sub" / "extra.txt", "-r ../base.txt\nattrs===23.1.0\n")
    lock = locks.read_lock(str(write(tmp_path / "requirements.txt", """
        -r sub/extra.txt
        --constraint constraints.txt
        local-pkg @ file:///tmp/local-pkg
        -e ./src#egg=my_project
        """)))
    assert lock.reason is None
    assert pins(lock) == {"attrs": "23.1.0", "foo-bar": "1.2.0", "local-pkg": None,
                          "my-project": None}
    assert optional_pins(lock) == {"idna": "3.6"}  # a constraint: matched only if installed
    by_name = {p.name: p for p in lock.packages}
    assert by_name["foo-bar"].source.endswith("base.txt:2")
    assert by_name["idna"].required is False
    assert by_name["pywin32"].marker == 'sys_platform == "win32"'


@pytest.mark.parametrize(("text", "message"), [
    ("numpy>=1.26\n", "requirements.txt:1: 'numpy>=1.26' is not pinned (a lock needs 'name==version')"),
    ("ok==1\nnumpy==1.*\n", "requirements.txt:2: 'numpy==1.*' is not pinned"),
    ("\n\n=bad\n", "requirements.txt:3: '=bad' is not a requirement"),
    ("--frobnicate\n", "requirements.txt:1: unknown option '--frobnicate'"),
    ("-r missing.txt\n", "requirements.txt:1: included file 'missing.txt' does not exist"),
    ("--index-url\n", "requirements.txt:1: --index-url needs a value"),
])
def test_requirements_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(text, encoding="utf-8")
    error = locks.read_lock(str(path)).reason
    assert error is not None
    assert error.startswith(f"{tmp_path}/{message}")


def test_include_cycle_counts_each_file_once(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "-r b.txt\nfoo==1\n")
    write(tmp_path / "b.txt", "-r a.txt\nbar==2\n")
    assert pins(locks.read_lock(str(tmp_path / "a.txt"))) == {"bar": "2", "foo": "1"}


# -- TOML locks -----------------------------------------------------------------------------


def test_pylock_toml(tmp_path: Path) -> None:
    lock = locks.read_lock(str(write(tmp_path / "pylock.toml", """
        lock-version = "1.0"
        created-by = "tests"
        [[packages]]
        name = "Requests"
        version = "2.31.0"
        [[packages]]
        name = "colorama"
        version = "0.4.6"
        marker = "sys_platform == 'win32'"
        [[packages]]
        name = "devtool"
        version = "1.0"
        marker = "'dev' in dependency_groups"
        [[packages]]
        name = "from-git"
        """)))
    assert lock.reason is None
    assert lock.format == "pylock"
    assert pins(lock) == {"requests": "2.31.0", "from-git": None}


def test_uv_lock_walks_the_graph_for_this_interpreter(tmp_path: Path) -> None:
    lock = locks.read_lock(str(write(tmp_path / "uv.lock", """
        version = 1
        requires-python = ">=3.9"
        resolution-markers = ["python_full_version >= '3.10'", "python_full_version < '3.10'"]

        [[package]]
        name = "app"
        version = "0.1.0"
        source = { editable = "." }
        dependencies = [
            { name = "numpy", version = "1.26.4", source = { registry = "x" }, marker = "python_full_version < '3.10'" },
            { name = "numpy", version = "2.1.0", source = { registry = "x" }, marker = "python_full_version >= '3.10'" },
            { name = "colorama", marker = "sys_platform == 'win32'" },
            { name = "httpx", extra = ["http2"] },
        ]
        [package.optional-dependencies]
        plot = [{ name = "matplotlib" }]
        [package.dev-dependencies]
        dev = [{ name = "pytest" }]

        [[package]]
        name = "numpy"
        version = "1.26.4"
        source = { registry = "x" }
        resolution-markers = ["python_full_version < '3.10'"]

        [[package]]
        name = "numpy"
        version = "2.1.0"
        source = { registry = "x" }
        resolution-markers = ["python_full_version >= '3.10'"]

        [[package]]
        name = "colorama"
        version = "0.4.6"
        source = { registry = "x" }

        [[package]]
        name = "httpx"
        version = "0.27.0"
        source = { registry = "x" }
        [package.optional-dependencies]
        http2 = [{ name = "h2" }]

        [[package]]
        name = "h2"
        version = "4.1.0"
        source = { registry = "x" }

        [[package]]
        name = "matplotlib"
        version = "3.9.0"
        source = { registry = "x" }

        [[package]]
        name = "pytest"
        version = "8.3.0"
        source = { registry = "x" }
        dependencies = [{ name = "colorama", marker = "sys_platform == 'win32'" }, { name = "pluggy" }]

        [[package]]
        name = "pluggy"
        version = "1.5.0"
        source = { registry = "x" }
        """)))
    assert lock.reason is None
    assert pins(lock) == {"app": "0.1.0", "numpy": "2.1.0", "httpx": "0.27.0", "h2": "4.1.0",
                          "pytest": "8.3.0", "pluggy": "1.5.0"}
    assert optional_pins(lock) == {"matplotlib": "3.9.0"}


def test_poetry_lock_without_package_markers_walks_from_the_roots(tmp_path: Path) -> None:
    lock = locks.read_lock(str(write(tmp_path / "poetry.lock", """
        [[package]]
        name = "click"
        version = "8.1.7"
        optional = false
        python-versions = ">=3.7"
        [package.dependencies]
        colorama = {version = "*", markers = "platform_system == \\"Windows\\""}

        [[package]]
        name = "colorama"
        version = "0.4.6"
        optional = false
        python-versions = "*"

        [[package]]
        name = "rich"
        version = "13.7.0"
        optional = true
        python-versions = "*"

        [metadata]
        lock-version = "2.0"
        python-versions = "^3.10"
        content-hash = "abc"
        """)))
    assert lock.reason is None
    assert lock.graph
    assert pins(lock) == {"click": "8.1.7"}


def test_poetry_lock_2_1_package_markers(tmp_path: Path) -> None:
    lock = locks.read_lock(str(write(tmp_path / "poetry.lock", """
        [[package]]
        name = "click"
        version = "8.1.7"
        groups = ["main"]
        markers = "python_version >= \\"3.10\\""

        [[package]]
        name = "pywin32"
        version = "306"
        groups = ["main"]
        markers = {main = "sys_platform == \\"win32\\""}

        [[package]]
        name = "rich"
        version = "13.7.0"
        optional = true
        groups = ["main"]

        [metadata]
        lock-version = "2.1"
        """)))
    assert not lock.graph
    assert pins(lock) == {"click": "8.1.7"}
    assert optional_pins(lock) == {"rich": "13.7.0"}
    assert {p.name: p.required for p in lock.packages}["rich"] is False


@pytest.mark.parametrize(("name", "text", "message"), [
    ("uv.lock", "version = 1\n[[package]]\nname = 'x'\nversion = \n", "uv.lock:4: invalid TOML"),
    ("uv.lock", "[[package]]\nname = 'x'\n", "uv.lock: no 'version' (not a uv lock file)"),
    ("pylock.toml", "lock-version = '1.0'\npackages = 3\n", "pylock.toml: 'packages' must be an array"),
    ("pylock.toml", "lock-version = '1.0'\n[[packages]]\nversion = '1'\n",
     "pylock.toml: [[packages]] #1 has no name"),
    ("pylock.toml", "[[packages]]\nname = 'x'\n", "pylock.toml: no 'lock-version'"),
    ("poetry.lock", "[[package]]\nname = 'x'\nversion = '1'\n", "poetry.lock: no [metadata] table"),
    ("poetry.lock", "\xff", "poetry.lock: not UTF-8"),
    ("Pipfile.lock", "{}", "Pipfile.lock: unknown lock format"),
])
def test_toml_lock_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    error = locks.read_lock(str(path)).reason
    assert error is not None
    assert error.startswith(f"{tmp_path}/{message}"), error


# -- the check ---------------------------------------------------------------------------


def environment(root: Path, *installed: tuple[str, str], extras_mode: str | None = None,
                ) -> Environment:
    dists = tuple(InstalledDistribution(name, version, f"/site/{name}-{version}.dist-info",
                                        "/site") for name, version in installed)
    facts = {"installed": InstalledFacts(dists, ("/site",)),
             # a CPython 3.11 on x86_64 Linux, whatever runs the test
             "python": PythonFacts("3.11.7", "cpython", "3.11.7", "/v/bin/python", "/v", "/usr"),
             "platform": PlatformFacts("linux", "x86_64", "Linux", "6.1.0")}
    return Environment(facts, environ={}, settings=Settings(  # type: ignore[arg-type]
        rootdir=root, lock_extras=extras_mode or "report"))  # type: ignore[arg-type]


def verdict(env: Environment, line: str) -> Verdict:
    (result,) = checks.evaluate(grammar.parse_lines([line]), env)
    return result


def test_lock_check_met_relative_to_rootdir(tmp_path: Path) -> None:
    write(tmp_path / "locks" / "requirements.txt", "foo==1.0\nbar==2.0.0\n")
    result = verdict(environment(tmp_path, ("foo", "1.0"), ("bar", "2.0"), ("pip", "24.0")),
                     "lock locks/requirements.txt")
    assert result.status is Status.MET
    assert result.found == "2 pinned"


def test_lock_check_lists_differences_missing_and_extras(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "foo==1.0\nbar==2.0\nbaz==3\n")
    env = environment(tmp_path, ("foo", "1.1"), ("bar", "2.0"), ("stray", "0.1"))
    result = verdict(env, "lock requirements.txt")
    assert result.status is Status.UNMET
    assert result.found == "1 differ, 1 missing"
    assert result.reason == (f"requirements.txt: foo 1.1 installed, lock has 1.0 "
                             f"({tmp_path}/requirements.txt:1); missing baz==3 "
                             f"({tmp_path}/requirements.txt:3); not in the lock: stray")
    assert result.hint is not None
    assert "pip-sync requirements.txt" in result.hint


@pytest.mark.parametrize(("mode", "status", "reason_has_extra"), [
    ("report", Status.MET, True),
    ("ignore", Status.MET, False),
    ("fail", Status.UNMET, True),
])
def test_extra_packages_are_opt_in_failures(tmp_path: Path, mode: str, status: Status,
                                            reason_has_extra: bool) -> None:
    write(tmp_path / "requirements.txt", "foo==1.0\n")
    env = environment(tmp_path, ("foo", "1.0"), ("stray", "0.1"), ("setuptools", "69"),
                      extras_mode=mode)
    result = verdict(env, "lock requirements.txt")
    assert result.status is status
    assert ("not in the lock: stray" in result.reason) is reason_has_extra
    assert "setuptools" not in result.reason


def test_unparsable_lock_is_unknown_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "foo==1.0\nbar>=2\n")
    result = verdict(environment(tmp_path, ("foo", "1.0")), "lock requirements.txt")
    assert result.status is Status.UNKNOWN
    assert result.found == "unreadable"
    assert f"{tmp_path}/requirements.txt:2: 'bar>=2' is not pinned" in result.reason
    missing = verdict(environment(tmp_path), "lock nope.txt")
    assert missing.status is Status.UNKNOWN
    assert missing.reason == f"lock file unusable: {tmp_path}/nope.txt: no such file"


# -- a real venv, every format --------------------------------------------------------------


@pytest.mark.parametrize(("name", "matching", "drifted"), [
    ("requirements.txt", "alpha==1.0\nbeta==1.5\n", "alpha==1.0\nbeta==2.0\n"),
    ("pylock.toml",
     'lock-version = "1.0"\n[[packages]]\nname = "alpha"\nversion = "1.0"\n'
     '[[packages]]\nname = "beta"\nversion = "1.5"\n',
     'lock-version = "1.0"\n[[packages]]\nname = "alpha"\nversion = "1.0"\n'
     '[[packages]]\nname = "beta"\nversion = "2.0"\n'),
    ("uv.lock",
     'version = 1\n[[package]]\nname = "proj"\nversion = "0.1"\nsource = { virtual = "." }\n'
     'dependencies = [{ name = "alpha" }]\n[[package]]\nname = "alpha"\nversion = "1.0"\n'
     'dependencies = [{ name = "beta" }]\n[[package]]\nname = "beta"\nversion = "1.5"\n',
     'version = 1\n[[package]]\nname = "proj"\nversion = "0.1"\nsource = { virtual = "." }\n'
     'dependencies = [{ name = "alpha" }]\n[[package]]\nname = "alpha"\nversion = "1.0"\n'
     'dependencies = [{ name = "beta" }]\n[[package]]\nname = "beta"\nversion = "2.0"\n'),
    ("poetry.lock",
     '[[package]]\nname = "alpha"\nversion = "1.0"\n[package.dependencies]\nbeta = ">=1.0"\n'
     '[[package]]\nname = "beta"\nversion = "1.5"\n[metadata]\nlock-version = "2.0"\n',
     '[[package]]\nname = "alpha"\nversion = "1.0"\n[package.dependencies]\nbeta = ">=1.0"\n'
     '[[package]]\nname = "beta"\nversion = "2.0"\n[metadata]\nlock-version = "2.0"\n'),
])
def test_lock_in_a_real_venv(consistent_venv: Venv, tmp_path: Path, name: str,
                             matching: str, drifted: str) -> None:
    venv = consistent_venv  # alpha 1.0, beta 1.5, … installed by pip
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / name).write_text(matching, encoding="utf-8")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / name).write_text(drifted, encoding="utf-8")
    good = venv.envguard("--json", "-", f"lock {name}", cwd=tmp_path / "good")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = venv.envguard("--json", "-", f"lock {name}", cwd=tmp_path / "bad")
    assert bad.returncode == 6
    (result,) = json.loads(bad.stdout)["contract"]
    assert result["found"] == "1 differ, 0 missing"
    assert result["reason"].startswith(f"{name}: beta 1.5 installed, lock has 2.0")



# -- the differential oracle: real uv on the same venv ----------------------------------------


def lock_problem_names(verdict: dict[str, object]) -> set[str]:
    """The names a `lock` verdict finds missing or different (from its JSON problems)."""
    names = set()
    for problem in verdict.get("problems", []):  # type: ignore[attr-defined]
        words = problem["text"].split()
        if problem["kind"] in ("missing", "differs"):
            names.add((words[1] if problem["kind"] == "missing" else words[0]).split("==")[0])
    return names


@pytest.fixture
def local_project(tmp_path: Path, make_venv: MakeVenv, wheelhouse: Path) -> tuple[Venv, Path]:
    """A venv where uv installed a local project editable (and its requirement)."""
    project = write_project(tmp_path / "proj", "local-proj", "0.1", ["beta>=1"])
    venv = make_venv("editable")
    result = venv.uv("pip", "install", "--python", str(venv.python), "--no-index",
                     "--find-links", str(wheelhouse), "-e", str(project), "beta==1.5")
    assert result.returncode == 0, result.stderr
    return venv, project


@pytest.mark.parametrize("line", ["-e .", "-e file://{project}", "-e {project}", "./",
                                  "local-proj @ file://{project}"])
def test_local_project_lines_check_presence(local_project: tuple[Venv, Path], wheelhouse: Path,
                                            line: str) -> None:
    # Issue 14, point 5: "-e ." (uv export), "-e file:///…" (uv pip freeze), "-e /path"
    # (pip freeze), a bare path: the project must be installed. The oracle: uv pip
    # install --dry-run -r on the same venv.
    venv, project = local_project
    if not line.startswith("-e"):  # installed as the line says: not editable
        assert venv.uv("pip", "install", "--python", str(venv.python), "--reinstall",
                       "--no-deps", str(project)).returncode == 0
    (project / "requirements.txt").write_text(line.format(project=project) + "\nbeta==1.5\n",
                                              encoding="utf-8")

    def both() -> tuple[dict[str, object], set[str]]:
        verdict = venv.verdict("lock requirements.txt", cwd=project)
        oracle = uv_would_change(venv.uv("pip", "install", "--python", str(venv.python),
                                         "--dry-run", "--no-index", "--find-links",
                                         str(wheelhouse), "-r", "requirements.txt", cwd=project))
        return verdict, oracle

    verdict, oracle = both()
    assert (verdict["status"], oracle) == ("met", set())
    venv.uv("pip", "uninstall", "--python", str(venv.python), "local-proj")
    verdict, oracle = both()
    assert verdict["status"] == "unmet"
    assert lock_problem_names(verdict) == oracle == {"local-proj"}


def test_a_local_project_that_cannot_be_named_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "anonymous").mkdir()
    (tmp_path / "anonymous" / "setup.py").write_text("", encoding="utf-8")
    (tmp_path / "requirements.txt").write_text("-e ./anonymous\n", encoding="utf-8")
    lock = locks.read_lock(str(tmp_path / "requirements.txt"))
    assert lock.failure is Failure.CORRUPT
    assert "cannot tell the name of the project" in (lock.reason or "")
    (tmp_path / "requirements.txt").write_text("-e ./gone\n", encoding="utf-8")
    assert locks.read_lock(str(tmp_path / "requirements.txt")).failure is Failure.MISSING
    (tmp_path / "anonymous" / "setup.cfg").write_text("[metadata]\nname = Anon_Ymous\n",
                                                      encoding="utf-8")
    (tmp_path / "requirements.txt").write_text("-e ./anonymous[dev]\n", encoding="utf-8")
    assert pins(locks.read_lock(str(tmp_path / "requirements.txt"))) == {"anon-ymous": None}


UV_PROJECT = """\
[project]
name = "proj"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["alpha"]

[project.optional-dependencies]
gpu = ["gamma"]

[dependency-groups]
dev = ["beta==2.0"]
lint = ["needs-new-beta"]
docs = ["wants-gpu"]

[tool.uv]
default-groups = {defaults}
no-index = true
find-links = ["{wheelhouse}"]

[build-system]
requires = []
build-backend = "envguard_test_backend"
backend-path = ["."]
"""


def uv_oracle(venv: Venv, project: Path) -> set[str]:
    """What `uv sync` would change by default (missing or different), plus the installed
    packages that syncing every extra and group would change (an installed copy must
    match its pin)."""
    default = uv_would_change(venv.uv("sync", "--locked", "--dry-run", "--inexact", cwd=project))
    every = uv_would_change(venv.uv("sync", "--locked", "--dry-run", "--inexact",
                                    "--all-extras", "--all-groups", cwd=project))
    return default | (every & set(venv.in_effect()))


@pytest.mark.parametrize("defaults", ['["dev", "lint"]', '"all"', '[]'])
def test_uv_lock_follows_uv_syncs_default_groups(tmp_path: Path, make_venv: MakeVenv,
                                                 wheelhouse: Path, defaults: str) -> None:
    # Issue 14, point 7: `[tool.uv] default-groups`, not only "dev". A real `uv lock`,
    # a real `uv sync`; then the venv is changed and both judge it again.
    project = write_project(tmp_path / "proj", "proj", "0.1.0")
    (project / "pyproject.toml").write_text(
        UV_PROJECT.format(defaults=defaults, wheelhouse=wheelhouse), encoding="utf-8")
    venv = make_venv("uv-groups")
    locked = venv.uv("lock", cwd=project)
    assert locked.returncode == 0, locked.stderr
    synced = venv.uv("sync", "--locked", cwd=project)
    assert synced.returncode == 0, synced.stderr
    verdict = venv.verdict("lock uv.lock", cwd=project)
    assert (verdict["status"], uv_oracle(venv, project)) == ("met", set())
    # Remove what the lint group installs (when it is a default), downgrade the dev group's beta, and install
    # gamma (the gpu extra) at another version than the lock's.
    build_wheel(tmp_path, "gamma", "0.1")
    venv.uv("pip", "uninstall", "--python", str(venv.python), "needs-new-beta")
    for change in (
                   ("pip", "install", "--python", str(venv.python), "--no-index", "--find-links",
                    str(wheelhouse), "beta==1.5"),
                   ("pip", "install", "--python", str(venv.python), "--no-deps",
                    str(tmp_path / "gamma-0.1-py3-none-any.whl"))):
        assert venv.uv(*change).returncode == 0
    verdict = venv.verdict("lock uv.lock", cwd=project)
    oracle = uv_oracle(venv, project)
    assert lock_problem_names(verdict) == oracle
    assert oracle == {"gamma", "beta", *({"needs-new-beta"} if defaults != "[]" else ())}


# Written by Poetry 2.5.1 (`poetry lock` on the pyproject.toml below, against a PEP 503
# index), files lists and sources left out: the shape Poetry 2.x writes (lock-version 2.1,
# `groups` on every package, `markers` only where a package does not apply everywhere).
POETRY_LOCK = '''\
# This file is automatically @generated by Poetry 2.5.1 and should not be changed by hand.

[[package]]
name = "click"
version = "8.5.1"
description = "Composable command line interface toolkit"
optional = false
python-versions = ">=3.10"
groups = ["main"]

[[package]]
name = "colorama"
version = "0.4.6"
description = "Cross-platform colored terminal text."
optional = false
python-versions = "!=3.0.*,!=3.1.*,!=3.2.*,!=3.3.*,!=3.4.*,!=3.5.*,!=3.6.*,>=2.7"
groups = ["main", "dev"]
markers = {main = "platform_system == \\"Windows\\"", dev = "sys_platform == \\"win32\\""}

[[package]]
name = "iniconfig"
version = "2.3.1"
description = "brain-dead simple config-ini parsing"
optional = false
python-versions = ">=3.10"
groups = ["dev"]

[[package]]
name = "packaging"
version = "26.4"
description = "Core utilities for Python packages"
optional = false
python-versions = ">=3.10"
groups = ["docs"]

[[package]]
name = "six"
version = "1.17.0"
description = "Python 2 and 3 compatibility utilities"
optional = true
python-versions = ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*"
groups = ["main"]
markers = "extra == \\"fast\\""

[extras]
fast = ["six"]

[metadata]
lock-version = "2.1"
python-versions = ">=3.10,<4"
content-hash = "8af01efa765f4e211e4d7447ed881d50ead1ce4fe7451433dadeebe2446eac3d"
'''

POETRY_PYPROJECT = """\
[project]
name = "pp"
version = "0.1.0"
requires-python = ">=3.10,<4"
dependencies = ["click>=8"]
[project.optional-dependencies]
fast = ["six>=1.16"]
[tool.poetry]
package-mode = false
[tool.poetry.group.dev.dependencies]
iniconfig = "*"
[tool.poetry.group.docs]
optional = true
[tool.poetry.group.docs.dependencies]
packaging = "*"
"""


@pytest.mark.parametrize(("installed", "status", "names"), [
    ((("click", "8.5.1"), ("iniconfig", "2.3.1")), Status.MET, set()),
    # Issue 14, point 6: the optional package of extra `fast`, installed at another
    # version: `poetry install -E fast --dry-run` would update it.
    ((("click", "8.5.1"), ("iniconfig", "2.3.1"), ("six", "1.10.0")), Status.UNMET, {"six"}),
    ((("click", "8.5.1"), ("iniconfig", "2.3.1"), ("six", "1.17.0")), Status.MET, set()),
    # The optional docs group: not needed, but an installed copy must match its pin.
    ((("click", "8.5.1"), ("iniconfig", "2.3.1"), ("packaging", "25.0")), Status.UNMET,
     {"packaging"}),
    # The default dev group is needed.
    ((("click", "8.5.1"),), Status.UNMET, {"iniconfig"}),
])
def test_poetry_2_lock(tmp_path: Path, installed: tuple[tuple[str, str], ...], status: Status,
                       names: set[str]) -> None:
    write(tmp_path / "poetry.lock", POETRY_LOCK)
    write(tmp_path / "pyproject.toml", POETRY_PYPROJECT)
    result = verdict(environment(tmp_path, *installed), "lock poetry.lock")
    assert result.status is status, result.reason
    found = {problem.text.split()[1 if problem.kind == "missing" else 0].split("==")[0]
             for problem in result.problems if problem.kind in ("missing", "differs")}
    assert found == names
