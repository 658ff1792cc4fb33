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
import signal
import struct
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    # An auditwheel-style wheel: a module, a vendored library it needs, and a vendored
    # library *that* one needs (as libgfortran needs libquadmath), with hashed names,
    # versioned symbols and $ORIGIN RUNPATHs.
    "vend_b.c": "int vend_b(void) { return 2; }\n",
    "vend_b.map": "VEND_B_1.0 { global: vend_b; local: *; };\n",
    "vend_a.c": "extern int vend_b(void);\nint vend_a(void) { return vend_b() + 1; }\n",
    "vend_module.c": "extern int vend_a(void);\nint envguard_entry(void) { return vend_a(); }\n",
    # An old libcrypto.so.3 as a leaking LD_LIBRARY_PATH brings one: OpenSSL 1.1's
    # version node only, none of 3.0's.
    "old_crypto.c": "int envguard_old_crypto(void) { return 1; }\n",
    "old_crypto.map": "OPENSSL_1_1_0 { global: envguard_old_crypto; local: *; };\n",
    "version_string.c": 'const char envguard_version_text[] = "OpenSSL 3.0.19 27 Jan 2026";\n'
                        "const char *envguard_version(void) { return envguard_version_text; }\n",
}

#: The vendored wheel's files, relative to its site-packages directory.
VENDORED_MODULE = "vendpkg/_core.so"
VENDORED_A = "vendpkg.libs/libvend_a-1a2b3c4d.so.1"
VENDORED_B = "vendpkg.libs/libvend_b-5e6f7a8b.so.2"

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


def patch_class(source: Path, target: Path) -> Path:
    """A copy whose ``EI_CLASS`` says ELFCLASS32: the loader skips it ("wrong ELF class")."""
    data = bytearray(source.read_bytes())
    data[4] = 1
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
    vendored: Path  # a site-packages dir holding only vendpkg (VENDORED_*): copy it before breaking it
    version_string_lib: Path  # a library holding "OpenSSL 3.0.19 …" in .rodata
    leak_dir: Path  # an old libcrypto.so.3 (no OPENSSL_3.0.0), as a leaking LD_LIBRARY_PATH has


def _write_dist(site: Path, name: str, files: list[Path], requires: Sequence[str] = ()) -> None:
    meta = site / f"{name}-1.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                                   + "".join(f"Requires-Dist: {item}\n" for item in requires),
                                   encoding="utf-8")
    (meta / "INSTALLER").write_text("pip\n", encoding="utf-8")
    (meta / "WHEEL").write_text("Wheel-Version: 1.0\nTag: cp311-cp311-linux_x86_64\n",
                                encoding="utf-8")
    lines = [f"{path.relative_to(site).as_posix()},," for path in files]
    lines += [f"{name}-1.0.dist-info/{part},," for part in ("METADATA", "INSTALLER", "WHEEL")]
    lines.append(f"{name}-1.0.dist-info/RECORD,,")
    (meta / "RECORD").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_sources(root: Path, sources: Mapping[str, str]) -> Path:
    """The C sources (and version scripts) in ``root/src``, for :func:`compile_shared`."""
    src = root / "src"
    src.mkdir()
    for name, text in sources.items():
        (src / name).write_text(text, encoding="utf-8")
    return src


