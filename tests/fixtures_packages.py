"""Fixtures for the packages tests: real wheels, real venvs, real pip.

Wheels are written by :func:`build_wheel` (a wheel is a zip file with a
``.dist-info`` directory; PEP 427), so nothing is downloaded and the tests
run offline. Virtual environments are made with ``python -m venv
--without-pip`` and filled by the *real* pip of the test interpreter through
``pip --python``, which also runs ``pip check`` inside them. Each venv gets
the source tree of pytest-envguard (and ``packaging``) through a ``.pth``
file pointing at a shim directory of symlinks, so ``python -m
pytest_envguard`` runs there without adding a distribution or setting
``PYTHONPATH``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import packaging
import pytest

import pytest_envguard

# A clean environment for subprocesses: no activation, no PYTHONPATH.
LEAKY = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH",
         "PYTHONSTARTUP", "PIP_REQUIRE_VIRTUALENV")


def clean_environ(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in LEAKY and not key.startswith("ENVGUARD_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env.update(extra)
    return env


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(directory: Path, name: str, version: str, files: dict[str, bytes],
                tag: str, metadata_text: str | None = None,
                extra_dist_info: dict[str, bytes] | None = None) -> Path:
    """A wheel holding ``files`` (PEP 427: a zip with a dist-info and a RECORD)."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    members = dict(files)
    members[f"{dist_info}/METADATA"] = (metadata_text or
                                        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n"
                                        ).encode()
    members[f"{dist_info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: envguard-tests\n"
                                     f"Root-Is-Purelib: false\nTag: {tag}\n").encode()
    for member, data in (extra_dist_info or {}).items():
        members[f"{dist_info}/{member}"] = data
    record = [_record_line(member, data) for member, data in members.items()]
    record.append(f"{dist_info}/RECORD,,")
    members[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = directory / f"{module}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return path


def repack_installed(directory: Path, name: str) -> Path:
    """A wheel of a distribution installed in the test interpreter, from its RECORD: the
    same files, so pip installs the real thing without a download."""
    dist = metadata.distribution(name)
    info_dir = Path(str(dist._path))  # type: ignore[attr-defined]  # PathDistribution
    files: dict[str, bytes] = {}
    extra: dict[str, bytes] = {}
    for item in dist.files or ():
        path = Path(str(item.locate()))
        relative = str(item)
        if "__pycache__" in relative or relative.startswith(".."):
            continue
        if relative.startswith(info_dir.name + "/"):
            member = relative.split("/", 1)[1]
            if member not in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "METADATA",
                              "WHEEL"):
                extra[member] = path.read_bytes()
            continue
        files[relative] = path.read_bytes()
    wheel = (info_dir / "WHEEL").read_text(encoding="utf-8")
    tag = re.findall(r"^Tag: (\S+)$", wheel, re.MULTILINE)[0]
    return write_wheel(directory, name, dist.version, files, tag,
                       (info_dir / "METADATA").read_text(encoding="utf-8"), extra)


def build_wheel(
    directory: Path,
    name: str,
    version: str,
    requires: Sequence[str] = (),
    *,
    extras: Sequence[str] = (),
    tag: str = "py3-none-any",
) -> Path:
    """A minimal, valid wheel of one module named after the distribution."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    metadata = "".join([
        "Metadata-Version: 2.1\n", f"Name: {name}\n", f"Version: {version}\n",
        *(f"Provides-Extra: {extra}\n" for extra in extras),
        *(f"Requires-Dist: {requirement}\n" for requirement in requires),
        "\n", f"{name}: a wheel built by the pytest-envguard tests.\n",
    ])
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist_info}/METADATA": metadata.encode(),
        f"{dist_info}/WHEEL": (f"Wheel-Version: 1.0\nGenerator: envguard-tests\n"
                               f"Root-Is-Purelib: true\nTag: {tag}\n").encode(),
    }
    record = [_record_line(path, data) for path, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = directory / f"{module}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


#: A PEP 517 backend in the project's own tree (``backend-path``), so that pip and uv
#: build and install local projects offline, with no build dependency to fetch.
IN_TREE_BACKEND = """\
import base64, hashlib, os, zipfile

NAME, VERSION, REQUIRES = {name!r}, {version!r}, {requires!r}
MODULE = NAME.replace("-", "_")
INFO = f"{{MODULE}}-{{VERSION}}.dist-info"


def _metadata():
    lines = ["Metadata-Version: 2.1", f"Name: {{NAME}}", f"Version: {{VERSION}}"]
    return "\\n".join(lines + [f"Requires-Dist: {{r}}" for r in REQUIRES]) + "\\n\\n"


