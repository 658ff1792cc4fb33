"""What the dynamic loader reads from a shared object, and nothing more.

:func:`read_elf` returns the SONAME, ``DT_NEEDED``, ``DT_RPATH``/``DT_RUNPATH``,
the version needs (``.gnu.version_r``) and definitions (``.gnu.version_d``)
and the class/machine of one ELF file. It reads the ELF header, the
section header table in one read, and then only the bytes of ``.dynamic``, its
string table and the two version sections — never the whole file (some CUDA
libraries are larger than a gigabyte), and never every section object, which
is what makes a naive pyelftools walk slow. It is written with :mod:`struct`
alone, so checking a suite's native needs imports no pyelftools into the
process that runs it (pyelftools' own suite must import its checkout); the
tests compare every fact with pyelftools' full object model.
Files without section headers fall back to the program headers, as the
loader itself does.

Every walk is bounded: a file gets a budget of :data:`ENTRY_BUDGET` records
(dynamic entries, version needs and definitions and their auxiliary entries,
together), so a crafted file whose version chains loop back on themselves
costs milliseconds, not minutes; past the budget its facts are
``Failure.TOO_LARGE``.

:class:`ElfCache` keeps these facts on disk keyed by path, size, mtime, ctime,
inode and device, so a second session re-reads nothing unchanged.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

from pytest_envguard.probes import Facts, Failure
from pytest_envguard.probes._diskcache import DiskCache
from pytest_envguard.probes._io import explain, failure_of, open_regular

# Constants from the ELF gABI / GNU extensions; pyelftools' enums hold the same
# values (ENUM_D_TAG_COMMON, ENUM_SH_TYPE_BASE, VER_FLAGS), checked by a test.
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ = 0, 1, 5, 10
DT_SONAME, DT_RPATH, DT_RUNPATH = 14, 15, 29
DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM = 0x6FFFFFFC, 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF
DT_FLAGS_1, DF_1_NODEFLIB = 0x6FFFFFFB, 0x800
SHT_DYNAMIC, SHT_GNU_VERDEF, SHT_GNU_VERNEED = 6, 0x6FFFFFFD, 0x6FFFFFFE
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
VER_FLG_BASE, VER_FLG_WEAK = 1, 2

#: e_machine → its name, for the machines glibc's loader runs on (the Linux ports of
#: glibc). Source: the ELF gABI's e_machine table as glibc's <elf.h> spells it; every
#: name here is also pyelftools' (ENUM_E_MACHINE), checked by a test. Two Linux ports
#: are left out because the two spellings differ (Alpha's 0x9026, which pyelftools
#: lacks, and 195, glibc's EM_ARCV2, pyelftools' EM_ARC_COMPACT2): those, like any
#: machine not listed, read as ``EM_<number>``.
MACHINE_NAMES: dict[int, str] = {
    0: "EM_NONE", 2: "EM_SPARC", 3: "EM_386", 4: "EM_68K", 8: "EM_MIPS",
    10: "EM_MIPS_RS3_LE", 15: "EM_PARISC", 18: "EM_SPARC32PLUS", 20: "EM_PPC",
    21: "EM_PPC64", 22: "EM_S390", 40: "EM_ARM", 42: "EM_SH", 43: "EM_SPARCV9",
    50: "EM_IA_64", 62: "EM_X86_64", 92: "EM_OPENRISC", 93: "EM_ARC_COMPACT",
    113: "EM_ALTERA_NIOS2", 183: "EM_AARCH64", 189: "EM_MICROBLAZE", 243: "EM_RISCV",
    252: "EM_CSKY", 258: "EM_LOONGARCH",
}
#: e_type → its name (the gABI's ET_* values, as <elf.h> and pyelftools spell them).
TYPE_NAMES: dict[int, str] = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
#: How much of the start of a file one read takes: the ELF header and, in practice,
#: the program header table right behind it.
_HEAD = 4096

#: Upper bounds that keep a corrupt header from making us read or loop forever.
_MAX_SECTIONS = 1 << 16
_MAX_SECTION_BYTES = 64 << 20
_WHOLE_STRTAB = 256 << 10  # smaller string tables are read at once, larger ones lazily
#: Records one file may make us read, all tables together. Real libraries stay far
#: below (libc.so.6: ~40 version definitions; libtorch_cuda.so: ~3,000 dynamic
#: entries and needs); a crafted file with looping chains would otherwise cost
#: its entry count squared.
ENTRY_BUDGET = 1 << 16


class ElfFormatError(ValueError):
    """The file is not a well-formed ELF shared object; ``failure`` says how."""

    def __init__(self, message: str, failure: Failure = Failure.CORRUPT) -> None:
        super().__init__(message)
        self.failure = failure


class ElfHeader(NamedTuple):
    """The raw fields of the ELF header that ``open_verify`` in glibc's loader looks at,
    kept so that the loader's rules (which files it skips, which stop it with an
    error) can be applied to any file, even one this reader cannot parse."""

    size: int  # of the file, in bytes
    magic_ok: int  # 1 when the file starts with \x7fELF
    ei_class: int
    ei_data: int
    ei_version: int
    ei_osabi: int
    ei_abiversion: int
    padding_zero: int  # 1 when e_ident[9:16] is all zero
    e_type: int
    e_machine: int
    e_version: int
    e_phentsize: int
    e_phnum: int
    phdrs_in_file: int  # 1 when the program header table lies inside the file


@dataclass(frozen=True)
class VersionNeed(Facts):
    """One symbol version an object needs from a library: (``libc.so.6``, ``GLIBC_2.34``)."""

    file: str  # the soname the version is needed from
    version: str
    weak: bool = False  # a weak need only warns when missing


@dataclass(frozen=True)
class ElfFacts(Facts):
    """The dynamic section of one ELF file, as the loader sees it.

    ``failure`` and ``reason`` are set (and the other fields are empty) when
    the file is missing, unreadable, not a regular file, not ELF, truncated,
    corrupt or over the entry budget.
    """

    path: str
    elf_class: int | None = None  # 32 or 64
    little_endian: bool | None = None
    machine: str | None = None  # e_machine as <elf.h> names it: "EM_X86_64" (machine_name)
    elf_type: str | None = None  # "ET_DYN", "ET_EXEC"
    soname: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    version_needs: tuple[VersionNeed, ...] = ()
    version_defs: tuple[str, ...] = ()  # defined versions, without the base (soname) entry
    nodeflib: bool = False  # DF_1_NODEFLIB: ld.so.cache and the default dirs are not searched
    header: ElfHeader | None = None  # what the loader's header checks see (set whenever readable)
    reason: str | None = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def abi(self) -> tuple[int | None, bool | None, str | None]:
        """What must match for the loader to accept a library for this object."""
        return (self.elf_class, self.little_endian, self.machine)

    def describe_abi(self) -> str:
        order = "" if self.little_endian in (None, True) else ", big-endian"
        machine = (self.machine or "?").removeprefix("EM_")
        return f"ELF{self.elf_class or '?'} {machine}{order}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ElfFacts:
        """The inverse of :meth:`to_dict` (for the on-disk cache)."""
        return cls(
            path=str(data["path"]),
            elf_class=data.get("elf_class"),
            little_endian=data.get("little_endian"),
            machine=data.get("machine"),
            elf_type=data.get("elf_type"),
            soname=data.get("soname"),
            needed=tuple(data.get("needed", ())),
            rpath=tuple(data.get("rpath", ())),
            runpath=tuple(data.get("runpath", ())),
            version_needs=tuple(VersionNeed(str(need["file"]), str(need["version"]),
                                            bool(need.get("weak", False)))
                                for need in data.get("version_needs", ())),
            version_defs=tuple(data.get("version_defs", ())),
            nodeflib=bool(data.get("nodeflib", False)),
            header=ElfHeader(*(int(value) for value in data["header"]))
            if data.get("header") else None,
            reason=data.get("reason"),
            failure=Failure(data["failure"]) if data.get("failure") else None,
        )


def read_elf(path: str) -> ElfFacts:
    """The loader-relevant facts of the ELF file at ``path``; never raises."""
    return _read_elf(path)[0]


def _read_elf(path: str) -> tuple[ElfFacts, bool]:
    """The facts, and whether they are facts of the file's bytes (so cacheable)
    rather than of a passing condition such as a permission."""
    reader: _Reader | None = None
    try:
        with open_regular(path) as file:  # a FIFO would block open()
            reader = _Reader(file, path)
            return reader.read(), True
    except OSError as error:
        return ElfFacts(path, reason=explain(path, error), failure=failure_of(error)), False
    except ElfFormatError as error:
        reason, failure = str(error), error.failure
    except (struct.error, ValueError, OverflowError, UnicodeDecodeError) as error:
        reason, failure = f"corrupt ELF file: {type(error).__name__}: {error}", Failure.CORRUPT
    # A file that does not parse keeps its raw header: the loader skips some of those
    # (another ELF class) and stops with an error at the others.
    header = reader.raw_header if reader is not None else None
    return ElfFacts(path, reason=reason, failure=failure, header=header), True


def read_interpreter(path: str) -> str | None:
    """The ``PT_INTERP`` of an ELF executable (``/lib/ld-musl-x86_64.so.1``), if any."""
    try:
        with open_regular(path) as file:
            reader = _Reader(file, path)
            reader.header()
            return reader.interpreter()
    except (OSError, ElfFormatError, struct.error, ValueError, OverflowError):
        return None


def raw_header(head: bytes, size: int) -> ElfHeader:
    """The header fields the loader checks, from the first bytes of a file (any file:
    short or foreign ones read as zeros where they have nothing)."""
    data = head[:64].ljust(64, b"\x00")
    order = ">" if data[5] == 2 else "<"
    e_type, e_machine, e_version = struct.unpack_from(order + "HHI", data, 16)
    if data[4] == 1:
        phoff, = struct.unpack_from(order + "I", data, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 42)
    else:
        phoff, = struct.unpack_from(order + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 54)
    return ElfHeader(
        size=size, magic_ok=int(head[:4] == b"\x7fELF"), ei_class=data[4], ei_data=data[5],
        ei_version=data[6], ei_osabi=data[7], ei_abiversion=data[8],
        padding_zero=int(not any(data[9:16])), e_type=e_type, e_machine=e_machine,
        e_version=e_version, e_phentsize=phentsize, e_phnum=phnum,
        phdrs_in_file=int(phoff + phnum * phentsize <= size))


def machine_name(number: int) -> str:
    """``62`` → ``"EM_X86_64"``: e_machine as :data:`MACHINE_NAMES` names it
    (``EM_<number>`` for a machine it does not list)."""
    return MACHINE_NAMES.get(number, f"EM_{number}")


def type_name(number: int) -> str:
    """``3`` → ``"ET_DYN"`` (``ET_<number>`` for a type the gABI does not define)."""
    return TYPE_NAMES.get(number, f"ET_{number}")


def read_section(path: str, name: str, limit: int = 16 << 20) -> bytes | None:
    """The first ``limit`` bytes of section ``name`` of an ELF file; None when the file
    cannot be read or has no such section (for version strings: ``.rodata``, ``.comment``)."""
    try:
        with open_regular(path) as file:
            reader = _Reader(file, path)
            reader.header()
            return reader.section_named(name, limit)
    except (OSError, ElfFormatError, struct.error, ValueError, OverflowError):
        return None


#: The fields of Elf32_Ehdr / Elf64_Ehdr after e_ident (gABI, "ELF Header"), with their
#: struct formats; only the addresses and offsets change width with the class.
_EHDR_FIELDS = ("e_type", "e_machine", "e_version", "e_entry", "e_phoff", "e_shoff", "e_flags",
                "e_ehsize", "e_phentsize", "e_phnum", "e_shentsize", "e_shnum", "e_shstrndx")
_EHDR_FORMAT = {32: "HHIIIIIHHHHHH", 64: "HHIQQQIHHHHHH"}


def parse_header(ident: bytes, elf_class: int, order: str) -> dict[str, int]:
    """The ELF header's fields after ``e_ident``, by their gABI names, from the first
    52 (ELF32) or 64 (ELF64) bytes of a file."""
    values = struct.unpack_from(order + _EHDR_FORMAT[elf_class], ident, 16)
    return dict(zip(_EHDR_FIELDS, values, strict=True))


@dataclass
class _Section:
    """One entry of the section header table: what the reader needs of it."""

    type: int
    offset: int
    size: int
    link: int
    info: int
    name: int = 0  # offset of its name in the section name string table


class _Reader:
    """One pass over one file: header, section table, then the few sections needed."""

    def __init__(self, file: IO[bytes], path: str) -> None:
        self.file = file
        self.path = path
        self.size = os.fstat(file.fileno()).st_size
        self.budget = ENTRY_BUDGET
        self.elf_class = 0
        self.little = True
        self.order = "<"
        self.machine: str | None = None
        self.elf_type: str | None = None
        self.header_fields: dict[str, int] = {}
        self.soname: str | None = None
        self.needed: list[str] = []
        self.rpath: tuple[str, ...] = ()
        self.runpath: tuple[str, ...] = ()
        self.needs: list[VersionNeed] = []
        self.defs: list[str] = []
        # What a .gnu.version index means (for the symbols): a version this file needs,
        # with the library it is needed from, or one it defines.
        self.need_indexes: dict[int, tuple[str, str]] = {}
        self.def_indexes: dict[int, str] = {}
        self.flags_1 = 0
        self.head = b""  # the first bytes of the file, read once
        self.raw_header: ElfHeader | None = None

    # -- raw access ---------------------------------------------------------------------

    def bytes_at(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ElfFormatError(f"truncated ELF file: {what} lies beyond the end "
                                 f"({offset}+{length} > {self.size} bytes)")
        if length > _MAX_SECTION_BYTES:
            raise ElfFormatError(f"corrupt ELF file: {what} claims {length} bytes")
        if offset + length <= len(self.head):
            return self.head[offset:offset + length]
        self.file.seek(offset)
        data = self.file.read(length)
        if len(data) != length:
            raise ElfFormatError(f"truncated ELF file: short read of {what}")
        return data

    def spend(self, count: int, what: str) -> None:
        """Take ``count`` records from the file's budget."""
        self.budget -= count
        if self.budget < 0:
            raise ElfFormatError(f"more than {ENTRY_BUDGET} records in {what}: a crafted or "
                                 "corrupt file (not read further)", Failure.TOO_LARGE)

    # -- the parts ------------------------------------------------------------------------

    def header(self) -> None:
        self.head = self.file.read(_HEAD)
        self.raw_header = raw_header(self.head, self.size)
        ident = self.head[:64]
        if len(ident) < 16:
            raise ElfFormatError("not an ELF file (file too short)", Failure.NOT_ELF)
        if ident[:4] != b"\x7fELF":
            raise ElfFormatError("not an ELF file (invalid ELF header)", Failure.NOT_ELF)
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise ElfFormatError(f"corrupt ELF header (class {ident[4]}, data {ident[5]})")
        self.elf_class = 32 if ident[4] == 1 else 64
        self.little = ident[5] == 1
        self.order = "<" if self.little else ">"
        needed = 52 if self.elf_class == 32 else 64
        if len(ident) < needed:
            raise ElfFormatError("not an ELF file (file too short)", Failure.NOT_ELF)
        self.header_fields = parse_header(ident[:needed], self.elf_class, self.order)
        self.machine = machine_name(self.header_fields["e_machine"])
        self.elf_type = type_name(self.header_fields["e_type"])

    def sections(self) -> list[_Section]:
        fields = self.header_fields
        offset, entsize, count = fields["e_shoff"], fields["e_shentsize"], fields["e_shnum"]
        if offset == 0:
            return []
        form = self.order + ("IIIIIIIIII" if self.elf_class == 32 else "IIQQQQIIQQ")
        if entsize < struct.calcsize(form):
            raise ElfFormatError(f"corrupt ELF header: section header size {entsize}")
        if count == 0:  # extended numbering: the count lives in section 0's sh_size
            first = struct.unpack_from(form, self.bytes_at(offset, entsize, "section header 0"))
            count = first[5]
        if count > _MAX_SECTIONS:
            raise ElfFormatError(f"corrupt ELF header: {count} sections")
        table = self.bytes_at(offset, count * entsize, "the section header table")
        result = []
        for index in range(count):
            values = struct.unpack_from(form, table, index * entsize)
            result.append(_Section(type=values[1], offset=values[4], size=values[5],
                                   link=values[6], info=values[7], name=values[0]))
        return result

    def read(self) -> ElfFacts:
        self.header()
        self.check_segments()
        try:
            sections = self.sections()
        except ElfFormatError:
            # The loader never reads the section headers: a table that is cut off or
            # corrupt is no reason to fail where the program headers lead the way.
            sections = []
        dynamic = next((s for s in sections if s.type == SHT_DYNAMIC), None)
        if dynamic is not None:
            if not 0 <= dynamic.link < len(sections):
                raise ElfFormatError(f"corrupt ELF file: .dynamic links to section {dynamic.link}")
            strtab = sections[dynamic.link]
            strings = _Strings(self, strtab.offset, strtab.size)
            tags = self.dynamic_entries(dynamic.offset, dynamic.size)
            self.apply_dynamic(tags, strings)
            self.versions(sections, (strtab, strings))
        elif not sections:
            self.read_from_segments()
        return self.facts()

    def versions(self, sections: list[_Section],
                 known: tuple[_Section, _Strings] | None = None) -> None:
        """Read ``.gnu.version_r`` and ``.gnu.version_d`` (``known``: a string table
        already read, and its section)."""
        for section in sections:
            if section.type in (SHT_GNU_VERNEED, SHT_GNU_VERDEF):
                if not 0 <= section.link < len(sections):
                    raise ElfFormatError("corrupt ELF file: a version section's string "
                                         "table is missing")
                link = sections[section.link]
                table = known[1] if known is not None and link is known[0] \
                    else _Strings(self, link.offset, link.size)
                if section.type == SHT_GNU_VERNEED:
                    self.version_needs(section.offset, section.size, section.info, table)
                else:
                    self.version_defs(section.offset, section.size, section.info, table)

    def segments(self) -> list[tuple[int, int, int, int]]:
        """The program headers: (type, offset, vaddr, filesz) each."""
        fields = self.header_fields
        form = self.order + ("IIIIIIII" if self.elf_class == 32 else "IIQQQQQQ")
        entsize, count = fields["e_phentsize"], fields["e_phnum"]
        if count == 0:
            return []
        if entsize < struct.calcsize(form) or count > _MAX_SECTIONS:
            raise ElfFormatError("corrupt ELF header: bad program header table")
        self.spend(count, "the program header table")
        table = self.bytes_at(fields["e_phoff"], count * entsize, "the program header table")
        result = []
        for index in range(count):
            values = struct.unpack_from(form, table, index * entsize)
            if self.elf_class == 32:
                result.append((values[0], values[1], values[2], values[4]))
            else:
                result.append((values[0], values[2], values[3], values[5]))
        return result

    def section_named(self, wanted: str, limit: int) -> bytes | None:
        """The bytes of the section called ``wanted`` (``.rodata``, ``.comment``), at
        most ``limit`` of them; None when the file has no such section."""
        sections = self.sections()
        index = self.header_fields["e_shstrndx"]
        if not 0 < index < len(sections):
            return None
        names = _Strings(self, sections[index].offset, sections[index].size)
        for section in sections:
            if section.type != 8 and names.at(section.name) == wanted:  # 8: SHT_NOBITS
                return self.bytes_at(section.offset, min(section.size, limit), wanted)
        return None

    def check_segments(self) -> None:
        """Every loadable segment must lie inside the file: the loader maps them whole,
        and touching a page past the end of a cut file kills the process (SIGBUS)."""
        for p_type, offset, _, size in self.segments():
            if p_type == PT_LOAD and offset + size > self.size:
                raise ElfFormatError(f"truncated ELF file: a loadable segment ends at byte "
                                     f"{offset + size}, the file has {self.size}")

    def interpreter(self) -> str | None:
        for p_type, offset, _, size in self.segments():
            if p_type == PT_INTERP:
                return self.bytes_at(offset, min(size, 4096), "PT_INTERP").rstrip(b"\x00").decode(
                    "utf-8", "replace")
        return None

    def read_from_segments(self) -> None:
        """No section headers (stripped with ``sstrip``): follow PT_DYNAMIC as the loader does."""
        loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
        dynamic: tuple[int, int] | None = None
        for p_type, p_offset, p_vaddr, p_filesz in self.segments():
            if p_type == PT_LOAD:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return

        def file_offset(address: int) -> int:
            for vaddr, offset, size in loads:
                if vaddr <= address < vaddr + size:
                    return offset + address - vaddr
            raise ElfFormatError(f"corrupt ELF file: address {address:#x} is in no segment")

        tags = self.dynamic_entries(*dynamic)
        by_tag = dict(tags)
        if DT_STRTAB not in by_tag:
            return
        strings = _Strings(self, file_offset(by_tag[DT_STRTAB]), by_tag.get(DT_STRSZ, 0))
        self.apply_dynamic(tags, strings)
        if DT_VERNEED in by_tag:
            self.version_needs(file_offset(by_tag[DT_VERNEED]), None,
                               by_tag.get(DT_VERNEEDNUM, 0), strings)
        if DT_VERDEF in by_tag:
            self.version_defs(file_offset(by_tag[DT_VERDEF]), None,
                              by_tag.get(DT_VERDEFNUM, 0), strings)

    def dynamic_entries(self, offset: int, size: int) -> list[tuple[int, int]]:
        form = self.order + ("iI" if self.elf_class == 32 else "qQ")
        step = struct.calcsize(form)
        data = self.bytes_at(offset, size - size % step, ".dynamic")
        entries = []
        for tag, value in struct.iter_unpack(form, data):
            if tag == DT_NULL:
                break
            entries.append((tag, value))
        self.spend(len(entries), ".dynamic")
        return entries

    def apply_dynamic(self, tags: list[tuple[int, int]], strings: _Strings) -> None:
        for tag, value in tags:
            if tag == DT_NEEDED:
                self.needed.append(strings.at(value))
            elif tag == DT_SONAME:
                self.soname = strings.at(value)
            elif tag == DT_RPATH:
                self.rpath += tuple(part for part in strings.at(value).split(":") if part)
            elif tag == DT_RUNPATH:
                self.runpath += tuple(part for part in strings.at(value).split(":") if part)
            elif tag == DT_FLAGS_1:
                self.flags_1 |= value

    def _records(self, offset: int, size: int | None, count: int, record: int,
                 what: str) -> Iterator[tuple[int, bytes]]:
        """The chained records of a version section: (offset of record, its bytes)."""
        end = offset + size if size is not None else self.size
        position = offset
        for _ in range(count) if count else iter(int, 1):  # the chain, or until its end
            self.spend(1, what)
            if position + record > end:
                raise ElfFormatError(f"corrupt ELF file: {what} runs past its end")
            data = self.bytes_at(position, record, what)
            yield position, data
            step = struct.unpack_from(self.order + "I", data, record - 4)[0]  # vn_next / vd_next
            if step == 0:
                return
            position += step

    def version_needs(self, offset: int, size: int | None, count: int, strings: _Strings) -> None:
        # Elf_Verneed: vn_version, vn_cnt (H H), vn_file, vn_aux, vn_next (I I I).
        for position, data in self._records(offset, size, count, 16, ".gnu.version_r"):
            _, aux_count, file_name, aux, _ = struct.unpack(self.order + "HHIII", data)
            library = strings.at(file_name)
            aux_position = position + aux
            for _ in range(aux_count):
                self.spend(1, ".gnu.version_r")
                # Elf_Vernaux: vna_hash (I), vna_flags, vna_other (H H), vna_name, vna_next (I I).
                _, flags, index, name, following = struct.unpack(
                    self.order + "IHHII", self.bytes_at(aux_position, 16, ".gnu.version_r aux"))
                version = strings.at(name)
                self.needs.append(VersionNeed(library, version, bool(flags & VER_FLG_WEAK)))
                self.need_indexes[index & 0x7FFF] = (version, library)
                if following == 0:
                    break
                aux_position += following

    def version_defs(self, offset: int, size: int | None, count: int, strings: _Strings) -> None:
        # Elf_Verdef: vd_version, vd_flags, vd_ndx, vd_cnt (H×4), vd_hash, vd_aux, vd_next (I×3).
        for position, data in self._records(offset, size, count, 20, ".gnu.version_d"):
            _, flags, index, aux_count, _, aux, _ = struct.unpack(self.order + "HHHHIII", data)
            if flags & VER_FLG_BASE or aux_count == 0:
                continue  # the base entry names the file itself
            # Elf_Verdaux: vda_name, vda_next; the first names this version, later ones its parents.
            name, _ = struct.unpack(self.order + "II",
                                    self.bytes_at(position + aux, 8, ".gnu.version_d aux"))
            self.defs.append(strings.at(name))
            self.def_indexes[index & 0x7FFF] = self.defs[-1]

    def facts(self) -> ElfFacts:
        return ElfFacts(
            path=self.path,
            elf_class=self.elf_class or None,
            little_endian=self.little if self.elf_class else None,
            machine=self.machine,
            elf_type=self.elf_type,
            soname=self.soname,
            needed=tuple(self.needed),
            rpath=self.rpath,
            runpath=self.runpath,
            version_needs=tuple(self.needs),
            version_defs=tuple(dict.fromkeys(self.defs)),
            nodeflib=bool(self.flags_1 & DF_1_NODEFLIB),
            header=self.raw_header,
        )


