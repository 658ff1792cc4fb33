"""The environment snapshot: lazily probed, memoised facets.

A facet is probed the first time a check asks for it and kept for the life
of the :class:`Environment`. Tests build one by hand, without touching the
OS, by passing the facts::

    Environment(facts={"python": PythonFacts(version="3.9.18", ...)})

Parametrised facets (one library, one distribution) are keyed by a tuple:
``("library", "ssl")``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pytest_envguard.probes.interpreter import AbiFacts, IsolationFacts, PythonFacts
    from pytest_envguard.probes.loader import LibraryFacts
    from pytest_envguard.probes.locks import LockFacts
    from pytest_envguard.probes.native import ExtensionsFacts, ImportFacts
    from pytest_envguard.probes.nvidia import CudaRuntimeFacts, NvidiaFacts
    from pytest_envguard.probes.packages import DistributionFacts, InstalledFacts, SupportedTags
    from pytest_envguard.probes.system import (
        CommandFacts,
        CpuFacts,
        LibcFacts,
        MemoryFacts,
        PlatformFacts,
    )

T = TypeVar("T")

#: Keys whose probed value ``ENVGUARD_OVERRIDE_<KEY>`` may replace (DESIGN.md §3).
OVERRIDABLE = ("cuda", "driver", "gpus", "compute-capability", "glibc")

FactKey = str | tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    """What the probes may need from the run: where to cache, how long to wait."""

    cache_dir: Path | None = None  # pytest's cache dir (envguard/ below it); None: no disk cache
    gpu_timeout: float = 10.0  # seconds for NVML to answer
    import_timeout: float = 60.0  # seconds for `import MODULE` in a subprocess
    extra: Mapping[str, str] = field(default_factory=dict)


def override_name(key: str) -> str:
    return "ENVGUARD_OVERRIDE_" + key.upper().replace("-", "_")


class Environment:
    """The live environment, probed on demand.

    ``environ`` is a snapshot of the process environment taken when the
    environment is made, so a test that changes ``os.environ`` later does not
    change what the session contract saw.
    """

    def __init__(
        self,
        facts: Mapping[FactKey, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self._facts: dict[FactKey, Any] = dict(facts or {})
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self.settings = settings or Settings()
        self.overrides: dict[str, str] = {
            key: self.environ[override_name(key)]
            for key in OVERRIDABLE
            if override_name(key) in self.environ
        }

    # -- the mechanism -------------------------------------------------------

    def fact(self, key: FactKey, probe: Callable[[], T]) -> T:
        """The memoised value of ``key``, probing it with ``probe`` the first time."""
        if key not in self._facts:
            self._facts[key] = probe()
        value: T = self._facts[key]
        return value

    def probed(self) -> dict[FactKey, Any]:
        """The facets probed so far (or given by hand)."""
        return dict(self._facts)

    def override(self, key: str) -> str | None:
        """The override of ``key``: ``None`` if not overridden, ``""`` for "absent"."""
        return self.overrides.get(key)

    def probe_all(self) -> None:
        """Probe every cheap, parameterless facet (for reports)."""
        for name in REPORTED_FACETS:
            getattr(self, name.replace("-", "_"))

    def to_dict(self) -> dict[str, Any]:
        """One object per probed facet, plus the overrides in force."""
        document: dict[str, Any] = {}
        for key, value in self._facts.items():
            name = key if isinstance(key, str) else f"{key[0]}:{','.join(key[1:])}"
            document[name] = value.to_dict() if hasattr(value, "to_dict") else value
        if self.overrides:
            document["overrides"] = {
                override_name(key): value for key, value in self.overrides.items()
            }
        return document

    # -- the facets ------------------------------------------------------------

    @property
    def python(self) -> PythonFacts:
        from pytest_envguard.probes import interpreter

        return self.fact("python", interpreter.probe_python)

    @property
    def abi(self) -> AbiFacts:
        from pytest_envguard.probes import interpreter

        return self.fact("abi", interpreter.probe_abi)

    @property
    def platform(self) -> PlatformFacts:
        from pytest_envguard.probes import system

        return self.fact("platform", system.probe_platform)

    @property
    def libc(self) -> LibcFacts:
        from pytest_envguard.probes import system

        return self.fact("libc", system.probe_libc)

    @property
    def cpu(self) -> CpuFacts:
        from pytest_envguard.probes import system

        return self.fact("cpu", system.probe_cpu)

    @property
    def memory(self) -> MemoryFacts:
        from pytest_envguard.probes import system

        return self.fact("memory", system.probe_memory)

    def command(self, name: str) -> CommandFacts:
        from pytest_envguard.probes import system

        return self.fact(("command", name), lambda: system.probe_command(name, self.environ))

    def distribution(self, name: str) -> DistributionFacts:
        from pytest_envguard.probes import packages

        return self.fact(("distribution", name), lambda: packages.probe_distribution(name))

    @property
    def installed(self) -> InstalledFacts:
        """Every distribution on this interpreter's sys.path (one cheap scan)."""
        from pytest_envguard.probes import packages

        return self.fact("installed", packages.probe_installed)

    @property
    def supported_tags(self) -> SupportedTags:
        from pytest_envguard.probes import packages

        return self.fact("supported-tags", packages.probe_supported_tags)

    @property
    def isolation(self) -> IsolationFacts:
        from pytest_envguard.probes import interpreter

        return self.fact("isolation", lambda: interpreter.probe_isolation(self.environ))

    def lock(self, path: str) -> LockFacts:
        """The lock file at ``path``; a relative path is taken from the rootdir."""
        from pytest_envguard.probes import locks

        base = self.settings.extra.get("rootdir") or os.getcwd()
        resolved = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
        return self.fact(("lock", resolved), lambda: locks.read_lock(resolved))

    def library(self, name: str) -> LibraryFacts:
        """Where the dynamic loader would find ``name`` (``libssl.so.3``, ``cudnn``)."""
        from pytest_envguard.probes import loader

        return self.fact(("library", name), lambda: loader.find_library(name, self.environ))

    def extensions(self, distribution: str | None = None) -> ExtensionsFacts:
        """The native needs of the extension modules of ``distribution`` (None: all)."""
        from pytest_envguard.probes import native

        return self.fact(("extensions", distribution or "*"), lambda: native.probe_extensions(
            distribution, self.environ, self.installed, cache_dir=self.settings.cache_dir))

    def module_import(self, name: str) -> ImportFacts:
        """``import name`` in a child interpreter, under ``settings.import_timeout``."""
        from pytest_envguard.probes import native

        return self.fact(("import", name), lambda: native.probe_import(
            name, self.environ, timeout=self.settings.import_timeout,
            cwd=self.settings.extra.get("rootdir")))

    @property
    def nvidia(self) -> NvidiaFacts:
        """Driver, CUDA version and GPUs (NVML in a child, under ``settings.gpu_timeout``)."""
        from pytest_envguard.probes import nvidia

        return self.fact("nvidia", lambda: nvidia.probe_nvidia(
            self.environ, timeout=self.settings.gpu_timeout, cache_dir=self.settings.cache_dir))

    @property
    def cuda_runtime(self) -> CudaRuntimeFacts:
        """The libcudart loaded here or found by the loader, and its version."""
        from pytest_envguard.probes import nvidia

        return self.fact("cuda-runtime", lambda: nvidia.probe_cuda_runtime(
            self.environ, find=self.library,
            distribution_version=lambda name: self.distribution(name).version,
            timeout=self.settings.gpu_timeout))


#: The facets a report probes even when no requirement asked for them.
#: ("nvidia" is cheap without a driver: its child interpreter fails to load
#: libnvidia-ml.so.1 at once, about 0.1 s; with one, the answer is cached.)
REPORTED_FACETS: list[str] = ["python", "platform", "libc", "cpu", "memory", "isolation",
                              "installed", "nvidia"]
