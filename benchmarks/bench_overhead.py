"""What the plugin costs a test run: a generated 5,000-test collection, a third of it
marked with ``requires``, with the plugin and with ``-p no:envguard``; and the time to
import the plugin module when there is no contract.

    python benchmarks/bench_overhead.py [--tests 5000] [--repeat 3]

Each pytest run is a fresh interpreter; the two variants alternate so that drift in the
machine's load hits both alike, and the best of N of each is compared.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TESTS_PER_MODULE = 100

#: The marker lines, cycled over the marked tests: a few distinct requirement sets, all met
#: on any machine that runs this, so the marked tests run rather than skip.
MARKERS = (
    '"python >=3.0"',
    '"platform {platform}", cpus=">=1"',
    '"memory >=1KiB"',
)


@dataclass(frozen=True)
class Result:
    name: str
    measured: float  # seconds
    reference: float  # seconds; what the ratio divides by
    reference_name: str
    target: float  # the ratio not to exceed

    @property
    def ratio(self) -> float:
        return self.measured / self.reference

    @property
    def ok(self) -> bool:
        return self.ratio <= self.target


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


def time_pytest(folder: Path, *extra: str) -> float:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
               "-p", "no:randomly", *extra]
    start = time.perf_counter()
    process = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"pytest failed ({' '.join(extra) or 'with envguard'}):\n{process.stdout[-2000:]}")
    return elapsed


def bench_collection(tests: int = 5000, repeat: int = 3) -> Result:
    with tempfile.TemporaryDirectory(prefix="envguard-bench-") as name:
        folder = Path(name)
        write_suite(folder, tests)
        time_pytest(folder)  # warm the file system cache and the bytecode
        with_plugin: list[float] = []
        without: list[float] = []
        for _ in range(repeat):
            without.append(time_pytest(folder, "-p", "no:envguard"))
            with_plugin.append(time_pytest(folder))
    return Result(f"pytest, {tests} tests, a third marked", min(with_plugin), min(without),
                  "-p no:envguard", 1.05)


IMPORT_PROBE = (
    "import time, pytest\n"
    "start = time.perf_counter()\n"
    "import pytest_envguard.plugin\n"
    "print(time.perf_counter() - start)\n"
)


def bench_import(repeat: int = 5) -> Result:
    """The plugin module's import in an interpreter that has imported pytest already."""
    timings = []
    for _ in range(repeat):
        output = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True,
                                check=True).stdout
        timings.append(float(output.strip()))
    # the target is absolute: 15 ms, expressed as a ratio against 15 ms
    return Result("import pytest_envguard.plugin", min(timings), 0.015, "15 ms budget", 1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = [bench_collection(args.tests, args.repeat), bench_import(max(5, args.repeat))]
    for result in results:
        print(f"{result.name}: {result.measured * 1000:.1f} ms vs {result.reference_name} "
              f"{result.reference * 1000:.1f} ms = {result.ratio:.3f} (target <= {result.target})"
              f" {'ok' if result.ok else 'OVER'}")
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
