"""How often `extensions` and `library` agree with the real dynamic loader, on real
binary wheels broken on purpose.

    python benchmarks/agreement_native.py                   # a venv of real wheels in a temp dir
    python benchmarks/agreement_native.py --quick           # fewer packages and breakages
    python benchmarks/agreement_native.py --python VENV/bin/python --json cases.json

A venv is filled by pip from the package index with binary wheels (numpy, scipy,
pandas, pillow, lxml, cryptography, grpcio, pyarrow, h5py, onnxruntime,
opencv-python-headless, llvmlite, pyzmq, orjson, shapely, scikit-learn; one that
fails to install is skipped and named). Then it is broken, one case at a time:

* every vendored library (in ``*.libs`` or shipped beside the modules) removed,
  made unreadable (mode 000, judged as a user the modes apply to: root drops its
  capabilities), cut in half, replaced by text, and replaced by another build: another
  wheel's copy of the same library (numpy's OpenBLAS for scipy's, a libgfortran for
  another), else the next vendored library (other symbols, other versions);
* shadowing files on ``LD_LIBRARY_PATH`` and in its hardware-capability
  subdirectories (``glibc-hwcaps/x86-64-v3``, ``tls``, …): a copy, text, an empty
  file, a directory, an ELF32 or another machine's copy, a cut copy — of each
  vendored library and of the system libraries the wheels and the interpreter's own
  modules need (``extensions`` with no argument: every wheel and ``lib-dynload``);
* a module renamed to another Python's suffix (``cpython-312`` under 3.11);
* for ``library``: each of a list of sonames, shadowed the same ways.

Each case is judged by the plugin (in this process; the mode-000 cases in a child
that dropped its capabilities) and by the real loader: a fresh interpreter with the
case's environment that forks once per module or name and ``dlopen``s it
(``ctypes.CDLL``, RTLD_NOW as Python's import), so every answer starts from what the
interpreter has loaded, plus — as the package's import would have — the modules of
the distributions its own requires (scipy's modules after numpy's). For the renamed
modules, the oracle is Python's own finder (``FileFinder`` with
``EXTENSION_SUFFIXES``). ``ldd`` is asked too, on the vendored cases, for
comparison. A case agrees when the same modules are broken (``extensions``), or when
both say the same file loads, or both say it fails (``library``). With no
distribution named, the interpreter itself is judged too (does it start with the
case's environment?); where it does not, every module counts as broken, and a
verdict naming the interpreter broken says so. A false green is a case where the
plugin says fine and the loader fails; a false red the reverse. Exits 1 on any
disagreement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_envguard.probes import extensions, loader  # noqa: E402
from pytest_envguard.probes.distributions import scan_distributions  # noqa: E402

PACKAGES = ("numpy", "scipy", "pandas", "pillow", "lxml", "cryptography", "grpcio", "pyarrow",
            "h5py", "onnxruntime", "opencv-python-headless", "llvmlite", "pyzmq", "orjson",
            "shapely", "scikit-learn")
QUICK_PACKAGES = ("numpy", "scipy", "pillow", "shapely", "h5py", "pyzmq", "orjson", "lxml")

#: Sonames asked of `library` (those that exist here), and shadowed in extension cases.
LIBRARY_NAMES = ("libstdc++.so.6", "libgcc_s.so.1", "libz.so.1", "libgomp.so.1", "libssl.so.3",
                 "libcrypto.so.3", "libffi.so.8", "libexpat.so.1", "liblzma.so.5",
                 "libbz2.so.1.0", "libsqlite3.so.0", "libm.so.6", "libuuid.so.1")
# Not libffi.so.8: the oracle's ctypes needs it, so a broken one leaves nothing to ask.
SYSTEM_SHADOWS = ("libstdc++.so.6", "libgcc_s.so.1", "libz.so.1", "libcrypto.so.3",
                  "libexpat.so.1", "libm.so.6", "liblzma.so.5")
QUICK_SYSTEM_SHADOWS = ("libstdc++.so.6", "libz.so.1", "libcrypto.so.3")
SHADOW_KINDS = ("copy", "text", "empty", "directory", "elf32", "machine", "cut")
PLACES = ("", "glibc-hwcaps/x86-64-v2", "glibc-hwcaps/x86-64-v3", "glibc-hwcaps/x86-64-v4",
          "tls", "haswell", "x86_64")
QUICK_PLACES = ("", "glibc-hwcaps/x86-64-v3", "tls")

# capset(2): as in tests/fixtures_reliability.py, so file modes hold for root too.
DROP_PRIVILEGES = textwrap.dedent("""
    import ctypes, os, platform, struct
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        number = {"x86_64": 126, "aarch64": 91}.get(platform.machine(), -1)
        header = ctypes.create_string_buffer(struct.pack("II", 0x20080522, 0), 8)
        if libc.syscall(number, header, ctypes.create_string_buffer(bytes(24), 24)) != 0:
            raise SystemExit("could not drop capabilities")