class _Strings:
    """A string table, read whole when small and string by string when large."""

    def __init__(self, reader: _Reader, offset: int, size: int) -> None:
        self.reader = reader
        self.offset = offset
        self.size = size
        self.data: bytes | None = None
        if size <= _WHOLE_STRTAB:
            self.data = reader.bytes_at(offset, size, "the dynamic string table")

    def at(self, index: int) -> str:
        if self.size and index >= self.size:
            raise ElfFormatError(f"corrupt ELF file: string offset {index} outside its table")
        if self.data is not None:
            end = self.data.find(b"\x00", index)
            raw = self.data[index:end if end >= 0 else len(self.data)]
        else:
            start = self.offset + index
            length = min(4096, self.reader.size - start)
            chunk = self.reader.bytes_at(start, max(length, 0), "a dynamic string")
            raw = chunk.partition(b"\x00")[0]
        return raw.decode("utf-8", "surrogateescape")


# -- dynamic symbols -----------------------------------------------------------------------
#
# dlopen with RTLD_NOW (Python's import, ctypes) binds every symbol each newly loaded object
# refers to, or fails with "undefined symbol: NAME". A strong reference (not STB_WEAK: a
# weak one nothing defines is bound to zero) is bound to the first object of the lookup
# scope that defines the name as glibc's check_match accepts it:
#
# * a reference without a version takes a defined symbol (not SHN_UNDEF; with a value,
#   unless absolute or thread-local) that is global, weak or STB_GNU_UNIQUE, whose version
#   index is below 3 (unversioned, or the base), or else the one non-hidden version of that
#   name in the object;
# * a reference with one (memcpy@GLIBC_2.14) takes a definition of that version, or one
#   without a version (index 0 or 1, not hidden), or any definition of the name in an
#   object that has no version table at all. The version needs themselves are judged
#   first (a library that lacks the version node fails the load before any binding); a
#   library with no version definitions passes them, and then binds by name alone.

