"""Executables on ``PATH`` (the ``command`` key)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pytest_envguard.probes import Facts


@dataclass(frozen=True)
class CommandFacts(Facts):
    """Where an executable is found on ``PATH`` (``path`` None: nowhere)."""

    name: str
    path: str | None


def probe_command(name: str, environ: Mapping[str, str]) -> CommandFacts:
    import shutil

    return CommandFacts(name, shutil.which(name, path=environ.get("PATH", os.defpath)))
