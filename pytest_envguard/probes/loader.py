"""The dynamic loader's search, written out: which file would ``dlopen`` pick?

glibc's loader looks for a ``DT_NEEDED`` name (one without a slash) in this
order (``man 8 ld.so``):

1. the ``DT_RPATH`` of the object that needs it, then of the object that
   loaded that one, up to the executable — only while the object has no
   ``DT_RUNPATH``;
2. ``LD_LIBRARY_PATH``;
3. the object's own ``DT_RUNPATH`` (it does not apply to grandchildren);
4. ``/etc/ld.so.cache`` (:func:`parse_ld_so_cache` reads it; ``ldconfig``
   is never run);
5. the default directories.

A name already loaded (matched by soname) is not searched again.
``$ORIGIN`` in a path is the directory of the object that holds the path.
A file of the wrong ELF class or machine is skipped and the search goes on;
a file that is not ELF at all stops it with an error, as the loader does.

:func:`find_library` answers "where is ``libcudart.so.12`` / ``ssl`` /
``cudnn``?" for the ``library`` key, adding two places the loader does not
search on its own but from which pip and conda installs are loaded through
the RPATHs of the packages that use them: site-packages ``nvidia/*/lib``
and the conda prefix's ``lib``.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

from pytest_envguard.probes import Facts, Failure
from pytest_envguard.probes._io import TooLarge, explain, read_bytes
from pytest_envguard.probes.elf import ElfFacts, read_elf

LD_SO_CACHE = "/etc/ld.so.cache"
_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_MAGIC = b"ld.so-1.7.0"

#: Debian-style multiarch directory names by e_machine (used for the default dirs).
#: Source: Debian's multiarch tuples (https://wiki.debian.org/Multiarch/Tuples).
MULTIARCH: dict[tuple[int, str], str] = {
    (64, "EM_X86_64"): "x86_64-linux-gnu",
    (64, "EM_AARCH64"): "aarch64-linux-gnu",
    (64, "EM_PPC64"): "powerpc64le-linux-gnu",
    (64, "EM_S390"): "s390x-linux-gnu",
    (64, "EM_RISCV"): "riscv64-linux-gnu",
    (32, "EM_386"): "i386-linux-gnu",
    (32, "EM_ARM"): "arm-linux-gnueabihf",
}

#: What (class, little-endian, machine) an object has: the loader only accepts equal ones.
Abi = tuple[int | None, bool | None, str | None]

SOURCE_NVIDIA = "site-packages nvidia/*/lib"
SOURCE_CONDA = "conda prefix"


# -- ld.so.cache -----------------------------------------------------------------------


def parse_ld_so_cache(data: bytes) -> dict[str, tuple[str, ...]]:
    """``soname → paths`` (in the cache's order) from the bytes of ``ld.so.cache``.

    Reads the current format (``glibc-ld.so.cache1.1``, alone or after an old
    header) and the old one (``ld.so-1.7.0``). Raises ``ValueError`` when the
    data is neither.
    """
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
        table: dict[str, list[str]] = {}
        for index in range(count):
            _, key, value = struct.unpack_from("=iII", data, entries + index * 12)
            table.setdefault(_c_string(data, strings + key), []).append(
                _c_string(data, strings + value))
    except struct.error as error:
        raise ValueError(f"truncated ld.so.cache ({error})") from error
    return {key: tuple(paths) for key, paths in table.items()}


def _parse_new_cache(data: bytes, start: int) -> dict[str, tuple[str, ...]]:
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
        table: dict[str, list[str]] = {}
        for index in range(count):
            _, key, value, _, _ = struct.unpack_from(order + "iIIIQ", data, start + 48 + index * 24)
            table.setdefault(_c_string(data, start + key), []).append(
                _c_string(data, start + value))
    except struct.error as error:
        raise ValueError(f"truncated ld.so.cache ({error})") from error
    return {key: tuple(paths) for key, paths in table.items()}


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

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "count": len(self.entries), "reason": self.reason}


#: A real ld.so.cache is tens of KiB to a few MiB.
MAX_LD_SO_CACHE = 64 << 20


def read_ld_so_cache(path: str = LD_SO_CACHE) -> LdCacheFacts:
    """The loader's cache file, parsed; the reason when it cannot be."""
    try:
        stat = os.stat(path)
    except OSError as error:
        return LdCacheFacts(path, reason=explain(path, error))
    return _read_ld_so_cache(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _read_ld_so_cache(path: str, size: int, mtime_ns: int) -> LdCacheFacts:
    # Keyed by size and mtime, so an `ldconfig` run in between is seen.
    try:
        data = read_bytes(path, MAX_LD_SO_CACHE)
    except (OSError, TooLarge) as error:
        return LdCacheFacts(path, reason=explain(path, error))
    try:
        return LdCacheFacts(path, MappingProxyType(parse_ld_so_cache(data)))
    except ValueError as error:
        return LdCacheFacts(path, reason=str(error))


# -- the search ------------------------------------------------------------------------------


def default_dirs(abi: Abi) -> tuple[str, ...]:
    """The loader's built-in directories: multiarch ones (Debian, Ubuntu), then
    ``/lib64`` (Fedora, RHEL), then ``/lib``; wrong-class files are skipped anyway."""
    elf_class, _, machine = abi
    dirs: list[str] = []
    triplet = MULTIARCH.get((elf_class or 64, machine or ""))
    if triplet:
        dirs += [f"/lib/{triplet}", f"/usr/lib/{triplet}"]
    if elf_class != 32:
        dirs += ["/lib64", "/usr/lib64"]
    dirs += ["/lib", "/usr/lib"]
    return tuple(dirs)


def expand_tokens(entry: str, origin: str, platform: str) -> str:
    """``$ORIGIN``/``${ORIGIN}``, ``$PLATFORM`` and ``$LIB`` in an RPATH entry."""
    def substitute(match: re.Match[str]) -> str:
        variable = match.group(1) or match.group(2)
        if variable == "ORIGIN":
            return origin
        if variable == "PLATFORM":
            return platform
        return "lib64" if platform in ("x86_64", "aarch64", "ppc64le", "s390x") else "lib"

    return re.sub(r"\$(?:\{(ORIGIN|PLATFORM|LIB)\}|(ORIGIN|PLATFORM|LIB)\b)", substitute, entry)


def split_library_path(value: str) -> list[str]:
    """``LD_LIBRARY_PATH`` entries; ``:`` and ``;`` separate, an empty entry is the cwd."""
    if not value:
        return []
    return [entry or "." for entry in re.split(r"[:;]", value)]


@dataclass(frozen=True)
class Resolution(Facts):
    """Where one needed name was found, or why not."""

    name: str
    path: str | None
    source: str | None  # "LD_LIBRARY_PATH", "RUNPATH of x.so", "ld.so.cache", …
    reason: str | None = None
    skipped: tuple[str, ...] = ()  # candidates passed over: "path (ELF32 EM_386)"
    failure: Failure | None = None  # MISSING: not found; else the file that stopped the search


class Resolver:
    """The loader's search for one process: ``LD_LIBRARY_PATH`` and
    ``ld.so.cache`` fixed, every file and directory answer memoised."""

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        reader: Callable[[str], ElfFacts] = read_elf,
        ld_cache: LdCacheFacts | None = None,
        platform: str | None = None,
    ) -> None:
        self.reader = reader
        self.library_path = split_library_path(environ.get("LD_LIBRARY_PATH", ""))
        self._ld_cache = ld_cache
        self.platform = platform or os.uname().machine
        self._files: dict[str, ElfFacts | None] = {}
        self._defaults: dict[Abi, tuple[str, ...]] = {}

    @property
    def ld_cache(self) -> LdCacheFacts:
        if self._ld_cache is None:
            self._ld_cache = read_ld_so_cache()
        return self._ld_cache

    def facts(self, path: str) -> ElfFacts | None:
        """The ELF facts of ``path``, or None when there is no such file."""
        if path not in self._files:
            facts = self.reader(path)
            self._files[path] = None if facts.failure is Failure.MISSING else facts
        return self._files[path]

    def search_dirs(self, requester: ElfFacts, chain: Sequence[ElfFacts] = ()) -> list[tuple[str, str]]:
        """(directory, source) pairs in the order the loader tries them for
        ``requester``'s needs; ``chain`` is who loaded it, up to the executable."""
        dirs: list[tuple[str, str]] = []
        if not requester.runpath:
            for holder in (requester, *chain):
                if holder.rpath and not holder.runpath:
                    origin = origin_of(holder.path)
                    dirs += [(_clean(expand_tokens(entry, origin, self.platform)),
                              f"RPATH of {os.path.basename(holder.path)}")
                             for entry in holder.rpath]
        dirs += [(entry, "LD_LIBRARY_PATH") for entry in self.library_path]
        origin = origin_of(requester.path)
        dirs += [(_clean(expand_tokens(entry, origin, self.platform)),
                  f"RUNPATH of {os.path.basename(requester.path)}")
                 for entry in requester.runpath]
        return dirs

    def resolve(self, name: str, requester: ElfFacts, chain: Sequence[ElfFacts] = ()) -> Resolution:
        """Find ``name`` (a ``DT_NEEDED`` entry of ``requester``) as the loader would."""
        abi = requester.abi
        if "/" in name:
            return self._try(name, abi, name, "path in DT_NEEDED", []) or Resolution(
                name, None, None, f"{name} does not exist", failure=Failure.MISSING)
        skipped: list[str] = []
        for directory, source in self.search_dirs(requester, chain):
            found = self._try(name, abi, os.path.join(directory, name), source, skipped)
            if found is not None:
                return found
        for path in self.ld_cache.entries.get(name, ()):
            found = self._try(name, abi, path, "ld.so.cache", skipped)
            if found is not None:
                return found
        if abi not in self._defaults:
            self._defaults[abi] = default_dirs(abi)
        for directory in self._defaults[abi]:
            found = self._try(name, abi, os.path.join(directory, name), "default dirs", skipped)
            if found is not None:
                return found
        return Resolution(name, None, None, f"{name}: cannot open shared object file: "
                          "not found in the loader's search path", tuple(skipped), Failure.MISSING)

    def _try(self, name: str, abi: Abi, path: str, source: str,
             skipped: list[str]) -> Resolution | None:
        facts = self.facts(path)
        if facts is None:
            return None
        if facts.failure is not None:
            if facts.failure in (Failure.UNREADABLE, Failure.NOT_REGULAR):
                skipped.append(f"{path} ({facts.reason})")
                return None
            # A file that is there but is no ELF object ends the search with an error.
            return Resolution(name, None, source, f"{path}: {facts.reason}", tuple(skipped),
                              facts.failure)
        if abi[0] is not None and facts.abi != abi:
            skipped.append(f"{path} ({facts.describe_abi()})")
            return None
        return Resolution(name, path, source, None, tuple(skipped))


def _clean(directory: str) -> str:
    # `$ORIGIN/../pkg.libs` reads better as `/site/pkg.libs`; a relative entry
    # (relative to the cwd, as the loader takes it) stays relative.
    return os.path.normpath(directory) if os.path.isabs(directory) else directory


def origin_of(path: str) -> str:
    """``$ORIGIN``: the directory of the object as it was opened (symlinks kept)."""
    return os.path.dirname(os.path.abspath(path))


def loaded_objects(maps: str = "/proc/self/maps") -> list[str]:
    """The files this process has mapped (its loaded shared objects among them), in
    the order of ``/proc/self/maps``, each once."""
    from pytest_envguard.probes._io import read_small

    seen: dict[str, None] = {}
    for line in (read_small(maps, 64 << 20) or "").splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5].startswith("/"):
            seen.setdefault(fields[5].removesuffix(" (deleted)"), None)
    return list(seen)


