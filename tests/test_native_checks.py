"""The `library` key (each verdict against the real loader), whole sessions, and a
real numpy wheel broken on purpose."""

from __future__ import annotations

import json
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
from pytest_envguard.environment import Environment
from pytest_envguard.probes import Failure
from pytest_envguard.probes.elf import read_elf
from pytest_envguard.probes.loader import Candidate, LibraryFacts, VersionSource
from pytest_envguard.verdicts import NOTHING_FOUND, Status, Verdict
from tests.fixtures_native import NativeBuild, real_loader, same_file, without_loader_vars

VER = "libenvguard_ver.so.1"


def verdict(line: str, env: Environment) -> Verdict:
    [result] = checks.evaluate(grammar.parse_lines([line]), env)
    return result


def library_env(**environ: str) -> Environment:
    return Environment(environ=without_loader_vars(**environ))


# -- library, against the real loader ------------------------------------------------------------


def test_library_found_names_file_and_source() -> None:
    env = library_env()
    result = verdict("library libstdc++.so.6", env)
    assert result.status is Status.MET
    facts = env.library("libstdc++.so.6")
    assert result.found == f"{facts.path} ({facts.source})"
    assert same_file(facts.path, real_loader("libstdc++.so.6", env.environ).path)


def test_library_shadowed_by_ld_library_path(native_build: NativeBuild) -> None:
    env = library_env(LD_LIBRARY_PATH=f"{native_build.ver_old_dir}:{native_build.ver_new_dir}")
    result = verdict(f"library {VER}", env)
    assert result.status is Status.MET
    assert result.found == f"{native_build.ver_old_dir / VER} (LD_LIBRARY_PATH)"
    assert f"shadows {native_build.ver_new_dir / VER}" in result.reason
    assert real_loader(VER, env.environ).path == str(native_build.ver_old_dir / VER)


def test_library_in_a_hardware_capability_subdirectory(native_build: NativeBuild,
                                                       tmp_path: Path) -> None:
    """The old copy in DIR/glibc-hwcaps/x86-64-v2 (or DIR/tls on glibc < 2.37) is the
    one dlopen takes, where the CPU supports it: `library` names it, as the loader does."""
    directory = tmp_path / "lib"
    for place in ("glibc-hwcaps/x86-64-v2", "tls"):
        (directory / place).mkdir(parents=True)
        shutil.copy(native_build.ver_old_dir / VER, directory / place / VER)
    shutil.copy(native_build.ver_new_dir / VER, directory / VER)
    env = library_env(LD_LIBRARY_PATH=str(directory))
    result = verdict(f"library {VER}", env)
    answer = real_loader(VER, env.environ)
    assert result.status is Status.MET
    assert result.found == f"{answer.path} (LD_LIBRARY_PATH)", (result.found, answer.path)


@pytest.mark.parametrize("kind", ["directory", "empty", "text"])
def test_library_where_dlopen_stops(native_build: NativeBuild, tmp_path: Path, kind: str) -> None:
    """A directory, an empty file or text named like the library in an LD_LIBRARY_PATH
    directory: dlopen fails there, though a good copy comes later (failure 3)."""
    bad = tmp_path / "bad" / VER
    bad.parent.mkdir()
    if kind == "directory":
        bad.mkdir()
    else:
        bad.write_text("" if kind == "empty" else "not a library\n" * 10)
    env = library_env(LD_LIBRARY_PATH=f"{bad.parent}:{native_build.ver_new_dir}")
    result = verdict(f"library {VER}", env)
    answer = real_loader(VER, env.environ)
    assert not answer.loaded and answer.error_file() == str(bad)
    assert (result.status, result.found) == (Status.UNMET, f"dlopen fails at {bad}")
    assert answer.error.split(": ", 1)[1] in result.reason
    assert f"{native_build.ver_new_dir / VER} (LD_LIBRARY_PATH) comes later" in result.reason
    assert result.hint is not None and f"remove it (or {bad.parent}" in result.hint


def test_library_whose_own_needs_fail(native_build: NativeBuild) -> None:
    """dlopen finds libssl.so.3, then loads the old libcrypto.so.3 that LD_LIBRARY_PATH
    puts first, which lacks OPENSSL_3.0.0: dlopen fails, and so does `library`."""
    if not real_loader("libssl.so.3", library_env().environ).loaded:
        pytest.skip("no libssl.so.3 here")
    env = library_env(LD_LIBRARY_PATH=str(native_build.leak_dir))
    facts = env.library("libssl.so.3")
    assert facts.path is not None and facts.reach == "dlopen", facts
    answer = real_loader("libssl.so.3", env.environ)
    result = verdict("library libssl.so.3", env)
    assert not answer.loaded and str(native_build.leak_dir / "libcrypto.so.3") in answer.error
    assert (result.status, result.found) == (Status.UNMET, f"dlopen fails loading {facts.path}")
    assert f"not in {native_build.leak_dir / 'libcrypto.so.3'}" in result.reason
    clean = library_env()
    assert verdict("library libssl.so.3", clean).status is Status.MET
    assert real_loader("libssl.so.3", clean.environ).loaded


