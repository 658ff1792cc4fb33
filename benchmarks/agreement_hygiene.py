"""How often `consistent`, `lock`, `isolated` and `wheels` agree with the real tools.

    python benchmarks/agreement_hygiene.py [--quick] [--pythons 3.11,3.12,3.13] [--no-poetry]

For each interpreter (pyenv's 3.11–3.13 by default; ``--quick``: the one running
this script, no Poetry) the script makes a project of real distributions from the
index (about 70 once resolved), locks it with the real tools (``uv lock``, ``uv
export`` to requirements and to ``pylock.toml``, ``uv pip compile``, ``pip freeze``),
syncs a venv from the lock with ``uv sync``, then breaks copies of it on purpose and
asks both sides:

* ``consistent`` and ``wheels`` against real ``pip check`` (and, for which copy of a
  name is in effect, ``importlib.metadata`` in the venv's interpreter): the problems
  of kind ``pip-check`` must be exactly pip's, every other one a documented extension;
* ``lock FILE`` against uv: ``uv sync --locked --dry-run --inexact`` for ``uv.lock``,
  ``uv pip install --dry-run -r`` for requirement files and ``pylock.toml`` (what
  syncing every extra and group would change counts too, for what is installed); and
  Poetry 2.x (``poetry install --dry-run``) on a smaller project, when it installs;
* ``isolated`` against the venv's interpreter itself: a module importable from a
  ``sys.path`` entry outside the environment, or an activation variable naming
  another environment.

It prints, per key: cases, agree, false green (the plugin met, the tool not), false
red (the reverse, or the same verdict for other reasons), and each disagreement.
Exit status 1 on any disagreement. Needs the network (the index), uv (the test
extra) and, for Poetry, room to install it into a scratch venv.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures_packages import IN_TREE_BACKEND  # noqa: E402  (the in-tree backend)

#: The project's requirements: real, popular distributions, a few with binary wheels.
DEPENDENCIES = [
    "requests", "rich", "click", "jinja2", "attrs", "pydantic", "httpx[http2]", "pytest",
    "pyyaml", "python-dateutil", "tomlkit", "typer", "markdown", "filelock", "platformdirs",
    "virtualenv", "black", "docutils", "sphinx", "msgpack", "cryptography", "wrapt",
    "more-itertools", "tabulate", "toolz", "cachetools", "decorator", "tenacity", "psutil",
]
GROUPS = {"dev": ["coverage"], "lint": ["isort"], "docs": ["toml"]}
DEFAULT_GROUPS = ["dev", "lint"]
EXTRAS = {"fast": ["ujson"]}

PROJECT = """\
[project]
name = "agreement-proj"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = {dependencies}

[project.optional-dependencies]
fast = {fast}

[dependency-groups]
dev = {dev}
lint = {lint}
docs = {docs}

[tool.uv]
default-groups = {defaults}

[build-system]
requires = []
build-backend = "envguard_test_backend"
backend-path = ["."]
"""

POETRY_PROJECT = """\
[project]
name = "poetry-proj"
version = "0.1.0"
requires-python = ">=3.11,<4"
dependencies = ["requests", "click", "rich"]

[project.optional-dependencies]
fast = ["ujson"]

[tool.poetry]
package-mode = false

[tool.poetry.group.dev.dependencies]
iniconfig = "*"

[tool.poetry.group.docs]
optional = true

[tool.poetry.group.docs.dependencies]
toml = "*"

