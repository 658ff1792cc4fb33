"""probes/_io.py: a file that is not a regular one is refused before it is opened.

Opening is not harmless: a FIFO's reader releases a writer blocked in its own
``open()``, a blocking open of a FIFO waits forever for a writer, and some
device files act on open. Two witnesses that no open happened: a writer
blocked on a FIFO stays blocked, and a PEP 578 audit hook (which sees every
``open`` the interpreter makes) records none for the refused paths.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_envguard.probes import Failure
from pytest_envguard.probes._io import TooLarge, failure_of, open_regular, read_bytes

Tried = Callable[[int], None]


def test_a_fifo_is_refused_without_being_opened(tmp_path: Path, bad_inputs: Tried) -> None:
    fifo = tmp_path / "METADATA"
    os.mkfifo(fifo)
    # A writer blocks in open() until some process opens the FIFO for reading.
    writer = subprocess.Popen([sys.executable, "-c", "import sys\nopen(sys.argv[1], 'w')\n", str(fifo)])
    try:
        time.sleep(0.3)
        bad_inputs(1)
        with pytest.raises(OSError, match="not a regular file") as refused:
            open_regular(str(fifo))
        assert failure_of(refused.value) is Failure.NOT_REGULAR
        time.sleep(0.5)
        assert writer.poll() is None  # still blocked: nobody opened the FIFO
        # The control: one open for reading, and the writer goes on at once.
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            assert writer.wait(timeout=30) == 0
        finally:
            os.close(fd)
    finally:
        writer.kill()
        writer.wait()


# Run in a child: a blocking open of a FIFO would hang; the child has a time limit.
_AUDITED = """
import json, os, sys
watched = set(json.loads(sys.argv[1]))
opened = []
def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        path = os.fsdecode(args[0])
        if path in watched:
            opened.append(path)
sys.addaudithook(hook)
from pytest_envguard.probes._io import failure_of, open_regular
kinds = {}
for path in sorted(watched):
    follow = not path.endswith("-nofollow")
    try:
        with open_regular(path, follow_symlinks=follow) as file:
            file.read(1)
        kinds[path] = None
    except OSError as error:
        kinds[path] = failure_of(error).value
