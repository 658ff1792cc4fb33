"""The `extensions` key, each scenario judged by the real loader too: the same modules
broken, the same file named (``plugin_and_loader_agree``)."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_envguard import checks, grammar
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.probes import extensions
from pytest_envguard.probes.distributions import scan_distributions
from pytest_envguard.verdicts import Problem, Status, Verdict
from tests.fixtures_native import (
    EM_AARCH64,
    VENDORED_A,
    VENDORED_B,
    VENDORED_MODULE,
    LoaderAnswer,
    NativeBuild,
    _write_dist,
    compile_shared,
    loader_says,
    patch_machine,
    plugin_and_loader_agree,
    real_loader,
    vendored_copy,
    without_loader_vars,
)
from tests.fixtures_reliability import make_unreadable, restore, run_unprivileged

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # ".cpython-311-x86_64-linux-gnu.so"


def verdict(line: str, env: Environment) -> Verdict:
    [result] = checks.evaluate(grammar.parse_lines([line]), env)
    return result


def site_env(site: Path, cache: Path | None = None, **environ: str) -> Environment:
    return Environment(facts={"installed": scan_distributions([str(site)])},
                       environ=without_loader_vars(**environ), settings=Settings(cache_dir=cache))


def agree(env: Environment, distribution: str | None, modules: list[Path | str],
          **answers: LoaderAnswer) -> None:
    """The plugin's facts and the real loader agree on every module, asked in a fresh
    interpreter with the same environment."""
    facts = env.extensions(distribution)
    oracle = {str(module): real_loader(module, env.environ) for module in modules}
    oracle.update(answers)
    assert plugin_and_loader_agree(facts, oracle) == []


# -- the fixtures' wheels -------------------------------------------------------------------


def test_extensions_met_where_the_loader_loads_everything(native_build: NativeBuild) -> None:
    env = site_env(native_build.site)
    result = verdict("extensions nativegood", env)
    assert result.status is Status.MET, result.reason
    assert result.found == "3 modules"
    agree(env, "nativegood", [native_build.site / module for module in (
        "originpkg/_plain.so", "originpkg/_origin.so", "rpathpkg/_rpath.so")])


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
    agree(env, "nativebad", [native_build.ext_new_glibc, native_build.ext_missing])
    assert result.hint is not None and "manylinux_2_99_" in result.hint
    assert "or run on a newer OS" in result.hint


def test_extensions_of_every_distribution_and_the_interpreter(native_build: NativeBuild) -> None:
    env = site_env(native_build.site)
    result = verdict("extensions", env)
    facts = env.extensions(None)
    own = extensions.interpreter_modules(extensions.default_interpreter_dirs(),
                                         importlib.machinery.EXTENSION_SUFFIXES)
    assert own, "this interpreter has a lib-dynload"
    assert facts.interpreter_modules == len(own)
    assert result.status is Status.UNMET
    assert result.found == f"2 of {5 + len(own)} modules broken"
    assert {p.distribution for p in facts.problems} == {"nativebad"}
    agree(env, None, [native_build.ext_new_glibc, native_build.ext_missing, *own[:8]])


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
    env = site_env(site, LD_LIBRARY_PATH=old_first)
    result = verdict("extensions verpkg", env)
    assert result.status is Status.UNMET
    assert (f"ENVGUARD_2.0 not in {native_build.ver_old_dir / 'libenvguard_ver.so.1'} from "
            "LD_LIBRARY_PATH (has up to ENVGUARD_1.0)") in result.reason
    assert result.hint is not None and "LD_LIBRARY_PATH makes the loader pick" in result.hint
    agree(env, "verpkg", [module])
    new_only = site_env(site, LD_LIBRARY_PATH=str(native_build.ver_new_dir))
    assert verdict("extensions verpkg", new_only).status is Status.MET
    agree(new_only, "verpkg", [module])


@pytest.mark.parametrize("place", ["glibc-hwcaps/x86-64-v2", "glibc-hwcaps/x86-64-v3",
                                   "glibc-hwcaps/x86-64-v4", "glibc-hwcaps/x86-64-v9", "tls",
                                   "x86_64"])
def test_an_old_copy_in_a_hardware_capability_subdirectory(
        native_build: NativeBuild, tmp_path: Path, place: str) -> None:
    """LD_LIBRARY_PATH=DIR: the good library in DIR, an old one in DIR/<place>. Where the
    CPU supports <place>, the loader takes the old one and the module fails."""
    site = tmp_path / "site"
    (site / "verpkg").mkdir(parents=True)
    module = site / "verpkg" / "_needs_v2.so"
    shutil.copy(native_build.ext_needs_v2, module)
    _write_dist(site, "verpkg", [module])
    directory = tmp_path / "lib"
    (directory / place).mkdir(parents=True)
    shutil.copy(native_build.ver_new_dir / "libenvguard_ver.so.1", directory)
    shutil.copy(native_build.ver_old_dir / "libenvguard_ver.so.1", directory / place)
    env = site_env(site, LD_LIBRARY_PATH=str(directory))
    agree(env, "verpkg", [module])


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
    agree(env, "chain", [site / "originpkg" / "_origin.so"])


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
    agree(env, "oddpkg", [foreign, truncated])


def _unlisted(site: Path, how: str) -> None:
    """``nativebad`` (two modules the loader cannot load) with its file list taken away,
    made unreadable or over the bound."""
    record = site / "nativebad-1.0.dist-info" / "RECORD"
    if how == "missing":
        record.unlink()
    elif how == "directory":
        record.unlink()
        record.mkdir()
    elif how == "over-the-bound":
        with record.open("ab") as file:
            file.write(b"nativebad/x.py,,\n" * (extensions.MAX_RECORD_BYTES // 16 + 1))
    elif how == "too-many-objects":
        with record.open("ab") as file:
            file.writelines(b"nativebad/_m%d.so,,\n" % index
                            for index in range(extensions.MAX_LISTED_OBJECTS + 1))


UNLISTED = {"missing": ("missing", "no RECORD"), "directory": ("not-regular", "RECORD not a file"),
            "over-the-bound": ("too-large", "RECORD over the bound"),
            "too-many-objects": ("too-large", "RECORD over the bound")}


@pytest.mark.parametrize("how", sorted(UNLISTED))
def test_a_distribution_whose_modules_cannot_be_listed_is_unknown(
        native_build: NativeBuild, tmp_path: Path, how: str) -> None:
    """The modules of a distribution whose RECORD is missing, not a file or over the bound
    are not checked: `extensions NAME` is unknown with the reason (the loader fails on
    both modules: met would be a false green), and `extensions` with no argument lists
    it as a problem of its own kind and claims only what it checked."""
    site = tmp_path / "site"
    shutil.copytree(native_build.site, site, symlinks=True)
    _unlisted(site, how)
    env = site_env(site)
    failure, words = UNLISTED[how]
    [missed] = env.extensions("nativebad").not_scanned
    assert (missed.distribution, missed.failure.value) == ("nativebad", failure)
    for module in ("nativebad/_missing.so", "nativebad/_new_glibc.so"):
        assert not real_loader(site / module, env.environ).loaded

    named = verdict("extensions nativebad", env)
    assert named.status is Status.UNKNOWN, named
    assert named.reason == (f"not scanned: {missed.reason}; whether the extension modules of "
                            "nativebad load is not known")
    assert named.problems == (Problem("not-scanned", f"nativebad: not scanned: {missed.reason}"),)
    assert named.hint is not None and "--force-reinstall --no-deps nativebad" in named.hint

    everything = verdict("extensions", env)
    assert everything.status is Status.MET, everything  # what was scanned loads
    assert everything.found.endswith("modules (1 distribution not scanned)")
    assert "in the distributions scanned" in everything.reason
    assert everything.reason.endswith(f"not scanned: nativebad ({words})")
    assert [problem.kind for problem in everything.problems] == ["not-scanned"]
    assert everything.to_dict()["problems"] == [{"kind": "not-scanned",
                                                 "text": f"nativebad: not scanned: {missed.reason}"}]


def test_unscanned_distributions_are_listed_beside_broken_modules(
        native_build: NativeBuild, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(native_build.site, site, symlinks=True)
    (site / "nativegood-1.0.dist-info" / "RECORD").unlink()
    result = verdict("extensions", site_env(site))
    assert result.status is Status.UNMET
    assert {problem.kind for problem in result.problems} == {
        "missing-library", "missing-version", "not-scanned"}
    assert result.reason.endswith("; not scanned: nativegood (no RECORD)")


def test_a_rehearsal_claims_no_more_than_was_scanned(native_build: NativeBuild,
                                                      tmp_path: Path) -> None:
    """On a rehearsed machine too, a distribution that was not scanned is unknown by name
    and a not-scanned problem of the whole (never silently left out of a met)."""
    site = tmp_path / "site"
    shutil.copytree(native_build.site, site, symlinks=True)
    (site / "nativebad-1.0.dist-info" / "RECORD").unlink()
    env = site_env(site, ENVGUARD_OVERRIDE_GLIBC="2.99")
    named = verdict("extensions nativebad", env)
    assert named.status is Status.UNKNOWN, named
    assert named.reason.startswith("not scanned: ")
    everything = verdict("extensions", env)
    assert everything.overridden
    assert everything.status is Status.MET, everything  # nativegood loads, on 2.99 too
    assert everything.reason.endswith("; not scanned: nativebad (no RECORD)")
    assert [problem.kind for problem in everything.problems] == ["not-scanned"]
    (site / "nativegood-1.0.dist-info" / "RECORD").unlink()
    shutil.copy(native_build.site / "nativebad-1.0.dist-info" / "RECORD",
                site / "nativebad-1.0.dist-info" / "RECORD")
    broken = verdict("extensions", site_env(site, ENVGUARD_OVERRIDE_GLIBC="2.99"))
    assert broken.status is Status.UNMET, broken  # nativebad's missing library
    assert "not-scanned" in {problem.kind for problem in broken.problems}
    assert broken.reason.endswith("; not scanned: nativegood (no RECORD)")


def test_an_unreadable_record_is_unknown(native_build: NativeBuild, tmp_path: Path) -> None:
    """Mode 000 on RECORD, for a user the modes apply to."""
    site = tmp_path / "site"
    shutil.copytree(native_build.site, site, symlinks=True)
    record = site / "nativebad-1.0.dist-info" / "RECORD"
    environ = without_loader_vars(PYTHONPATH=str(Path(__file__).parent.parent))
    make_unreadable(record)
    try:
        result = run_unprivileged(_UNPRIVILEGED_CHECK.format(
            site=str(site), environ=environ).replace("vendpkg", "nativebad"), env=environ)
    finally:
        restore(record)
    assert result.returncode == 0, result.stderr
    status, reason = json.loads(result.stdout)
    assert status == "unknown", reason
    assert "RECORD: PermissionError" in reason


# -- a vendored wheel, broken on purpose (failure 1) ----------------------------------------------


def _break(site: Path, how: str) -> Path:
    """Break the vendored wheel one way; the file broken."""
    target = site / (VENDORED_B if how.endswith("-b") else VENDORED_A)
    data = target.read_bytes()
    if how.startswith("delete"):
        target.unlink()
    elif how.startswith("rename"):
        target.rename(target.with_name(target.name + ".bak"))
    elif how.startswith("truncate"):
        target.write_bytes(data[:len(data) // 2])
    elif how.startswith("text"):
        target.write_text("not a library\n" * 20)
    elif how.startswith("empty"):
        target.write_bytes(b"")
    elif how.startswith("directory"):
        target.unlink()
        target.mkdir()
    return target


BREAKAGES = ["delete-a", "rename-a", "delete-b", "rename-b", "truncate-a", "text-a", "empty-b",
             "directory-a"]


@pytest.mark.parametrize("how", BREAKAGES)
def test_a_broken_vendored_library_breaks_the_module(native_build: NativeBuild, tmp_path: Path,
                                                     how: str) -> None:
    """Each vendored library (the one the module needs, and the one *that* needs, as
    libgfortran needs libquadmath) removed, renamed, cut, replaced: RECORD still lists
    it, the loader cannot load it, and neither may the plugin."""
    site = vendored_copy(native_build, tmp_path)
    intact = site_env(site)
    assert verdict("extensions vendpkg", intact).status is Status.MET
    broken_file = _break(site, how)
    env = site_env(site)
    result = verdict("extensions vendpkg", env)
    assert result.status is Status.UNMET, result.reason
    assert result.found == "1 of 1 module broken"
    assert broken_file.name.split(".so")[0] in result.reason
    assert "--force-reinstall --no-deps vendpkg" in str(result.hint)
    agree(env, "vendpkg", [site / VENDORED_MODULE])


def test_a_cached_entry_never_hides_a_vanished_library(native_build: NativeBuild,
                                                       tmp_path: Path) -> None:
    """The ELF cache of a first session, then a vendored library deleted: the second
    session (everything else from the cache) sees it gone."""
    site = vendored_copy(native_build, tmp_path)
    first = site_env(site, cache=tmp_path / "cache")
    assert verdict("extensions vendpkg", first).status is Status.MET
    (site / VENDORED_B).unlink()
    second = site_env(site, cache=tmp_path / "cache")
    assert verdict("extensions vendpkg", second).status is Status.UNMET
    assert second.extensions("vendpkg").parsed == 0  # nothing re-read: the rest was cached


_UNPRIVILEGED_CHECK = """
    import json
    from pytest_envguard.checks import evaluate
    from pytest_envguard.environment import Environment
    from pytest_envguard.grammar import parse_lines
    from pytest_envguard.probes.distributions import scan_distributions
    env = Environment({{"installed": scan_distributions([{site!r}])}}, environ={environ!r})
    [result] = evaluate(parse_lines(["extensions vendpkg"]), env)
    print(json.dumps([result.status.value, result.reason]))