# -- find_library: the `library` key -----------------------------------------------------------


@dataclass(frozen=True)
class Candidate(Facts):
    """One file that could answer a library request."""

    path: str
    source: str
    soname: str | None
    version: str | None


@dataclass(frozen=True)
class LibraryFacts(Facts):
    """Where the loader would find one library.

    ``path`` is None when it was not found (``reason`` says why); ``source``
    is how it was found: ``"LD_LIBRARY_PATH"``, ``"RPATH of python3.12"``,
    ``"ld.so.cache"``, ``"default dirs"``, ``"site-packages nvidia/*/lib"``
    or ``"conda prefix"``; ``version`` comes from the soname or the real file
    name (``libcudart.so.12`` → ``libcudart.so.12.4.127`` → ``"12.4.127"``).
    ``candidates`` lists every acceptable file in search order, the chosen one
    first, so a shadowing ``LD_LIBRARY_PATH`` copy is visible.
    """

    name: str  # what was asked for: "libcudart.so.12", "cudart", "ssl"
    path: str | None
    source: str | None
    soname: str | None
    version: str | None
    realpath: str | None = None
    reason: str | None = None
    candidates: tuple[Candidate, ...] = ()
    skipped: tuple[str, ...] = ()  # wrong class/machine, unreadable
    failure: Failure | None = None  # MISSING: not found; another kind: the search could not run