def _wheel(directory, files):
    files = dict(files)
    files[f"{{INFO}}/METADATA"] = _metadata().encode()
    files[f"{{INFO}}/WHEEL"] = b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{{path}},sha256={{digest}},{{len(data)}}")
    files[f"{{INFO}}/RECORD"] = ("\\n".join(record + [f"{{INFO}}/RECORD,,"]) + "\\n").encode()
    name = f"{{MODULE}}-{{VERSION}}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {{f"{{MODULE}}/__init__.py": b""}})


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    here = os.path.dirname(os.path.abspath(__file__))
    return _wheel(wheel_directory, {{f"__editable__.{{MODULE}}.pth": (here + "\\n").encode()}})


def build_sdist(sdist_directory, config_settings=None):
    raise NotImplementedError("wheels only")
"""


def write_project(directory: Path, name: str, version: str, requires: Sequence[str] = ()) -> Path:
    """A local project (``pyproject.toml`` with a static name, its module, an in-tree
    build backend) that pip and uv install offline, editable or not."""
    directory.mkdir(parents=True, exist_ok=True)
    module = name.replace("-", "_")
    quoted = ", ".join(f'"{requirement}"' for requirement in requires)
    (directory / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = [{quoted}]\n\n'
        '[build-system]\nrequires = []\nbuild-backend = "envguard_test_backend"\n'
        'backend-path = ["."]\n', encoding="utf-8")
    (directory / "envguard_test_backend.py").write_text(
        IN_TREE_BACKEND.format(name=name, version=version, requires=list(requires)),
        encoding="utf-8")
    (directory / f"{module}.py").write_text("", encoding="utf-8")
    return directory


def write_dist_info(
    site: Path,
    name: str,
    version: str,
    requires: Sequence[str] = (),
    *,
    installer: str | None = "pip",
    wheel_tag: str | None = None,
    egg_info: bool = False,
    requires_txt: str | None = None,
) -> Path:
    """A hand-made metadata directory, for states pip refuses to create."""
    module = name.replace("-", "_")
    suffix = "egg-info" if egg_info else "dist-info"
    directory = site / f"{module}-{version}.{suffix}"
    directory.mkdir(parents=True)
    headers = [f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"]
    headers += [f"Requires-Dist: {requirement}\n" for requirement in requires]
    (directory / ("PKG-INFO" if egg_info else "METADATA")).write_text(
        "".join(headers) + "\nbody\n", encoding="utf-8")
    if installer is not None:
        (directory / "INSTALLER").write_text(installer + "\n", encoding="utf-8")
    if wheel_tag is not None:
        (directory / "WHEEL").write_text(f"Wheel-Version: 1.0\nTag: {wheel_tag}\n",
                                         encoding="utf-8")
    if requires_txt is not None:
        (directory / "requires.txt").write_text(requires_txt, encoding="utf-8")
    return directory


@dataclass
class Venv:
    """A real virtual environment made by ``python -m venv``."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def site(self) -> Path:
        return next((self.root / "lib").glob("python3*/site-packages"))

    def pip(self, *args: str, check: bool = True, **environ: str
            ) -> subprocess.CompletedProcess[str]:
        """The test interpreter's pip, working on this venv (``pip --python``); offline:
        tests download nothing, so pip never asks an index (``PIP_NO_INDEX``)."""
        return subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(self.python), *args],
            capture_output=True, text=True, check=check,
            env=clean_environ(PIP_NO_INDEX="1", **environ), timeout=120, cwd=self.root,
        )

    def run(self, *args: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), *args], capture_output=True, text=True, check=False,
            env=clean_environ() if env is None else env, cwd=cwd or self.root, timeout=120,
        )

    def envguard(self, *lines: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``python -m pytest_envguard LINE…`` run by this venv's interpreter."""
        return self.run("-m", "pytest_envguard", "-q", *lines, env=env, cwd=cwd)

    def pip_check(self) -> tuple[int, set[tuple[str, str, str]]]:
        """``pip check``'s exit status and problems as (kind, distribution, dependency).

        pip reads the installed distributions with ``importlib.metadata``, as the import
        system and every library do, on Python 3.11+; on 3.10 it still defaults to
        ``pkg_resources``, which picks another copy of two in one directory and parses
        metadata differently (docs/hygiene.md). ``consistent`` judges the copies in effect,
        so the oracle is pip's importlib.metadata backend on every version."""
        result = self.pip("check", check=False, _PIP_USE_IMPORTLIB_METADATA="1")
        return result.returncode, parse_pip_check(result.stdout)

    def envguard_problems(self, env: dict[str, str] | None = None) -> list[dict[str, str]]:
        """The ``consistent`` problems as this venv's interpreter computes them."""
        code = ("import dataclasses, json\n"
                "from pytest_envguard.checks.hygiene import find_problems\n"
                "from pytest_envguard.environment import Environment\n"
                "env = Environment()\n"
                "found = find_problems(env.installed, env.markers, env.supported_tags.tags)\n"
                "print(json.dumps([dict(dataclasses.asdict(x), pip_check=x.pip_check) "
                "for x in found]))")
        result = self.run("-c", code, env=env)
        assert result.returncode == 0, result.stderr
        problems: list[dict[str, str]] = json.loads(result.stdout)
        return problems

    def verdict(self, line: str, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> dict[str, Any]:
        """One line's verdict, as the JSON document of ``python -m pytest_envguard`` has it."""
        result = self.envguard("--json", "-", line, env=env, cwd=cwd)
        assert result.returncode in (0, 6), result.stdout + result.stderr
        (verdict,) = json.loads(result.stdout)["contract"]
        assert (verdict["status"] == "met") is (result.returncode == 0)
        return dict(verdict)

    def in_effect(self, env: dict[str, str] | None = None) -> dict[str, str]:
        """The oracle for "which copy": for every name this venv's ``importlib.metadata``
        lists, the metadata directory ``importlib.metadata.distribution(name)`` returns."""
        code = ("import importlib.metadata as m, json, re\n"
                "names = {re.sub(r'[-_.]+', '-', d.metadata['Name'] or '').lower() "
                "for d in m.distributions()} - {''}\n"
                "print(json.dumps({n: str(m.distribution(n)._path) for n in names}))")
        result = self.run("-c", code, env=env)
        assert result.returncode == 0, result.stderr
        found: dict[str, str] = json.loads(result.stdout)
        return found

    def envguard_in_effect(self, env: dict[str, str] | None = None) -> dict[str, str]:
        """What the scan takes for the copy in effect of each name."""
        code = ("import json\n"
                "from pytest_envguard.probes.distributions import probe_installed\n"
                "print(json.dumps({n: d.path for n, d in probe_installed().active().items()}))")
        result = self.run("-c", code, env=env)
        assert result.returncode == 0, result.stderr
        found: dict[str, str] = json.loads(result.stdout)
        return found

    def uv(self, *args: str, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The real uv (a test extra), offline, aimed at this venv."""
        return subprocess.run(
            [uv_binary(), *args], capture_output=True, text=True, check=False, timeout=120,
            cwd=cwd or self.root, env=env or clean_environ(UV_NO_CACHE="1", UV_OFFLINE="1",
                                                           UV_PYTHON=str(self.python),
                                                           UV_PROJECT_ENVIRONMENT=str(self.root)))


def uv_binary() -> str:
    """uv's binary, from the uv wheel installed with the test extra."""
    from uv import find_uv_bin

    return str(find_uv_bin())


def uv_would_change(result: subprocess.CompletedProcess[str]) -> set[str]:
    """What a ``uv … --dry-run`` would install, update or remove: the `` + name==v`` /
    `` - name==v`` lines it prints, as canonical names."""
    assert result.returncode == 0, result.stdout + result.stderr
    changed = set()
    for line in (result.stdout + result.stderr).splitlines():
        match = re.match(r"\s*[-+~]\s+([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match:
            changed.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return changed


def assert_consistent_agrees_with_pip(venv: Venv, env: dict[str, str] | None = None,
                                      ) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The differential oracle of ``consistent``: real ``pip check`` and real
    ``importlib.metadata`` judge the same venv. The copy in effect of every name is
    importlib's; the problems ``pip check`` reports are exactly those of kind
    ``pip-check``; every other problem is a documented extension; the verdict is met
    exactly when pip check passes and there is no extension problem; and the JSON
    lists every problem with its kind."""
    from pytest_envguard.checks.hygiene import EXTENSIONS

    assert venv.envguard_in_effect(env) == venv.in_effect(env)
    status, pip_problems = venv.pip_check()
    ours = venv.envguard_problems(env)
    assert as_pip_check(ours) == pip_problems
    beyond = [p for p in ours if not p["pip_check"]]
    assert all(p["extension"] in EXTENSIONS for p in beyond), beyond
    if status != 0 and not pip_problems:  # pip check could not parse some metadata
        assert any(p["extension"] in ("invalid-requirement", "invalid-version",
                                      "broken-metadata") for p in beyond)
    verdict = venv.verdict("consistent", env=env)
    assert (verdict["status"] == "met") is (status == 0 and not beyond), (verdict, pip_problems)
    listed = verdict.get("problems", [])
    assert len(listed) == len(ours)
    assert sorted(p["kind"] for p in listed) == sorted(
        p["extension"] or "pip-check" for p in ours)
    return verdict, ours


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pip_check(output: str) -> set[tuple[str, str, str]]:
    """pip check's lines as (``missing``/``conflict``/``unsupported``, distribution,
    dependency), names canonical."""
    problems = set()
    for line in output.splitlines():
        words = line.split()
        if " which is not installed" in line:
            problems.add(("missing", _canonical(words[0]), _canonical(words[3].rstrip(","))))
        elif " has requirement " in line:
            problems.add(("conflict", _canonical(words[0]), _canonical(words[-2])))
        elif line.endswith(" is not supported on this platform"):
            problems.add(("unsupported", _canonical(words[0]), ""))
    return problems


def as_pip_check(problems: list[dict[str, str]]) -> set[tuple[str, str, str]]:
    return {(p["kind"], p["distribution"].split()[0], p["dependency"] or "")
            for p in problems if p["pip_check"]}


@pytest.fixture(scope="session")
def envguard_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory exposing the source of pytest_envguard and its pure-Python dependencies
    that the CLI imports (packaging; tomli before 3.11), without their metadata."""
    shim = tmp_path_factory.mktemp("shim")
    (shim / "pytest_envguard").symlink_to(Path(pytest_envguard.__file__).parent)
    (shim / "packaging").symlink_to(Path(packaging.__file__).parent)
    if sys.version_info < (3, 11):
        import tomli

        (shim / "tomli").symlink_to(Path(tomli.__file__).parent)
    return shim


@pytest.fixture(scope="session")
def numpy_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The numpy this interpreter has (part of the test extra: a real manylinux wheel
    with vendored libraries), repacked into a wheel, so venvs install it offline."""
    try:
        metadata.distribution("numpy")
    except metadata.PackageNotFoundError:
        pytest.fail("numpy is part of the test extra (pip install -e '.[test]')")
    return repack_installed(tmp_path_factory.mktemp("numpy-wheel"), "numpy")


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small pure-Python wheels with requirements, markers and extras."""
    house = tmp_path_factory.mktemp("wheelhouse")
    build_wheel(house, "alpha", "1.0", ["beta>=1.0", 'gamma ; extra == "gpu"',
                                        'delta ; python_version < "3"'], extras=["gpu"])
    build_wheel(house, "beta", "1.5")
    build_wheel(house, "beta", "2.0")
    build_wheel(house, "gamma", "0.3")
    build_wheel(house, "needs-missing", "0.1", ["not-there>=1", 'linux-only ; sys_platform == "linux"'])
    build_wheel(house, "needs-new-beta", "3.0", ["beta>=2"])
    build_wheel(house, "wants-gpu", "1.1", ["alpha[gpu]>=1"])
    return house


MakeVenv = Callable[..., Venv]


@pytest.fixture(scope="session")
def make_venv(tmp_path_factory: pytest.TempPathFactory, envguard_shim: Path) -> MakeVenv:
    """``make_venv(name)``: a fresh real venv with pytest_envguard importable."""

    def make(name: str) -> Venv:
        root = tmp_path_factory.mktemp(name) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)],
                       check=True, env=clean_environ(), timeout=120)
        venv = Venv(root)
        (venv.site / "envguard-shim.pth").write_text(f"{envguard_shim}\n", encoding="utf-8")
        return venv

    return make


