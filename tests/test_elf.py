"""probes/elf.py: the dynamic section of real, stripped, corrupt and foreign ELF files."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_envguard.probes import elf
from pytest_envguard.probes.elf import ElfCache, ElfFacts, VersionNeed, read_elf, read_header
from tests.fixtures_native import EM_AARCH64, NativeBuild, patch_machine, strip_section_headers

SYSTEM_LIBRARIES = ["libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1"]


def _system_library(name: str) -> str:
    from pytest_envguard.probes.loader import read_ld_so_cache

    paths = read_ld_so_cache().entries.get(name, ())
    for path in paths:
        if read_header(path).abi == read_header(os.path.realpath(sys.executable)).abi:
            return path
    raise AssertionError(f"{name} is not in ld.so.cache")


def _pyelftools_view(path: str) -> dict[str, object]:
    """The same facts through pyelftools' full object model (the slow, trusted way)."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection

    with open(path, "rb") as stream:
        elffile = ELFFile(stream)
        needed: list[str] = []
        soname = None
        rpath: list[str] = []
        runpath: list[str] = []
        needs: list[tuple[str, str, bool]] = []
        defs: list[str] = []
        for section in elffile.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif tag.entry.d_tag == "DT_SONAME":
                        soname = tag.soname
                    elif tag.entry.d_tag == "DT_RPATH":
                        rpath += [p for p in tag.rpath.split(":") if p]
                    elif tag.entry.d_tag == "DT_RUNPATH":
                        runpath += [p for p in tag.runpath.split(":") if p]
            elif isinstance(section, GNUVerNeedSection):
                for verneed, auxes in section.iter_versions():
                    for aux in auxes:
                        needs.append((verneed.name, aux.name, bool(aux["vna_flags"] & 2)))
            elif isinstance(section, GNUVerDefSection):
                for verdef, auxes in section.iter_versions():
                    if not verdef["vd_flags"] & 1:
                        defs.append(next(iter(auxes)).name)
        return {"machine": elffile["e_machine"], "soname": soname, "needed": needed,
                "rpath": rpath, "runpath": runpath, "needs": needs,
                "defs": list(dict.fromkeys(defs))}


def _our_view(facts: ElfFacts) -> dict[str, object]:
    return {"machine": facts.machine, "soname": facts.soname, "needed": list(facts.needed),
            "rpath": list(facts.rpath), "runpath": list(facts.runpath),
            "needs": [(n.file, n.version, n.weak) for n in facts.version_needs],
            "defs": list(facts.version_defs)}


@pytest.mark.parametrize("name", SYSTEM_LIBRARIES)
def test_system_libraries_read_as_pyelftools_reads_them(name: str) -> None:
    path = _system_library(name)
    facts = read_elf(path)
    assert facts.ok, facts.reason
    assert _our_view(facts) == _pyelftools_view(path)


def test_built_objects_read_as_pyelftools_reads_them(native_build: NativeBuild) -> None:
    paths = [native_build.ext_new_glibc, native_build.ext_origin, native_build.ext_rpath,
             native_build.ext_needs_v2, native_build.ver_new_dir / "libenvguard_ver.so.1",
             native_build.stub_libc_dir / "libc.so.6", Path(os.path.realpath(sys.executable))]
    for path in paths:
        assert _our_view(read_elf(str(path))) == _pyelftools_view(str(path)), path