SHT_DYNSYM, SHT_GNU_VERSYM = 11, 0x6FFFFFFF
SHN_UNDEF, SHN_ABS = 0, 0xFFF1
STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 1, 2, 10
_BINDINGS = frozenset((STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE))  # of a definition that binds
STT_TLS = 6
VERSYM_HIDDEN = 0x8000

#: Symbols read at most from one file: more is a crafted or corrupt table.
MAX_SYMBOLS = 4_000_000

_T = TypeVar("_T")


class SymbolTable(NamedTuple):
    """What one object asks of the lookup scope, and what it offers to it (names as the
    string table holds them: bytes)."""

    undefined: tuple[bytes, ...]  # strong references without a symbol version
    needs: tuple[tuple[bytes, str, str], ...]  # with one: (name, version, library name)
    defined: frozenset[bytes]  # the names a reference without a version binds to here
    plain: frozenset[bytes]  # defined without a version (index 0 or 1, not hidden)
    versioned: frozenset[tuple[bytes, str]]  # (name, version) of each versioned definition
    has_versions: bool  # a version table: without one, any definition binds by name

    def binds(self, name: bytes, version: str, *, named: bool = False) -> bool:
        """Whether a reference ``name@version`` is bound here; ``named``: this object is
        the library the version is needed from. Without a version table, any definition
        binds — except in that library, where ld.so stops the process ("Inconsistency
        detected by ld.so: … check_match: Assertion … failed")."""
        if not self.has_versions:
            return not named and name in self.defined
        return (name, version) in self.versioned or name in self.plain


