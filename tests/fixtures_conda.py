"""Fixtures for the conda tests: real conda prefixes, made offline at test time.

Small conda packages are written here (a ``.tar.bz2`` is a tar archive holding
``info/index.json``, ``info/paths.json``, ``info/files`` and the files; the
layout is conda's, as ``conda-package-handling`` reads it), indexed into a
local ``file://`` channel by py-rattler's indexer (``repodata.json`` per
subdir), then solved and installed by py-rattler's ``solve`` and ``install``
— so every ``conda-meta/*.json`` is written by a real conda installer, never
by hand.

The channel's ``python`` package carries a copy of the interpreter running the
tests (and softlinks to its standard library), so the prefix has a working
``bin/python`` whose ``sys.prefix`` *is* the conda prefix: the real pip installs
into it (``pip --python``), real ``pip check`` and ``importlib.metadata`` judge
it, and ``python -m pytest_envguard`` runs inside it as it would in a user's
conda env. pytest-envguard, packaging and (unless a test leaves it out)
py-rattler reach that interpreter through a ``.pth`` file naming a shim
directory of symlinks, which adds no distribution to the prefix.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import packaging
import pytest

import pytest_envguard
from tests.fixtures_packages import _record_line, clean_environ

if TYPE_CHECKING:
    from tests.fixtures_native import LoaderAnswer

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
PY_NODOT = PY.replace(".", "")
SITE = f"lib/python{PY}/site-packages"
ABI_SPEC = f"python_abi {PY}.* *_cp{PY_NODOT}"
SUBDIR = "linux-64"


@dataclass(frozen=True)
class CondaPackage:
    """One conda package to build: its ``index.json`` fields and its files."""

    name: str
    version: str
    build: str = "0"
    build_number: int = 0
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    files: Mapping[str, bytes] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)  # path → symlink target
    noarch: str | None = None  # "python": files under site-packages/, linked by the installer

    @property
    def subdir(self) -> str:
        return "noarch" if self.noarch else SUBDIR

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.tar.bz2"


def dist_info_files(name: str, version: str, *, requires: Sequence[str] = (),
                    installer: str | None = "conda", site: str = SITE,
                    module: str | None = None) -> dict[str, bytes]:
    """A Python distribution as conda-build packs it: the module and its
    ``*.dist-info`` (METADATA, INSTALLER ``conda``, RECORD) under ``site``."""
    module = module or name.replace("-", "_").lower()
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    metadata = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                        *(f"Requires-Dist: {r}\n" for r in requires), "\n"])
    files = {f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
             f"{info}/METADATA": metadata.encode()}
    if installer is not None:
        files[f"{info}/INSTALLER"] = f"{installer}\n".encode()
    record = [_record_line(path, data) for path, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    return {f"{site}/{path}": data for path, data in files.items()}


def build_conda_package(channel: Path, package: CondaPackage) -> Path:
    """Write ``package`` into ``channel/<subdir>/`` as a ``.tar.bz2``."""
    index: dict[str, Any] = {
        "name": package.name, "version": package.version, "build": package.build,
        "build_number": package.build_number, "depends": list(package.depends),
        "subdir": package.subdir, "license": "MIT", "timestamp": 1_700_000_000_000,
    }
    if package.constrains:
        index["constrains"] = list(package.constrains)
    if package.noarch:
        index["noarch"] = package.noarch
    else:
        index.update(arch="x86_64", platform="linux")
    paths = [{"_path": path, "path_type": "hardlink", "size_in_bytes": len(data),
              "sha256": hashlib.sha256(data).hexdigest()} for path, data in package.files.items()]
    paths += [{"_path": path, "path_type": "softlink"} for path in package.links]
    meta = {
        "info/index.json": json.dumps(index).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}).encode(),
        "info/files": "".join(f"{path}\n" for path in [*package.files, *package.links]).encode(),
    }
    target = channel / package.subdir / package.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:bz2") as archive:
        for path, data in {**meta, **package.files}.items():
            member = tarfile.TarInfo(path)
            member.size = len(data)
            member.mode = 0o755 if path.startswith("bin/") else 0o644
            member.mtime = 1_700_000_000
            archive.addfile(member, io.BytesIO(data))
        for path, link in package.links.items():
            member = tarfile.TarInfo(path)
            member.type = tarfile.SYMTYPE
            member.linkname = link
            archive.addfile(member)
    return target


def index_channel(channel: Path) -> None:
    """``repodata.json`` for every subdir of ``channel``, written by py-rattler's indexer."""
    from rattler.index import index_fs

    (channel / "noarch").mkdir(parents=True, exist_ok=True)
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False, force=True))


