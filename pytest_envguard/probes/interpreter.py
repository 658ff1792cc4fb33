"""The running interpreter: its version and implementation (``python``, ``implementation``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from pytest_envguard.probes import Facts


@dataclass(frozen=True)
class PythonFacts(Facts):
    """The running interpreter: its version and implementation, as PEP 508 names them."""

    version: str  # "3.11.7", "3.14.0rc1": PEP 508's python_full_version
    implementation: str  # "cpython": PEP 508's implementation_name
    implementation_version: str  # PEP 508's implementation_version
    executable: str
    prefix: str
    base_prefix: str
    python_implementation: str = ""  # "CPython": PEP 508's platform_python_implementation


def _full_version(info: Any) -> str:
    """A ``sys.version_info``-like tuple as PEP 508 writes it: ``3.14.0rc1``."""
    version = f"{info.major}.{info.minor}.{info.micro}"
    if info.releaselevel != "final":
        version += {"alpha": "a", "beta": "b", "candidate": "rc"}.get(info.releaselevel, "")
        version += str(info.serial)
    return version


#: ``sys.implementation.name`` → what ``platform.python_implementation()`` says.
PYTHON_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalVM",
                          "ironpython": "IronPython", "jython": "Jython"}


def probe_python() -> PythonFacts:
    impl = sys.implementation
    implementation = PYTHON_IMPLEMENTATIONS.get(impl.name)
    if implementation is None:  # an implementation not in the table: ask (and pay the import)
        import platform

        implementation = platform.python_implementation()
    return PythonFacts(
        version=_full_version(sys.version_info),
        implementation=impl.name,
        implementation_version=_full_version(impl.version),
        executable=sys.executable,
        prefix=sys.prefix,
        base_prefix=sys.base_prefix,
        python_implementation=implementation,
    )
