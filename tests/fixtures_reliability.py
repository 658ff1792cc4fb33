"""Fixtures for the reliability tests: the bad-input counter, its summary line,
and running a probe with the OS refusing access.

Every test of the bad-input corpus counts the inputs it tried through the
``bad_inputs`` fixture; the count travels in the test report's
``user_properties`` (so it survives pytest-xdist) and the terminal summary
prints the total::

    ---------------- envguard reliability ----------------
    bad-input corpus: 412 bad inputs tried in 57 tests, 0 failed
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

COUNT_PROPERTY = "envguard_bad_inputs"


class CorpusTally:
    """Sums the counts of the corpus tests' reports (workers' reports included)."""

    def __init__(self) -> None:
        self.inputs = self.tests = self.failed = 0
        self._failing: set[str] = set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self._failing.add(report.nodeid)
        counts = [value for name, value in report.user_properties if name == COUNT_PROPERTY]
        if not counts or report.when != "teardown":
            return
        # The teardown report comes last and carries every property of the test.
        self.inputs += sum(int(str(value)) for value in counts)
        self.tests += 1
        self.failed += report.nodeid in self._failing

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.tests:
            return
        terminalreporter.write_sep("-", "envguard reliability")
        terminalreporter.write_line(
            f"bad-input corpus: {self.inputs} bad inputs tried in {self.tests} tests, "
            f"{self.failed} failed"
        )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(CorpusTally(), "envguard-bad-input-tally")


@pytest.fixture
def bad_inputs(record_property: Callable[[str, object], None]) -> Iterator[Callable[[int], None]]:
    """``bad_inputs(n)``: count ``n`` more bad inputs tried by this test."""
    counter = [0]

    def tried(count: int = 1) -> None:
        counter[0] += count

    yield tried
    record_property(COUNT_PROPERTY, counter[0])


# -- the OS refusing access ------------------------------------------------------------------

# capset(2) numbers; root ignores file modes through CAP_DAC_OVERRIDE and
# CAP_DAC_READ_SEARCH, so a child running as root drops every capability to
# see "Permission denied" like any user would.
_CAPSET = {"x86_64": 126, "aarch64": 91, "ppc64le": 184, "s390x": 185, "riscv64": 91}

_DROP_PRIVILEGES = textwrap.dedent(f"""
    import ctypes, os, struct
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        header = ctypes.create_string_buffer(struct.pack("II", 0x20080522, 0), 8)
        data = ctypes.create_string_buffer(bytes(24), 24)
        if libc.syscall({_CAPSET.get(platform.machine(), -1)}, header, data) != 0:
            raise SystemExit("could not drop capabilities: errno %d" % ctypes.get_errno())
""")


def run_unprivileged(code: str, *, timeout: float = 60,
                     env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child interpreter for which file modes hold (root drops its
    capabilities first); the child prints its findings on stdout."""
    return subprocess.run(
        [sys.executable, "-c", _DROP_PRIVILEGES + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, check=False,
        env=env if env is not None else dict(os.environ),
    )


def make_unreadable(path: Path) -> None:
    """chmod 000, undone by :func:`restore` so that tmp_path can be cleaned up."""
    path.chmod(0)


def restore(*paths: Path) -> None:
    for path in paths:
        if path.exists() or path.is_symlink():
            path.chmod(0o700 if path.is_dir() else 0o600)
