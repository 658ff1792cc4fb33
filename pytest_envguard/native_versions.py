"""Library versions finer than the soname: where each well-known library keeps its release.

A soname carries the major version at most (``libssl.so.3``), while a contract line
like ``library ssl >=3.0.13`` needs the release. Each rule below says what the
number means for one library and where to read it, best source first, with the
reference the knowledge comes from. A library with no rule is versioned by its
real file's name (``libcudart.so.12`` → ``libcudart.so.12.4.127``) and otherwise by
its soname alone — and a specifier finer than that cannot be decided
(:func:`decide` says so), which the ``library`` check reports as ``unknown``.

Pure: the probe (:func:`pytest_envguard.probes.loader.read_version`) reads files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """One place a library's release can be read."""

    kind: str  # "file name", "version string", "version definitions", "compiler comment", "wheel"
    pattern: str = ""  # version string / comment: a regex whose groups make the version
    section: str = ".rodata"  # the ELF section the string lives in
    companion: str = ""  # read it from the library this one needs whose name starts so
    family: str = ""  # version definitions: the family ("GLIBCXX")
    template: str = ""  # version definitions: "6.0.{2}" from the parts of the highest one
    wheels: tuple[str, ...] = ()  # wheel: distributions whose version is the library's


@dataclass(frozen=True)
class Rule:
    """How one library's release is read, and what the number means."""

    meaning: str
    sources: tuple[Source, ...]
    reference: str
    # Whether the soname's number is the start of that release (libssl.so.3: OpenSSL
    # 3.x.y); where it counts something else (libgomp.so.1: not GCC 1), it says nothing.
    soname_is_release: bool = True


FILE_NAME_SOURCE = Source("file name")

_OPENSSL = r"OpenSSL (\d+)\.(\d+)\.(\d+)([a-z]?)[ \-]"
_OPENSSL_MEANING = ("the OpenSSL release (a letter release reads as a fourth number: "
                    "1.1.1w is 1.1.1.23)")
_OPENSSL_REFERENCE = ("OpenSSL's OpenSSL_version(OPENSSL_VERSION) text ('OpenSSL 3.0.13 30 Jan "
                      "2024'), kept in libcrypto's .rodata; the letter counts as "
                      "OPENSSL_VERSION_NUMBER's patch field does (a = 1)")


def _nvidia(*projects: str) -> Source:
    return Source("wheel", wheels=projects)


#: Library stem → how its release is read. References: each rule's ``reference``.
LIBRARY_VERSIONS: dict[str, Rule] = {
    "libssl": Rule(_OPENSSL_MEANING, (
        FILE_NAME_SOURCE, Source("version string", _OPENSSL, companion="libcrypto")),
        _OPENSSL_REFERENCE),
    "libcrypto": Rule(_OPENSSL_MEANING, (FILE_NAME_SOURCE, Source("version string", _OPENSSL)),
                      _OPENSSL_REFERENCE),
    "libz": Rule("the zlib release", (
        FILE_NAME_SOURCE, Source("version string", r"(?:deflate|inflate) (\d+\.\d+(?:\.\d+)*)")),
        "zlib's deflate_copyright and inflate_copyright strings (' deflate 1.2.13 Copyright …'), "
        "and the libz.so.1.2.13 file name of its install"),
    "libstdc++": Rule("the libstdc++ library version 6.0.N", (
        FILE_NAME_SOURCE,
        Source("version definitions", family="GLIBCXX", template="6.0.{2}")),
        "GCC's libstdc++ manual, 'ABI Policy and Guidelines': libstdc++.so.6.0.N defines "
        "the symbol versions up to GLIBCXX_3.4.N"),
    "libgomp": Rule("the GCC release it was built by", (
        Source("compiler comment", r"GCC: \([^)]*\) (\d+\.\d+(?:\.\d+)?)", section=".comment"),),
        "libgomp is part of GCC; its .comment section holds 'GCC: (…) X.Y.Z' unless the "
        "distribution stripped it (Debian does)", soname_is_release=False),
    "libcudnn": Rule("the cuDNN release", (
        FILE_NAME_SOURCE, _nvidia("nvidia-cudnn-cu12", "nvidia-cudnn-cu13", "nvidia-cudnn-cu11")),
        "NVIDIA's cuDNN installation guide (libcudnn.so.9 → libcudnn.so.9.Y.Z) and the "
        "nvidia-cudnn-cuXY wheels on pypi.org, versioned as the library"),
    "libcudart": Rule("the CUDA runtime release", (
        FILE_NAME_SOURCE, _nvidia("nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime",
                                  "nvidia-cuda-runtime-cu11")),
        "the CUDA toolkit's libcudart.so.12 → libcudart.so.12.Y.Z links and the "
        "nvidia-cuda-runtime wheels on pypi.org"),
    "libnccl": Rule("the NCCL release", (
        FILE_NAME_SOURCE, _nvidia("nvidia-nccl-cu12", "nvidia-nccl-cu13", "nvidia-nccl-cu11")),
        "NCCL's packages (libnccl.so.2 → libnccl.so.2.Y.Z) and the nvidia-nccl-cuXY wheels"),
    "libcublas": Rule("the cuBLAS release", (
        FILE_NAME_SOURCE, _nvidia("nvidia-cublas-cu12", "nvidia-cublas", "nvidia-cublas-cu11")),
        "the CUDA toolkit's libcublas.so.12 → libcublas.so.12.Y.Z links and the nvidia-cublas "
        "wheels"),
    "libcublasLt": Rule("the cuBLAS release", (
        FILE_NAME_SOURCE, _nvidia("nvidia-cublas-cu12", "nvidia-cublas", "nvidia-cublas-cu11")),
        "as libcublas"),
}


