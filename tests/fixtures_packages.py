"""Fixtures for the packages tests."""

from __future__ import annotations