@pytest.fixture(scope="session")
def native_build(tmp_path_factory: pytest.TempPathFactory) -> NativeBuild:
    root = tmp_path_factory.mktemp("native")
    src = write_sources(root, SOURCES)
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

    vendored = root / "vendored-site"
    libs = vendored / "vendpkg.libs"
    vend_b = compile_shared(vendored / VENDORED_B, src / "vend_b.c",
                            f"-Wl,-soname,{os.path.basename(VENDORED_B)}",
                            f"-Wl,--version-script={src / 'vend_b.map'}")
    vend_a = compile_shared(vendored / VENDORED_A, src / "vend_a.c", str(vend_b),
                            f"-Wl,-soname,{os.path.basename(VENDORED_A)}",
                            "-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN")
    vend_module = compile_shared(vendored / VENDORED_MODULE, src / "vend_module.c", str(vend_a),
                                 "-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN/../vendpkg.libs",
                                 f"-Wl,-rpath-link,{libs}")
    _write_dist(vendored, "vendpkg", [vend_module, vend_a, vend_b])
    version_string_lib = compile_shared(root / "versioned" / "libenvguard_text.so.3",
                                        src / "version_string.c",
                                        "-Wl,-soname,libenvguard_text.so.3")
    leak = compile_shared(root / "leak" / "libcrypto.so.3", src / "old_crypto.c",
                          "-Wl,-soname,libcrypto.so.3",
                          f"-Wl,--version-script={src / 'old_crypto.map'}")
    return NativeBuild(
        root=root, stub_libc_dir=stub_dir, ext_new_glibc=ext_new, ext_missing=ext_missing,
        ext_origin=ext_origin, ext_rpath=ext_rpath, ext_needs_dep=ext_needs_dep,
        ext_needs_v2=ext_needs_v2, ext_plain=ext_plain, ext_undefined=ext_undefined,
        dep_dir=dep_dir, foreign_dir=foreign.parent, garbage_dir=garbage_dir,
        ver_new_dir=ver_new.parent, ver_old_dir=ver_old.parent, truncated=truncated,
        empty=empty, site=site, vendored=vendored, version_string_lib=version_string_lib,
        leak_dir=leak.parent,
    )