[[tool.poetry.source]]
name = "index"
url = "https://pypi.org/simple/"
priority = "primary"
"""


def run(command: Sequence[str], *, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False,
                            timeout=kw.pop("timeout", 900), **kw)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def clean_environ(**extra: str) -> dict[str, str]:
    leaky = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH",
             "PYTHONUSERBASE", "PYTHONNOUSERSITE", "UV_PROJECT_ENVIRONMENT")
    env = {k: v for k, v in os.environ.items() if k not in leaky and not k.startswith("ENVGUARD_")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", UV_LINK_MODE="copy", **extra)
    return env


def uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


@dataclass
class Tally:
    cases: int = 0
    agree: int = 0
    false_green: int = 0
    false_red: int = 0
    notes: list[str] = field(default_factory=list)

    def record(self, case: str, ours_met: bool, oracle_met: bool, same: bool) -> None:
        self.cases += 1
        if same:
            self.agree += 1
        elif ours_met and not oracle_met:
            self.false_green += 1
            self.notes.append(f"false green: {case}")
        else:
            self.false_red += 1
            self.notes.append(f"false red: {case}")


TALLIES = {key: Tally() for key in ("consistent", "lock", "isolated", "wheels")}


# -- environments ------------------------------------------------------------------------


@dataclass
class Venv:
    root: Path
    shim: Path

    @property
    def python(self) -> str:
        return str(self.root / "bin" / "python")

    @property
    def site(self) -> Path:
        return next((self.root / "lib").glob("python3*/site-packages"))

    def copy(self, dest: Path) -> Venv:
        shutil.copytree(self.root, dest, symlinks=True)
        return Venv(dest, self.shim)

    def envguard(self, line: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> dict[str, Any]:
        result = run([self.python, "-m", "pytest_envguard", "-q", "--json", "-", line], check=False,
                     env=env or clean_environ(), cwd=cwd or self.root)
        if result.returncode not in (0, 6):
            raise RuntimeError(f"envguard {line}: {result.stdout}{result.stderr}")
        (verdict,) = json.loads(result.stdout)["contract"]
        return dict(verdict)

    def python_json(self, code: str, env: dict[str, str] | None = None) -> Any:
        result = run([self.python, "-c", code], env=env or clean_environ(), cwd=self.root)
        return json.loads(result.stdout)

    def pip_check(self) -> tuple[int, set[tuple[str, str, str]]]:
        result = run([sys.executable, "-m", "pip", "--python", self.python, "check"], check=False,
                     env=clean_environ())
        problems = set()
        for line in result.stdout.splitlines():
            words = line.split()
            if " which is not installed" in line:
                problems.add(("missing", canonical(words[0]), canonical(words[3].rstrip(","))))
            elif " has requirement " in line:
                problems.add(("conflict", canonical(words[0]), canonical(words[-2])))
            elif line.endswith(" is not supported on this platform"):
                problems.add(("unsupported", canonical(words[0]), ""))
        return result.returncode, problems

    def installed_names(self) -> set[str]:
        return set(self.python_json(
            "import importlib.metadata as m, json, re\n"
            "print(json.dumps(sorted({re.sub(r'[-_.]+', '-', d.metadata['Name'] or '').lower() "
            "for d in m.distributions()} - {''})))"))


def shim_directory(work: Path) -> Path:
    """pytest_envguard and packaging, importable in every venv through a .pth file,
    without a distribution of their own (nothing added to what is judged)."""
    import packaging

    shim = work / "shim"
    if not shim.exists():
        shim.mkdir()
        (shim / "pytest_envguard").symlink_to(REPO / "pytest_envguard")
        (shim / "packaging").symlink_to(Path(packaging.__file__).parent)
    return shim


def add_shim(venv: Venv) -> None:
    (venv.site / "zz-envguard-shim.pth").write_text(f"{venv.shim}\n", encoding="utf-8")


def write_project(directory: Path) -> Path:
    directory.mkdir(parents=True)
    quoted = json.dumps
    (directory / "pyproject.toml").write_text(PROJECT.format(
        dependencies=quoted(DEPENDENCIES), fast=quoted(EXTRAS["fast"]), dev=quoted(GROUPS["dev"]),
        lint=quoted(GROUPS["lint"]), docs=quoted(GROUPS["docs"]), defaults=quoted(DEFAULT_GROUPS)),
        encoding="utf-8")
    (directory / "envguard_test_backend.py").write_text(IN_TREE_BACKEND.format(
        name="agreement-proj", version="0.1.0", requires=DEPENDENCIES), encoding="utf-8")
    (directory / "agreement_proj.py").write_text("", encoding="utf-8")
    return directory


def prepare(work: Path, python: str) -> tuple[Path, Venv]:
    """The project, its lock files made by the real tools, and a venv synced from it."""
    project = write_project(work / "project")
    env = clean_environ(UV_PYTHON=python, UV_PROJECT_ENVIRONMENT=str(work / "base"))
    run([uv(), "lock"], cwd=project, env=env)
    run([uv(), "sync", "--locked"], cwd=project, env=env)
    run([uv(), "export", "--format", "requirements-txt", "--no-hashes", "-o", "exported.txt"],
        cwd=project, env=env)
    run([uv(), "export", "--format", "pylock.toml", "-o", "pylock.toml"], cwd=project, env=env)
    run([uv(), "pip", "compile", "pyproject.toml", "-o", "compiled.txt", "--python", python],
        cwd=project, env=env)
    venv = Venv(work / "base", shim_directory(work.parent))
    frozen = run([sys.executable, "-m", "pip", "--python", venv.python, "freeze"], env=env).stdout
    (project / "frozen.txt").write_text(frozen, encoding="utf-8")
    add_shim(venv)
    return project, venv


# -- consistent and wheels ----------------------------------------------------------------

JUDGE = """\
import dataclasses, importlib.metadata as m, json, re
from pytest_envguard.checks.hygiene import find_problems
from pytest_envguard.environment import Environment
env = Environment()
problems = find_problems(env.installed, env.markers, env.supported_tags.tags)
names = {re.sub(r'[-_.]+', '-', d.metadata['Name'] or '').lower() for d in m.distributions()} - {''}
print(json.dumps({
    "problems": [dict(dataclasses.asdict(p), pip_check=p.pip_check) for p in problems],
    "ours": {n: d.path for n, d in env.installed.active().items() if n in names},
    "importlib": {n: str(m.distribution(n)._path) for n in names},
}))
"""


def judge_consistent(case: str, venv: Venv) -> None:
    from pytest_envguard.checks.hygiene import EXTENSIONS

    answer = venv.python_json(JUDGE)
    status, pip_problems = venv.pip_check()
    problems = answer["problems"]
    ours = {(p["kind"], p["distribution"].split()[0], p["dependency"] or "")
            for p in problems if p["pip_check"]}
    beyond = [p for p in problems if not p["pip_check"]]
    verdict = venv.envguard("consistent")
    ours_met = verdict["status"] == "met"
    same = (ours == pip_problems and answer["ours"] == answer["importlib"]
            and all(p["extension"] in EXTENSIONS for p in beyond)
            and ours_met is (status == 0 and not beyond)
            and len(verdict.get("problems", [])) == len(problems))
    TALLIES["consistent"].record(case, ours_met, status == 0 and not beyond, same)
    if not same:
        TALLIES["consistent"].notes.append(f"  pip: {sorted(pip_problems)}; ours: {sorted(ours)}")
    # wheels: the unsupported ones pip check names, against the `wheels` verdict
    pip_unsupported = {name for kind, name, _ in pip_problems if kind == "unsupported"}
    wheels = venv.envguard("wheels")
    ours_unsupported = {p["distribution"].split()[0] for p in problems if p["kind"] == "unsupported"}
    wheels_met = wheels["status"] == "met"
    TALLIES["wheels"].record(case, wheels_met, not pip_unsupported,
                             ours_unsupported == pip_unsupported and wheels_met is not pip_unsupported)


def dist_info(venv: Venv, name: str) -> Path:
    return next(p for p in venv.site.glob("*.dist-info")
                if canonical(p.name.split("-")[0]) == canonical(name))


def retag(venv: Venv, name: str, tag: str | None) -> None:
    wheel = dist_info(venv, name) / "WHEEL"
    lines = [line for line in wheel.read_text().splitlines() if not line.startswith("Tag:")]
    wheel.write_text("\n".join(lines + ([f"Tag: {tag}"] if tag else [])) + "\n")


def stale_copy_first(venv: Venv, name: str, version: str) -> None:
    """Another metadata directory of ``name`` at ``version``, listed by the directory
    before the real one if a few spellings can make it so."""
    real = dist_info(venv, name)
    module = real.name.split("-")[0]
    for spelling in (module, module.lower(), module.upper(), module.title()):
        stale = venv.site / f"{spelling}-{version}.dist-info"
        shutil.copytree(real, stale)
        metadata = (stale / "METADATA").read_text()
        (stale / "METADATA").write_text(re.sub(r"(?m)^Version: .*$", f"Version: {version}",
                                               metadata, count=1))
        listed = [n for n in os.listdir(venv.site) if canonical(n.split("-")[0]) == canonical(name)]
        if listed[0] == stale.name:
            return
        shutil.rmtree(stale)
    shutil.copytree(real, venv.site / f"{module}-{version}.dist-info")


def consistent_cases(work: Path, base: Venv, python: str) -> None:
    tag = python.rsplit("/", 1)[-1]

    def case(name: str, breaker: Callable[[Venv], None]) -> None:
        venv = base.copy(work / f"c-{name}")
        breaker(venv)
        judge_consistent(f"{tag} {name}", venv)
        shutil.rmtree(venv.root)

    def uninstall(*names: str) -> Callable[[Venv], None]:
        return lambda v: run([uv(), "pip", "uninstall", "--python", v.python, *names])

    def install(*specs: str) -> Callable[[Venv], None]:
        return lambda v: run([uv(), "pip", "install", "--python", v.python, "--no-deps", *specs])

    def other_site(v: Venv) -> None:
        other = v.root / "other-site"
        other.mkdir()
        shutil.copytree(dist_info(v, "certifi"), other / "certifi-2020.1.1.dist-info")
        (v.site / "zz-other.pth").write_text(f"{other}\n")

    def odd_version(v: Venv) -> None:
        metadata = dist_info(v, "tabulate") / "METADATA"
        metadata.write_text(re.sub(r"(?m)^Version: .*$", "Version: not.a.version",
                                   metadata.read_text(), count=1))

    case("clean", lambda v: None)
    case("missing (idna uninstalled)", uninstall("idna"))
    case("conflict (pluggy 1.0.0 under pytest)", install("pluggy==1.0.0"))
    case("requested extra unmet (h2 of httpx[http2] uninstalled)", uninstall("h2"))
    case("two copies in one directory (stale typing-extensions listed first)",
         lambda v: stale_copy_first(v, "typing-extensions", "4.5.0"))
    case("two copies across sys.path (an older certifi after the venv's)", other_site)
    case("non-PEP 440 version in METADATA", odd_version)
    case("wheel for aarch64 unpacked by hand", lambda v: retag(
        v, "pyyaml", f"cp{sys.version_info[0]}-none-manylinux_2_17_aarch64"))
    case("wheel for musllinux unpacked by hand", lambda v: retag(
        v, "msgpack", "cp311-cp311-musllinux_1_2_x86_64"))
    case("WHEEL file with no Tag line", lambda v: retag(v, "certifi", None))
    # A fresh --system-site-packages venv over the interpreter's own site-packages.
    root = work / "c-system-site"
    run([python, "-m", "venv", "--system-site-packages", str(root)], env=clean_environ())
    venv = Venv(root, base.shim)
    add_shim(venv)
    judge_consistent(f"{tag} fresh --system-site-packages venv", venv)
    shutil.rmtree(root)


# -- lock -----------------------------------------------------------------------------------


def uv_changes(result: subprocess.CompletedProcess[str]) -> set[str] | None:
    if result.returncode != 0:
        return None
    changed = set()
    for line in (result.stdout + result.stderr).splitlines():
        match = re.match(r"\s*[-+~]\s+([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match:
            changed.add(canonical(match.group(1)))
    return changed


def lock_names(verdict: dict[str, Any]) -> set[str]:
    names = set()
    for problem in verdict.get("problems", []):
        words = problem["text"].split()
        if problem["kind"] in ("missing", "differs"):
            names.add(canonical((words[1] if problem["kind"] == "missing" else words[0]).split("==")[0]))
    return names


def lock_oracle(venv: Venv, project: Path, lock: str) -> set[str] | None:
    env = clean_environ(UV_PROJECT_ENVIRONMENT=str(venv.root), UV_PYTHON=venv.python)
    installed = venv.installed_names()
    if lock == "uv.lock":
        default = uv_changes(run([uv(), "sync", "--locked", "--dry-run", "--inexact"],
                                 check=False, cwd=project, env=env))
        every = uv_changes(run([uv(), "sync", "--locked", "--dry-run", "--inexact",
                                "--all-extras", "--all-groups"], check=False, cwd=project, env=env))
        return None if default is None or every is None else default | (every & installed)
    return uv_changes(run([uv(), "pip", "install", "--python", venv.python, "--dry-run", "-r", lock],
                          check=False, cwd=project, env=env))


def judge_lock(case: str, venv: Venv, project: Path, lock: str,
               oracle: Callable[[], set[str] | None] | None = None) -> None:
    verdict = venv.envguard(f"lock {lock}", cwd=project)
    expected = oracle() if oracle else lock_oracle(venv, project, lock)
    ours = lock_names(verdict)
    ours_met = verdict["status"] == "met"
    if expected is None:
        TALLIES["lock"].notes.append(f"oracle failed: {case} {lock}")
        return
    TALLIES["lock"].record(f"{case} · {lock}", ours_met, not expected,
                           ours == expected and ours_met is not expected)
    if ours != expected:
        TALLIES["lock"].notes.append(f"  oracle {sorted(expected)}; ours {sorted(ours)}")


LOCKS = ("uv.lock", "exported.txt", "compiled.txt", "frozen.txt", "pylock.toml")


def lock_cases(work: Path, base: Venv, project: Path, python: str) -> None:
    tag = python.rsplit("/", 1)[-1]

    def pip_args(v: Venv, *args: str) -> None:
        run([uv(), "pip", *args[:1], "--python", v.python, *args[1:]])

    cases: list[tuple[str, Callable[[Venv], None]]] = [
        ("clean", lambda v: None),
        ("idna downgraded", lambda v: pip_args(v, "install", "--no-deps", "idna==3.4")),
        ("idna uninstalled", lambda v: pip_args(v, "uninstall", "idna")),
        ("a stray package installed", lambda v: pip_args(v, "install", "--no-deps", "toml")),
        ("the editable project uninstalled", lambda v: pip_args(v, "uninstall", "agreement-proj")),
        ("a default group's package (isort) uninstalled", lambda v: pip_args(v, "uninstall", "isort")),
        ("an extra's package (ujson) at another version",
         lambda v: pip_args(v, "install", "--no-deps", "ujson==5.8.0")),
    ]
    for name, breaker in cases:
        venv = base.copy(work / "l-case")
        breaker(venv)
        for lock in LOCKS:
            judge_lock(f"{tag} {name}", venv, project, lock)
        shutil.rmtree(venv.root)


def poetry_cases(work: Path, python: str) -> None:
    """A smaller project locked by real Poetry 2.x; `poetry install --dry-run` as oracle."""
    tools = work / "poetry-tool"
    if run([python, "-m", "venv", str(tools)], check=False).returncode != 0 or run(
            [str(tools / "bin" / "python"), "-m", "pip", "install", "-q", "poetry>=2,<3"],
            check=False).returncode != 0:
        TALLIES["lock"].notes.append("Poetry could not be installed: no Poetry cases")
        return
    poetry = str(tools / "bin" / "poetry")
    project = work / "poetry-project"
    project.mkdir()
    (project / "pyproject.toml").write_text(POETRY_PROJECT, encoding="utf-8")
    base = Venv(work / "poetry-venv", shim_directory(work.parent))
    run([python, "-m", "venv", "--without-pip", str(base.root)])
    env = clean_environ(VIRTUAL_ENV=str(base.root), POETRY_VIRTUALENVS_CREATE="false",
                        PATH=f"{base.root / 'bin'}:{os.environ['PATH']}")
    env.pop("UV_LINK_MODE")
    if run([poetry, "lock"], check=False, cwd=project, env=env).returncode != 0:
        TALLIES["lock"].notes.append("poetry lock failed: no Poetry cases")
        return
    run([poetry, "install"], cwd=project, env=env)
    add_shim(base)

    def changes(*extra: str) -> set[str] | None:
        result = run([poetry, "install", "--dry-run", *extra], check=False, cwd=project, env=env)
        if result.returncode != 0:
            return None
        # "- Installing x (1.0): Skipped for the following reason: Already installed" is no change.
        return {canonical(m.group(2)) for m in re.finditer(
            r"- (Installing|Updating|Downgrading) ([A-Za-z0-9._-]+) \([^)]*\)(?!: Skipped)",
            result.stdout)}

    def oracle_for(venv: Venv) -> Callable[[], set[str] | None]:
        def oracle() -> set[str] | None:
            default, every = changes(), changes("--all-extras", "--all-groups")
            if default is None or every is None:
                return None
            return default | (every & venv.installed_names())
        return oracle

    def pip_args(*args: str) -> None:
        run([uv(), "pip", *args[:1], "--python", base.python, *args[1:]])

    for name, breaker in [
        ("clean", lambda: None),
        ("idna uninstalled", lambda: pip_args("uninstall", "idna")),
        ("the dev group's iniconfig uninstalled", lambda: pip_args("uninstall", "iniconfig")),
        ("the optional fast extra's ujson at another version",
         lambda: pip_args("install", "--no-deps", "ujson==5.8.0")),
        ("the optional docs group's toml at another version",
         lambda: pip_args("install", "--no-deps", "toml==0.10.0")),
    ]:
        run([poetry, "sync"], cwd=project, env=env)  # Poetry 2: back to the lock exactly
        breaker()
        judge_lock(f"poetry {name}", base, project, "poetry.lock", oracle_for(base))


# -- isolated ---------------------------------------------------------------------------------

ISOLATION_ORACLE = """\
import json, os, sys
import subprocess
prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
# What the shell adds to sys.path: the entries this interpreter has that the same
# interpreter run with -E -s (no PYTHON* variables, no user site) does not.
baseline = json.loads(subprocess.run(
    [sys.executable, "-E", "-s", "-c", "import json, sys; print(json.dumps(sys.path))"],
    capture_output=True, text=True, check=True).stdout)
