"""The one JSON cache on disk: trusted only when it is the plugin's own, recent and
for exactly the question asked; written atomically; shared safely between
processes.

A cache file is read only when it is a regular file (not a link, FIFO or
device), owned by the current user, not writable by group or others, no
larger than its bound, and holds this schema and this plugin version. The
entries it holds are keyed by the caller on everything that changes the
answer; a document older than its time-to-live is not used. Anything else is
ignored — a cache can only ever cost a fresh probe, never change a verdict.

Writes go to a temporary file in the same directory, renamed over the old
one. :meth:`DiskCache.update` merges with what another process (an xdist
worker) wrote in between, under a lock file, and :meth:`DiskCache.lock`
lets one process compute an answer while the others wait for it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pytest_envguard.probes._io import open_regular

SCHEMA = 2


def _plugin_version() -> str:
    from pytest_envguard import __version__

    return __version__


def _trusted(info: os.stat_result, max_bytes: int) -> bool:
    """A file this user wrote and nobody else could have: a regular file owned by the
    effective user, writable by nobody else, within its bound."""
    return (stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and info.st_size <= max_bytes)


class DiskCache:
    """One cache file, ``directory/name`` (pytest's cache dir, ``envguard/`` below it);
    with ``directory=None`` every call is a no-op (nothing is read or written)."""

    def __init__(self, directory: Path | None, name: str, *, max_bytes: int,
                 ttl: float | None = None) -> None:
        self.directory = directory
        self.name = name
        self.max_bytes = max_bytes
        self.ttl = ttl

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else self.directory / self.name

    def read(self) -> dict[str, Any] | None:
        """The cached entries, or ``None`` when there is no trustworthy cache."""
        path = self.path
        if path is None:
            return None
        try:
            # Not through a link; a FIFO or device is refused before it is opened; the
            # owner and mode are those of the file actually opened, not of a name.
            with open_regular(str(path), follow_symlinks=False) as file:
                if not _trusted(os.fstat(file.fileno()), self.max_bytes):
                    return None
                data: bytes = file.read(self.max_bytes + 1)
            if len(data) > self.max_bytes:
                return None
            document = json.loads(data)
        except (OSError, ValueError, RecursionError):
            return None
        if (not isinstance(document, dict) or document.get("schema") != SCHEMA
                or document.get("plugin") != _plugin_version()
                or not isinstance(document.get("entries"), dict)):
            return None
        written = document.get("written")
        if self.ttl is not None and not (
                isinstance(written, (int, float)) and 0 <= time.time() - written <= self.ttl):
            return None
        entries: dict[str, Any] = document["entries"]
        return entries

    def write(self, entries: dict[str, Any]) -> bool:
        """Replace the cache atomically; False when it could not be written."""
        path = self.path
        if path is None:
            return False
        document = {"schema": SCHEMA, "plugin": _plugin_version(), "written": time.time(),
                    "entries": entries}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{self.name}-", suffix=".tmp",
                                                 dir=path.parent)
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as stream:
                    os.fchmod(stream.fileno(), 0o600)
                    json.dump(document, stream, separators=(",", ":"))
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except (OSError, TypeError, ValueError):
            return False  # a read-only cache dir: probe again next time
        return True

    def update(self, change: Callable[[dict[str, Any]], None], *, timeout: float = 5.0) -> bool:
        """Re-read the cache under the lock, apply ``change`` to its entries, write it:
        entries other processes added meanwhile are kept."""
        with self.lock(timeout) as held:
            if not held:
                return False
            entries = self.read() or {}
            change(entries)
            return self.write(entries)

    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[bool]:
        """Hold ``name.lock`` (``flock``) for the block; yields whether it was taken
        within ``timeout`` (False too where there is no cache directory)."""
        path = self.path
        if path is None:
            yield False
            return
        import fcntl

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                         | os.O_NONBLOCK, 0o600)
        except OSError:
            yield False
            return
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device put there: no lock
            os.close(fd)
            yield False
            return
        held = False
        try:
            deadline = time.monotonic() + timeout
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = True
                    break
                except OSError as error:
                    if error.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                        break
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            yield held
        finally:
            os.close(fd)  # releases the lock
