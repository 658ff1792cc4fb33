"""Terminal tables, the header line, the JSON document. Knows no pytest."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from pytest_envguard.environment import Environment, override_name
from pytest_envguard.verdicts import Status, Verdict

if TYPE_CHECKING:
    from pytest_envguard.targets import Target

SCHEMA = "pytest-envguard/1"

_MARKS = {
    Status.MET: "ok",
    Status.UNMET: "FAIL",
    Status.UNKNOWN: "??",
    Status.NA: "n/a",
}


def write_section(config: Any, title: str, lines: Sequence[str]) -> None:
    """A titled section on pytest's terminal (stderr when there is no terminal reporter)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        import sys

        sys.stderr.write("\n".join([title, *lines]) + "\n")
        return
    reporter.write_sep("=", title)
    for line in lines:
        reporter.write_line(line)


def host() -> str:
    import socket

    try:
        return socket.gethostname() or os.uname().nodename
    except OSError:
        return os.uname().nodename


def judged_on(target: Target | None, machine: str | None = None) -> str:
    """Where a contract was judged: this machine (``machine``: its name, the host's by
    default), or the target it rehearsed there."""
    machine = machine or host()
    return machine if target is None else f"target {target.name} (rehearsed on {machine})"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def _cell(text: str, width: int) -> list[str]:
    """A table cell's lines: wrapped at spaces, never inside a word, so that a path or a
    soname stays whole (a word wider than the column widens its row instead)."""
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]


def _wrapped(text: str, width: int, first: str) -> list[str]:
    """A reason or hint under its row: wrapped at spaces, long paths kept whole."""
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=" " * 8,
                         break_long_words=False, break_on_hyphens=False)


def verdict_table(verdicts: Sequence[Verdict], width: int = 100) -> list[str]:
    """One row per requirement — status · requirement · found · source — then the reason
    and hint of each one not met. Long cells wrap within their column; nothing is clipped."""
    if not verdicts:
        return ["(no requirements)"]
    sources = [verdict.requirement.source or "-" for verdict in verdicts]
    line_w = min(40, max(len("requirement"), *(len(v.line) for v in verdicts)))
    source_w = max(len("source"), *(len(source) for source in sources))
    room = max(32, width - 6 - line_w - 2 - 2 - source_w)
    found_w = min(room, max(len("found"), *(len(v.found) for v in verdicts)))
    rows = [f"{'':4}  {'requirement':<{line_w}}  {'found':<{found_w}}  source"]
    for verdict, source in zip(verdicts, sources, strict=True):
        lines, found = _cell(verdict.line, line_w), _cell(verdict.found, found_w)
        for index in range(max(len(lines), len(found))):
            mark, where = (_MARKS[verdict.status], source) if index == 0 else ("", "")
            line = lines[index] if index < len(lines) else ""
            shown = found[index] if index < len(found) else ""
            rows.append(f"{mark:<4}  {line:<{line_w}}  {shown:<{found_w}}  {where}".rstrip())
        if verdict.status is not Status.MET:
            # Wrapped, not clipped: an `extensions` reason lists every broken file.
            rows.extend(_wrapped(verdict.reason, width, " " * 6))
            if verdict.hint:
                rows.extend(_wrapped(verdict.hint, width, " " * 6 + "→ "))
    return rows


def contract_summary(verdicts: Sequence[Verdict]) -> str:
    counts: dict[Status, int] = {}
    for verdict in verdicts:
        counts[verdict.status] = counts.get(verdict.status, 0) + 1
    order = (Status.MET, Status.UNMET, Status.UNKNOWN, Status.NA)
    return ", ".join(f"{counts[status]} {status.value}" for status in order if status in counts)