"""


@pytest.mark.parametrize("what", ["library", "libs-directory"])
def test_an_unreadable_vendored_library(native_build: NativeBuild, tmp_path: Path,
                                        what: str) -> None:
    """Mode 000 on a vendored library, or on the whole *.libs directory, for a user the
    modes apply to: the loader passes over what it cannot open, and fails; so does the
    plugin (run as that user too)."""
    site = vendored_copy(native_build, tmp_path)
    target = site / (VENDORED_A if what == "library" else os.path.dirname(VENDORED_A))
    environ = without_loader_vars(PYTHONPATH=str(Path(__file__).parent.parent))
    make_unreadable(target)
    try:
        result = run_unprivileged(_UNPRIVILEGED_CHECK.format(site=str(site), environ=environ),
                                  env=environ)
        answer = real_loader(site / VENDORED_MODULE, environ, unprivileged=True)
    finally:
        restore(target)
    assert result.returncode == 0, result.stderr
    status, reason = json.loads(result.stdout)
    assert not answer.loaded and "libvend_a" in answer.error
    assert status == "unmet", reason
    assert "libvend_a-1a2b3c4d.so.1 not found" in reason


def test_an_rpath_reaches_the_dependencies_of_dependencies(native_build: NativeBuild,
                                                           tmp_path: Path) -> None:
    """numpy's and scipy's modules carry a DT_RPATH (not RUNPATH) to their *.libs, and their
    vendored libgfortran finds its libquadmath only through it: an RPATH holds for the
    whole chain below the module. RECORD lists only the module here, so nothing else
    can make the library count as loaded."""
    src = native_build.root / "src"
    site = tmp_path / "site"
    libs = site / "rvend.libs"
    vend_b = compile_shared(libs / "librvend_b-11111111.so.2", src / "vend_b.c",
                            "-Wl,-soname,librvend_b-11111111.so.2",
                            f"-Wl,--version-script={src / 'vend_b.map'}")
    vend_a = compile_shared(libs / "librvend_a-22222222.so.1", src / "vend_a.c", str(vend_b),
                            "-Wl,-soname,librvend_a-22222222.so.1")
    module = compile_shared(site / "rvend" / "_core.so", src / "vend_module.c", str(vend_a),
                            "-Wl,--disable-new-dtags", "-Wl,-rpath,$ORIGIN/../rvend.libs",
                            f"-Wl,-rpath-link,{libs}")
    _write_dist(site, "rvend", [module])
    env = site_env(site)
    assert verdict("extensions rvend", env).status is Status.MET
    agree(env, "rvend", [module])
    vend_b.unlink()
    broken = site_env(site)
    assert verdict("extensions rvend", broken).status is Status.UNMET
    agree(broken, "rvend", [module])


def test_ld_preload_objects_are_loaded_first(native_build: NativeBuild, tmp_path: Path) -> None:
    """LD_PRELOAD's objects are loaded before the interpreter's needs: a module whose
    library no search finds loads, matched by soname; a broken preload is ignored."""
    site = tmp_path / "site"
    (site / "userpkg").mkdir(parents=True)
    module = site / "userpkg" / "_user.so"
    shutil.copy(native_build.ext_needs_dep, module)
    _write_dist(site, "userpkg", [module])
    assert verdict("extensions userpkg", site_env(site)).status is Status.UNMET
    preload = site_env(site, LD_PRELOAD=str(native_build.dep_dir / "libenvguard_dep.so.1"))
    assert verdict("extensions userpkg", preload).status is Status.MET
    agree(preload, "userpkg", [module])
    ignored = site_env(site, LD_PRELOAD=str(native_build.garbage_dir / "libenvguard_dep.so.1"))
    assert verdict("extensions userpkg", ignored).status is Status.UNMET
    agree(ignored, "userpkg", [module])


# -- a library another distribution ships ------------------------------------------------------


def test_a_library_a_required_distribution_ships_counts_as_loaded(
        native_build: NativeBuild, tmp_path: Path) -> None:
    """As torchaudio's modules need libtorch.so, which `import torch` loads first (and
    scipy's its libgfortran, which numpy's import has loaded): the loader matches a
    loaded object by soname before it searches. Only a distribution the module's own
    requires counts, and only a file that is there and is that library."""
    site = tmp_path / "site"
    (site / "userpkg").mkdir(parents=True)
    module = site / "userpkg" / "_user.so"
    shutil.copy(native_build.ext_needs_dep, module)
    _write_dist(site, "userpkg", [module], requires=["providerpkg>=1"])
    (site / "providerpkg" / "lib").mkdir(parents=True)
    provided = site / "providerpkg" / "lib" / "libenvguard_dep.so.1"
    shutil.copy(native_build.dep_dir / "libenvguard_dep.so.1", provided)
    _write_dist(site, "providerpkg", [provided])
    assert verdict("extensions userpkg", site_env(site)).status is Status.MET
    # The real loader: the module loads once the provider's library is loaded.
    assert real_loader(module, without_loader_vars(), first=[provided]).loaded
    assert not real_loader(module, without_loader_vars()).loaded
    # A distribution it does not require is not imported first: nothing loads it.
    (site / "userpkg-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: userpkg\nVersion: 1.0\n")
    assert verdict("extensions userpkg", site_env(site)).status is Status.UNMET
    (site / "userpkg-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: userpkg\nVersion: 1.0\nRequires-Dist: providerpkg\n")
    # RECORD is not the file: once the provider's library is gone (or not a library,
    # or another one under that name), nothing loads it, and the module is broken.
    for damage in ("delete", "text", "other-soname"):
        if damage == "delete":
            provided.unlink()
        elif damage == "text":
            provided.write_text("not a library\n" * 10)
        else:
            shutil.copy(native_build.ver_new_dir / "libenvguard_ver.so.1", provided)
        assert verdict("extensions userpkg", site_env(site)).status is Status.UNMET, damage
        if provided.exists():
            assert not real_loader(module, without_loader_vars(), first=[provided]).loaded
            provided.unlink()


# -- the interpreter's own modules (failure 6) ----------------------------------------------------


def test_a_leaking_ld_library_path_breaks_the_interpreters_own_modules(
        native_build: NativeBuild, tmp_path: Path) -> None:
    """An old libcrypto.so.3 first on LD_LIBRARY_PATH (a conda base leaking into a
    venv): _hashlib and _ssl of lib-dynload cannot load. `extensions` names them as
    the interpreter's, names the leak, and agrees with the loader on every one."""
    dynload = extensions.default_interpreter_dirs()
    own = extensions.interpreter_modules(dynload, importlib.machinery.EXTENSION_SUFFIXES)
    hashlib_module = next((path for path in own if os.path.basename(path).startswith("_hashlib")),
                          None)
    if hashlib_module is None or "libcrypto.so.3" not in extensions.ElfCache(None).read(
            hashlib_module).needed:
        pytest.skip("this interpreter's _hashlib is not linked to libcrypto.so.3")
    site = tmp_path / "site"
    site.mkdir()
    env = site_env(site, LD_LIBRARY_PATH=str(native_build.leak_dir))
    result = verdict("extensions", env)
    assert result.status is Status.UNMET
    facts = env.extensions(None)
    broken = {os.path.basename(p.file) for p in facts.problems}
    assert os.path.basename(hashlib_module) in broken
    assert all(p.interpreter for p in facts.problems)
    assert f"python{sys.version_info[0]}.{sys.version_info[1]} lib-dynload/_hashlib" in result.reason
    assert str(native_build.leak_dir / "libcrypto.so.3") in result.reason
    assert result.hint is not None and "LD_LIBRARY_PATH" in result.hint
    agree(env, None, [path for path in own if os.path.basename(path).startswith(
        ("_hashlib", "_ssl", "zlib", "_ctypes", "math"))])
    clean = site_env(site)
    assert verdict("extensions", clean).status is Status.MET


