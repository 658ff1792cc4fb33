"""probes/locks.py and the `lock` key: every format, markers, includes, errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pytest_envguard import checks, grammar
from pytest_envguard.checks.hygiene import applicable
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.probes import locks
from pytest_envguard.probes.distributions import InstalledDistribution, InstalledFacts
from pytest_envguard.probes.interpreter import PythonFacts
from pytest_envguard.probes.system import PlatformFacts
from pytest_envguard.verdicts import Status, Verdict
from tests.fixtures_packages import Venv

LINUX_311 = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
             "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
             "implementation_name": "cpython", "platform_python_implementation": "CPython",
             "platform_release": "", "platform_version": "", "implementation_version": "3.11.7"}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def pins(lock: locks.LockFacts) -> dict[str, str | None]:
    return {p.name: p.version for p in applicable(lock, LINUX_311)}


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
    assert pins(lock) == {"attrs": "23.1.0", "foo-bar": "1.2.0", "idna": "3.6",
                          "local-pkg": None, "my-project": None}
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
    assert pins(lock) == {"click": "8.1.7", "rich": "13.7.0"}
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