def read_symbols(path: str) -> SymbolTable | None:
    """The object's dynamic symbols; None when they cannot be read (no section headers,
    a corrupt or cut table): then nothing can be said of its symbols."""
    try:
        with open_regular(path) as file:
            reader = _Reader(file, path)
            reader.header()
            return _symbol_table(reader, reader.sections())
    except (OSError, ElfFormatError, struct.error, ValueError, OverflowError):
        return None


def _symbol_table(reader: _Reader, sections: list[_Section]) -> SymbolTable | None:
    dynsym = next((section for section in sections if section.type == SHT_DYNSYM), None)
    if dynsym is None:
        return SymbolTable((), (), frozenset(), frozenset(), frozenset(), False) \
            if sections else None
    raw = _raw_symbols(reader, sections, dynsym)
    if raw is None:
        return None
    table, names, versions, has_versions = raw
    if has_versions:
        reader.versions(sections)
    version_names, needed_from = reader.def_indexes, reader.need_indexes
    wide = reader.elf_class == 64
    # (name, info, shndx, value) of each entry, in the class's own layout
    form = reader.order + ("IBxHQ8x" if wide else "IIxxxxBxH")
    undefined: list[bytes] = []
    needs: list[tuple[bytes, str, str]] = []
    direct: set[bytes] = set()
    plain: set[bytes] = set()
    versioned: set[tuple[bytes, str]] = set()
    counted: dict[bytes, int] = {}  # name → non-hidden definitions with a version index ≥ 3
    find = names.find
    for fields, version in zip(struct.iter_unpack(form, table), versions, strict=True):
        if wide:
            name_at, info, shndx, value = fields
        else:
            name_at, value, info, shndx = fields
        if name_at == 0:
            continue
        index = version & 0x7FFF
        if shndx == SHN_UNDEF:
            if info >> 4 == STB_GLOBAL:
                name = names[name_at:find(b"\x00", name_at)]
                if index < 2:
                    undefined.append(name)
                elif index in needed_from:
                    needs.append((name, *needed_from[index]))
            continue
        if info >> 4 not in _BINDINGS or (value == 0 and shndx != SHN_ABS
                                          and info & 0xF != STT_TLS):
            continue
        name = names[name_at:find(b"\x00", name_at)]
        if index < 3:
            direct.add(name)
        elif not version & VERSYM_HIDDEN:
            counted[name] = counted.get(name, 0) + 1
        if index < 2 and not version & VERSYM_HIDDEN:
            plain.add(name)
        elif index in version_names:
            versioned.add((name, version_names[index]))
    direct.update(name for name, number in counted.items() if number == 1)
    return SymbolTable(tuple(undefined), tuple(needs), frozenset(direct), frozenset(plain),
                       frozenset(versioned), has_versions)


