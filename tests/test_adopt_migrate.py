"""``python -m pytest_envguard --migrate PATH… [--write]``: skip conditions → requires lines.

A corpus of real-world idioms, each with the line it must become (or why it cannot);
``--write`` on files with exact expected text; files it must refuse and leave byte for
byte; and a suite run by pytest before and after ``--write`` on this machine, whose
outcomes may differ only where the report said they would.
"""

from __future__ import annotations

import ast
import io
import textwrap
from pathlib import Path

import pytest

from pytest_envguard.adopt import migrate as migration
from pytest_envguard.adopt import run_migrate
from pytest_envguard.adopt.migrate import Report, migrate, notes_by_place

PRELUDE = """\
import ctypes.util
import importlib.util
import os
import platform
import shutil
import sys
import unittest

import pytest
import torch
from packaging.version import Version

TEST_CUDA = torch.cuda.is_available()
TEST_MULTIGPU = TEST_CUDA and torch.cuda.device_count() >= 2

try:
    import numpy as np
    HAS_NUMPY = True
except ImportError:
    HAS_NUMPY = False
"""

#: (a decorator or statement, what the report says after "→ ").
CORPUS = [
    ('@pytest.mark.skipif(sys.version_info < (3, 10), reason="3.10")',
     '@pytest.mark.requires("python >=3.10")'),
    ("@pytest.mark.skipif(sys.version_info >= (3, 13), reason='old')",
     '@pytest.mark.requires("python <3.13")'),
    ("@pytest.mark.skipif(sys.version_info[:2] == (3, 11), reason='x')",
     '@pytest.mark.requires("python !=3.11.*")'),
    ("@pytest.mark.skipif(sys.version_info[:2] <= (3, 9), reason='x')",
     '@pytest.mark.requires("python >=3.10")'),
    ("@pytest.mark.skipif((3, 10) > sys.version_info, reason='x')",
     '@pytest.mark.requires("python >=3.10")'),
    ("@pytest.mark.skipif(sys.version_info == (3, 11), reason='x')",
     "no equivalent (a constant: sys.version_info never equals a tuple of fewer than five parts)"),
    ('@pytest.mark.skipif(sys.platform != "linux", reason="linux")',
     '@pytest.mark.requires("platform linux")'),
    ('@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="linux")',
     '@pytest.mark.requires("platform linux")'),
    ('@pytest.mark.skipif(sys.platform == "win32", reason="posix")',
     "no equivalent (requires cannot say 'not win32'; keep this skip (it excludes a platform "
     "rather than needing one))"),
    ('@pytest.mark.skipif(platform.system() != "Linux", reason="x")',
     '@pytest.mark.requires("platform linux")'),
    ('@pytest.mark.skipif(platform.machine() != "x86_64", reason="x")',
     '@pytest.mark.requires("machine x86_64")'),
    ('@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x")',
     "no equivalent (platform.machine against several values: requires needs one)"),
    ('@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc")',
     '@pytest.mark.requires("command nvcc")'),
    ('@pytest.mark.skipif(not shutil.which("gcc"), reason="x")',
     '@pytest.mark.requires("command gcc")'),
    ('@pytest.mark.skipif(os.environ.get("HF_TOKEN") is None, reason="x")',
     '@pytest.mark.requires("env HF_TOKEN")'),
    ('@pytest.mark.skipif("CI" not in os.environ, reason="x")', '@pytest.mark.requires("env CI")'),
    ('@pytest.mark.skipif(not os.getenv("RUN_SLOW"), reason="x")',
     '@pytest.mark.requires("env RUN_SLOW")'),
    ('@pytest.mark.skipif(os.environ.get("MODE") != "full", reason="x")',
     '@pytest.mark.requires("env MODE=full")'),
    ('@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")',
     '@pytest.mark.requires("gpus >=1")'),
    ('@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="2 GPUs")',
     '@pytest.mark.requires("gpus >=2")'),
    ('@pytest.mark.skipif(torch.cuda.device_count() == 0, reason="x")',
     '@pytest.mark.requires("gpus >=1")'),
    ('@pytest.mark.skipif(not TEST_CUDA, reason="x")', '@pytest.mark.requires("gpus >=1")'),
    ('@pytest.mark.skipif(not TEST_MULTIGPU, reason="x")', '@pytest.mark.requires("gpus >=2")'),
    ('@pytest.mark.skipif(torch.version.cuda < "12.1", reason="x")',
     '@pytest.mark.requires("cuda >=12.1")'),
    ('@pytest.mark.skipif(Version(torch.version.cuda) < Version("11.8"), reason="x")',
     '@pytest.mark.requires("cuda >=11.8")'),
    ('@pytest.mark.skipif(torch.version.cuda is None, reason="CPU build")',
     "no equivalent (whether torch is a CUDA build: no key says that; `cuda` says what the "
     "driver supports)"),
    ('@pytest.mark.skipif(ctypes.util.find_library("cudnn") is None, reason="x")',
     '@pytest.mark.requires("library cudnn")'),
    ('@pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="x")',
     '@pytest.mark.requires("import scipy")'),
    ('@pytest.mark.skipif(not HAS_NUMPY, reason="x")', '@pytest.mark.requires("import numpy")'),
    ('@pytest.mark.skipif(HAS_NUMPY, reason="x")',
     "no equivalent (HAS_NUMPY is false when the import succeeds: requires cannot say 'not "
     "installed')"),
    ('@pytest.mark.skipif(shutil.which("nvcc") is None or not TEST_CUDA, reason="x")',
     '@pytest.mark.requires("command nvcc", "gpus >=1")'),
    ('@pytest.mark.skipif(shutil.which("nvcc") is None and not TEST_CUDA, reason="x")',
     "no equivalent (an 'or' of requirements: a requires marker needs every one of its lines)"),
    ('@pytest.mark.skipif(sys.platform == "win32", not TEST_CUDA, reason="x")',
     "no equivalent (requires cannot say 'not win32'; keep this skip (it excludes a platform "
     "rather than needing one))"),
    ('@pytest.mark.skipif(not shutil.which("git"), not TEST_CUDA, reason="x")',
     '@pytest.mark.requires("command git", "gpus >=1")'),
    ('@pytest.mark.skipif(condition=not HAS_NUMPY, reason="x")',
     '@pytest.mark.requires("import numpy")'),
    ("@pytest.mark.skipif(\"sys.platform != 'linux'\")", '@pytest.mark.requires("platform linux")'),
    ('@pytest.mark.skipif("sys.platform ==")', "no equivalent (the condition string does not parse)"),
    ('@pytest.mark.skipif(True, reason="broken")',
     "no equivalent (always true: an unconditional skip, not an environment requirement)"),
    ('@pytest.mark.skipif(*CONDITIONS, reason="x")', "no equivalent (arguments passed with * or **)"),
    ("@pytest.mark.skipif(some_helper(), reason='x')",
     "no equivalent (not a condition a requires line expresses)"),
    ("@pytest.mark.skipif(UNKNOWN_FLAG, reason='x')",
     "no equivalent (UNKNOWN_FLAG is not a constant assigned once in this module)"),
    ('@unittest.skipIf(sys.platform != "linux", "linux only")', '@pytest.mark.requires("platform linux")'),
    ('@unittest.skipUnless(shutil.which("git"), "needs git")', '@pytest.mark.requires("command git")'),
    ('@unittest.skipUnless(TEST_CUDA and torch.cuda.device_count() >= 4, "4 GPUs")',
     '@pytest.mark.requires("gpus >=4")'),
    ('@unittest.skipUnless(sys.platform == "linux" or sys.platform == "darwin", "posix")',
     "no equivalent (an 'or' of requirements: a requires marker needs every one of its lines)"),
    ("@pytest.mark.skipif", "no equivalent (a skip decorator without a call or condition: it "
                            "always skips)"),
]


