"""The wheel tags of a rehearsed C library (``probes/wheel_tags.py``), held against
packaging's own: for the real glibc, ``packaging.tags.sys_tags()`` as it is; for any
other glibc or musl, ``sys_tags()`` in a child interpreter whose packaging is told
that version (its own glibc and musl detection replaced, nothing else)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from packaging import tags

from pytest_envguard.probes.wheel_tags import (
    manylinux_platforms,
    probe_supported_tags_for,
    rehearsed_platforms,
)

#: Runs in a child: packaging's sys_tags() with its glibc and musl detection answering
#: what the test asks (None: no such library), printed as JSON.
PACKAGING_TOLD = """
import json, sys
from packaging import _manylinux, _musllinux, tags
glibc, musl = json.loads(sys.argv[1])
_manylinux._get_glibc_version = lambda: _manylinux._GLibCVersion(*(glibc or (-1, -1)))
_musllinux._get_musl_version = lambda executable: _musllinux._MuslVersion(*musl) if musl else None
print(json.dumps([str(tag) for tag in tags.sys_tags()]))
"""


def packaging_told(glibc: tuple[int, int] | None, musl: tuple[int, int] | None) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PACKAGING_TOLD, json.dumps([glibc, musl])],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    told: list[str] = json.loads(result.stdout)
    return told


def test_the_real_glibc_gives_exactly_packagings_tags() -> None:
    import platform

    version = platform.libc_ver()[1]
    assert version, "these tests run on a glibc machine"
    ours = probe_supported_tags_for(version, None)
    assert ours.reason is None
    assert list(ours.tags) == [str(tag) for tag in tags.sys_tags()]


@pytest.mark.parametrize(("glibc", "musl"), [
    ((2, 17), None),  # manylinux2014
    ((2, 28), None),
    ((2, 5), None),  # manylinux1: the oldest on x86
    ((2, 4), None),  # older than any manylinux on x86: none
    ((3, 2), None),  # a glibc 3: every 2.x below it, as packaging guesses them
    (None, (1, 2)),  # musllinux_1_2, no glibc
    (None, (1, 1)),
    ((2, 31), (1, 2)),  # both (gcompat): packaging would list both
    (None, None),  # no C library at all: linux_* and the pure tags
])
def test_a_rehearsed_libc_gives_what_packaging_gives_for_it(
        glibc: tuple[int, int] | None, musl: tuple[int, int] | None) -> None:
    shown = [f"{version[0]}.{version[1]}" if version else None for version in (glibc, musl)]
    ours = probe_supported_tags_for(shown[0], shown[1])
    assert ours.reason is None
    assert list(ours.tags) == packaging_told(glibc, musl)


def test_a_version_packaging_cannot_read_is_a_reason_not_a_guess() -> None:
    for bad in ("", "two", "2", "x.17"):
        facts = probe_supported_tags_for(bad, None)
        assert facts.tags == ()
        assert facts.reason is not None and "glibc" in facts.reason
    assert probe_supported_tags_for("2.17-2014.11", None).tags  # packaging ignores the tail


def test_where_the_libc_tags_go_when_the_real_machine_has_none() -> None:
    real = ["linux_x86_64"]
    new = rehearsed_platforms(real, "2.5", None, packaging_version=(26, 4))
    old = rehearsed_platforms(real, "2.5", None, packaging_version=(25, 0))
    assert new[0] == "linux_x86_64" and new[1] == "manylinux_2_5_x86_64"
    assert old[-1] == "linux_x86_64" and old[0] == "manylinux_2_5_x86_64"
    # An i686 interpreter must really be 32-bit x86 for packaging to give it manylinux tags.
    assert rehearsed_platforms(["linux_i686"], "2.17", None, packaging_version=(26, 4),
                               executable=os.devnull) == ["linux_i686"]


def test_the_manylinux_order_is_packagings() -> None:
    assert list(manylinux_platforms((2, 13), ["x86_64"]))[:4] == [
        "manylinux_2_13_x86_64", "manylinux_2_12_x86_64", "manylinux2010_x86_64",
        "manylinux_2_11_x86_64"]
    aarch64 = list(manylinux_platforms((2, 18), ["aarch64"]))
    assert aarch64 == ["manylinux_2_18_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"]
