"""The environment snapshot: lazily probed, memoised facets.

A facet is probed the first time a check asks for it and kept for the life
of the :class:`Environment`. Tests build one by hand, without touching the
OS, by passing the facts::

    Environment(facts={"python": PythonFacts(version="3.9.18", ...)})

Parametrised facets (one library, one distribution) are keyed by a tuple:
``("library", "ssl")``. The PEP 508 marker environment that ``; marker``
conditions are evaluated against is itself a facet, derived from the
``python`` and ``platform`` facets — so a hand-built 3.9/darwin environment
evaluates ``python_version < "3.10"`` as a 3.9 on darwin would.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

if TYPE_CHECKING:
    from pytest_envguard.probes.abi import AbiFacts
    from pytest_envguard.probes.commands import CommandFacts
    from pytest_envguard.probes.conda import (
        CondaFacts,
        CondaFilesFacts,
        CondaGraphFacts,
        MetadataFacts,
        OverlapFacts,
    )
    from pytest_envguard.probes.cpuinfo import CpuFacts
    from pytest_envguard.probes.cudart import CudaRuntimeFacts
    from pytest_envguard.probes.distributions import DistributionFacts, InstalledFacts, SupportedTags
    from pytest_envguard.probes.extensions import ExtensionChecker, ExtensionsFacts
    from pytest_envguard.probes.imports import ImportFacts
    from pytest_envguard.probes.interpreter import PythonFacts
    from pytest_envguard.probes.isolation import IsolationFacts
    from pytest_envguard.probes.loader import LibraryFacts, Resolver
    from pytest_envguard.probes.locks import LockFacts
    from pytest_envguard.probes.nvml import NvidiaFacts
    from pytest_envguard.probes.system import CpusFacts, LibcFacts, MemoryFacts, PlatformFacts
    from pytest_envguard.targets import Target

T = TypeVar("T")

#: Keys whose probed value ``ENVGUARD_OVERRIDE_<KEY>`` may replace (DESIGN.md §3); ``musl``
#: as ``glibc``, for rehearsing a musllinux machine.
OVERRIDABLE = ("cuda", "driver", "gpus", "compute-capability", "glibc", "musl")

#: The overrides that describe the machine's GPUs: with one of them NVML is not asked
#: about what they answer.
GPU_OVERRIDES = ("gpus", "compute-capability")

FactKey = str | tuple[str, ...]
LockExtras = Literal["report", "ignore", "fail"]


class Settings(NamedTuple):
    """What the probes may need from the run: where to cache, how long to wait."""

    cache_dir: Path | None = None  # the plugin's cache dir; None: no disk cache
    gpu_timeout: float = 10.0  # seconds for NVML to answer
    import_timeout: float = 60.0  # seconds for `import MODULE` in a child
    rootdir: Path | None = None  # where relative lock paths start; None: the cwd
    lock_extras: LockExtras = "report"  # installed packages a lock does not list
    show_env_values: bool = False  # `env NAME=value` verdicts show the live value (may be a secret)
    conda_hashes: bool = False  # hash every conda-linked file, not only those that changed


def override_name(key: str) -> str:
    return "ENVGUARD_OVERRIDE_" + key.upper().replace("-", "_")


def facet_name(key: FactKey) -> str:
    """A facet's name in the JSON document: ``python``, ``library:ssl``."""
    return key if isinstance(key, str) else f"{key[0]}:{','.join(key[1:])}"


def marker_environment(python: PythonFacts, platform: PlatformFacts) -> dict[str, str]:
    """The PEP 508 marker values of an interpreter with these facts (the names and
    forms of ``packaging.markers.default_environment``)."""
    from pytest_envguard.probes.interpreter import PYTHON_IMPLEMENTATIONS

    return {
        "implementation_name": python.implementation,
        "implementation_version": python.implementation_version,
        "os_name": platform.os_name,
        "platform_machine": platform.machine,
        "platform_release": platform.release,
        "platform_system": platform.system,
        "platform_version": platform.version,
        "python_full_version": python.version,
        "platform_python_implementation": python.python_implementation
        or PYTHON_IMPLEMENTATIONS.get(python.implementation, python.implementation),
        "python_version": ".".join(python.version.split(".")[:2]),
        "sys_platform": platform.platform,
    }


