"""The dynamic loader's search, as glibc's ``elf/dl-load.c`` does it: which file
would ``dlopen`` pick — or where would it stop with an error?

For a name without a slash (a ``DT_NEEDED`` entry, ``dlopen("libssl.so.3")``) the
loader (``_dl_map_object``):

0. takes an object already loaded under that name or soname;
1. searches the ``DT_RPATH`` of the object that needs the name, then of the object
   that loaded that one, and so on, then the executable's — only while the needing
   object has no ``DT_RUNPATH`` (an object with both has only its ``DT_RUNPATH``);
2. ``LD_LIBRARY_PATH``;
3. the needing object's own ``DT_RUNPATH`` (it does not apply to grandchildren);
4. ``/etc/ld.so.cache``: *one* entry, the first whose flags fit this ABI, a
   ``glibc-hwcaps`` entry the CPU supports winning over a plain one
   (:meth:`LdCacheFacts.lookup`; ``ldconfig`` is never run);
5. the system directories — neither 4 nor 5 for an object flagged
   ``DF_1_NODEFLIB``.

Every directory of steps 1, 2, 3 and 5 is tried with each hardware-capability
subdirectory first: ``glibc-hwcaps/x86-64-v4/`` … for the levels the CPU supports
(glibc >= 2.33), then on glibc < 2.37 the legacy ``tls/haswell/avx512_1/x86_64/`` …
combinations, then the directory itself. The order is the running loader's own:
:func:`probe_loader_config` asks it once (``LD_DEBUG=libs``), and the answer also
gives the system directories and what ``$PLATFORM`` and ``$LIB`` expand to.

At each candidate file the loader (``open_path``, ``open_verify``):

* goes on when there is no such file or it may not be read (``ENOENT``, ``EACCES``);
* skips an ELF file of another class or machine and goes on;
* stops the whole search with an error at anything else with that name: a
  directory ("cannot read file data"), an empty or short file ("file too short"),
  text ("invalid ELF header"), a wrong byte order, ELF version, OS ABI or type —
  even when a good copy comes later;
* ends the current list (not the search) on any other ``open`` error (a symbolic
  link loop, a name too long).

:func:`find_library` answers "where is ``libcudart.so.12`` / ``ssl`` / ``cudnn``?"
for the ``library`` key: what a plain ``dlopen`` from this interpreter opens, and
two places the loader does not search on its own but from which pip and conda
installs are loaded through the RPATHs of the packages that use them:
site-packages ``nvidia/*/lib`` and the conda prefix's ``lib``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_envguard.probes import Facts, Failure
from pytest_envguard.probes._io import explain
from pytest_envguard.probes.elf import ElfFacts, ElfHeader, read_elf
from pytest_envguard.probes.ldcache import Abi, LdCacheFacts, read_ld_so_cache

if TYPE_CHECKING:
    from pytest_envguard.probes.extensions import ExtensionChecker

#: Debian-style multiarch directory names by e_machine (used for the default dirs
#: when the loader cannot be asked). Source: Debian's multiarch tuples
#: (https://wiki.debian.org/Multiarch/Tuples).
MULTIARCH: dict[tuple[int, str], str] = {
    (64, "EM_X86_64"): "x86_64-linux-gnu",
    (64, "EM_AARCH64"): "aarch64-linux-gnu",
    (64, "EM_PPC64"): "powerpc64le-linux-gnu",
    (64, "EM_S390"): "s390x-linux-gnu",
    (64, "EM_RISCV"): "riscv64-linux-gnu",
    (32, "EM_386"): "i386-linux-gnu",
    (32, "EM_ARM"): "arm-linux-gnueabihf",
}

#: ``LIBC_ABI_MAX`` per machine: an ``ELFOSABI_GNU`` object may carry an ABI version
#: below it. Source: glibc's libc-abis (DEFAULT, UNIQUE, IFUNC where listed, ABSOLUTE).
_LIBC_ABI_MAX: dict[int, int] = {62: 4, 3: 4, 21: 4, 20: 4, 43: 4, 2: 4, 243: 4}
_ELFOSABI_SYSV, _ELFOSABI_GNU = 0, 3
_ET_EXEC, _ET_DYN = 2, 3

SOURCE_LOADED = "already loaded"
SOURCE_NVIDIA = "site-packages nvidia/*/lib"
SOURCE_CONDA = "conda prefix"


# -- the loader's own configuration ----------------------------------------------------------


@dataclass(frozen=True)
class LoaderConfig(Facts):
    """What the running loader adds to every search: the subdirectories it tries in
    each directory (in order, ``""`` — the directory itself — last), its system
    directories and the values of ``$PLATFORM`` and ``$LIB``.

    ``reason`` says why the values are assumed rather than the loader's own (no
    loader to ask: a static or musl interpreter; the loader did not answer).
    """

    rtld: str | None
    subdirs: tuple[str, ...] = ("",)
    system_dirs: tuple[str, ...] = ()
    platform: str = ""
    lib: str = "lib"
    reason: str | None = None

    @property
    def hwcaps(self) -> tuple[str, ...]:
        """The active ``glibc-hwcaps`` subdirectory names, best first."""
        return tuple(subdir.removeprefix("glibc-hwcaps/") for subdir in self.subdirs
                     if subdir.startswith("glibc-hwcaps/"))

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LoaderConfig:
        """The inverse of :meth:`to_dict` (for the disk cache); raises on a bad shape."""
        def strings(name: str) -> tuple[str, ...]:
            value = data[name]
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise ValueError(name)
            return tuple(value)

        rtld, platform, lib = data["rtld"], data["platform"], data["lib"]
        if not (isinstance(rtld, str) and isinstance(platform, str) and isinstance(lib, str)):
            raise ValueError("rtld")
        return cls(rtld, strings("subdirs"), strings("system_dirs"), platform, lib)


#: A directory no one can create: the loader only prints what it would try there.
_PROBE_DIR = "/proc/self/envguard-probe"
_PROBE_ABSENT = "libenvguard-probe-absent.so"
_SEARCH_LINE = re.compile(r"search path=(?P<dirs>.*?)\s*\((?P<what>LD_LIBRARY_PATH|"
                          r"system search path)\)\s*$")


CONFIG_CACHE_FILE = "loader-config.json"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def probe_loader_config(executable: str, environ: Mapping[str, str], timeout: float = 10.0, *,
                        cache_dir: Path | None = None) -> LoaderConfig:
    """Ask the interpreter's own loader (its ``PT_INTERP``) how it searches.

    It runs ``ld.so --list EXECUTABLE`` with ``LD_DEBUG=libs``, an
    ``LD_LIBRARY_PATH`` of a directory that cannot exist (followed by ones holding
    ``$PLATFORM`` and ``$LIB``) and an ``LD_PRELOAD`` of a name that exists nowhere:
    the loader prints every directory it would try for it, subdirectories
    included, the system directories last. ``GLIBC_TUNABLES`` and ``LD_HWCAP_MASK``
    of ``environ`` are passed on (they change the hardware capabilities). The
    answer is kept for the process, keyed by the loader file and those values.
    """
    from pytest_envguard.probes.elf import read_interpreter

    real = os.path.realpath(executable)
    rtld = read_interpreter(real)
    tunables = (environ.get("GLIBC_TUNABLES", ""), environ.get("LD_HWCAP_MASK", ""))
    if rtld is None:
        return _assumed_config(real, None, "the interpreter names no dynamic loader (PT_INTERP)")
    try:
        info = os.stat(rtld)
        own = os.stat(real)
    except OSError as error:
        return _assumed_config(real, rtld, explain(rtld, error))
    stamp = (info.st_size, info.st_mtime_ns, info.st_ino)
    if cache_dir is None:
        return _ask_loader(rtld, real, stamp, tunables, timeout)
    # The answer depends on the loader, the executable, the tunables and the CPU (the
    # glibc-hwcaps levels): all in the key, with the boot, so that a cache dir carried
    # to another machine (a CI cache) is never trusted there.
    from pytest_envguard.probes._diskcache import DiskCache
    from pytest_envguard.probes._io import read_small

    key = "|".join(map(str, (rtld, *stamp, real, own.st_size, own.st_mtime_ns, *tunables,
                             (read_small(_BOOT_ID) or "").strip(), _cpu_identity())))
    disk = DiskCache(cache_dir, CONFIG_CACHE_FILE, max_bytes=1 << 20)
    cached = (disk.read() or {}).get(key)
    if isinstance(cached, dict):
        try:
            return LoaderConfig.from_dict(cached)
        except (KeyError, TypeError, ValueError):
            pass
    config = _ask_loader(rtld, real, stamp, tunables, timeout)
    if config.reason is None:
        def merge(entries: dict[str, object]) -> None:
            entries.clear()  # one machine, one answer: older keys are stale
            entries[key] = config.to_dict()

        disk.update(merge)
    return config


def _cpu_identity() -> str:
    """The CPU's model and feature flags, hashed (what the hardware capabilities follow)."""
    import hashlib

    from pytest_envguard.probes._io import open_regular

    try:
        with open_regular("/proc/cpuinfo") as stream:
            head = stream.read(64 << 10).decode("utf-8", "replace")
    except OSError:
        head = ""
    first = head.split("\n\n", 1)[0]  # the first processor: the others are alike
    wanted = [line for line in first.splitlines()
              if line.startswith(("model name", "flags", "Features", "cpu\t", "isa"))]
    return hashlib.sha256("\n".join(dict.fromkeys(wanted)).encode()).hexdigest()[:16]


