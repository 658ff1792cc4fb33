"""The loader's cache, ``/etc/ld.so.cache``, read as glibc reads it (``elf/dl-cache.c``).

``ldconfig`` writes it; the loader looks a name up in it after ``LD_LIBRARY_PATH``
and the RUNPATH, and takes *one* entry (:meth:`LdCacheFacts.lookup`): the first
whose flags its ABI accepts, an entry for a ``glibc-hwcaps`` subdirectory the CPU
supports winning by priority. Both file formats are read (``glibc-ld.so.cache1.1``,
alone or after an old ``ld.so-1.7.0`` header); ``ldconfig`` is never run.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

from pytest_envguard.probes import Facts
from pytest_envguard.probes._io import TooLarge, explain, read_bytes

LD_SO_CACHE = "/etc/ld.so.cache"
_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_MAGIC = b"ld.so-1.7.0"

#: The ld.so.cache entry flags the loader of each ABI accepts, the first being its
#: default (an entry with the default flags ends the cache search). Source: glibc's
#: sysdeps/generic/ldconfig.h (FLAG_*) and the dl-cache.h of each architecture
#: (_DL_CACHE_DEFAULT_ID, _dl_cache_check_flags); elsewhere the generic rule (1 or 3).
CACHE_FLAGS: dict[tuple[int, str], tuple[int, ...]] = {
    (64, "EM_X86_64"): (0x0303,),
    (64, "EM_AARCH64"): (0x0A03,),
    (64, "EM_PPC64"): (0x0503,),
    (64, "EM_S390"): (0x0403,),
    (64, "EM_RISCV"): (0x1003,),
    (64, "EM_IA_64"): (0x0203,),
}
_GENERIC_CACHE_FLAGS = (0x0003, 0x0001)
#: ``DL_CACHE_HWCAP_EXTENSION`` and the ISA-level bits beside it (glibc's dl-cache.h).
_HWCAP_EXTENSION = 1 << 62
_ISA_LEVEL_MASK = (1 << 10) - 1

#: What (class, little-endian, machine) an object has: the loader only accepts equal ones.
Abi = tuple[int | None, bool | None, str | None]

# -- ld.so.cache -----------------------------------------------------------------------


@dataclass(frozen=True)
class CacheEntry:
    """One ld.so.cache record: the path, its flags, and the hardware capability it
    is for (``subdir``: the ``glibc-hwcaps`` name of an extension entry)."""

    path: str
    flags: int = 0x0303
    hwcap: int = 0
    subdir: str | None = None


def parse_ld_so_cache(data: bytes) -> dict[str, tuple[str, ...]]:
    """``soname → paths`` (in the cache's order) from the bytes of ``ld.so.cache``.

    Reads the current format (``glibc-ld.so.cache1.1``, alone or after an old
    header) and the old one (``ld.so-1.7.0``). Raises ``ValueError`` when the
    data is neither.
    """
    return {name: tuple(entry.path for entry in entries)
            for name, entries in parse_ld_so_cache_entries(data).items()}


def parse_ld_so_cache_entries(data: bytes) -> dict[str, tuple[CacheEntry, ...]]:
    """``soname → entries`` (flags and hwcaps kept, in the cache's order)."""
    if data.startswith(_NEW_MAGIC):
        return _parse_new_cache(data, 0)
    if not data.startswith(_OLD_MAGIC):
        raise ValueError("not an ld.so.cache file (unknown magic)")
    try:
        count, = struct.unpack_from("=I", data, 12)
        entries = 16
        strings = entries + count * 12
        # The new format may follow the old one, aligned to 8 bytes; it wins when present.
        new_start = (strings + 7) & ~7
        if count and count < len(data) and data[new_start:new_start + len(_NEW_MAGIC)] == _NEW_MAGIC:
            return _parse_new_cache(data, new_start)
        table: dict[str, list[CacheEntry]] = {}
        for index in range(count):
            flags, key, value = struct.unpack_from("=iII", data, entries + index * 12)
            table.setdefault(_c_string(data, strings + key), []).append(
                CacheEntry(_c_string(data, strings + value), flags))
    except struct.error as error:
        raise ValueError(f"truncated ld.so.cache ({error})") from error
    return {key: tuple(paths) for key, paths in table.items()}


def _parse_new_cache(data: bytes, start: int) -> dict[str, tuple[CacheEntry, ...]]:
    # Header: magic+version (20 bytes), nlibs, len_strings (u32), flags (u8), pad,
    # extension_offset, 3 unused (u32) = 48 bytes; then 24-byte entries:
    # flags (i32), key, value, osversion (u32), hwcap (u64). Strings are offsets
    # from the start of this header.
    if len(data) < start + 48:
        raise ValueError("truncated ld.so.cache (incomplete header)")
    try:
        count, _ = struct.unpack_from("=II", data, start + 20)
        order = {2: "<", 3: ">"}.get(data[start + 28], "=")
        if order != "=":
            count, = struct.unpack_from(order + "I", data, start + 20)
        if start + 48 + count * 24 > len(data):
            raise ValueError("truncated ld.so.cache (entries beyond the end)")
        subdirs = _hwcaps_names(data, order, struct.unpack_from(order + "I", data, start + 32)[0])
        table: dict[str, list[CacheEntry]] = {}
        for index in range(count):
            flags, key, value, _, hwcap = struct.unpack_from(order + "iIIIQ", data,
                                                             start + 48 + index * 24)
            subdir = None
            if (hwcap >> 32) & ~_ISA_LEVEL_MASK == _HWCAP_EXTENSION >> 32:
                position = hwcap & 0xFFFFFFFF
                subdir = subdirs[position] if position < len(subdirs) else ""
            table.setdefault(_c_string(data, start + key), []).append(
                CacheEntry(_c_string(data, start + value), flags, hwcap, subdir))
    except struct.error as error:
        raise ValueError(f"truncated ld.so.cache ({error})") from error
    return {key: tuple(paths) for key, paths in table.items()}


_EXTENSION_MAGIC = 0xEAA42174
_EXTENSION_GLIBC_HWCAPS = 1


def _hwcaps_names(data: bytes, order: str, offset: int) -> list[str]:
    """The ``glibc-hwcaps`` subdirectory names of the cache's extension section (the
    strings extension entries point at by index); [] when there is none."""
    if not offset or offset % 4 or offset + 8 > len(data):
        return []
    magic, count = struct.unpack_from(order + "II", data, offset)
    if magic != _EXTENSION_MAGIC or offset + 8 + count * 16 > len(data):
        return []
    for index in range(min(count, 64)):
        tag, _, where, size = struct.unpack_from(order + "IIII", data, offset + 8 + index * 16)
        if tag == _EXTENSION_GLIBC_HWCAPS and where + size <= len(data) and size % 4 == 0:
            return [_c_string(data, pointer) if pointer < len(data) else ""
                    for pointer in struct.unpack_from(f"{order}{size // 4}I", data, where)]
    return []


def _c_string(data: bytes, offset: int) -> str:
    if not 0 <= offset < len(data):
        raise ValueError(f"corrupt ld.so.cache: string offset {offset} out of range")
    end = data.find(b"\x00", offset)
    return data[offset:end if end >= 0 else len(data)].decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class LdCacheFacts(Facts):
    """The loader's ``ld.so.cache``: soname → paths, or why it could not be read."""

    path: str
    entries: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    reason: str | None = None
    records: Mapping[str, tuple[CacheEntry, ...]] | None = None

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "count": len(self.entries), "reason": self.reason}

    def candidates(self, name: str) -> tuple[CacheEntry, ...]:
        if self.records is not None:
            return self.records.get(name, ())
        return tuple(CacheEntry(path) for path in self.entries.get(name, ()))

    def lookup(self, name: str, abi: Abi, hwcaps: Sequence[str]) -> str | None:
        """The one path ``_dl_load_cache_lookup`` returns for ``name``: entries whose
        flags this ABI's loader accepts, in the cache's order; an extension entry for
        a ``glibc-hwcaps`` subdirectory in ``hwcaps`` (the active ones, best first)
        wins by priority; else the first plain entry. Entries for legacy hwcap
        subdirectories are passed over (ldconfig >= 2.37 writes none)."""
        accepted = CACHE_FLAGS.get((abi[0] or 0, abi[2] or ""), _GENERIC_CACHE_FLAGS)
        best: str | None = None
        best_priority = 0
        for entry in self.candidates(name):
            if entry.flags not in accepted:
                continue
            if entry.subdir is not None:
                if entry.subdir not in hwcaps:
                    continue
                priority = hwcaps.index(entry.subdir) + 1
                if best is not None and priority >= best_priority:
                    continue
                best, best_priority = entry.path, priority
                continue
            if best is not None:
                break  # extension entries come first; the best of them wins
            if entry.hwcap:
                continue
            best = entry.path
            if entry.flags == accepted[0]:
                break
        return best


#: A real ld.so.cache is tens of KiB to a few MiB.
MAX_LD_SO_CACHE = 64 << 20


def read_ld_so_cache(path: str = LD_SO_CACHE) -> LdCacheFacts:
    """The loader's cache file, parsed; the reason when it cannot be."""
    try:
        info = os.stat(path)
    except OSError as error:
        return LdCacheFacts(path, reason=explain(path, error))
    return _read_ld_so_cache(path, info.st_size, info.st_mtime_ns)


@lru_cache(maxsize=8)
def _read_ld_so_cache(path: str, size: int, mtime_ns: int) -> LdCacheFacts:
    # Keyed by size and mtime, so an `ldconfig` run in between is seen.
    try:
        data = read_bytes(path, MAX_LD_SO_CACHE)
    except (OSError, TooLarge) as error:
        return LdCacheFacts(path, reason=explain(path, error))
    try:
        records = parse_ld_so_cache_entries(data)
    except ValueError as error:
        return LdCacheFacts(path, reason=str(error))
    entries = {name: tuple(entry.path for entry in found) for name, found in records.items()}
    return LdCacheFacts(path, MappingProxyType(entries), records=MappingProxyType(records))
