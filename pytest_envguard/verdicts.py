"""Verdicts: what a check concludes about one requirement (DESIGN.md §2).

A :class:`Verdict` is plain, frozen data: it crosses the xdist wire and the
JSON document as :meth:`Verdict.to_dict` and comes back with
:meth:`Verdict.from_dict` — the requirement travels in structured form, never
re-parsed from its printed line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

from pytest_envguard.grammar import Requirement


class Status(str, Enum):
    MET = "met"
    UNMET = "unmet"
    UNKNOWN = "unknown"
    NA = "n/a"

    def __str__(self) -> str:
        return self.value


class Problem(NamedTuple):
    """One item inside a verdict that lists several (``consistent``, ``lock``,
    ``extensions``, ``wheels``): the JSON document lists every one, the terminal
    may shorten. ``kind`` says what sort of problem it is (``pip-check``,
    ``duplicate``, ``missing-library``, …), ``text`` says it in words."""

    kind: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "text": self.text}


@dataclass(frozen=True)
class Verdict:
    """The outcome of one requirement against the live environment."""

    requirement: Requirement
    status: Status
    found: str
    reason: str
    hint: str | None = None
    overridden: bool = False
    problems: tuple[Problem, ...] = field(default=(), compare=False)

    @property
    def ok(self) -> bool:
        """Met or not applicable; ``unknown`` counts as not met."""
        return self.status in (Status.MET, Status.NA)

    @property
    def line(self) -> str:
        return str(self.requirement)

    def skip_reason(self) -> str:
        return f"envguard: needs {self.line} — found {self.found}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "line": self.line,
            "source": self.requirement.source,
            "status": self.status.value,
            "found": self.found,
            "reason": self.reason,
            "hint": self.hint,
            "overridden": self.overridden,
            "requirement": {
                "key": self.requirement.key,
                "argument": self.requirement.argument,
                "specifier": self.requirement.specifier,
                "marker": self.requirement.marker,
            },
        }
        if self.problems:
            document["problems"] = [problem.to_dict() for problem in self.problems]
        return document

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """The inverse of :meth:`to_dict`. Raises ``KeyError``, ``TypeError`` or
        ``ValueError`` for a document that is not one."""
        structured = data.get("requirement")
        if isinstance(structured, Mapping):
            requirement = Requirement(
                key=str(structured["key"]), argument=_optional_str(structured.get("argument")),
                specifier=str(structured.get("specifier") or ""),
                marker=_optional_str(structured.get("marker")),
                text=str(data.get("line") or ""), source=str(data.get("source") or ""))
        else:  # a document written before the structured form: the line parses back
            from pytest_envguard.grammar import parse_line

            requirement = parse_line(str(data["line"]), str(data.get("source") or ""))
        problems = tuple(Problem(str(item["kind"]), str(item["text"]))
                         for item in data.get("problems") or ())
        return cls(requirement, Status(data["status"]), str(data["found"]), str(data["reason"]),
                   _optional_str(data.get("hint")), bool(data.get("overridden")), problems)


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


# -- builders ------------------------------------------------------------------------------


#: The ``found`` of a requirement whose thing is absent (no such command, no library):
#: the skip reason reads "needs command nvcc — found none: nvcc is not on PATH".
NOTHING_FOUND = "none"


def met(requirement: Requirement, found: str, reason: str, **kw: Any) -> Verdict:
    return Verdict(requirement, Status.MET, found, reason, **kw)


def unmet(requirement: Requirement, found: str, reason: str, **kw: Any) -> Verdict:
    return Verdict(requirement, Status.UNMET, found, reason, **kw)


def unknown(requirement: Requirement, reason: str, found: str = "unknown", **kw: Any) -> Verdict:
    return Verdict(requirement, Status.UNKNOWN, found, reason, **kw)


def not_applicable(requirement: Requirement, reason: str) -> Verdict:
    return Verdict(requirement, Status.NA, "-", reason)


def listing(items: Sequence[str], limit: int = 3) -> str:
    """The first ``limit`` items, then how many more: for one-line reasons."""
    shown = "; ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def plural(count: int, noun: str) -> str:
    """``1 module``, ``2 modules``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