@pytest.fixture(scope="session")
def import_dir(native_build: NativeBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Modules that import, fail, crash and hang in the ways the `import` key tells apart."""
    directory = tmp_path_factory.mktemp("imports")
    modules = {
        "envguard_fine": "__version__ = '1.2'\n",
        "envguard_raises": "raise RuntimeError('boom at import')\n",
        "envguard_needs_dep": "import envguard_no_such_dependency\n",
        "envguard_crashes": "import ctypes\nctypes.string_at(0)\n",
        "envguard_hangs": "import time\ntime.sleep(60)\n",
        "envguard_chatty": "print('noise on stdout')\nimport sys\nsys.stdout.write('x')\n",
    }
    for name, text in modules.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(text), encoding="utf-8")
    shutil.copy(native_build.ext_missing, directory / "envguard_native_missing.so")
    shutil.copy(native_build.ext_new_glibc, directory / "envguard_native_glibc.so")
    shutil.copy(native_build.ext_undefined, directory / "envguard_native_undefined.so")
    return directory


def vendored_copy(build: NativeBuild, directory: Path) -> Path:
    """A fresh copy of the vendored wheel's site-packages, to break."""
    site = directory / "site-packages"
    shutil.copytree(build.vendored, site, symlinks=True)
    return site


# -- the oracle: the real loader, asked in a fresh process ------------------------------------

# dlopen each target in turn (ctypes.CDLL: RTLD_NOW, as Python's import), then walk the
# loader's own list of loaded objects (dlinfo RTLD_DI_LINKMAP): `l_name` is the file
# each one was opened as, so the answer names the file the loader picked, not just
# that it loaded something.
_ORACLE = r"""
import ctypes, json, sys
class LinkMap(ctypes.Structure):
    pass
LinkMap._fields_ = [("l_addr", ctypes.c_void_p), ("l_name", ctypes.c_char_p),
                    ("l_ld", ctypes.c_void_p), ("l_next", ctypes.POINTER(LinkMap)),
                    ("l_prev", ctypes.POINTER(LinkMap))]
def _dlinfo():
    for library in (None, "libdl.so.2"):
        try:
            function = ctypes.CDLL(library).dlinfo
        except (OSError, AttributeError):
            continue
        function.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        return function
DLINFO = _dlinfo()
def link_map(handle):
    pointer = ctypes.POINTER(LinkMap)()
    if DLINFO(handle, 2, ctypes.byref(pointer)) != 0:
        return None
    return pointer
def objects():
    node = link_map(ctypes.CDLL(None)._handle)
    while node and node.contents.l_prev:
        node = node.contents.l_prev
    names = []
    while node:
        names.append((node.contents.l_name or b"").decode("utf-8", "surrogateescape"))
        node = node.contents.l_next
    return names
before = set(objects())
try:
    for target in json.loads(sys.argv[1]):
        handle = ctypes.CDLL(target)
except OSError as error:
    print(json.dumps([False, str(error), None, [n for n in objects() if n not in before]]))
else:
    opened = link_map(handle._handle).contents.l_name.decode("utf-8", "surrogateescape")
    print(json.dumps([True, "", opened, [n for n in objects() if n not in before]]))
"""


@dataclass(frozen=True)
class LoaderAnswer:
    """What the real loader did with ``dlopen`` in a fresh interpreter."""

    loaded: bool
    error: str  # dlerror(), or how the process died
    path: str | None  # the file dlopen returned, as the loader opened it (l_name)
    objects: tuple[str, ...]  # every object the call loaded (l_name), in load order
    signal: str | None = None  # the process died (a cut library: SIGBUS)

    @property
    def mapped(self) -> tuple[str, ...]:
        return self.objects

    def mapped_named(self, name: str) -> list[str]:
        """The loaded objects whose file is called ``name``."""
        return [path for path in self.objects if os.path.basename(path) == name]

    def error_file(self) -> str | None:
        """The file the loader's error names first (``/x/libfoo.so: version …``)."""
        head = self.error.split(": ", 1)[0]
        return head if head.startswith("/") else None


def real_loader(target: str | Path, environ: Mapping[str, str] | None = None, *,
                first: Sequence[str | Path] = (), unprivileged: bool = False,
                python: str | Path | None = None) -> LoaderAnswer:
    """What the real dynamic loader does with ``dlopen(target)`` (a path or a bare
    name) in a fresh interpreter (``python``, else this one) with ``environ``, after
    ``first`` were dlopened; ``unprivileged``: as a user for whom file modes hold
    (root drops its capabilities)."""
    from tests.fixtures_reliability import _DROP_PRIVILEGES

    env = dict(os.environ if environ is None else environ)
    code = (_DROP_PRIVILEGES if unprivileged else "") + _ORACLE
    targets = json.dumps([str(item) for item in (*first, target)])
    result = subprocess.run([str(python or sys.executable), "-c", code, targets], env=env,
                            capture_output=True, text=True, check=False, timeout=60)
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        return LoaderAnswer(False, f"killed by {name}", None, (), name)
    if result.returncode == 127 and "Inconsistency detected by ld.so" in result.stderr:
        # ld.so's own assertion (_dl_fatal_printf, exit 127): the load does not happen.
        return LoaderAnswer(False, result.stderr.strip().splitlines()[-1], None, ())
    assert result.returncode == 0, result.stderr[-2000:]
    loaded, message, path, objects = json.loads(result.stdout.strip().splitlines()[-1])
    return LoaderAnswer(bool(loaded), str(message), path, tuple(objects))


def loader_says(path: str | Path, environ: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """(loaded?, the loader's error) for ``dlopen(path)``."""
    answer = real_loader(path, environ)
    return answer.loaded, answer.error


def same_file(first: str | Path | None, second: str | Path | None) -> bool:
    """Two names of one file (symlinks resolved)."""
    return first is not None and second is not None and \
        os.path.realpath(first) == os.path.realpath(second)


def plugin_and_loader_agree(facts: Any, answers: Mapping[str, LoaderAnswer]) -> list[str]:
    """Where the ``extensions`` facts and the real loader disagree, module by module:
    the same modules broken, and for a missing version or a stop, the same file named.
    ``answers``: module path → the loader's answer for it. Returns the disagreements."""
    broken: dict[str, list[Any]] = {}
    for problem in facts.problems:
        broken.setdefault(problem.file, []).append(problem)
    wrong = []
    for module, answer in answers.items():
        problems = broken.get(module, [])
        if bool(problems) == answer.loaded:
            wrong.append(f"{module}: envguard says {'broken' if problems else 'fine'}, the "
                         f"loader {'loads it' if answer.loaded else 'fails: ' + answer.error}")
            continue
        named = answer.error_file()
        for problem in problems:
            if problem.kind in ("missing-version", "loader-error") and named and not same_file(
                    problem.library_path, named) and not same_file(problem.file, named):
                wrong.append(f"{module}: envguard names {problem.library_path}, the loader "
                             f"{named} ({answer.error})")
    return wrong


def build_ld_so_cache(entries: Sequence[tuple[str, str] | tuple[str, str, int, int]], *,
                      old: bool = False, new: bool = True,
                      hwcaps: Sequence[str] = ()) -> bytes:
    """The bytes of an ``ld.so.cache`` in the new format, the old one, or both
    (old first, new after it at an 8-byte boundary), as ``ldconfig`` writes them.
    An entry is (soname, path) or (soname, path, flags, hwcap); ``hwcaps`` are the
    ``glibc-hwcaps`` subdirectory names of the extension section (an entry whose
    hwcap is ``1 << 62 | i`` lives in the i-th)."""
    full = [(item[0], item[1], item[2] if len(item) > 2 else 0x0303,  # type: ignore[misc]
             item[3] if len(item) > 3 else 0) for item in entries]  # type: ignore[misc]

    def strings_for(base: int) -> tuple[bytes, list[tuple[int, int]]]:
        blob = b""
        offsets = []
        for key, value, _, _ in full:
            key_at = base + len(blob)
            blob += key.encode() + b"\0"
            value_at = base + len(blob)
            blob += value.encode() + b"\0"
            offsets.append((key_at, value_at))
        return blob, offsets

    data = b""
    if old:
        head = b"ld.so-1.7.0\0" + struct.pack("=I", len(full))
        blob, offsets = strings_for(0)
        data = head + b"".join(struct.pack("=iII", flags, key, value)
                               for (_, _, flags, _), (key, value) in zip(full, offsets, strict=True)) + blob
        if new:
            data += bytes(-len(data) % 8)
    if new:
        start = len(data)
        count = len(full)
        blob, offsets = strings_for(48 + 24 * count)
        names = b"".join(name.encode() + b"\0" for name in hwcaps)
        body_end = 48 + 24 * count + len(blob) + len(names)
        extension = 0
        tail = b""
        if hwcaps:
            # The names follow the string table; the extension directory and the array
            # of name offsets (from the start of the file) come after, 4-byte aligned.
            pad = -(start + body_end) % 4
            extension = start + body_end + pad
            array_at = extension + 8 + 16
            pointers, at = [], start + 48 + 24 * count + len(blob)
            for name in hwcaps:
                pointers.append(at)
                at += len(name) + 1
            tail = bytes(pad) + struct.pack("=II", 0xEAA42174, 1) + struct.pack(
                "=IIII", 1, 0, array_at, 4 * len(hwcaps)) + struct.pack(
                f"={len(hwcaps)}I", *pointers)
        header = (b"glibc-ld.so.cache1.1" + struct.pack("=II", count, len(blob) + len(names))
                  + b"\x02" + bytes(3) + struct.pack("=I", extension) + bytes(12))
        data += header + b"".join(struct.pack("=iIIIQ", flags, key, value, 0, hwcap)
                                  for (_, _, flags, hwcap), (key, value) in zip(full, offsets, strict=True))
        data += blob + names + tail
    return data


def without_loader_vars(**extra: str) -> dict[str, str]:
    """This process's environment without ``LD_LIBRARY_PATH`` (and with ``extra``)."""
    env = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
    env.update(extra)
    return env