@lru_cache(maxsize=16)
def _ask_loader(rtld: str, executable: str, stamp: tuple[int, int, int],
                tunables: tuple[str, str], timeout: float) -> LoaderConfig:
    from pytest_envguard.probes._child import run_program

    environ = {"LD_DEBUG": "libs", "LD_PRELOAD": _PROBE_ABSENT,
               "LD_LIBRARY_PATH": f"{_PROBE_DIR}:{_PROBE_DIR}/p/$PLATFORM:{_PROBE_DIR}/l/$LIB"}
    for name, value in zip(("GLIBC_TUNABLES", "LD_HWCAP_MASK"), tunables, strict=True):
        if value:
            environ[name] = value
    result = run_program([rtld, "--list", executable], environ=environ, timeout=timeout)
    if result.failure is not None:
        return _assumed_config(executable, rtld, f"{rtld} --list: {result.reason}")
    config = parse_loader_debug(result.stderr, rtld)
    if config is None:
        tail = result.stderr_tail or "no output"
        return _assumed_config(executable, rtld, f"{rtld} did not print its search path ({tail})")
    return config


def parse_loader_debug(output: str, rtld: str | None = None) -> LoaderConfig | None:
    """The configuration in the ``LD_DEBUG=libs`` output of :func:`probe_loader_config`'s
    run; None when the output does not hold it."""
    env_dirs: list[str] | None = None
    system: list[str] | None = None
    for line in output.splitlines():
        match = _SEARCH_LINE.search(line)
        if not match:
            continue
        dirs = [entry for entry in match.group("dirs").split(":") if entry]
        if match.group("what") == "LD_LIBRARY_PATH" and env_dirs is None and dirs:
            env_dirs = dirs
        elif match.group("what") == "system search path" and system is None and dirs:
            system = dirs
    if not env_dirs or _PROBE_DIR not in env_dirs:
        return None
    per_dir = env_dirs.index(_PROBE_DIR) + 1
    subdirs = (*(entry[len(_PROBE_DIR) + 1:] for entry in env_dirs[:per_dir - 1]), "")
    if any(not entry.startswith(_PROBE_DIR + "/") for entry in env_dirs[:per_dir - 1]):
        return None

    def base(prefix: str) -> str | None:
        group = [entry for entry in env_dirs if entry.startswith(prefix)]
        return group[-1][len(prefix):] if len(group) == per_dir else None

    platform = base(f"{_PROBE_DIR}/p/") or ""
    lib = base(f"{_PROBE_DIR}/l/") or "lib"
    system_dirs: list[str] = []
    if system and len(system) % per_dir == 0:
        system_dirs = system[per_dir - 1::per_dir]
    return LoaderConfig(rtld, subdirs, tuple(system_dirs), platform, lib,
                        None if system_dirs else "the loader did not print its system directories")


def _assumed_config(executable: str, rtld: str | None, reason: str) -> LoaderConfig:
    abi = read_elf(executable).abi
    machine = os.uname().machine
    lib = "lib64" if abi[0] == 64 and os.path.isdir("/lib64") else "lib"
    return LoaderConfig(rtld, ("",), default_dirs(abi), machine, lib,
                        f"{reason}; no hardware-capability subdirectories assumed")