def library_version(name: str, realpath: str | None = None) -> str | None:
    """The version in a library's file name: the real file's if it says more.

    ``libssl.so.3`` → ``3``; ``libcudart.so.12`` with real file
    ``libcudart.so.12.4.127`` → ``12.4.127``; ``libfoo-1.2.so`` → ``1.2``.
    """
    versions = [_name_version(os.path.basename(candidate))
                for candidate in (realpath, name) if candidate]
    found = [version for version in versions if version]
    return max(found, key=lambda version: version.count(".")) if found else None


def _name_version(base: str) -> str | None:
    match = re.search(r"\.so\.(\d+(?:\.\d+)*)$", base)
    if match:
        return match.group(1)
    match = re.search(r"-(\d+(?:\.\d+)+)\.so$", base)
    return match.group(1) if match else None


def _wanted(name: str) -> Callable[[str], bool]:
    """Which file names answer a request: the exact soname, or for a short name
    (``ssl``, ``libssl``) ``libssl.so`` with any version suffix."""
    if ".so" in name:
        return lambda candidate: candidate == name
    stem = name if name.startswith("lib") else f"lib{name}"
    pattern = re.compile(re.escape(stem) + r"\.so(?:\.\d+)*$")
    return lambda candidate: bool(pattern.match(candidate))


