"""The requirement grammar of DESIGN.md §1."""

from __future__ import annotations

import pytest

from pytest_envguard.grammar import (
    KEYS,
    Requirement,
    RequirementError,
    from_keywords,
    parse_line,
    parse_lines,
)

VALID = [
    ("python>=3.10", Requirement("python", None, ">=3.10")),
    ("python >=3.10", Requirement("python", None, ">=3.10")),
    ("  python   >= 3.10 , <4  ", Requirement("python", None, "<4,>=3.10")),
    ("python ==3.12.*", Requirement("python", None, "==3.12.*")),
    ("implementation cpython", Requirement("implementation", "cpython")),
    ("abi free-threaded", Requirement("abi", "free-threaded")),
    ("abi cp313t", Requirement("abi", "cp313t")),
    ("platform linux", Requirement("platform", "linux")),
    ("machine x86_64", Requirement("machine", "x86_64")),
    ("glibc >=2.28", Requirement("glibc", None, ">=2.28")),
    ("musl", Requirement("musl")),
    ("cpu avx512f", Requirement("cpu", "avx512f")),
    ("cpus >=4", Requirement("cpus", None, ">=4")),
    ("memory >=16GiB", Requirement("memory", None, ">=16GiB")),
    ("memory >= 16 GB", Requirement("memory", None, ">=16GB")),
    ("memory-available >512MiB,<1TiB", Requirement("memory-available", None, ">512MiB,<1TiB")),
    ("cuda >=12.1", Requirement("cuda", None, ">=12.1")),
    ("driver >=535", Requirement("driver", None, ">=535")),
    ("gpus >=2", Requirement("gpus", None, ">=2")),
    ("gpus", Requirement("gpus")),
    ("gpu-memory >=40GiB", Requirement("gpu-memory", None, ">=40GiB")),
    ("compute-capability >=8.0", Requirement("compute-capability", None, ">=8.0")),
    ('gpu "*H100*"', Requirement("gpu", "*H100*")),
    ("gpu *A100*", Requirement("gpu", "*A100*")),
    ("gpu 'NVIDIA A100 80GB'", Requirement("gpu", "NVIDIA A100 80GB")),
    ("cuda-runtime >=12", Requirement("cuda-runtime", None, ">=12")),
    ("library libssl.so.3", Requirement("library", "libssl.so.3")),
    ("library ssl >=3.0", Requirement("library", "ssl", ">=3.0")),
    ("library cudnn>=9", Requirement("library", "cudnn", ">=9")),
    ("package numpy>=1.26", Requirement("package", "numpy>=1.26")),
    ("package torch[cuda] >=2.1, <3", Requirement("package", "torch[cuda]<3,>=2.1")),
    ("command nvcc", Requirement("command", "nvcc")),
    ("import numpy.linalg", Requirement("import", "numpy.linalg")),
    ("env CI", Requirement("env", "CI")),
    ("env MODE=gpu fast", Requirement("env", "MODE=gpu fast")),
    ("wheels", Requirement("wheels")),
    ("extensions", Requirement("extensions")),
    ("extensions numpy", Requirement("extensions", "numpy")),
    ("consistent", Requirement("consistent")),
    ("lock requirements.txt", Requirement("lock", "requirements.txt")),
    ("lock 'my locks/uv.lock'", Requirement("lock", "my locks/uv.lock")),
    ("isolated", Requirement("isolated")),
    ("gpus >=1; sys_platform == 'linux'", Requirement("gpus", None, ">=1", 'sys_platform == "linux"')),
    ("Python>=3.10", Requirement("python", None, ">=3.10")),
    ("gpu_memory >=1GiB", Requirement("gpu-memory", None, ">=1GiB")),
]


@pytest.mark.parametrize(("line", "expected"), VALID)
def test_valid_lines_parse(line: str, expected: Requirement) -> None:
    requirement = parse_line(line, "here")
    assert requirement == expected
    assert requirement.text == line
    assert requirement.source == "here"


@pytest.mark.parametrize(("line", "expected"), VALID)
def test_str_parses_back_to_an_equal_requirement(line: str, expected: Requirement) -> None:
    assert parse_line(str(parse_line(line))) == expected


def test_every_key_of_the_design_table_is_known() -> None:
    design = {
        "python", "implementation", "abi", "platform", "machine", "glibc", "musl", "cpu", "cpus",
        "memory", "memory-available", "cuda", "driver", "gpus", "gpu-memory",
        "compute-capability", "gpu", "cuda-runtime", "library", "package", "command", "import",
        "env", "wheels", "extensions", "consistent", "lock", "isolated",
    }
    assert set(KEYS) == design


