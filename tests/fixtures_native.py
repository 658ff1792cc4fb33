"""Fixtures for the native tests: shared objects built with ``cc`` at test time.

Everything here is made from the C sources and linker version scripts below,
once per session, so no binary lives in the repository:

* a stub ``libc.so.6`` that defines ``GLIBC_2.99`` (a version no real glibc
  has yet) and an extension linked against it, which the real loader refuses
  with "version `GLIBC_2.99' not found";
* ``libenvguard_ver.so.1`` in a new build (``ENVGUARD_1.0`` and ``ENVGUARD_2.0``)
  and an old one (``ENVGUARD_1.0`` only), for the shadowing copy on
  ``LD_LIBRARY_PATH``;
* an extension whose ``DT_NEEDED`` exists nowhere, one that finds its library
  only through ``$ORIGIN`` in its RUNPATH (and one through RPATH);
* a copy of a library with another ``e_machine`` (the loader skips it), and
  corrupt, truncated and empty files;
* a site-packages directory with ``.dist-info`` folders whose ``RECORD``
  lists those extensions, as pip would have written them.

:func:`loader_says` asks the real loader (``ctypes.CDLL`` in a subprocess)
what it makes of a file, so each expected verdict is checked against it.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCES = {
    "stub_libc.c": "int envguard_new_function(void) { return 99; }\n",
    "stub_libc.map": "GLIBC_2.99 { global: envguard_new_function; local: *; };\n",
    "uses_new.c": "extern int envguard_new_function(void);\n"
                  "int envguard_entry(void) { return envguard_new_function(); }\n",
    "dep.c": "int envguard_dep(void) { return 1; }\n",
    "uses_dep.c": "extern int envguard_dep(void);\n"
                  "int envguard_entry(void) { return envguard_dep(); }\n",
    "plain.c": "int envguard_entry(void) { return 0; }\n",
    "ver_new.c": "int envguard_v1(void) { return 1; }\nint envguard_v2(void) { return 2; }\n",
    "ver_new.map": "ENVGUARD_1.0 { global: envguard_v1; local: *; };\n"
                   "ENVGUARD_2.0 { global: envguard_v2; } ENVGUARD_1.0;\n",
    "ver_old.c": "int envguard_v1(void) { return 1; }\n",
    "ver_old.map": "ENVGUARD_1.0 { global: envguard_v1; local: *; };\n",
    "uses_v2.c": "extern int envguard_v2(void);\n"
                 "int envguard_entry(void) { return envguard_v2(); }\n",
    "undefined.c": "extern int envguard_nowhere(void);\n"
                   "int envguard_entry(void) { return envguard_nowhere(); }\n",
}

EM_AARCH64, EM_X86_64 = 183, 62


def compile_shared(output: Path, source: Path, *args: str) -> Path:
    """``cc -shared -fPIC`` one source into ``output``; the test fails with cc's message."""
    output.parent.mkdir(parents=True, exist_ok=True)
    command = ["cc", "-shared", "-fPIC", "-o", str(output), str(source), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{result.stderr}")
    return output


def patch_machine(source: Path, target: Path, machine: int) -> Path:
    """A copy of an ELF file with another ``e_machine``: the loader skips it."""
    data = bytearray(source.read_bytes())
    order = "<" if data[5] == 1 else ">"
    struct.pack_into(order + "H", data, 18, machine)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))
    return target


def strip_section_headers(source: Path, target: Path) -> Path:
    """A copy with no section header table (e_shoff, e_shnum, e_shstrndx zeroed),
    as ``sstrip`` leaves a file: only the program headers remain."""
    data = bytearray(source.read_bytes())
    order = "<" if data[5] == 1 else ">"
    if data[4] == 2:
        struct.pack_into(order + "Q", data, 40, 0)
        struct.pack_into(order + "HH", data, 60, 0, 0)
    else:
        struct.pack_into(order + "I", data, 32, 0)
        struct.pack_into(order + "HH", data, 48, 0, 0)
    target.write_bytes(bytes(data))
    return target


