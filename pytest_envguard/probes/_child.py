"""The one way the plugin runs a child process.

Some questions are only safe to ask in another process: ``import torch`` can
crash or hang, NVML can wedge in the kernel, ``cudaRuntimeGetVersion`` loads a
library. :func:`run_python` and :func:`run_program` run such a child so that
it can never outlive, outwait or fool the run that started it:

* it gets its own session and process group, ``stdin`` from ``/dev/null``, and
  (Python children) ``PR_SET_PDEATHSIG`` so the kernel kills it if the parent
  dies first;
* the parent waits on the *process* (a pidfd where Linux has one), not on the
  end of its output: a helper the child started and left running keeps the
  pipes open, but not the parent waiting;
* on timeout, on any exception in the parent (``KeyboardInterrupt`` too), on
  SIGTERM and at interpreter exit, the child's whole process group is killed;
* a Python child runs isolated (``-I``: no ``PYTHON*`` variables, no user
  site, no script directory on ``sys.path``) in a neutral working directory,
  and sends its answer as JSON on a pipe of its own — never parsed from
  stdout, which code it imports can write to.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_envguard.probes import Failure, describe_error

#: The most a child may send as its answer; more is a corrupt answer.
MAX_ANSWER = 4 << 20
#: How much of a child's stderr is kept (its end: where tracebacks and faulthandler write).
STDERR_TAIL = 64 << 10

# The start of every Python child's program. The setup arrives as JSON in argv[1]:
# the answer pipe's descriptor, the parent's pid, sys.path entries and the caller's
# arguments. Nothing is ever interpolated into code.
_PROLOGUE = r"""
import json as _json, os as _os, sys as _sys
_setup = _json.loads(_sys.argv[1])
try:
    import ctypes as _ctypes
    _ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG: SIGKILL when the parent dies
except Exception:
    pass
if _os.getppid() != _setup["parent"]:
    _os._exit(70)  # the parent died before the line above took effect
if _setup["replace_path"]:
    # The modules a child program uses itself come from the standard library, as in the
    # test process (which imported them long ago), before the caller's path can shadow them.
    import faulthandler as _faulthandler, importlib as _importlib, traceback as _traceback
    _sys.path[:] = _setup["path"]
else:
    _sys.path.extend(entry for entry in _setup["path"] if entry not in _sys.path)
ARGS = _setup["args"]
def answer(data):
    payload = _json.dumps(data).encode()
    while payload:
        payload = payload[_os.write(_setup["fd"], payload):]
    _os.close(_setup["fd"])
    _sys.stderr.flush()
    _os._exit(0)  # no atexit handlers of imported code: they may hang