""")

# The oracle: one interpreter per case; a fork per target, so each dlopen starts from
# what the interpreter alone loaded. Answers: [loaded, error, the file it opened].
ORACLE = r"""
import ctypes, json, os, signal, sys
class LinkMap(ctypes.Structure):
    pass
LinkMap._fields_ = [("l_addr", ctypes.c_void_p), ("l_name", ctypes.c_char_p),
                    ("l_ld", ctypes.c_void_p), ("l_next", ctypes.POINTER(LinkMap)),
                    ("l_prev", ctypes.POINTER(LinkMap))]
dlinfo = ctypes.CDLL(None).dlinfo
dlinfo.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]

def in_child(work):
    # Run work() in a forked child; its JSON answer, or how the child died.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, json.dumps(work()).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 1 << 20):
        data += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return None, signal.Signals(os.WTERMSIG(status)).name
    return json.loads(data), None

def dlopen(target):
    try:
        handle = ctypes.CDLL(target)
        node = ctypes.POINTER(LinkMap)()
        dlinfo(handle._handle, 2, ctypes.byref(node))
        return [True, "", node.contents.l_name.decode("utf-8", "surrogateescape")]
    except OSError as error:
        return [False, str(error), None]

def group(first, targets):
    # What a package's import has loaded before its own modules (its requirements'
    # modules), then each module in a fresh fork of that.
    for module in first:
        try:
            ctypes.CDLL(module)
        except OSError:
            pass
    answers = {}
    for target in targets:
        answer, died = in_child(lambda: dlopen(target))
        answers[target] = answer if died is None else [False, "killed by " + died, None]
    return answers

answers = {}
for item in json.loads(sys.argv[1]):
    found, died = in_child(lambda: group(item["first"], item["targets"]))
    if died is not None:  # a requirement's module killed the group: judge alone
        found, _ = in_child(lambda: group([], item["targets"]))
    answers.update(found)
print(json.dumps(answers))
"""


# The plugin as a user the file modes hold for (the mode-000 cases).
PLUGIN_UNPRIVILEGED = r"""
import json, sys
from pytest_envguard.probes import extensions
from pytest_envguard.probes.distributions import scan_distributions
setup = json.loads(sys.argv[1])
installed = scan_distributions(setup["paths"])
facts = extensions.probe_extensions(setup["dist"], setup["environ"], installed,
                                    executable=setup["python"], suffixes=setup["suffixes"],
                                    interpreter_dirs=setup["dynload"])
