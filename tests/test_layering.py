"""The architecture of DESIGN.md §4, enforced: the import direction, who may import
pytest and the native libraries, no dynamic code, a check for every key.

Every detector below is a function of source text, and each one is run on a bad
sample too, so a rule that silently stopped checking would fail here.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "pytest_envguard"
SOURCES = sorted(PACKAGE.rglob("*.py"))

#: The layers, lowest first: a module may import its own layer and the ones below.
LAYERS: list[set[str]] = [
    # "" and "__version__": the package itself, which holds only its version and the
    # lazily imported public names.
    {"units", "versions", "grammar", "verdicts", "cuda_visibility", "hints", "native_versions",
     "targets", "", "__version__"},
    {"probes"},
    {"environment"},
    {"checks"},
    {"render"},
    {"option_table", "options", "plugin", "hooks", "contract", "per_test", "xdist", "ci_reports",
     "adopt", "merge", "__main__"},
]


def layer_of(module: str) -> int:
    """``pytest_envguard.probes.elf`` → the layer of ``probes``."""
    top = module.removeprefix("pytest_envguard").lstrip(".").split(".")[0]
    return next(index for index, names in enumerate(LAYERS) if top in names)


def runtime_imports(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every import outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(source)
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test)
                   for statement in block.body for node in ast.walk(statement)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if node.module == "pytest_envguard"]
    return found


def direction_violations(module: str, source: str) -> list[str]:
    """Imports of ``module`` that go up the layers, or import the plugin, or the hooks
    the plugin exposes (only the plugin imports those)."""
    own = layer_of(module)
    bad = []
    for line, name in runtime_imports(source):
        if not name.startswith("pytest_envguard") or name == "pytest_envguard":
            continue
        if name.startswith("pytest_envguard.plugin") or layer_of(name) > own or (
                name.startswith("pytest_envguard.hooks") and module != "pytest_envguard.plugin"):
            bad.append(f"{module}:{line} imports {name}")
    return bad


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(part for part in parts if part != "__init__")


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_there_are_sources() -> None:
    assert len(SOURCES) >= 25


@pytest.mark.parametrize("path", [p for p in SOURCES if p.name != "__init__.py" or p.parent != PACKAGE],
                         ids=relative)
def test_imports_go_down_the_layers(path: Path) -> None:
    assert direction_violations(module_name(path), path.read_text(encoding="utf-8")) == []


def test_the_direction_detector_detects() -> None:
    assert direction_violations("pytest_envguard.probes.elf",
                                "from pytest_envguard.checks import evaluate\n") != []
    assert direction_violations("pytest_envguard.render", "import pytest_envguard.plugin\n") != []
    assert direction_violations("pytest_envguard.contract", "import pytest_envguard.hooks\n") != []
    assert direction_violations("pytest_envguard.plugin", "import pytest_envguard.hooks\n") == []
    assert direction_violations("pytest_envguard.grammar",
                                "from pytest_envguard import environment\n") != []
    # Imports only a type checker sees do not count; downward ones are fine.
    assert direction_violations("pytest_envguard.probes.elf", (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from pytest_envguard.checks import evaluate\n"
        "from pytest_envguard.units import parse_size\n")) == []


def third_party(source: str) -> set[str]:
    return {name.split(".")[0] for _, name in runtime_imports(source)}


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_only_probes_import_native_libraries(path: Path) -> None:
    native = third_party(path.read_text(encoding="utf-8")) & {"psutil", "pynvml", "elftools",
                                                              "rattler"}
    if not relative(path).startswith("probes/"):
        assert not native, f"{relative(path)} imports {native}: only probes/ may"


def runtime_dependencies() -> set[str]:
    """The import names of what pyproject.toml installs with the package (its
    dependencies and the optional ``conda`` extra), read from each installed
    distribution's own file list (on Python 3.10, ``packages_distributions`` reads only
    ``top_level.txt``, which flit- and maturin-built wheels such as packaging's and
    py-rattler's do not have)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from pytest_envguard.probes._io import load_toml

    project = load_toml(str(PACKAGE.parent / "pyproject.toml"), 1 << 20)["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["conda"]]
    modules: set[str] = set()
    for line in declared:
        name = re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0]
        try:
            files = distribution(name).files or []
        except PackageNotFoundError:  # a dependency for other Pythons (tomli)
            continue
        for file in files:
            top = file.parts[0]
            if top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__"):
                continue
            if len(file.parts) > 1 or file.suffix in (".py", ".so"):
                modules.add(top if len(file.parts) > 1 else top.split(".")[0])
    return modules


#: Imported only where present, never required: the plugins whose hooks we join, and
#: tomllib (the standard library's from Python 3.11) with tomli, its stand-in before.
OPTIONAL_INTEGRATIONS = {"pytest_envguard", "pytest_metadata", "xdist", "tomli", "tomllib"}