@dataclass(frozen=True)
class NativeBuild:
    """Paths of everything :func:`native_build` made."""

    root: Path
    stub_libc_dir: Path  # holds the stub libc.so.6 (GLIBC_2.99)
    ext_new_glibc: Path  # needs GLIBC_2.99 from libc.so.6
    ext_missing: Path  # needs libenvguard_absent.so.1, which exists nowhere searched
    ext_origin: Path  # RUNPATH $ORIGIN/../originpkg.libs → libenvguard_dep.so.1
    ext_rpath: Path  # RPATH $ORIGIN/../rpathpkg.libs → libenvguard_dep.so.1
    ext_needs_dep: Path  # needs libenvguard_dep.so.1, no RUNPATH: found through LD_LIBRARY_PATH
    ext_needs_v2: Path  # needs ENVGUARD_2.0 from libenvguard_ver.so.1 (no RUNPATH)
    ext_plain: Path  # needs only libc
    ext_undefined: Path  # references a symbol no library defines
    dep_dir: Path  # the good libenvguard_dep.so.1
    foreign_dir: Path  # libenvguard_dep.so.1 patched to EM_AARCH64
    garbage_dir: Path  # libenvguard_dep.so.1 that is not ELF
    ver_new_dir: Path  # libenvguard_ver.so.1 with ENVGUARD_1.0 and 2.0
    ver_old_dir: Path  # libenvguard_ver.so.1 with ENVGUARD_1.0 only
    truncated: Path
    empty: Path
    site: Path  # a site-packages dir: nativegood (plain, origin, rpath), nativebad (new glibc, missing)


def _write_dist(site: Path, name: str, files: list[Path]) -> None:
    meta = site / f"{name}-1.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
                                   encoding="utf-8")
    (meta / "INSTALLER").write_text("pip\n", encoding="utf-8")
    (meta / "WHEEL").write_text("Wheel-Version: 1.0\nTag: cp311-cp311-linux_x86_64\n",
                                encoding="utf-8")
    lines = [f"{path.relative_to(site).as_posix()},," for path in files]
    lines += [f"{name}-1.0.dist-info/{part},," for part in ("METADATA", "INSTALLER", "WHEEL")]
    lines.append(f"{name}-1.0.dist-info/RECORD,,")
    (meta / "RECORD").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def native_build(tmp_path_factory: pytest.TempPathFactory) -> NativeBuild:
    root = tmp_path_factory.mktemp("native")
    src = root / "src"
    src.mkdir()
    for name, text in SOURCES.items():
        (src / name).write_text(text, encoding="utf-8")
    build = root / "build"  # link-time only: nothing here is on any search path

    stub_dir = root / "stublibc"
    stub = compile_shared(stub_dir / "libc.so.6", src / "stub_libc.c", "-nostdlib",
                          "-Wl,-soname,libc.so.6", f"-Wl,--version-script={src / 'stub_libc.map'}")
    absent = compile_shared(build / "libenvguard_absent.so.1", src / "dep.c",
                            "-Wl,-soname,libenvguard_absent.so.1")
    dep_build = compile_shared(build / "libenvguard_dep.so.1", src / "dep.c",
                               "-Wl,-soname,libenvguard_dep.so.1")
    ver_new = compile_shared(root / "vernew" / "libenvguard_ver.so.1", src / "ver_new.c",
                             "-Wl,-soname,libenvguard_ver.so.1",
                             f"-Wl,--version-script={src / 'ver_new.map'}")
    ver_old = compile_shared(root / "verold" / "libenvguard_ver.so.1", src / "ver_old.c",
                             "-Wl,-soname,libenvguard_ver.so.1",
                             f"-Wl,--version-script={src / 'ver_old.map'}")

    site = root / "site-packages"
    ext_new = compile_shared(site / "nativebad" / "_new_glibc.so", src / "uses_new.c",
                             "-nostdlib", str(stub))
    ext_missing = compile_shared(site / "nativebad" / "_missing.so", src / "uses_dep.c",
                                 str(absent))
    dep_dir = root / "good"
    dep_dir.mkdir()
    shutil.copy(dep_build, dep_dir / "libenvguard_dep.so.1")
    for package in ("originpkg", "rpathpkg"):
        (site / f"{package}.libs").mkdir(parents=True)
        shutil.copy(dep_build, site / f"{package}.libs" / "libenvguard_dep.so.1")
    ext_origin = compile_shared(site / "originpkg" / "_origin.so", src / "uses_dep.c",
                                str(dep_build), "-Wl,--enable-new-dtags",
                                "-Wl,-rpath,$ORIGIN/../originpkg.libs")
    ext_rpath = compile_shared(site / "rpathpkg" / "_rpath.so", src / "uses_dep.c",
                               str(dep_build), "-Wl,--disable-new-dtags",
                               "-Wl,-rpath,$ORIGIN/../rpathpkg.libs")
    ext_plain = compile_shared(site / "originpkg" / "_plain.so", src / "plain.c")
    loose = root / "loose"
    ext_needs_dep = compile_shared(loose / "_needs_dep.so", src / "uses_dep.c", str(dep_build))
    ext_needs_v2 = compile_shared(loose / "_needs_v2.so", src / "uses_v2.c", str(ver_new))
    ext_undefined = compile_shared(loose / "_undefined.so", src / "undefined.c")

    foreign = patch_machine(dep_build, root / "foreign" / "libenvguard_dep.so.1", EM_AARCH64)
    garbage_dir = root / "garbage"
    garbage_dir.mkdir()
    (garbage_dir / "libenvguard_dep.so.1").write_bytes(b"this is not an ELF file\n" * 4)
    truncated = root / "corrupt" / "truncated.so"
    truncated.parent.mkdir()
    truncated.write_bytes(dep_build.read_bytes()[:300])
    empty = root / "corrupt" / "empty.so"
    empty.write_bytes(b"")

    _write_dist(site, "nativegood", [ext_plain, ext_origin, ext_rpath,
                                     site / "originpkg.libs" / "libenvguard_dep.so.1"])
    _write_dist(site, "nativebad", [ext_new, ext_missing])
    return NativeBuild(
        root=root, stub_libc_dir=stub_dir, ext_new_glibc=ext_new, ext_missing=ext_missing,
        ext_origin=ext_origin, ext_rpath=ext_rpath, ext_needs_dep=ext_needs_dep,
        ext_needs_v2=ext_needs_v2, ext_plain=ext_plain, ext_undefined=ext_undefined,
        dep_dir=dep_dir, foreign_dir=foreign.parent, garbage_dir=garbage_dir,
        ver_new_dir=ver_new.parent, ver_old_dir=ver_old.parent, truncated=truncated,
        empty=empty, site=site,
    )


