"""The import rules of STYLE.md and the no-dynamic-code rule, over the package source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "pytest_envguard"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_there_are_sources() -> None:
    assert len(SOURCES) >= 10


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_only_probes_import_native_libraries(path: Path) -> None:
    native = imported_modules(path) & {"psutil", "pynvml", "elftools"}
    if not relative(path).startswith("probes/"):
        assert not native, f"{relative(path)} imports {native}: only probes/ may"


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_only_the_plugin_layer_imports_pytest(path: Path) -> None:
    if relative(path) not in ("plugin.py", "render.py") and not relative(path).startswith("pytest_layer"):
        assert not imported_modules(path) & {"pytest", "_pytest"}, relative(path)
    assert "_pytest" not in imported_modules(path), f"{relative(path)} imports private _pytest"


FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_METHODS = {"import_module", "__import__", "eval", "exec",  # re.compile is fine
                     # other ways to run or import code a string names:
                     "run_module", "run_path", "resolve_name", "exec_module", "load_module",
                     "spec_from_file_location"}


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_no_dynamic_code(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name):
                assert function.id not in FORBIDDEN_BUILTINS, f"{relative(path)}:{node.lineno}"
            elif isinstance(function, ast.Attribute):
                assert function.attr not in FORBIDDEN_METHODS, f"{relative(path)}:{node.lineno}"
            for keyword in node.keywords:
                if keyword.arg == "shell":
                    assert isinstance(keyword.value, ast.Constant) and keyword.value.value is False, (
                        f"{relative(path)}:{node.lineno} passes shell=")


def test_forbidden_call_detector_detects() -> None:
    # The scan above must be able to fail: run it on a sample that breaks each rule.
    sample = "eval('1')\nimport subprocess\nsubprocess.run('x', shell=True)\n"
    calls = [n for n in ast.walk(ast.parse(sample)) if isinstance(n, ast.Call)]
    names = {c.func.id if isinstance(c.func, ast.Name) else c.func.attr for c in calls}  # type: ignore[union-attr]
    assert "eval" in names
    assert any(k.arg == "shell" for c in calls for k in c.keywords)


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    code = (
        "import sys, pytest_envguard.plugin\n"
        "heavy = ['psutil', 'pynvml', 'elftools', 'packaging.specifiers', 'packaging.markers',"
        " 'pytest_envguard.grammar', 'pytest_envguard.checks', 'pytest_envguard.environment']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_importing_the_package_changes_nothing(tmp_path: Path) -> None:
    code = (
        "import os, sys; before = dict(os.environ)\n"
        "import pytest_envguard, pytest_envguard.plugin, pytest_envguard.checks, pytest_envguard.environment\n"
        "assert dict(os.environ) == before\n"
        "print(sorted(os.listdir('.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=tmp_path)
    assert result.stdout.strip() == "[]"