def test_the_package_imports_only_what_it_declares() -> None:
    """Every third-party module the package imports at run time is a declared runtime
    dependency: pyelftools, a test dependency only (the ELF reader's oracle), is imported
    by no module, not even a probe."""
    allowed = runtime_dependencies()
    assert {"psutil", "pynvml", "packaging", "pytest", "_pytest", "rattler"} <= allowed
    assert "elftools" not in allowed
    for path in SOURCES:
        imported = third_party(path.read_text(encoding="utf-8"))
        foreign = imported - set(sys.stdlib_module_names) - allowed - OPTIONAL_INTEGRATIONS
        assert not foreign, f"{relative(path)} imports {sorted(foreign)}: not a runtime dependency"


PYTEST_LAYER = {"plugin.py", "hooks.py", "contract.py", "per_test.py", "xdist.py", "ci_reports.py"}


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_only_the_plugin_layer_imports_pytest(path: Path) -> None:
    imported = third_party(path.read_text(encoding="utf-8"))
    if relative(path) not in PYTEST_LAYER:
        assert not imported & {"pytest", "_pytest"}, relative(path)
    assert "_pytest" not in imported, f"{relative(path)} imports private _pytest"


def test_the_import_detectors_detect() -> None:
    assert "psutil" in third_party("def f():\n    import psutil\n")
    assert "_pytest" in third_party("from _pytest.config import Config\n")
    assert "elftools" in third_party("from elftools.elf.structs import ELFStructs\n")
    assert "rattler" in third_party("def f():\n    from rattler.exceptions import IoError\n")


FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_METHODS = {"import_module", "__import__", "eval", "exec",  # re.compile is fine
                     # other ways to run or import code a string names:
                     "run_module", "run_path", "resolve_name", "exec_module", "load_module",
                     "spec_from_file_location"}


def dynamic_code(source: str) -> list[str]:
    """Calls that run or import code a string names, and ``shell=`` other than False."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name) and function.id in FORBIDDEN_BUILTINS:
            found.append(f"{node.lineno}: {function.id}()")
        elif isinstance(function, ast.Attribute) and function.attr in FORBIDDEN_METHODS:
            found.append(f"{node.lineno}: .{function.attr}()")
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                found.append(f"{node.lineno}: shell=")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_no_dynamic_code(path: Path) -> None:
    assert dynamic_code(path.read_text(encoding="utf-8")) == []


def test_the_dynamic_code_detector_detects() -> None:
    sample = ("eval('1')\nimport subprocess, importlib\nsubprocess.run('x', shell=True)\n"
              "importlib.import_module('os')\nsubprocess.run(['x'], shell=False)\n")
    assert [line.split(":")[0] for line in dynamic_code(sample)] == ["1", "3", "4"]


def test_every_key_has_a_check() -> None:
    from pytest_envguard.checks import DOMAINS, all_checks
    from pytest_envguard.grammar import KEYS

    assert set(DOMAINS) == set(KEYS)
    assert set(all_checks()) == set(KEYS)
    for key, check in all_checks().items():
        assert check.__module__ == f"pytest_envguard.checks.{DOMAINS[key]}", key


def test_the_public_api() -> None:
    import pytest_envguard

    assert sorted(pytest_envguard.__all__) == sorted(
        ["parse_line", "Requirement", "RequirementError", "Status", "Verdict", "Environment",
         "evaluate", "__version__"])
    for name in pytest_envguard.__all__:
        assert getattr(pytest_envguard, name) is not None
    with pytest.raises(AttributeError):
        pytest_envguard.nothing_of_that_name  # noqa: B018


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    code = (
        "import sys, pytest_envguard.plugin\n"
        "heavy = ['psutil', 'pynvml', 'elftools', 'packaging.specifiers', 'packaging.markers',"
        " 'pytest_envguard.grammar', 'pytest_envguard.checks', 'pytest_envguard.environment',"
        " 'pytest_envguard.hints']\n"
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


def test_the_build_configuration_finds_every_package() -> None:
    """What ``pip install .`` installs (the README's first command) holds every package of
    the source tree: a subpackage missing from the build configuration would pass every
    test of an editable install and fail for every user. Asked of setuptools itself, with
    the configuration pyproject.toml gives it (building a wheel would need the network)."""
    from setuptools import find_packages

    from pytest_envguard.probes._io import load_toml

    config = load_toml(str(PACKAGE.parent / "pyproject.toml"), 1 << 20)
    found = find_packages(where=str(PACKAGE.parent),
                          **config["tool"]["setuptools"]["packages"]["find"])
    on_disk = {module_name(path) for path in PACKAGE.rglob("__init__.py")}
    assert set(found) == on_disk
    assert config["tool"]["setuptools"]["package-data"]["pytest_envguard"] == ["schema.json"]


def test_the_plugin_exposes_every_hook_the_hooks_module_defines() -> None:
    """pytest registers the module of the entry point, ``plugin``: a hook or fixture
    defined in ``hooks`` and not imported there would silently never run."""
    from pytest_envguard import hooks, plugin

    defined = {name for name, value in vars(hooks).items()
               if name.startswith("pytest_") and callable(value)}
    assert {"pytest_runtest_setup", "pytest_runtestloop"} <= defined
    assert defined | {"envguard", "STATE"} <= set(plugin.__all__) <= set(vars(plugin))