def _site_dirs() -> list[str]:
    return [entry for entry in sys.path if entry and os.path.isdir(os.path.join(entry, "nvidia"))]


def _listing(directory: str, cache: dict[str, list[str]]) -> list[str]:
    if directory not in cache:
        try:
            cache[directory] = sorted(os.listdir(directory))
        except OSError:
            cache[directory] = []
    return cache[directory]


def find_library(
    name: str,
    environ: Mapping[str, str],
    *,
    site_dirs: Sequence[str] | None = None,
    executable: str | None = None,
    ld_cache: LdCacheFacts | None = None,
    reader: Callable[[str], ElfFacts] = read_elf,
) -> LibraryFacts:
    """Find ``name`` (a soname or a short name like ``cudart``) as the loader would
    for a ``dlopen`` from this interpreter (``ctypes.CDLL``).

    ``environ`` supplies ``LD_LIBRARY_PATH`` and ``CONDA_PREFIX``; ``site_dirs``
    the site-packages directories searched for ``nvidia/*/lib`` (default: the
    ``sys.path`` entries that have one); ``executable`` the interpreter whose
    RPATH and ELF class apply (default: ``sys.executable``). Never raises.
    """
    executable = os.path.realpath(executable or sys.executable)
    python = reader(executable)
    if not python.ok:
        return LibraryFacts(name, None, None, None, None,
                            reason=f"cannot read the interpreter {executable}: {python.reason}",
                            failure=python.failure)
    resolver = Resolver(environ, reader=reader, ld_cache=ld_cache)
    matches = _wanted(name)
    listings: dict[str, list[str]] = {}
    places: list[tuple[str, str]] = resolver.search_dirs(python)
    # dlopen from an extension module: the executable's RPATH applies as the
    # chain's last link, the executable's RUNPATH does not.
    places = [(directory, source) for directory, source in places
              if not source.startswith("RUNPATH")]
    conda = environ.get("CONDA_PREFIX")
    prefixes = {os.path.realpath(conda)} if conda else set()
    if os.path.isdir(os.path.join(sys.prefix, "conda-meta")):
        prefixes.add(os.path.realpath(sys.prefix))
    places = [(directory, _label(directory, source, prefixes)) for directory, source in places]

    candidates: list[Candidate] = []
    skipped: list[str] = []
    seen: set[str] = set()

    def consider(path: str, source: str) -> None:
        real = os.path.realpath(path)
        if real in seen:
            return
        facts = resolver.facts(path)
        if facts is None:
            return
        if not facts.ok or facts.abi != python.abi:
            skipped.append(f"{path} ({facts.reason or facts.describe_abi()})")
            return
        seen.add(real)
        base = os.path.basename(path)
        candidates.append(Candidate(path, source, facts.soname,
                                    library_version(facts.soname or base, real)))

    def scan(directory: str, source: str) -> None:
        if ".so" in name and "/" not in name:
            if os.path.lexists(os.path.join(directory, name)):
                consider(os.path.join(directory, name), source)
            return
        for entry in _version_sorted(item for item in _listing(directory, listings)
                                     if matches(item)):
            consider(os.path.join(directory, entry), source)

    for directory, source in places:
        scan(directory, source)
    for key, paths in resolver.ld_cache.entries.items():
        if matches(key):
            for path in paths:
                consider(path, "ld.so.cache")
    for directory in default_dirs(python.abi):
        scan(directory, "default dirs")
    for site in site_dirs if site_dirs is not None else _site_dirs():
        for package in _listing(os.path.join(site, "nvidia"), listings):
            scan(os.path.join(site, "nvidia", package, "lib"), SOURCE_NVIDIA)
    for prefix in sorted(prefixes):
        scan(os.path.join(prefix, "lib"), SOURCE_CONDA)

    if not candidates:
        where = "LD_LIBRARY_PATH, ld.so.cache, the default dirs, site-packages nvidia/*/lib"
        if prefixes:
            where += ", the conda prefix"
        reason = f"no {name if '.so' in name else _stem(name) + '.so*'} in {where}"
        if skipped:
            reason += f"; skipped {', '.join(skipped[:3])}"
        return LibraryFacts(name, None, None, None, None, reason=reason, skipped=tuple(skipped),
                            failure=Failure.MISSING)
    best = candidates[0]
    return LibraryFacts(name, best.path, best.source, best.soname, best.version,
                        realpath=os.path.realpath(best.path), candidates=tuple(candidates),
                        skipped=tuple(skipped))


def _stem(name: str) -> str:
    return name if name.startswith("lib") else f"lib{name}"


def _label(directory: str, source: str, prefixes: set[str]) -> str:
    real = os.path.realpath(directory)
    for prefix in prefixes:
        if real == prefix or real.startswith(prefix + os.sep):
            return f"{source}, {SOURCE_CONDA}"
    return source


def _version_sorted(names: Iterable[str]) -> list[str]:
    """Highest version first: ``libssl.so.3`` before ``libssl.so.1.1`` before ``libssl.so``."""
    def key(base: str) -> tuple[int, ...]:
        version = _name_version(base)
        return tuple(int(part) for part in version.split(".")) if version else ()

    return sorted(names, key=key, reverse=True)