def facet_summaries(env: Environment) -> list[str]:
    """Short descriptions of the facets probed so far, in a fixed order."""
    facts = env.probed()
    parts: list[str] = []
    if "python" in facts:
        python = facts["python"]
        parts.append(f"Python {python.version} ({python.implementation})")
    if "platform" in facts:
        parts.append(f"{facts['platform'].platform} {facts['platform'].machine}")
    if "libc" in facts and facts["libc"].name:
        parts.append(f"{facts['libc'].name} {facts['libc'].version or '?'}")
    if "cpus" in facts and facts["cpus"].usable is not None:
        parts.append(f"{facts['cpus'].usable} CPUs")
    if "memory" in facts and facts["memory"].total is not None:
        from pytest_envguard.units import format_size

        parts.append(f"{format_size(facts['memory'].total)} RAM")
    if "nvidia" in facts:
        parts.append(gpu_summary(env))
    for value in facts.values():
        summary = getattr(value, "summary", None)
        if callable(summary):
            text = summary()
            if text:
                parts.append(str(text))
    if env.target is not None:
        parts.append(f"target {env.target.summary()}")
    if "nvidia" not in facts and env.override_source("gpus") == override_name("gpus") and \
            env.override("gpus") is not None:  # (a target's GPUs are in its summary)
        parts.append(rehearsed_gpu_summary(env))
    own = {key: value for key, value in env.overrides.items()
           if env.override_source(key) == override_name(key)}
    if own:
        parts.append("overridden: " + ", ".join(
            f"{key}={value or 'absent'}" for key, value in own.items()))
    return parts


def rehearsed_gpu_summary(env: Environment) -> str:
    """The header's part for rehearsed GPUs: ``2× Tesla T4 (overridden)``."""
    from pytest_envguard.checks.gpu import visible_gpus

    view = visible_gpus(env)
    if not view.known:
        return f"GPUs unknown: {view.reason}"
    if view.rehearsed is None or not view.rehearsed:
        return "no GPU visible (overridden)"
    names = [gpu.name or "GPU" for gpu in view.rehearsed]
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return " + ".join(f"{count}× {name}" if count > 1 else name
                      for name, count in counts.items()) + " (overridden)"


def describe_gpus(gpus: Sequence[Any]) -> str:
    """``2× NVIDIA H100 80GB HBM3`` or ``NVIDIA A100-SXM4-40GB + Tesla T4``."""
    counts: dict[str, int] = {}
    for gpu in gpus:
        counts[gpu.name] = counts.get(gpu.name, 0) + 1
    return " + ".join(f"{count}× {name}" if count > 1 else name for name, count in counts.items())


def gpu_summary(env: Environment) -> str:
    """The header's GPU part: ``2× NVIDIA H100 80GB HBM3 · driver 535.104.05 · CUDA 12.2``."""
    from pytest_envguard.checks.gpu import visible_gpus

    facts, view = env.nvidia, visible_gpus(env)
    if facts.failure is not None:
        if view.known and not view.devices:
            return f"no GPU visible ({view.explanation})"
        return f"GPUs unknown: {facts.reason}"
    parts = [describe_gpus(view.devices) if view.devices else f"no GPU visible ({view.explanation})"]
    if facts.driver:
        parts.append(f"driver {facts.driver}")
    if facts.cuda:
        parts.append(f"CUDA {facts.cuda}")
    return " · ".join(parts)


def header_line(env: Environment | None, verdicts: Sequence[Verdict] | None) -> str | None:
    parts = facet_summaries(env) if env is not None else []
    if verdicts:
        parts.append(f"contract: {contract_summary(verdicts)}")
    if not parts:
        return None
    return "envguard: " + " · ".join(parts)