def test_what_this_process_loaded_counts_only_for_its_own_environment(tmp_path: Path) -> None:
    """A library this process has loaded is what its dlopen returns — with the
    environment it started with. With another LD_LIBRARY_PATH the answer is that of a
    fresh interpreter, as the oracle's is."""
    import ctypes

    from pytest_envguard.probes.loader import started_with

    ctypes.CDLL("libz.so.1")  # certainly loaded here now
    here = Environment(environ=dict(os.environ))
    if started_with(here.environ):
        assert here.library("libz.so.1").reach == "loaded"
    shadow = tmp_path / "lib"
    shadow.mkdir()
    shutil.copy(os.path.realpath(str(here.library("libz.so.1").path)), shadow / "libz.so.1")
    other = library_env(LD_LIBRARY_PATH=str(shadow))
    facts = other.library("libz.so.1")
    answer = real_loader("libz.so.1", other.environ)
    assert facts.reach in ("dlopen", "loaded") and same_file(facts.path, answer.path), (
        facts.path, answer.path)


def test_library_the_interpreter_has_loaded() -> None:
    """`library libpython3.X.so.1.0` (or whatever the interpreter links): the copy the
    running interpreter maps, which is what dlopen returns (failure 4)."""
    python = read_elf(os.path.realpath(sys.executable))
    name = next((need for need in python.needed if need.startswith("libpython")),
                python.needed[0])
    env = library_env()
    result = verdict(f"library {name}", env)
    assert result.status is Status.MET
    facts = env.library(name)
    assert result.found == f"{facts.path} (already loaded)"
    assert "already loaded in this process" in result.reason
    assert same_file(facts.path, real_loader(name, env.environ).path)


def test_library_not_found_with_a_package_hint() -> None:
    absent = LibraryFacts("cudnn", None, None, None, None, reason="no libcudnn.so* in …",
                          failure=Failure.MISSING)
    result = verdict("library cudnn", Environment(facts={("library", "cudnn"): absent}))
    # issue 15 wording: the skip reason reads "needs library cudnn — found none: …"
    assert (result.status, result.found) == (Status.UNMET, NOTHING_FOUND) == (Status.UNMET, "none")
    assert result.hint is not None and "nvidia-cudnn-cu12" in result.hint
    assert "-cu13 for CUDA 13" in result.hint
    env = library_env()
    result = verdict("library libenvguard_nothing.so.3", env)
    assert (result.status, result.found) == (Status.UNMET, NOTHING_FOUND)
    assert result.hint is not None and "LD_LIBRARY_PATH" in result.hint
    assert not real_loader("libenvguard_nothing.so.3", env.environ).loaded


def test_library_version_specifier(native_build: NativeBuild) -> None:
    """Only the soname's major is known for libenvguard_ver.so.1: `>=1` and `>=2` are
    decided, `>=1.2` cannot be, and is unknown — never unmet (failure 5)."""
    env = library_env(LD_LIBRARY_PATH=str(native_build.ver_new_dir))
    assert verdict("library envguard_ver >=1", env).status is Status.MET
    result = verdict("library envguard_ver >=2", env)
    assert result.status is Status.UNMET
    assert "envguard_ver 1 does not satisfy >=2" in result.reason
    finer = verdict("library envguard_ver >=1.2", env)
    assert finer.status is Status.UNKNOWN
    assert "only the soname's version 1 is known" in finer.reason
    assert verdict("library envguard_ver ==1.*", env).status is Status.MET
    assert verdict("library c >=6", env).status is Status.MET


def test_library_version_read_from_the_library(native_build: NativeBuild, tmp_path: Path) -> None:
    """OpenSSL's version string (kept in libcrypto): `library ssl >=3.0.13` is decided on
    3.0.19, not on the soname's 3 (failure 5). Here a libcrypto.so.3 that says so."""
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(native_build.version_string_lib, lib / "libcrypto.so.3")
    env = library_env(LD_LIBRARY_PATH=str(lib))
    result = verdict("library libcrypto.so.3 >=3.0.13", env)
    assert result.status is Status.MET, result.reason
    assert "3.0.19 (version string)" in result.reason
    assert verdict("library libcrypto.so.3 >=3.0.20", env).status is Status.UNMET
    assert env.library("libcrypto.so.3").version_source is VersionSource.STRING


def test_the_systems_openssl_has_its_release() -> None:
    env = library_env()
    facts = env.library("ssl")
    if facts.path is None or not (facts.soname or "").startswith("libssl.so.3"):
        pytest.skip("no OpenSSL 3 here")
    assert facts.version_source is VersionSource.STRING and facts.version.count(".") >= 2
    major, minor, patch = facts.version.split(".")[:3]
    assert verdict(f"library ssl >={major}.{minor}.{patch}", env).status is Status.MET
    assert verdict(f"library ssl >{major}.{minor}.{int(patch) + 1}", env).status is Status.UNMET