INVALID = [
    # (line, words the message must contain, the part the caret must cover)
    ("cdua >=12", ["unknown key 'cdua'", "did you mean 'cuda'"], "cdua"),
    ("pyhton>=3.10", ["unknown key 'pyhton'", "did you mean 'python'"], "pyhton"),
    ("frobnicate", ["unknown key 'frobnicate'"], "frobnicate"),
    ("python >=3.1O", ["invalid version specifier"], ">=3.1O"),
    ("python 3.11", ["takes no argument"], "3.11"),
    ("python >=3.10,", ["invalid version specifier"], None),
    ("memory >=16XB", ["unknown size unit 'XB'"], "16XB"),
    ("memory >=lots", ["not a size"], "lots"),
    ("memory ~=16GiB", ["expected one of"], "~=16GiB"),
    ("gpus >=two", ["not a whole number"], "two"),
    ("gpus >=-1", ["not a whole number"], "-1"),
    ("cpu", ["'cpu' needs an argument"], None),
    ("library", ["'library' needs an argument"], None),
    ("import os; import sys", ["invalid environment marker"], "import sys"),
    ("import os.system('x')", ["invalid argument for 'import'"], None),
    ("command rm -rf /", ["takes no specifier"], None),
    ("wheels numpy", ["takes no argument"], "numpy"),
    ("env 1BAD", ["invalid argument for 'env'"], "1BAD"),
    ("package ./local/path", ["invalid package requirement"], None),
    ("package foo @ https://example.invalid/x.whl", ["cannot be a URL"], None),
    ("python; __import__('os').system('touch /tmp/pwned')", ["invalid environment marker"], None),
    ("python; os.system('x') == '1'", ["invalid environment marker"], None),
    ("python; nonexistent_variable == '1'", ["invalid environment marker"], None),
    ("python;", ["empty condition"], None),
    ("", ["empty requirement"], None),
    ("   ", ["empty requirement"], None),
    ("gpu '*H100*", ["unterminated quote"], None),
    (">=3.10", ["starts with a key"], ">"),
    ("python\n>=3", ["NUL or line breaks"], None),
    ("python\x00", ["NUL or line breaks"], None),
]


@pytest.mark.parametrize(("line", "words", "caret"), INVALID)
def test_invalid_lines_give_a_precise_error(line: str, words: list[str], caret: str | None) -> None:
    with pytest.raises(RequirementError) as info:
        parse_line(line, "pytest.ini [envguard]")
    message = str(info.value)
    assert message.startswith("pytest.ini [envguard]: ")
    for word in words:
        assert word in message
    if caret is not None:
        error = info.value
        assert line[error.start : error.end] == caret
        # The caret line sits under the quoted line.
        lines = message.splitlines()
        assert lines[1].strip() == line.strip() or line.strip() in lines[1]
        assert lines[2].index("^") - 4 == error.start


def test_marker_injection_is_never_executed(tmp_path: pytest.TempPathFactory) -> None:
    sentinel = __import__("pathlib").Path(str(tmp_path)) / "pwned"
    with pytest.raises(RequirementError):
        parse_line(f"python; __import__('pathlib').Path('{sentinel}').touch()")
    assert not sentinel.exists()


def test_non_string_line_is_an_error_not_a_crash() -> None:
    with pytest.raises(RequirementError, match="must be a string, not int"):
        parse_line(3)  # type: ignore[arg-type]


def test_parse_lines_skips_blanks_and_comments() -> None:
    assert parse_lines(["", "# a comment", "  python>=3  ", "cpus>=1"]) == [
        Requirement("python", None, ">=3"),
        Requirement("cpus", None, ">=1"),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("python >=3.10  # the oldest we test", Requirement("python", None, ">=3.10")),
        ("cpus>=4 #four", Requirement("cpus", None, ">=4")),
        ("env X=a#b", Requirement("env", "X=a#b", "")),  # no space before '#': a value
        ("env 'X=a #b'  # quoted", Requirement("env", "X=a #b", "")),
        ("python; sys_platform == '#' # odd", Requirement("python", None, "", 'sys_platform == "#"')),
    ],
)
def test_parse_lines_takes_inline_comments(line: str, expected: Requirement) -> None:
    """``#`` starts a comment in a config's line list, also after a line (as the docs say)."""
    assert parse_lines([line]) == [expected]


def test_keyword_form() -> None:
    assert from_keywords({"gpus": ">=2", "gpu_memory": ">=16GiB", "isolated": True, "package": "numpy"}) == [
        Requirement("gpus", None, ">=2"),
        Requirement("gpu-memory", None, ">=16GiB"),
        Requirement("isolated"),
        Requirement("package", "numpy"),
    ]


@pytest.mark.parametrize("value", [2, None, 1.5, ["x"], b">=2", False])
def test_keyword_values_of_wrong_type(value: object) -> None:
    with pytest.raises(RequirementError, match=r"must be a string or True"):
        from_keywords({"gpus": value}, "marker of t.py::x")


def test_constraints_split_the_specifier() -> None:
    assert parse_line("memory >=1GiB, <2GiB").constraints == ((">=", "1GiB"), ("<", "2GiB"))


def test_source_and_text_do_not_take_part_in_equality() -> None:
    assert parse_line("python>=3", "a") == parse_line("python >= 3", "b")
    assert hash(parse_line("python>=3", "a")) == hash(parse_line("python >= 3", "b"))
