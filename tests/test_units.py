"""Sizes, counts and CUDA versions."""

from __future__ import annotations

import pytest

from pytest_envguard import units


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0), ("512", 512), ("1KB", 1000), ("1kB", 1000), ("1KiB", 1024), ("16GiB", 16 * 1024**3),
        ("16GB", 16 * 10**9), ("16 GiB", 16 * 1024**3), ("1.5GiB", 3 * 1024**3 // 2), ("2TiB", 2 * 1024**4),
        ("3M", 3 * 10**6), ("7B", 7),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert units.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GiB", "16XB", "-1GiB", "1e9", "16 Gi B", "nan"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(units.UnitError):
        units.parse_size(text)


@pytest.mark.parametrize(("size", "shown"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                             (16 * 1024**3, "16.0 GiB"), (5 * 1024**5, "5120.0 TiB")])
def test_format_size(size: int, shown: str) -> None:
    assert units.format_size(size) == shown


@pytest.mark.parametrize(("value", "version"), [(12020, "12.2"), (11080, "11.8"), (13000, "13.0"), (12090, "12.9")])
def test_cuda_version(value: int, version: str) -> None:
    assert units.cuda_version(value) == version


@pytest.mark.parametrize("text", ["-1", "x", "1.5", ""])
def test_bad_counts(text: str) -> None:
    with pytest.raises(units.UnitError):
        units.parse_count(text)
