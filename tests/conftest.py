"""Shared test set-up: caches cleared between tests, area fixtures as plugins."""

from __future__ import annotations

import pytest

from pytest_envguard import grammar

# Fixtures of each area live in their own module (ELF builders, the fake NVML
# library, virtual environments), loaded here so every test module sees them.
# A project of its own, which tests/test_real_suite.py copies and runs.
collect_ignore = ["real_suite"]

pytest_plugins = [
    "tests.fixtures_native",
    "tests.fixtures_nvml",
    "tests.fixtures_packages",
    "tests.fixtures_conda",
    "tests.fixtures_reliability",
]


@pytest.fixture(autouse=True)
def _clear_caches() -> None:
    grammar._parse_cached.cache_clear()