def _raw_symbols(reader: _Reader, sections: list[_Section], dynsym: _Section
                 ) -> tuple[bytes, bytes, tuple[int, ...], bool] | None:
    """``.dynsym``, its string table, each entry's ``.gnu.version`` index (0 without
    one) and whether there is one; None for a table that is not one."""
    if not 0 <= dynsym.link < len(sections):
        return None
    entry = 24 if reader.elf_class == 64 else 16
    count = dynsym.size // entry
    if count > MAX_SYMBOLS:
        return None
    table = reader.bytes_at(dynsym.offset, count * entry, ".dynsym")
    strtab = sections[dynsym.link]
    names = reader.bytes_at(strtab.offset, strtab.size, ".dynstr")
    versym = next((section for section in sections if section.type == SHT_GNU_VERSYM), None)
    if versym is None or versym.size < 2 * count:
        return table, names, (0,) * count, False
    versions = struct.unpack_from(f"{reader.order}{count}H",
                                  reader.bytes_at(versym.offset, 2 * count, ".gnu.version"))
    return table, names, versions, True


class Scope:
    """Objects in the lookup scope, as what they bind: their definitions together, so a
    module's references are looked up in a few set operations. ``tables``: each object's
    table with the names it is known by (its file name, its soname), which a version
    need names its library by."""

    def __init__(self, tables: Sequence[tuple[SymbolTable, frozenset[str]]]) -> None:
        self.defined = _union([table.defined for table, _ in tables])
        versioned = [table for table, _ in tables if table.has_versions]
        self.plain = _union([table.plain for table in versioned])
        self.versions = _union([table.versioned for table in versioned])
        # Without a version table, any definition binds a versioned reference by name —
        # except in the library the version is needed from (ld.so stops there).
        self.by_name = [(table.defined, known) for table, known in tables
                        if not table.has_versions]

    def unbound(self, names: set[bytes]) -> set[bytes]:
        """Those of these references without a version that no object here binds."""
        return names - self.defined

    def unbound_versions(self, needs: set[tuple[bytes, str, str]]) -> set[tuple[bytes, str, str]]:
        """Those of these ``(name, version, library)`` references no object here binds."""
        left = {need for need in needs
                if need[0] not in self.plain and (need[0], need[1]) not in self.versions}
        for defined, known in self.by_name:
            left = {need for need in left if need[0] not in defined or need[2] in known}
        return left


