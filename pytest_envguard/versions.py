"""PEP 440 specifiers of plain release numbers, without importing ``packaging``.

Nearly every contract pins plain releases (``python >=3.10``, ``glibc >=2.28``,
``cuda >=12.1,<13``) against plain release versions (``3.11.7``, ``2.36``).
``packaging.specifiers`` answers those too, but importing it costs more than
the rest of a cheap contract's check. :func:`normalize` and :func:`contains`
answer exactly as ``packaging`` does for clauses of the form ``OP N(.N)*``
(and ``==``/``!=`` with ``.*``), and return ``None`` for anything else, where
the caller asks ``packaging``. A test compares the two on generated inputs.
"""

from __future__ import annotations

import re

_CLAUSE = re.compile(r"\s*(==|!=|>=|<=|~=|>|<)\s*([0-9]+(?:\.[0-9]+)*)(\.\*)?\s*")
_RELEASE = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def _clauses(specifier: str) -> list[tuple[str, tuple[int, ...], bool]] | None:
    """``(operator, release, wildcard)`` of each clause, or None if any is not simple."""
    clauses = []
    for text in specifier.split(","):
        match = _CLAUSE.fullmatch(text)
        if match is None:
            return None
        operator, version, wildcard = match.group(1), match.group(2), bool(match.group(3))
        release = tuple(int(part) for part in version.split("."))
        if wildcard and operator not in ("==", "!="):
            return None
        if operator == "~=" and len(release) < 2:
            return None
        clauses.append((operator, release, wildcard))
    return clauses


def normalize(specifier: str) -> str | None:
    """The specifier as ``str(SpecifierSet(specifier))`` writes it: the clauses without
    whitespace, sorted, each once — of equal clauses (``>=3.10`` and ``>=3.10.0``) the
    first in that order — or None when a clause is not a simple one."""
    clauses = _clauses(specifier)
    if clauses is None:
        return None
    written = [(re.sub(r"\s+", "", text), clause)
               for text, clause in zip(specifier.split(","), clauses, strict=True)]
    kept: dict[tuple[str, object], str] = {}
    for text, (operator, release, wildcard) in sorted(written, key=lambda item: item[0]):
        if wildcard:  # packaging compares these as written
            identity: object = text
        elif operator == "~=":
            identity = release
        else:  # trailing zeros do not count
            identity = release[:_significant(release)]
        kept.setdefault((operator, identity), text)
    return ",".join(kept.values())


def _significant(release: tuple[int, ...]) -> int:
    """How many components are left when trailing zeros are stripped (at least one)."""
    length = len(release)
    while length > 1 and release[length - 1] == 0:
        length -= 1
    return length


def _padded(left: tuple[int, ...], right: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    width = max(len(left), len(right))
    return left + (0,) * (width - len(left)), right + (0,) * (width - len(right))


def _holds(operator: str, release: tuple[int, ...], wildcard: bool, found: tuple[int, ...]) -> bool:
    if wildcard:
        prefix = (found + (0,) * len(release))[:len(release)]
        return (prefix == release) is (operator == "==")
    if operator == "~=":
        return _holds(">=", release, False, found) and _holds("==", release[:-1], True, found)
    mine, theirs = _padded(found, release)
    return {"==": mine == theirs, "!=": mine != theirs, ">=": mine >= theirs,
            "<=": mine <= theirs, ">": mine > theirs, "<": mine < theirs}[operator]


def contains(specifier: str, version: str) -> bool | None:
    """Whether ``version`` satisfies ``specifier`` (pre-releases allowed), or None when
    either is more than plain release numbers."""
    clauses = _clauses(specifier) if specifier else []
    if clauses is None or not _RELEASE.fullmatch(version):
        return None
    found = tuple(int(part) for part in version.split("."))
    return all(_holds(operator, release, wildcard, found) for operator, release, wildcard in clauses)