def default_dirs(abi: Abi) -> tuple[str, ...]:
    """The built-in directories when the loader cannot be asked: multiarch ones
    (Debian, Ubuntu), then ``/lib64`` (Fedora, RHEL), then ``/lib``."""
    elf_class, _, machine = abi
    dirs: list[str] = []
    triplet = MULTIARCH.get((elf_class or 64, machine or ""))
    if triplet:
        dirs += [f"/lib/{triplet}", f"/usr/lib/{triplet}"]
    if elf_class != 32:
        dirs += ["/lib64", "/usr/lib64"]
    dirs += ["/lib", "/usr/lib"]
    return tuple(dirs)


def expand_tokens(entry: str, origin: str, platform: str, lib: str = "lib") -> str | None:
    """``$ORIGIN``/``${ORIGIN}``, ``$PLATFORM`` and ``$LIB`` in an RPATH entry, as
    ``_dl_dst_substitute`` does: a token is only one when no identifier character
    follows; a known token with no value (an empty ``$PLATFORM``) drops the entry (None)."""
    values = {"ORIGIN": origin, "PLATFORM": platform, "LIB": lib}
    dropped = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal dropped
        value = values[match.group(1) or match.group(2)]
        dropped = dropped or not value
        return value

    expanded = re.sub(r"\$(?:\{(ORIGIN|PLATFORM|LIB)\}|(ORIGIN|PLATFORM|LIB)(?![A-Za-z0-9_]))",
                      substitute, entry)
    return None if dropped else expanded


def split_library_path(value: str) -> list[str]:
    """``LD_LIBRARY_PATH`` entries; ``:`` and ``;`` separate, an empty entry is the cwd."""
    if not value:
        return []
    return [entry or "." for entry in re.split(r"[:;]", value)]


# -- the search ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolution(Facts):
    """Where one needed name was found, or why not.

    ``failure`` is ``MISSING`` when no search found it; any other kind when the
    loader stopped at ``stopped_at``, a file with the name that it cannot load
    (``reason`` is the loader's error), and would look no further.
    """

    name: str
    path: str | None
    source: str | None  # "LD_LIBRARY_PATH", "RUNPATH of x.so", "ld.so.cache", …
    reason: str | None = None
    skipped: tuple[str, ...] = ()  # candidates passed over: "path (ELF32 EM_386)"
    failure: Failure | None = None
    stopped_at: str | None = None  # the file that ends the search with an error


class _Outcome(Enum):
    """What the loader makes of one candidate path."""

    FOUND = "found"
    ABSENT = "absent"  # ENOENT: go on
    DENIED = "denied"  # EACCES: go on
    SKIPPED = "skipped"  # another ELF class or machine: go on
    LIST_ENDS = "list-ends"  # another open() error: this search list ends
    FATAL = "fatal"  # the search stops with an error


@dataclass(frozen=True)
class _Tried:
    outcome: _Outcome
    reason: str | None = None
    failure: Failure | None = None


_ABSENT = _Tried(_Outcome.ABSENT)
#: Errors of ``open()`` after which the loader goes on with the next directory.
_GO_ON = (errno.ENOENT, errno.EACCES)


def header_verdict(header: ElfHeader, host: ElfHeader) -> tuple[_Outcome, str | None]:
    """``open_verify``'s checks of an ELF header against the loader's own (``host``):
    skip another class or machine, stop with the loader's message at anything else
    it cannot use, else accept."""
    ehdr_size = 64 if host.ei_class == 2 else 52
    if header.size < ehdr_size:
        return _Outcome.FATAL, "file too short"
    if not header.magic_ok:
        return _Outcome.FATAL, "invalid ELF header"
    if header.ei_class != host.ei_class:
        return _Outcome.SKIPPED, f"wrong ELF class: ELFCLASS{32 if header.ei_class == 1 else 64}" \
            if header.ei_class in (1, 2) else f"wrong ELF class {header.ei_class}"
    if header.ei_data != host.ei_data:
        order = "little" if host.ei_data == 1 else "big"
        return _Outcome.FATAL, f"ELF file data encoding not {order}-endian"
    if header.ei_version != 1:
        return _Outcome.FATAL, "ELF file version ident does not match current one"
    if header.ei_osabi not in (_ELFOSABI_SYSV, _ELFOSABI_GNU):
        return _Outcome.FATAL, "ELF file OS ABI invalid"
    abi_max = _LIBC_ABI_MAX.get(host.e_machine, 3)
    if header.ei_abiversion and not (header.ei_osabi == _ELFOSABI_GNU
                                     and header.ei_abiversion < abi_max):
        return _Outcome.FATAL, "ELF file ABI version invalid"
    if not header.padding_zero:
        return _Outcome.FATAL, "nonzero padding in e_ident"
    if header.e_version != 1:
        return _Outcome.FATAL, "ELF file version does not match current one"
    if header.e_machine != host.e_machine:
        return _Outcome.SKIPPED, f"another machine (e_machine {header.e_machine})"
    if header.e_type not in (_ET_DYN, _ET_EXEC):
        return _Outcome.FATAL, "only ET_DYN and ET_EXEC can be loaded"
    if header.e_phentsize != (56 if host.ei_class == 2 else 32):
        return _Outcome.FATAL, "ELF file's phentsize not the expected size"
    if not header.phdrs_in_file:
        return _Outcome.FATAL, "cannot read file data"
    return _Outcome.FOUND, None


