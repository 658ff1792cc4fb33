"""``python -m pytest_envguard --merge A.json B.json…``: requirements × runs, in one table.

Reads the JSON documents of several runs — ``--envguard-json`` of tox envs, CI
workers, xdist controllers (each worker becomes a run of its own), targets
rehearsed with ``--envguard-target``, ``python -m pytest_envguard --json`` — and
shows, for every requirement line, what each run found and whether it was met:
which workers fail which line, at a glance. Verdicts are rebuilt with
:meth:`Verdict.from_dict`, never re-parsed from their printed lines. The merged
document (``--json``) is a ``pytest-envguard/1`` document whose ``runs`` key
holds each run's own document, and whose ``matrix`` key holds the table; it can
be merged again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_envguard.verdicts import Status, Verdict

#: The largest document read (an xdist run of a big suite with every test's verdicts).
MAX_DOCUMENT_BYTES = 256 << 20

#: How deep merged documents may nest (a merge of merges of …).
MAX_NESTING = 8

#: Which status a cell shows when one line has several verdicts in a run: the worst.
_SEVERITY = {Status.UNMET: 3, Status.UNKNOWN: 2, Status.MET: 1, Status.NA: 0}

_MARKS = {Status.MET: "ok", Status.UNMET: "FAIL", Status.UNKNOWN: "??", Status.NA: "n/a"}


class MergeError(ValueError):
    """A file that is not a pytest-envguard document; the message names it."""


@dataclass(frozen=True)
class Run:
    """One run's verdicts, and where they come from."""

    name: str  # the column's title: the file's stem, "stem/gw0" for an xdist worker
    source: str  # the file
    host: str
    target: str | None  # the --envguard-target it was judged as on
    contract: tuple[Verdict, ...]
    tests: Mapping[str, tuple[Verdict, ...]] = field(default_factory=dict)
    document: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """What one run found for one line: the worst of its verdicts for it, and in how
    many tests (marker lines)."""

    status: Status
    found: str
    tests: int = 0


@dataclass(frozen=True)
class Row:
    line: str
    kind: str  # "contract" or "tests"
    cells: Mapping[str, Cell]  # by run name; a run without the line has none


# -- reading -----------------------------------------------------------------------------------


def read_runs(paths: Sequence[Path]) -> list[Run]:
    """The runs of every document, in order. Raises :class:`MergeError`."""
    runs: list[Run] = []
    for path in paths:
        runs += _runs_of(_load(path), path.stem, str(path), 0)
    seen: dict[str, int] = {}
    unique = []
    for run in runs:  # two files of one stem (a/py311.json, b/py311.json) stay apart
        seen[run.name] = seen.get(run.name, 0) + 1
        name = run.name if seen[run.name] == 1 else f"{run.name}#{seen[run.name]}"
        unique.append(run if name == run.name else _renamed(run, name))
    return unique


def _renamed(run: Run, name: str) -> Run:
    from dataclasses import replace

    return replace(run, name=name)


