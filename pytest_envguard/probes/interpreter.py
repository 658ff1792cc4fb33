"""The running interpreter: version, implementation, ABI."""

from __future__ import annotations

import sys
import sysconfig
from dataclasses import dataclass

from pytest_envguard.probes import Facts


@dataclass(frozen=True)
class PythonFacts(Facts):
    version: str  # "3.11.7"
    implementation: str  # "cpython"
    implementation_version: str
    executable: str
    prefix: str
    base_prefix: str


@dataclass(frozen=True)
class AbiFacts(Facts):
    free_threaded: bool
    abis: tuple[str, ...]  # every ABI tag this interpreter accepts, best first: ("cp313t", …)


def probe_python() -> PythonFacts:
    info = sys.version_info
    version = f"{info.major}.{info.minor}.{info.micro}"
    if info.releaselevel != "final":
        version += {"alpha": "a", "beta": "b", "candidate": "rc"}.get(info.releaselevel, "")
        version += str(info.serial)
    impl = sys.implementation
    impl_version = f"{impl.version.major}.{impl.version.minor}.{impl.version.micro}"
    return PythonFacts(
        version=version,
        implementation=impl.name,
        implementation_version=impl_version,
        executable=sys.executable,
        prefix=sys.prefix,
        base_prefix=sys.base_prefix,
    )


def probe_abi() -> AbiFacts:
    from packaging import tags

    abis: list[str] = []
    for tag in tags.sys_tags():
        if tag.abi not in abis and tag.abi != "none":
            abis.append(tag.abi)
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return AbiFacts(free_threaded=free_threaded, abis=tuple(abis))
