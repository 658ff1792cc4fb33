"""Sizes, counts and CUDA version numbers: parsing, formatting, comparing."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

#: The comparison operators of DESIGN.md §1, for numbers and sizes.
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


class UnitError(ValueError):
    """A size or count that does not parse."""


def parse_size(text: str) -> int:
    """``"16GiB"`` → 17179869184; plain numbers are bytes; decimal and binary units."""
    match = _SIZE_RE.match(text)
    if not match:
        raise UnitError(f"not a size: {text!r} (expected a number with an optional unit, e.g. 16GiB)")
    number, unit = match.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        units = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"
        raise UnitError(f"unknown size unit {unit!r} in {text.strip()!r} (use one of {units})")
    return int(float(number) * factor)


def format_size(size: int) -> str:
    """Bytes as the largest binary unit that keeps one decimal: ``"15.7 GiB"``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def parse_count(text: str) -> int:
    """A non-negative whole number (``cpus``, ``gpus``)."""
    stripped = text.strip()
    if not stripped.isdigit():
        raise UnitError(f"not a whole number: {text.strip()!r}")
    return int(stripped)


def cuda_version(value: int) -> str:
    """NVML's integer CUDA version as a dotted one: ``12020`` → ``"12.2"``."""
    major, rest = divmod(value, 1000)
    return f"{major}.{rest // 10}"