def _load(path: Path) -> dict[str, Any]:
    from pytest_envguard.probes._io import TooLarge, read_bytes

    try:
        document = json.loads(read_bytes(str(path), MAX_DOCUMENT_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise MergeError(f"{path}: no such file") from None
    except (OSError, TooLarge) as error:
        raise MergeError(f"{path}: {error}") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise MergeError(f"{path}: not JSON ({error})") from None
    if not isinstance(document, dict):
        raise MergeError(f"{path}: not a pytest-envguard document (a JSON {type(document).__name__})")
    return document


def _runs_of(document: Mapping[str, Any], name: str, source: str, depth: int) -> list[Run]:
    from pytest_envguard.render import SCHEMA

    if document.get("schema") != SCHEMA:
        raise MergeError(f"{source}: not a {SCHEMA} document (schema "
                         f"{document.get('schema')!r})")
    if isinstance(document.get("runs"), list):  # a merged document: its runs, again
        if depth >= MAX_NESTING:
            raise MergeError(f"{source}: merged documents nested more than {MAX_NESTING} deep")
        runs = []
        for index, entry in enumerate(document["runs"]):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("document"), Mapping):
                raise MergeError(f"{source}: runs[{index}] holds no document")
            runs += _runs_of(entry["document"], str(entry.get("name") or f"{name}[{index}]"),
                             str(entry.get("source") or source), depth + 1)
        return runs
    host = str(document.get("host") or "?")
    environment = document.get("environment")
    target = environment.get("target") if isinstance(environment, Mapping) else None
    target_name = str(target.get("name")) if isinstance(target, Mapping) else None
    contract = _verdicts(document.get("contract", []), f"{source}: contract")
    tests: dict[str, tuple[Verdict, ...]] = {}
    raw_tests = document.get("tests", {})
    if not isinstance(raw_tests, Mapping):
        raise MergeError(f"{source}: 'tests' is not an object")
    for nodeid, verdicts in raw_tests.items():
        tests[str(nodeid)] = _verdicts(verdicts, f"{source}: tests[{nodeid!r}]")
    runs = [Run(name, source, host, target_name, contract, tests, document)]
    workers = document.get("workers")
    if isinstance(workers, Mapping):
        for worker, data in workers.items():
            if not isinstance(data, Mapping):
                raise MergeError(f"{source}: workers[{worker!r}] is not an object")
            runs.append(Run(f"{name}/{worker}", source, str(data.get("host") or host),
                            target_name,
                            _verdicts(data.get("contract", []), f"{source}: workers[{worker!r}]")))
    return runs


def _verdicts(items: object, where: str) -> tuple[Verdict, ...]:
    if not isinstance(items, list):
        raise MergeError(f"{where}: not a list of verdicts")
    verdicts = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, Mapping):
                raise TypeError(f"a JSON {type(item).__name__}")
            verdicts.append(Verdict.from_dict(item))
        except (KeyError, TypeError, ValueError) as error:
            raise MergeError(f"{where}[{index}]: not a verdict ({type(error).__name__}: "
                             f"{error})") from None
    return tuple(verdicts)


# -- the matrix ------------------------------------------------------------------------------


def matrix(runs: Sequence[Run]) -> list[Row]:
    """One row per distinct contract line, then per distinct marker line, in the order
    they first appear; each run's cell is its worst verdict for the line."""
    rows: dict[tuple[str, str], dict[str, list[tuple[Verdict, int]]]] = {}
    for run in runs:
        for verdict in run.contract:
            rows.setdefault(("contract", verdict.line), {}).setdefault(run.name, []).append(
                (verdict, 0))
        for verdicts in run.tests.values():
            for verdict in verdicts:
                rows.setdefault(("tests", verdict.line), {}).setdefault(run.name, []).append(
                    (verdict, 1))
    ordered = sorted(rows.items(), key=lambda item: item[0][0] != "contract")
    return [Row(line, kind, {name: _cell(found) for name, found in cells.items()})
            for (kind, line), cells in ordered]


def _cell(found: list[tuple[Verdict, int]]) -> Cell:
    worst = max((verdict for verdict, _ in found), key=lambda v: _SEVERITY[v.status])
    return Cell(worst.status, worst.found, sum(count for _, count in found))


def all_met(runs: Sequence[Run]) -> bool:
    """Whether every run met its contract (marker lines only skip tests)."""
    return all(verdict.ok for run in runs for verdict in run.contract)


# -- showing it ----------------------------------------------------------------------------------

