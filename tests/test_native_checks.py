"""The `library`, `extensions` and `import` keys: verdicts checked against the real loader."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_envguard import checks, grammar
from pytest_envguard.checks import native as native_checks
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.probes import Failure, extensions, imports
from pytest_envguard.probes.distributions import scan_distributions
from pytest_envguard.probes.loader import Candidate, LibraryFacts
from pytest_envguard.verdicts import Status, Verdict
from tests.fixtures_native import (
    EM_AARCH64,
    NativeBuild,
    _write_dist,
    loader_says,
    patch_machine,
    without_loader_vars,
)


def verdict(line: str, env: Environment) -> Verdict:
    [result] = checks.evaluate(grammar.parse_lines([line]), env)
    return result


def site_env(site: Path, cache: Path | None = None, **environ: str) -> Environment:
    return Environment(facts={"installed": scan_distributions([str(site)])},
                       environ=without_loader_vars(**environ), settings=Settings(cache_dir=cache))


# -- extensions ----------------------------------------------------------------------------------


def test_extensions_met_where_the_loader_loads_everything(native_build: NativeBuild) -> None:
    result = verdict("extensions nativegood", site_env(native_build.site))
    assert result.status is Status.MET, result.reason
    assert result.found == "3 modules"
    for module in ("originpkg/_plain.so", "originpkg/_origin.so", "rpathpkg/_rpath.so"):
        assert loader_says(native_build.site / module, without_loader_vars()) == (True, "")


def test_extensions_unmet_names_each_file_and_cause(native_build: NativeBuild) -> None:
    env = site_env(native_build.site)
    result = verdict("extensions nativebad", env)
    assert result.status is Status.UNMET
    assert result.found == "2 of 2 modules broken"
    assert "nativebad/_missing.so: libenvguard_absent.so.1 not found" in result.reason
    assert "nativebad/_new_glibc.so: GLIBC_2.99 not in " in result.reason
    problems = {p.display: p for p in env.extensions("nativebad").problems}
    glibc = problems["nativebad/_new_glibc.so"]
    assert (glibc.kind, glibc.library, glibc.version) == ("missing-version", "libc.so.6", "GLIBC_2.99")
    assert glibc.available and glibc.available.startswith("GLIBC_2.")
    assert f"has up to {glibc.available}" in result.reason
    # The real loader agrees on both, for the same reasons.
    loaded, error = loader_says(native_build.ext_new_glibc, without_loader_vars())
    assert not loaded and "version `GLIBC_2.99' not found" in error
    assert os.path.realpath(str(glibc.library_path)) == os.path.realpath(error.split(":")[0])
    loaded, error = loader_says(native_build.ext_missing, without_loader_vars())
    assert not loaded and "libenvguard_absent.so.1: cannot open shared object file" in error
    assert result.hint is not None and "manylinux_2_99_" in result.hint
    assert "or run on a newer OS" in result.hint


def test_extensions_of_every_distribution(native_build: NativeBuild) -> None:
    env = site_env(native_build.site)
    result = verdict("extensions", env)
    assert result.status is Status.UNMET
    assert result.found == "2 of 5 modules broken"
    assert {p.distribution for p in env.extensions(None).problems} == {"nativebad"}


def test_extensions_of_an_absent_distribution(native_build: NativeBuild) -> None:
    result = verdict("extensions no-such-dist", site_env(native_build.site))
    assert (result.status, result.found) == (Status.UNMET, "not installed")
    assert result.hint == "pip install no-such-dist"


def test_a_shadowing_ld_library_path_copy_lacks_a_version(
        native_build: NativeBuild, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "verpkg").mkdir(parents=True)
    module = site / "verpkg" / "_needs_v2.so"
    shutil.copy(native_build.ext_needs_v2, module)
    _write_dist(site, "verpkg", [module])
    old_first = f"{native_build.ver_old_dir}:{native_build.ver_new_dir}"
    result = verdict("extensions verpkg", site_env(site, LD_LIBRARY_PATH=old_first))
    assert result.status is Status.UNMET
    assert (f"ENVGUARD_2.0 not in {native_build.ver_old_dir / 'libenvguard_ver.so.1'} "
            "(has up to ENVGUARD_1.0)") in result.reason
    loaded, error = loader_says(module, without_loader_vars(LD_LIBRARY_PATH=old_first))
    assert not loaded and "version `ENVGUARD_2.0' not found" in error

    new_only = str(native_build.ver_new_dir)
    assert verdict("extensions verpkg", site_env(site, LD_LIBRARY_PATH=new_only)).status is Status.MET
    assert loader_says(module, without_loader_vars(LD_LIBRARY_PATH=new_only)) == (True, "")


def test_a_dependency_of_a_dependency_is_checked(native_build: NativeBuild, tmp_path: Path) -> None:
    # _origin.so → libenvguard_dep.so.1 (found); make that copy need the absent library.
    site = tmp_path / "site"
    shutil.copytree(native_build.site / "originpkg", site / "originpkg")
    (site / "originpkg.libs").mkdir()
    shutil.copy(native_build.ext_missing, site / "originpkg.libs" / "libenvguard_dep.so.1")
    _write_dist(site, "chain", [site / "originpkg" / "_origin.so"])
    env = site_env(site)
    result = verdict("extensions chain", env)
    assert result.status is Status.UNMET
    assert "libenvguard_absent.so.1 not found (via libenvguard_dep.so.1)" in result.reason
    loaded, error = loader_says(site / "originpkg" / "_origin.so", without_loader_vars())
    assert not loaded and "libenvguard_absent.so.1" in error


def test_wrong_architecture_and_corrupt_modules(native_build: NativeBuild, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "oddpkg").mkdir(parents=True)
    foreign = patch_machine(native_build.ext_plain, site / "oddpkg" / "_arm.so", EM_AARCH64)
    truncated = site / "oddpkg" / "_cut.so"
    shutil.copy(native_build.truncated, truncated)
    _write_dist(site, "oddpkg", [foreign, truncated])
    env = site_env(site)
    result = verdict("extensions oddpkg", env)
    assert result.status is Status.UNMET
    kinds = {p.display: p.kind for p in env.extensions("oddpkg").problems}
    assert kinds == {"oddpkg/_arm.so": "wrong-architecture", "oddpkg/_cut.so": "unreadable"}
    assert "built for ELF64 AARCH64" in result.reason
    assert not loader_says(foreign, without_loader_vars())[0]
    assert not loader_says(truncated, without_loader_vars())[0]


def test_a_distribution_without_record_is_named(native_build: NativeBuild, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(native_build.site / "nativegood-1.0.dist-info", site / "bare-1.0.dist-info")
    (site / "bare-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: bare\nVersion: 1.0\n", encoding="utf-8")
    (site / "bare-1.0.dist-info" / "RECORD").unlink()
    result = verdict("extensions", site_env(site))
    assert result.status is Status.MET
    assert "not scanned (no RECORD): bare" in result.reason


def test_second_session_reads_nothing_unchanged(native_build: NativeBuild, tmp_path: Path) -> None:
    first = site_env(native_build.site, cache=tmp_path)
    assert verdict("extensions", first).status is Status.UNMET
    assert first.extensions(None).parsed > 0
    second = site_env(native_build.site, cache=tmp_path)
    assert verdict("extensions", second).status is Status.UNMET
    assert second.extensions(None).parsed == 0
    assert second.extensions(None).problems == first.extensions(None).problems


def test_a_real_wheel_passes(tmp_path: Path) -> None:
    # psutil is a dependency of this project: a real manylinux wheel with extension modules.
    env = Environment(settings=Settings(cache_dir=tmp_path))
    result = verdict("extensions psutil", env)
    assert result.status is Status.MET, result.reason
    facts = env.extensions("psutil")
    assert facts.modules >= 1
    dist = env.installed.active()["psutil"]
    for path in extensions.extension_files(dist) or []:
        assert loader_says(path) == (True, ""), path


def test_version_family() -> None:
    assert extensions.version_family("GLIBCXX_3.4.30") == ("GLIBCXX", (3, 4, 30))
    assert extensions.version_family("GLIBC_PRIVATE") is None
    assert extensions.highest_version(["GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.9", "GLIBC_PRIVATE"],
                                  "GLIBC_2.99") == "GLIBC_2.17"
    assert extensions.highest_version(["CXXABI_1.3"], "GLIBCXX_3.4.30") is None


# -- library -----------------------------------------------------------------------------------


def test_library_found_names_file_and_source() -> None:
    env = Environment(environ=without_loader_vars())
    result = verdict("library libc.so.6", env)
    assert result.status is Status.MET
    path = env.library("libc.so.6").path
    assert result.found == f"{path} ({env.library('libc.so.6').source})"
    assert result.found.endswith(("(ld.so.cache)", "(default dirs)"))


def test_library_shadowed_by_ld_library_path(native_build: NativeBuild) -> None:
    env = Environment(environ=without_loader_vars(
        LD_LIBRARY_PATH=f"{native_build.ver_old_dir}:{native_build.ver_new_dir}"))
    result = verdict("library libenvguard_ver.so.1", env)
    assert result.status is Status.MET
    assert result.found == f"{native_build.ver_old_dir / 'libenvguard_ver.so.1'} (LD_LIBRARY_PATH)"
    assert f"shadows {native_build.ver_new_dir / 'libenvguard_ver.so.1'}" in result.reason


def test_library_not_found_with_a_package_hint() -> None:
    absent = LibraryFacts("cudnn", None, None, None, None, reason="no libcudnn.so* in …",
                          failure=Failure.MISSING)
    result = verdict("library cudnn", Environment(facts={("library", "cudnn"): absent}))
    assert (result.status, result.found) == (Status.UNMET, "not found")
    assert result.hint is not None and "nvidia-cudnn-cu12" in result.hint
    assert "-cu13 for CUDA 13" in result.hint
    env = Environment(environ=without_loader_vars())
    result = verdict("library libenvguard_nothing.so.3", env)
    assert (result.status, result.found) == (Status.UNMET, "not found")
    assert result.hint is not None and "LD_LIBRARY_PATH" in result.hint


def test_library_version_specifier(native_build: NativeBuild) -> None:
    env = Environment(environ=without_loader_vars(LD_LIBRARY_PATH=str(native_build.ver_new_dir)))
    assert verdict("library envguard_ver >=1", env).status is Status.MET
    result = verdict("library envguard_ver >=2", env)
    assert result.status is Status.UNMET
    assert "envguard_ver 1 does not satisfy >=2" in result.reason
    assert verdict("library c >=6", env).status is Status.MET


# -- import -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def import_dir(native_build: NativeBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Modules that import, fail, crash and hang in the ways the `import` key tells apart."""
    directory = tmp_path_factory.mktemp("imports")
    modules = {
        "envguard_fine": "__version__ = '1.2'\n",
        "envguard_raises": "raise RuntimeError('boom at import')\n",
        "envguard_needs_dep": "import envguard_no_such_dependency\n",
        "envguard_crashes": "import ctypes\nctypes.string_at(0)\n",
        "envguard_hangs": "import time\ntime.sleep(60)\n",
        "envguard_chatty": "print('noise on stdout')\nimport sys\nsys.stdout.write('x')\n",
    }
    for name, text in modules.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(text), encoding="utf-8")
    shutil.copy(native_build.ext_missing, directory / "envguard_native_missing.so")
    shutil.copy(native_build.ext_new_glibc, directory / "envguard_native_glibc.so")
    shutil.copy(native_build.ext_undefined, directory / "envguard_native_undefined.so")
    return directory


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