def test_a_library_the_interpreter_needs_breaks_it_whole(native_build: NativeBuild,
                                                        tmp_path: Path) -> None:
    """Text named like a library the interpreter itself needs (libc.so.6, libm.so.6…)
    first on LD_LIBRARY_PATH: it does not start, so nothing imports. `extensions`
    says that first."""
    python = extensions.ElfCache(None).read(os.path.realpath(sys.executable))
    needed = list(python.needed)
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    name = next(need for need in needed if need.startswith("lib"))
    (shadow / name).write_text("not a library\n" * 10)
    site = tmp_path / "site"
    site.mkdir()
    env = site_env(site, LD_LIBRARY_PATH=str(shadow))
    result = verdict("extensions", env)
    assert (result.status, result.found) == (Status.UNMET, "the interpreter does not start")
    assert f"the loader stops at {shadow / name}" in result.reason
    assert "LD_LIBRARY_PATH" in str(result.hint)
    started = subprocess.run([sys.executable, "-c", "pass"], env=env.environ, capture_output=True,
                             text=True, check=False)
    assert started.returncode != 0 and str(shadow / name) in started.stderr


# -- modules this interpreter never imports (failure 7) ---------------------------------------------


def test_a_module_built_for_another_python(native_build: NativeBuild, tmp_path: Path) -> None:
    """A cp312 module in a 3.11 site-packages: the loader would load it, Python never
    imports it, and `import` of its package fails. With the right module beside it,
    it is only dead weight."""
    other = "cpython-312" if sys.version_info[:2] != (3, 12) else "cpython-313"
    site = tmp_path / "site"
    (site / "wrongpy").mkdir(parents=True)
    (site / "wrongpy" / "__init__.py").write_text("from . import _core\n")
    module = site / "wrongpy" / f"_core.{other}-x86_64-linux-gnu.so"
    shutil.copy(native_build.ext_plain, module)
    _write_dist(site, "wrongpy", [module, site / "wrongpy" / "__init__.py"])
    env = site_env(site)
    result = verdict("extensions wrongpy", env)
    assert result.status is Status.UNMET
    [problem] = env.extensions("wrongpy").problems
    assert (problem.kind, problem.file) == ("wrong-python", str(module))
    assert "not a module of this interpreter" in result.reason
    assert "reinstall it with this interpreter" in str(result.hint)
    assert loader_says(module, without_loader_vars()) == (True, "")  # the loader has no say
    imported = subprocess.run([sys.executable, "-c", "import wrongpy"], capture_output=True,
                              text=True, env=without_loader_vars(PYTHONPATH=str(site)), check=False)
    assert imported.returncode != 0 and "_core" in imported.stderr
    # The module for this interpreter beside it: the other one is never imported.
    shutil.copy(native_build.ext_plain, site / "wrongpy" / f"_core{SUFFIX}")
    (site / "wrongpy-1.0.dist-info").rename(site / "old.dist-info")
    _write_dist(site, "wrongpy", [module, site / "wrongpy" / f"_core{SUFFIX}"])
    shutil.rmtree(site / "old.dist-info")
    assert verdict("extensions wrongpy", site_env(site)).status is Status.MET


