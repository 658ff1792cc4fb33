"""The `import` key: a child interpreter imports the module; what broke it, told apart
and explained — checked against what the interpreter itself says."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_envguard import checks, grammar
from pytest_envguard.checks import native as native_checks
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.probes import Failure, imports
from pytest_envguard.verdicts import Status, Verdict
from tests.fixtures_native import NativeBuild, without_loader_vars

SUFFIX = __import__("importlib.machinery").machinery.EXTENSION_SUFFIXES[0]


def verdict(line: str, env: Environment) -> Verdict:
    [result] = checks.evaluate(grammar.parse_lines([line]), env)
    return result


# -- import -------------------------------------------------------------------------------------


def import_env(directory: Path, timeout: float = 30.0) -> Environment:
    return Environment(environ=without_loader_vars(PYTHONPATH=str(directory)),
                       settings=Settings(import_timeout=timeout))


def test_import_ok(import_dir: Path) -> None:
    env = import_env(import_dir)
    result = verdict("import envguard_fine", env)
    assert (result.status, result.found) == (Status.MET, "envguard_fine 1.2")
    assert verdict("import json", env).status is Status.MET
    assert verdict("import envguard_chatty", env).status is Status.MET


def test_import_not_installed(import_dir: Path) -> None:
    env = import_env(import_dir)
    for line in ("import envguard_absent_module", "import envguard_fine.sub", "import os.nope"):
        result = verdict(line, env)
        assert (result.status, result.found) == (Status.UNMET, "not installed"), line
        assert "ModuleNotFoundError" in result.reason


def test_import_broken_python(import_dir: Path) -> None:
    env = import_env(import_dir)
    result = verdict("import envguard_raises", env)
    assert (result.status, result.found) == (Status.UNMET, "installed but broken")
    assert result.reason == "RuntimeError: boom at import"
    result = verdict("import envguard_needs_dep", env)
    assert result.found == "installed but broken"
    assert "envguard_no_such_dependency" in result.reason
    assert result.hint == "install the distribution that provides envguard_no_such_dependency"


def test_import_broken_native(import_dir: Path) -> None:
    env = import_env(import_dir)
    missing = env.module_import("envguard_native_missing")
    assert (missing.failure, missing.missing_kind, missing.missing) == (
        Failure.BROKEN, "library", "libenvguard_absent.so.1")
    assert missing.native_file == str(import_dir / "envguard_native_missing.so")
    result = verdict("import envguard_native_missing", env)
    assert f"(loading {import_dir / 'envguard_native_missing.so'})" in result.reason

    glibc = env.module_import("envguard_native_glibc")
    assert (glibc.missing_kind, glibc.missing) == ("version", "GLIBC_2.99")
    assert glibc.native_file == str(import_dir / "envguard_native_glibc.so")
    assert "manylinux_2_99" in str(verdict("import envguard_native_glibc", env).hint)

    undefined = env.module_import("envguard_native_undefined")
    assert (undefined.missing_kind, undefined.missing) == ("symbol", "envguard_nowhere")
    assert undefined.native_file == str(import_dir / "envguard_native_undefined.so")


def test_import_crash_is_contained(import_dir: Path) -> None:
    env = import_env(import_dir)
    result = verdict("import envguard_crashes", env)
    assert (result.status, result.found) == (Status.UNMET, "crashed (SIGSEGV)")
    assert "envguard_crashes.py:2" in result.reason


def test_import_timeout_is_unknown(import_dir: Path) -> None:
    result = verdict("import envguard_hangs", import_env(import_dir, timeout=1.0))
    assert (result.status, result.found) == (Status.UNKNOWN, "timeout")
    assert "within 1 s" in result.reason


def test_module_name_is_data_not_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    name = f"os; open({str(marker)!r}, 'w')"
    facts = imports.probe_import(name, without_loader_vars(), timeout=30)
    assert facts.failure is Failure.MISSING
    assert not marker.exists()


def test_import_sees_the_parent_sys_path(import_dir: Path) -> None:
    facts = imports.probe_import("envguard_fine", without_loader_vars(),
                                 sys_path=[str(import_dir), *sys.path])
    assert facts.ok and facts.file == str(import_dir / "envguard_fine.py")
    alone = imports.probe_import("envguard_fine", without_loader_vars(), sys_path=sys.path)
    assert alone.failure is Failure.MISSING


def test_import_with_no_interpreter(tmp_path: Path) -> None:
    facts = imports.probe_import("json", {}, executable=str(tmp_path / "python"))
    assert facts.failure is Failure.ERROR and "FileNotFoundError" in str(facts.error)
    result = native_checks.check_import(grammar.parse_line("import json"),
                                        Environment(facts={("import", "json"): facts}))
    assert result.status is Status.UNKNOWN


@pytest.mark.parametrize(("message", "expected"), [
    ("libcudnn.so.9: cannot open shared object file: No such file or directory",
     ("library", "libcudnn.so.9", None)),
    ("/lib/libc.so.6: version `GLIBC_2.34' not found (required by /x/_m.so)",
     ("version", "GLIBC_2.34", "/x/_m.so")),
    ("/x/_m.so: undefined symbol: _ZN3foo3barEv", ("symbol", "_ZN3foo3barEv", "/x/_m.so")),
    ("numpy.dtype size changed, may indicate binary incompatibility", (None, None, None)),
])
def test_explain_native_error(message: str, expected: tuple[str | None, ...]) -> None:
    assert imports.explain_native_error(message) == expected




def test_a_wrapped_native_error_names_the_module_and_the_cause(
        native_build: NativeBuild, tmp_path: Path) -> None:
    """numpy catches the loader's ImportError and raises its own advice: the verdict
    still names the extension module that failed (never "loading ImportError") and
    the missing library, from the error it was raised from."""
    package = tmp_path / "envguard_wrapped"
    package.mkdir()
    shutil.copy(native_build.ext_missing, package / f"_native{SUFFIX}")
    (package / "__init__.py").write_text(textwrap.dedent("""
        try:
            from . import _native
        except ImportError as exc:
            msg = (
                "\\n\\nIMPORTANT: PLEASE READ THIS FOR ADVICE ON HOW TO SOLVE THIS ISSUE!\\n\\n"
                "Importing the numpy C-extensions failed. This error can happen for\\n"
                "many reasons, often due to issues with your setup.\\n")
            raise ImportError(msg)
    """))
    env = Environment(environ=without_loader_vars(PYTHONPATH=str(tmp_path)),
                      settings=Settings(import_timeout=30))
    facts = env.module_import("envguard_wrapped")
    assert (facts.failure, facts.missing_kind, facts.missing) == (
        Failure.BROKEN, "library", "libenvguard_absent.so.1")
    assert facts.native_file == str(package / f"_native{SUFFIX}")
    result = verdict("import envguard_wrapped", env)
    assert "(loading ImportError)" not in result.reason
    assert f"(loading {package / f'_native{SUFFIX}'})" in result.reason
    assert "libenvguard_absent.so.1: cannot open shared object file" in result.reason
    # What the interpreter itself says: the same chain.
    direct = subprocess.run([sys.executable, "-c", "import envguard_wrapped"], capture_output=True,
                            text=True, env=env.environ, check=False)
    assert "libenvguard_absent.so.1" in direct.stderr and "IMPORTANT" in direct.stderr


def test_a_leaking_ld_library_path_is_named_as_the_cause(native_build: NativeBuild) -> None:
    """`import _hashlib` (as `import ssl`) with an old libcrypto.so.3 first on
    LD_LIBRARY_PATH: broken; without LD_LIBRARY_PATH it imports. The hint says that
    the leak is the cause and names the file, not "rebuild the two"."""
    leaky = without_loader_vars(LD_LIBRARY_PATH=str(native_build.leak_dir))
    check = "import _hashlib"
    with_leak = subprocess.run([sys.executable, "-c", check], env=leaky, capture_output=True,
                               text=True, check=False)
    if with_leak.returncode == 0:
        pytest.skip("this interpreter's _hashlib does not use libcrypto.so.3")
    assert subprocess.run([sys.executable, "-c", check], env=without_loader_vars(),
                          check=False).returncode == 0
    env = Environment(environ=leaky, settings=Settings(import_timeout=30))
    for module in ("_hashlib", "ssl"):
        facts = env.module_import(module)
        assert facts.failure is Failure.BROKEN, facts
        assert facts.leak == str(native_build.leak_dir / "libcrypto.so.3"), facts
        result = verdict(f"import {module}", env)
        assert result.hint is not None and result.hint.startswith("LD_LIBRARY_PATH is the cause")
        assert str(native_build.leak_dir / "libcrypto.so.3") in result.hint


def test_no_leak_is_blamed_where_the_import_fails_anyway(import_dir: Path, tmp_path: Path) -> None:
    env = Environment(environ=without_loader_vars(PYTHONPATH=str(import_dir),
                                                  LD_LIBRARY_PATH=str(tmp_path)),
                      settings=Settings(import_timeout=30))
    facts = env.module_import("envguard_native_missing")
    assert facts.failure is Failure.BROKEN and facts.leak is None
    hint = verdict("import envguard_native_missing", env).hint
    assert hint is not None and "LD_LIBRARY_PATH is the cause" not in hint