print(json.dumps(sorted({problem.file for problem in facts.problems})))
"""


# -- the venv --------------------------------------------------------------------------------


def make_venv(directory: Path, packages: tuple[str, ...]) -> tuple[Path, list[str]]:
    """A venv with the binary wheels pip could install; the packages it could not."""
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    python = directory / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--only-binary=:all:",
           "--disable-pip-version-check"]
    if subprocess.run([*pip, *packages], check=False).returncode == 0:
        return python, []
    failed = [name for name in packages
              if subprocess.run([*pip, name], check=False).returncode != 0]
    return python, failed


@dataclass
class Target:
    """The interpreter under test and what it imports."""

    python: Path
    paths: list[str]
    suffixes: list[str]
    dynload: list[str]

    @classmethod
    def of(cls, python: Path) -> Target:
        code = ("import importlib.machinery as m, json, sys; print(json.dumps([sys.path, "
                "m.EXTENSION_SUFFIXES]))")
        result = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                                check=True)
        paths, suffixes = json.loads(result.stdout)
        paths = [entry for entry in paths if entry]
        return cls(python, paths, suffixes, [entry for entry in paths
                                             if entry.rstrip("/").endswith("lib-dynload")])


# -- breaking things -----------------------------------------------------------------------------


@contextlib.contextmanager
def broken(path: Path, how: str, other: Path | None = None) -> Iterator[None]:
    """``path`` removed, made unreadable, cut in half, replaced by text, by ``other``
    (another build) or renamed to another Python's suffix — and put back afterwards."""
    backup = path.with_name(path.name + ".envguard-backup")
    shutil.copy2(path, backup)
    moved: Path | None = None
    try:
        if how == "removed":
            path.unlink()
        elif how == "unreadable":
            path.chmod(0)
        elif how == "cut":
            data = path.read_bytes()
            path.write_bytes(data[:len(data) // 2])
        elif how == "text":
            path.write_text("this is not a shared library\n" * 40)
        elif how == "swapped" and other is not None:
            shutil.copyfile(other, path)
        elif how == "other-python":
            tag = path.name.split("cpython-", 1)[1][:3]
            other = "312" if tag != "312" else "311"
            moved = path.with_name(path.name.replace(f"cpython-{tag}-", f"cpython-{other}-", 1))
            path.rename(moved)
        yield
    finally:
        if moved is not None and moved.exists():
            moved.unlink()
        if path.exists():
            path.chmod(0o644)
            path.unlink()
        os.replace(backup, path)


def another_build(library: Path, libraries: list[Path], index: int) -> Path:
    """What takes ``library``'s place in a "swapped" case: another wheel's build of the
    same library when there is one (numpy's and scipy's OpenBLAS, two libgfortrans:
    other symbols, other versions), else the next library of the list."""
    stem = library.name.split("-", 1)[0].split(".so", 1)[0]
    for other in libraries:
        if other != library and other.name.split("-", 1)[0].split(".so", 1)[0] == stem:
            return other
    return libraries[(index + 1) % len(libraries)]


def make_shadow(directory: Path, name: str, kind: str, source: str | None) -> None:
    """A file (or directory) called ``name`` in ``directory``, of the given kind."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    data = Path(source).read_bytes() if source else b"\x7fELF" + bytes(60)
    if kind == "copy":
        target.write_bytes(data)
    elif kind == "text":
        target.write_text("not a library\n" * 40)
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "directory":
        target.mkdir()
    elif kind == "elf32":
        target.write_bytes(data[:4] + b"\x01" + data[5:])
    elif kind == "machine":
        target.write_bytes(data[:18] + (183).to_bytes(2, "little") + data[20:])
    elif kind == "cut":
        target.write_bytes(data[:len(data) // 2])


# -- the two judges -------------------------------------------------------------------------------


def starts(target: Target, environ: dict[str, str]) -> bool:
    """Whether the interpreter itself starts with this environment."""
    return subprocess.run([str(target.python), "-c", "pass"], env=environ, capture_output=True,
                          check=False, timeout=60).returncode == 0


def oracle(target: Target, names: list[str], environ: dict[str, str], *,
           unprivileged: bool = False,
           first: dict[str, list[str]] | None = None) -> dict[str, list[object]]:
    """The real loader's answer for each name: [loaded, error, the file it opened]; when
    the interpreter does not even start, every answer is a failure. ``first``: for a
    name, the modules dlopened before it (those of the distributions its own requires,
    which its package imports first)."""
    if not starts(target, environ):
        return {name: [False, "the interpreter does not start", None] for name in names}
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in names:
        groups.setdefault(tuple((first or {}).get(name, ())), []).append(name)
    work = [{"first": list(preload), "targets": targets} for preload, targets in groups.items()]
    code = (DROP_PRIVILEGES if unprivileged else "") + ORACLE
    result = subprocess.run([str(target.python), "-c", code, json.dumps(work)], env=environ,
                            capture_output=True, text=True, check=False, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"the oracle failed: {result.stderr[-2000:]}")
    answers: dict[str, list[object]] = json.loads(result.stdout.strip().splitlines()[-1])
    return answers


def importable(target: Target, module: str) -> bool:
    """Python's own finder: is there a file for this module with a suffix it imports?"""
    import importlib.machinery

    directory, base = os.path.split(module)
    name = base.split(".", 1)[0]
    finder = importlib.machinery.FileFinder(directory, (
        importlib.machinery.ExtensionFileLoader, target.suffixes))
    spec = finder.find_spec(name)
    return spec is not None and spec.origin == module


def ldd_broken(module: str, environ: dict[str, str]) -> bool:
    result = subprocess.run(["ldd", module], capture_output=True, text=True, env=environ,
                            check=False, timeout=60)
    output = result.stdout + result.stderr
    return result.returncode != 0 or "not found" in output or "error" in output.lower()


@dataclass
class Tally:
    cases: int = 0
    agree: int = 0
    false_green: int = 0
    false_red: int = 0
    wrong_file: int = 0
    modules: int = 0
    disagreements: list[dict[str, object]] = field(default_factory=list)

    def add(self, case: str, green: list[str], red: list[str], wrong: list[str],
            modules: int) -> None:
        self.cases += 1
        self.modules += modules
        self.agree += not (green or red or wrong)
        self.false_green += bool(green)
        self.false_red += bool(red)
        self.wrong_file += bool(wrong)
        if green or red or wrong:
            self.disagreements.append({"case": case, "false_green": green, "false_red": red,
                                       "wrong_file": wrong})


class Bench:
    def __init__(self, target: Target, scratch: Path, quick: bool,
                 packages: tuple[str, ...]) -> None:
        self.target = target
        self.scratch = scratch
        self.quick = quick
        self.packages = {name.lower().replace("_", "-") for name in packages}
        self.installed = scan_distributions(target.paths)
        self.cache = scratch / "elf-cache"
        self.base_env = {key: value for key, value in os.environ.items()
                         if key not in ("LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONPATH")}
        self.tallies = {"extensions": Tally(), "library": Tally(), "ldd": Tally()}
        self.dists = {name: dist for name, dist in self.installed.active().items()
                      if extensions.extension_files(dist)}

    # -- extensions --------------------------------------------------------------------------

    def preloads(self, modules: list[str]) -> dict[str, list[str]]:
        """For each module, the modules of the distributions its own requires."""
        owner = {path: name for name, dist in self.dists.items()
                 for path in extensions.extension_files(dist) or []}
        active = self.installed.active()
        first: dict[str, list[str]] = {}
        for module in modules:
            name = owner.get(module)
            if name is None:
                continue
            first[module] = [path for dist in extensions.required_distributions(name, active)
                             for path in extensions.extension_files(dist) or []
                             if any(path.endswith(suffix) for suffix in self.target.suffixes)]
        return first

    def modules_of(self, dist: str | None) -> list[str]:
        chosen = [self.dists[dist]] if dist else list(self.dists.values())
        found = [path for item in chosen for path in extensions.extension_files(item) or []
                 if any(path.endswith(suffix) for suffix in self.target.suffixes)
                 and not extensions.foreign_module(path, self.target.suffixes)]
        if dist is None:
            found += extensions.interpreter_modules(self.target.dynload, self.target.suffixes)
        return found

    def plugin_broken(self, dist: str | None, environ: dict[str, str], *,
                      unprivileged: bool) -> set[str]:
        if unprivileged:
            setup = {"paths": self.target.paths, "dist": dist, "environ": environ,
                     "python": str(self.target.python), "suffixes": self.target.suffixes,
                     "dynload": self.target.dynload}
            env = {**environ, "PYTHONPATH": str(ROOT)}
            result = subprocess.run([sys.executable, "-c", DROP_PRIVILEGES + PLUGIN_UNPRIVILEGED,
                                     json.dumps(setup)], env=env, capture_output=True,
                                    text=True, check=False, timeout=600)
            if result.returncode != 0:
                raise RuntimeError(result.stderr[-2000:])
            return set(json.loads(result.stdout))
        facts = extensions.probe_extensions(
            dist, environ, self.installed, cache_dir=self.cache, executable=str(self.target.python),
            suffixes=self.target.suffixes, interpreter_dirs=self.target.dynload)
        return {problem.file for problem in facts.problems}

    def judge_extensions(self, case: str, dist: str | None, environ: dict[str, str], *,
                         unprivileged: bool = False, renamed: str | None = None,
                         with_ldd: bool = False) -> None:
        targets = [module for module in self.modules_of(dist) if module != renamed]
        said = self.plugin_broken(dist, environ, unprivileged=unprivileged)
        answers = oracle(self.target, targets, environ, unprivileged=unprivileged,
                         first=self.preloads(targets))
        truth = {module for module in targets if not answers[module][0]}
        if renamed and not importable(self.target, renamed):
            truth.add(renamed)
        if dist is None:
            # With no distribution named, the interpreter itself is judged too: does it
            # start? Where it does not, nothing imports, and a verdict that says so
            # (the interpreter named broken) says every module is.
            interpreter = os.path.realpath(self.target.python)
            if not starts(self.target, environ):
                truth.add(interpreter)
            if interpreter in said:
                said |= set(targets)
        self.tallies["extensions"].add(case, sorted(truth - said), sorted(said - truth), [],
                                       len(targets) + bool(renamed))
        if with_ldd:
            ldd = {module for module in targets if ldd_broken(module, environ)}
            self.tallies["ldd"].add(case, sorted(truth - ldd), sorted(ldd - truth), [],
                                    len(targets))

    def vendored(self) -> list[tuple[str, Path]]:
        """(distribution, library) for every shared library a wheel ships that is not
        one of its modules."""
        found = []
        for name, dist in sorted(self.dists.items()):
            if name not in self.packages:
                continue
            modules = set(extensions.extension_files(dist) or [])
            for path in extensions.shipped_libraries([dist]).values():
                if path not in modules and os.path.isfile(path):
                    found.append((name, Path(path)))
        return found

    def extension_cases(self) -> None:
        environ = dict(self.base_env)
        self.judge_extensions("extensions: intact", None, environ)
        for name in sorted(self.dists):
            if name in self.packages:
                self.judge_extensions(f"extensions {name}: intact", name, environ, with_ldd=True)
        vendored = self.vendored()
        for index, (dist, library) in enumerate(vendored):
            for how in ("removed", "unreadable", "cut", "text"):
                with broken(library, how):
                    self.judge_extensions(f"extensions {dist}: {library.name} {how}", dist,
                                          environ, unprivileged=how == "unreadable",
                                          with_ldd=how == "removed")
            other = another_build(library, [path for _, path in vendored], index)
            with broken(library, "swapped", other):
                self.judge_extensions(f"extensions {dist}: {library.name} swapped for "
                                      f"{other.parent.name}/{other.name}", dist, environ)
            kinds = ("text", "elf32") if self.quick else ("text", "elf32", "directory", "cut")
            for kind in kinds:
                for place in ("", "glibc-hwcaps/x86-64-v3", "tls"):
                    shadow = self.scratch / "shadow"
                    shutil.rmtree(shadow, ignore_errors=True)
                    make_shadow(shadow / place, library.name, kind, str(library))
                    self.judge_extensions(
                        f"extensions {dist}: {kind} {library.name} in LD_LIBRARY_PATH/{place}",
                        dist, {**environ, "LD_LIBRARY_PATH": str(shadow)})
        shadows = QUICK_SYSTEM_SHADOWS if self.quick else SYSTEM_SHADOWS
        places = QUICK_PLACES if self.quick else ("", "glibc-hwcaps/x86-64-v3", "tls")
        kinds = ("copy", "text", "elf32") if self.quick else SHADOW_KINDS
        for name in shadows:
            source = loader.find_library(name, environ, site_dirs=[], loaded=()).path
            if source is None:
                continue
            for kind in kinds:
                for place in places:
                    shadow = self.scratch / "shadow"
                    shutil.rmtree(shadow, ignore_errors=True)
                    make_shadow(shadow / place, name, kind, source)
                    self.judge_extensions(f"extensions: {kind} {name} in LD_LIBRARY_PATH/{place}",
                                          None, {**environ, "LD_LIBRARY_PATH": str(shadow)})
        tag = self.target.suffixes[0].split("-")[1]  # ".cpython-311-x86_64…" → "311"
        other = "312" if tag != "312" else "311"
        for dist in sorted(self.dists):
            if dist not in self.packages:
                continue
            module = next((path for path in self.modules_of(dist)
                           if f"cpython-{tag}-" in path), None)
            if module is None:
                continue
            renamed = module.replace(f"cpython-{tag}-", f"cpython-{other}-", 1)
            record = Path(self.dists[dist].path) / "RECORD"
            listing = record.read_text(encoding="utf-8")
            relative = os.path.relpath(module, self.dists[dist].location)
            # The module's name now carries another Python's tag, in the file and in
            # RECORD, as when a cp312 wheel is unpacked into a 3.11 site-packages.
            with broken(Path(module), "other-python"):
                record.write_text(listing.replace(
                    relative, os.path.relpath(renamed, self.dists[dist].location)),
                    encoding="utf-8")
                try:
                    self.judge_extensions(f"extensions {dist}: {os.path.basename(module)} "
                                          f"as cpython-{other}", dist, environ, renamed=renamed)
                finally:
                    record.write_text(listing, encoding="utf-8")

    # -- library --------------------------------------------------------------------------------

    def plugin_library(self, names: list[str], environ: dict[str, str]) -> dict[str, str | None]:
        """The file the plugin says a plain dlopen of each name opens (None: it fails)."""
        said: dict[str, str | None] = {}
        for name in names:
            facts = loader.find_library(name, environ, site_dirs=[], loaded=(),
                                        executable=str(self.target.python))
            opened = facts.path if facts.reach in (loader.REACH_DLOPEN, loader.REACH_LOADED) \
                else None
            said[name] = None if facts.load_errors else opened
        return said

    def judge_library(self, case: str, names: list[str], environ: dict[str, str]) -> None:
        said = self.plugin_library(names, environ)
        answers = oracle(self.target, names, environ)
        for name in names:
            loaded, _, opened = answers[name]
            mine = said[name]
            green = [name] if mine and not loaded else []
            red = [name] if loaded and not mine else []
            wrong = [f"{name}: {mine} vs {opened}"] if mine and loaded and \
                os.path.realpath(mine) != os.path.realpath(str(opened)) else []
            self.tallies["library"].add(f"{case}: {name}", green, red, wrong, 1)

    def library_cases(self) -> None:
        environ = dict(self.base_env)
        names = [name for name in LIBRARY_NAMES
                 if loader.find_library(name, environ, site_dirs=[], loaded=()).path]
        names.append("libenvguard-nowhere.so.1")
        self.judge_library("intact", names, environ)
        for dist, library in self.vendored()[: 12 if self.quick else None]:
            # A vendored library is not on the loader's path: a plain dlopen fails.
            self.judge_library(f"vendored {dist}", [library.name], environ)
        chosen = [name for name in (names[:5] if self.quick else names)
                  if name not in ("libffi.so.8", "libenvguard-nowhere.so.1")]
        places = QUICK_PLACES if self.quick else PLACES
        for name in chosen:
            source = loader.find_library(name, environ, site_dirs=[], loaded=()).path
            for kind in SHADOW_KINDS:
                for place in places:
                    shadow = self.scratch / "shadow"
                    shutil.rmtree(shadow, ignore_errors=True)
                    make_shadow(shadow / place, name, kind, source)
                    self.judge_library(f"{kind} in LD_LIBRARY_PATH/{place}", [name],
                                       {**environ, "LD_LIBRARY_PATH": str(shadow)})

    # -- the report ------------------------------------------------------------------------------

    def report(self) -> str:
        lines = [f"{'key':<12} {'cases':>6} {'agree':>6} {'%':>7} {'false green':>12} "
                 f"{'false red':>10} {'wrong file':>11}"]
        for key, tally in self.tallies.items():
            if not tally.cases:
                continue
            share = 100 * tally.agree / tally.cases
            label = "ldd" if key == "ldd" else key
            lines.append(f"{label:<12} {tally.cases:>6} {tally.agree:>6} {share:>6.1f}% "
                         f"{tally.false_green:>12} {tally.false_red:>10} {tally.wrong_file:>11}")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", type=Path, help="a venv interpreter with the wheels")
    parser.add_argument("--quick", action="store_true", help="fewer packages and breakages")
    parser.add_argument("--json", type=Path, help="write every case and disagreement here")
    options = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="envguard-agreement-") as scratch_dir:
        scratch = Path(scratch_dir)
        packages = QUICK_PACKAGES if options.quick else PACKAGES
        failed: list[str] = []
        python = options.python
        if python is None:
            python, failed = make_venv(scratch / "venv", packages)
        target = Target.of(python)
        bench = Bench(target, scratch, options.quick, packages)
        missing = [name for name in packages
                   if name.replace("_", "-").lower() not in bench.installed.active()]
        bench.extension_cases()
        bench.library_cases()
        print(f"interpreter   {target.python}")
        print(f"wheels        {', '.join(sorted(bench.dists))}")
        if failed or missing:
            print(f"not installed {', '.join(sorted(set(failed) | set(missing)))}")
        print(f"vendored      {len(bench.vendored())} libraries")
        print(f"took          {time.monotonic() - started:.0f} s")
        print()
        print(bench.report())
        print("(ldd: the same question put to `ldd`, on the intact and vendored cases)")
        disagreements = [item for key in ("extensions", "library")
                         for item in bench.tallies[key].disagreements]
        for item in disagreements:
            print(f"DISAGREE {item}")
        if options.json:
            options.json.write_text(json.dumps(
                {key: {"cases": tally.cases, "agree": tally.agree,
                       "false_green": tally.false_green, "false_red": tally.false_red,
                       "wrong_file": tally.wrong_file, "modules": tally.modules,
                       "disagreements": tally.disagreements}
                 for key, tally in bench.tallies.items()}, indent=2))
        sys.exit(1 if disagreements else 0)


if __name__ == "__main__":
    main()