def python_package() -> CondaPackage:
    """conda's ``python``, made of the interpreter running the tests: a copy of its
    binary (a symlink would make it find its own prefix), softlinks to its shared
    library and to every entry of its standard library, an empty site-packages."""
    executable = Path(os.path.realpath(sys._base_executable))  # type: ignore[attr-defined]
    stdlib = Path(sysconfig.get_paths(vars={"installed_base": sys.base_prefix,
                                            "base": sys.base_prefix})["stdlib"])
    links = {"bin/python": f"python{PY}"}
    for entry in sorted(stdlib.iterdir()):
        if entry.name not in ("site-packages", "__pycache__"):
            links[f"lib/python{PY}/{entry.name}"] = str(entry)
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libdir = Path(sysconfig.get_config_var("LIBDIR") or "")
        soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
        if soname and (libdir / soname).exists():
            links[f"lib/{soname}"] = str(libdir / soname)
    return CondaPackage(
        "python", ".".join(map(str, sys.version_info[:3])), "0_cpython", depends=(ABI_SPEC,),
        files={f"bin/python{PY}": executable.read_bytes(),
               f"{SITE}/README.txt": b"This directory exists so that 3rd party packages can be installed here.\n"},
        links=links)


#: The channel every conda test installs from. Names and versions are chosen for what
#: they exercise: conda version order (``1.10`` after ``1.9``, ``2.0a0`` before
#: ``2.0``), build-string globs (``*_cp3XX``), ``constrains``, a noarch package, a
#: conda name that differs from its Python name.
def standard_packages() -> list[CondaPackage]:
    return [
        python_package(),
        CondaPackage("python_abi", PY, f"4_cp{PY_NODOT}"),
        CondaPackage("python_abi", PY, f"4_cp{PY_NODOT}t", build_number=4),  # free-threaded: never chosen
        CondaPackage("libzed", "1.9", "h0", files={"lib/libzed.so.1.9": b"libzed 1.9\n"}),
        CondaPackage("libzed", "1.10", "h0", files={"lib/libzed.so.1.10": b"libzed 1.10\n"}),
        CondaPackage("libzed", "2.0", "h0", files={"lib/libzed.so.2": b"libzed 2.0\n"}),
        CondaPackage("zed", "1.0", f"py{PY_NODOT}_0",
                     depends=(f"python >={PY},<{PY}.999", ABI_SPEC, "libzed >=1.10,<2.0a0"),
                     files=dist_info_files("zed", "1.0")),
        CondaPackage("tool", "0.5", "pyhd8ed1ab_0", depends=("python >=3.8", "zed >=1.0"),
                     noarch="python",
                     files=dist_info_files("tool", "0.5", requires=["zed>=1.0"],
                                           site="site-packages")),
        CondaPackage("pinner", "1.0", "0", constrains=("libzed <1.10",)),
        CondaPackage("typing_extensions", "4.7.1", "pyha770c72_0", depends=("python >=3.8",),
                     noarch="python",
                     files=dist_info_files("typing_extensions", "4.7.1", site="site-packages")),
        # conda's name is not the Python name: `pyyaml` installs PyYAML
        CondaPackage("pyyaml", "6.0.1", f"py{PY_NODOT}_0", depends=(ABI_SPEC,),
                     files=dist_info_files("PyYAML", "6.0.1", module="yaml")),
        # Python modules with no pip metadata (as conda's py-opencv ships cv2): pip does not
        # know they are there
        CondaPackage("py-plain", "1.0", "0", depends=(ABI_SPEC,),
                     files={f"{SITE}/plain/__init__.py": b"VERSION = '1.0'\n"}),
        CondaPackage("ruamel_yaml", "0.15.100", f"py{PY_NODOT}_0", depends=(ABI_SPEC,),
                     files={f"{SITE}/ruamel_yaml/__init__.py": b"VERSION = '0.15.100'\n"}),
    ]


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@dataclass
class CondaChannel:
    """A local ``file://`` channel and the caches that py-rattler uses with it."""

    root: Path
    cache: Path  # repodata cache and package cache, per session

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def records(self, *specs: str) -> list[Any]:
        """The channel's ``RepoDataRecord`` exactly matching each spec (no solve): what
        ``conda install --no-deps`` would take, or a lock file pins."""
        import rattler

        gateway = rattler.Gateway(cache_dir=self.cache / "repodata")
        found = _run(gateway.query([rattler.Channel(self.url)], [SUBDIR, "noarch"],
                                   specs=[rattler.MatchSpec(s) for s in specs], recursive=False))
        records = [record for subdir in found for record in subdir]
        chosen = []
        for spec in specs:
            matching = [r for r in records if rattler.MatchSpec(spec).matches(r)]
            assert matching, f"no package in the channel matches {spec!r}"
            chosen.append(max(matching, key=lambda r: (r.version, r.build_number)))
        return chosen

    def solve(self, *specs: str) -> list[Any]:
        import rattler

        gateway = rattler.Gateway(cache_dir=self.cache / "repodata")
        return list(_run(rattler.solve([self.url], list(specs), gateway=gateway,
                                       platforms=[SUBDIR, "noarch"], virtual_packages=[])))