def findings_of(tmp_path: Path, source: str, name: str = "test_corpus.py") -> Report:
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    return migrate([path], write=False)


@pytest.mark.parametrize(("decorator", "expected"), CORPUS, ids=[item[0][:60] for item in CORPUS])
def test_each_idiom_converts_or_says_why_not(tmp_path: Path, decorator: str, expected: str) -> None:
    source = PRELUDE + f"\n\n{decorator}\ndef test_it():\n    pass\n"
    report = findings_of(tmp_path, source)
    assert len(report.findings) == 1, report.render()
    assert report.findings[0].render().split(" → ", 1)[1] == expected
    assert report.findings[0].line == PRELUDE.count("\n") + 3


def test_the_report_quotes_file_line_and_condition(tmp_path: Path) -> None:
    source = PRELUDE + '\n\n@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA")\n' \
                       "def test_it():\n    pass\n"
    report = findings_of(tmp_path, source)
    line = PRELUDE.count("\n") + 3
    assert report.findings[0].render() == (
        f"{tmp_path / 'test_corpus.py'}:{line}: skipif(not torch.cuda.is_available()) → "
        '@pytest.mark.requires("gpus >=1")')
    text = report.render()
    assert "1 skip conditions found: 1 convertible, 0 not" in text
    assert "Semantic differences to review:" in text
    assert "CPU-only torch build" in text
    assert "strict mode" in text


