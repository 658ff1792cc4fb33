"""probes/loader.py: the search order, ld.so.cache, find_library — each against the real loader."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_envguard.probes.elf import read_elf
from pytest_envguard.probes.loader import (
    LdCacheFacts,
    Resolver,
    default_dirs,
    expand_tokens,
    find_library,
    library_version,
    parse_ld_so_cache,
    read_ld_so_cache,
    split_library_path,
)
from tests.fixtures_native import (
    NativeBuild,
    build_ld_so_cache,
    real_loader,
    without_loader_vars,
)

DEP = "libenvguard_dep.so.1"
EMPTY_CACHE = LdCacheFacts("none")


def _resolve(path: Path, environ: dict[str, str], name: str = DEP):
    resolver = Resolver(environ)
    return resolver.resolve(name, read_elf(str(path)))


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


def test_the_system_cache_agrees_with_the_loader() -> None:
    facts = read_ld_so_cache()
    assert facts.reason is None
    libc = [path for path in facts.entries["libc.so.6"] if os.path.exists(path)]
    assert libc
    answer = real_loader("libc.so.6", without_loader_vars())
    assert answer.loaded
    loaded = {os.path.realpath(path) for path in answer.mapped_named(os.path.basename(
        os.path.realpath(libc[0])))}
    assert {os.path.realpath(path) for path in libc} & loaded


def test_unreadable_cache_is_a_reason(tmp_path: Path) -> None:
    assert "FileNotFoundError" in str(read_ld_so_cache(str(tmp_path / "none")).reason)
    (tmp_path / "bad").write_bytes(b"nope")
    assert "unknown magic" in str(read_ld_so_cache(str(tmp_path / "bad")).reason)


# -- the search order, checked against the real loader -------------------------------------------


def test_runpath_origin(native_build: NativeBuild) -> None:
    environ = without_loader_vars()
    found = _resolve(native_build.ext_origin, environ)
    assert found.path == str(native_build.site / "originpkg.libs" / DEP)
    assert found.source == "RUNPATH of _origin.so"
    answer = real_loader(native_build.ext_origin, environ)
    assert answer.loaded and answer.mapped_named(DEP) == [found.path]


def test_rpath_origin_beats_ld_library_path(native_build: NativeBuild) -> None:
    environ = without_loader_vars(LD_LIBRARY_PATH=str(native_build.dep_dir))
    found = _resolve(native_build.ext_rpath, environ)
    assert found.path == str(native_build.site / "rpathpkg.libs" / DEP)
    assert found.source == "RPATH of _rpath.so"
    assert real_loader(native_build.ext_rpath, environ).mapped_named(DEP) == [found.path]


def test_ld_library_path_beats_runpath(native_build: NativeBuild) -> None:
    environ = without_loader_vars(LD_LIBRARY_PATH=str(native_build.dep_dir))
    found = _resolve(native_build.ext_origin, environ)
    assert found.path == str(native_build.dep_dir / DEP)
    assert found.source == "LD_LIBRARY_PATH"
    assert real_loader(native_build.ext_origin, environ).mapped_named(DEP) == [found.path]


def test_not_found_anywhere(native_build: NativeBuild) -> None:
    environ = without_loader_vars()
    found = _resolve(native_build.ext_needs_dep, environ)
    assert found.path is None
    assert "cannot open shared object file" in str(found.reason)
    answer = real_loader(native_build.ext_needs_dep, environ)
    assert not answer.loaded and f"{DEP}: cannot open shared object file" in answer.error


def test_other_machine_is_skipped_and_the_search_goes_on(native_build: NativeBuild) -> None:
    environ = without_loader_vars(
        LD_LIBRARY_PATH=f"{native_build.foreign_dir}:{native_build.dep_dir}")
    found = _resolve(native_build.ext_needs_dep, environ)
    assert found.path == str(native_build.dep_dir / DEP)
    assert found.skipped == (f"{native_build.foreign_dir / DEP} (ELF64 AARCH64)",)
    assert real_loader(native_build.ext_needs_dep, environ).mapped_named(DEP) == [found.path]


def test_only_other_machine_copies_is_not_found(native_build: NativeBuild) -> None:
    environ = without_loader_vars(LD_LIBRARY_PATH=str(native_build.foreign_dir))
    found = _resolve(native_build.ext_needs_dep, environ)
    assert found.path is None and found.skipped
    assert not real_loader(native_build.ext_needs_dep, environ).loaded


def test_a_non_elf_file_stops_the_search(native_build: NativeBuild) -> None:
    environ = without_loader_vars(
        LD_LIBRARY_PATH=f"{native_build.garbage_dir}:{native_build.dep_dir}")
    found = _resolve(native_build.ext_needs_dep, environ)
    assert found.path is None
    assert str(native_build.garbage_dir / DEP) in str(found.reason)
    answer = real_loader(native_build.ext_needs_dep, environ)
    assert not answer.loaded and "invalid ELF header" in answer.error


def test_cache_entries_are_searched_after_runpath(native_build: NativeBuild) -> None:
    cache = LdCacheFacts("test", {DEP: (str(native_build.foreign_dir / DEP),
                                        str(native_build.dep_dir / DEP))})
    resolver = Resolver(without_loader_vars(), ld_cache=cache)
    found = resolver.resolve(DEP, read_elf(str(native_build.ext_needs_dep)))
    assert (found.path, found.source) == (str(native_build.dep_dir / DEP), "ld.so.cache")
    assert found.skipped


def test_system_libraries_come_from_the_cache_or_default_dirs(native_build: NativeBuild) -> None:
    resolver = Resolver(without_loader_vars())
    found = resolver.resolve("libc.so.6", read_elf(str(native_build.ext_plain)))
    assert found.source in ("ld.so.cache", "default dirs")
    assert found.path is not None
    without_cache = Resolver(without_loader_vars(), ld_cache=EMPTY_CACHE)
    fallback = without_cache.resolve("libc.so.6", read_elf(str(native_build.ext_plain)))
    assert fallback.source == "default dirs"
    assert os.path.realpath(str(fallback.path)) == os.path.realpath(found.path)


def test_search_dirs_for_the_rpath_chain(native_build: NativeBuild) -> None:
    resolver = Resolver(without_loader_vars(LD_LIBRARY_PATH="/l1::/l2"))
    module = read_elf(str(native_build.ext_rpath))
    dirs = resolver.search_dirs(module)
    assert dirs == [(str(native_build.site / "rpathpkg.libs"),
                     "RPATH of _rpath.so"), ("/l1", "LD_LIBRARY_PATH"),
                    (".", "LD_LIBRARY_PATH"), ("/l2", "LD_LIBRARY_PATH")]
    # With a RUNPATH, neither its own nor its loaders' RPATHs apply.
    origin = read_elf(str(native_build.ext_origin))
    assert [source for _, source in resolver.search_dirs(origin, (module,))] == [
        "LD_LIBRARY_PATH"] * 3 + ["RUNPATH of _origin.so"]


# -- small parts --------------------------------------------------------------------------------


def test_expand_tokens() -> None:
    assert expand_tokens("$ORIGIN/../lib", "/a/b", "x86_64") == "/a/b/../lib"
    assert expand_tokens("${ORIGIN}/x:$PLATFORM", "/o", "x86_64") == "/o/x:x86_64"
    assert expand_tokens("/usr/$LIB", "/o", "x86_64") == "/usr/lib64"
    assert expand_tokens("$ORIGINAL", "/o", "x86_64") == "$ORIGINAL"


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


def test_find_library_libc_is_where_the_loader_maps_it() -> None:
    facts = find_library("libc.so.6", without_loader_vars())
    assert facts.path is not None and facts.source in ("ld.so.cache", "default dirs")
    assert facts.version == "6"
    mapped = real_loader("libc.so.6", without_loader_vars()).mapped
    assert os.path.realpath(facts.path) in {os.path.realpath(path) for path in mapped}


def test_find_library_short_name(native_build: NativeBuild) -> None:
    environ = without_loader_vars(LD_LIBRARY_PATH=f"{native_build.ver_old_dir}:"
                                                  f"{native_build.ver_new_dir}")
    facts = find_library("envguard_ver", environ)
    assert facts.path == str(native_build.ver_old_dir / "libenvguard_ver.so.1")
    assert (facts.source, facts.soname, facts.version) == ("LD_LIBRARY_PATH",
                                                            "libenvguard_ver.so.1", "1")
    # The copy it shadows is visible too.
    assert [c.path for c in facts.candidates] == [
        str(native_build.ver_old_dir / "libenvguard_ver.so.1"),
        str(native_build.ver_new_dir / "libenvguard_ver.so.1")]
    assert find_library("libenvguard_ver", environ).path == facts.path
    answer = real_loader("libenvguard_ver.so.1", environ)
    assert answer.mapped_named("libenvguard_ver.so.1") == [facts.path]


def test_find_library_not_found_names_where_it_looked() -> None:
    facts = find_library("envguard_nowhere", without_loader_vars(), site_dirs=[])
    assert facts.path is None
    assert "libenvguard_nowhere.so*" in str(facts.reason)
    assert "LD_LIBRARY_PATH" in str(facts.reason)
    assert not real_loader("libenvguard_nowhere.so", without_loader_vars()).loaded


def test_find_library_skips_other_machines(native_build: NativeBuild) -> None:
    facts = find_library(DEP, without_loader_vars(LD_LIBRARY_PATH=str(native_build.foreign_dir)),
                         site_dirs=[])
    assert facts.path is None
    assert "AARCH64" in str(facts.reason)


def test_find_library_in_site_packages_nvidia(native_build: NativeBuild, tmp_path: Path) -> None:
    lib = tmp_path / "site" / "nvidia" / "cudnn" / "lib"
    lib.mkdir(parents=True)
    shutil.copy(native_build.dep_dir / DEP, lib / "libcudnn.so.9.1.0")
    (lib / "libcudnn.so.9").symlink_to("libcudnn.so.9.1.0")
    (lib / "libcudnn_ops.so.9").symlink_to("libcudnn.so.9.1.0")  # another library: not it
    facts = find_library("cudnn", without_loader_vars(), site_dirs=[str(tmp_path / "site")])
    assert facts.path == str(lib / "libcudnn.so.9.1.0") or facts.path == str(lib / "libcudnn.so.9")
    assert (facts.source, facts.version) == ("site-packages nvidia/*/lib", "9.1.0")
    assert len(facts.candidates) == 1


def test_find_library_in_the_conda_prefix(native_build: NativeBuild, tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    shutil.copy(native_build.dep_dir / DEP, tmp_path / "lib" / "libenvguard_conda.so.2")
    facts = find_library("envguard_conda", without_loader_vars(CONDA_PREFIX=str(tmp_path)),
                         site_dirs=[])
    assert (facts.source, facts.version) == ("conda prefix", "2")
    # Through LD_LIBRARY_PATH into the prefix, both are named.
    both = find_library("envguard_conda", without_loader_vars(
        CONDA_PREFIX=str(tmp_path), LD_LIBRARY_PATH=str(tmp_path / "lib")), site_dirs=[])
    assert both.source == "LD_LIBRARY_PATH, conda prefix"


def test_find_library_unreadable_interpreter(tmp_path: Path) -> None:
    facts = find_library("c", {}, executable=str(tmp_path / "python"))
    assert facts.path is None and "cannot read the interpreter" in str(facts.reason)


def test_the_interpreters_abi() -> None:
    elf_class, little, machine = read_elf(os.path.realpath(sys.executable)).abi
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
