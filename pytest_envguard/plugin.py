"""The module pytest loads (the ``pytest11`` entry point ``envguard``): the hooks, the
``requires`` marker, the ``envguard`` fixture, the session's state key and the exit
codes, defined in :mod:`pytest_envguard.hooks`.

pytest rewrites the asserts of every module of a distribution with a ``pytest11``
entry point, so that a plugin's asserts explain themselves. Each module it rewrites
is loaded through its import hook instead of Python's: its own cache of rewritten code
(read with a slow unmarshal), or, where no such cache can be written
(``PYTHONDONTWRITEBYTECODE``, a read-only install), a parse, a rewrite and a compile of
the source in every run. None of the plugin's modules needs it (their asserts are
invariants, not tests), and on a one-test suite it cost more than the plugin's own work
(with the cheap contract, the run took 5% more instructions with pytest's cache and 41%
more without it; ``benchmarks/bench_instructions.py``). So the
package is taken off the hook's list before anything else of it is imported, and this
module, which the hook has already loaded, is kept this small.
"""

from __future__ import annotations

import sys


def _load_without_rewriting(package: str) -> None:
    """Take ``package`` off the names pytest's assertion-rewriting hook rewrites: the set
    ``_must_rewrite`` and the answers it cached from it (the hook's private state, the
    same from pytest 3 to 9). Where a pytest keeps them otherwise, nothing is done: the
    modules are rewritten, which costs time and changes nothing else."""
    for finder in sys.meta_path:
        marked = getattr(finder, "_must_rewrite", None)
        if not isinstance(marked, set) or package not in marked:
            continue
        marked.discard(package)
        answers = getattr(finder, "_marked_for_rewrite_cache", None)
        if isinstance(answers, dict):
            for name in [name for name in answers
                         if name == package or name.startswith(f"{package}.")]:
                del answers[name]


_load_without_rewriting("pytest_envguard")

from pytest_envguard.hooks import (  # noqa: E402 (after the package left the hook's list)
    EXIT_CONTRACT_UNMET,
    STATE,
    EnvguardState,
    envguard,
    pytest_addoption,
    pytest_collection,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_report_header,
    pytest_runtest_setup,
    pytest_runtestloop,
    pytest_sessionfinish,
    pytest_sessionstart,
    pytest_terminal_summary,
)

__all__ = ["EXIT_CONTRACT_UNMET", "STATE", "EnvguardState", "envguard", "pytest_addoption",
           "pytest_collection", "pytest_collection_finish", "pytest_collection_modifyitems",
           "pytest_configure", "pytest_report_header", "pytest_runtest_setup",
           "pytest_runtestloop",
           "pytest_sessionfinish", "pytest_sessionstart", "pytest_terminal_summary"]