@dataclass
class CondaPrefix:
    """A conda prefix written by py-rattler, with a working interpreter."""

    root: Path
    channel: CondaChannel
    # Per prefix: conda hard-links files from its package cache, so an edit made in
    # place in one prefix would change every prefix linked from the same cache.
    package_cache: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def site(self) -> Path:
        return self.root / SITE

    @property
    def meta(self) -> Path:
        return self.root / "conda-meta"

    def record_path(self, name: str) -> Path:
        (path,) = [p for p in self.meta.glob("*.json")
                   if p.name.rsplit("-", 2)[0] == name]
        return path

    def record(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.record_path(name).read_text(encoding="utf-8"))
        return data

    def install(self, records: Sequence[Any]) -> None:
        """Make the prefix hold exactly ``records`` (what py-rattler's transaction does:
        link what is new, unlink what is gone) — ``conda install --no-deps`` /
        ``conda remove --force`` when the set is not a solution."""
        import rattler

        _run(rattler.install(list(records), self.root, cache_dir=self.package_cache,
                             show_progress=False, execute_link_scripts=False))

    def add(self, *specs: str) -> None:
        """Install these exact packages on top, with no solve (``--no-deps``)."""
        current = self.installed_records()
        names = {s.split()[0] for s in specs}
        keep = [r for r in current if r.name.normalized not in names]
        self.install([*keep, *self.channel.records(*specs)])

    def remove(self, *names: str) -> None:
        """``conda remove --force NAME``: unlink it, leave its dependents."""
        self.install([r for r in self.installed_records() if r.name.normalized not in names])

    def installed_records(self) -> list[Any]:
        """The prefix's records as RepoDataRecords (for the next transaction)."""

        wanted = [f"{p['name']} =={p['version']} {p['build']}"
                  for p in (json.loads(path.read_text(encoding="utf-8"))
                            for path in sorted(self.meta.glob("*.json")))]
        return self.channel.records(*wanted) if wanted else []

    def prefix_records(self) -> list[Any]:
        """Every ``conda-meta/*.json`` as py-rattler's ``PrefixRecord`` reads it."""
        import rattler

        return [rattler.PrefixRecord.from_path(path) for path in sorted(self.meta.glob("*.json"))]

    def pip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The test interpreter's pip, working on the prefix's interpreter (``pip
        --python``), as ``pip install`` in an activated conda env does."""
        result = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(self.python), *args],
            capture_output=True, text=True, check=False, timeout=180, cwd=self.root,
            env=clean_environ(PIP_NO_INDEX="1"))
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def run(self, *args: str, env: Mapping[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.python), *args], capture_output=True, text=True,
                              check=False, timeout=180, cwd=cwd or self.root,
                              env=dict(clean_environ() if env is None else env))

    def envguard_json(self, *lines: str, env: Mapping[str, str] | None = None,
                      cwd: Path | None = None) -> dict[str, Any]:
        """``python -m pytest_envguard --json - LINE…`` inside the prefix."""
        result = self.run("-m", "pytest_envguard", "-q", "--json", "-", *lines, env=env, cwd=cwd)
        assert result.returncode in (0, 6), result.stdout + result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def verdict(self, line: str, env: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> dict[str, Any]:
        (verdict,) = self.envguard_json(line, env=env, cwd=cwd)["contract"]
        return dict(verdict)

    def pip_check(self) -> tuple[int, str]:
        result = self.pip("check", check=False)
        return result.returncode, result.stdout

    def with_rattler(self, present: bool) -> None:
        """Make py-rattler importable in the prefix's interpreter, or not."""
        (self.site / "envguard-shim.pth").write_text(
            f"{self.channel.root.parent / ('shim' if present else 'shim-no-rattler')}\n",
            encoding="utf-8")


