"""Probes: one module per facet of the live environment.

Every probe is read-only, imports its heavy dependency (psutil, pynvml,
elftools) inside the function that needs it, and never raises into the
caller: what it cannot find becomes ``None`` plus a reason in the returned
facts. Nothing here imports pytest.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from typing import IO, Any


class Facts:
    """Mixin for the frozen dataclasses probes return: plain, serialisable values."""

    def to_dict(self) -> dict[str, Any]:
        assert dataclasses.is_dataclass(self)
        return {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, Facts):
        return value.to_dict()
    if isinstance(value, (tuple, list, frozenset, set)):
        items = [_plain(item) for item in value]
        return sorted(items) if isinstance(value, (frozenset, set)) else items
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def describe_error(error: BaseException) -> str:
    """An exception as one line: ``PermissionError: [Errno 13] … '/proc/x'``."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def open_regular(path: str, encoding: str | None = None, errors: str | None = None) -> IO[Any]:
    """Open a *regular* file for reading (text when ``encoding`` is given, else bytes).

    Anything else raises ``OSError``: a FIFO would block the probe until a
    writer came, a device like ``/dev/zero`` would never end.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):  # what open() says
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        os.set_blocking(fd, True)
        if encoding is None:
            return os.fdopen(fd, "rb")
        return os.fdopen(fd, encoding=encoding, errors=errors)
    except BaseException:
        os.close(fd)
        raise
