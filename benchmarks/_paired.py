"""Paired timing, shared by the benchmark scripts.

Two commands are timed in alternation (A B, B A, A B, …) so that drift in the
machine's load hits both alike; each pair gives one ratio A/B. The result is
the median of those ratios with its interquartile range (how much one run
wanders) and the 95% confidence interval of the median (how well the pairs pin
the median down: distribution-free, two order statistics of the ratios), and a
verdict against a target only when that interval allows one: ``ok`` when the
whole interval is within the target, ``OVER`` when the whole of it exceeds it,
else ``unclear`` (run more pairs, or on a quieter machine). The targets are on
the median; a rule on the quartiles could never say ``ok`` for a target closer
to 1 than a single run wanders (2% where runs wander by 3%), however many pairs.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Paired:
    name: str
    ours: list[float]  # seconds, one per pair
    reference: list[float]
    reference_name: str
    target: float | None  # the ratio not to exceed; None: no target, a figure only

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.ours, self.reference, strict=True)]

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def quartiles(self) -> tuple[float, float]:
        if len(self.ratios) < 4:
            return min(self.ratios), max(self.ratios)
        q1, _, q3 = statistics.quantiles(self.ratios, n=4)
        return q1, q3

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% confidence interval of the median ratio."""
        return median_interval(self.ratios)

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        low, high = self.interval
        if high <= self.target:
            return "ok"
        if low > self.target:
            return "OVER"
        return "unclear"

    def line(self) -> str:
        low, high = self.quartiles
        below, above = self.interval
        ours, reference = statistics.median(self.ours), statistics.median(self.reference)
        target = f" (target <= {self.target})" if self.target is not None else ""
        return (f"{self.name}: {ours * 1000:.1f} ms vs {self.reference_name} {reference * 1000:.1f} ms;"
                f" ratio median {self.median:.3f} [95% CI {below:.3f}-{above:.3f}; IQR {low:.3f}-"
                f"{high:.3f}; {len(self.ratios)} pairs]{target} {self.verdict}").rstrip()


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The distribution-free confidence interval of the median of ``values``: the k-th
    smallest and the k-th largest, for the largest k at which the median lies outside
    them with a probability of at most ``1 - confidence`` (each value falls on either
    side of the median with probability 1/2: a binomial tail on each side). With too
    few values for any such k, the smallest and the largest."""
    ordered = sorted(values)
    count = len(ordered)
    tail, k = 0.0, 0
    while k < count // 2:
        below = tail + math.comb(count, k) / 2 ** count
        if 2 * below > 1 - confidence:
            break
        tail, k = below, k + 1
    if k == 0:
        return ordered[0], ordered[-1]
    return ordered[k - 1], ordered[count - k]


def timed(command: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
          check: Callable[[subprocess.CompletedProcess[str]], bool] | None = None) -> float:
    started = time.perf_counter()
    result = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True,
                            check=False)
    elapsed = time.perf_counter() - started
    if check is not None and not check(result):
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n"
                 f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return elapsed


def paired(name: str, ours: Callable[[], float], reference: Callable[[], float], *,
           reference_name: str, pairs: int, target: float | None) -> Paired:
    ours(), reference()  # warm the file system cache and the bytecode
    mine: list[float] = []
    theirs: list[float] = []
    for index in range(pairs):
        if index % 2:
            theirs.append(reference())
            mine.append(ours())
        else:
            mine.append(ours())
            theirs.append(reference())
    return Paired(name, mine, theirs, reference_name, target)


def clean_venv(directory: Path | None = None) -> Path:
    """A virtual environment holding only pytest-envguard (this checkout) and what it
    depends on, so no other pytest plugin loads; its python. Made with pip from the
    package index once, then reused (``$ENVGUARD_BENCH_VENV`` names where)."""
    where = directory or Path(os.environ.get("ENVGUARD_BENCH_VENV")
                              or Path(tempfile.gettempdir()) / "envguard-bench-venv")
    python = where / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    # The checkout as it is now (not editable: no finder on sys.path to slow imports).
    with tempfile.TemporaryDirectory(prefix="envguard-source-") as scratch:
        source = working_tree(Path(scratch))
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--force-reinstall",
                        "--no-deps", str(source)], check=True,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})
        subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)], check=True)
    return python


def working_tree(directory: Path) -> Path:
    """A copy of the checkout's files as they are now, tracked and new ones, without what
    git ignores: a ``build/`` folder left by an earlier in-tree build would otherwise be
    installed in place of the sources when it is the newer (a copied checkout), and a
    module since deleted would linger in it. Outside a git checkout: the checkout itself."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=False)
    if listed.returncode != 0:
        return ROOT
    for name in filter(None, listed.stdout.split(b"\0")):
        origin = ROOT / os.fsdecode(name)
        if origin.is_file():  # a tracked file deleted in the working tree is left out
            target = directory / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    return directory


def bytecode_env() -> dict[str, str]:
    """The environment for timed runs: bytecode caches allowed (a real machine has them)."""
    return {key: value for key, value in os.environ.items()
            if key not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
