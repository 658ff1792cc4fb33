"""What the plugin costs a test run: a generated 5,000-test collection, a third of it
marked with ``requires``, with the plugin and with ``-p no:envguard``; and the time to
import the plugin module when there is no contract.

    python benchmarks/bench_overhead.py [--tests 5000] [--pairs 7] [--python PATH]

Each pytest run is a fresh interpreter of a clean virtual environment (see ``_paired.py``):
the two variants alternate so that drift in the machine's load hits both alike, and the
median of the per-pair ratios is compared with the target (<= 1.02), with its spread.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _paired import Paired, bytecode_env, clean_venv, median_interval, paired, timed

TESTS_PER_MODULE = 100

#: The marker lines, cycled over the marked tests: a few distinct requirement sets, all met
#: on any machine that runs this, so the marked tests run rather than skip.
MARKERS = (
    '"python >=3.0"',
    '"platform {platform}", cpus=">=1"',
    '"memory >=1KiB"',
)


def write_suite(folder: Path, tests: int) -> None:
    (folder / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    requires: pytest-envguard requirements\n", encoding="utf-8"
    )
    modules = max(1, tests // TESTS_PER_MODULE)
    number = 0
    for module in range(modules):
        lines = ["import pytest", ""]
        for _ in range(TESTS_PER_MODULE):
            if number % 3 == 0:
                marker = MARKERS[(number // 3) % len(MARKERS)].format(platform=sys.platform)
                lines.append(f"@pytest.mark.requires({marker})")
            lines += [f"def test_{number}():", "    assert True", ""]
            number += 1
        (folder / f"test_gen_{module:03}.py").write_text("\n".join(lines), encoding="utf-8")


def bench_collection(python: Path, tests: int = 5000, pairs: int = 7) -> Paired:
    env = bytecode_env()
    with tempfile.TemporaryDirectory(prefix="envguard-bench-") as name:
        folder = Path(name)
        write_suite(folder, tests)
        base = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]

        def ok(result: subprocess.CompletedProcess[str]) -> bool:
            return result.returncode == 0

        return paired(f"pytest, {tests} tests, a third marked",
                      lambda: timed(base, cwd=folder, env=env, check=ok),
                      lambda: timed([*base, "-p", "no:envguard"], cwd=folder, env=env, check=ok),
                      reference_name="-p no:envguard", pairs=pairs, target=1.02)


IMPORT_PROBE = (
    "import time, pytest\n"
    "start = time.perf_counter()\n"
    "import pytest_envguard.plugin\n"
    "print(time.perf_counter() - start)\n"
)


def bench_import(python: Path, repeat: int = 15) -> tuple[float, float, float, float, float]:
    """The plugin module's import in an interpreter that has imported pytest already:
    (median, 95% confidence interval of the median, lowest, highest) in seconds."""
    timings = []
    env = bytecode_env()
    for _ in range(repeat):
        output = subprocess.run([str(python), "-c", IMPORT_PROBE], capture_output=True, text=True,
                                check=True, env=env).stdout
        timings.append(float(output.strip()))
    below, above = median_interval(timings)
    return statistics.median(timings), below, above, min(timings), max(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--python", type=Path, help="an interpreter with pytest-envguard installed")
    args = parser.parse_args()
    python = args.python or clean_venv()
    result = bench_collection(python, args.tests, args.pairs)
    print(result.line())
    median, below, above, low, high = bench_import(python)
    # On the median, as every other target: one slow run (a page-in, a busy core) is
    # in the range, not in the verdict.
    verdict = "ok" if above <= 0.010 else "OVER" if below > 0.010 else "unclear"
    print(f"import pytest_envguard.plugin: {median * 1000:.1f} ms median "
          f"[95% CI {below * 1000:.1f}-{above * 1000:.1f}; range {low * 1000:.1f}-"
          f"{high * 1000:.1f}] (target <= 10 ms) {verdict}")
    return 1 if "OVER" in (result.verdict, verdict) else 0


if __name__ == "__main__":
    sys.exit(main())
