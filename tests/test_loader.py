"""probes/loader.py: the search order, ld.so.cache, the loader's own configuration,
find_library — each scenario built with cc and judged by the real loader too."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_envguard.probes import Failure
from pytest_envguard.probes.elf import read_elf, read_interpreter
from pytest_envguard.probes.ldcache import (
    LdCacheFacts,
    parse_ld_so_cache,
    parse_ld_so_cache_entries,
    read_ld_so_cache,
)
from pytest_envguard.probes.loader import (
    REACH_DLOPEN,
    REACH_LOADED,
    REACH_PACKAGE_RPATH,
    SOURCE_NVIDIA,
    LoaderConfig,
    Resolver,
    VersionSource,
    default_dirs,
    expand_tokens,
    find_library,
    library_version,
    parse_loader_debug,
    probe_loader_config,
    split_library_path,
)
from tests.fixtures_native import (
    EM_AARCH64,
    NativeBuild,
    build_ld_so_cache,
    patch_class,
    patch_machine,
    real_loader,
    same_file,
    without_loader_vars,
)
from tests.fixtures_reliability import make_unreadable, restore, run_unprivileged

DEP = "libenvguard_dep.so.1"
VER = "libenvguard_ver.so.1"
EMPTY_CACHE = LdCacheFacts("none")
PYTHON = os.path.realpath(sys.executable)


def _resolver(environ: dict[str, str], **kw: object) -> Resolver:
    return Resolver(environ, main=read_elf(PYTHON), **kw)  # type: ignore[arg-type]


def _resolve(path: Path, environ: dict[str, str], name: str = DEP):
    return _resolver(environ).resolve(name, read_elf(str(path)))


def _loader_picks(answer, name: str) -> str | None:
    """The file the real loader loaded for ``name`` (None: it failed or loaded none)."""
    found = answer.mapped_named(name)
    return found[0] if answer.loaded and found else None


# -- ld.so.cache -------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), [(False, True), (True, True), (True, False)])
def test_cache_formats(old: bool, new: bool) -> None:
    entries = [("libfoo.so.1", "/opt/a/libfoo.so.1"), ("libfoo.so.1", "/opt/b/libfoo.so.1"),
               ("libbar.so.2", "/usr/lib/libbar.so.2")]
    parsed = parse_ld_so_cache(build_ld_so_cache(entries, old=old, new=new))
    assert parsed == {"libfoo.so.1": ("/opt/a/libfoo.so.1", "/opt/b/libfoo.so.1"),
                      "libbar.so.2": ("/usr/lib/libbar.so.2",)}


@pytest.mark.parametrize("data", [b"", b"garbage" * 10, b"glibc-ld.so.cache1.1" + b"\xff" * 28,
                                  build_ld_so_cache([("libx.so.1", "/x")])[:60],
                                  b"ld.so-1.7.0\x00\xff\xff\xff\x00"])
def test_bad_caches_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"ld\.so\.cache"):
        parse_ld_so_cache(data)


X86_64 = (64, True, "EM_X86_64")


def _cache(entries: list[tuple[str, str, int, int]], hwcaps: list[str]) -> LdCacheFacts:
    records = parse_ld_so_cache_entries(build_ld_so_cache(entries, hwcaps=hwcaps))
    return LdCacheFacts("test", {key: tuple(e.path for e in found) for key, found in records.items()},
                        records=records)


def test_the_cache_lookup_is_glibcs() -> None:
    """_dl_load_cache_lookup (elf/dl-cache.c): entries of other ABIs' flags are passed
    over; a glibc-hwcaps entry for an active subdirectory wins by priority; an entry
    with the default flags ends the search; legacy hwcap entries are not taken."""
    v2, v3 = (1 << 62) | 0, (1 << 62) | 1
    cache = _cache([("libx.so.1", "/h/v3/libx.so.1", 0x0303, v3),
                    ("libx.so.1", "/h/v2/libx.so.1", 0x0303, v2),
                    ("libx.so.1", "/lib32/libx.so.1", 0x0003, 0),
                    ("libx.so.1", "/tls/libx.so.1", 0x0303, 1 << 63),
                    ("libx.so.1", "/lib64/libx.so.1", 0x0303, 0),
                    ("libx.so.1", "/later/libx.so.1", 0x0303, 0)], ["x86-64-v2", "x86-64-v3"])
    assert cache.lookup("libx.so.1", X86_64, ("x86-64-v4", "x86-64-v3", "x86-64-v2")) == \
        "/h/v3/libx.so.1"
    assert cache.lookup("libx.so.1", X86_64, ("x86-64-v2",)) == "/h/v2/libx.so.1"
    assert cache.lookup("libx.so.1", X86_64, ()) == "/lib64/libx.so.1"
    # A 32-bit loader takes the libc6 entry, never the x86-64 ones.
    assert cache.lookup("libx.so.1", (32, True, "EM_386"), ()) == "/lib32/libx.so.1"
    assert cache.lookup("libnone.so", X86_64, ()) is None


def test_the_system_cache_agrees_with_the_loader() -> None:
    facts = read_ld_so_cache()
    assert facts.reason is None
    resolver = _resolver(without_loader_vars())
    python = read_elf(PYTHON)
    for name in ("libc.so.6", "libm.so.6", "libstdc++.so.6", "libz.so.1"):
        cached = facts.lookup(name, python.abi, resolver.config.hwcaps)
        answer = real_loader(name, without_loader_vars())
        if cached is None:
            continue
        assert answer.loaded and same_file(answer.path, cached), (name, answer, cached)


def test_unreadable_cache_is_a_reason(tmp_path: Path) -> None:
    assert "FileNotFoundError" in str(read_ld_so_cache(str(tmp_path / "none")).reason)
    (tmp_path / "bad").write_bytes(b"nope")
    assert "unknown magic" in str(read_ld_so_cache(str(tmp_path / "bad")).reason)


# -- the loader's own configuration --------------------------------------------------------


def _loader_help() -> str:
    rtld = read_interpreter(PYTHON)
    assert rtld
    return subprocess.run([rtld, "--help"], capture_output=True, text=True, check=False).stdout


def test_the_config_is_the_loaders_own() -> None:
    """What LD_DEBUG=libs shows agrees with what `ld.so --help` prints (glibc >= 2.33):
    the glibc-hwcaps subdirectories it searches, in priority order, and its system
    directories; the directory itself is always tried last."""
    config = probe_loader_config(PYTHON, without_loader_vars())
    assert config.reason is None, config.reason
    assert config.subdirs[-1] == "" and config.system_dirs and config.platform and config.lib
    text = _loader_help()
    if "Subdirectories of glibc-hwcaps directories" in text:
        section = text.split("Subdirectories of glibc-hwcaps directories", 1)[1]
        searched = re.findall(r"^\s+(\S+) \(supported, searched\)", section.split("\n\n")[0],
                              re.MULTILINE)
        assert list(config.hwcaps) == searched
        system = re.findall(r"^\s+(\S+) \(system search path\)", text, re.MULTILINE)
        assert list(config.system_dirs) == [entry.rstrip("/") for entry in system]
    if "Legacy HWCAP subdirectories" in text:
        legacy = text.split("Legacy HWCAP subdirectories", 1)[1].split("\n\n")[0]
        for name in re.findall(r"^\s+(\S+) \(.*searched\)", legacy, re.MULTILINE):
            assert any(name in subdir.split("/") for subdir in config.subdirs), name


def test_the_config_follows_glibc_tunables() -> None:
    """GLIBC_TUNABLES of the environment changes which levels the loader searches."""
    mask = without_loader_vars(GLIBC_TUNABLES="glibc.cpu.hwcaps=-AVX2_Usable,-AVX2")
    masked = probe_loader_config(PYTHON, mask)
    plain = probe_loader_config(PYTHON, without_loader_vars())
    if "x86-64-v3" in plain.hwcaps:
        assert "x86-64-v3" not in masked.hwcaps and "x86-64-v4" not in masked.hwcaps


def test_parse_loader_debug_output() -> None:
    probe = "/proc/self/envguard-probe"
    subdirs = ["glibc-hwcaps/x86-64-v3", "tls/x86_64", "tls", "x86_64"]

    def group(base: str) -> list[str]:
        return [f"{base}/{subdir}" for subdir in subdirs] + [base]

    env = group(probe) + group(f"{probe}/p/x86_64") + group(f"{probe}/l/lib64")
    system = group("/lib64") + group("/usr/lib64")
    output = (f"   42:\t search path={':'.join(env)}\t\t(LD_LIBRARY_PATH)\n"
              f"   42:\t search cache=/etc/ld.so.cache\n"
              f"   42:\t search path={':'.join(system)}\t\t(system search path)\n")
    config = parse_loader_debug(output, "/lib64/ld-linux-x86-64.so.2")
    assert config == LoaderConfig("/lib64/ld-linux-x86-64.so.2", (*subdirs, ""),
                                  ("/lib64", "/usr/lib64"), "x86_64", "lib64")
    assert config.hwcaps == ("x86-64-v3",)
    assert parse_loader_debug("no search here\n") is None


def test_an_interpreter_without_a_loader_is_assumed_with_a_reason(tmp_path: Path) -> None:
    static = tmp_path / "python"
    static.write_bytes(b"\x7fELF" + bytes(60))
    config = probe_loader_config(str(static), {})
    assert config.subdirs == ("",) and config.reason and "PT_INTERP" in config.reason


# -- the search order, checked against the real loader -------------------------------------------


def test_runpath_origin(native_build: NativeBuild) -> None:
    environ = without_loader_vars()
    found = _resolve(native_build.ext_origin, environ)
    assert found.path == str(native_build.site / "originpkg.libs" / DEP)
    assert found.source == "RUNPATH of _origin.so"
    assert same_file(_loader_picks(real_loader(native_build.ext_origin, environ), DEP), found.path)


def test_rpath_origin_beats_ld_library_path(native_build: NativeBuild) -> None:
    environ = without_loader_vars(LD_LIBRARY_PATH=str(native_build.dep_dir))
    found = _resolve(native_build.ext_rpath, environ)
    assert found.path == str(native_build.site / "rpathpkg.libs" / DEP)
    assert found.source == "RPATH of _rpath.so"
    assert same_file(_loader_picks(real_loader(native_build.ext_rpath, environ), DEP), found.path)


def test_ld_library_path_beats_runpath(native_build: NativeBuild) -> None:
    environ = without_loader_vars(LD_LIBRARY_PATH=str(native_build.dep_dir))
    found = _resolve(native_build.ext_origin, environ)
    assert found.path == str(native_build.dep_dir / DEP)
    assert found.source == "LD_LIBRARY_PATH"
    assert same_file(_loader_picks(real_loader(native_build.ext_origin, environ), DEP), found.path)


def test_not_found_anywhere(native_build: NativeBuild) -> None:
    environ = without_loader_vars()
    found = _resolve(native_build.ext_needs_dep, environ)
    assert found.path is None and found.failure is Failure.MISSING
    assert "cannot open shared object file" in str(found.reason)
    answer = real_loader(native_build.ext_needs_dep, environ)
    assert not answer.loaded and f"{DEP}: cannot open shared object file" in answer.error


@pytest.mark.parametrize("make", ["other-machine", "other-class"])
def test_another_abi_is_skipped_and_the_search_goes_on(
        native_build: NativeBuild, tmp_path: Path, make: str) -> None:
    good = native_build.dep_dir / DEP
    odd = (patch_machine(good, tmp_path / "odd" / DEP, EM_AARCH64) if make == "other-machine"
           else patch_class(good, tmp_path / "odd" / DEP))
    environ = without_loader_vars(LD_LIBRARY_PATH=f"{odd.parent}:{native_build.dep_dir}")
    found = _resolve(native_build.ext_needs_dep, environ)
    assert found.path == str(good)
    assert found.skipped and str(odd) in found.skipped[0]
    assert same_file(_loader_picks(real_loader(native_build.ext_needs_dep, environ), DEP), found.path)
    # Only such copies: not found, for both.
    alone = without_loader_vars(LD_LIBRARY_PATH=str(odd.parent))
    assert _resolve(native_build.ext_needs_dep, alone).failure is Failure.MISSING
    answer = real_loader(native_build.ext_needs_dep, alone)
    assert not answer.loaded


def _bad_files(tmp_path: Path, good: Path) -> dict[str, Path]:
    """A directory, an empty file, a short one, text, a cut copy, a wrong byte order,
    an ET_REL: each named like the library, each in a directory of its own."""
    data = good.read_bytes()
    made: dict[str, Path] = {}
    contents = {"empty": b"", "short": data[:40], "text": b"not a library\n" * 10,
                "cut": data[:len(data) // 2], "big-endian": data[:5] + b"\x02" + data[6:],
                "relocatable": data[:16] + b"\x01" + data[17:],
                "osabi": data[:7] + b"\x05" + data[8:]}
    for name, content in contents.items():
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / good.name).write_bytes(content)
        made[name] = tmp_path / name / good.name
    (tmp_path / "directory" / good.name).mkdir(parents=True)
    made["directory"] = tmp_path / "directory" / good.name
    return made


def test_a_file_the_loader_cannot_use_stops_the_search(native_build: NativeBuild,
                                                      tmp_path: Path) -> None:
    """open_verify: anything with the name that is not a usable ELF object of another
    class or machine ends the search with an error, though a good copy comes later."""
    good = native_build.dep_dir / DEP
    for kind, bad in _bad_files(tmp_path, good).items():
        environ = without_loader_vars(LD_LIBRARY_PATH=f"{bad.parent}:{good.parent}")
        found = _resolve(native_build.ext_needs_dep, environ)
        answer = real_loader(native_build.ext_needs_dep, environ)
        assert not answer.loaded, kind
        assert found.path is None and found.stopped_at == str(bad), (kind, found)
        assert found.failure not in (None, Failure.MISSING), kind
        if answer.signal is None:  # a cut copy kills the process; the others say why
            assert answer.error_file() == str(bad), (kind, answer.error)
            assert answer.error.split(": ", 1)[1] in str(found.reason), (kind, answer.error, found)


def test_a_symlink_loop_ends_that_list_only(native_build: NativeBuild, tmp_path: Path) -> None:
    """An open() error other than ENOENT/EACCES (here ELOOP) ends the current list:
    the rest of LD_LIBRARY_PATH is not searched, the RUNPATH still is."""
    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / DEP).symlink_to(loop / DEP)
    environ = without_loader_vars(LD_LIBRARY_PATH=f"{loop}:{native_build.dep_dir}")
    plain = _resolve(native_build.ext_needs_dep, environ)
    assert plain.failure is Failure.MISSING
    assert not real_loader(native_build.ext_needs_dep, environ).loaded
    through_runpath = _resolve(native_build.ext_origin, environ)
    assert through_runpath.source == "RUNPATH of _origin.so"
    assert same_file(_loader_picks(real_loader(native_build.ext_origin, environ), DEP), through_runpath.path)


def test_an_unreadable_copy_is_passed_over_as_the_loader_does(native_build: NativeBuild,
                                                              tmp_path: Path) -> None:
    """As a user for whom modes hold: a mode-000 copy (EACCES) is passed over, and so is
    a mode-000 directory; the good copy after them is loaded."""
    locked = tmp_path / "locked"
    shutil.copytree(native_build.dep_dir, locked)
    closed = tmp_path / "closed"
    shutil.copytree(native_build.dep_dir, closed)
    environ = without_loader_vars(
        LD_LIBRARY_PATH=f"{locked}:{closed}:{native_build.dep_dir}",
        PYTHONPATH=str(Path(__file__).parent.parent))
    make_unreadable(locked / DEP)
    make_unreadable(closed)
    try:
        code = f"""
            import json
            from pytest_envguard.probes.elf import read_elf
            from pytest_envguard.probes.loader import Resolver
            found = Resolver({environ!r}, main=read_elf({PYTHON!r})).resolve(
                {DEP!r}, read_elf({str(native_build.ext_needs_dep)!r}))
            print(json.dumps([found.path, list(found.skipped)]))
        """
        result = run_unprivileged(code, env=environ)
        assert result.returncode == 0, result.stderr
        path, skipped = json.loads(result.stdout)
        answer = real_loader(native_build.ext_needs_dep, environ, unprivileged=True)
    finally:
        restore(locked / DEP, closed)
    assert path == str(native_build.dep_dir / DEP)
    assert any(str(locked / DEP) in item for item in skipped)
    assert same_file(_loader_picks(answer, DEP), path)


HWCAPS_PLACES = ["glibc-hwcaps/x86-64-v2", "glibc-hwcaps/x86-64-v3", "glibc-hwcaps/x86-64-v4",
                 "glibc-hwcaps/x86-64-v9", "glibc-hwcaps/power10", "tls", "x86_64", "haswell",
                 "avx512_1", "tls/x86_64", "i686"]


@pytest.mark.parametrize("place", HWCAPS_PLACES)
def test_hardware_capability_subdirectories(native_build: NativeBuild, tmp_path: Path,
                                            place: str) -> None:
    """LD_LIBRARY_PATH=DIR with a good DIR/libenvguard_ver.so.1 and an old copy in
    DIR/<place>: the loader takes the old one where its CPU supports <place>, and
    ignores it elsewhere; the plugin names the same file, and `library` too."""
    directory = tmp_path / "lib"
    (directory / place).mkdir(parents=True)
    shutil.copy(native_build.ver_new_dir / VER, directory / VER)
    shutil.copy(native_build.ver_old_dir / VER, directory / place / VER)
    environ = without_loader_vars(LD_LIBRARY_PATH=str(directory))
    found = _resolve(native_build.ext_needs_v2, environ, VER)
    answer = real_loader(native_build.ext_needs_v2, environ)
    by_name = real_loader(VER, environ)
    assert same_file(by_name.path, found.path), (found, by_name)
    if found.path == str(directory / place / VER):
        assert not answer.loaded and "ENVGUARD_2.0" in answer.error  # the old copy lacks it
    else:
        assert found.path == str(directory / VER) and answer.loaded
    assert same_file(find_library(VER, environ, site_dirs=[]).path, by_name.path)


def test_system_libraries_come_from_the_cache_or_the_system_dirs(native_build: NativeBuild) -> None:
    found = _resolve(native_build.ext_plain, without_loader_vars(), "libc.so.6")
    assert found.source in ("ld.so.cache", "system dirs")
    assert found.path is not None
    fallback = _resolver(without_loader_vars(), ld_cache=EMPTY_CACHE).resolve(
        "libc.so.6", read_elf(str(native_build.ext_plain)))
    assert fallback.source == "system dirs"
    assert same_file(fallback.path, found.path)


def test_search_dirs_for_the_rpath_chain(native_build: NativeBuild) -> None:
    resolver = _resolver(without_loader_vars(LD_LIBRARY_PATH="/l1::/l2"))
    module = read_elf(str(native_build.ext_rpath))
    dirs = resolver.search_dirs(module)
    assert dirs[:4] == [(str(native_build.site / "rpathpkg.libs"), "RPATH of _rpath.so"),
                        ("/l1", "LD_LIBRARY_PATH"), (".", "LD_LIBRARY_PATH"),
                        ("/l2", "LD_LIBRARY_PATH")]
    # With a RUNPATH, neither its own nor its loaders' RPATHs apply.
    origin = read_elf(str(native_build.ext_origin))
    assert [source for _, source in resolver.search_dirs(origin, (module,))] == [
        "LD_LIBRARY_PATH"] * 3 + ["RUNPATH of _origin.so"]


# -- small parts --------------------------------------------------------------------------------


def test_expand_tokens() -> None:
    assert expand_tokens("$ORIGIN/../lib", "/a/b", "x86_64") == "/a/b/../lib"
    assert expand_tokens("${ORIGIN}/x:$PLATFORM", "/o", "haswell") == "/o/x:haswell"
    assert expand_tokens("/usr/$LIB", "/o", "x86_64", "lib/x86_64-linux-gnu") == \
        "/usr/lib/x86_64-linux-gnu"
    assert expand_tokens("$ORIGINAL", "/o", "x86_64") == "$ORIGINAL"
    assert expand_tokens("$ORIGIN_X/a", "/o", "x86_64") == "$ORIGIN_X/a"
    assert expand_tokens("/p/$PLATFORM", "/o", "") is None  # a token with no value drops it


def test_split_library_path() -> None:
    assert split_library_path("") == []
    assert split_library_path("/a:/b;/c") == ["/a", "/b", "/c"]
    assert split_library_path(":/a") == [".", "/a"]


@pytest.mark.parametrize(("name", "real", "version"), [
    ("libssl.so.3", None, "3"),
    ("libcudart.so.12", "/x/libcudart.so.12.4.127", "12.4.127"),
    ("libfoo-1.2.so", None, "1.2"),
    ("libfoo.so", None, None),
])
def test_library_version(name: str, real: str | None, version: str | None) -> None:
    assert library_version(name, real) == version


def test_default_dirs() -> None:
    assert default_dirs((64, True, "EM_X86_64"))[:2] == ("/lib/x86_64-linux-gnu",
                                                         "/usr/lib/x86_64-linux-gnu")
    assert "/lib64" not in default_dirs((32, True, "EM_386"))


# -- find_library ------------------------------------------------------------------------------


def test_find_library_libc_is_what_the_loader_returns() -> None:
    facts = find_library("libc.so.6", without_loader_vars())
    assert facts.path is not None and facts.version == "6"
    assert same_file(facts.path, real_loader("libc.so.6", without_loader_vars()).path)


def test_the_interpreters_own_libraries_are_the_loaded_ones() -> None:
    """`library libpython3.11.so.1.0` is the copy the running interpreter maps (pyenv's),
    not another in ld.so.cache: dlopen returns what is loaded."""
    python = read_elf(PYTHON)
    assert python.needed
    maps = Path("/proc/self/maps").read_text()
    for name in python.needed:
        facts = find_library(name, without_loader_vars())
        answer = real_loader(name, without_loader_vars())
        assert same_file(facts.path, answer.path), (name, facts.path, answer.path)
        assert facts.reach == REACH_LOADED and facts.source == "already loaded"
        assert os.path.realpath(str(facts.path)) in maps


def test_find_library_short_name(native_build: NativeBuild) -> None:
    environ = without_loader_vars(LD_LIBRARY_PATH=f"{native_build.ver_old_dir}:"
                                                  f"{native_build.ver_new_dir}")
    facts = find_library("envguard_ver", environ)
    assert facts.path == str(native_build.ver_old_dir / VER)
    assert (facts.source, facts.soname, facts.version, facts.version_source) == (
        "LD_LIBRARY_PATH", VER, "1", VersionSource.SONAME)
    assert [c.path for c in facts.candidates] == [str(native_build.ver_old_dir / VER),
                                                  str(native_build.ver_new_dir / VER)]
    assert find_library("libenvguard_ver", environ).path == facts.path
    assert same_file(real_loader(VER, environ).path, facts.path)
    assert facts.reach == REACH_DLOPEN


def test_find_library_not_found_names_where_it_looked() -> None:
    facts = find_library("envguard_nowhere", without_loader_vars(), site_dirs=[])
    assert facts.path is None and facts.failure is Failure.MISSING
    assert "libenvguard_nowhere.so*" in str(facts.reason)
    assert "LD_LIBRARY_PATH" in str(facts.reason)
    assert not real_loader("libenvguard_nowhere.so", without_loader_vars()).loaded


def test_find_library_skips_other_machines(native_build: NativeBuild, tmp_path: Path) -> None:
    patch_machine(native_build.dep_dir / DEP, tmp_path / DEP, EM_AARCH64)
    environ = without_loader_vars(LD_LIBRARY_PATH=str(tmp_path))
    facts = find_library(DEP, environ, site_dirs=[])
    assert facts.path is None and facts.failure is Failure.MISSING
    assert "e_machine 183" in str(facts.reason)
    assert not real_loader(DEP, environ).loaded


def test_find_library_stops_where_the_loader_stops(native_build: NativeBuild,
                                                   tmp_path: Path) -> None:
    """A directory, an empty or a text file with the name in LD_LIBRARY_PATH: dlopen
    fails there even though the good copy comes later; `library` says so."""
    good = native_build.dep_dir / DEP
    for kind in ("directory", "empty", "text"):
        bad = _bad_files(tmp_path / kind, good)[kind]
        environ = without_loader_vars(LD_LIBRARY_PATH=f"{bad.parent}:{good.parent}")
        facts = find_library(DEP, environ, site_dirs=[])
        answer = real_loader(DEP, environ)
        assert not answer.loaded and answer.error_file() == str(bad)
        assert facts.path is None and facts.loader is not None
        assert facts.loader.stopped_at == str(bad), kind
        assert [c.path for c in facts.candidates] == [str(good)]


def test_find_library_in_site_packages_nvidia(native_build: NativeBuild, tmp_path: Path) -> None:
    """Only in site-packages nvidia/*/lib: found where the CUDA wheels' users' RPATH
    finds it, but a plain dlopen of the name finds nothing — both are said."""
    site = tmp_path / "site"
    lib = site / "nvidia" / "cudnn" / "lib"
    lib.mkdir(parents=True)
    shutil.copy(native_build.dep_dir / DEP, lib / "libcudnn.so.9")
    (lib / "libcudnn_ops.so.9").symlink_to("libcudnn.so.9")  # another library: not it
    (site / "nvidia_cudnn_cu12-9.1.0.70.dist-info").mkdir()
    facts = find_library("cudnn", without_loader_vars(), site_dirs=[str(site)])
    assert facts.path == str(lib / "libcudnn.so.9")
    assert (facts.source, facts.version, facts.version_source) == (
        SOURCE_NVIDIA, "9.1.0.70", VersionSource.WHEEL)
    assert len(facts.candidates) == 1
    assert facts.reach == REACH_PACKAGE_RPATH
    assert facts.loader is not None and facts.loader.failure is Failure.MISSING
    assert not real_loader("libcudnn.so.9", without_loader_vars()).loaded
    assert real_loader(lib / "libcudnn.so.9", without_loader_vars()).loaded
    assert facts.to_dict()["reach"] == "package-rpath"


def test_find_library_in_the_conda_prefix(native_build: NativeBuild, tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    shutil.copy(native_build.dep_dir / DEP, tmp_path / "lib" / "libenvguard_conda.so.2")
    facts = find_library("envguard_conda", without_loader_vars(CONDA_PREFIX=str(tmp_path)),
                         site_dirs=[])
    assert (facts.source, facts.version) == ("conda prefix", "2")
    assert facts.reach == REACH_PACKAGE_RPATH
    # Through LD_LIBRARY_PATH into the prefix, both are named, and dlopen finds it.
    both = find_library("envguard_conda", without_loader_vars(
        CONDA_PREFIX=str(tmp_path), LD_LIBRARY_PATH=str(tmp_path / "lib")), site_dirs=[])
    assert both.source == "LD_LIBRARY_PATH, conda prefix"
    assert both.reach == REACH_DLOPEN


def test_versions_finer_than_the_soname(native_build: NativeBuild, tmp_path: Path) -> None:
    """A version string (OpenSSL's), a wheel's version, a real file name; else only
    the soname's major, marked as such."""
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(native_build.version_string_lib, lib / "libcrypto.so.3")
    shutil.copy(native_build.version_string_lib, lib / "libenvguard_text.so.3")
    environ = without_loader_vars(LD_LIBRARY_PATH=str(lib))
    crypto = find_library("libcrypto.so.3", environ, site_dirs=[])
    assert (crypto.version, crypto.version_source) == ("3.0.19", VersionSource.STRING)
    plain = find_library("libenvguard_text.so.3", environ, site_dirs=[])
    assert (plain.version, plain.version_source) == ("3", VersionSource.SONAME)
    (lib / "libenvguard_named.so.2.7.1").write_bytes(native_build.version_string_lib.read_bytes())
    (lib / "libenvguard_named.so.2").symlink_to("libenvguard_named.so.2.7.1")
    named = find_library("libenvguard_named.so.2", environ, site_dirs=[])
    assert (named.version, named.version_source) == ("2.7.1", VersionSource.FILE_NAME)


def test_find_library_unreadable_interpreter(tmp_path: Path) -> None:
    facts = find_library("c", {}, executable=str(tmp_path / "python"))
    assert facts.path is None and "cannot read the interpreter" in str(facts.reason)
    assert facts.loader is None


def test_the_interpreters_abi() -> None:
    elf_class, little, machine = read_elf(PYTHON).abi
    assert elf_class == (64 if sys.maxsize > 2**32 else 32)
    assert little == (sys.byteorder == "little")
    assert machine is not None and machine.startswith("EM_")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([b"", b"glibc-ld.so.cache1.1", b"ld.so-1.7.0\x00"]))
def test_cache_parser_only_raises_value_error(data: bytes, prefix: bytes) -> None:
    try:
        parsed = parse_ld_so_cache(prefix + data)
    except ValueError:
        return
    assert all(isinstance(key, str) and isinstance(paths, tuple) for key, paths in parsed.items())
