"""Probes: one module per facet of the live environment.

Every probe is read-only, imports its heavy dependency (psutil, pynvml,
rattler) inside the function that needs it, and never raises into the
caller: what it cannot find becomes a :class:`Failure` kind plus a reason in
the returned facts. Checks branch on the kind; the reason is for people.
Nothing here imports pytest.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any


class Failure(str, Enum):
    """Why a probe could not give a fact: what checks decide on (never the wording)."""

    MISSING = "missing"  # no such file, library, module, distribution or driver
    UNREADABLE = "unreadable"  # it is there, but this user cannot read it
    NOT_REGULAR = "not-regular"  # a directory, FIFO or device where a file belongs
    NOT_ELF = "not-elf"  # not an ELF object (bad magic, too short)
    CORRUPT = "corrupt"  # malformed content: a truncated ELF, a broken lock or answer
    TOO_LARGE = "too-large"  # over the bound a probe allows itself for one input
    TIMEOUT = "timeout"  # a child did not answer in time
    CRASHED = "crashed"  # a child was killed by a signal
    BROKEN = "broken"  # it ran and failed: an import raised, NVML refused to start
    UNSUPPORTED = "unsupported"  # the platform has no such thing to probe
    ERROR = "error"  # the probe itself could not run (a child could not be started)

    def __str__(self) -> str:
        return self.value


class Facts:
    """Mixin for the frozen dataclasses probes return: plain, serialisable values."""

    def to_dict(self) -> dict[str, Any]:
        assert dataclasses.is_dataclass(self)
        return {field.name: plain(getattr(self, field.name)) for field in dataclasses.fields(self)}


def plain(value: Any) -> Any:
    """A value made of dicts, lists, strings and numbers (for JSON)."""
    if isinstance(value, Facts):
        return value.to_dict()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list, frozenset, set)):
        items = [plain(item) for item in value]
        return sorted(items) if isinstance(value, (frozenset, set)) else items
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    return value


def describe_error(error: BaseException) -> str:
    """An exception as one line: ``PermissionError: [Errno 13] … '/proc/x'``."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