def library_stem(name: str) -> str:
    """``libssl.so.3`` → ``libssl``; a vendored ``libz-a1b2c3d4.so.1.2.13`` → ``libz``."""
    stem = name.split(".so", 1)[0]
    stem = re.sub(r"(-[0-9a-f]{8})+$", "", stem)
    return stem if stem.startswith("lib") else f"lib{stem}"


def rule_for(name: str) -> Rule | None:
    """The rule for a library file or soname, when it is a well-known one."""
    return LIBRARY_VERSIONS.get(library_stem(name))


def from_text(source: Source, data: bytes) -> str | None:
    """The version a string source finds in ``data`` (a section's bytes)."""
    match = re.search(source.pattern.encode(), data)
    if match is None:
        return None
    parts: list[str] = []
    for group in match.groups():
        text = group.decode("ascii", "replace") if group else ""
        if re.fullmatch(r"\d+(?:\.\d+)*", text):
            parts.append(text)
        elif re.fullmatch(r"[a-z]", text):
            parts.append(str(ord(text) - ord("a") + 1))
    return ".".join(parts) or None


def from_version_definitions(source: Source, defined: Sequence[str]) -> str | None:
    """The version the highest definition of ``source.family`` stands for."""
    best: tuple[int, ...] | None = None
    for version in defined:
        family, _, number = version.partition("_")
        if family == source.family and re.fullmatch(r"\d+(?:\.\d+)*", number):
            parts = tuple(int(part) for part in number.split("."))
            best = parts if best is None or parts > best else best
    if best is None:
        return None
    try:
        return source.template.format(*best)
    except IndexError:
        return None


def decide(specifier: str, version: str, *, only_major: bool = False) -> bool | None:
    """Whether ``version`` satisfies ``specifier``; with ``only_major`` (the version
    is a soname's, so the release is any ``version.*``), None when the answer
    depends on what the soname does not say (``>=3.0.13`` of ``libssl.so.3``)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        specifiers = SpecifierSet(specifier)
        known = Version(version)
    except (InvalidSpecifier, InvalidVersion):
        return None
    if not only_major:
        return specifiers.contains(known, prereleases=True)
    answers = {specifiers.contains(Version(point), prereleases=True)
               for point in _points_within(known.release, specifiers)}
    return answers.pop() if len(answers) == 1 else None


def _points_within(prefix: tuple[int, ...], specifiers: object) -> list[str]:
    """Versions that start with ``prefix`` and where a clause of the specifier can
    change its answer: the prefix itself, the top of its range, and each clause's
    version inside the range with its neighbours."""
    def text(parts: Sequence[int]) -> str:
        return ".".join(str(part) for part in parts)

    top = (*prefix, 999_999, 999_999, 999_999)
    points = [text(prefix), text(top)]
    for clause in specifiers:  # type: ignore[attr-defined]
        raw = str(clause.version).removesuffix(".*")
        try:
            release = tuple(int(part) for part in raw.split("."))
        except ValueError:
            continue
        if release[:len(prefix)] != prefix or len(release) <= len(prefix):
            continue
        points += [text(release), text((*release, 0, 0, 1))]
        if any(release[len(prefix):]):
            last = max(index for index, part in enumerate(release) if part)
            below = (*release[:last], release[last] - 1, 999_999, 999_999)
            points.append(text(below))
    return points
