"""Knowledge kept as data: what usually fixes an unmet requirement.

Each table names its source, so an entry can be checked and kept current.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_envguard.grammar import Requirement

# -- glibc → manylinux ---------------------------------------------------------------
# Source: PEP 600 (manylinux_x_y is glibc x.y) and PEP 599 / PEP 571 / PEP 513 for the
# legacy aliases (manylinux2014 = glibc 2.17, manylinux2010 = 2.12, manylinux1 = 2.5).
MANYLINUX_ALIASES: dict[tuple[int, int], str] = {
    (2, 5): "manylinux1",
    (2, 12): "manylinux2010",
    (2, 17): "manylinux2014",
}


def manylinux_tag(major: int, minor: int, machine: str = "x86_64") -> str:
    """The wheel platform tag of a glibc version: (2, 28) → ``manylinux_2_28_x86_64``."""
    tag = f"manylinux_{major}_{minor}_{machine}"
    alias = MANYLINUX_ALIASES.get((major, minor))
    return f"{tag} (alias {alias}_{machine})" if alias else tag


def libc_hint(requirement: Requirement) -> str:
    if requirement.key == "musl":
        return "run on a musl-based image (Alpine) with a new enough musl"
    return (
        "run on a newer OS image (glibc is part of the OS), "
        "or install wheels built for an older manylinux tag"
    )