# -- editable installs and source trees (failure 8) -------------------------------------------------


def _project(root: Path, native_build: NativeBuild, broken: bool) -> Path:
    """A source tree with a built extension module, as `pip install -e` leaves it."""
    package = root / "src" / "edpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(native_build.ext_missing if broken else native_build.ext_plain,
                package / f"_speed{SUFFIX}")
    return package


def _editable_dist(site: Path, *, finder: Path | None = None, path: Path | None = None) -> None:
    meta = site / "edpkg-1.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: edpkg\nVersion: 1.0\n")
    (meta / "direct_url.json").write_text(json.dumps(
        {"url": "file:///src/edpkg", "dir_info": {"editable": True}}))
    files = []
    if finder is not None:
        (site / "__editable___edpkg_1_0_finder.py").write_text(
            f"MAPPING: dict[str, str] = {{'edpkg': {str(finder)!r}}}\n"
            "NAMESPACES: dict[str, list[str]] = {}\n")
        (site / "__editable__.edpkg-1.0.pth").write_text(
            "import __editable___edpkg_1_0_finder; __editable___edpkg_1_0_finder.install()\n")
        files += ["__editable___edpkg_1_0_finder.py", "__editable__.edpkg-1.0.pth"]
    if path is not None:
        (site / "__editable__.edpkg-1.0.pth").write_text(f"{path}\n")
        files.append("__editable__.edpkg-1.0.pth")
    (meta / "RECORD").write_text("".join(f"{name},,\n" for name in files)
                                 + "edpkg-1.0.dist-info/RECORD,,\n")


