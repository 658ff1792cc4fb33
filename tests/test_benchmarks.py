"""The benchmark scripts' statistics (``benchmarks/_paired.py``): its verdicts are what the
README's table claims."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def paired() -> Iterator[ModuleType]:
    """``benchmarks/_paired.py`` (``benchmarks/`` is no package), registered while the
    tests run (its dataclass looks its module up)."""
    path = Path(__file__).parent.parent / "benchmarks" / "_paired.py"
    spec = importlib.util.spec_from_file_location("envguard_bench_paired", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def coverage(count: int, k: int) -> float:
    """How often the k-th smallest and k-th largest of ``count`` values hold the median
    between them: 1 minus the chance that k or fewer values fall on one side."""
    one_side = sum(math.comb(count, i) for i in range(k)) / 2 ** count
    return 1 - 2 * one_side


def test_the_interval_of_the_median_is_the_textbook_one(paired: ModuleType) -> None:
    # The sign-test intervals of the tables: 10 values -> 2nd to 9th, 20 -> 6th to 15th.
    assert paired.median_interval(range(1, 11)) == (2, 9)
    assert paired.median_interval(range(20, 0, -1)) == (6, 15)
    for count in range(1, 120):
        low, high = paired.median_interval(range(1, count + 1))
        assert high == count + 1 - low
        if coverage(count, 1) < 0.95:  # too few values for any interval: all of them
            assert (low, high) == (1, count)
            continue
        assert coverage(count, low) >= 0.95 > coverage(count, low + 1), count


def result(paired: ModuleType, ratios: list[float], target: float) -> object:
    return paired.Paired("x", ratios, [1.0] * len(ratios), "bare", target)


def test_the_verdict_is_on_the_median_not_on_a_single_run(paired: ModuleType) -> None:
    # Runs that wander by 3% either way (spread evenly): around 1.01 the median meets
    # 1.02 and a quarter of the runs do not; around 1.03 the median does not.
    noise = [(index * 37 % 61) / 1000 - 0.03 for index in range(201)]
    meets = [1.01 + wander for wander in noise]
    checked = result(paired, meets, 1.02)
    assert checked.quartiles[1] > 1.02 and checked.verdict == "ok"
    over = [1.03 + wander for wander in noise]
    assert result(paired, over, 1.02).verdict == "OVER"
    assert result(paired, meets[:9], 1.02).verdict == "unclear"  # too few pairs to tell
    assert "95% CI" in result(paired, meets, 1.02).line()
