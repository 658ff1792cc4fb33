"""`consistent` in a large conda prefix: what conda's side costs.

    python benchmarks/bench_conda.py [--packages N] [--files N] [--repeat N]

Builds a conda prefix the way the tests do (``tests/fixtures_conda.py``: packages
written at test time, indexed and installed by py-rattler, offline) with N packages
of F files each, a chain of ``depends`` through all of them, then times ``consistent``
judged in process for that prefix (its records read, conda's graph judged by
py-rattler, every file checked by size and mtime) and again hashing every file
(``Settings(conda_hashes=True)``), next to py-rattler's own
``PackageRecord.validate`` on the same records. Medians of N runs. Needs the
``test`` extra (py-rattler).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=200)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import rattler

    from pytest_envguard.checks import evaluate
    from pytest_envguard.grammar import parse_lines
    from tests.fixtures_conda import (
        ABI_SPEC,
        PY,
        PY_NODOT,
        CondaChannel,
        CondaPackage,
        CondaPrefix,
        build_conda_package,
        index_channel,
        prefix_environment,
        python_package,
    )

    with tempfile.TemporaryDirectory(prefix="envguard-bench-conda-") as work:
        base = Path(work)
        channel = CondaChannel(base / "channel", base / "cache")
        packages = [python_package(), CondaPackage("python_abi", PY, f"4_cp{PY_NODOT}")]
        for index in range(args.packages):
            files = {f"lib/pkg{index}/f{number}.txt": f"{index}-{number}\n".encode() * 20
                     for number in range(args.files)}
            depends = (ABI_SPEC, *((f"pkg{index - 1} >=1.0",) if index else ()))
            packages.append(CondaPackage(f"pkg{index}", "1.0", "0", depends=depends, files=files))
        for package in packages:
            build_conda_package(channel.root, package)
        index_channel(channel.root)
        prefix = CondaPrefix(base / "prefix", channel, base / "pkgs")
        prefix.install(channel.solve("python", f"pkg{args.packages - 1}"))

        def judge(hashes: bool) -> float:
            start = time.perf_counter()
            env = prefix_environment(prefix, conda_hashes=hashes)
            (verdict,) = evaluate(parse_lines(["consistent"]), env)
            elapsed = time.perf_counter() - start
            assert verdict.status.value == "met", verdict.reason
            return elapsed

        def validate() -> float:
            start = time.perf_counter()
            rattler.PackageRecord.validate(prefix.prefix_records())
            return time.perf_counter() - start

        files = sum(len(package.files) + len(package.links) for package in packages)
        print(f"prefix: {len(packages)} conda packages, {files} files ({prefix.root})")
        for label, run in (("consistent (sizes, mtimes)", lambda: judge(False)),
                           ("consistent (every file hashed)", lambda: judge(True)),
                           ("py-rattler PackageRecord.validate", validate)):
            timings = [run() for _ in range(args.repeat)]
            print(f"{label:36} {statistics.median(timings) * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