class Resolver:
    """The loader's search for one process: ``LD_LIBRARY_PATH``, ``ld.so.cache`` and
    the loader's configuration fixed, every file and directory answer memoised (as
    the loader remembers which directories exist).

    ``main`` is the executable: its ``DT_RPATH`` ends every RPATH chain, and its
    ELF header is the one candidates must match (unless ``host`` is given).
    """

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        reader: Callable[[str], ElfFacts] = read_elf,
        ld_cache: LdCacheFacts | None = None,
        config: LoaderConfig | None = None,
        main: ElfFacts | None = None,
        platform: str | None = None,
    ) -> None:
        self.reader = reader
        self.environ = environ
        self._ld_cache = ld_cache
        self._config = config
        self.main = main
        self._platform = platform
        self._files: dict[str, ElfFacts | None] = {}
        self._tried: dict[str, _Tried] = {}
        self._is_dir: dict[str, tuple[str, ...]] = {}
        self._lists: dict[tuple[str, tuple[str, ...]], tuple[str | None, _Tried | None,
                                                             list[str]]] = {}
        self._expanded: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        self._library_path: list[str] | None = None

    @property
    def ld_cache(self) -> LdCacheFacts:
        if self._ld_cache is None:
            self._ld_cache = read_ld_so_cache()
        return self._ld_cache

    @property
    def config(self) -> LoaderConfig:
        if self._config is None:
            executable = self.main.path if self.main is not None else sys.executable
            self._config = probe_loader_config(executable, self.environ)
        return self._config

    @property
    def platform(self) -> str:
        return self._platform or self.config.platform

    @property
    def library_path(self) -> list[str]:
        """``LD_LIBRARY_PATH``, its tokens expanded for the executable."""
        if self._library_path is None:
            origin = os.path.dirname(os.path.realpath(self.main.path)) if self.main else ""
            entries = [self._expand(entry, origin)
                       for entry in split_library_path(self.environ.get("LD_LIBRARY_PATH", ""))]
            self._library_path = [entry for entry in entries if entry is not None]
        return self._library_path

    def _expand(self, entry: str, origin: str) -> str | None:
        if not entry:
            return "."  # an empty RPATH element is the working directory, as in LD_LIBRARY_PATH
        expanded = expand_tokens(entry, origin, self.platform, self.config.lib)
        if not expanded:
            return None
        return _clean(expanded)

    def facts(self, path: str) -> ElfFacts | None:
        """The ELF facts of ``path``, or None when there is no such file."""
        if path not in self._files:
            facts = self.reader(path)
            self._files[path] = None if facts.failure is Failure.MISSING else facts
        return self._files[path]

    def host_header(self, requester: ElfFacts) -> ElfHeader | None:
        source = self.main if self.main is not None and self.main.header else requester
        return source.header

    # -- the lists --------------------------------------------------------------------------

    def search_lists(self, requester: ElfFacts,
                     chain: Sequence[ElfFacts] = ()) -> list[tuple[str, list[str]]]:
        """(source, directories) for each list the loader searches for ``requester``'s
        needs before ld.so.cache, in order; ``chain`` is who loaded it (not the
        executable: its RPATH is added here, once)."""
        lists: list[tuple[str, list[str]]] = []
        if not requester.runpath:
            holders = [requester, *chain]
            if self.main is not None and all(holder.path != self.main.path for holder in holders):
                holders.append(self.main)
            for holder in holders:
                if holder.rpath and not holder.runpath:
                    lists.append((f"RPATH of {os.path.basename(holder.path)}",
                                  self._dirs(holder.rpath, holder)))
        lists.append(("LD_LIBRARY_PATH", self.library_path))
        if requester.runpath:
            lists.append((f"RUNPATH of {os.path.basename(requester.path)}",
                          self._dirs(requester.runpath, requester)))
        return lists

    def _dirs(self, entries: tuple[str, ...], holder: ElfFacts) -> list[str]:
        key = (holder.path, entries)
        if key not in self._expanded:
            origin = origin_of(holder.path, executable=holder is self.main)
            expanded = (self._expand(entry, origin) for entry in entries)
            self._expanded[key] = [entry for entry in expanded if entry is not None]
        return self._expanded[key]

    def search_dirs(self, requester: ElfFacts, chain: Sequence[ElfFacts] = ()) -> list[tuple[str, str]]:
        """(directory, source) pairs in the order the loader tries them for
        ``requester``'s needs before ld.so.cache (subdirectories not listed)."""
        return [(directory, source) for source, dirs in self.search_lists(requester, chain)
                for directory in dirs]

    def system_dirs(self) -> tuple[str, ...]:
        return self.config.system_dirs

    # -- one name ---------------------------------------------------------------------------

    def resolve(self, name: str, requester: ElfFacts, chain: Sequence[ElfFacts] = ()) -> Resolution:
        """Find ``name`` (a ``DT_NEEDED`` entry of ``requester``) as the loader would."""
        host = self.host_header(requester)
        skipped: list[str] = []
        if "/" in name:
            path = self._expand(name, origin_of(requester.path)) or name
            tried = self.examine(path, host)
            if tried.outcome is _Outcome.FOUND:
                return Resolution(name, path, "path in DT_NEEDED")
            if tried.outcome is _Outcome.FATAL:
                return self._stopped(name, path, "path in DT_NEEDED", tried, skipped)
            return Resolution(name, None, None, f"{path}: cannot open shared object file: "
                              f"{tried.reason or 'No such file or directory'}",
                              failure=Failure.MISSING)
        for source, dirs in self.search_lists(requester, chain):
            found = self._search_list(name, dirs, source, host, skipped)
            if found is not None:
                return found
        if not requester.nodeflib:
            cached = self.ld_cache.lookup(name, requester.abi if host is None else _abi_of(host),
                                          self.config.hwcaps)
            if cached is not None:
                tried = self.examine(cached, host)
                if tried.outcome is _Outcome.FOUND:
                    return Resolution(name, cached, "ld.so.cache", skipped=tuple(skipped))
                if tried.outcome is _Outcome.FATAL:
                    return self._stopped(name, cached, "ld.so.cache", tried, skipped)
                if tried.outcome is _Outcome.SKIPPED:
                    skipped.append(f"{cached} ({tried.reason})")
            found = self._search_list(name, list(self.system_dirs()), "system dirs", host,
                                      skipped)
            if found is not None:
                return found
        return Resolution(name, None, None, f"{name}: cannot open shared object file: "
                          "not found in the loader's search path", tuple(skipped), Failure.MISSING)

    def _search_list(self, name: str, dirs: Sequence[str], source: str, host: ElfHeader | None,
                     skipped: list[str]) -> Resolution | None:
        """``open_path`` over one list: the first file found, a stop, or None (not in
        this list, or the list ended early on an ``open`` error)."""
        key = (name, tuple(dirs))
        if key not in self._lists:
            self._lists[key] = self._scan_list(name, dirs, host)
        path, tried, passed = self._lists[key]
        skipped += passed
        if tried is not None and tried.outcome is _Outcome.FOUND:
            return Resolution(name, path, source, skipped=tuple(skipped))
        if tried is not None and tried.outcome is _Outcome.FATAL:
            return self._stopped(name, path or "", source, tried, skipped)
        return None

    def _scan_list(self, name: str, dirs: Sequence[str], host: ElfHeader | None
                   ) -> tuple[str | None, _Tried | None, list[str]]:
        """(the file, what was made of it, the files passed over) for one list: the file
        is the one found or the one the search stops at; None when neither."""
        passed: list[str] = []
        for directory in dirs:
            last: _Tried | None = None
            for place in self._places(directory):
                path = os.path.join(place, name)
                tried = self.examine(path, host)
                if tried.outcome in (_Outcome.FOUND, _Outcome.FATAL):
                    return path, tried, passed
                if tried.outcome in (_Outcome.SKIPPED, _Outcome.DENIED):
                    passed.append(f"{path} ({tried.reason})")
                last = tried
            if last is not None and last.outcome is _Outcome.LIST_ENDS:
                break  # the rest of this list is not searched
        return None, None, passed

    def _places(self, directory: str) -> tuple[str, ...]:
        """The subdirectories of ``directory`` the loader tries, in order, then itself:
        only those that exist (the loader marks a directory it cannot stat as
        nonexistent and never tries it again; a relative one, the cwd, always counts)."""
        if directory not in self._is_dir:
            places = (os.path.join(directory, subdir) if subdir else directory
                      for subdir in self.config.subdirs)
            self._is_dir[directory] = tuple(
                place for place in places if not os.path.isabs(place) or os.path.isdir(place))
        return self._is_dir[directory]

    def _stopped(self, name: str, path: str, source: str, tried: _Tried,
                 skipped: list[str]) -> Resolution:
        return Resolution(name, None, source, f"{path}: {tried.reason}", tuple(skipped),
                          tried.failure or Failure.CORRUPT, stopped_at=path)

    def examine(self, path: str, host: ElfHeader | None = None) -> _Tried:
        """What the loader makes of the file at ``path`` (``open_verify``), memoised."""
        if path not in self._tried:
            self._tried[path] = self._examine(path, host)
        return self._tried[path]

    def _examine(self, path: str, host: ElfHeader | None) -> _Tried:
        try:
            info = os.stat(path)
        except OSError as error:
            return _open_error(error.errno)
        if stat.S_ISDIR(info.st_mode):
            return _Tried(_Outcome.FATAL, "cannot read file data: Is a directory",
                          Failure.NOT_REGULAR)
        if stat.S_ISFIFO(info.st_mode):
            return _Tried(_Outcome.FATAL, "a FIFO: the loader would wait for a writer forever",
                          Failure.NOT_REGULAR)
        if stat.S_ISSOCK(info.st_mode):
            return _open_error(errno.ENXIO)
        if not stat.S_ISREG(info.st_mode):
            return _Tried(_Outcome.FATAL, "a device file, not a shared object", Failure.NOT_REGULAR)
        if not os.access(path, os.R_OK):
            return _Tried(_Outcome.DENIED, "Permission denied", Failure.UNREADABLE)
        facts = self.facts(path)
        if facts is None:
            return _ABSENT  # gone in between
        if facts.header is None or host is None:
            return self._legacy_verdict(facts)
        outcome, reason = header_verdict(facts.header, host)
        if outcome is _Outcome.FATAL:
            return _Tried(outcome, reason, facts.failure or (
                Failure.NOT_ELF if reason in ("file too short", "invalid ELF header")
                else Failure.CORRUPT))
        if outcome is _Outcome.SKIPPED:
            return _Tried(outcome, reason)
        if facts.failure is not None:
            # The header passes, the rest does not: the loader maps a cut or corrupt
            # file and fails (or is killed by SIGBUS) on the way.
            return _Tried(_Outcome.FATAL, facts.reason, facts.failure)
        return _Tried(_Outcome.FOUND)

    def _legacy_verdict(self, facts: ElfFacts) -> _Tried:
        # No header (an entry from an older cache): the same rules on the parsed fields.
        if facts.failure in (Failure.UNREADABLE,):
            return _Tried(_Outcome.DENIED, facts.reason, facts.failure)
        if facts.failure is not None:
            return _Tried(_Outcome.FATAL, facts.reason, facts.failure)
        if self.main is not None and facts.abi != self.main.abi:
            return _Tried(_Outcome.SKIPPED, facts.describe_abi())
        return _Tried(_Outcome.FOUND)