def test_importorskip_in_a_test_a_fixture_and_at_module_level(tmp_path: Path) -> None:
    source = textwrap.dedent("""\
        import pytest

        yaml = pytest.importorskip("yaml")


        @pytest.fixture
        def arrays():
            np = pytest.importorskip("numpy")
            return np


        def helper():
            return pytest.importorskip("scipy")


        class TestThing:
            def test_numpy(self):
                np = pytest.importorskip("numpy")

            def test_old(self):
                pytest.importorskip("numpy", minversion="2.0")
        """)
    rendered = [finding.render().split(" → ", 1)[1] for finding in findings_of(tmp_path, source).findings]
    assert rendered == [
        "no equivalent (at module level it runs at collection, before any marker applies: add "
        "'import yaml' to the session contract instead)",
        'no equivalent (inside arrays(), not a test: call envguard.require("import numpy") there)',
        'no equivalent (inside helper(), not a test: call envguard.require("import scipy") there)',
        '@pytest.mark.requires("import numpy")',
        "no equivalent (minversion=/reason= are not carried over: minversion compares the "
        "module's __version__ (a package line compares the distribution's))",
    ]


def test_marks_in_pytestmark_aliases_params_and_applymarker(tmp_path: Path) -> None:
    source = textwrap.dedent("""\
        import sys

        import pytest
        from pytest import mark

        pytestmark = [pytest.mark.skipif(sys.platform != "linux", reason="linux"), pytest.mark.slow]
        requires_git = pytest.mark.skipif(sys.version_info < (3, 9), reason="3.9")


        @pytest.mark.parametrize("x", [1, pytest.param(2, marks=mark.skipif(sys.version_info < (3, 12), reason="new"))])
        def test_params(x):
            pass


        def test_runtime(request):
            request.applymarker(pytest.mark.skipif(sys.platform != "linux", reason="x"))


        class TestK:
            pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="linux")
        """)
    path = tmp_path / "test_marks.py"
    path.write_text(source, encoding="utf-8")
    report = migrate([path], write=True)
    assert [finding.convertible for finding in report.findings] == [True, True, True, False, True]
    assert "added at run time by applymarker" in report.findings[3].why_not  # type: ignore[operator]
    assert path.read_text(encoding="utf-8") == source.replace(
        'pytest.mark.skipif(sys.platform != "linux", reason="linux"), pytest.mark.slow]',
        'pytest.mark.requires("platform linux", reason="linux"), pytest.mark.slow]').replace(
        'requires_git = pytest.mark.skipif(sys.version_info < (3, 9), reason="3.9")',
        'requires_git = pytest.mark.requires("python >=3.9", reason="3.9")').replace(
        'marks=mark.skipif(sys.version_info < (3, 12), reason="new")',
        'marks=mark.requires("python >=3.12", reason="new")').replace(
        '    pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="linux")',
        '    pytestmark = pytest.mark.requires("platform linux", reason="linux")')


def test_write_changes_only_the_calls_and_reports_what_it_left(tmp_path: Path) -> None:
    source = textwrap.dedent('''\
        """Tests that need things."""  # a comment that stays
        from __future__ import annotations

        import shutil
        import unittest

        import torch


        class TestGpu(unittest.TestCase):
            @unittest.skipUnless(torch.cuda.is_available(),
                                 "needs CUDA")  # why
            def test_kernel(self):
                x = 1  # odd   spacing stays

            @unittest.skipIf(shutil.which("nvcc") is None, reason="no nvcc")
            def test_compile(self):
                pass
        ''')
    path = tmp_path / "test_gpu.py"
    path.write_text(source, encoding="utf-8")
    out = io.StringIO()
    assert run_migrate([path], True, out=out) == 0
    assert path.read_text(encoding="utf-8") == textwrap.dedent('''\
        """Tests that need things."""  # a comment that stays
        from __future__ import annotations

        import pytest
        import shutil
        import unittest

        import torch


        class TestGpu(unittest.TestCase):
            @pytest.mark.requires("gpus >=1", reason="needs CUDA")  # why
            def test_kernel(self):
                x = 1  # odd   spacing stays

            @pytest.mark.requires("command nvcc", reason="no nvcc")
            def test_compile(self):
                pass
        ''')
    report = out.getvalue()
    assert f"--- a/{path}\n+++ b/{path}\n" in report
    assert "+    @pytest.mark.requires(\"command nvcc\", reason=\"no nvcc\")" in report
    assert f"{path}: added 'import pytest' for the requires marker" in report
    assert f"{path}: imports no longer used (not removed): shutil" in report
    assert "2 skip conditions found: 2 convertible, 0 not; 1 file rewritten" in report