del _setup["args"]
"""


@dataclass(frozen=True)
class ChildResult:
    """How a child went. ``failure`` is None when it ran to its end (with any exit
    status); ``answer`` is what a Python child sent (None when it sent nothing)."""

    failure: Failure | None
    answer: Any = None
    returncode: int | None = None
    signal: str | None = None
    stderr: str = ""
    stdout: str = ""
    elapsed: float = 0.0
    reason: str | None = None

    @property
    def stderr_tail(self) -> str | None:
        """The last non-empty line of stderr."""
        return next((line.strip() for line in reversed(self.stderr.splitlines()) if line.strip()),
                    None)


def run_python(code: str, args: Sequence[Any] = (), *, environ: Mapping[str, str], timeout: float,
               path: Sequence[str] = (), replace_path: bool = False,
               executable: str | None = None) -> ChildResult:
    """Run ``code`` in an isolated child interpreter. The code sees ``ARGS`` (``args``,
    through JSON) and calls ``answer(data)`` once, which sends ``data`` and ends the
    child. ``path`` is appended to the child's ``sys.path`` (``replace_path``:
    becomes it)."""
    read_fd, write_fd = os.pipe()
    setup = {"fd": write_fd, "parent": os.getpid(), "path": [_absolute(entry) for entry in path],
             "replace_path": replace_path, "args": list(args)}
    argv = [executable or sys.executable, "-I", "-c", _PROLOGUE + code, json.dumps(setup)]
    return _run(argv, environ, timeout, answer_fds=(read_fd, write_fd), capture_stdout=False)


def run_program(argv: Sequence[str], *, environ: Mapping[str, str], timeout: float) -> ChildResult:
    """Run a program (not Python) under the same rules; stdout and stderr are kept."""
    return _run(list(argv), environ, timeout, answer_fds=None, capture_stdout=True)


def module_dirs(*names: str) -> list[str]:
    """The ``sys.path`` entries that hold the top-level modules ``names`` (found
    without importing them): what a child needs on its path to import them,
    appended after its own standard library.

    A module found only in the working directory does not count: a project's
    ``pynvml.py`` beside its tests is not the NVML binding the question is about
    (the child itself runs in ``/``, where nothing of the project is)."""
    dirs: list[str] = []
    for name in names:
        entry = _own_root() if name == "pytest_envguard" else _module_dir(name)
        if entry is not None and entry not in dirs:
            dirs.append(entry)
    return dirs


def _own_root() -> str:
    # This package's location is known; searching for it could find a namesake first.
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _module_dir(name: str) -> str | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package: the directory above it
        entry = os.path.dirname(next(iter(spec.submodule_search_locations)))
    elif spec.origin and os.path.isabs(spec.origin):
        entry = os.path.dirname(spec.origin)
    else:
        return None  # built in or frozen: nothing to add
    if _is_working_directory(entry):
        return _module_dir_outside_working_directory(name)
    return entry


def _module_dir_outside_working_directory(name: str) -> str | None:
    from importlib.machinery import PathFinder

    search = [entry for entry in sys.path if entry and not _is_working_directory(entry)]
    try:
        spec = PathFinder.find_spec(name, search)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    origin = (os.path.dirname(next(iter(spec.submodule_search_locations)))
              if spec.submodule_search_locations else spec.origin)
    return os.path.dirname(origin)


def _is_working_directory(entry: str) -> bool:
    try:
        return os.path.samefile(entry or os.curdir, os.curdir)
    except OSError:
        return entry in ("", os.curdir)


def _absolute(entry: str) -> str:
    try:
        return os.path.abspath(entry or os.curdir)
    except OSError:  # the working directory is gone: a relative entry names nothing
        return entry


# -- running ---------------------------------------------------------------------------------

#: Children alive now (killed at exit or on SIGTERM), and children that did not die
#: when killed (stuck in the kernel), kept so their Popen objects are not collected.
_LIVE: set[subprocess.Popen[bytes]] = set()
_ABANDONED: list[subprocess.Popen[bytes]] = []
_LOCK = threading.RLock()  # re-entrant: the SIGTERM handler takes it too


def _run(argv: list[str], environ: Mapping[str, str], timeout: float, *,
         answer_fds: tuple[int, int] | None, capture_stdout: bool) -> ChildResult:
    started = time.monotonic()
    pass_fds = (answer_fds[1],) if answer_fds else ()
    try:
        child = subprocess.Popen(
            argv, env=dict(environ), cwd=os.path.abspath(os.sep), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE, pass_fds=pass_fds, start_new_session=True)
    except (OSError, ValueError) as error:
        if answer_fds:
            os.close(answer_fds[0])
            os.close(answer_fds[1])
        return ChildResult(Failure.ERROR, reason=f"cannot start {os.path.basename(argv[0])}: "
                                                 f"{describe_error(error)}")
    if answer_fds:
        os.close(answer_fds[1])
    with _LOCK:
        _LIVE.add(child)
    streams = {"stderr": child.stderr, "stdout": child.stdout}
    fds = {name: stream.fileno() for name, stream in streams.items() if stream is not None}
    if answer_fds:
        fds["answer"] = answer_fds[0]
    try:
        with _kill_children_on_sigterm():
            output, timed_out = _collect(child, fds, started + timeout)
    except BaseException:
        _kill(child)
        raise
    finally:
        if answer_fds:
            os.close(answer_fds[0])
        for stream in streams.values():
            if stream is not None:
                stream.close()
    # Whatever the child started and left behind (a helper spawned at import) goes too.
    _kill(child)
    elapsed = time.monotonic() - started
    stderr = output["stderr"].decode("utf-8", "replace")
    stdout = output.get("stdout", b"").decode("utf-8", "replace")
    if timed_out:
        return ChildResult(Failure.TIMEOUT, stderr=stderr, stdout=stdout, elapsed=elapsed,
                           reason=f"no answer within {timeout:g} s")
    code = child.returncode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return ChildResult(Failure.CRASHED, returncode=code, signal=name, stderr=stderr,
                           stdout=stdout, elapsed=elapsed, reason=f"killed by {name}")
    answer: Any = None
    if answer_fds and output.get("answer"):
        if len(output["answer"]) > MAX_ANSWER:
            return ChildResult(Failure.CORRUPT, returncode=code, stderr=stderr, elapsed=elapsed,
                               reason="the child's answer is too large")
        try:
            answer = json.loads(output["answer"].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return ChildResult(Failure.CORRUPT, returncode=code, stderr=stderr, elapsed=elapsed,
                               reason="the child's answer is not JSON")
    return ChildResult(None, answer, code, None, stderr, stdout, elapsed)


def _collect(child: subprocess.Popen[bytes], fds: Mapping[str, int],
             deadline: float) -> tuple[dict[str, bytes], bool]:
    """Read the child's pipes until it exits (then drain what is already there) or
    the deadline passes; ``(data by name, timed out)``."""
    data = {name: bytearray() for name in fds}
    limits = {"answer": MAX_ANSWER + 1, "stdout": STDERR_TAIL, "stderr": STDERR_TAIL}
    selector = selectors.DefaultSelector()
    for name, fd in fds.items():
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ, name)
    pidfd = _pidfd(child.pid)
    if pidfd is not None:
        selector.register(pidfd, selectors.EVENT_READ, None)
    tick = 0.005
    drained = 0  # rounds read after the exit: a helper it left may write on forever
    try:
        while True:
            exited = child.poll() is not None
            drained += exited
            remaining = deadline - time.monotonic()
            if not exited and remaining <= 0:
                return {name: bytes(value) for name, value in data.items()}, True
            events = selector.select(0 if exited else min(remaining, tick if pidfd is None else remaining))
            tick = min(tick * 2, 0.1)
            for key, _ in events:
                if key.data is None:
                    continue  # the pidfd: the child exited, poll() sees it next round
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                buffer = data[key.data]
                buffer += chunk
                limit = limits[key.data]
                if len(buffer) > limit:
                    if key.data == "answer":
                        selector.unregister(key.fd)  # enough to know it is too large
                    else:
                        del buffer[:len(buffer) - limit]  # keep the end
            if exited and (not events or drained > 64):
                return {name: bytes(value) for name, value in data.items()}, False
    finally:
        selector.close()
        if pidfd is not None:
            os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


def _kill(child: subprocess.Popen[bytes]) -> None:
    """Kill the child's process group and reap the child."""
    with contextlib.suppress(OSError):
        os.killpg(child.pid, signal.SIGKILL)
    try:
        child.wait(timeout=2)
    except subprocess.TimeoutExpired:
        _ABANDONED.append(child)
    with _LOCK:
        _LIVE.discard(child)


@atexit.register
def _kill_every_child() -> None:
    with _LOCK:
        alive = list(_LIVE)
    for child in alive:
        with contextlib.suppress(OSError):
            os.killpg(child.pid, signal.SIGKILL)


@contextlib.contextmanager
def _kill_children_on_sigterm() -> Iterator[None]:
    """While a child runs: SIGTERM to this process kills the children's groups
    first, then ends this process as SIGTERM would have. Only where SIGTERM has
    its default action and this is the main thread (where handlers can be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        previous = None
    if previous is not signal.SIG_DFL:
        yield
        return

    def terminate(number: int, frame: object) -> None:
        _kill_every_child()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