def _open_error(number: int | None) -> _Tried:
    if number in (errno.ENOENT, errno.ENOTDIR):
        return _ABSENT
    if number in _GO_ON:
        return _Tried(_Outcome.DENIED, "Permission denied", Failure.UNREADABLE)
    text = os.strerror(number) if number else "error"
    return _Tried(_Outcome.LIST_ENDS, text, Failure.UNREADABLE)


def _abi_of(header: ElfHeader) -> Abi:
    from pytest_envguard.probes.elf import machine_name

    return (32 if header.ei_class == 1 else 64, header.ei_data == 1, machine_name(header.e_machine))


def _clean(directory: str) -> str:
    # `$ORIGIN/../pkg.libs` reads better as `/site/pkg.libs`; a relative entry
    # (relative to the cwd, as the loader takes it) stays relative.
    return os.path.normpath(directory) if os.path.isabs(directory) else directory


def origin_of(path: str, *, executable: bool = False) -> str:
    """``$ORIGIN``: the directory of the object as it was opened (symlinks kept); for
    the executable, of the file ``/proc/self/exe`` names (symlinks resolved)."""
    return os.path.dirname(os.path.realpath(path) if executable else os.path.abspath(path))


#: What the loader read at this process's start that changes what it loaded.
_LOADER_VARIABLES = ("LD_LIBRARY_PATH", "LD_PRELOAD", "GLIBC_TUNABLES", "LD_HWCAP_MASK")


def started_with(environ: Mapping[str, str], initial: str = "/proc/self/environ") -> bool:
    """Whether this process started with ``environ``'s loader variables (its initial
    environment, which the loader read, not ``os.environ`` as it is now)."""
    from pytest_envguard.probes._io import read_small

    text = read_small(initial, 4 << 20)
    if text is None:
        return False
    start = dict(item.split("=", 1) for item in text.split("\0") if "=" in item)
    return all(start.get(name, "") == environ.get(name, "") for name in _LOADER_VARIABLES)


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


# -- versions beyond the soname ------------------------------------------------------------


class VersionSource(str, Enum):
    """Where a library's version came from; ``SONAME`` alone says only its major."""

    FILE_NAME = "file name"
    STRING = "version string"
    VERSION_DEFINITIONS = "version definitions"
    COMMENT = "compiler comment"
    WHEEL = "wheel"
    SONAME = "soname"

    def __str__(self) -> str:
        return self.value


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


