"""The wheel tags this interpreter would accept with another C library (a rehearsal).

:func:`probe_supported_tags_for` answers "which tags would ``packaging.tags.sys_tags()``
give on this machine if its glibc were 2.17 (or it had musl 1.2 instead)?": the
platform tags ``packaging.tags.platform_tags()`` gives here, with the manylinux and
musllinux ones replaced by those packaging computes for the rehearsed C library
(``packaging/_manylinux.py`` and ``_musllinux.py``: every glibc ``2.x`` from the
rehearsed one down to 2.17, or 2.5 on x86; the legacy ``manylinux1``/``2010``/``2014``
names beside ``2_5``/``2_12``/``2_17``; musl ``1.x`` down to ``1.0``), then the tags
``sys_tags`` builds from them. With the real C library's version the list is exactly
``sys_tags()``'s (a test compares the two).

Two things packaging consults are the real machine's and stay out of a rehearsal:
a ``_manylinux`` module (a distribution's own verdict on its glibc) is not asked,
and the interpreter's ELF header decides, as in packaging, whether a 32-bit
``i686``/``armv7l`` interpreter may take manylinux wheels at all.
"""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Iterator, Sequence

from pytest_envguard.probes import describe_error
from pytest_envguard.probes.distributions import SupportedTags

#: packaging's ``_ALLOWED_ARCHS``: machines whose interpreters take manylinux wheels
#: without an ELF header check.
_ALLOWED_ARCHS = frozenset({"x86_64", "aarch64", "ppc64", "ppc64le", "s390x", "loongarch64",
                            "riscv64"})

#: packaging's ``_LEGACY_MANYLINUX_MAP`` (PEP 599, 571, 513).
_LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}

#: packaging's ``_LAST_GLIBC_MINOR`` guess for a glibc major before the current one.
_LAST_MINOR = 50

_LIBC_PLATFORM = re.compile(r"manylinux|musllinux")


def _major_minor(version: str, what: str) -> tuple[int, int]:
    """``"2.17"`` → (2, 17), read as packaging reads a glibc version (trailing text after
    the minor is ignored). Raises ``ValueError`` naming ``what``."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(f"{what} {version!r} is not a version with a major and a minor "
                         "number (e.g. 2.17)")
    return int(match.group(1)), int(match.group(2))


def manylinux_platforms(glibc: tuple[int, int], archs: Sequence[str]) -> Iterator[str]:
    """The manylinux platform tags a glibc of version ``glibc`` takes, as
    ``packaging._manylinux.platform_tags`` orders them (its ``_manylinux`` module aside)."""
    too_old = (2, 4) if set(archs) & {"x86_64", "i686"} else (2, 16)
    maxima = [glibc] + [(major, _LAST_MINOR) for major in range(glibc[0] - 1, 1, -1)]
    for arch in archs:
        for top in maxima:
            lowest = too_old[1] if top[0] == too_old[0] else -1
            for minor in range(top[1], lowest, -1):
                yield f"manylinux_{top[0]}_{minor}_{arch}"
                legacy = _LEGACY.get((top[0], minor))
                if legacy:
                    yield f"{legacy}_{arch}"


def musllinux_platforms(musl: tuple[int, int], archs: Sequence[str]) -> Iterator[str]:
    """The musllinux platform tags of musl ``musl``, as ``packaging._musllinux`` orders them."""
    for arch in archs:
        for minor in range(musl[1], -1, -1):
            yield f"musllinux_{musl[0]}_{minor}_{arch}"


def _takes_manylinux(archs: Sequence[str], executable: str) -> bool:
    """packaging's ``_have_compatible_abi``: a 32-bit ARM interpreter must be hard-float,
    an ``i686`` one must really be 32-bit x86."""
    header = _elf_header(executable)
    if "armv7l" in archs:
        return header is not None and header[:3] == (1, 1, 40) and \
            header[3] & 0xFF000000 == 0x05000000 and header[3] & 0x400 == 0x400
    if "i686" in archs:
        return header is not None and header[:3] == (1, 1, 3)
    return any(arch in _ALLOWED_ARCHS for arch in archs)


def _elf_header(path: str) -> tuple[int, int, int, int] | None:
    """(class, data, machine, flags) of a 32-bit little-endian ELF file's header."""
    from pytest_envguard.probes._io import TooLarge, open_regular

    try:
        with open_regular(path) as file:
            data = file.read(52)
    except (OSError, TooLarge):
        return None
    if len(data) < 40 or data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        return None
    machine, = struct.unpack_from("<H", data, 18)
    flags, = struct.unpack_from("<I", data, 36)
    return data[4], data[5], machine, flags


def rehearsed_platforms(real: Sequence[str], glibc: str | None, musl: str | None, *,
                        packaging_version: tuple[int, ...],
                        executable: str = sys.executable) -> list[str]:
    """``real`` (``packaging.tags.platform_tags()`` here) with its manylinux and musllinux
    tags replaced by those of the rehearsed C libraries (None: absent), where packaging
    puts them. Raises ``ValueError`` for a version that does not parse."""
    archs = [platform.removeprefix("linux_") for platform in real if platform.startswith("linux_")]
    rehearsed: list[str] = []
    if glibc is not None:
        version = _major_minor(glibc, "glibc")
        if any(platform.startswith("manylinux") for platform in real) or \
                _takes_manylinux(archs, executable):
            rehearsed += manylinux_platforms(version, archs)
    if musl is not None:
        rehearsed += musllinux_platforms(_major_minor(musl, "musl"), archs)
    kept = [platform for platform in real if not _LIBC_PLATFORM.match(platform)]
    first = next((index for index, platform in enumerate(real)
                  if _LIBC_PLATFORM.match(platform)), None)
    if first is None:
        # Where packaging would have put them: after the linux_ tags from packaging 26.3
        # on, before them earlier (its changelog, 26.3: "native linux_* platform tags
        # are now ordered before manylinux and musllinux tags").
        linux = [index for index, platform in enumerate(kept) if platform.startswith("linux_")]
        after = packaging_version >= (26, 3)
        first = (linux[-1] + 1 if after else linux[0]) if linux else 0
    else:
        first = sum(1 for platform in real[:first] if not _LIBC_PLATFORM.match(platform))
    return kept[:first] + rehearsed + kept[first:]


def tags_for_platforms(platforms: Sequence[str]) -> list[str]:
    """``packaging.tags.sys_tags()``, built on ``platforms`` instead of this machine's."""
    from packaging import tags

    name = tags.interpreter_name()
    found = list(tags.cpython_tags(platforms=platforms) if name == "cp"
                 else tags.generic_tags(platforms=platforms))
    interpreter = ("pp3" if name == "pp" else "cp" + tags.interpreter_version() if name == "cp"
                   else None)
    found += tags.compatible_tags(interpreter=interpreter, platforms=platforms)
    return [str(tag) for tag in found]


def probe_supported_tags_for(glibc: str | None, musl: str | None) -> SupportedTags:
    """The wheel tags this interpreter would accept on this machine with glibc ``glibc``
    and musl ``musl`` (None: no such library)."""
    import packaging
    from packaging import tags

    try:
        version = tuple(int(part) for part in re.findall(r"\d+", packaging.__version__)[:2])
        platforms = rehearsed_platforms(list(tags.platform_tags()), glibc, musl,
                                        packaging_version=version)
        return SupportedTags(tuple(tags_for_platforms(platforms)))
    except (OSError, ValueError) as error:
        return SupportedTags((), reason=describe_error(error) if isinstance(error, OSError)
                             else str(error))