def test_non_ascii_text_before_a_call_keeps_its_columns(tmp_path: Path) -> None:
    source = ('import sys\nimport pytest\n\n\nclass TestÜ:\n    """Grüße."""\n\n'
              '    x = "ü"; mark = pytest.mark.skipif(sys.platform != "linux", reason="ä")\n')
    path = tmp_path / "test_u.py"
    path.write_text(source, encoding="utf-8")
    migrate([path], write=True)
    assert path.read_text(encoding="utf-8") == source.replace(
        'pytest.mark.skipif(sys.platform != "linux", reason="ä")',
        'pytest.mark.requires("platform linux", reason="ä")')


@pytest.mark.parametrize(("name", "content", "why"), [
    ("test_syntax.py", b"import pytest\n\n@pytest.mark.skipif(sys.platform != 'linux'\ndef test():\n",
     "cannot parse (SyntaxError: "),
    ("test_latin1.py", "# -*- coding: latin-1 -*-\nimport sys, pytest\n# caf\xe9\n"
                       "@pytest.mark.skipif(sys.platform != 'linux', reason='x')\n"
                       "def test():\n    pass\n".encode("latin-1"), "not UTF-8 (byte 50)"),
    ("test_cr.py", b"import sys, pytest\r@pytest.mark.skipif(sys.platform != 'linux')\rdef t(): pass\r",
     "lone carriage returns as line ends"),
])
def test_files_it_cannot_read_are_reported_and_untouched(tmp_path: Path, name: str, content: bytes,
                                                         why: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    out = io.StringIO()
    assert run_migrate([tmp_path], True, out=out) == 1
    assert path.read_bytes() == content
    assert f"{path}: {why}" in out.getvalue()
    assert "1 file not read" in out.getvalue()


def test_unusual_decorators_are_reported_and_the_file_untouched(tmp_path: Path) -> None:
    content = textwrap.dedent("""\
        import sys
        import pytest

        CONDITIONS = [sys.platform == "win32"]
        skip = pytest.mark.skipif


        @pytest.mark.skipif(*CONDITIONS, reason="splat")
        @pytest.mark.skipif
        @(pytest.mark.skipif(sys.platform == "win32", reason="parenthesised"))
        @skip(sys.platform == "darwin", reason="through an alias of the function")
        def test_odd():
            pass
        """).encode()
    path = tmp_path / "test_odd.py"
    path.write_bytes(content)
    out = io.StringIO()
    assert run_migrate([path], True, out=out) == 0
    assert path.read_bytes() == content
    report = out.getvalue()
    assert "3 skip conditions found: 0 convertible, 3 not" in report
    assert ":8: skipif(*CONDITIONS) → no equivalent (arguments passed with * or **)" in report
    assert ":9: pytest.mark.skipif → no equivalent (a skip decorator without a call" in report
    assert ":10: skipif(sys.platform == \"win32\") → no equivalent" in report
    assert "---" not in report


def test_directories_are_searched_for_test_files(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "tests").mkdir(parents=True)
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    for name in ("pkg/tests/test_a.py", "pkg/tests/b_test.py", "pkg/tests/conftest.py",
                 "pkg/tests/helper.py", ".venv/lib/test_x.py"):
        (tmp_path / name).write_text("", encoding="utf-8")
    assert [path.relative_to(tmp_path).as_posix() for path in migration.test_files([tmp_path])] == [
        "pkg/tests/b_test.py", "pkg/tests/conftest.py", "pkg/tests/test_a.py"]
    assert run_migrate([tmp_path / "nowhere"], False, out=io.StringIO(), err=io.StringIO()) == 4


# -- the suite, before and after --write ------------------------------------------------------------

FAKE_TORCH = """\
\"\"\"A CPU-only build of torch, as far as these tests ask: no CUDA.\"\"\"
class cuda:
    @staticmethod
    def is_available():
        return False

    @staticmethod
    def device_count():
        return 0

class version:
    cuda = None
"""

SUITE = {
    "test_versions.py": """
        import sys
        import pytest

        @pytest.mark.skipif(sys.version_info < (3, 8), reason="3.8")
        def test_new_enough():
            pass

        @pytest.mark.skipif(sys.version_info >= (3, 8), reason="old only")
        def test_old_only():
            pass
        """,
    "test_platforms.py": f"""
        import platform
        import sys
        import pytest

        pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="linux")

        @pytest.mark.skipif(platform.machine() != {__import__("platform").machine()!r}, reason="m")
        def test_this_machine():
            pass

        @pytest.mark.skipif(platform.machine() != "s390x-never", reason="m")
        def test_other_machine():
            pass

        @pytest.mark.skipif(sys.platform == "win32", reason="posix")
        def test_posix():
            pass
        """,
    "test_commands_env.py": """
        import os
        import shutil
        import pytest

        @pytest.mark.skipif(shutil.which("sh") is None, reason="sh")
        def test_sh():
            pass

        @pytest.mark.skipif(shutil.which("envguard-no-such-tool") is None, reason="tool")
        def test_missing_tool():
            pass

        @pytest.mark.skipif("ENVGUARD_MIGRATE_SET" not in os.environ, reason="set")
        def test_set():
            pass

        @pytest.mark.skipif(not os.environ.get("ENVGUARD_MIGRATE_EMPTY"), reason="empty")
        def test_empty():
            pass

        @pytest.mark.skipif(os.environ.get("ENVGUARD_MIGRATE_MODE") != "full", reason="mode")
        def test_mode():
            pass
        """,
    "test_gpu.py": """
        import pytest
        import torch

        TEST_CUDA = torch.cuda.is_available()
        requires_two = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="2 GPUs")

        @pytest.mark.skipif(not TEST_CUDA, reason="CUDA")
        def test_cuda():
            pass

        @requires_two
        def test_two():
            pass

        @pytest.mark.skipif(torch.version.cuda is None, reason="CPU build")
        def test_cuda_build():
            pass
        """,
    "test_imports_libs.py": """
        import ctypes.util
        import pytest

        try:
            import json
            HAS_JSON = True
        except ImportError:
            HAS_JSON = False

        @pytest.mark.skipif(not HAS_JSON, reason="json")
        def test_json():
            pass

        def test_importorskip_present():
            pytest.importorskip("json")

        def test_importorskip_missing():
            pytest.importorskip("envguard_no_such_module")

        @pytest.mark.skipif(ctypes.util.find_library("c") is None, reason="libc")
        def test_libc():
            pass

        @pytest.mark.skipif(ctypes.util.find_library("envguardnosuchlib") is None, reason="x")
        def test_no_lib():
            pass
        """,
    "test_unittest_style.py": """
        import shutil
        import sys
        import unittest

        class TestU(unittest.TestCase):
            @unittest.skipUnless(sys.platform.startswith("linux"), "linux")
            def test_linux(self):
                pass

            @unittest.skipIf(shutil.which("envguard-no-such-tool") is None, "tool")
            def test_tool(self):
                pass

        @unittest.skipUnless(shutil.which("sh"), "sh")
        class TestWhole(unittest.TestCase):
            def test_in_class(self):
                pass
        """,
}


def outcomes(pytester: pytest.Pytester) -> dict[str, str]:
    """Each collected test's outcome, from pytest's own reports."""
    recorder = pytester.inline_run("-p", "no:randomly", "-p", "no:cacheprovider")
    passed, skipped, failed = recorder.listoutcomes()
    result = {report.nodeid: "passed" for report in passed}
    result.update({report.nodeid: "skipped" for report in skipped})
    result.update({report.nodeid: "failed" for report in failed})
    return result


def test_the_suite_keeps_its_outcomes_except_where_the_report_says(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    (pytester.path / "torch.py").write_text(FAKE_TORCH, encoding="utf-8")
    for name, text in SUITE.items():
        (pytester.path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    monkeypatch.setenv("ENVGUARD_MIGRATE_SET", "1")
    monkeypatch.setenv("ENVGUARD_MIGRATE_EMPTY", "")  # false for .get(), set for `env`
    monkeypatch.setenv("ENVGUARD_MIGRATE_MODE", "full")
    # One GPU visible to envguard while torch is a CPU-only build: the case the note is about.
    monkeypatch.setenv("ENVGUARD_OVERRIDE_GPUS", "1")
    monkeypatch.syspath_prepend(str(pytester.path))
    before = outcomes(pytester)
    assert len(before) == 21
    assert before["test_gpu.py::test_cuda"] == "skipped"

    out = io.StringIO()
    assert run_migrate([pytester.path], True, out=out) == 0
    report = out.getvalue()
    assert "22 skip conditions found: 20 convertible, 2 not; 6 files rewritten" in report, report
    for name in SUITE:
        assert "skipif(" not in (pytester.path / name).read_text(encoding="utf-8") or name in (
            "test_platforms.py", "test_gpu.py")
    after = outcomes(pytester)

    assert set(after) == set(before)  # the same tests collected
    changed = {nodeid for nodeid in before if before[nodeid] != after[nodeid]}
    assert changed == {"test_gpu.py::test_cuda", "test_commands_env.py::test_empty"}
    # Each change is at a place the report flagged, with the note that explains it.
    flagged = {place.rsplit("/", 1)[-1]: notes for place, notes in notes_by_place_from(report).items()}
    assert "torch-cuda" in flagged["test_gpu.py:8"]
    assert "env-empty" in flagged["test_commands_env.py:18"]


def notes_by_place_from(report: str) -> dict[str, tuple[str, ...]]:
    """The places each semantic difference in a rendered report names."""
    places: dict[str, tuple[str, ...]] = {}
    for key, text in migration.NOTES.items():
        for line in report.splitlines():
            if line.startswith(f"  - {text} ("):
                for place in line[len(f"  - {text} ("):-1].split(", "):
                    places[place] = (*places.get(place, ()), key)
    return places


def test_notes_by_place_names_the_findings(tmp_path: Path) -> None:
    source = PRELUDE + '\n\n@pytest.mark.skipif(not os.environ.get("X"), reason="x")\n' \
                       "def test_it():\n    pass\n"
    report = findings_of(tmp_path, source)
    assert list(notes_by_place(report).values()) == [("env-empty",)]


@pytest.mark.parametrize(("content", "refused"), [
    (b"", None),
    (b"\x00\x01binary", "cannot parse"),
    # Python 3.11 and 3.12 cannot parse this one; 3.10 and 3.13 can, and the walk refuses it.
    (b"import pytest\n@pytest.mark.skipif(" + b"not " * 5000 + b"X)\ndef test(): pass\n",
     "this interpreter's"),
    (b"import pytest\n@pytest.mark.skipif(" + b"not " * 600 + b"X)\ndef test(): pass\n",
     "nested too deeply"),
    (b"x = " + b"(" * 300 + b")" * 300 + b"\n", "cannot parse"),
])
def test_hostile_files_give_a_report_not_a_traceback(tmp_path: Path, content: bytes,
                                                     refused: str | None) -> None:
    if refused == "this interpreter's":
        try:
            ast.parse(content)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            refused = "cannot parse"
        else:
            refused = "nested too deeply"
    path = tmp_path / "test_hostile.py"
    path.write_bytes(content)
    report = migrate([path], write=True)
    assert path.read_bytes() == content
    if refused is None:
        assert not report.refused
    else:
        assert refused in (report.files[0].refused or "")
    assert report.render().endswith("\n")


def test_command_line_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_envguard.__main__ import main

    for argv in (["--format", "ini"], ["--write", "x.toml"], ["--suggest", "python"],
                 ["--suggest", "--migrate", "x"], ["--suggest", "--write"],
                 ["--migrate", "x", "--format", "ini"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 4, argv
    first, second = tmp_path / "test_a.py", tmp_path / "test_b.py"
    for path in (first, second):
        path.write_text("import sys, pytest\n\n@pytest.mark.skipif(sys.platform != 'linux', "
                        "reason='x')\ndef test(): pass\n", encoding="utf-8")
    capsys.readouterr()
    # argparse reads a path after --write as its value: it is one more path to migrate.
    assert main(["--migrate", str(first), "--write", str(second)]) == 0
    assert "2 skip conditions found: 2 convertible, 0 not; 2 files rewritten" in capsys.readouterr().out
    assert "requires" in second.read_text(encoding="utf-8")
