"""Properties of the requirement grammar (DESIGN.md §1), checked with hypothesis.

* on any text, :func:`parse_line` returns a :class:`Requirement` or raises
  :class:`RequirementError` with a message — never another exception;
* ``str(requirement)`` parses back to an equal requirement;
* every key of the design table has generated valid lines (which parse, to
  that key) and generated invalid lines (which raise, with a caret under the
  bad part).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_envguard import units
from pytest_envguard.grammar import (
    KEYS,
    Argument,
    Requirement,
    RequirementError,
    Spec,
    from_keywords,
    parse_line,
    parse_lines,
)

T = TypeVar("T")

# Modest: the whole file runs in a few seconds on CI.
MODEST = settings(max_examples=200, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# Text that often parses: keys, operators, quotes, markers and separators mixed with noise.
FRAGMENTS = [
    *KEYS, " ", " ", ">=", "==", "!=", "<=", "<", ">", "~=", "===", ".*", ",", ";", "'", '"',
    "3.10", "12.1", "2", "16GiB", "512MB", "1.5", "x86_64", "*H100*", "numpy", "[extra]",
    "=", "_", "-", "python_version", "sys_platform", "'linux'", '"3.8"', " and ", " or ", "(", ")",
    "\t", "#", "\\", "\x00", "\n", "é", "\udcff", "requirements.txt", "FOO=bar",
]
line_like = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=12).map("".join)
any_text = st.text(max_size=60) | line_like


def assert_clean_error(error: RequirementError, text: str) -> None:
    """A RequirementError a user can act on: a message, the line, a caret."""
    assert error.message.strip()
    rendered = str(error)
    assert error.message in rendered
    caret_line = rendered.splitlines()[-1]
    assert caret_line.strip() and set(caret_line.strip()) == {"^"}
    assert 0 <= error.start <= len(error.line)
    assert error.end > error.start


def attempt(function: Callable[..., T], *args: Any) -> tuple[T | None, RequirementError | None]:
    """The result, or the RequirementError raised; any other exception propagates."""
    try:
        return function(*args), None
    except RequirementError as error:
        return None, error


@MODEST
@given(any_text)
def test_any_text_parses_or_raises_requirement_error(text: str) -> None:
    requirement, error = attempt(parse_line, text, "fuzz")
    if error is not None:
        assert_clean_error(error, text)
        assert str(error).startswith("fuzz: ")
        return
    assert requirement is not None
    assert requirement.key in KEYS
    assert requirement.source == "fuzz"


def check_round_trip(text: str) -> None:
    """The property: whatever parses prints back to an equal requirement, and printing
    is a fixed point."""
    try:
        requirement = parse_line(text)
    except RequirementError:
        return
    printed = str(requirement)
    again = parse_line(printed)
    assert again == requirement, (text, printed)
    assert str(again) == printed


#: Lines whose printing needs care (quotes inside quotes, a ';' in a value): the xdist
#: controller once re-parsed the printed form of the first one and crashed.
TRICKY = ["gpu a\"b\"c'd'", "env 'X=a;b'", "lock 'my lock; v2.txt'", 'gpu "x\'y"']


@MODEST
@given(st.one_of(any_text, st.sampled_from(TRICKY)))
def test_whatever_parses_prints_back_to_an_equal_requirement(text: str) -> None:
    check_round_trip(text)


@MODEST
@given(st.lists(any_text, max_size=6))
def test_parse_lines_raises_only_requirement_error(lines: list[str]) -> None:
    _, error = attempt(parse_lines, lines, "pytest.ini [envguard]")
    if error is not None:
        assert str(error).startswith("pytest.ini [envguard]: ")


marker_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.binary(max_size=8),
    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                               max_size=2),
    st.text(max_size=20), line_like, st.tuples(st.integers()),
)


@MODEST
@given(marker_values)
def test_marker_arguments_of_any_type(value: object) -> None:
    """``@pytest.mark.requires(value)``: a string is a line; anything else is a clean error."""
    _, error = attempt(parse_line, value, "requires marker of t.py::test")
    if not isinstance(value, str):
        assert error is not None
    if error is not None:
        assert_clean_error(error, repr(value))
        if not isinstance(value, str):
            assert f"not {type(value).__name__}" in error.message


@MODEST
@given(st.dictionaries(st.sampled_from([*KEYS, "gpu_memory", "memory_available", "bogus", ""])
                       | st.text(max_size=8), marker_values, max_size=4))
def test_marker_keywords_of_any_type(keywords: dict[str, object]) -> None:
    """``@pytest.mark.requires(**keywords)`` with any names and values."""
    requirements, error = attempt(from_keywords, keywords, "requires marker of t.py::test")
    if error is not None:
        assert_clean_error(error, repr(keywords))
        return
    assert requirements is not None
    assert len(requirements) == len(keywords)


# -- generated valid and invalid lines for every key ------------------------------------------

VERSIONS = st.builds(
    lambda parts, star: ".".join(map(str, parts)) + (".*" if star else ""),
    st.lists(st.integers(0, 99), min_size=1, max_size=3), st.booleans(),
)
VERSION_OPS = st.sampled_from([">=", "<=", "==", "!=", ">", "<", "~="])
QUANTITY_OPS = st.sampled_from(list(units.OPERATORS))
UNITS = st.sampled_from(["", "B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB", "gib", "k"])
SPACE = st.sampled_from(["", " ", "  "])
MARKERS = st.sampled_from([
    None, "sys_platform == 'linux'", 'python_version >= "3.10"', "os_name != 'nt' and "
    "platform_machine == 'x86_64'", "(implementation_name == 'cpython') or extra == 'gpu'",
])


@st.composite
def version_clause(draw: st.DrawFn) -> str:
    op = draw(VERSION_OPS)
    version = draw(VERSIONS)
    if version.endswith(".*"):
        op = draw(st.sampled_from(["==", "!="]))
    elif op == "~=" and "." not in version:
        version += ".0"
    return f"{op}{draw(SPACE)}{version}"


@st.composite
def quantity_clause(draw: st.DrawFn, size: bool) -> str:
    op = draw(QUANTITY_OPS)
    if size:
        number = draw(st.integers(0, 4096).map(str) | st.decimals(0, 512, places=2).map(str))
        value = f"{number}{draw(UNITS)}"
    else:
        value = str(draw(st.integers(0, 1024)))
    return f"{op}{draw(SPACE)}{value}"


def arguments_for(name: str) -> st.SearchStrategy[str]:
    key = KEYS[name]
    if name == "package":
        return st.builds(
            lambda project, extra, spec: f"{project}{extra}{spec}",
            st.from_regex(r"[A-Za-z][A-Za-z0-9._-]{0,10}[A-Za-z0-9]", fullmatch=True),
            st.sampled_from(["", "[gpu]", "[a,b]"]),
            st.sampled_from(["", ">=1.0", "==2.*", "<3,>=1", "~=1.4"]),
        )
    if name == "env":
        return st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}(=[A-Za-z0-9 ./:-]{0,10}[A-Za-z0-9])?",
                             fullmatch=True)
    if name in ("gpu", "lock"):
        unquoted = st.from_regex(r"[A-Za-z0-9*?._/-]{1,16}", fullmatch=True)
        spaced = st.from_regex(r"[A-Za-z0-9*][A-Za-z0-9 *?._/-]{0,14}[A-Za-z0-9*]", fullmatch=True)
        return unquoted.filter(lambda s: s[0] not in "<>=!~") | spaced.map(lambda s: f"'{s}'") | (
            spaced.map(lambda s: f'"{s}"'))
    assert key.pattern is not None
    pattern = key.pattern.replace("+", "{1,12}").replace("*", "{0,8}")
    return st.from_regex(pattern, fullmatch=True).filter(
        lambda s: bool(s) and s[0] not in "<>=!~\"'" and re.fullmatch(key.pattern or "", s) is not None)


@st.composite
def valid_line(draw: st.DrawFn, name: str) -> str:
    key = KEYS[name]
    spelled = draw(st.sampled_from([name, name.upper(), name.replace("-", "_")]))
    parts = [spelled]
    if key.argument is Argument.REQUIRED or (key.argument is Argument.OPTIONAL and draw(st.booleans())):
        parts.append(draw(arguments_for(name)))
    if key.spec is not Spec.NONE and draw(st.booleans()):
        clause = version_clause() if key.spec is Spec.VERSION else quantity_clause(key.spec is Spec.SIZE)
        clauses = draw(st.lists(clause, min_size=1, max_size=3))
        parts.append(",".join(clauses))
    line = " ".join(parts)
    marker = draw(MARKERS)
    return f"{line}{draw(SPACE)};{draw(SPACE)}{marker}" if marker else line


@st.composite
def invalid_line(draw: st.DrawFn, name: str) -> str:
    key = KEYS[name]
    choices = ["bad marker", "bad key"]
    if name != "env":  # env's value runs to the end of the line: "env A=0 &&" is valid
        choices.append("trailing junk")
    if key.argument is Argument.REQUIRED:
        choices.append("no argument")
    if key.argument is Argument.NONE:
        choices.append("stray argument")
    if key.spec is Spec.NONE and name not in ("package", "env"):
        choices.append("stray specifier")
    if key.spec is Spec.VERSION:
        choices.append("bad version")
    if key.spec in (Spec.COUNT, Spec.SIZE):
        choices.append("bad quantity")
    if key.pattern is not None and name not in ("gpu", "lock"):
        choices.append("bad argument")
    choice = draw(st.sampled_from(choices))
    argument = draw(arguments_for(name)) if key.argument is Argument.REQUIRED else ""
    base = f"{name} {argument}".strip()
    if choice == "bad marker":
        return f"{base}; " + draw(st.sampled_from([
            "__import__('os').system('true')", "os.getcwd() == '/'", "python_version >=", "nope",
            "sys_platform == 'linux' and", "exec('1')", "'a' in", "",
        ]))
    if choice == "bad key":
        return draw(st.sampled_from([name[:-1], name + "x", name[0] + "_" + name[1:] + "z",
                                     "1" + name])) + (f" {argument}" if argument else "")
    if choice == "trailing junk":
        return f"{base} " + draw(st.sampled_from(["&&", "$(id)", "`id`", "|| true", "@@"]))
    if choice == "no argument":
        return name + draw(st.sampled_from(["", " ", " >=1"]))
    if choice == "stray argument":
        return f"{name} " + draw(st.sampled_from(["numpy", "3.10", "avx2", "16GiB", "x"]))
    if choice == "stray specifier":
        return f"{base} >=1"
    if choice == "bad version":
        return f"{base} " + draw(st.sampled_from([">=3.1O", ">=", "=>3", ">=3,", "~=3", "== 1.2.3 4",
                                                  ">=v", "==1..2"]))
    if choice == "bad quantity":
        return f"{base} " + draw(st.sampled_from([">=lots", ">=-1", "~=2", ">=16XB", ">=", "=>4",
                                                  ">=1,", ">=0x10", ">=1e9"]))
    assert choice == "bad argument"
    # Not an argument of any key: shell syntax, paths, spaces, non-ASCII.
    return f"{name} " + draw(st.sampled_from(["a\\;b", "'a b'", "$(id)", "../x", "a|b", "é",
                                              "`id`", "a/b"]))


@pytest.mark.parametrize("name", sorted(KEYS))
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_generated_valid_lines_parse_for_every_key(name: str, data: st.DataObject) -> None:
    line = data.draw(valid_line(name))
    requirement = parse_line(line)
    assert requirement.key == name
    assert parse_line(str(requirement)) == requirement
    if KEYS[name].argument is Argument.REQUIRED:
        assert requirement.argument


@pytest.mark.parametrize("name", sorted(KEYS))
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_generated_invalid_lines_raise_for_every_key(name: str, data: st.DataObject) -> None:
    line = data.draw(invalid_line(name))
    with pytest.raises(RequirementError) as raised:
        parse_line(line, "pyproject.toml [envguard]")
    assert_clean_error(raised.value, line)
    assert line in str(raised.value) or repr(line) in str(raised.value)


@MODEST
@given(st.sampled_from(sorted(KEYS)).flatmap(valid_line))
def test_requirement_equality_ignores_text_and_source(line: str) -> None:
    first, second = parse_line(line, "a"), parse_line(f"  {line}  ", "b")
    assert first == second and hash(first) == hash(second)
    assert first.to_dict()["line"] == str(first)


@MODEST
@given(st.text(alphabet=string.printable + "é\udcff", max_size=20))
def test_sizes_parse_or_raise_unit_error(text: str) -> None:
    for parse in (units.parse_size, units.parse_count):
        value: int | None = None
        try:
            value, message = parse(text), ""
        except units.UnitError as error:
            message = str(error)
        assert (value is not None and value >= 0) or message


def test_the_round_trip_property_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    # The property itself, run on a printer that loses information (quotes dropped):
    # it must notice.
    for text in TRICKY:
        check_round_trip(text)
    monkeypatch.setattr(Requirement, "__str__",
                        lambda self: " ".join(filter(None, [self.key, self.argument, self.specifier])))
    with pytest.raises((AssertionError, RequirementError)):
        check_round_trip("gpu 'NVIDIA A100 80GB'")