class Environment:
    """The live environment, probed on demand.

    ``environ`` is a snapshot of the process environment taken when the
    environment is made, so a test that changes ``os.environ`` later does not
    change what the session contract saw.

    ``target`` (``--envguard-target``) describes another machine: its values act
    as overrides, under the ``ENVGUARD_OVERRIDE_<KEY>`` variables (a variable
    wins over the target's value of its key, so one value can be tried on top of
    a profile). Nothing is written anywhere: the hardware is never asked what an
    override answers.
    """

    def __init__(
        self,
        facts: Mapping[FactKey, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        settings: Settings | None = None,
        target: Target | None = None,
    ) -> None:
        self._facts: dict[FactKey, Any] = dict(facts or {})
        self._load_checker: ExtensionChecker | None = None  # for the library lines
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self.settings = settings or Settings()
        self.target = target
        from_target = dict(target.overrides) if target is not None else {}
        from_environ = {key: self.environ[override_name(key)] for key in OVERRIDABLE
                        if override_name(key) in self.environ}
        self.overrides: dict[str, str] = {
            key: from_environ.get(key, from_target.get(key, "")) for key in OVERRIDABLE
            if key in from_environ or key in from_target}
        #: Where each override comes from: the variable's name, or ``target NAME``.
        self.override_sources: dict[str, str] = {
            key: override_name(key) if key in from_environ or target is None
            else f"target {target.name}" for key in self.overrides}

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

    def override_source(self, key: str) -> str:
        """What overrides ``key``: ``ENVGUARD_OVERRIDE_GLIBC`` or ``target manylinux2014``."""
        return self.override_sources.get(key, override_name(key))

    def rehearsed_libc(self) -> dict[str, str | None] | None:
        """The C libraries of the rehearsed machine, when ``glibc`` or ``musl`` is
        overridden: ``{"glibc": "2.17", "musl": None}`` (None: it has none; a libc
        that is not overridden is this machine's, unless the other one is overridden
        to a version: a machine has one C library). None when neither is overridden."""
        glibc, musl = self.override("glibc"), self.override("musl")
        if glibc is None and musl is None:
            return None
        real = self.libc

        def one(name: str, value: str | None, other: str | None) -> str | None:
            if value is not None:
                return value or None
            if other:
                return None
            return real.version if real.name == name else None

        return {"glibc": one("glibc", glibc, musl), "musl": one("musl", musl, glibc)}

    def probe_cheap(self) -> None:
        """Probe every cheap facet: what the JSON document and the report always hold."""
        for name in CHEAP_FACETS:
            getattr(self, name)

    def not_probed(self) -> dict[str, str]:
        """The expensive facets not probed in this run, and why not."""
        probed = {facet_name(key) for key in self._facts}
        skipped = {name: why for name, why in EXPENSIVE_FACETS.items() if name not in probed}
        rehearsed = [self.override_source(key) for key in ("gpus", "cuda", "driver")
                     if key in self.overrides]
        if "nvidia" in skipped and rehearsed:
            skipped["nvidia"] = (f"the GPUs are rehearsed ({', '.join(dict.fromkeys(rehearsed))}): "
                                 "NVML was not asked what they answer")
        return skipped

    def to_dict(self) -> dict[str, Any]:
        """The cheap facets and every other probed one, the overrides in force, and
        which expensive facets were not probed."""
        self.probe_cheap()
        document: dict[str, Any] = {}
        for key, value in self._facts.items():
            document[facet_name(key)] = value.to_dict() if hasattr(value, "to_dict") else value
        # Schema pytest-envguard/1 promised the usable CPU count under `cpu` and the
        # visible GPUs under `nvidia`: both are kept there.
        cpus = document.get("cpus")
        if "cpu" in document and isinstance(cpus, dict):
            document["cpu"].update(logical=cpus["logical"], usable=cpus["usable"],
                                   usable_source=cpus["source"])
        if "nvidia" in document and self._facts["nvidia"].failure is None:
            from pytest_envguard import cuda_visibility

            selection = cuda_visibility.select(self._facts["nvidia"].devices,
                                               self.environ.get("CUDA_VISIBLE_DEVICES"),
                                               self.environ.get("CUDA_DEVICE_ORDER"))
            document["nvidia"]["visible"] = [document["nvidia"]["devices"][
                self._facts["nvidia"].devices.index(device)] for device in selection.devices]
            document["nvidia"]["visibility"] = selection.explanation
        if self.overrides:
            document["overrides"] = {
                override_name(key): value for key, value in self.overrides.items()
            }
        if self.target is not None:
            document["target"] = self.target.to_dict()
        skipped = self.not_probed()
        if skipped:
            document["not_probed"] = skipped
        return document

    # -- the facets ------------------------------------------------------------

    @property
    def python(self) -> PythonFacts:
        from pytest_envguard.probes import interpreter

        return self.fact("python", interpreter.probe_python)

    @property
    def abi(self) -> AbiFacts:
        from pytest_envguard.probes import abi

        return self.fact("abi", abi.probe_abi)

    @property
    def platform(self) -> PlatformFacts:
        from pytest_envguard.probes import system

        return self.fact("platform", system.probe_platform)

    @property
    def markers(self) -> dict[str, str]:
        """The PEP 508 marker environment, from the ``python`` and ``platform`` facets."""
        return self.fact("markers", lambda: marker_environment(self.python, self.platform))

    @property
    def libc(self) -> LibcFacts:
        from pytest_envguard.probes import system

        return self.fact("libc", system.probe_libc)

    @property
    def cpu(self) -> CpuFacts:
        from pytest_envguard.probes import cpuinfo

        return self.fact("cpu", cpuinfo.probe_cpu)

    @property
    def cpus(self) -> CpusFacts:
        from pytest_envguard.probes import system

        return self.fact("cpus", system.probe_cpus)

    @property
    def memory(self) -> MemoryFacts:
        from pytest_envguard.probes import system

        return self.fact("memory", system.probe_memory)

    def command(self, name: str) -> CommandFacts:
        from pytest_envguard.probes import commands

        return self.fact(("command", name), lambda: commands.probe_command(name, self.environ))

    def distribution(self, name: str) -> DistributionFacts:
        from pytest_envguard.probes import distributions

        return self.fact(("distribution", name), lambda: distributions.probe_distribution(name))

    @property
    def installed(self) -> InstalledFacts:
        """Every distribution on this interpreter's sys.path (one cheap scan)."""
        from pytest_envguard.probes import distributions

        return self.fact("installed", distributions.probe_installed)

    @property
    def supported_tags(self) -> SupportedTags:
        """The wheel tags this interpreter accepts; with ``glibc`` or ``musl`` overridden,
        those it would accept on this machine with the rehearsed C library."""
        libc = self.rehearsed_libc()
        if libc is not None:
            from pytest_envguard.probes import wheel_tags

            return self.fact("supported-tags", lambda: wheel_tags.probe_supported_tags_for(
                libc["glibc"], libc["musl"]))
        from pytest_envguard.probes import distributions

        return self.fact("supported-tags", distributions.probe_supported_tags)

    def in_conda_prefix(self) -> bool:
        """Whether this interpreter's prefix is a conda prefix: one ``stat``, so that a
        venv never imports (or pays for) the conda probes."""
        if "conda" in self._facts:
            return bool(self._facts["conda"].present)
        from pytest_envguard.probes.isolation import is_conda_prefix

        return is_conda_prefix(self.python.prefix)

    @property
    def conda(self) -> CondaFacts:
        """The conda records of this interpreter's prefix (``present=False`` outside one)."""
        from pytest_envguard.probes import conda

        return self.fact("conda", lambda: conda.probe_conda(self.python.prefix))

    @property
    def conda_graph(self) -> CondaGraphFacts:
        """conda's own dependency graph of the prefix, judged by py-rattler."""
        from pytest_envguard.probes import conda

        return self.fact("conda-graph", lambda: conda.probe_graph(self.conda))

    @property
    def conda_files(self) -> CondaFilesFacts:
        """The conda records' missing and altered files (``conda doctor``'s checks)."""
        from pytest_envguard.probes import conda

        return self.fact("conda-files", lambda: conda.verify_files(
            self.conda, hashes=self.settings.conda_hashes))

    @property
    def conda_overlaps(self) -> OverlapFacts:
        """Files another installer's distributions wrote over conda's."""
        from pytest_envguard.probes import conda

        return self.fact("conda-overlaps", lambda: conda.probe_overlaps(self.conda, self.installed))

    @property
    def conda_metadata(self) -> MetadataFacts:
        """The Python metadata directories conda installed, as they are now."""
        from pytest_envguard.probes import conda

        return self.fact("conda-metadata", lambda: conda.metadata_states(self.conda,
                                                                         self.conda_files))

    @property
    def isolation(self) -> IsolationFacts:
        from pytest_envguard.probes import isolation

        return self.fact("isolation", lambda: isolation.probe_isolation(self.environ))

    def lock(self, path: str) -> LockFacts:
        """The lock file at ``path``; a relative path is taken from the rootdir."""
        from pytest_envguard.probes import locks

        base = str(self.settings.rootdir) if self.settings.rootdir is not None else os.getcwd()
        resolved = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
        return self.fact(("lock", resolved), lambda: locks.read_lock(
            resolved, self.python.prefix, self.environ))

    def library(self, name: str) -> LibraryFacts:
        """Where the dynamic loader would find ``name`` (``libssl.so.3``, ``cudnn``)."""
        from pytest_envguard.probes import loader

        return self.fact(("library", name), lambda: loader.find_library(
            name, self.environ, load_errors=self._load_errors))

    def _load_errors(self, path: str, resolver: Resolver) -> tuple[str, ...]:
        """What stops ``dlopen`` of a library found: one checker for every ``library``
        line, which reads the interpreter's libraries (and their symbols) once."""
        from pytest_envguard.probes import loader

        if self._load_checker is None:
            self._load_checker = loader.load_checker(resolver)
        return loader.load_errors(self._load_checker, path)

    def extensions(self, distribution: str | None = None) -> ExtensionsFacts:
        """The native needs of the extension modules of ``distribution`` (None: all)."""
        from pytest_envguard.probes import extensions

        return self.fact(("extensions", distribution or "*"), lambda: extensions.probe_extensions(
            distribution, self.environ, self.installed, cache_dir=self.settings.cache_dir))

    def module_import(self, name: str) -> ImportFacts:
        """``import name`` in a child interpreter, under ``settings.import_timeout``."""
        from pytest_envguard.probes import imports

        return self.fact(("import", name), lambda: imports.probe_import(
            name, self.environ, timeout=self.settings.import_timeout))

    @property
    def nvidia(self) -> NvidiaFacts:
        """Driver, CUDA version and GPUs (NVML in a child, under ``settings.gpu_timeout``)."""
        from pytest_envguard.probes import nvml

        return self.fact("nvidia", lambda: nvml.probe_nvidia(
            self.environ, timeout=self.settings.gpu_timeout, cache_dir=self.settings.cache_dir))

    @property
    def cuda_runtime(self) -> CudaRuntimeFacts:
        """The libcudart loaded here or found by the loader, and its version."""
        from pytest_envguard.probes import cudart

        return self.fact("cuda-runtime", lambda: cudart.probe_cuda_runtime(
            self.environ, find=self.library,
            distribution_version=lambda name: self.distribution(name).version,
            timeout=self.settings.gpu_timeout))


#: The facets every report and JSON document holds, probed or not: each costs
#: milliseconds and needs no child process.
CHEAP_FACETS: tuple[str, ...] = ("python", "platform", "libc", "cpu", "cpus", "memory",
                                 "isolation", "installed")

#: The facets probed only when a requirement needs them, and what would ask for them.
EXPENSIVE_FACETS: dict[str, str] = {
    "nvidia": "no GPU requirement (cuda, driver, gpus, gpu-memory, compute-capability, gpu) "
              "asked for NVML",
    "extensions:*": "no 'extensions' requirement asked for the ELF scan",
}
