"""What the dynamic loader reads from a shared object, and nothing more.

:func:`read_elf` returns the SONAME, ``DT_NEEDED``, ``DT_RPATH``/``DT_RUNPATH``,
the version needs (``.gnu.version_r``) and definitions (``.gnu.version_d``)
and the class/machine of one ELF file. It reads the ELF header (parsed with
pyelftools' structs), the section header table in one read, and then only the
bytes of ``.dynamic``, its string table and the two version sections — never
the whole file (some CUDA libraries are larger than a gigabyte), and never
every section object, which is what makes a naive pyelftools walk slow.
Files without section headers fall back to the program headers, as the
loader itself does.

:class:`ElfCache` keeps these facts on disk keyed by (path, size, mtime), so
a second session re-reads nothing unchanged.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pytest_envguard.probes import Facts, describe_error, open_regular

if TYPE_CHECKING:
    from elftools.elf.structs import ELFStructs

# Constants from the ELF gABI / GNU extensions; pyelftools' enums hold the same
# values (ENUM_D_TAG_COMMON, ENUM_SH_TYPE_BASE, VER_FLAGS), checked by a test.
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ = 0, 1, 5, 10
DT_SONAME, DT_RPATH, DT_RUNPATH = 14, 15, 29
DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM = 0x6FFFFFFC, 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF
SHT_DYNAMIC, SHT_GNU_VERDEF, SHT_GNU_VERNEED = 6, 0x6FFFFFFD, 0x6FFFFFFE
PT_LOAD, PT_DYNAMIC = 1, 2
VER_FLG_BASE, VER_FLG_WEAK = 1, 2

#: Upper bounds that keep a corrupt header from making us read or loop forever.
_MAX_SECTIONS = 1 << 16
_MAX_ENTRIES = 1 << 16
_MAX_SECTION_BYTES = 64 << 20
_WHOLE_STRTAB = 256 << 10  # smaller string tables are read at once, larger ones lazily


class ElfFormatError(ValueError):
    """The file is not a well-formed ELF shared object."""


@dataclass(frozen=True)
class VersionNeed(Facts):
    """One symbol version an object needs from a library: (``libc.so.6``, ``GLIBC_2.34``)."""

    file: str  # the soname the version is needed from
    version: str
    weak: bool = False  # a weak need only warns when missing


@dataclass(frozen=True)
class ElfFacts(Facts):
    """The dynamic section of one ELF file, as the loader sees it.

    ``reason`` is set (and the other fields are empty) when the file is
    missing, unreadable, truncated, corrupt or not ELF.
    """

    path: str
    elf_class: int | None = None  # 32 or 64
    little_endian: bool | None = None
    machine: str | None = None  # e_machine as pyelftools names it: "EM_X86_64"
    elf_type: str | None = None  # "ET_DYN", "ET_EXEC"
    soname: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    version_needs: tuple[VersionNeed, ...] = ()
    version_defs: tuple[str, ...] = ()  # defined versions, without the base (soname) entry
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

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
            reason=data.get("reason"),
        )


def read_elf(path: str) -> ElfFacts:
    """The loader-relevant facts of the ELF file at ``path``; never raises."""
    return _read_elf(path)[0]


def _read_elf(path: str) -> tuple[ElfFacts, bool]:
    """The facts, and whether they are facts of the file's bytes (so cacheable)
    rather than of a passing condition such as a permission."""
    try:
        return _parse_elf(path), True
    except OSError as error:
        return ElfFacts(path, reason=describe_error(error)), False


def _parse_elf(path: str) -> ElfFacts:
    from elftools.common.exceptions import ELFError

    try:
        with open_regular(path) as file:  # a FIFO would block open()
            return _Reader(file, path).read()
    except (ElfFormatError, ELFError) as error:
        return ElfFacts(path, reason=str(error))
    except (struct.error, ValueError, OverflowError, UnicodeDecodeError) as error:
        return ElfFacts(path, reason=f"corrupt ELF file: {describe_error(error)}")


def read_header(path: str) -> ElfFacts:
    """Only the ELF header: class, byte order, machine, type (for the loader's
    "wrong ELF class" skip, which needs nothing else)."""
    from elftools.common.exceptions import ELFError

    try:
        with open_regular(path) as file:  # a FIFO would block open()
            reader = _Reader(file, path)
            reader.header()
            return reader.facts()
    except OSError as error:
        return ElfFacts(path, reason=describe_error(error))
    except (ElfFormatError, ELFError, struct.error, ValueError) as error:
        return ElfFacts(path, reason=str(error))


@lru_cache(maxsize=4)
def _structs(little_endian: bool, elf_class: int) -> ELFStructs:
    # Building pyelftools' structs costs more than parsing a header with them,
    # so one set per (byte order, class) serves every file.
    from elftools.elf.structs import ELFStructs

    structs = ELFStructs(little_endian=little_endian, elfclass=elf_class)
    structs.create_basic_structs()
    return structs


@dataclass
class _Section:
    type: int
    offset: int
    size: int
    link: int
    info: int


class _Reader:
    """One pass over one file: header, section table, then the few sections needed."""

    def __init__(self, file: IO[bytes], path: str) -> None:
        self.file = file
        self.path = path
        self.size = os.fstat(file.fileno()).st_size
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

    # -- raw access ---------------------------------------------------------------------

    def bytes_at(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ElfFormatError(f"truncated ELF file: {what} lies beyond the end "
                                 f"({offset}+{length} > {self.size} bytes)")
        if length > _MAX_SECTION_BYTES:
            raise ElfFormatError(f"corrupt ELF file: {what} claims {length} bytes")
        self.file.seek(offset)
        data = self.file.read(length)
        if len(data) != length:
            raise ElfFormatError(f"truncated ELF file: short read of {what}")
        return data

    # -- the parts ------------------------------------------------------------------------

    def header(self) -> None:
        ident = self.file.read(64)
        if len(ident) < 16 or ident[:4] != b"\x7fELF":
            raise ElfFormatError("not an ELF file (bad magic)" if len(ident) >= 4
                                 else "not an ELF file (too short)")
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise ElfFormatError(f"corrupt ELF header (class {ident[4]}, data {ident[5]})")
        self.elf_class = 32 if ident[4] == 1 else 64
        self.little = ident[5] == 1
        self.order = "<" if self.little else ">"
        needed = 52 if self.elf_class == 32 else 64
        if len(ident) < needed:
            raise ElfFormatError("truncated ELF file: incomplete ELF header")
        header = _structs(self.little, self.elf_class).Elf_Ehdr.parse(ident[:needed])
        machine = header["e_machine"]
        self.machine = machine if isinstance(machine, str) else f"EM_{machine}"
        elf_type = header["e_type"]
        self.elf_type = elf_type if isinstance(elf_type, str) else f"ET_{elf_type}"
        self.header_fields = {name: int(header[name]) for name in (
            "e_phoff", "e_phentsize", "e_phnum", "e_shoff", "e_shentsize", "e_shnum")}

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
                                   link=values[6], info=values[7]))
        return result

    def read(self) -> ElfFacts:
        self.header()
        sections = self.sections()
        dynamic = next((s for s in sections if s.type == SHT_DYNAMIC), None)
        if dynamic is not None:
            if not 0 <= dynamic.link < len(sections):
                raise ElfFormatError(f"corrupt ELF file: .dynamic links to section {dynamic.link}")
            strtab = sections[dynamic.link]
            strings = _Strings(self, strtab.offset, strtab.size)
            tags = self.dynamic_entries(dynamic.offset, dynamic.size)
            self.apply_dynamic(tags, strings)
            for section in sections:
                if section.type in (SHT_GNU_VERNEED, SHT_GNU_VERDEF):
                    if not 0 <= section.link < len(sections):
                        raise ElfFormatError("corrupt ELF file: a version section's string "
                                             "table is missing")
                    link = sections[section.link]
                    table = strings if link is strtab else _Strings(self, link.offset, link.size)
                    if section.type == SHT_GNU_VERNEED:
                        self.version_needs(section.offset, section.size, section.info, table)
                    else:
                        self.version_defs(section.offset, section.size, section.info, table)
        elif not sections:
            self.read_from_segments()
        return self.facts()

    def read_from_segments(self) -> None:
        """No section headers (stripped with ``sstrip``): follow PT_DYNAMIC as the loader does."""
        fields = self.header_fields
        form = self.order + ("IIIIIIII" if self.elf_class == 32 else "IIQQQQQQ")
        entsize, count = fields["e_phentsize"], fields["e_phnum"]
        if count == 0:
            return
        if entsize < struct.calcsize(form) or count > _MAX_SECTIONS:
            raise ElfFormatError("corrupt ELF header: bad program header table")
        table = self.bytes_at(fields["e_phoff"], count * entsize, "the program header table")
        loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
        dynamic: tuple[int, int] | None = None
        for index in range(count):
            values = struct.unpack_from(form, table, index * entsize)
            if self.elf_class == 32:
                p_type, p_offset, p_vaddr, p_filesz = values[0], values[1], values[2], values[4]
            else:
                p_type, p_offset, p_vaddr, p_filesz = values[0], values[2], values[3], values[5]
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

    def _records(self, offset: int, size: int | None, count: int, record: int,
                 what: str) -> Iterator[tuple[int, bytes]]:
        """The chained records of a version section: (offset of record, its bytes)."""
        end = offset + size if size is not None else self.size
        position = offset
        for _ in range(min(count, _MAX_ENTRIES) if count else _MAX_ENTRIES):
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
            for _ in range(min(aux_count, _MAX_ENTRIES)):
                # Elf_Vernaux: vna_hash (I), vna_flags, vna_other (H H), vna_name, vna_next (I I).
                _, flags, _, name, following = struct.unpack(
                    self.order + "IHHII", self.bytes_at(aux_position, 16, ".gnu.version_r aux"))
                self.needs.append(VersionNeed(library, strings.at(name),
                                              bool(flags & VER_FLG_WEAK)))
                if following == 0:
                    break
                aux_position += following

    def version_defs(self, offset: int, size: int | None, count: int, strings: _Strings) -> None:
        # Elf_Verdef: vd_version, vd_flags, vd_ndx, vd_cnt (H×4), vd_hash, vd_aux, vd_next (I×3).
        for position, data in self._records(offset, size, count, 20, ".gnu.version_d"):
            _, flags, _, aux_count, _, aux, _ = struct.unpack(self.order + "HHHHIII", data)
            if flags & VER_FLG_BASE or aux_count == 0:
                continue  # the base entry names the file itself
            # Elf_Verdaux: vda_name, vda_next; the first names this version, later ones its parents.
            name, _ = struct.unpack(self.order + "II",
                                    self.bytes_at(position + aux, 8, ".gnu.version_d aux"))
            self.defs.append(strings.at(name))

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


# -- the cache -------------------------------------------------------------------------------

CACHE_FILE = "elf-facts-v1.json"
_CACHE_LIMIT = 50_000  # entries kept across sessions; the oldest go first


class ElfCache:
    """ELF facts keyed by (path, size, mtime), in memory and in ``directory``.

    ``directory`` is ``env.settings.cache_dir`` (pytest's cache dir); with
    ``None`` the cache lives in memory only. A corrupt or foreign cache file
    is ignored (and replaced on :meth:`save`); saving writes a temporary file
    and renames it, so a concurrent session never reads half a file.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._entries: dict[str, list[Any]] | None = None
        self._memory: dict[str, ElfFacts] = {}
        self._dirty = False
        self.hits = 0
        self.misses = 0

    @property
    def file(self) -> Path | None:
        return self.directory / CACHE_FILE if self.directory is not None else None

    def _load(self) -> dict[str, list[Any]]:
        if self._entries is None:
            self._entries = {}
            if self.file is not None:
                try:
                    data = json.loads(self.file.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    data = None
                if isinstance(data, dict) and isinstance(data.get("entries"), dict):
                    self._entries = data["entries"]
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
            stat = os.stat(path)
        except OSError as error:
            self._memory[path] = ElfFacts(path, reason=describe_error(error))
            return self._memory[path]
        stamp = [stat.st_size, stat.st_mtime_ns]
        entries = self._load()
        entry = entries.get(path)
        if isinstance(entry, list) and len(entry) == 3 and entry[:2] == stamp:
            try:
                known = ElfFacts.from_dict(entry[2])
            except (KeyError, TypeError, ValueError, AttributeError):
                known = None
            if known is not None:
                self._memory[path] = known
                self.hits += 1
                return known
        self.misses += 1
        facts, cacheable = _read_elf(path)
        self._memory[path] = facts
        if cacheable:
            entries[path] = [*stamp, facts.to_dict()]
            self._dirty = True
        return facts

    def save(self) -> None:
        """Write the cache if anything changed; failures only cost the next run time."""
        if not self._dirty or self.file is None or self._entries is None:
            return
        entries = self._entries
        if len(entries) > _CACHE_LIMIT:
            keep = list(entries)[-_CACHE_LIMIT:]
            entries = {key: entries[key] for key in keep}
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".elf-facts-", dir=self.file.parent)
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as stream:
                    json.dump({"entries": entries}, stream, separators=(",", ":"))
                os.replace(temporary, self.file)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError:
            return
        self._dirty = False
