"""Fixtures for the native tests."""

from __future__ import annotations
