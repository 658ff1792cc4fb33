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

from pytest_envguard.probes import Failure, elf
from pytest_envguard.probes.elf import ElfCache, ElfFacts, VersionNeed, read_elf
from tests.fixtures_native import EM_AARCH64, NativeBuild, patch_machine, strip_section_headers

SYSTEM_LIBRARIES = ["libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1"]


def _system_library(name: str) -> str:
    from pytest_envguard.probes.ldcache import read_ld_so_cache

    paths = read_ld_so_cache().entries.get(name, ())
    for path in paths:
        if read_elf(path).abi == read_elf(os.path.realpath(sys.executable)).abi:
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
    interpreter = read_elf(os.path.realpath(sys.executable))
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
    facts = read_elf(str(foreign))
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


@pytest.mark.parametrize(("content", "failure", "reason"), [
    (b"", Failure.NOT_ELF, "not an ELF file (file too short)"),
    (b"#!/bin/sh\necho hi\n", Failure.NOT_ELF, "not an ELF file (invalid ELF header)"),
    (b"\x7fELF\x03\x01" + bytes(58), Failure.CORRUPT, "corrupt ELF header"),
    (b"\x7fELF\x02\x01\x01" + bytes(20), Failure.NOT_ELF, "file too short"),
])
def test_bad_files_give_a_kind_and_a_reason(tmp_path: Path, content: bytes, failure: Failure,
                                            reason: str) -> None:
    path = tmp_path / "bad.so"
    path.write_bytes(content)
    facts = read_elf(str(path))
    assert (facts.ok, facts.failure) == (False, failure)
    assert reason in (facts.reason or "")
    assert facts.path == str(path)


def test_truncated_and_unreadable(native_build: NativeBuild, tmp_path: Path) -> None:
    truncated = read_elf(str(native_build.truncated))
    assert truncated.failure is Failure.CORRUPT
    assert truncated.reason is not None and "truncated" in truncated.reason
    missing = read_elf(str(tmp_path / "missing.so"))
    assert missing.failure is Failure.MISSING and "FileNotFoundError" in str(missing.reason)
    directory = read_elf(str(tmp_path))
    assert directory.failure is Failure.NOT_REGULAR and "IsADirectoryError" in str(directory.reason)
    os.mkfifo(tmp_path / "fifo.so")
    assert read_elf(str(tmp_path / "fifo.so")).failure is Failure.NOT_REGULAR  # and no hang


