"""Every benchmark in one run, as one table of ratios.

    python benchmarks/run_all.py [--repeat N] [--quick]

Rows:

* plugin overhead on a generated 5,000-test collection, a third marked, against
  ``-p no:envguard`` (target <= 1.05), and the plugin's import time with no contract
  (target <= 15 ms) — bench_overhead.py;
* ``consistent`` against ``pip check`` — bench_consistent.py;
* ``extensions`` against ``ldd`` — bench_extensions.py;
* ``python -m pytest_envguard`` against ``python -m torch.utils.collect_env``, when torch
  is installed.

The other scripts run as subprocesses (with ``--repeat N``) and are read by one of two
conventions: lines ``ratio REFERENCE / OURS  N.Nx`` give the script's own speed-ups;
failing those, each line ``LABEL: N ms …`` is a timing, the first of them the reference
tool's, every later one shown as a ratio against it. Ratios in the table are always
ours / reference: lower is better. A script that exits non-zero (its
verdicts disagree with the reference tool's) is marked so in the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_overhead  # noqa: E402  (a sibling script, found through the line above)

TIMING = re.compile(r"^\s*(?P<label>[^:]+?):\s+(?P<ms>\d+(?:\.\d+)?)\s*ms\b")


@dataclass(frozen=True)
class Row:
    name: str
    measured: str
    reference: str
    ratio: str
    target: str
    verdict: str


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def overhead_rows(repeat: int, tests: int) -> list[Row]:
    rows = []
    results = (bench_overhead.bench_collection(tests, repeat), bench_overhead.bench_import(max(5, repeat)))
    for result in results:
        rows.append(Row(result.name, ms(result.measured), f"{ms(result.reference)} ({result.reference_name})",
                        f"{result.ratio:.3f}", f"<= {result.target}", "ok" if result.ok else "OVER"))
    return rows


def parse_timings(output: str) -> list[tuple[str, float]]:
    return [(match["label"].strip(), float(match["ms"]))
            for match in map(TIMING.match, output.splitlines()) if match]


RATIO = re.compile(r"^ratio\s+(?P<reference>.+?)\s*/\s*(?P<ours>.+?)\s+(?P<times>\d+(?:\.\d+)?)x\s*$")


def parse_ratios(output: str) -> list[tuple[str, str, float]]:
    """``ratio REFERENCE / OURS  N.Nx`` lines: the script's own speed-ups."""
    return [(match["reference"], match["ours"], float(match["times"]))
            for match in map(RATIO.match, output.splitlines()) if match]


def script_rows(script: str, title: str, repeat: int) -> list[Row]:
    path = HERE / script
    if not path.is_file():
        return [Row(title, "-", "-", "-", "-", f"not run: {script} is missing")]
    process = subprocess.run([sys.executable, str(path), "--repeat", str(repeat)],
                             capture_output=True, text=True, check=False)
    verdict = "ok" if process.returncode == 0 else f"exit {process.returncode}: verdicts differ"
    ratios = parse_ratios(process.stdout)
    if ratios:
        return [Row(f"{title}: {ours}", "-", reference, f"{1 / times:.3f}", "< 1",
                    verdict if times > 1 else "SLOWER")
                for reference, ours, times in ratios]
    timings = parse_timings(process.stdout)
    if len(timings) < 2:
        tail = (process.stderr or process.stdout).strip().splitlines()[-1:] or ["no output"]
        return [Row(title, "-", "-", "-", "-", f"no timings (exit {process.returncode}): {tail[0]}")]
    (reference_label, reference), *measured = timings
    return [Row(f"{title}: {label}", f"{value:.1f} ms", f"{reference:.1f} ms ({reference_label})",
                f"{value / reference:.3f}", "< 1", verdict if value < reference else "SLOWER")
            for label, value in measured]


def best_of(repeat: int, command: list[str]) -> tuple[float, int]:
    timings = []
    code = 0
    for _ in range(repeat):
        start = time.perf_counter()
        code = subprocess.run(command, capture_output=True, check=False).returncode
        timings.append(time.perf_counter() - start)
    return min(timings), code


def torch_rows(repeat: int) -> list[Row]:
    title = "python -m pytest_envguard vs torch collect_env"
    if importlib.util.find_spec("torch") is None:
        return [Row(title, "-", "-", "-", "-", "not run: torch is not installed")]
    ours, code = best_of(repeat, [sys.executable, "-m", "pytest_envguard"])
    theirs, _ = best_of(repeat, [sys.executable, "-m", "torch.utils.collect_env"])
    verdict = "ok" if code in (0, 6) and ours < theirs else f"exit {code}" if code not in (0, 6) else "SLOWER"
    return [Row(title, ms(ours), f"{ms(theirs)} (collect_env)", f"{ours / theirs:.3f}", "< 1", verdict)]


def table(rows: list[Row]) -> str:
    header = Row("benchmark", "measured", "reference", "ratio", "target", "verdict")
    columns = list(zip(*[(r.name, r.measured, r.reference, r.ratio, r.target, r.verdict)
                         for r in [header, *rows]], strict=True))
    widths = [max(len(cell) for cell in column) for column in columns]
    lines = []
    for index, row in enumerate([header, *rows]):
        cells = (row.name, row.measured, row.reference, row.ratio, row.target, row.verdict)
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N for each timing (default 3)")
    parser.add_argument("--quick", action="store_true", help="500 tests instead of 5,000, one repeat")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    tests = 500 if args.quick else 5000
    rows = overhead_rows(repeat, tests)
    rows += script_rows("bench_consistent.py", "consistent vs pip check", repeat)
    rows += script_rows("bench_extensions.py", "extensions vs ldd", repeat)
    rows += torch_rows(repeat)
    print(f"python {sys.version.split()[0]} · {sys.executable}")
    print(table(rows))
    bad = [row for row in rows if row.verdict not in ("ok",) and not row.verdict.startswith("not run")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