_CELL_WIDTH = 30


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def table(runs: Sequence[Run], rows: Sequence[Row]) -> list[str]:
    """The runs, then requirements × runs, then which runs miss which line."""
    lines = [f"== envguard: {len(runs)} run{'s' * (len(runs) != 1)} =="]
    lines += _columns([["run", "source", "host", "target"]]
                      + [[run.name, run.source, run.host, run.target or "-"] for run in runs])
    lines.append("== envguard: requirements × runs ==")
    grid = [["requirement", *(run.name for run in runs)]]
    for kind in ("contract", "tests"):
        chosen = [row for row in rows if row.kind == kind]
        if not chosen:
            continue
        grid.append(["contract:" if kind == "contract" else "markers (tests):"])
        for row in chosen:
            most = max((cell.tests for cell in row.cells.values()), default=0)
            label = f"  {row.line}" + (f" ({most} test{'s' * (most != 1)})" if most else "")
            grid.append([label, *(_shown(row.cells.get(run.name)) for run in runs)])
    lines += _columns(grid)
    misses = _misses(runs, rows)
    lines.append("== envguard: where lines are not met ==")
    lines += misses or ["every run meets every line"]
    return lines


def _shown(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    return _clip(f"{_MARKS[cell.status]} {cell.found}", _CELL_WIDTH)


def _columns(grid: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells in aligned columns (a row with one cell is a heading)."""
    widths: list[int] = []
    for row in grid:
        if len(row) == 1:
            continue
        for index, text in enumerate(row):
            if index == len(widths):
                widths.append(0)
            widths[index] = max(widths[index], len(text))
    return ["  ".join(text.ljust(widths[index]) for index, text in enumerate(row)).rstrip()
            if len(row) > 1 else row[0] for row in grid]


def _misses(runs: Sequence[Run], rows: Sequence[Row]) -> list[str]:
    lines = []
    for row in rows:
        failing = [run.name for run in runs if (cell := row.cells.get(run.name)) is not None
                   and cell.status is Status.UNMET]
        doubtful = [run.name for run in runs if (cell := row.cells.get(run.name)) is not None
                    and cell.status is Status.UNKNOWN]
        parts = ([f"FAIL on {', '.join(failing)}"] if failing else []) + (
            [f"unknown on {', '.join(doubtful)}"] if doubtful else [])
        if parts:
            where = "" if row.kind == "contract" else " (marker)"
            lines.append(f"{row.line}{where}: {'; '.join(parts)}")
    return lines


def merged_document(runs: Sequence[Run], rows: Sequence[Row]) -> dict[str, Any]:
    """A ``pytest-envguard/1`` document of the runs: ``runs`` holds each run's own
    document, ``matrix`` the table. Its own environment, contract and tests are empty:
    the merge ran nothing."""
    from pytest_envguard.render import SCHEMA, host

    own = [run for run in runs if run.document]  # an xdist worker's is its controller's
    return {
        "schema": SCHEMA,
        "host": host(),
        "environment": {},
        "contract": [],
        "tests": {},
        "outcomes": {},
        "runs": [{"name": run.name, "source": run.source, "host": run.host,
                  "target": run.target, "document": dict(run.document)} for run in own],
        "matrix": [{"line": row.line, "kind": row.kind,
                    "runs": {name: {"status": cell.status.value, "found": cell.found,
                                    "tests": cell.tests} for name, cell in row.cells.items()}}
                   for row in rows],
    }


def run_merge(paths: Sequence[Path], json_path: str | None) -> int:
    """Print the table (and write the merged document); the exit status: 0 when every
    run met its contract, 6 when one did not, 4 for a file that is not a document."""
    import sys

    from pytest_envguard.option_table import EXIT_CONTRACT_UNMET, EXIT_OK, EXIT_USAGE
    from pytest_envguard.render import write_json

    try:
        runs = read_runs(paths)
    except MergeError as error:
        print(f"envguard: {error}", file=sys.stderr)
        return EXIT_USAGE
    rows = matrix(runs)
    status = EXIT_OK if all_met(runs) else EXIT_CONTRACT_UNMET
    document = merged_document(runs, rows)
    if json_path == "-":
        print(json.dumps(document, indent=2))
        return status
    print("\n".join(table(runs, rows)))
    if json_path:
        try:
            write_json(os.fspath(json_path), document)
        except OSError as error:
            print(f"envguard: could not write {json_path}: {error}", file=sys.stderr)
            return EXIT_USAGE
    return status