def environment_lines(env: Environment) -> list[str]:
    """The report's environment section: one line per probed facet, then the expensive
    facets that were not probed and why, then the overrides in force."""
    lines = []
    for key, value in env.probed().items():
        name = key if isinstance(key, str) else f"{key[0]} {' '.join(key[1:])}"
        data = value.to_dict() if hasattr(value, "to_dict") else value
        describe = FACET_LINES.get(name)
        if describe is not None and isinstance(data, Mapping):
            shown = describe(data)
        elif isinstance(data, Mapping):
            shown = ", ".join(
                f"{field}={_shown_field(field, item)}" for field, item in data.items()
                if item not in (None, "", [], {})
            )
        else:
            shown = _short(data)
        lines.append(f"{name:<14} {shown}")
        if key == "nvidia" and value.failure is None:
            from pytest_envguard.checks.gpu import visible_gpus

            view = visible_gpus(env)
            refs = [_gpu_ref({"index": gpu.index, "parent": gpu.parent, "uuid": gpu.uuid})
                    for gpu in view.devices]
            lines.append(f"{'visible GPUs':<14} {_short(refs)} ({view.explanation})")
    for name, why in env.not_probed().items():
        lines.append(f"{name.removesuffix(':*'):<14} not probed ({why})")
    if env.target is not None:
        target = env.target
        lines.append(f"{'target':<14} {target.summary()}; source: {target.source}")
        if target.libraries is not None:
            lines.append(f"{'target libs':<14} {len(target.libraries)} system libraries: "
                         f"{_short(list(target.libraries))}")
    for key, value in env.overrides.items():
        source = env.override_source(key)
        lines.append(f"{'override':<14} {override_name(key)}={value!r}"
                     + (f" ({source})" if source != override_name(key) else ""))
    return lines


#: What an installer count's ``?`` stands for (``probes.distributions``: no INSTALLER file).
UNKNOWN_INSTALLER = "?"


def _installed_line(data: Mapping[str, Any]) -> str:
    """``53 distributions; installers: pip 52, ? 1 (?: no INSTALLER file)``: the names and
    versions are in the JSON document, not on the terminal."""
    parts = [f"{data.get('count', 0)} distributions"]
    installers = data.get("installers") or {}
    if isinstance(installers, Mapping) and installers:
        counts = ", ".join(f"{name} {count}" for name, count in installers.items())
        if UNKNOWN_INSTALLER in installers:
            counts += f" ({UNKNOWN_INSTALLER}: no INSTALLER file)"
        parts.append(f"installers: {counts}")
    shadowed = data.get("shadowed") or []
    if isinstance(shadowed, list) and shadowed:
        parts.append(f"{len(shadowed)} shadowed: {'; '.join(str(item) for item in shadowed[:3])}"
                     + (f"; … (+{len(shadowed) - 3})" if len(shadowed) > 3 else ""))
    if data.get("reason"):
        parts.append(str(data["reason"]))
    return "; ".join(parts)


#: Facets whose report line is written for a reader, not as the facet's fields.
FACET_LINES: dict[str, Callable[[Mapping[str, Any]], str]] = {"installed": _installed_line}

#: Facet fields that hold a number of bytes: shown as sizes in the report.
SIZE_FIELDS = frozenset({"total", "available", "memory_total", "memory_free"})


def shown_value(field: str, value: Any, *, whole: bool = False) -> str:
    """A facet field's value for a reader: sizes with units, durations in milliseconds,
    records and mappings as ``key=value`` text — never a Python repr. The report clips
    long values; ``whole`` keeps them entire (junit properties, which an archive keeps)."""
    return _shown_field(field, value, None if whole else _LIMITS)


class _Limits(NamedTuple):
    items: int = 12  # list elements shown
    text: int = 90  # characters of a value
    field: int = 60  # characters of one field of a record


_LIMITS = _Limits()


def _shown_field(field: str, value: Any, limits: _Limits | None = _LIMITS) -> str:
    if field in SIZE_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        from pytest_envguard.units import format_size

        return format_size(value)
    if field == "elapsed" and isinstance(value, float):
        return f"{value * 1000:.0f} ms"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return _compact(value, limits)
    if isinstance(value, list):
        records = bool(value) and all(isinstance(item, Mapping) for item in value)
        shown = value if limits is None else value[:limits.items]
        text = ("; " if records else " ").join(
            _compact(item, limits) if records else _shown_field("", item, limits) for item in shown)
        if len(shown) < len(value):
            text += f"{';' if records else ''} … (+{len(value) - len(shown)})"
        return f"[{text}]"
    return str(value) if limits is None else _clip(str(value), limits.text)