def _union(sets: Sequence[frozenset[_T]]) -> frozenset[_T]:
    """The sets together; one set is itself (a large library's is not copied)."""
    return sets[0] if len(sets) == 1 else frozenset().union(*sets)


def scope_of(paths: Iterable[str], table: Callable[[str], SymbolTable | None] = read_symbols,
             names: Callable[[str], Iterable[str]] = lambda path: (os.path.basename(path),)
             ) -> Scope | None:
    """The :class:`Scope` of these objects; None when a table of one cannot be read."""
    tables = []
    for path in dict.fromkeys(paths):
        found = table(path)
        if found is None:
            return None
        tables.append((found, frozenset(names(path))))
    return Scope(tables)


def unbound(objects: Iterable[str], scopes: Sequence[Scope],
            table: Callable[[str], SymbolTable | None] = read_symbols
            ) -> dict[str, tuple[str, ...]] | None:
    """For each of ``objects`` (those the ``dlopen`` loads anew), its strong references
    that no object of ``scopes`` binds (the lookup scope: the executable and what it
    loaded, then the module and what it loads), as ``NAME`` or ``NAME@VERSION``; None
    when a table of one of them cannot be read."""
    missing: dict[str, tuple[str, ...]] = {}
    for path in objects:
        found = table(path)
        if found is None:
            return None
        names, needs = set(found.undefined), set(found.needs)
        for scope in scopes:
            names, needs = scope.unbound(names), scope.unbound_versions(needs)
        absent = [name.decode("utf-8", "surrogateescape") for name in found.undefined
                  if name in names]
        absent += [f"{need[0].decode('utf-8', 'surrogateescape')}@{need[1]}"
                   for need in found.needs if need in needs]
        if absent:
            missing[path] = tuple(dict.fromkeys(absent))
    return missing