@pytest.mark.parametrize("layout", ["finder", "pth-path"])
def test_an_editable_install(native_build: NativeBuild, tmp_path: Path, layout: str) -> None:
    """PEP 660 editable installs (setuptools' finder mapping, or a path in a .pth): RECORD
    lists no module; the modules below the import paths are checked."""
    for broken in (False, True):
        root = tmp_path / str(broken)
        package = _project(root, native_build, broken)
        site = root / "site"
        site.mkdir()
        if layout == "finder":
            _editable_dist(site, finder=package)
        else:
            _editable_dist(site, path=package.parent)
        env = site_env(site)
        result = verdict("extensions edpkg", env)
        assert result.found.endswith("1 module" if not broken else "1 of 1 module broken"), \
            result.found
        assert result.status is (Status.UNMET if broken else Status.MET)
        agree(env, "edpkg", [package / f"_speed{SUFFIX}"])


def test_a_source_tree_egg_info(native_build: NativeBuild, tmp_path: Path) -> None:
    """`setup.py develop`: the .egg-info lies in the source tree (on sys.path), with no
    file list; its top-level packages beside it are checked."""
    package = _project(tmp_path, native_build, broken=True)
    tree = package.parent
    egg = tree / "edpkg.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: edpkg\nVersion: 1.0\n")
    (egg / "top_level.txt").write_text("edpkg\n")
    (egg / "SOURCES.txt").write_text("setup.py\nedpkg/__init__.py\n")
    env = site_env(tree)
    result = verdict("extensions edpkg", env)
    assert (result.status, result.found) == (Status.UNMET, "1 of 1 module broken")
    agree(env, "edpkg", [package / f"_speed{SUFFIX}"])


