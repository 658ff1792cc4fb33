"""``--suggest --write FILE``: the contract merged into a config file with text edits only.

Each case parses the file before and after (tomllib, configparser) and requires the
two to differ in the ``envguard`` value alone, the user's lines first and kept.
"""

from __future__ import annotations

import configparser
import io
from pathlib import Path

import pytest

from pytest_envguard.adopt import config_files, run_suggest
from pytest_envguard.adopt.suggest import Candidate, Dropped, Suggestion
from pytest_envguard.options import as_lines, read_config
from pytest_envguard.probes._io import load_toml

SUGGESTION = Suggestion((
    Candidate("python >=3.10", "Requires-Python of the project"),
    Candidate("glibc >=2.28", "GLIBC_2.28 is needed by _x.so"),
    Dropped("cuda >=12.0", "nvidia-cuda-runtime-cu12 12.4.127", "unknown here: found unknown: no NVML"),
    Candidate("extensions", "every extension module loads"),
))


def merged(tmp_path: Path, name: str, text: str | bytes) -> tuple[str, list[str]]:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    old, new, notes = config_files.merge(path, SUGGESTION)
    assert old == path.read_bytes().decode("utf-8")
    path.write_text(new, encoding="utf-8", newline="")
    return new, notes


def contract(tmp_path: Path, name: str) -> list[str]:
    values = read_config(tmp_path / name) or {}
    return as_lines(values.get("envguard", []), name)


def test_ini_keeps_the_users_lines_and_adds_the_rest(tmp_path: Path) -> None:
    text = ("# top comment\n[pytest]\naddopts = -q\nenvguard =\n    # ours\n    python >=3.8\n"
            "    package numpy\nmarkers =\n    slow: slow tests\n\n[other]\nkey = value\n")
    new, notes = merged(tmp_path, "pytest.ini", text)
    assert contract(tmp_path, "pytest.ini") == ["python >=3.8", "package numpy", "glibc >=2.28",
                                                "extensions"]
    assert notes == ["kept 'python >=3.8' (suggested 'python >=3.10')"]
    assert new.startswith("# top comment\n[pytest]\naddopts = -q\nenvguard =\n    # ours\n")
    assert "    # left out (unknown here: found unknown: no NVML): cuda >=12.0" in new
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(new)
    assert parser["pytest"]["markers"].strip() == "slow: slow tests"
    assert dict(parser["other"]) == {"key": "value"}


@pytest.mark.parametrize(("name", "section"), [("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")])
def test_ini_gets_the_section_or_the_key(tmp_path: Path, name: str, section: str) -> None:
    text = "[tox]\nenv_list = py311\n"
    merged(tmp_path, name, text)
    assert contract(tmp_path, name) == ["python >=3.10", "glibc >=2.28", "extensions"]
    text = f"[{section}]\naddopts = -q\n\n[later]\nx = 1\n"
    new, _ = merged(tmp_path, name, text)
    assert contract(tmp_path, name) == ["python >=3.10", "glibc >=2.28", "extensions"]
    assert new.index("envguard =") < new.index("[later]")


def test_pyproject_multiline_array_gets_new_items_before_its_bracket(tmp_path: Path) -> None:
    text = ('[project]\nname = "x"\n\n[tool.pytest.ini_options]\naddopts = "-q"\nenvguard = [\n'
            '    # why we need it\n    "package numpy",\n    "env A=[#]"  # trailing\n]\n'
            'markers = ["slow"]\n\n[tool.ruff]\nline-length = 100\n')
    new, _ = merged(tmp_path, "pyproject.toml", text)
    assert contract(tmp_path, "pyproject.toml") == ["package numpy", "env A=[#]", "python >=3.10",
                                                    "glibc >=2.28", "extensions"]
    assert '    # why we need it\n    "package numpy",\n    "env A=[#]",  # trailing\n' in new
    document = load_toml(str(tmp_path / "pyproject.toml"), 1 << 20)
    assert document["tool"]["ruff"] == {"line-length": 100}
    assert document["tool"]["pytest"]["ini_options"]["markers"] == ["slow"]


@pytest.mark.parametrize("value", ['["package numpy"]', '"package numpy"',
                                   '"""\npackage numpy\n"""'])