def make_shims(base: Path) -> None:
    """``base/shim`` (pytest_envguard, packaging, rattler) and ``base/shim-no-rattler``."""
    import rattler

    for name, with_rattler in (("shim", True), ("shim-no-rattler", False)):
        shim = base / name
        shim.mkdir(exist_ok=True)
        modules = [Path(pytest_envguard.__file__).parent, Path(packaging.__file__).parent]
        if with_rattler:
            modules.append(Path(rattler.__file__).parent)
        if sys.version_info < (3, 11):
            import tomli

            modules.append(Path(tomli.__file__).parent)
        for module in modules:
            if not (shim / module.name).exists():
                (shim / module.name).symlink_to(module)


@pytest.fixture(scope="session")
def conda_channel(tmp_path_factory: pytest.TempPathFactory) -> CondaChannel:
    """The standard channel (:func:`standard_packages`), built and indexed once."""
    base = tmp_path_factory.mktemp("conda")
    channel = CondaChannel(base / "channel", base / "cache")
    for package in standard_packages():
        build_conda_package(channel.root, package)
    index_channel(channel.root)
    make_shims(base)
    return channel


MakePrefix = Callable[..., CondaPrefix]


@pytest.fixture
def make_prefix(conda_channel: CondaChannel, tmp_path: Path) -> MakePrefix:
    """``make_prefix("zed", "tool", name="env")``: a fresh prefix solved and installed
    from the standard channel, with pytest_envguard (and py-rattler) importable."""

    def make(*specs: str, name: str = "prefix", rattler: bool = True,
             records: Iterable[Any] | None = None) -> CondaPrefix:
        prefix = CondaPrefix(tmp_path / name, conda_channel, tmp_path / f"{name}-pkgs")
        chosen = list(records) if records is not None else conda_channel.solve("python", *specs)
        prefix.install(chosen)
        prefix.with_rattler(rattler)
        return prefix

    return make