def test_egg_info_file_lists_are_read(native_build: NativeBuild, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(native_build.site / "nativebad", site / "nativebad")
    egg = site / "nativebad-1.0-py3.11.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.2\nName: nativebad\nVersion: 1.0\n",
                                  encoding="utf-8")
    (egg / "installed-files.txt").write_text(
        "../nativebad/_new_glibc.so\n../nativebad/_missing.so\nPKG-INFO\n", encoding="utf-8")
    env = site_env(site)
    result = verdict("extensions nativebad", env)
    assert (result.status, result.found) == (Status.UNMET, "2 of 2 modules broken")
    agree(env, "nativebad", [site / "nativebad" / "_new_glibc.so", site / "nativebad" / "_missing.so"])


# -- the cache and real wheels --------------------------------------------------------------------


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
    agree(env, "psutil", list(extensions.extension_files(dist) or []))


def test_version_family() -> None:
    assert extensions.version_family("GLIBCXX_3.4.30") == ("GLIBCXX", (3, 4, 30))
    assert extensions.version_family("GLIBC_PRIVATE") is None
    assert extensions.highest_version(["GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.9", "GLIBC_PRIVATE"],
                                      "GLIBC_2.99") == "GLIBC_2.17"
    assert extensions.highest_version(["CXXABI_1.3"], "GLIBCXX_3.4.30") is None


def test_foreign_module_names() -> None:
    suffixes = [".cpython-311-x86_64-linux-gnu.so", ".abi3.so", ".so"]
    assert extensions.foreign_module("/p/_x.cpython-312-x86_64-linux-gnu.so", suffixes)
    assert extensions.foreign_module("/p/_x.pypy310-pp73-x86_64-linux-gnu.so", suffixes)
    assert not extensions.foreign_module("/p/_x.cpython-311-x86_64-linux-gnu.so", suffixes)
    assert not extensions.foreign_module("/p/_x.abi3.so", suffixes)
    assert not extensions.foreign_module("/p/_x.so", suffixes)
    assert not extensions.foreign_module("/p/_x.cpython-312-x86_64-linux-gnu.so", suffixes,
                                         ["/p/_x.abi3.so"])
