"""`consistent` against `pip check`: time both on one environment and diff their verdicts.

    python benchmarks/bench_consistent.py [--repeat N] [--python PATH | --distributions N]

Without ``--python`` the environment is the one running this script; with it,
the script re-runs itself under that interpreter (which must be able to import
pytest_envguard and packaging); ``--distributions N`` first builds a fresh venv of
N generated distributions (requirement chains, extras, markers, two broken ones:
built and installed offline with pip) and measures that. ``pip check`` runs as a
subprocess of the same interpreter (``python -m pip check``, or, when the target
has no pip, the pip of the interpreter that started the script, through ``pip
--python``). Timings are medians of N:

* ``probe``: what the plugin pays, in process: scan sys.path and judge;
* ``python -m pytest_envguard consistent``: a whole new interpreter, imports
  included, timed in alternation with ``pip check``;
* the floor: a new interpreter that only imports ``argparse`` and ``dataclasses``
  (what any command line built on DESIGN.md's frozen dataclasses starts with),
  timed in the same alternation.

Exit status 1 when the verdicts differ (the problems ``pip check`` reports
compared with those ``consistent`` reports that ``pip check`` would too).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Problems = set[tuple[str, str, str]]


def median_of(repeat: int, function: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def generated_venv(directory: Path, count: int) -> Path:
    """A venv of ``count`` small distributions: chains of requirements with specifiers,
    markers and extras, all met but two (one missing, one conflicting)."""
    import base64
    import hashlib
    import zipfile

    wheels = directory / "wheels"
    wheels.mkdir(parents=True)
    for index in range(count):
        name = f"bench-dist-{index:03}"
        requires = []
        if index + 1 < count:
            requires.append(f"bench-dist-{index + 1:03}>=1.0")
        if index % 7 == 0 and index + 2 < count:
            requires.append(f'bench-dist-{index + 2:03}[fast] ; python_version >= "3"')
        if index % 11 == 0:
            requires.append('bench-never ; sys_platform == "nonexistent"')
        if index == count - 1:
            requires += ["bench-absent>=1", "bench-dist-000<1.0"]  # the two problems
        module = name.replace("-", "_")
        info = f"{module}-1.0.dist-info"
        metadata = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
                            "Provides-Extra: fast\n",
                            *(f"Requires-Dist: {line}\n" for line in requires), "\n"])
        files = {f"{module}.py": b"", f"{info}/METADATA": metadata.encode(),
                 f"{info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
        def digest(data: bytes) -> str:
            return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

        record = [f"{path},sha256={digest(data)},{len(data)}" for path, data in files.items()]
        record.append(f"{info}/RECORD,,")
        files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
        with zipfile.ZipFile(wheels / f"{module}-1.0-py3-none-any.whl", "w") as archive:
            for path, data in files.items():
                archive.writestr(path, data)
    venv = directory / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    *map(str, sorted(wheels.glob("*.whl")))], check=True)
    # pytest_envguard and packaging for the CLI: a .pth file naming a folder of links to
    # them alone (no distribution added, nothing else of this environment exposed).
    import packaging

    shim = directory / "shim"
    shim.mkdir()
    (shim / "pytest_envguard").symlink_to(Path(__file__).resolve().parents[1] / "pytest_envguard")
    (shim / "packaging").symlink_to(Path(packaging.__file__).parent)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "envguard-bench.pth").write_text(f"{shim}\n", encoding="utf-8")
    return python


def pip_command(python: str, pip_from: str | None) -> list[str]:
    if importlib.util.find_spec("pip") is not None:
        return [python, "-m", "pip", "--disable-pip-version-check", "check"]
    if pip_from is None:
        sys.exit("this interpreter has no pip: run with --python from one that has")
    return [pip_from, "-m", "pip", "--python", python, "--disable-pip-version-check", "check"]


def canonical(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pip_check(output: str) -> Problems:
    problems: Problems = set()
    for line in output.splitlines():
        words = line.split()
        if " which is not installed" in line:
            problems.add(("missing", canonical(words[0]), canonical(words[3].rstrip(","))))
        elif " has requirement " in line:
            problems.add(("conflict", canonical(words[0]), canonical(words[-2])))
        elif line.endswith(" is not supported on this platform"):  # pip >= 24.1
            problems.add(("unsupported", canonical(words[0]), ""))
    return problems


def find_problems() -> tuple[Any, ...]:
    """The ``consistent`` problems of this interpreter, probed afresh: the sys.path
    scan, the supported wheel tags, the judgement (what ``consistent`` costs a session)."""
    from pytest_envguard.checks.hygiene import find_problems as judge
    from pytest_envguard.environment import Environment

    env = Environment()
    return judge(env.installed, env.markers, env.supported_tags.tags)


def envguard_problems() -> tuple[Problems, list[str]]:
    found = find_problems()
    same = {(p.kind, p.distribution.split()[0], p.dependency or "") for p in found if p.pip_check}
    beyond = [p.describe() for p in found if not p.pip_check]
    return same, beyond


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--python", help="benchmark another interpreter's environment")
    parser.add_argument("--distributions", type=int, metavar="N",
                        help="build a venv of N generated distributions and benchmark that")
    parser.add_argument("--pip-from", help=argparse.SUPPRESS)  # whose pip to use with --python
    args = parser.parse_args()
    if args.distributions:
        with tempfile.TemporaryDirectory(prefix="envguard-bench-") as scratch:
            python = generated_venv(Path(scratch), args.distributions)
            command = [str(python), os.path.abspath(__file__), "--repeat", str(args.repeat),
                       "--pip-from", sys.executable]
            return subprocess.run(command, check=False).returncode
    if args.python:  # the child runs without --python: no loop
        command = [args.python, os.path.abspath(__file__), "--repeat", str(args.repeat),
                   "--pip-from", sys.executable]
        return subprocess.run(command, check=False).returncode

    from pytest_envguard.probes.distributions import probe_installed

    def probe() -> None:
        find_problems()

    probe()  # imports packaging once, as a pytest session has already done
    pip = pip_command(sys.executable, args.pip_from)
    ours_cli = [sys.executable, "-m", "pytest_envguard", "-q", "consistent"]

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, check=False)

    # The floor of any CLI built as DESIGN.md says (frozen dataclasses, argparse): a new
    # interpreter that imports those two modules and does nothing else.
    floor_cli = [sys.executable, "-c", "import argparse, dataclasses"]

    t_probe = median_of(args.repeat, probe)
    clis, pips, floors = [], [], []
    for _ in range(args.repeat):  # in alternation: drift hits all alike
        clis.append(median_of(1, lambda: run(ours_cli)))
        pips.append(median_of(1, lambda: run(pip)))
        floors.append(median_of(1, lambda: run(floor_cli)))
    t_cli, t_pip = statistics.median(clis), statistics.median(pips)
    t_floor = statistics.median(floors)

    pip_result = run(pip)
    pip_problems = parse_pip_check(pip_result.stdout)
    ours, beyond = envguard_problems()
    distributions = len(probe_installed().active())

    print(f"environment: {sys.prefix} ({distributions} distributions)")
    print(f"pip check:                            {t_pip * 1000:8.1f} ms  ({' '.join(pip[1:])})")
    print(f"python -m pytest_envguard consistent: {t_cli * 1000:8.1f} ms  "
          f"({t_pip / t_cli:5.1f}x faster)")
    print(f"probe in process (what pytest pays):  {t_probe * 1000:8.1f} ms  "
          f"({t_pip / t_probe:5.1f}x faster)")
    print(f"floor: python -c 'import argparse, dataclasses': {t_floor * 1000:5.1f} ms  "
          f"({t_pip / t_floor:5.1f}x faster; no CLI that imports them can be faster)")
    print(f"pip check exit {pip_result.returncode}, {len(pip_problems)} problems; "
          f"consistent: {len(ours)} of the same kind, {len(beyond)} beyond pip check")
    for line in beyond:
        print(f"  beyond pip check: {line}")
    if ours != pip_problems:
        for problem in sorted(pip_problems - ours):
            print(f"  only pip check: {problem}")
        for problem in sorted(ours - pip_problems):
            print(f"  only consistent: {problem}")
        print("verdicts DIFFER")
        return 1
    print("verdicts agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