def read_version(path: str, soname: str | None, resolver: Resolver | None = None
                 ) -> tuple[str | None, VersionSource | None]:
    """The release of the library at ``path``, as finely as it can be read, and where
    it came from: the sources of :data:`~pytest_envguard.native_versions.LIBRARY_VERSIONS`
    for a known library, else the real file's name, else the soname."""
    from pytest_envguard import native_versions

    # The name the library is found by says which library it is (a soname could be
    # anything); the soname's version is the fallback when that name has none.
    base = os.path.basename(path)
    real = os.path.realpath(path)
    rule = native_versions.rule_for(base)
    soname_version = _name_version(base) or _name_version(soname or "")
    for source in rule.sources if rule else (native_versions.FILE_NAME_SOURCE,):
        version = _read_source(source, path, real, soname, resolver)
        if version and (soname_version is None or version != soname_version):
            return version, VersionSource(source.kind)
    if soname_version is not None and (rule is None or rule.soname_is_release):
        return soname_version, VersionSource.SONAME
    return None, None


def _why_no_release(path: str) -> str:
    """Why only the soname (if that) tells a library's version."""
    from pytest_envguard import native_versions

    real = os.path.basename(os.path.realpath(path))
    rule = native_versions.rule_for(os.path.basename(path))
    if rule is None:
        return f"its file name {real} says no more, and envguard knows no other source for it"
    kinds = ", ".join(dict.fromkeys(source.kind for source in rule.sources))
    return f"{rule.meaning} could not be read (tried: {kinds})"


def _read_source(source: object, path: str, real: str, soname: str | None,
                 resolver: Resolver | None) -> str | None:
    from pytest_envguard import native_versions
    from pytest_envguard.probes.elf import read_section

    assert isinstance(source, native_versions.Source)
    if source.kind == "file name":
        version = _name_version(os.path.basename(real))
        return version if version and "." in version else None
    if source.kind == "version definitions":
        facts = read_elf(real)
        return native_versions.from_version_definitions(source, facts.version_defs)
    target = real
    if source.companion:
        target = _companion(path, source.companion, resolver) or ""
        if not target:
            return None
    if source.kind in ("version string", "compiler comment"):
        data = read_section(target, source.section)
        return native_versions.from_text(source, data) if data else None
    if source.kind == "wheel":
        return _wheel_version(real, source.wheels)
    return None


def _companion(path: str, prefix: str, resolver: Resolver | None) -> str | None:
    """The library ``path`` needs whose name starts with ``prefix`` (libssl → its
    libcrypto), where the loader finds it for ``path``."""
    facts = read_elf(path)
    name = next((needed for needed in facts.needed if needed.startswith(prefix)), None)
    if name is None or not facts.ok:
        return None
    found = (resolver or Resolver({})).resolve(name, facts)
    return found.path


def _wheel_version(path: str, wheels: Sequence[str]) -> str | None:
    """The version of the wheel that installed ``…/site-packages/nvidia/<pkg>/lib/<file>``:
    its ``.dist-info`` directory beside ``nvidia/`` names it."""
    parts = path.split(os.sep)
    if "nvidia" not in parts:
        return None
    site = os.sep.join(parts[:len(parts) - 1 - parts[::-1].index("nvidia")])
    try:
        listing = os.listdir(site)
    except OSError:
        return None
    for wheel in wheels:
        prefix = wheel.replace("-", "_") + "-"
        for entry in listing:
            if entry.lower().startswith(prefix) and entry.endswith(".dist-info"):
                return entry[len(prefix):-len(".dist-info")]
    return None


# -- find_library: the `library` key -----------------------------------------------------------


@dataclass(frozen=True)
class Candidate(Facts):
    """One file that could answer a library request."""

    path: str
    source: str
    soname: str | None
    version: str | None
    version_source: VersionSource | None = None
    reason: str | None = None  # why no release finer than the soname could be read


#: How the chosen file is reached.
REACH_LOADED = "loaded"  # already loaded in the process: dlopen returns it
REACH_DLOPEN = "dlopen"  # a plain dlopen of the name finds it
REACH_PACKAGE_RPATH = "package-rpath"  # only where packages' RPATHs point (nvidia/*/lib, conda)


