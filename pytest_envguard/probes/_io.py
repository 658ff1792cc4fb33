"""Reading files the plugin does not control: stat before open, bounded reads.

Everything a probe reads goes through :func:`open_regular` (or
:func:`read_prefix`, which reads the descriptor itself): the path is
checked with ``stat`` *before* it is opened, because opening some files has
effects (a FIFO blocks until a writer comes, some device files act on open),
and it is opened non-blocking and checked again on the descriptor, so a file
swapped in between is refused too. Every read is bounded: a file larger than
its reader allows raises :class:`TooLarge` instead of filling memory.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
from collections.abc import Iterator
from typing import IO, Any

from pytest_envguard.probes import Failure, describe_error


class TooLarge(ValueError):
    """A file larger than its reader allows."""


class TomlError(ValueError):
    """A TOML file that does not parse; ``line`` is where, when known."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


#: How many times a file replaced between its ``stat`` and its ``open`` is looked at
#: again: an atomic replace (a tool writing a lock file or a library by rename) is an
#: ordinary event, and the reader should read the new file; one that keeps changing is not.
REOPEN_TRIES = 3


def open_regular(path: str, encoding: str | None = None, errors: str | None = None, *,
                 follow_symlinks: bool = True) -> IO[Any]:
    """Open a *regular* file for reading (text when ``encoding`` is given, else bytes).

    Anything else raises ``OSError`` before it is opened: ``IsADirectoryError``
    for a directory (what ``open()`` says), ``EINVAL`` "not a regular file" for a
    FIFO, socket or device. ``follow_symlinks=False`` refuses a symbolic link
    (``ELOOP``), for files the plugin itself wrote. A file replaced between the
    check and the open is checked and opened again (``EAGAIN`` after
    :data:`REOPEN_TRIES` tries).
    """
    fd, _ = _open_regular_fd(path, follow_symlinks)
    try:
        if encoding is None:
            return os.fdopen(fd, "rb")
        return os.fdopen(fd, encoding=encoding, errors=errors)
    except BaseException:
        os.close(fd)
        raise


def _open_regular_fd(path: str, follow_symlinks: bool) -> tuple[int, int]:
    """:func:`open_regular`'s checks and tries, giving the descriptor, in blocking mode,
    and the file's size when it was opened (0 for most ``/proc`` files, whatever they hold)."""
    for _ in range(REOPEN_TRIES):
        opened = _open_if_unchanged(path, follow_symlinks)
        if opened is not None:
            return opened
    raise OSError(errno.EAGAIN, "the file changed while it was opened", path)


def _open_if_unchanged(path: str, follow_symlinks: bool) -> tuple[int, int] | None:
    """The file's descriptor and size, or None when what was opened is not the file that
    was checked."""
    info = os.stat(path, follow_symlinks=follow_symlinks)
    _require_regular(info.st_mode, path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            os.close(fd)
            return None
        _require_regular(opened.st_mode, path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, opened.st_size


def _require_regular(mode: int, path: str) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file", path)


def read_bytes(path: str, limit: int, *, follow_symlinks: bool = True) -> bytes:
    """The whole file, at most ``limit`` bytes; :class:`TooLarge` past that."""
    data, whole = read_prefix(path, limit + 1, follow_symlinks=follow_symlinks)
    if not whole:  # limit + 1 bytes or more
        raise TooLarge(f"{path}: larger than {_size(limit)}")
    return data


#: What :func:`read_prefix` asks of ``read`` past the file's size.
_CHUNK = 64 << 10


def read_prefix(path: str, size: int, *, follow_symlinks: bool = True) -> tuple[bytes, bool]:
    """The first ``size`` bytes of the file (all of it when shorter), and whether that is
    the whole file (False when it holds ``size`` bytes or more). Read from the descriptor,
    with no file object: most files the probes read are a few hundred bytes, where
    setting up a buffered (and a text) reader cost more than the read."""
    fd, length = _open_regular_fd(path, follow_symlinks)
    chunks: list[bytes] = []
    got = 0
    # One byte past the size it had, to see the end in the same read; then (a file that
    # grew, a /proc file that says 0) in chunks: never a buffer of the whole bound.
    want = length + 1 if length else _CHUNK
    try:
        while got < size:
            chunk = os.read(fd, min(want, size - got))
            want = _CHUNK
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks), False


def read_text(path: str, limit: int, *, errors: str = "replace") -> str:
    """The whole file as UTF-8 text, at most ``limit`` bytes."""
    return read_bytes(path, limit).decode("utf-8", errors)


def lines_containing(data: bytes, needle: bytes) -> Iterator[bytes]:
    """The lines of ``data`` that hold ``needle``, without their end: found by
    searching for it, so the other lines (a flood of empty ones) cost nothing."""
    position = data.find(needle)
    while position >= 0:
        start = data.rfind(b"\n", 0, position) + 1
        end = data.find(b"\n", position)
        end = len(data) if end < 0 else end
        yield data[start:end]
        position = data.find(needle, end)


def read_small(path: str, limit: int = 64 << 10) -> str | None:
    """A small text file (``INSTALLER``, ``/proc`` and cgroup files), or ``None``
    when it cannot be read or is larger than ``limit``."""
    try:
        return read_text(path, limit)
    except (OSError, TooLarge):
        return None


def load_toml(path: str, limit: int) -> dict[str, Any]:
    """A TOML document of at most ``limit`` bytes. Raises ``OSError``,
    :class:`TooLarge`, ``UnicodeDecodeError`` or :class:`TomlError`."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
    text = read_bytes(path, limit).decode("utf-8")
    try:
        document: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(error))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(error))
        raise TomlError(message, int(match.group(1)) if match else None) from None
    except RecursionError:
        raise TomlError("nested too deeply", None) from None
    return document


def failure_of(error: BaseException) -> Failure:
    """The kind of an error from the functions above."""
    if isinstance(error, TooLarge):
        return Failure.TOO_LARGE
    if isinstance(error, (FileNotFoundError, NotADirectoryError)):
        return Failure.MISSING
    if isinstance(error, IsADirectoryError) or (
            isinstance(error, OSError) and error.errno in (errno.EINVAL, errno.ELOOP)):
        return Failure.NOT_REGULAR
    if isinstance(error, OSError):
        return Failure.UNREADABLE
    return Failure.CORRUPT


def explain(path: str, error: BaseException) -> str:
    """``path: PermissionError: [Errno 13] Permission denied``: the path first, once."""
    if isinstance(error, OSError) and error.strerror and str(error.filename) == path:
        errno_text = f"[Errno {error.errno}] " if error.errno is not None else ""
        return f"{path}: {type(error).__name__}: {errno_text}{error.strerror}"
    text = describe_error(error)
    return text if text.startswith(path) else f"{path}: {text}"


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"
