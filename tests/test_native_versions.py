"""native_versions.py: where each library keeps its release, and what a soname decides."""

from __future__ import annotations

import pytest

from pytest_envguard import native_versions
from pytest_envguard.native_versions import Source, decide


@pytest.mark.parametrize(("specifier", "version", "only_major", "expected"), [
    (">=3.0.13", "3.0.19", False, True),
    (">=3.0.20", "3.0.19", False, False),
    (">=3", "3", True, True),
    ("<4", "3", True, True),
    (">=4", "3", True, False),
    ("<3", "3", True, False),
    ("==3.*", "3", True, True),
    ("!=3.*", "3", True, False),
    (">=2.5", "3", True, True),
    (">=3.0.13", "3", True, None),  # 3.0.0 no, 3.0.19 yes: the soname cannot tell
    ("<3.1", "3", True, None),
    ("==3", "3", True, None),  # 3.0.0 is, 3.0.19 is not
    (">3", "3", True, None),
    ("~=3.0", "3", True, True),  # >=3.0, ==3.*: every 3.x
    ("~=3.1", "3", True, None),
    ("==3.0.*", "3", True, None),
    (">=1.2,<2", "1", True, None),
    (">=0.9,<2", "1", True, True),
    ("nonsense", "1", True, None),
])
def test_decide(specifier: str, version: str, only_major: bool, expected: bool | None) -> None:
    assert decide(specifier, version, only_major=only_major) is expected


def test_decide_agrees_with_packaging_where_it_decides() -> None:
    """Where only the major is known and `decide` answers, every release of that major
    gets the same answer from packaging."""
    from packaging.specifiers import SpecifierSet

    releases = [f"3.{minor}.{patch}" for minor in range(4) for patch in (0, 1, 13, 19)] + ["3"]
    for specifier in (">=3", "<4", ">=2.5,<3.9", "!=3.0.13", ">=3.0.13", "<=3.2", "==3.*",
                      "~=3.1", ">3.0", "!=4.*"):
        answer = decide(specifier, "3", only_major=True)
        if answer is not None:
            assert all(SpecifierSet(specifier).contains(release) is answer
                       for release in releases), specifier


def test_version_strings() -> None:
    openssl = native_versions.LIBRARY_VERSIONS["libcrypto"].sources[1]
    assert native_versions.from_text(openssl, b"\0OpenSSL 3.0.19 27 Jan 2026\0") == "3.0.19"
    assert native_versions.from_text(openssl, b"OpenSSL 1.1.1w  11 Sep 2023") == "1.1.1.23"
    assert native_versions.from_text(openssl, b"no version here") is None
    zlib = native_versions.LIBRARY_VERSIONS["libz"].sources[1]
    assert native_versions.from_text(zlib, b" deflate 1.2.13 Copyright 1995-2022 ") == "1.2.13"
    gcc = native_versions.LIBRARY_VERSIONS["libgomp"].sources[0]
    assert native_versions.from_text(gcc, b"GCC: (conda-forge gcc 13.2.0-7) 13.2.0\0") == "13.2.0"


def test_version_definitions() -> None:
    source = Source("version definitions", family="GLIBCXX", template="6.0.{2}")
    defined = ["GLIBCXX_3.4", "GLIBCXX_3.4.30", "GLIBCXX_3.4.9", "CXXABI_1.3.13", "GLIBCXX_TM"]
    assert native_versions.from_version_definitions(source, defined) == "6.0.30"
    assert native_versions.from_version_definitions(source, ["CXXABI_1.3"]) is None


def test_rules_by_file_name() -> None:
    assert native_versions.rule_for("libssl.so.3") is native_versions.LIBRARY_VERSIONS["libssl"]
    assert native_versions.rule_for("libz-a1b2c3d4.so.1.2.13") is \
        native_versions.LIBRARY_VERSIONS["libz"]
    assert native_versions.rule_for("libenvguard.so.1") is None
    assert not native_versions.LIBRARY_VERSIONS["libgomp"].soname_is_release
    for stem, rule in native_versions.LIBRARY_VERSIONS.items():
        assert rule.meaning and rule.reference and rule.sources, stem