@dataclass(frozen=True)
class LibraryFacts(Facts):
    """Where the loader would find one library.

    ``path`` is None when it was not found (``reason`` says why); ``source``
    is how it was found: ``"already loaded"``, ``"LD_LIBRARY_PATH"``,
    ``"RPATH of python3.12"``, ``"ld.so.cache"``, ``"system dirs"``,
    ``"site-packages nvidia/*/lib"`` or ``"conda prefix"``. ``version`` is the
    release as finely as it could be read (``version_source`` says from where: only
    the soname's major when ``"soname"``). ``candidates`` lists every acceptable file
    in search order, the chosen one first, so a shadowing ``LD_LIBRARY_PATH`` copy
    is visible. ``loader`` is what a plain ``dlopen`` of the name from this
    interpreter does (it may stop at a broken file, or find nothing where a package's
    RPATH finds the library); ``reach`` says which of those the chosen file is.
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
    # MISSING: not found; another kind: `loader` stopped at a file, or (no `loader`) the
    # search could not run
    failure: Failure | None = None
    version_source: VersionSource | None = None
    loader: Resolution | None = None  # what dlopen(name) does; None: the search could not run
    reach: str | None = None  # REACH_LOADED, REACH_DLOPEN or REACH_PACKAGE_RPATH
    # What makes dlopen fail after it found the file: a library it needs is missing or
    # broken, or lacks a version it needs ("libcrypto.so.3 (needed by libssl.so.3): …").
    load_errors: tuple[str, ...] = ()


def _wanted(name: str) -> Callable[[str], bool]:
    """Which file names answer a request: the exact soname, or for a short name
    (``ssl``, ``libssl``) ``libssl.so`` with any version suffix."""
    if ".so" in name:
        return lambda candidate: candidate == name
    stem = _stem(name)
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


def dlopen_caller(executable: str) -> str:
    """The object whose code calls ``dlopen`` for ``ctypes.CDLL``: the ``_ctypes``
    extension module when it is one (its RPATH and RUNPATH apply), else the executable."""
    if os.path.realpath(executable) == os.path.realpath(sys.executable):
        import importlib.util

        spec = importlib.util.find_spec("_ctypes")
        origin = getattr(spec, "origin", None)
        if isinstance(origin, str) and origin.endswith(".so"):
            return origin
    return os.path.realpath(executable)


def preloaded_objects(executable: ElfFacts, resolver: Resolver) -> dict[str, str]:
    """``LD_PRELOAD``'s objects (spaces or colons between them), loaded after the
    executable and before its needs: name and soname → file. One the loader cannot
    load is ignored, as the loader ignores it (with a message)."""
    loaded: dict[str, str] = {}
    for entry in re.split(r"[ :\t]+", resolver.environ.get("LD_PRELOAD", "").strip()):
        if not entry:
            continue
        found = resolver.resolve(entry, executable)
        facts = resolver.facts(found.path) if found.path else None
        if found.path is None or facts is None:
            continue
        loaded[entry] = found.path
        if facts.soname:
            loaded.setdefault(facts.soname, found.path)
    return loaded


def interpreter_objects(executable: ElfFacts, resolver: Resolver) -> dict[str, str]:
    """What the loader loads to start the interpreter, before any Python runs: needed
    name or soname → file (the loader matches later requests against these)."""
    loaded: dict[str, str] = preloaded_objects(executable, resolver)
    queue: list[tuple[ElfFacts, tuple[ElfFacts, ...]]] = [(executable, ())]
    seen = {executable.path, *loaded.values()}
    while queue:
        obj, chain = queue.pop(0)
        for name in obj.needed:
            if name in loaded:
                continue
            found = resolver.resolve(name, obj, chain)
            if found.path is None:
                continue
            loaded[name] = found.path
            facts = resolver.facts(found.path)
            if facts is None:
                continue
            if facts.soname:
                loaded.setdefault(facts.soname, found.path)
            if found.path not in seen:
                seen.add(found.path)
                queue.append((facts, (obj, *chain) if obj is not executable else ()))
    return loaded


def find_library(
    name: str,
    environ: Mapping[str, str],
    *,
    site_dirs: Sequence[str] | None = None,
    executable: str | None = None,
    ld_cache: LdCacheFacts | None = None,
    reader: Callable[[str], ElfFacts] = read_elf,
    config: LoaderConfig | None = None,
    loaded: Iterable[str] | None = None,
    load_errors: Callable[[str, Resolver], tuple[str, ...]] | None = None,
) -> LibraryFacts:
    """Find ``name`` (a soname or a short name like ``cudart``) as the loader would
    for a ``dlopen`` from this interpreter (``ctypes.CDLL``).

    ``environ`` supplies ``LD_LIBRARY_PATH`` and ``CONDA_PREFIX``; ``site_dirs``
    the site-packages directories searched for ``nvidia/*/lib`` (default: the
    ``sys.path`` entries that have one); ``executable`` the interpreter whose
    RPATH and ELF class apply (default: ``sys.executable``); ``loaded`` the files
    the process has already mapped (default: this process's, when ``executable``
    is this interpreter); ``load_errors`` what stops the ``dlopen`` of the file found
    (default: :func:`load_errors` with a checker of its own). Never raises.
    """
    own = executable is None or os.path.realpath(executable) == os.path.realpath(sys.executable)
    executable = os.path.realpath(executable or sys.executable)
    python = reader(executable)
    if not python.ok:
        return LibraryFacts(name, None, None, None, None,
                            reason=f"cannot read the interpreter {executable}: {python.reason}",
                            failure=python.failure)
    resolver = Resolver(environ, reader=reader, ld_cache=ld_cache, config=config, main=python)
    caller = reader(dlopen_caller(executable)) if own else python
    if not caller.ok:
        caller = python
    if loaded is None:
        # This process's mapped objects are what dlopen returns here — for a process
        # started with this environment; for another one, a fresh interpreter is the model.
        loaded = loaded_objects() if own and started_with(environ) else ()
    already = _already_loaded(python, resolver, loaded)
    matches = _wanted(name)
    conda = environ.get("CONDA_PREFIX")
    prefixes = {os.path.realpath(conda)} if conda else set()
    if own and os.path.isdir(os.path.join(sys.prefix, "conda-meta")):
        prefixes.add(os.path.realpath(sys.prefix))
    scan = _Scan(name, matches, resolver, python.header, prefixes)
    for soname, path in already.items():
        if matches(soname):
            scan.add(path, SOURCE_LOADED, soname)
    for source, dirs in resolver.search_lists(caller):
        scan.search(dirs, source)
    for key in resolver.ld_cache.entries:
        if matches(key):
            cached = resolver.ld_cache.lookup(key, python.abi, resolver.config.hwcaps)
            if cached:
                scan.consider(cached, "ld.so.cache")
    scan.search(list(resolver.system_dirs()), "system dirs")
    for site in site_dirs if site_dirs is not None else _site_dirs():
        for package in _listing(os.path.join(site, "nvidia"), scan.listings):
            scan.search([os.path.join(site, "nvidia", package, "lib")], SOURCE_NVIDIA,
                        subdirs=False)
    for prefix in sorted(prefixes):
        scan.search([os.path.join(prefix, "lib")], SOURCE_CONDA, subdirs=False)
    return _library_facts(name, scan, resolver, caller, already, prefixes,
                          load_errors or _load_errors)


def _already_loaded(python: ElfFacts, resolver: Resolver, mapped: Iterable[str]) -> dict[str, str]:
    """soname → file of every object loaded before a ``dlopen`` from Python: the
    interpreter's own needs, then whatever the process has mapped since (by soname,
    as the loader matches them)."""
    loaded = interpreter_objects(python, resolver)
    for path in mapped:
        base = os.path.basename(path)
        if ".so" not in base or base in loaded:
            continue
        facts = resolver.facts(path)
        if facts is not None and facts.ok and facts.soname:
            loaded.setdefault(facts.soname, path)
    return loaded


class _Scan:
    """Every acceptable file for a request, in the order the places are searched."""

    def __init__(self, name: str, matches: Callable[[str], bool], resolver: Resolver,
                 host: ElfHeader | None, prefixes: set[str]) -> None:
        self.name = name
        self.matches = matches
        self.resolver = resolver
        self.host = host
        self.prefixes = prefixes
        self.candidates: list[Candidate] = []
        self.skipped: list[str] = []
        self.listings: dict[str, list[str]] = {}
        self._seen: set[str] = set()

    def search(self, dirs: Sequence[str], source: str, *, subdirs: bool = True) -> None:
        for directory in dirs:
            for place in self.resolver._places(directory) if subdirs else (directory,):
                if ".so" in self.name and "/" not in self.name:
                    if os.path.lexists(os.path.join(place, self.name)):
                        self.consider(os.path.join(place, self.name), self._label(place, source))
                    continue
                for entry in _version_sorted(item for item in _listing(place, self.listings)
                                             if self.matches(item)):
                    self.consider(os.path.join(place, entry), self._label(place, source))

    def consider(self, path: str, source: str) -> None:
        real = os.path.realpath(path)
        if real in self._seen:
            return
        tried = self.resolver.examine(path, self.host)
        if tried.outcome is _Outcome.ABSENT:
            return
        if tried.outcome is not _Outcome.FOUND:
            self.skipped.append(f"{path} ({tried.reason})")
            return
        self.add(path, source)

    def add(self, path: str, source: str, soname: str | None = None) -> None:
        real = os.path.realpath(path)
        if real in self._seen:
            return
        self._seen.add(real)
        facts = self.resolver.facts(path)
        soname = soname or (facts.soname if facts is not None else None)
        version, version_source = read_version(path, soname, self.resolver)
        reason = None
        if version_source in (VersionSource.SONAME, None):
            reason = _why_no_release(path)
        self.candidates.append(Candidate(path, source, soname, version, version_source, reason))

    def _label(self, directory: str, source: str) -> str:
        real = os.path.realpath(directory)
        for prefix in self.prefixes:
            if source != SOURCE_CONDA and (real == os.path.join(prefix, "lib")
                                           or real.startswith(prefix + os.sep)):
                return f"{source}, {SOURCE_CONDA}"
        return source


def _library_facts(name: str, scan: _Scan, resolver: Resolver, caller: ElfFacts,
                   already: Mapping[str, str], prefixes: set[str],
                   load_errors: Callable[[str, Resolver], tuple[str, ...]]) -> LibraryFacts:
    candidates, skipped = scan.candidates, tuple(scan.skipped)
    if not candidates:
        dlopen = resolver.resolve(name, caller) if ".so" in name else None
        where = "LD_LIBRARY_PATH, ld.so.cache, the system dirs, site-packages nvidia/*/lib"
        if prefixes:
            where += ", the conda prefix"
        reason = f"no {name if '.so' in name else _stem(name) + '.so*'} in {where}"
        if dlopen is not None and dlopen.stopped_at:
            reason = f"dlopen stops at {dlopen.reason}"
        elif skipped:
            reason += f"; skipped {', '.join(skipped[:3])}"
        return LibraryFacts(name, None, None, None, None, reason=reason, skipped=skipped,
                            failure=dlopen.failure if dlopen and dlopen.stopped_at
                            else Failure.MISSING, loader=dlopen)
    best = candidates[0]
    # For a short name, the name that finds this file: what a user would dlopen.
    wanted = name if ".so" in name else os.path.basename(best.path)
    if wanted in already:
        dlopen = Resolution(wanted, already[wanted], SOURCE_LOADED)
    else:
        dlopen = resolver.resolve(wanted, caller)
    if dlopen.stopped_at:
        return LibraryFacts(name, None, dlopen.source, best.soname, None,
                            reason=f"dlopen stops at {dlopen.reason}", candidates=tuple(candidates),
                            skipped=skipped, failure=dlopen.failure, loader=dlopen)
    if dlopen.path is not None and os.path.realpath(dlopen.path) != os.path.realpath(best.path):
        # The scan and the loader must name the same file: the loader's answer wins.
        chosen = next((item for item in candidates
                       if os.path.realpath(item.path) == os.path.realpath(dlopen.path)), None)
        if chosen is not None:
            candidates = [chosen, *(item for item in candidates if item is not chosen)]
            best = chosen
    reach = (REACH_LOADED if best.source == SOURCE_LOADED
             else REACH_DLOPEN if dlopen.path is not None else REACH_PACKAGE_RPATH)
    errors = load_errors(best.path, resolver) if reach != REACH_LOADED else ()
    return LibraryFacts(name, best.path, best.source, best.soname, best.version,
                        realpath=os.path.realpath(best.path), candidates=tuple(candidates),
                        skipped=skipped, version_source=best.version_source, loader=dlopen,
                        reach=reach, load_errors=errors)


