"""The interpreter's ABI: free-threaded or not, and the ABI tags it accepts (``abi``)."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_envguard.probes import Facts


@dataclass(frozen=True)
class AbiFacts(Facts):
    """Whether the interpreter is free-threaded, and the ABI tags it accepts."""

    free_threaded: bool
    abis: tuple[str, ...]  # every ABI tag this interpreter accepts, best first: ("cp313t", …)


def probe_abi() -> AbiFacts:
    from packaging import tags

    abis: list[str] = []
    for tag in tags.sys_tags():
        if tag.abi not in abis and tag.abi != "none":
            abis.append(tag.abi)
    import sysconfig

    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return AbiFacts(free_threaded=free_threaded, abis=tuple(abis))