print(json.dumps([kinds, opened]))
"""


def special_files(directory: Path) -> dict[str, str]:
    """Name → path of every kind of file a probe may meet where it expects a regular one."""
    paths = {name: str(directory / name) for name in (
        "regular", "fifo", "socket", "directory", "device", "device-link", "loop",
        "link-nofollow", "missing")}
    Path(paths["regular"]).write_text("Name: x\n", encoding="utf-8")
    os.mkfifo(paths["fifo"])
    server = socket.socket(socket.AF_UNIX)
    server.bind(paths["socket"])
    server.close()  # the socket file stays
    os.mkdir(paths["directory"])
    if os.geteuid() == 0:  # a character device node of our own: /dev/zero's numbers
        os.mknod(paths["device"], 0o600 | 0o020000, os.makedev(1, 5))
    else:
        os.symlink("/dev/zero", paths["device"])
    os.symlink("/dev/zero", paths["device-link"])
    os.symlink(paths["loop"], paths["loop"])
    os.symlink(paths["regular"], paths["link-nofollow"])
    return paths


def test_no_special_file_is_ever_opened(tmp_path: Path, bad_inputs: Tried) -> None:
    paths = special_files(tmp_path)
    bad_inputs(len(paths) - 1)
    result = subprocess.run([sys.executable, "-c", _AUDITED, json.dumps(sorted(paths.values()))],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    kinds, opened = json.loads(result.stdout)
    by_name = {name: kinds[path] for name, path in paths.items()}
    assert by_name == {"regular": None, "fifo": "not-regular", "socket": "not-regular",
                       "directory": "not-regular", "device": "not-regular",
                       "device-link": "not-regular", "loop": "not-regular",
                       "link-nofollow": "not-regular", "missing": "missing"}
    assert opened == [paths["regular"]]  # the control: the hook sees the one real open


def test_reads_are_bounded(tmp_path: Path, bad_inputs: Tried) -> None:
    sparse = tmp_path / "sparse"
    with sparse.open("wb") as file:
        file.truncate(1 << 40)  # a terabyte that takes no disk
    bad_inputs(1)
    started = time.monotonic()
    with pytest.raises(TooLarge):
        read_bytes(str(sparse), 1 << 20)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("limit", [10, 3 * (64 << 10) + 7])
def test_a_read_gives_the_whole_file_up_to_its_bound_and_no_byte_more(tmp_path: Path,
                                                                      limit: int) -> None:
    """At and around the bound and the read's chunk size: the whole file when it fits,
    TooLarge from one byte past; a prefix says whether it is the whole file."""
    from pytest_envguard.probes._io import _CHUNK, read_prefix

    path = tmp_path / "data"
    for length in sorted({0, 1, limit - 1, limit, limit + 1, _CHUNK - 1, _CHUNK, _CHUNK + 1,
                          2 * _CHUNK + 3}):
        content = bytes(index % 251 for index in range(length))
        path.write_bytes(content)
        if length <= limit:
            assert read_bytes(str(path), limit) == content
        else:
            with pytest.raises(TooLarge):
                read_bytes(str(path), limit)
        assert read_prefix(str(path), limit) == (content[:limit], length < limit)


def test_a_proc_file_longer_than_a_chunk_is_read_whole() -> None:
    """A /proc file says its size is 0: it is read in chunks to its end (a child with
    thousands of mappings holds its maps file still while it is read twice)."""
    from pytest_envguard.probes._io import _CHUNK

    with subprocess.Popen(
            [sys.executable, "-c", "import mmap, sys\n"
             "held = [mmap.mmap(-1, 4096 * (1 + i % 2)) for i in range(4000)]\n"
             "print('ready', flush=True)\nsys.stdin.read()\n"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            maps = f"/proc/{child.pid}/maps"
            assert os.stat(maps).st_size == 0
            with open(maps, "rb") as file:
                expected = file.read()
            assert len(expected) > 2 * _CHUNK
            assert read_bytes(maps, 64 << 20) == expected
        finally:
            child.kill()


# -- a file replaced between its check and its open ---------------------------------------------

# In a child (audit hooks cannot be removed): at the "open" event of the watched path,
# before the real open runs, the file is replaced by rename, as a tool writing a lock
# file replaces it — the interleaving the churn of tests/test_faults.py hits by chance.
_REPLACED_AT_OPEN = """
import json, os, sys
from pytest_envguard.probes import _io
path, times, reader = sys.argv[1], int(sys.argv[2]), sys.argv[3]
replaced = []
def hook(event, args):
    if event == "open" and args and args[0] == path and len(replaced) < times:
        replaced.append(1)
        with open(path + ".new", "w") as file:
            file.write(f"version {len(replaced)}\\n")
        os.replace(path + ".new", path)
sys.addaudithook(hook)
try:
    if reader == "open_regular":
        with _io.open_regular(path, "utf-8") as file:
            text = file.read()
    else:
        text = _io.read_bytes(path, 4096).decode()
    print(json.dumps({"read": text, "replaced": len(replaced)}))
except OSError as error:
    print(json.dumps({"error": str(error), "kind": _io.failure_of(error).value,
                      "replaced": len(replaced)}))
"""


@pytest.mark.parametrize("reader", ["open_regular", "read_bytes"])
@pytest.mark.parametrize("times", [1, 2, 3])
def test_a_file_replaced_while_it_is_opened_is_read_anew(tmp_path: Path, times: int,
                                                         reader: str) -> None:
    """Replaced between the stat and the open (once, or on every try): the reader reads
    the file as it now is; only a file that changes at every one of its tries is refused,
    with the reason. Both ways in: a file object, and the descriptor read directly."""
    from pytest_envguard.probes._io import REOPEN_TRIES

    path = tmp_path / "requirements.txt"
    path.write_text("version 0\n")
    result = subprocess.run([sys.executable, "-c", _REPLACED_AT_OPEN, str(path), str(times),
                             reader],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["replaced"] == times
    if times < REOPEN_TRIES:
        assert answer == {"read": f"version {times}\n", "replaced": times}
    else:
        assert "the file changed while it was opened" in answer["error"]
        assert answer["kind"] == Failure.UNREADABLE.value
