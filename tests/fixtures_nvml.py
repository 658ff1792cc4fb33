"""Fixtures for the nvml tests."""

from __future__ import annotations
