"""pytest-envguard: declare the environment a test suite expects, check it before any test runs."""

from __future__ import annotations

__version__ = "0.1.0"