def load_checker(resolver: Resolver) -> ExtensionChecker:
    """What judges a library's own needs for ``dlopen``, as for an extension module (the
    interpreter's libraries already loaded); one can serve every ``library`` line of an
    environment (it reads each file once: a snapshot)."""
    from pytest_envguard.probes.elf import ElfCache
    from pytest_envguard.probes.extensions import ExtensionChecker

    main = resolver.main.path if resolver.main is not None else None
    return ExtensionChecker(resolver.environ, ElfCache(None), executable=main,
                            ld_cache=resolver.ld_cache, config=resolver.config)


def load_errors(checker: ExtensionChecker, path: str) -> tuple[str, ...]:
    """What stops ``dlopen`` once it has the file: its own needs, resolved and checked."""
    if checker.failure is not None:
        return ()
    return tuple(problem_text(problem) for problem in checker.check(path, "")
                 if problem.kind != "unreadable")


def _load_errors(path: str, resolver: Resolver) -> tuple[str, ...]:
    return load_errors(load_checker(resolver), path)


def problem_text(problem: object) -> str:
    """One line for a closure problem of a library (an ``extensions.NativeProblem``)."""
    kind = getattr(problem, "kind", "")
    library = getattr(problem, "library", None)
    via = getattr(problem, "via", None)
    needer = f" (needed by {os.path.basename(via)})" if via else ""
    if kind == "missing-version":
        return (f"{getattr(problem, 'version', '')} not in {getattr(problem, 'library_path', '')}"
                f"{needer}")
    if kind == "missing-library":
        return f"{library}{needer}: not found"
    if kind == "undefined-symbol":
        return f"{getattr(problem, 'detail', '')}{needer}"
    return f"{library}{needer}: {getattr(problem, 'detail', '')}"


def _stem(name: str) -> str:
    return name if name.startswith("lib") else f"lib{name}"


def _version_sorted(names: Iterable[str]) -> list[str]:
    """Highest version first: ``libssl.so.3`` before ``libssl.so.1.1`` before ``libssl.so``."""
    def key(base: str) -> tuple[int, ...]:
        version = _name_version(base)
        return tuple(int(part) for part in version.split(".")) if version else ()

    return sorted(names, key=key, reverse=True)