def test_library_only_in_site_packages_nvidia(native_build: NativeBuild, tmp_path: Path) -> None:
    """libcudart.so.12 only in nvidia/cuda_runtime/lib: met, and the verdict and the JSON say
    it is found where the CUDA wheels' users' RPATH finds it, not by a plain dlopen (failure 9)."""
    site = tmp_path / "site"
    lib = site / "nvidia" / "cuda_runtime" / "lib"
    lib.mkdir(parents=True)
    shutil.copy(native_build.dep_dir / "libenvguard_dep.so.1", lib / "libcudart.so.12")
    (site / "nvidia_cuda_runtime_cu12-12.4.127.dist-info").mkdir()
    from pytest_envguard.probes.loader import find_library

    facts = find_library("libcudart.so.12", without_loader_vars(), site_dirs=[str(site)])
    env = Environment(facts={("library", "libcudart.so.12"): facts})
    result = verdict("library libcudart.so.12 >=12.4", env)
    assert result.status is Status.MET
    assert result.found == f"{lib / 'libcudart.so.12'} (site-packages nvidia/*/lib; not on the " \
                           "loader's path)"
    assert "a plain dlopen('libcudart.so.12') finds nothing" in result.reason
    assert "12.4.127 (wheel)" in result.reason
    document = env.to_dict()["library:libcudart.so.12"]
    assert document["reach"] == "package-rpath"
    assert document["loader"]["failure"] == "missing"
    assert not real_loader("libcudart.so.12", without_loader_vars()).loaded


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
        "*envguard: needs library libenvguard_absent.so.1 — found none: no "
        "libenvguard_absent.so.1 in LD_LIBRARY_PATH*",
        "*envguard: needs import envguard_crashes — found crashed (SIGSEGV): the interpreter "
        "was killed by SIGSEGV in *envguard_crashes.py:2*",
    ])


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


def test_the_test_venvs_pip_never_reaches_an_index(consistent_venv: Any) -> None:
    """Tests download nothing: a venv's pip asked for a distribution it has no local wheel
    of fails at once, without looking at an index (CI runs offline)."""
    result = consistent_venv.pip("install", "--dry-run", "numpy", check=False)
    assert result.returncode != 0
    assert "Looking in indexes" not in result.stdout + result.stderr
    assert "from versions: none" in result.stderr, result.stderr


def test_a_real_numpy_wheel_passes_extensions(make_venv: Any, numpy_wheel: Path) -> None:
    """numpy's manylinux wheel, installed by pip into a fresh venv (offline: the test
    interpreter's own numpy, repacked): its extension modules find every library and
    symbol version they need, as `ldd` agrees, and it imports."""
    venv = make_venv("numpy-wheel")
    installed = venv.pip("install", "--no-index", "--no-deps", str(numpy_wheel), check=False)
    assert installed.returncode == 0, installed.stderr[-2000:]

    result = venv.envguard("extensions numpy", "import numpy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^ok +extensions numpy +\d+ modules", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^ok +import numpy", result.stdout, re.MULTILINE), result.stdout

    modules = sorted((venv.site / "numpy").rglob("*.so"))
    assert modules
    for module in modules:
        ldd = subprocess.run(["ldd", str(module)], capture_output=True, text=True, check=False)
        assert "not found" not in ldd.stdout, (module, ldd.stdout)

    # Broken on purpose, as a user would find it: a vendored library deleted — one that
    # only another vendored library needs where the wheel has one (libquadmath, needed by
    # libgfortran, in numpy < 2.5), else the one numpy's core needs (its OpenBLAS). RECORD
    # still lists it; the loader cannot load numpy's core any more; neither may the plugin.
    vendored = sorted((venv.site / "numpy.libs").glob("*.so*"))
    assert vendored
    needed_by_vendored = {name for library in vendored for name in read_elf(str(library)).needed}
    victim = next((library for library in vendored if library.name in needed_by_vendored),
                  vendored[0])
    victim.unlink()
    stem = victim.name.split("-")[0]  # libquadmath, libscipy_openblas64_
    report = venv.root / "report.json"
    result = venv.envguard("extensions numpy", "import numpy", "--json", str(report))
    assert result.returncode == 6, result.stdout + result.stderr
    assert re.search(r"^FAIL +extensions numpy +\d+ of \d+ modules? broken", result.stdout,
                     re.MULTILINE), result.stdout
    assert stem in result.stdout and "(loading ImportError)" not in result.stdout
    contract = json.loads(report.read_text())["contract"]
    said = {problem["text"].split(": ", 1)[0] for problem in contract[0]["problems"]}
    loader = {str(module.relative_to(venv.site)) for module in modules
              if not real_loader(module, without_loader_vars()).loaded}
    assert loader and said == loader
    imported = contract[1]
    assert imported["status"] == "unmet" and imported["found"] == "installed but broken"
    assert "_multiarray_umath" in imported["reason"] and stem in imported["reason"]