def looping_version_needs(path: Path, records: int) -> Path:
    """An ELF64 file whose ``.gnu.version_r`` holds ``records`` 16-byte records that
    read as verneed and vernaux entries alike, each chain running to the end: walked
    naively, every record's auxiliary chain visits every later record (quadratic)."""
    strtab_offset, strtab_size = 64 + 4 * 64, 32
    dynamic_offset = strtab_offset + strtab_size
    verneed_offset = dynamic_offset + 16
    # vn_version, vn_cnt, vn_file, vn_aux (0: the record is its own first aux), vn_next
    chunk = struct.pack("<HHIII", 1, 0xFFFF, 0, 0, 16)
    region = chunk * (records - 1) + struct.pack("<HHIII", 1, 0xFFFF, 0, 0, 0)
    header = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack(
        "<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, 64, 0, 64, 56, 0, 64, 4, 0)
    sections = [
        bytes(64),
        struct.pack("<IIQQQQIIQQ", 1, 3, 0, 0, strtab_offset, strtab_size, 0, 0, 1, 0),
        struct.pack("<IIQQQQIIQQ", 2, 6, 0, 0, dynamic_offset, 16, 1, 0, 8, 16),
        struct.pack("<IIQQQQIIQQ", 3, 0x6FFFFFFE, 0, 0, verneed_offset, len(region), 1,
                    records, 4, 0),
    ]
    path.write_bytes(header + b"".join(sections) + bytes(strtab_size) + bytes(16) + region)
    return path


def test_a_looping_version_chain_is_bounded(tmp_path: Path) -> None:
    import time

    # 5,000 records: 12.5 million steps for a naive walk, a fraction of a second here.
    path = looping_version_needs(tmp_path / "crafted.so", 5000)
    started = time.perf_counter()
    facts = read_elf(str(path))
    assert time.perf_counter() - started < 5
    assert facts.failure is Failure.TOO_LARGE
    assert "more than 65536 records" in str(facts.reason)
    # A small file of the same shape is read in full: the budget is not the limit there.
    small = read_elf(str(looping_version_needs(tmp_path / "small.so", 50)))
    assert small.ok and len(small.version_needs) == 50 * 51 // 2


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
    # Never raises; what it cannot read has a kind, and a one-line reason.
    assert facts.ok is (facts.failure is None)
    if not facts.ok:
        assert isinstance(facts.failure, Failure)
        assert facts.reason and "\n" not in facts.reason


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


def test_machine_names_are_pyelftools_names() -> None:
    """Every e_machine the reader names, it names as pyelftools does (the names the loader
    model's tables and the reports use); a machine the table lacks keeps its number."""
    from elftools.elf.enums import ENUM_E_MACHINE, ENUM_E_TYPE

    for number, name in elf.MACHINE_NAMES.items():
        assert ENUM_E_MACHINE[name] == number, name
    for number, name in elf.TYPE_NAMES.items():
        assert ENUM_E_TYPE[name] == number, name
    assert elf.machine_name(0x9026) == "EM_36902"  # Linux/Alpha: pyelftools has no name either
    assert elf.machine_name(0xBEEF) == "EM_48879"
    assert elf.type_name(0xFE01) == "ET_65025"


def test_an_unlisted_machine_reads_as_pyelftools_reads_it(
        native_build: NativeBuild, tmp_path: Path) -> None:
    """The header fields of a file for a machine the table does not list: the same class,
    type, machine number and dynamic section as pyelftools reports."""
    for number in (183, 0x9026, 0xBEEF):
        path = patch_machine(native_build.ext_needs_v2, tmp_path / f"machine-{number}.so", number)
        facts = read_elf(str(path))
        ours = _our_view(facts)
        theirs = _pyelftools_view(str(path))
        if isinstance(theirs["machine"], int):  # pyelftools gives the bare number
            theirs["machine"] = f"EM_{theirs['machine']}"
        assert ours == theirs
        assert facts.header is not None and facts.header.e_machine == number


def test_the_header_fields_equal_pyelftools_header(native_build: NativeBuild) -> None:
    from elftools.elf.elffile import ELFFile

    for path in (native_build.ext_needs_v2, Path(os.path.realpath(sys.executable))):
        with path.open("rb") as stream:
            header = ELFFile(stream).header
        reader_fields = elf.parse_header(path.read_bytes()[:64], 64 if header["e_ident"]["EI_CLASS"]
                                         == "ELFCLASS64" else 32, "<")
        for name, value in reader_fields.items():
            theirs = header[name]
            if name == "e_machine":
                assert elf.machine_name(value) == theirs
            elif name == "e_type":
                assert elf.type_name(value) == theirs
            elif name == "e_version":
                assert value == 1 and theirs == "EV_CURRENT"
            else:
                assert value == theirs, name


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
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        elf.CACHE_FILE, elf.CACHE_FILE + ".lock"]  # no temporary left

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
    ElfCache(tmp_path).disk.write({path: [*elf.file_stamp(os.stat(path)), {"no": "path"}]})
    cache = ElfCache(tmp_path)
    assert cache.read(path) == read_elf(path)
    assert cache.misses == 1


def test_workers_saving_at_once_keep_each_others_entries(native_build: NativeBuild,
                                                         tmp_path: Path) -> None:
    # Two xdist workers read the (empty) cache, each parses another file, both save.
    first, second = ElfCache(tmp_path), ElfCache(tmp_path)
    first.read(str(native_build.ext_plain))
    second.read(str(native_build.ext_needs_v2))
    first.save()
    second.save()
    third = ElfCache(tmp_path)
    third.read(str(native_build.ext_plain))
    third.read(str(native_build.ext_needs_v2))
    assert (third.hits, third.misses) == (2, 0)


def test_memory_only_cache_writes_nothing(native_build: NativeBuild, tmp_path: Path) -> None:
    cache = ElfCache(None)
    first = cache.read(str(native_build.ext_plain))
    assert cache.read(str(native_build.ext_plain)) is first
    cache.save()
    assert (cache.misses, cache.hits) == (1, 0)
    assert cache.disk.path is None
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_cache_dir_costs_nothing_but_time(native_build: NativeBuild, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    cache = ElfCache(blocker / "cache")  # a directory below a file: cannot be made
    assert cache.read(str(native_build.ext_plain)).ok
    cache.save()
    assert not (blocker / "cache").exists()