# -- whole sessions ----------------------------------------------------------------------------


def test_session_contract_stops_on_a_too_new_glibc(
        native_build: NativeBuild, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(native_build.site))
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    pytester.makepyfile("def test_one():\n    pass\n")
    pytester.makeini("[pytest]\nenvguard =\n    extensions nativebad\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == 6
    output = result.stdout.str() + result.stderr.str()
    assert "GLIBC_2.99" in output and "_new_glibc.so" in output
    assert "2 of 2 modules broken" in output and "manylinux_2_99_" in output
    # The ELF facts were cached in pytest's cache dir for the next session.
    assert list(pytester.path.glob(".pytest_cache/d/envguard/elf-facts.json"))


def test_marker_skips_name_the_missing_library_and_the_crash(
        import_dir: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(import_dir))
    pytester.makepyfile(textwrap.dedent("""
        import pytest

        @pytest.mark.requires("library libenvguard_absent.so.1")
        def test_needs_library():
            pass

        @pytest.mark.requires("import envguard_crashes")
        def test_needs_crashing_module():
            pass

        @pytest.mark.requires("import envguard_fine", "library c")
        def test_runs():
            pass
    """))
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines([
        "*envguard: needs library libenvguard_absent.so.1 — found not found: no "
        "libenvguard_absent.so.1 in LD_LIBRARY_PATH*",
        "*envguard: needs import envguard_crashes — found crashed (SIGSEGV): the interpreter "
        "was killed by SIGSEGV in *envguard_crashes.py:2*",
    ])


def test_egg_info_file_lists_are_read(native_build: NativeBuild, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(native_build.site / "nativebad", site / "nativebad")
    egg = site / "nativebad-1.0-py3.11.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.2\nName: nativebad\nVersion: 1.0\n",
                                  encoding="utf-8")
    (egg / "installed-files.txt").write_text(
        "../nativebad/_new_glibc.so\n../nativebad/_missing.so\nPKG-INFO\n", encoding="utf-8")
    result = verdict("extensions nativebad", site_env(site))
    assert (result.status, result.found) == (Status.UNMET, "2 of 2 modules broken")


def test_a_library_another_distribution_ships_counts_as_loaded(
        native_build: NativeBuild, tmp_path: Path) -> None:
    # As torchaudio's modules need libtorch.so, which `import torch` loads first.
    site = tmp_path / "site"
    (site / "userpkg").mkdir(parents=True)
    module = site / "userpkg" / "_user.so"
    shutil.copy(native_build.ext_needs_dep, module)
    _write_dist(site, "userpkg", [module])
    assert verdict("extensions userpkg", site_env(site)).status is Status.UNMET
    (site / "providerpkg" / "lib").mkdir(parents=True)
    provided = site / "providerpkg" / "lib" / "libenvguard_dep.so.1"
    shutil.copy(native_build.dep_dir / "libenvguard_dep.so.1", provided)
    _write_dist(site, "providerpkg", [provided])
    assert verdict("extensions userpkg", site_env(site)).status is Status.MET
    # The real loader: the module loads once the provider's library is loaded.
    code = "import ctypes, sys\nctypes.CDLL(sys.argv[1])\nctypes.CDLL(sys.argv[2])\n"
    result = subprocess.run([sys.executable, "-c", code, str(provided), str(module)],
                            env=without_loader_vars(), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_a_pip_installed_copy_is_not_called_shadowed() -> None:
    system = Candidate("/usr/lib/libcudnn.so.9", "ld.so.cache", "libcudnn.so.9", "9.1.0")
    wheel = Candidate("/site/nvidia/cudnn/lib/libcudnn.so.9", "site-packages nvidia/*/lib",
                      "libcudnn.so.9", "9.3.0")
    facts = LibraryFacts("cudnn", system.path, system.source, system.soname, system.version,
                         candidates=(system, wheel))
    result = verdict("library cudnn", Environment(facts={("library", "cudnn"): facts}))
    assert result.status is Status.MET
    assert result.reason == ("libcudnn.so.9 9.1.0 found through ld.so.cache; also in "
                             "/site/nvidia/cudnn/lib/libcudnn.so.9 (site-packages nvidia/*/lib)")
    # With a short name, a later candidate that satisfies the specifier is the one named.
    newer = verdict("library cudnn >=9.2", Environment(facts={("library", "cudnn"): facts}))
    assert newer.status is Status.MET
    assert newer.found == "/site/nvidia/cudnn/lib/libcudnn.so.9 (site-packages nvidia/*/lib)"
    assert newer.reason.endswith("searched first: /usr/lib/libcudnn.so.9 (ld.so.cache, 9.1.0)")


# -- a real wheel from the package index ---------------------------------------------------------


def test_a_real_numpy_wheel_passes_extensions(make_venv: Any, tmp_path_factory: pytest.TempPathFactory
                                              ) -> None:
    """numpy's manylinux wheel, installed by pip into a fresh venv: its extension modules find
    every library and symbol version they need, as `ldd` agrees, and it imports."""
    import elftools

    venv = make_venv("numpy-wheel")
    installed = venv.pip("install", "--only-binary=:all:", "numpy", check=False)
    assert installed.returncode == 0, installed.stderr[-2000:]
    shim = tmp_path_factory.mktemp("elftools-shim")
    (shim / "elftools").symlink_to(Path(elftools.__file__).parent)
    (venv.site / "elftools-shim.pth").write_text(f"{shim}\n", encoding="utf-8")

    result = venv.envguard("extensions numpy", "import numpy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^ok +extensions numpy +\d+ modules", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^ok +import numpy", result.stdout, re.MULTILINE), result.stdout

    modules = sorted((venv.site / "numpy").rglob("*.so"))
    assert modules
    for module in modules:
        ldd = subprocess.run(["ldd", str(module)], capture_output=True, text=True, check=False)
        assert "not found" not in ldd.stdout, (module, ldd.stdout)