def test_what_the_loader_needs(native_build: NativeBuild) -> None:
    glibc = read_elf(str(native_build.ext_new_glibc))
    assert glibc.needed == ("libc.so.6",)
    assert glibc.version_needs == (VersionNeed("libc.so.6", "GLIBC_2.99"),)
    interpreter = read_header(os.path.realpath(sys.executable))
    assert (glibc.elf_class, glibc.machine, glibc.elf_type) == (
        interpreter.elf_class, interpreter.machine, "ET_DYN")

    stub = read_elf(str(native_build.stub_libc_dir / "libc.so.6"))
    assert stub.soname == "libc.so.6"
    assert stub.version_defs == ("GLIBC_2.99",)

    new = read_elf(str(native_build.ver_new_dir / "libenvguard_ver.so.1"))
    assert new.version_defs == ("ENVGUARD_1.0", "ENVGUARD_2.0")
    uses = read_elf(str(native_build.ext_needs_v2))
    assert VersionNeed("libenvguard_ver.so.1", "ENVGUARD_2.0") in uses.version_needs

    origin = read_elf(str(native_build.ext_origin))
    assert origin.runpath == ("$ORIGIN/../originpkg.libs",) and origin.rpath == ()
    rpath = read_elf(str(native_build.ext_rpath))
    assert rpath.rpath == ("$ORIGIN/../rpathpkg.libs",) and rpath.runpath == ()
    assert "libenvguard_dep.so.1" in origin.needed


def test_no_section_headers_falls_back_to_program_headers(
        native_build: NativeBuild, tmp_path: Path) -> None:
    for source in (native_build.ext_new_glibc, native_build.ext_origin,
                   native_build.ver_new_dir / "libenvguard_ver.so.1"):
        stripped = strip_section_headers(source, tmp_path / source.name)
        assert _our_view(read_elf(str(stripped))) == _our_view(read_elf(str(source)))


def test_other_machine_is_read_with_its_machine(native_build: NativeBuild, tmp_path: Path) -> None:
    foreign = patch_machine(native_build.ext_plain, tmp_path / "foreign.so", EM_AARCH64)
    facts = read_header(str(foreign))
    assert facts.machine == "EM_AARCH64"
    assert facts.describe_abi() == "ELF64 AARCH64"
    assert read_elf(str(foreign)).machine == "EM_AARCH64"


def test_a_32_bit_header_is_read(tmp_path: Path) -> None:
    # A minimal ELF32 i386 shared object with no sections and no segments.
    header = b"\x7fELF\x01\x01\x01" + bytes(9) + struct.pack(
        "<HHIIIIIHHHHHH", 3, 3, 1, 0, 0, 0, 0, 52, 32, 0, 40, 0, 0)
    path = tmp_path / "lib32.so"
    path.write_bytes(header)
    facts = read_elf(str(path))
    assert facts.ok, facts.reason
    assert (facts.elf_class, facts.machine, facts.needed) == (32, "EM_386", ())


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "not an ELF file"),
    (b"#!/bin/sh\necho hi\n", "not an ELF file (bad magic)"),
    (b"\x7fELF\x03\x01" + bytes(58), "corrupt ELF header"),
    (b"\x7fELF\x02\x01\x01" + bytes(20), "truncated ELF file"),
])
def test_bad_files_give_a_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.so"
    path.write_bytes(content)
    facts = read_elf(str(path))
    assert not facts.ok
    assert reason in (facts.reason or "")
    assert facts.path == str(path)


def test_truncated_and_unreadable(native_build: NativeBuild, tmp_path: Path) -> None:
    truncated = read_elf(str(native_build.truncated))
    assert truncated.reason is not None and "truncated" in truncated.reason
    assert str(read_elf(str(tmp_path / "missing.so")).reason).startswith("FileNotFoundError")
    assert str(read_elf(str(tmp_path)).reason).startswith("IsADirectoryError")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corruption_never_raises(native_build: NativeBuild, tmp_path: Path, data: st.DataObject) -> None:
    original = bytearray(native_build.ext_needs_v2.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(original)))
    path = tmp_path / "mutated.so"
    path.write_bytes(bytes(original[:cut]))
    facts = read_elf(str(path))
    assert isinstance(facts, ElfFacts)
    assert facts.ok or facts.reason