# -- the cache -------------------------------------------------------------------------------

CACHE_FILE = "elf-facts.json"
_DERIVED = "\x00"  # the key prefix of a derived answer: no path starts with it
_CACHE_LIMIT = 50_000  # entries kept across sessions; the oldest go first
_CACHE_BYTES = 64 << 20


def file_stamp(info: os.stat_result) -> list[int]:
    """What changes when a file's bytes may have: size, mtime, and the ctime, which no
    one can set back (``rsync --inplace -t`` rewrites a file and restores its mtime),
    on this inode of this device."""
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]


class ElfCache:
    """ELF facts keyed by path and :func:`file_stamp`, in memory and on disk.

    ``directory`` is the plugin's cache dir (pytest's, ``envguard/`` below it);
    with ``None`` the cache lives in memory only. The file is a
    :class:`~pytest_envguard.probes._diskcache.DiskCache`: trusted only when it
    is this user's own; :meth:`save` merges with entries other processes (xdist
    workers) saved meanwhile. Only facts of a file's bytes are cached, never a
    passing condition such as a permission.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.disk = DiskCache(directory, CACHE_FILE, max_bytes=_CACHE_BYTES)
        self._entries: dict[str, Any] | None = None
        self._memory: dict[str, ElfFacts] = {}
        self._new: dict[str, Any] = {}
        self._stamps: dict[str, list[int] | None] = {}
        self.hits = 0
        self.misses = 0

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = self.disk.read() or {}
        return self._entries

    def read(self, path: str) -> ElfFacts:
        """The facts of ``path``, from the cache when the file is unchanged.

        Within one cache object (one session) a path is looked at once: the
        loader's view is a snapshot, like the rest of the environment.
        """
        known = self._memory.get(path)
        if known is not None:
            return known
        try:
            info = os.stat(path)
        except OSError as error:
            self._stamps.setdefault(path, None)
            self._memory[path] = ElfFacts(path, reason=explain(path, error),
                                          failure=failure_of(error))
            return self._memory[path]
        stamp = file_stamp(info)
        self._stamps.setdefault(path, stamp)  # what stamp() answers for it from now on
        entry = self._load().get(path)
        if isinstance(entry, list) and len(entry) == len(stamp) + 1 and entry[:-1] == stamp \
                and os.access(path, os.R_OK):
            try:
                known = ElfFacts.from_dict(entry[-1])
            except (KeyError, TypeError, ValueError, AttributeError):
                known = None
            if known is not None and known.path == path:
                self._memory[path] = known
                self.hits += 1
                return known
        self.misses += 1
        facts, cacheable = _read_elf(path)
        self._memory[path] = facts
        if cacheable:
            self._new[path] = [*stamp, facts.to_dict()]
        return facts

    def stamp(self, path: str) -> list[int] | None:
        """The :func:`file_stamp` of ``path`` (looked at once per session, by :meth:`read`
        or here); None when it cannot be looked at."""
        if path not in self._stamps:
            try:
                self._stamps[path] = file_stamp(os.stat(path))
            except OSError:
                self._stamps[path] = None
        return self._stamps[path]

    def derived(self, key: str, paths: Sequence[str]) -> Any:
        """What :meth:`derive` kept under ``key`` for exactly these files, none of them
        changed since; None otherwise."""
        files = self._files(paths)
        entry = self._load().get(_DERIVED + key) if files is not None else None
        if isinstance(entry, dict) and entry.get("files") == files:
            return entry.get("value")
        return None

    def derive(self, key: str, paths: Sequence[str], value: Any) -> None:
        """Keep ``value``, a JSON-able answer computed from the bytes of ``paths`` alone
        (the unbound symbols of a module's closure), until one of them changes."""
        files = self._files(paths)
        if files is not None:
            self._new[_DERIVED + key] = {"files": files, "value": value}

    def _files(self, paths: Sequence[str]) -> list[list[Any]] | None:
        files = []
        for path in paths:
            stamp = self.stamp(path)
            if stamp is None:
                return None
            files.append([path, *stamp])
        return files

    def save(self) -> None:
        """Add this session's new entries to the file; failures only cost the next
        run time."""
        if not self._new:
            return
        new = self._new

        def merge(entries: dict[str, Any]) -> None:
            entries.update(new)
            while len(entries) > _CACHE_LIMIT:
                del entries[next(iter(entries))]

        if self.disk.update(merge):
            self._new = {}
