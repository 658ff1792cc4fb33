"""The plugin's cost counted in instructions, which do not vary from run to run as times do:
the suites of ``bench_startup.py`` and ``bench_overhead.py`` under valgrind's callgrind,
with the plugin and with ``-p no:envguard``.

    python benchmarks/bench_instructions.py [--tests 5000] [--python PATH] [--no-pyc-cache]

Needs ``valgrind`` (not in CI); each run takes some 50 times as long as without it.
The hash seed is fixed (``PYTHONHASHSEED=0``), so a rerun gives the same counts to a few
instructions in a million: the figure to compare two versions of the plugin by, where
times on a shared machine wander by more than the difference. The targets are on time,
judged by the other scripts; instructions are a proxy, and an upper one: the plugin's
work is mostly imports, which run at fewer instructions per cycle than pytest's own
loops, so the time ratios come out lower than these.

``--no-pyc-cache`` runs both sides with ``PYTHONDONTWRITEBYTECODE=1`` and without the
bytecode pytest's assertion rewriter cached for the plugin's modules: a container whose
Dockerfile sets the variable (many do), where pytest can never cache what it rewrites.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import bench_overhead
import bench_startup
from _paired import bytecode_env, clean_venv


def instructions(command: list[str], cwd: Path, env: dict[str, str]) -> int:
    result = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                             *command], cwd=cwd, env=env, capture_output=True, text=True,
                            check=False)
    found = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if result.returncode != 0 or found is None:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def forget_rewritten(python: Path) -> None:
    """Delete the bytecode pytest's assertion rewriter cached for the plugin's modules
    (``__pycache__/*-pytest-*.pyc``, beside Python's own, which stay)."""
    package = subprocess.run(
        [str(python), "-I", "-c",
         "import pytest_envguard, os; print(os.path.dirname(pytest_envguard.__file__))"],
        capture_output=True, text=True, check=True).stdout.strip()
    for cached in Path(package).rglob("__pycache__/*-pytest-*.pyc"):
        cached.unlink()


def measure(python: Path, tests: int, env: dict[str, str]) -> list[str]:
    base = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    bare = [*base, "-p", "no:envguard", "-W", "ignore::pytest.PytestConfigWarning"]
    suites = [("one test, cheap contract",
               lambda folder: bench_startup.write_suite(folder, bench_startup.CHEAP_CONTRACT)),
              ("one test, no contract", lambda folder: bench_startup.write_suite(folder, ())),
              (f"{tests} tests, a third marked",
               lambda folder: bench_overhead.write_suite(folder, tests))]
    lines = []
    for name, write in suites:
        with tempfile.TemporaryDirectory(prefix="envguard-instructions-") as scratch:
            folder = Path(scratch)
            write(folder)
            for command in (base, bare):  # bytecode caches (pytest's rewritten ones too)
                subprocess.run(command, cwd=folder, env=env, capture_output=True, check=False)
            ours, reference = instructions(base, folder, env), instructions(bare, folder, env)
        ratio = ours / reference
        lines.append(f"{name}: {ours / 1e6:.1f} M instructions vs -p no:envguard "
                     f"{reference / 1e6:.1f} M; ratio {ratio:.4f} (+{(ours - reference) / 1e6:.1f} M)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=5000)
    parser.add_argument("--python", type=Path, help="an interpreter with pytest-envguard installed")
    parser.add_argument("--no-pyc-cache", action="store_true",
                        help="PYTHONDONTWRITEBYTECODE=1, no pytest bytecode cache of the plugin")
    args = parser.parse_args()
    if subprocess.run(["valgrind", "--version"], capture_output=True, check=False).returncode:
        sys.exit("valgrind is needed (apt install valgrind)")
    python = args.python or clean_venv()
    env = {**bytecode_env(), "PYTHONHASHSEED": "0"}
    if args.no_pyc_cache:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        forget_rewritten(python)
    lines = measure(python, args.tests, env)
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