outside = [p for p in sys.path[1:] if p and p not in baseline and os.path.isdir(p)
           and os.listdir(p)]
active = [os.environ[v] for v in ("VIRTUAL_ENV", "CONDA_PREFIX")
          if os.environ.get(v) and os.path.realpath(os.environ[v]) != os.path.realpath(sys.prefix)]
libraries = []
for entry in filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)):
    d = os.path.realpath(entry)
    while d != os.path.dirname(d):
        if os.path.exists(os.path.join(d, "pyvenv.cfg")) or os.path.isdir(os.path.join(d, "conda-meta")):
            if d not in prefixes:
                libraries.append(entry)
            break
        d = os.path.dirname(d)
print(json.dumps(bool(outside or active or libraries or os.environ.get("PYTHONHOME"))))
"""


def isolated_cases(work: Path, base: Venv, python: str) -> None:
    tag = python.rsplit("/", 1)[-1]
    modules = work / "elsewhere"
    modules.mkdir()
    (modules / "leaky_module.py").write_text("")
    users = work / "userbase"
    version = run([python, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"]
                  ).stdout.strip()
    user_site = users / "lib" / f"python{version}" / "site-packages"
    user_site.mkdir(parents=True)
    (user_site / "leaky_user_module.py").write_text("")
    system_site = Venv(work / "i-system-site", base.shim)
    run([python, "-m", "venv", "--without-pip", "--system-site-packages", str(system_site.root)])
    add_shim(system_site)
    other = work / "i-other"
    run([python, "-m", "venv", "--without-pip", str(other)])
    for venv, name, extra in [
        (base, "clean", {}),
        (base, "activated (VIRTUAL_ENV is this venv)", {"VIRTUAL_ENV": str(base.root)}),
        (base, "PYTHONPATH with a module", {"PYTHONPATH": str(modules)}),
        (base, "another venv activated", {"VIRTUAL_ENV": str(other)}),
        (base, "LD_LIBRARY_PATH into another venv", {"LD_LIBRARY_PATH": str(other / "lib")}),
        (base, "PYTHONUSERBASE (no system site: user site off)", {"PYTHONUSERBASE": str(users)}),
        (system_site, "--system-site-packages venv, clean", {}),
        (system_site, "--system-site-packages venv with PYTHONUSERBASE", {"PYTHONUSERBASE": str(users)}),
        (system_site, "the same with PYTHONNOUSERSITE=1",
         {"PYTHONUSERBASE": str(users), "PYTHONNOUSERSITE": "1"}),
    ]:
        env = clean_environ(**extra)
        leaks = venv.python_json(ISOLATION_ORACLE, env=env)
        verdict = venv.envguard("isolated", env=env)
        ours_met = verdict["status"] == "met"
        TALLIES["isolated"].record(f"{tag} {name}", ours_met, not leaks, ours_met is not leaks)


# -- main ------------------------------------------------------------------------------------


def interpreters(wanted: str | None, quick: bool) -> list[str]:
    if quick:
        return [sys.executable]
    found = []
    for version in (wanted or "3.11,3.12,3.13").split(","):
        result = run(["pyenv", "which", f"python{version}"], check=False) if shutil.which(
            "pyenv") else None
        path = result.stdout.strip() if result and result.returncode == 0 else shutil.which(
            f"python{version}")
        if path:
            found.append(os.path.realpath(path))
        else:
            print(f"python{version}: not found, skipped")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="only the interpreter running this script, no Poetry")
    parser.add_argument("--pythons", help="comma-separated versions (default 3.11,3.12,3.13)")
    parser.add_argument("--no-poetry", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    start = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="envguard-agreement-"))
    try:
        counts = []
        for index, python in enumerate(interpreters(args.pythons, args.quick)):
            work = scratch / f"py{index}"
            work.mkdir()
            project, base = prepare(work, python)
            counts.append(len(base.installed_names()))
            print(f"{python}: {counts[-1]} distributions installed from the lock", flush=True)
            consistent_cases(work, base, python)
            lock_cases(work, base, project, python)
            isolated_cases(work, base, python)
        if not args.quick and not args.no_poetry:
            (scratch / "poetry").mkdir()
            poetry_cases(scratch / "poetry", sys.executable)
        print(f"\n{'key':<11} {'cases':>5} {'agree':>5} {'false green':>11} {'false red':>9}")
        for key, tally in TALLIES.items():
            share = 100 * tally.agree / tally.cases if tally.cases else 0
            print(f"{key:<11} {tally.cases:>5} {tally.agree:>5} {tally.false_green:>11} "
                  f"{tally.false_red:>9}   ({share:.1f}% agree)")
        for key, tally in TALLIES.items():
            for note in tally.notes:
                print(f"{key}: {note}")
        print(f"\n{len(counts)} interpreters, {min(counts, default=0)}–{max(counts, default=0)} "
              f"distributions each, {time.monotonic() - start:.0f} s")
        return 1 if any(t.false_green or t.false_red for t in TALLIES.values()) else 0
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
