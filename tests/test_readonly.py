"""The read-only guarantee: a session that checks every key changes nothing
under the venv, the project, ``HOME`` or the temporary directory — except the
plugin's own cache under pytest's cache dir.

Two witnesses:

* snapshots (type, size, mtime, mode, link target of every entry) of the
  venv, the project, ``HOME`` and ``TMPDIR`` taken before and after the
  sessions;
* an audit hook (PEP 578) in the session's interpreter that records every
  write-like operation — ``open`` for writing, mkdir, rename, remove, chmod,
  utime, ``putenv`` … — made while a frame of ``pytest_envguard`` is on the
  stack, wherever it points (``/tmp`` included).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_nvml import H100
from tests.fixtures_packages import MakeVenv, Venv, clean_environ

# One line per key of DESIGN.md §1, each likely to be decided either way here.
EVERY_KEY = [
    "python >=3", "implementation cpython", "abi gil", "platform linux",
    f"machine {platform.machine()}", "glibc >=2.17", "musl", "cpu sse2", "cpus >=1",
    "memory >=1MiB", "memory-available >=1", "cuda >=11", "driver >=400", "gpus >=1",
    "gpu-memory >=1GiB", "compute-capability >=5.0", "gpu '*'", "cuda-runtime >=11",
    "library c", "package alpha>=1", "command sh", "import json", "env HOME", "wheels",
    "extensions", "consistent", "lock requirements.txt", "isolated",
]

AUDIT_PLUGIN = r'''
"""Record write-like operations made while pytest_envguard code is on the stack."""
import json, os, sys

PACKAGE = os.path.dirname(os.path.realpath(__import__("pytest_envguard").__file__))
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.symlink", "os.link", "os.chmod",
          "os.chown", "os.utime", "os.truncate", "shutil.rmtree", "shutil.move", "shutil.copyfile",
          "os.putenv", "os.unsetenv", "os.chdir", "subprocess.Popen", "tempfile.mkstemp",
          "tempfile.mkdtemp"}
writes, spawned, reads = [], [], [0]


def ours():
    """Whether envguard code is on the stack: "direct", or "pytest-cache" when it asked
    pytest's cache provider (which creates its directory atomically, via a temporary one)."""
    frame, found = sys._getframe(2), None
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.endswith(os.path.join("_pytest", "cacheprovider.py")):
            found = "pytest-cache"
        elif os.path.realpath(filename).startswith(PACKAGE):
            return found or "direct"
        frame = frame.f_back
    return None


def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & WRITE_FLAGS)
        who = ours()
        if not who:
            return
        if isinstance(path, int):  # os.fdopen(fd, "w"): where the descriptor points
            try:
                path = os.readlink(f"/proc/self/fd/{path}")
            except OSError:
                path = repr(path)
        if writing:
            writes.append([event, os.fsdecode(path), who])
        else:
            reads[0] += 1
    elif event in EVENTS:
        who = ours()
        if who:
            (spawned if event == "subprocess.Popen" else writes).append([event, repr(args)[:300], who])


sys.addaudithook(hook)