_LOADER_PROBE = (
    "import ctypes, json, sys\n"
    "try:\n"
    "    ctypes.CDLL(sys.argv[1])\n"
    "except OSError as error:\n"
    "    print(json.dumps([False, str(error), []]))\n"
    "else:\n"
    "    with open('/proc/self/maps') as maps:\n"
    "        paths = sorted({line.split()[-1] for line in maps if '/' in line})\n"
    "    print(json.dumps([True, '', paths]))\n"
)


@dataclass(frozen=True)
class LoaderAnswer:
    loaded: bool
    error: str
    mapped: tuple[str, ...]  # every file mapped in the process afterwards

    def mapped_named(self, name: str) -> list[str]:
        return [path for path in self.mapped if os.path.basename(path) == name]


def real_loader(path: str | Path, environ: Mapping[str, str] | None = None) -> LoaderAnswer:
    """What the real dynamic loader does with ``dlopen(path)`` in a fresh interpreter."""
    env = dict(os.environ if environ is None else environ)
    result = subprocess.run([sys.executable, "-c", _LOADER_PROBE, str(path)], env=env,
                            capture_output=True, text=True, check=True)
    loaded, message, mapped = json.loads(result.stdout.strip().splitlines()[-1])
    return LoaderAnswer(bool(loaded), str(message), tuple(mapped))


def loader_says(path: str | Path, environ: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """(loaded?, the loader's error) for ``dlopen(path)``."""
    answer = real_loader(path, environ)
    return answer.loaded, answer.error


def build_ld_so_cache(entries: list[tuple[str, str]], *, old: bool = False,
                      new: bool = True) -> bytes:
    """The bytes of an ``ld.so.cache`` in the new format, the old one, or both
    (old first, new after it at an 8-byte boundary), as ``ldconfig`` writes them."""
    def strings_for(base: int) -> tuple[bytes, list[tuple[int, int]]]:
        blob = b""
        offsets = []
        for key, value in entries:
            key_at = base + len(blob)
            blob += key.encode() + b"\0"
            value_at = base + len(blob)
            blob += value.encode() + b"\0"
            offsets.append((key_at, value_at))
        return blob, offsets

    data = b""
    if old:
        head = b"ld.so-1.7.0\0" + struct.pack("=I", len(entries))
        blob, offsets = strings_for(0)
        data = head + b"".join(struct.pack("=iII", 0x0303, key, value)
                               for key, value in offsets) + blob
        if new:
            data += bytes(-len(data) % 8)
    if new:
        count = len(entries)
        blob, offsets = strings_for(48 + 24 * count)
        header = (b"glibc-ld.so.cache1.1" + struct.pack("=II", count, len(blob)) + b"\x02"
                  + bytes(3) + struct.pack("=I", 0) + bytes(12))
        data += header + b"".join(struct.pack("=iIIIQ", 0x0303, key, value, 0, 0)
                                  for key, value in offsets) + blob
    return data


def without_loader_vars(**extra: str) -> dict[str, str]:
    """This process's environment without ``LD_LIBRARY_PATH`` (and with ``extra``)."""
    env = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
    env.update(extra)
    return env
