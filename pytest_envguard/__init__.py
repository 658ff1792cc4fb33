"""pytest-envguard: declare the environment a test suite expects, check it before any test runs.

The public Python API::

    from pytest_envguard import Environment, evaluate, parse_line

    verdicts = evaluate([parse_line("glibc >=2.28"), parse_line("gpus >=1")], Environment())

Everything else in the package is private. The names are imported on first
use, so importing the package (which pytest does for the plugin) costs
nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Environment", "Requirement", "RequirementError", "Status", "Verdict", "__version__",
           "evaluate", "parse_line"]

if TYPE_CHECKING:
    from pytest_envguard.checks import evaluate
    from pytest_envguard.environment import Environment
    from pytest_envguard.grammar import Requirement, RequirementError, parse_line
    from pytest_envguard.verdicts import Status, Verdict

_HOMES = {
    "parse_line": "grammar",
    "Requirement": "grammar",
    "RequirementError": "grammar",
    "Status": "verdicts",
    "Verdict": "verdicts",
    "Environment": "environment",
    "evaluate": "checks",
}


def __getattr__(name: str) -> Any:
    # PEP 562: the public names, imported when first used.
    home = _HOMES.get(name)
    if home == "grammar":
        from pytest_envguard import grammar as module
    elif home == "verdicts":
        from pytest_envguard import verdicts as module  # type: ignore[no-redef]
    elif home == "environment":
        from pytest_envguard import environment as module  # type: ignore[no-redef]
    elif home == "checks":
        from pytest_envguard import checks as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module 'pytest_envguard' has no attribute {name!r}")
    return getattr(module, name)