def pytest_unconfigure(config):
    with open(os.environ["ENVGUARD_AUDIT_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"writes": writes, "spawned": spawned, "reads": reads[0]}) + "\n")
'''

TEST_MODULE = """
import pytest

LINES = {lines!r}


@pytest.mark.parametrize("line", LINES)
def test_marker(line, envguard):
    envguard.require(line)


@pytest.mark.requires(*LINES)
def test_all_at_once():
    pass
"""

Snapshot = dict[str, tuple[object, ...]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root``: what it is, its size, mtime, mode, link target."""
    entries: Snapshot = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            target = os.readlink(path) if os.path.islink(path) else None
            size = info.st_size if not os.path.isdir(path) or os.path.islink(path) else None
            entries[os.path.relpath(path, root)] = (info.st_mode, size, info.st_mtime_ns, target)
    return entries


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    found = [f"new: {path}" for path in sorted(after.keys() - before.keys())]
    found += [f"gone: {path}" for path in sorted(before.keys() - after.keys())]
    found += [f"changed: {path}" for path in sorted(before.keys() & after.keys())
              if before[path] != after[path]]
    return found


def paths_of(write: list[str]) -> list[str]:
    """The paths an audited operation touched (``open`` has one; others, in their args)."""
    if write[0] == "open":
        return [write[1]]
    return re.findall(r"'(/[^']*)'", write[1])


@pytest.fixture(scope="module")
def guarded_venv(make_venv: MakeVenv, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A real venv with wheels installed by pip, pytest importable, and the audit plugin."""
    venv = make_venv("readonly")
    venv.pip("install", "--no-index", "--find-links", str(wheelhouse), "alpha", "beta==2.0")
    shim = tmp_path_factory.mktemp("readonly-shim")
    # What pytest (any supported version, any Python) and envguard import, where installed.
    names = ["pytest", "_pytest", "py", "pluggy", "iniconfig", "pygments", "exceptiongroup", "tomli",
             "typing_extensions", "psutil", "pynvml"]
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        source = Path(spec.origin)
        if source.name == "__init__.py":
            source = source.parent
        (shim / source.name).symlink_to(source)
    # Their metadata too: pytest asks importlib.metadata for pluggy's version.
    site = Path(pytest.__file__ or "").parent.parent
    for name in ("pytest", "pluggy", "iniconfig", "psutil", "pygments", "nvidia_ml_py",
                 "packaging", "exceptiongroup", "tomli", "typing_extensions"):
        for dist_info in site.glob(f"{name}-*.dist-info"):
            (shim / dist_info.name).symlink_to(dist_info)
    (shim / "envguard_audit.py").write_text(AUDIT_PLUGIN, encoding="utf-8")
    (venv.site / "readonly-shim.pth").write_text(f"{shim}\n", encoding="utf-8")
    return venv


def test_a_session_with_every_key_changes_nothing(guarded_venv: Venv, tmp_path: Path,
                                                  fake_nvml_dir: Path) -> None:
    project, home, tmpdir = tmp_path / "project", tmp_path / "home", tmp_path / "tmp"
    for directory in (project, home, tmpdir):
        directory.mkdir()
    (home / ".config").mkdir()
    (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (project / "requirements.txt").write_text("alpha==1.0\nbeta==2.0\n", encoding="utf-8")
    (project / "test_every_key.py").write_text(TEST_MODULE.format(lines=EVERY_KEY), encoding="utf-8")
    audit_log = tmp_path / "audit.jsonl"
    # The GPU keys ask the real pynvml, which loads the fake driver (two H100s).
    env = clean_environ(HOME=str(home), TMPDIR=str(tmpdir), PYTHONDONTWRITEBYTECODE="1",
                        ENVGUARD_AUDIT_LOG=str(audit_log), LD_LIBRARY_PATH=str(fake_nvml_dir),
                        FAKE_NVML_GPUS=f"{H100};{H100}")
    env.pop("XDG_CACHE_HOME", None)
    env.pop("TOX_ENV_DIR", None)  # under tox, pytest puts its cache dir there, not in the project
    roots = {"venv": guarded_venv.root, "project": project, "HOME": home, "TMPDIR": tmpdir}
    before = {name: snapshot(root) for name, root in roots.items()}

    base = ["-m", "pytest", "-p", "pytest_envguard.plugin", "-p", "envguard_audit", "-p", "no:randomly"]
    contract = [argument for line in EVERY_KEY for argument in ("--envguard-require", line)]
    runs = [
        guarded_venv.run(*base, "-rs", env=env, cwd=project),
        guarded_venv.run(*base, "--envguard-report", *contract, env=env, cwd=project),
        guarded_venv.run(*base, *contract, env=env, cwd=project),
    ]
    for run in runs:
        assert "INTERNALERROR" not in run.stdout + run.stderr, run.stdout + run.stderr
        assert "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
    assert runs[0].returncode in (0, 1), runs[0].stdout + runs[0].stderr
    assert "gpus >=1" not in runs[0].stdout  # met: the fake driver was asked
    assert "ok    gpu '*'" in runs[1].stdout or "ok    gpu *" in runs[1].stdout, runs[1].stdout
    assert runs[1].returncode in (0, 6) and "envguard contract" in runs[1].stdout
    assert runs[2].returncode in (0, 6)

    after = {name: snapshot(root) for name, root in roots.items()}
    cache = os.path.join(".pytest_cache", "")
    for name in roots:
        found = changes(before[name], after[name])
        if name == "project":  # pytest's cache dir is the one place anything may change
            found = [line for line in found if not line.split(": ", 1)[1].startswith(cache)
                     and line != "new: .pytest_cache"]
        assert not found, f"{name} changed: {found[:20]}"

    records = [json.loads(line) for line in audit_log.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(runs)
    cache_dir = str(project / ".pytest_cache")
    for record in records:
        assert record["reads"] > 0  # the hook saw envguard at work
        direct = [write for write in record["writes"] if write[2] == "direct"]
        outside = [write for write in direct  # (subprocess opens /dev/null read-write for stdin)
                   if not all(p.startswith(cache_dir) or p == os.devnull for p in paths_of(write))]
        assert not outside, outside
        # Through pytest's cache API: pytest's own writes, all inside the project.
        via_pytest = [write for write in record["writes"] if write[2] == "pytest-cache"]
        assert all(path.startswith(str(project)) for write in via_pytest
                   for path in paths_of(write)), via_pytest
    # The import check ran `import json` in a child process, which the hook saw.
    assert any("json" in " ".join(spawn) for record in records for spawn in record["spawned"])


def test_the_audit_hook_sees_writes(tmp_path: Path) -> None:
    """The witness must be able to fail: envguard code that writes is caught."""
    module = tmp_path / "envguard_audit.py"
    module.write_text(AUDIT_PLUGIN, encoding="utf-8")
    log = tmp_path / "audit.jsonl"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import envguard_audit\n"
        "from pytest_envguard.probes import locks\n"
        # A function of the package, made to write: open() runs with its frame on the stack.
        "locks.read_bytes = lambda path, *a: open(path, 'w')\n"
        "locks.read_lock(sys.argv[2])\n"
        "envguard_audit.pytest_unconfigure(None)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "requirements.txt")],
                   check=True, env=dict(os.environ, ENVGUARD_AUDIT_LOG=str(log)), timeout=60)
    [record] = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert ["open", str(tmp_path / "requirements.txt"), "direct"] in record["writes"]