def test_pyproject_one_line_values_become_an_array(tmp_path: Path, value: str) -> None:
    text = f'[tool.pytest.ini_options]\nenvguard = {value}\nxfail_strict = true\n'
    merged(tmp_path, "pyproject.toml", text)
    assert contract(tmp_path, "pyproject.toml") == ["package numpy", "python >=3.10",
                                                    "glibc >=2.28", "extensions"]
    assert load_toml(str(tmp_path / "pyproject.toml"), 1 << 20)["tool"]["pytest"][
        "ini_options"]["xfail_strict"] is True


def test_pyproject_without_a_table_gets_one_and_keeps_everything(tmp_path: Path) -> None:
    text = '[project]\nname = "x"\ndescription = """\n[tool.pytest.ini_options]\n"""\n'
    new, _ = merged(tmp_path, "pyproject.toml", text)
    assert new.startswith(text)
    assert contract(tmp_path, "pyproject.toml") == ["python >=3.10", "glibc >=2.28", "extensions"]


def test_pyproject_table_without_the_key_gets_it_at_its_end(tmp_path: Path) -> None:
    text = ('[tool.pytest.ini_options]\naddopts = "-q"\n# a comment\n\n[tool.other]\nx = 1\n')
    new, _ = merged(tmp_path, "pyproject.toml", text)
    assert new.startswith('[tool.pytest.ini_options]\naddopts = "-q"\nenvguard = [\n')
    assert new.endswith('# a comment\n\n[tool.other]\nx = 1\n')


def test_pytest9_native_table_is_used(tmp_path: Path) -> None:
    text = '[tool.pytest]\nminversion = "9.0"\n'
    merged(tmp_path, "pyproject.toml", text)
    document = load_toml(str(tmp_path / "pyproject.toml"), 1 << 20)
    assert document["tool"]["pytest"]["envguard"] == ["python >=3.10", "glibc >=2.28", "extensions"]


def test_crlf_files_stay_crlf(tmp_path: Path) -> None:
    text = "[pytest]\r\naddopts = -q\r\n"
    new, _ = merged(tmp_path, "pytest.ini", text)
    assert "\n" not in new.replace("\r\n", "")
    assert contract(tmp_path, "pytest.ini") == ["python >=3.10", "glibc >=2.28", "extensions"]


def test_a_new_file_is_the_block(tmp_path: Path) -> None:
    old, new, _ = config_files.merge(tmp_path / "pytest.ini", SUGGESTION)
    assert old == ""
    assert new == config_files.render(SUGGESTION, "ini")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("pyproject.toml", b'[tool.pytest.ini_options]\nx = "\xff"\n', "not UTF-8"),
    ("pyproject.toml", b"[tool.pytest.ini_options\n", "pyproject.toml"),
    ("pyproject.toml", b"tool.pytest.ini_options.addopts = '-q'\n", "dotted keys"),
    ("pytest.ini", b"[pytest]\nenvguard\n", "pytest.ini"),
    ("pyproject.toml", b'[tool.pytest.ini_options]\nenvguard = [1, 2]\n', "must be a string"),
])
def test_files_it_cannot_merge_safely_are_refused(tmp_path: Path, name: str, content: bytes,
                                                  message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(config_files.ConfigWriteError, match=message):
        config_files.merge(path, SUGGESTION)
    assert path.read_bytes() == content


def test_write_refuses_a_toml_file_pytest_does_not_read(tmp_path: Path) -> None:
    err = io.StringIO()
    assert run_suggest(None, tmp_path / "envguard.toml", cwd=tmp_path, err=err) == 4
    assert "pyproject.toml" in err.getvalue()
    assert not (tmp_path / "envguard.toml").exists()
    assert run_suggest("toml", tmp_path / "pytest.ini", cwd=tmp_path, err=err) == 4


def test_rendered_forms_read_back_to_the_same_lines(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(config_files.render(SUGGESTION, "ini"), encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text(config_files.render(SUGGESTION, "toml"),
                                             encoding="utf-8")
    expected = ["python >=3.10", "glibc >=2.28", "extensions"]
    assert contract(tmp_path, "pytest.ini") == expected
    assert contract(tmp_path, "pyproject.toml") == expected
    assert config_files.toml_string('a "b" \\ \x7f') == '"a \\"b\\" \\\\ \\u007f"'
