"""What the plugin costs the run developers make dozens of times an hour: pytest on a
one-test suite, with a contract of cheap keys and with none, against ``-p no:envguard``.

    python benchmarks/bench_startup.py [--pairs 21] [--python PATH]

Runs in a clean virtual environment (pytest-envguard and its dependencies only, so no
other plugin's start-up hides ours); see ``_paired.py`` for the method. Targets (issue
"start-up cost"): <= 1.10 with the cheap contract, <= 1.02 with no contract.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _paired import Paired, bytecode_env, clean_venv, paired, timed

CHEAP_CONTRACT = ("python >=3.10", "cpus >=1", "memory >=1GiB", "glibc >=2.28")


def write_suite(folder: Path, contract: tuple[str, ...]) -> None:
    (folder / "test_one.py").write_text("def test_one():\n    assert True\n", encoding="utf-8")
    lines = "".join(f"    {line}\n" for line in contract)
    (folder / "pytest.ini").write_text("[pytest]\n" + (f"envguard =\n{lines}" if lines else ""),
                                       encoding="utf-8")


def measure(python: Path, pairs: int) -> list[Paired]:
    env = bytecode_env()
    results = []
    for name, contract, target in (("one test, cheap contract", CHEAP_CONTRACT, 1.10),
                                   ("one test, no contract", (), 1.02)):
        with tempfile.TemporaryDirectory(prefix="envguard-startup-") as scratch:
            folder = Path(scratch)
            write_suite(folder, contract)
            base = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]

            bare = [*base, "-p", "no:envguard", "-W", "ignore::pytest.PytestConfigWarning"]

            def ok(result: object) -> bool:
                return getattr(result, "returncode", 1) == 0

            def ours(command: list[str] = base, folder: Path = folder) -> float:
                return timed(command, cwd=folder, env=env, check=ok)

            def reference(command: list[str] = bare, folder: Path = folder) -> float:
                return timed(command, cwd=folder, env=env, check=ok)

            results.append(paired(name, ours, reference, reference_name="-p no:envguard",
                                  pairs=pairs, target=target))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=21)
    parser.add_argument("--python", type=Path, help="an interpreter with pytest-envguard installed")
    args = parser.parse_args()
    python = args.python or clean_venv()
    results = measure(python, args.pairs)
    for result in results:
        print(result.line())
    return 1 if any(result.verdict == "OVER" for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