@pytest.fixture(scope="session")
def consistent_venv(make_venv: MakeVenv, wheelhouse: Path) -> Venv:
    """A venv pip installed with dependency resolution: nothing is broken."""
    venv = make_venv("consistent")
    venv.pip("install", "--no-index", "--find-links", str(wheelhouse), "alpha", "wants-gpu",
             "beta==1.5")
    return venv


@pytest.fixture(scope="session")
def broken_venv(make_venv: MakeVenv, wheelhouse: Path) -> Venv:
    """A venv broken the usual ways: ``--no-deps`` installs, a conflict, an extra
    whose requirement is missing, a duplicate from another installer, invalid metadata."""
    venv = make_venv("broken")
    venv.pip("install", "--no-deps", "--no-index", "--find-links", str(wheelhouse),
             "alpha", "beta==1.5", "needs-missing", "needs-new-beta", "wants-gpu")
    # A second site directory on sys.path holding another copy of beta, put there
    # by "conda": pip check is silent, importlib.metadata returns the first.
    other = venv.root / "other-site"
    write_dist_info(other, "beta", "2.0", installer="conda")
    (venv.site / "zz-other.pth").write_text(f"{other}\n", encoding="utf-8")
    write_dist_info(venv.site, "bad-meta", "1.0", ["[not a requirement]"])
    return venv
