"""Fuzz the parsers that read files envguard does not control.

Targets, each with its promise:

* ``elf.read_elf`` / ``elf.read_interpreter`` — never raise;
* ``elf.read_elf`` on files whose version-need records (``.gnu.version_r``) are
  mutated field by field — counts, auxiliary and next offsets that loop back,
  the section's size and count — never raises, and answers within
  ``VERSION_WALK_SECONDS`` (2 s: far below the 30 s an 81 KB file cost before
  the walk had a per-file record budget);
* ``ldcache.parse_ld_so_cache`` — returns, or raises ``ValueError`` only;
* ``locks.read_lock`` for ``requirements.txt``, ``pylock.toml``, ``uv.lock``,
  ``poetry.lock``, and conda's ``environment.yml`` and explicit spec files (read
  by this project, not py-rattler) — never raises (a problem goes to ``LockFacts.reason``), and
  ``checks.hygiene.applicable`` on what it returns never raises.

Every other call must return within ``--hang-seconds`` (default 10).

Inputs are hypothesis-generated mutations of seed files: small shared objects
built with ``cc`` at start-up (SONAME, DT_NEEDED, RUNPATH, a version script),
the system's ``ld.so.cache``, and hand-written lock files of each format.
Mutations are ELF-aware (header and program/section header fields overwritten
with boundary values) as well as generic (bit flips, byte runs, truncation,
splices, inserted tokens).

Not collected by pytest (the name does not start with ``test_``). Run::

    python tests/fuzz/fuzz_parsers.py --seconds 600

It prints the number of inputs tried per target and exits 1 on the first
crash or hang, writing the input to ``--crash-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pytest_envguard.checks.hygiene import applicable
from pytest_envguard.probes import Failure, elf, ldcache, locks

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests.*
from tests.test_elf import looping_version_needs  # once the repository is on the path

#: The time one read of a crafted version-need table may take.
VERSION_WALK_SECONDS = 2.0
#: Targets with a tighter time bound than --hang-seconds.
TIME_BOUNDS: dict[str, float] = {}

MARKER_ENV = {"python_version": "3.11", "python_full_version": "3.11.7", "os_name": "posix",
              "sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux",
              "platform_release": "6.1", "platform_version": "#1", "implementation_name": "cpython",
              "implementation_version": "3.11.7", "platform_python_implementation": "CPython"}

LOCK_SEEDS: dict[str, list[bytes]] = {
    "requirements.txt": [
        b"numpy==1.26.4\nrequests==2.31.0 ; python_version >= '3.8'\n",
        b"# comment\n-r other.txt\n-c constraints.txt\n--index-url https://x.invalid\n"
        b"pkg==1.0 \\\n    --hash=sha256:abcdef\n-e ./src#egg=local\nurlpkg @ https://x.invalid/u.whl\n",
        b"a===1.0\nb==2.0; sys_platform == 'linux' and (python_version < '4' or os_name == 'nt')\n",
    ],
    "pylock.toml": [
        b'lock-version = "1.0"\ncreated-by = "x"\n[[packages]]\nname = "numpy"\nversion = "1.26.4"\n'
        b'marker = "python_version >= \'3.9\'"\n[[packages]]\nname = "b"\nversion = "2"\n',
    ],
    "uv.lock": [
        b'version = 1\nrequires-python = ">=3.10"\n[manifest]\nmembers = ["app"]\n'
        b'[[package]]\nname = "app"\nversion = "0.1"\nsource = { editable = "." }\n'
        b'dependencies = [{ name = "numpy" }, { name = "b", marker = "sys_platform == \'linux\'", '
        b'extra = ["x"] }]\n[package.optional-dependencies]\ngpu = [{ name = "c" }]\n'
        b'[package.dev-dependencies]\ndev = [{ name = "pytest" }]\n'
        b'[[package]]\nname = "numpy"\nversion = "1.26.4"\nresolution-markers = ["python_version < \'4\'"]\n'
        b'[[package]]\nname = "b"\nversion = "2"\n[package.optional-dependencies]\nx = [{ name = "c" }]\n'
        b'[[package]]\nname = "c"\nversion = "3"\n',
    ],
    "environment.yml": [
        b"name: work\nchannels:\n  - conda-forge\ndependencies:\n  - numpy=1.26.4=py311h64a7726_0\n"
        b"  - conda-forge::scipy >=1.10\n  - pip\n  - pip:\n    - requests==2.31.0\n"
        b"    - -r other.txt\nvariables:\n  KEY: value\n",
        b"dependencies: [python=3.11, 'zlib']\nchannels: [conda-forge]  # comment\n",
    ],
    "spec-file.txt": [
        b"# platform: linux-64\n@EXPLICIT\n"
        b"https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3.1-hb9d3cd8_2.conda#abc\n"
        b"file:///opt/channel/noarch/tool-0.5-pyhd8ed1ab_0.tar.bz2\n",
    ],
    "poetry.lock": [
        b'[[package]]\nname = "numpy"\nversion = "1.26.4"\noptional = false\n'
        b'[package.dependencies]\nb = ">=1"\nc = [{version = "1", markers = "os_name == \'nt\'"}, '
        b'{version = "2", markers = "os_name != \'nt\'", extras = ["x"]}]\n'
        b'd = {version = "*", optional = true}\n[package.extras]\ngpu = ["d (>=1)"]\n'
        b'[[package]]\nname = "b"\nversion = "2"\nmarkers = "python_version >= \'3\'"\n'
        b'[metadata]\nlock-version = "2.1"\npython-versions = "^3.10"\ncontent-hash = "x"\n',
    ],
}
TOKENS = [b"[", b"]", b"{", b"}", b"=", b'"', b"'", b"\n", b"\\", b";", b",", b"(", b")", b"==",
          b"[[package]]\n", b"[[packages]]\n", b"name = ", b"version = ", b"marker = ",
          b"markers = ", b"dependencies = ", b"extra = ", b"source = ", b" and ", b" or ",
          b"python_version", b"-r ", b"-c ", b"--hash=", b"#", b"\xff", b"\x00", b"1" * 40,
          b"(" * 200, b"[" * 200, b"{a=" * 100, b"\t", b"\r\n", b"\udcff".decode("utf-8", "ignore").encode()]

C_SOURCE = b"""
int base_value(void) { return 1; }
__asm__(".symver old_value,value@VER_1");
__asm__(".symver new_value,value@@VER_2");
int old_value(void) { return 1; }
int new_value(void) { return 2; }
"""
VERSION_SCRIPT = b"VER_1 { global: base_value; old_value; };\nVER_2 { global: new_value; } VER_1;\n"


def build_elf_seeds(directory: Path) -> list[bytes]:
    """Small shared objects built with cc, plus a few system files as a fallback."""
    seeds: list[bytes] = []
    source = directory / "seed.c"
    source.write_bytes(C_SOURCE)
    (directory / "seed.map").write_bytes(VERSION_SCRIPT)
    variants = [
        ["-Wl,-soname,libseed.so.1", f"-Wl,--version-script={directory / 'seed.map'}", "-lm"],
        ["-Wl,-rpath,$ORIGIN/../lib:/opt/x", "-Wl,--enable-new-dtags", "-lpthread"],
        ["-m32"],
        ["-Wl,--disable-new-dtags", "-Wl,-rpath,/old/rpath", "-Wl,-z,noseparate-code"],
    ]
    compiler = shutil.which("cc") or shutil.which("gcc")
    for index, extra in enumerate(variants):
        output = directory / f"seed{index}.so"
        if compiler is None:
            break
        result = subprocess.run([compiler, "-shared", "-fPIC", "-o", str(output), str(source), *extra],
                                capture_output=True, check=False)
        if result.returncode == 0:
            seeds.append(output.read_bytes())
            stripped = subprocess.run(["strip", "--strip-section-headers", str(output)],
                                      capture_output=True, check=False)
            if stripped.returncode == 0:
                seeds.append(output.read_bytes())
    for candidate in ("/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6",
                      "/lib/aarch64-linux-gnu/libm.so.6"):
        if os.path.isfile(candidate) and os.path.getsize(candidate) < 2 << 20:
            seeds.append(Path(candidate).read_bytes())
    if not seeds:
        raise SystemExit("no ELF seeds: install a C compiler")
    return seeds


def ld_cache_seeds() -> list[bytes]:
    seeds = []
    if os.path.isfile("/etc/ld.so.cache"):
        seeds.append(Path("/etc/ld.so.cache").read_bytes()[:1 << 16])
    entries = [(b"libfoo.so.1", b"/usr/lib/libfoo.so.1"), (b"libbar.so", b"/opt/lib/libbar.so")]
    strings = b"".join(key + b"\x00" + value + b"\x00" for key, value in entries)
    header = b"glibc-ld.so.cache1.1" + struct.pack("<II", len(entries), len(strings)) + bytes([2]) + bytes(19)
    table, offset = b"", 48 + 24 * len(entries)
    for key, value in entries:
        table += struct.pack("<iIIIQ", 0x303, offset, offset + len(key) + 1, 0, 0)
        offset += len(key) + len(value) + 2
    seeds.append(header + table + strings)
    old = b"ld.so-1.7.0" + b"\x00" + struct.pack("=I", 1) + struct.pack("=iII", 1, 0, 4) + b"lib\x00/p\x00"
    seeds.append(old)
    return seeds


INTERESTING = [0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF,
               1 << 32, (1 << 63) - 1, (1 << 64) - 1]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], structured_elf: bool = False,
            tokens: list[bytes] | None = None) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            data.extend(draw(st.binary(max_size=64)))
            continue
        kind = draw(st.sampled_from(["flip", "byte", "run", "truncate", "splice", "delete", "field",
                                     "token", "duplicate"]))
        at = draw(st.integers(0, len(data) - 1))
        if structured_elf and draw(st.booleans()):
            at = draw(st.integers(0, min(len(data) - 1, 0x40)))  # the ELF header
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "run":
            run = draw(st.binary(min_size=1, max_size=32))
            data[at:at + len(run)] = run
        elif kind == "truncate":
            del data[at:]
        elif kind == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, max(0, len(other) - 1)))
            data[at:at + 64] = other[start:start + 64]
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 256))]
        elif kind == "field":
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(st.sampled_from(INTERESTING) | st.integers(0, len(data) + 64))
            value &= (1 << (8 * width)) - 1
            order = draw(st.sampled_from(["<", ">"]))
            packed = value.to_bytes(width, "little" if order == "<" else "big")
            data[at:at + width] = packed
        elif kind == "token" and tokens:
            data[at:at] = draw(st.sampled_from(tokens))
    return bytes(data)


# -- the ELF version-need walk ---------------------------------------------------------------


def version_need_seeds(directory: Path, elf_seeds: list[bytes]) -> list[bytes]:
    """Files shaped like tests/test_elf.py's crafted one (records that read as needs and
    auxiliary entries alike, each chain running to the end), of several sizes, plus every
    real seed that has a version-need table."""
    seeds = [looping_version_needs(directory / f"chain{records}.so", records).read_bytes()
             for records in (1, 2, 16, 300, 5000)]
    return seeds + [seed for seed in elf_seeds if verneed_section(seed) is not None]


def verneed_section(data: bytes | bytearray) -> tuple[int, int, int, bool, str] | None:
    """Where the version-need table is: (offset of its section header, of its records, its
    size, ELF64?, byte order), or None when the file has none that can be found."""
    if len(data) < 52 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    try:
        if is64:
            shoff, = struct.unpack_from(order + "Q", data, 0x28)
            entsize, count = struct.unpack_from(order + "HH", data, 0x3A)
        else:
            shoff, = struct.unpack_from(order + "I", data, 0x20)
            entsize, count = struct.unpack_from(order + "HH", data, 0x2E)
        for index in range(min(count, 256)):
            header = shoff + index * entsize
            kind, = struct.unpack_from(order + "I", data, header + 4)
            if kind == elf.SHT_GNU_VERNEED:
                offset, size = (struct.unpack_from(order + "QQ", data, header + 24) if is64
                                else struct.unpack_from(order + "II", data, header + 16))
                return header, offset, size, is64, order
    except struct.error:
        return None
    return None


# Field offsets within a 16-byte record: Elf_Verneed vn_cnt (H, 2), vn_file (I, 4),
# vn_aux (I, 8), vn_next (I, 12); Elf_Vernaux vna_flags (H, 4), vna_name (I, 8),
# vna_next (I, 12). The records of the table are both, interleaved.
RECORD_FIELDS = [(2, "H"), (4, "H"), (4, "I"), (8, "I"), (12, "I")]


@st.composite
def version_chains(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    found = verneed_section(data)
    if found is None:
        return bytes(data)
    header, offset, size, is64, order = found
    records = max(1, min(size, len(data) - offset) // 16)
    for _ in range(draw(st.integers(1, 6))):
        what = draw(st.sampled_from(["record", "record", "record", "loop", "sh_info", "sh_size"]))
        record = draw(st.integers(0, records - 1))
        at = offset + 16 * record
        if what == "record":
            field, code = draw(st.sampled_from(RECORD_FIELDS))
            limit = (1 << (8 * struct.calcsize(code))) - 1
            value = draw(st.sampled_from([0, 1, 2, 16, 32, 0xFFFF, limit, limit - 15])
                         | st.integers(0, limit))
            position = at + field
        elif what == "loop":  # a next offset that lands on an earlier record (or itself)
            back = draw(st.integers(0, record))
            value, code = (-16 * back) & 0xFFFFFFFF, "I"
            position = at + 12
        elif what == "sh_info":  # the number of needs the section claims
            value, code = draw(st.sampled_from([0, 1, records, records * 2, 0xFFFFFFFF])), "I"
            position = header + (44 if is64 else 28)
        else:  # the section's size: shorter, longer, or past the end of the file
            value = draw(st.sampled_from([0, 16, size // 2, size * 4, len(data) * 2, (1 << 32) - 1]))
            code = "Q" if is64 else "I"
            position = header + (32 if is64 else 20)
        if position + struct.calcsize(code) <= len(data):
            struct.pack_into(order + code, data, position, value & ((1 << (8 * struct.calcsize(code))) - 1))
    return bytes(data)


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


Target = Callable[[bytes], None]
Targets = dict[str, tuple[st.SearchStrategy[bytes], Target]]


def make_targets(work: Path, elf_seeds: list[bytes], cache_seeds: list[bytes]) -> Targets:
    targets: Targets = {}

    elf_path = work / "libfuzz.so"

    def run_elf(data: bytes) -> None:
        elf_path.write_bytes(data)
        facts = elf.read_elf(str(elf_path))
        facts.to_dict()
        elf.read_interpreter(str(elf_path))

    targets["elf"] = (mutated(elf_seeds, structured_elf=True), run_elf)

    chain_path = work / "libchain.so"

    def run_version_walk(data: bytes) -> None:
        chain_path.write_bytes(data)
        facts = elf.read_elf(str(chain_path))
        if facts.failure is not None and not isinstance(facts.failure, Failure):
            raise AssertionError(f"a failure that is not a kind: {facts.failure!r}")
        if (facts.reason is None) is not (facts.failure is None) or "\n" in (facts.reason or ""):
            raise AssertionError(f"a reason without its kind, or on several lines: {facts!r}")
        facts.to_dict()

    targets["version-needs"] = (version_chains(version_need_seeds(work, elf_seeds)), run_version_walk)
    TIME_BOUNDS["version-needs"] = VERSION_WALK_SECONDS

    def run_cache(data: bytes) -> None:
        with contextlib.suppress(ValueError):  # its documented way to refuse
            ldcache.parse_ld_so_cache(data)

    targets["ld.so.cache"] = (mutated(cache_seeds, structured_elf=False), run_cache)

    for name, seeds in LOCK_SEEDS.items():
        directory = work / name.replace(".", "-")
        directory.mkdir(exist_ok=True)
        (directory / "other.txt").write_bytes(b"numpy==1.26.4\n")
        (directory / "constraints.txt").write_bytes(b"b==2.0\n")
        path = directory / name

        def run_lock(data: bytes, path: Path = path) -> None:
            path.write_bytes(data)
            facts = locks.read_lock(str(path))
            facts.to_dict()
            if facts.reason is None:
                applicable(facts, MARKER_ENV)
            elif not facts.reason.startswith(str(path)) and "other.txt" not in facts.reason \
                    and "constraints.txt" not in facts.reason:
                raise AssertionError(f"error does not name the file: {facts.reason}")

        targets[name] = (mutated(seeds, tokens=TOKENS), run_lock)
    return targets


def hypothesis_run(name: str, strategy: st.SearchStrategy[bytes], target: Target, tried: Counter[str],
                   failure: list[tuple[bytes, str]], batch: int, hang_seconds: float) -> Callable[[], None]:
    """One hypothesis run of ``batch`` inputs against ``target``; the failing input
    (after shrinking) is left in ``failure``."""

    @settings(max_examples=batch, deadline=None, database=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink], report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(data: bytes) -> None:
        tried[name] += 1
        try:
            with time_limit(min(hang_seconds, TIME_BOUNDS.get(name, hang_seconds))):
                target(data)
        except BaseException as error:
            failure[:] = [(data, "".join(traceback.format_exception(error)))]
            raise

    return run


def fuzz(seconds: float, hang_seconds: float, crash_dir: Path, batch: int, seed: int | None) -> int:
    work = Path(tempfile.mkdtemp(prefix="envguard-fuzz-"))
    tried: Counter[str] = Counter()
    try:
        targets = make_targets(work, build_elf_seeds(work), ld_cache_seeds())
        bounds = "".join(f", {name} {bound:g} s" for name, bound in TIME_BOUNDS.items())
        print(f"targets: {', '.join(targets)}; {seconds:g} s; hang limit {hang_seconds:g} s{bounds}",
              flush=True)
        deadline = time.monotonic() + seconds
        rounds = 0
        rng = random.Random(seed)  # noqa: S311 - seeds for hypothesis, not secrets
        while time.monotonic() < deadline:
            for name, (strategy, target) in targets.items():
                if time.monotonic() >= deadline:
                    break
                failure: list[tuple[bytes, str]] = []
                run = hypothesis_run(name, strategy, target, tried, failure, batch, hang_seconds)
                run._hypothesis_internal_use_seed = rng.getrandbits(64)  # type: ignore[attr-defined]
                try:
                    run()
                except BaseException:
                    data, trace = failure[0] if failure else (b"", traceback.format_exc())
                    crash_dir.mkdir(parents=True, exist_ok=True)
                    crash = crash_dir / f"crash-{name}-{int(time.time())}"
                    crash.write_bytes(data)
                    print(f"CRASH in {name} after {sum(tried.values())} inputs; input in {crash}\n{trace}")
                    report(tried)
                    return 1
            rounds += 1
            if rounds % 5 == 0:
                report(tried, prefix=f"[{int(seconds - (deadline - time.monotonic()))} s] ")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(tried)
    print("no crash, no hang")
    return 0


def report(tried: Counter[str], prefix: str = "") -> None:
    parts = ", ".join(f"{name} {count}" for name, count in tried.items())
    print(f"{prefix}inputs tried: {sum(tried.values())} ({parts})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz (default 60)")
    parser.add_argument("--hang-seconds", type=float, default=10.0,
                        help="a call slower than this counts as a hang (default 10)")
    parser.add_argument("--batch", type=int, default=500, help="inputs per hypothesis run")
    parser.add_argument("--seed", type=int, default=None, help="seed for the run's random choices")
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"),
                        help="where a crashing input is written (default ./fuzz-crashes)")
    args = parser.parse_args(argv)
    return fuzz(args.seconds, args.hang_seconds, args.crash_dir, args.batch, args.seed)


if __name__ == "__main__":
    sys.exit(main())