@pytest.fixture(scope="session")
def conda_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels that pip installs over the conda packages."""
    from tests.fixtures_packages import build_wheel

    house = tmp_path_factory.mktemp("conda-wheels")
    build_wheel(house, "zed", "2.0")
    build_wheel(house, "zed", "1.0")
    build_wheel(house, "PyYAML", "6.0.2")
    build_wheel(house, "typing-extensions", "4.12.2")
    build_wheel(house, "needs-zed", "1.0", ["zed>=1.0"])
    build_wheel(house, "needs-new-zed", "1.0", ["zed>=2.0"])
    build_wheel(house, "plain", "1.0")
    build_wheel(house, "ruamel.yaml", "0.18.6")
    return house


def copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)


def prefix_environment(prefix: CondaPrefix, environ: Mapping[str, str] | None = None,
                       **settings: Any) -> Any:
    """An :class:`Environment` describing ``prefix`` as its own interpreter would see it
    (``sys.prefix`` is the prefix; ``sys.path`` is its site-packages), built in this
    process: the probes take the prefix as a parameter."""
    from dataclasses import replace

    from pytest_envguard.environment import Environment, Settings
    from pytest_envguard.probes.distributions import scan_distributions
    from pytest_envguard.probes.interpreter import probe_python

    python = replace(probe_python(), executable=str(prefix.python), prefix=str(prefix.root),
                     base_prefix=str(prefix.root))
    installed = scan_distributions([str(prefix.site)], str(prefix.root), str(prefix.root))
    return Environment({"python": python, "installed": installed},
                       environ={} if environ is None else environ, settings=Settings(**settings))


def build_wheel_with_files(directory: Path, name: str, version: str,
                           files: Mapping[str, bytes]) -> Path:
    """A wheel of ``name`` holding exactly ``files`` (e.g. a vendored ``name.libs/`` library,
    as auditwheel repairs write them)."""
    import zipfile

    info = f"{name}-{version}.dist-info"
    members = dict(files)
    members[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    members[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: py3-none-any\n"
    record = [_record_line(path, data) for path, data in members.items()] + [f"{info}/RECORD,,"]
    members[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return path


# -- native libraries from two managers (issue 16, point 3) ---------------------------------------
# A prefix whose conda packages ship ELF libraries built with cc — libfoo (lib/libfoo.so.1,
# symbol version FOO_1.0) and libbar (lib/libbar.so.1, which needs libfoo.so.1) — and pip
# wheels whose extension modules were built elsewhere: so2ext needs libfoo.so.2; newerext
# needs FOO_2.0 of libfoo.so.1; dupext vendors dupext.libs/libfoo-ab12cd34.so.1 and needs
# conda's libbar (so one import loads two libfoo); goodext needs only what conda gives.

NATIVE_SOURCES = {
    "foo.c": "int foo_one(void) { return 1; }\n",
    "foo.map": "FOO_1.0 { global: foo_one; local: *; };\n",
    "foo_newer.c": "int foo_one(void) { return 1; }\nint foo_two(void) { return 2; }\n",
    "foo_newer.map": "FOO_1.0 { global: foo_one; local: *; };\nFOO_2.0 { global: foo_two; } FOO_1.0;\n",
    "bar.c": "extern int foo_one(void);\nint bar(void) { return foo_one(); }\n",
    "uses_one.c": "extern int foo_one(void);\nint ext(void) { return foo_one(); }\n",
    "uses_two.c": "extern int foo_two(void);\nint ext(void) { return foo_two(); }\n",
    "uses_bar.c": "extern int bar(void);\nextern int foo_one(void);\n"
                  "int ext(void) { return bar() + foo_one(); }\n",
}
#: From a module at PREFIX/lib/pythonX.Y/site-packages/PKG/, the prefix's lib/: where a
#: module built in a conda environment finds conda's libraries (its RUNPATH).
TO_PREFIX_LIB = "-Wl,-rpath,$ORIGIN/../../..,--enable-new-dtags"
VENDORED_LIBFOO = "libfoo-ab12cd34.so.1"


@dataclass
class NativePrefix:
    prefix: CondaPrefix
    modules: dict[str, Path]  # distribution → its extension module, installed

    @property
    def lib(self) -> Path:
        return self.prefix.root / "lib"

    def loader(self, module: Path) -> LoaderAnswer:
        """The real loader's answer, asked by the prefix's own python."""
        from tests.fixtures_native import real_loader

        return real_loader(module, clean_environ(), python=self.prefix.python)


def _build_native(work: Path) -> dict[str, Path]:
    """The libraries and modules of :func:`conda_native_prefix`, built with cc."""
    from tests.fixtures_native import compile_shared

    work.mkdir(parents=True)
    for name, text in NATIVE_SOURCES.items():
        (work / name).write_text(text, encoding="utf-8")
    conda_lib, newer, so2, vendored = (work / d for d in ("conda", "newer", "so2", "vendored"))
    foo = compile_shared(conda_lib / "libfoo.so.1", work / "foo.c", "-Wl,-soname,libfoo.so.1",
                         f"-Wl,--version-script={work / 'foo.map'}")
    bar = compile_shared(conda_lib / "libbar.so.1", work / "bar.c", "-Wl,-soname,libbar.so.1",
                         str(foo), "-Wl,-rpath,$ORIGIN,--enable-new-dtags")
    newer_foo = compile_shared(newer / "libfoo.so.1", work / "foo_newer.c",
                               "-Wl,-soname,libfoo.so.1",
                               f"-Wl,--version-script={work / 'foo_newer.map'}")
    foo2 = compile_shared(so2 / "libfoo.so.2", work / "foo.c", "-Wl,-soname,libfoo.so.2",
                          f"-Wl,--version-script={work / 'foo.map'}")
    vendored_foo = compile_shared(vendored / VENDORED_LIBFOO, work / "foo.c",
                                  f"-Wl,-soname,{VENDORED_LIBFOO}",
                                  f"-Wl,--version-script={work / 'foo.map'}")
    return {
        "libfoo": foo, "libbar": bar,
        "so2ext": compile_shared(work / "so2ext.so", work / "uses_one.c", str(foo2), TO_PREFIX_LIB),
        "newerext": compile_shared(work / "newerext.so", work / "uses_two.c", str(newer_foo),
                                   TO_PREFIX_LIB),
        "goodext": compile_shared(work / "goodext.so", work / "uses_one.c", str(foo),
                                  TO_PREFIX_LIB),
        "dupext": compile_shared(work / "dupext.so", work / "uses_bar.c", str(bar),
                                 str(vendored_foo),
                                 "-Wl,-rpath,$ORIGIN/../dupext.libs:$ORIGIN/../../..,"
                                 "--enable-new-dtags"),
        "vendored": vendored_foo,
    }


@pytest.fixture(scope="session")
def conda_native_prefix(tmp_path_factory: pytest.TempPathFactory) -> NativePrefix:
    base = tmp_path_factory.mktemp("conda-native")
    built = _build_native(base / "build")
    channel = CondaChannel(base / "channel", base / "cache")
    abi = f"python_abi {PY}.* *_cp{PY_NODOT}"
    for package in (
        python_package(),
        CondaPackage("python_abi", PY, f"4_cp{PY_NODOT}"),
        CondaPackage("libfoo", "1.0", "h0", files={"lib/libfoo.so.1": built["libfoo"].read_bytes()}),
        CondaPackage("libbar", "1.0", "h0", depends=("libfoo >=1.0,<2.0a0",),
                     files={"lib/libbar.so.1": built["libbar"].read_bytes()}),
    ):
        build_conda_package(channel.root, package)
    index_channel(channel.root)
    make_shims(base)
    prefix = CondaPrefix(base / "prefix", channel, base / "pkgs")
    prefix.install(channel.solve("python", abi, "libbar"))
    prefix.with_rattler(True)
    wheels = base / "wheels"
    wheels.mkdir()
    modules = {}
    for name in ("so2ext", "newerext", "goodext", "dupext"):
        files = {f"{name}/__init__.py": b"", f"{name}/_ext.so": built[name].read_bytes()}
        if name == "dupext":
            files[f"dupext.libs/{VENDORED_LIBFOO}"] = built["vendored"].read_bytes()
        prefix.pip("install", "--no-deps", str(build_wheel_with_files(wheels, name, "1.0", files)))
        modules[name] = prefix.site / name / "_ext.so"
    return NativePrefix(prefix, modules)