def _gpu_ref(gpu: Mapping[str, Any]) -> str:
    return f"#{gpu.get('index')}" if gpu.get("parent") is None else str(gpu.get("uuid"))


def _compact(item: Mapping[str, Any], limits: _Limits | None = _LIMITS) -> str:
    """One record on one line: a GPU as ``#0 NVIDIA H100 80GB HBM3, 79.6 GiB, cc 9.0,
    GPU-…``; anything else as its non-empty ``key=value`` pairs."""
    if "uuid" in item and "name" in item:
        from pytest_envguard.units import format_size

        total = item.get("memory_total")
        where = f"#{item.get('index')}" if item.get("parent") is None else f"MIG on #{item.get('index')}:"
        parts = [f"{where} {item['name']}",
                 format_size(total) if isinstance(total, int) else "memory ?",
                 f"cc {item.get('capability') or '?'}"]
        if item.get("mig"):
            parts.append("MIG on")
        if item.get("usable") is False:
            parts.append(f"not usable: {item.get('note')}")
        parts.append(str(item["uuid"]))
        return ", ".join(parts)
    pairs = []
    for key, value in item.items():
        if value is None or value is False or value in ("", [], {}):
            continue
        shown = _shown_field(str(key), value, limits)
        pairs.append(f"{key}={shown if limits is None else _clip(shown, limits.field)}")
    return " ".join(pairs)


def _short(value: Any) -> str:
    return _shown_field("", value)


def skip_summary(groups: Mapping[tuple[str, str], int]) -> list[str]:
    """``37 tests skipped: needs gpus >=1 — found 0: …``, most frequent first."""
    lines = []
    for (outcome, reason), count in sorted(groups.items(), key=lambda item: (-item[1], item[0])):
        noun = "test" if count == 1 else "tests"
        lines.append(f"{count} {noun} {outcome}: {reason.removeprefix('envguard: ')}")
    return lines


def preflight_lines(would: Mapping[tuple[str, str], int], ready: int, total: int) -> list[str]:
    """The pre-flight of ``--envguard-report --envguard-target``: ``12 tests would be
    skipped: needs gpus >=2 — found 1 (overridden): …``, most frequent first, then how
    many would run."""
    lines = skip_summary(would)
    lines.append(f"{ready} of {total} test{'s' * (total != 1)} would run: their markers are met "
                 "there, or they have none (an author's skip or skipif still wins, and "
                 "envguard.require() in a fixture is seen only when it runs)")
    return lines


def json_document(
    env: Environment | None,
    contract: Iterable[Verdict],
    tests: Mapping[str, Sequence[Verdict]],
    outcomes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The document of DESIGN.md §3: ``tests`` holds each test's verdicts, ``outcomes``
    each test's outcome (``passed``, ``failed``, ``skipped``, ``xfailed``, ``xpassed``,
    ``error``), every test that ran, with requirements or not."""
    return {
        "schema": SCHEMA,
        "host": host(),
        "environment": (env if env is not None else Environment()).to_dict(),
        "contract": [verdict.to_dict() for verdict in contract],
        "tests": {nodeid: [v.to_dict() for v in verdicts] for nodeid, verdicts in tests.items()},
        "outcomes": dict(outcomes or {}),
    }


def write_json(target: str | os.PathLike[str], document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``target`` whole or not at all: into a temporary file in the
    same directory, renamed over ``target``. A reader never sees half a document, and a
    symbolic link (or a FIFO) at ``target`` is replaced, never written through.
    Raises ``OSError``."""
    import contextlib
    import json
    import tempfile

    text = json.dumps(document, indent=2) + "\n"
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                         dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            os.fchmod(stream.fileno(), 0o666 & ~_umask())  # as open() would have made it
            stream.write(text)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    """This process's umask, read without setting it (``os.umask`` can only swap it)."""
    import re

    from pytest_envguard.probes._io import read_small

    found = re.search(r"^Umask:\s*([0-7]+)$", read_small("/proc/self/status") or "", re.MULTILINE)
    return int(found.group(1), 8) if found else 0o022
