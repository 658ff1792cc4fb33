"""Every benchmark in one run.

    python benchmarks/run_all.py [--quick]

Runs, in a clean virtual environment (pytest-envguard and its dependencies only; see
``_paired.py``):

* ``bench_startup.py`` — a one-test suite with a cheap contract and with none, against
  ``-p no:envguard`` (targets 1.10 and 1.02);
* ``bench_overhead.py`` — a generated 5,000-test suite, a third marked (target 1.02), and
  the import of the plugin with no contract (target 10 ms);
* ``bench_consistent.py --distributions 100`` — ``consistent`` in process and through
  ``python -m pytest_envguard`` against ``pip check``, verdicts diffed;
* ``bench_extensions.py`` — ``extensions`` over numpy and scipy against ``ldd``, when pip
  can install them;
* ``python -m pytest_envguard`` against ``python -m torch.utils.collect_env``, when torch
  is installed here.

Every figure is a median of paired runs with its spread; a verdict is printed only when
the spread allows one. Exit status 1 when a script reports OVER or differing verdicts.

Not run from here: ``bench_instructions.py`` counts the start-up and per-test suites in
instructions under valgrind (the same count on every run: the figure to compare two
versions by), and the agreement runs ``agreement_native.py`` and ``agreement_hygiene.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _paired import bytecode_env, clean_venv, paired, timed  # noqa: E402  (a sibling module)


def run_script(name: str, *args: str) -> tuple[int, list[str]]:
    process = subprocess.run([sys.executable, str(HERE / name), *args], capture_output=True,
                             text=True, check=False, env=bytecode_env())
    lines = [line for line in process.stdout.splitlines() if line.strip()]
    if process.returncode not in (0, 1) or not lines:
        lines.append(f"{name} exited {process.returncode}: "
                     f"{(process.stderr.strip().splitlines() or ['no output'])[-1]}")
    return process.returncode, lines


def torch_line(pairs: int) -> str:
    if importlib.util.find_spec("torch") is None:
        return "python -m pytest_envguard vs torch collect_env: not run (torch is not installed)"
    env = bytecode_env()
    result = paired("python -m pytest_envguard vs torch.utils.collect_env",
                    lambda: timed([sys.executable, "-m", "pytest_envguard"], env=env),
                    lambda: timed([sys.executable, "-m", "torch.utils.collect_env"], env=env),
                    reference_name="collect_env", pairs=pairs, target=1.0)
    return result.line()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pairs, 500 tests instead of 5,000")
    args = parser.parse_args()
    python = clean_venv()
    pairs = "5" if args.quick else "21"
    runs = [
        run_script("bench_startup.py", "--pairs", pairs, "--python", str(python)),
        run_script("bench_overhead.py", "--pairs", "3" if args.quick else "7",
                   "--tests", "500" if args.quick else "5000", "--python", str(python)),
        run_script("bench_consistent.py", "--distributions", "100", "--repeat",
                   "3" if args.quick else "9"),
        run_script("bench_extensions.py", "--repeat", "3" if args.quick else "5"),
    ]
    print(f"python {sys.version.split()[0]} · clean venv {python}")
    failed = False
    for code, lines in runs:
        failed |= code != 0
        print("\n".join(lines))
    print(torch_line(3 if args.quick else 7))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
