"""Installed distributions: versions, locations, installers."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_envguard.probes import Facts, describe_error


@dataclass(frozen=True)
class DistributionFacts(Facts):
    name: str  # as asked
    version: str | None  # None: not installed
    location: str | None = None
    reason: str | None = None


def probe_distribution(name: str) -> DistributionFacts:
    from importlib import metadata

    try:
        distribution = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return DistributionFacts(name, None, reason="not installed")
    except (OSError, ValueError) as error:
        return DistributionFacts(name, None, reason=describe_error(error))
    version = distribution.version
    location = str(distribution.locate_file(""))
    if not version:
        return DistributionFacts(name, None, location, "its metadata has no Version")
    return DistributionFacts(name, version, location)