def test_constants_match_pyelftools() -> None:
    from elftools.elf.constants import VER_FLAGS
    from elftools.elf.enums import ENUM_D_TAG_COMMON, ENUM_SH_TYPE_BASE

    assert ENUM_D_TAG_COMMON["DT_NEEDED"] == elf.DT_NEEDED
    assert ENUM_D_TAG_COMMON["DT_SONAME"] == elf.DT_SONAME
    assert ENUM_D_TAG_COMMON["DT_RPATH"] == elf.DT_RPATH
    assert ENUM_D_TAG_COMMON["DT_RUNPATH"] == elf.DT_RUNPATH
    assert ENUM_D_TAG_COMMON["DT_VERNEED"] == elf.DT_VERNEED
    assert ENUM_D_TAG_COMMON["DT_VERDEF"] == elf.DT_VERDEF
    assert ENUM_SH_TYPE_BASE["SHT_DYNAMIC"] == elf.SHT_DYNAMIC
    assert ENUM_SH_TYPE_BASE["SHT_GNU_verneed"] == elf.SHT_GNU_VERNEED
    assert ENUM_SH_TYPE_BASE["SHT_GNU_verdef"] == elf.SHT_GNU_VERDEF
    assert (VER_FLAGS.VER_FLG_BASE, VER_FLAGS.VER_FLG_WEAK) == (elf.VER_FLG_BASE, elf.VER_FLG_WEAK)


def test_facts_round_trip_through_dicts(native_build: NativeBuild) -> None:
    facts = read_elf(str(native_build.ext_needs_v2))
    assert ElfFacts.from_dict(json.loads(json.dumps(facts.to_dict()))) == facts


# -- the cache -----------------------------------------------------------------------------


def test_cache_reads_each_unchanged_file_once(native_build: NativeBuild, tmp_path: Path) -> None:
    library = tmp_path / "lib.so"
    library.write_bytes(native_build.ext_needs_v2.read_bytes())
    first = ElfCache(tmp_path / "cache")
    facts = first.read(str(library))
    assert (first.misses, first.hits) == (1, 0)
    first.save()
    assert (tmp_path / "cache" / elf.CACHE_FILE).is_file()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [elf.CACHE_FILE]

    second = ElfCache(tmp_path / "cache")
    assert second.read(str(library)) == facts
    assert (second.misses, second.hits) == (0, 1)

    # A changed file (other size, other mtime) is read again.
    library.write_bytes(native_build.ext_plain.read_bytes())
    os.utime(library, ns=(1, 1))
    third = ElfCache(tmp_path / "cache")
    assert third.read(str(library)).needed == read_elf(str(native_build.ext_plain)).needed
    assert third.misses == 1


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"entries": {"/x": [1, 2, {"bad": 1}]}}',
                                     '{"entries": 7}'])
def test_a_corrupt_cache_file_is_ignored_and_replaced(
        native_build: NativeBuild, tmp_path: Path, content: str) -> None:
    (tmp_path / elf.CACHE_FILE).write_text(content, encoding="utf-8")
    cache = ElfCache(tmp_path)
    facts = cache.read(str(native_build.ext_plain))
    assert facts.ok and cache.misses == 1
    cache.save()
    data = json.loads((tmp_path / elf.CACHE_FILE).read_text(encoding="utf-8"))
    assert str(native_build.ext_plain) in data["entries"]


def test_a_wrong_entry_shape_is_reparsed(native_build: NativeBuild, tmp_path: Path) -> None:
    path = str(native_build.ext_plain)
    stat = os.stat(path)
    entries = {path: [stat.st_size, stat.st_mtime_ns, {"no": "path"}]}
    (tmp_path / elf.CACHE_FILE).write_text(json.dumps({"entries": entries}), encoding="utf-8")
    cache = ElfCache(tmp_path)
    assert cache.read(path) == read_elf(path)
    assert cache.misses == 1


def test_memory_only_cache_writes_nothing(native_build: NativeBuild, tmp_path: Path) -> None:
    cache = ElfCache(None)
    first = cache.read(str(native_build.ext_plain))
    assert cache.read(str(native_build.ext_plain)) is first
    cache.save()
    assert (cache.misses, cache.hits) == (1, 0)
    assert cache.file is None
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_cache_dir_costs_nothing_but_time(native_build: NativeBuild, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    cache = ElfCache(blocker / "cache")  # a directory below a file: cannot be made
    assert cache.read(str(native_build.ext_plain)).ok
    cache.save()
    assert not (blocker / "cache").exists()
