"""Shared test set-up: caches cleared between tests, area fixtures as plugins."""

from __future__ import annotations

import sys

import pytest

from pytest_envguard import grammar

if sys.version_info < (3, 12):
    # CPython 3.10/3.11's _zoneinfo drops three references to None each time a
    # re-imported copy of it is freed (module_free() decrefs the static NO_TTINFO,
    # which the next import's exec does not incref again). pytester's inline runs
    # unload the modules they imported, and hypothesis's plugin imports zoneinfo in
    # each inner run's terminal summary: some 80 runs in one process and the
    # interpreter aborts at exit ("none_dealloc: deallocating None"). Imported here,
    # before any pytester snapshot, it is never unloaded, so never re-imported.
    import zoneinfo  # noqa: F401

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
