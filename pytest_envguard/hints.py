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


# -- environment hygiene: consistent, wheels, lock, isolated -------------------------------
# Source: pip's user guide ("pip check", "Requirements File Format"), uv's docs
# ("uv sync", "uv pip sync"), Poetry's CLI docs ("poetry sync", Poetry 2; "poetry install
# --sync" before it), pip-tools' README (pip-sync), PEP 751 (pylock.toml).

#: How to make an environment equal each lock format again.
LOCK_SYNC: dict[str, str] = {
    "requirements": "pip-sync {path} (pip-tools), or pip install --no-deps -r {path}",
    "pylock": "uv pip sync {path}, or pip install -r {path} with a pip that reads PEP 751 locks",
    "uv": "uv sync --locked",
    "poetry": "poetry sync (Poetry 2; poetry install --sync before it)",
}

#: Distributions lock tools leave out by default, so never "extra" when installed.
#: Source: pip-tools' UNSAFE_PACKAGES (setuptools, distribute, pip); uv's and
#: pip's own installers seed pip and, on older Pythons, setuptools and wheel.
LOCK_EXEMPT: frozenset[str] = frozenset({"pip", "setuptools", "distribute", "wheel"})

#: How to remove one copy of a duplicate, by the installer that put it there.
UNINSTALL: dict[str, str] = {
    "pip": "pip uninstall {name}",
    "uv": "uv pip uninstall {name}",
    "conda": "conda remove --force {name}",
    "poetry": "poetry remove {name}",
}


def lock_hint(kind: str, path: str) -> str:
    return "sync the environment with the lock: " + LOCK_SYNC.get(
        kind, "reinstall from the lock").format(path=path)


def uninstall_hint(name: str, installer: str | None) -> str:
    return UNINSTALL.get(installer or "", "remove {name}'s metadata directory by hand").format(
        name=name)
