"""versions.py: simple PEP 440 specifiers, judged exactly as packaging judges them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet

from pytest_envguard import versions

releases = st.lists(st.integers(0, 12), min_size=1, max_size=4).map(
    lambda parts: ".".join(map(str, parts)))


@st.composite
def clauses(draw: st.DrawFn) -> str:
    operator = draw(st.sampled_from(["==", "!=", ">=", "<=", ">", "<", "~="]))
    release = draw(releases)
    if operator == "~=" and "." not in release:
        release += ".0"
    wildcard = operator in ("==", "!=") and draw(st.booleans())
    space = draw(st.sampled_from(["", " "]))
    return f"{space}{operator}{space}{release}{'.*' if wildcard else ''}{space}"


specifiers = st.lists(clauses(), min_size=1, max_size=3).map(",".join)


@settings(max_examples=2000, deadline=None)
@given(specifiers, releases)
def test_simple_specifiers_agree_with_packaging(specifier: str, version: str) -> None:
    reference = SpecifierSet(specifier)
    assert versions.normalize(specifier) == str(reference)
    assert versions.contains(str(reference), version) is reference.contains(version, prereleases=True)


@pytest.mark.parametrize(("specifier", "version", "expected"), [
    (">=3.10", "3.10.0", True), ("==3.10", "3.10.0", True), ("==3.10.0", "3.10", True),
    (">3.10", "3.10.0", False), ("==3.11.*", "3.11", True), ("!=3.11.*", "3.11.7", False),
    ("~=2.28", "2.36", True), ("~=2.28", "3.0", False), ("<3.14,>=3.10", "3.13.1", True),
    ("==1.0.*", "1", True), ("<3.12", "3.12", False),
])
def test_known_answers(specifier: str, version: str, expected: bool) -> None:
    assert versions.contains(specifier, version) is expected
    assert SpecifierSet(specifier).contains(version, prereleases=True) is expected


@pytest.mark.parametrize(("specifier", "version"), [
    (">=3.10", "3.14.0rc1"), (">=3.10", "1.0+local"), ("===3.10", "3.10"), (">=3.10.*", "3.10"),
    ("~=3", "3.1"), (">=3.10a1", "3.10"), ("", "x"), (">=3.10", "3.10.post1"), ("=>3", "3"),
])
def test_anything_else_is_left_to_packaging(specifier: str, version: str) -> None:
    assert versions.contains(specifier, version) is None or not specifier


def test_the_cheap_path_imports_no_packaging() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom pytest_envguard import grammar, versions\n"
            "r = grammar.parse_line('python >=3.10, <3.14')\n"
            "assert versions.contains(r.specifier, '3.11.7') is True\n"
            "print(sorted(m for m in sys.modules if m.startswith('packaging')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
