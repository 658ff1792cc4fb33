"""Checks decide on failure kinds, never on the wording of a message.

Every scenario below is probed for real (crafted files, the fake NVML library, broken
extension modules, imports that fail), then judged twice: as probed, and with every
human message in every fact renamed (``Environment.fact`` monkeypatched to rewrite
``reason``, ``error``, ``detail``, ``note`` and ``notes`` wherever they occur). The
statuses and what the verdicts found must be the same: rewording a message can never
turn ``unmet`` into ``unknown``, ``unknown`` into ``met``, or "not installed" into
"installed but broken".
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_envguard.checks import evaluate
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.grammar import parse_lines
from pytest_envguard.probes import Facts, extensions
from pytest_envguard.probes.distributions import scan_distributions
from pytest_envguard.verdicts import Status
from tests.fixtures_conda import MakePrefix, NativePrefix, prefix_environment
from tests.fixtures_native import NativeBuild, without_loader_vars
from tests.fixtures_nvml import FakeNvml

MESSAGE_FIELDS = {"reason", "error", "detail", "note", "notes"}
RENAMED = "⟨renamed⟩"


def renamed(value: Any) -> Any:
    """``value`` with every human message in it replaced (recursively)."""
    if isinstance(value, Facts) and dataclasses.is_dataclass(value):
        changes = {}
        for field in dataclasses.fields(value):
            current = getattr(value, field.name)
            if field.name in MESSAGE_FIELDS and isinstance(current, str):
                changes[field.name] = f"{RENAMED} {current[::-1]}"
            elif field.name in MESSAGE_FIELDS and isinstance(current, tuple):
                changes[field.name] = tuple(f"{RENAMED} {item}" for item in current)
            else:
                changes[field.name] = renamed(current)
        return dataclasses.replace(value, **changes)  # type: ignore[type-var]
    if isinstance(value, tuple):
        items = [renamed(item) for item in value]
        # a NamedTuple (conda's CondaPath) stays one
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    return value


Scenario = Callable[[Path], tuple[Any, ...]]  # environ, settings, lines[, facts given by hand]


def conda_scenario(make_prefix: MakePrefix, wheels: Path, tmp: Path,
                   ) -> tuple[dict[str, str], Settings, list[str], dict[str, Any]]:
    """A conda prefix broken every way ``consistent`` and ``lock`` judge: conda's graph,
    pip over conda, missing files, a corrupt record; locks in each conda format."""
    from tests.test_conda_locks import write_explicit, write_pixi_lock

    prefix = make_prefix("zed", "tool", "py-plain")
    records = prefix.installed_records()
    write_pixi_lock(tmp / "pixi.lock", {"default": records})
    write_explicit(tmp / "spec.txt", records)
    (tmp / "environment.yml").write_text("dependencies:\n  - zed=1.0\n  - nothere\n")
    prefix.pip("install", "--no-index", "--find-links", str(wheels), "plain==1.0")
    prefix.remove("libzed")
    (prefix.site / "zed" / "__init__.py").unlink()
    prefix.record_path("tool").write_text("{not json")
    env = prefix_environment(prefix, rootdir=tmp)
    return ({"CONDA_PREFIX": str(tmp)}, Settings(rootdir=tmp),
            ["consistent", "lock pixi.lock", "lock spec.txt", "lock environment.yml", "isolated"],
            {"python": env.python, "installed": env.installed})


def scenarios(native: NativeBuild, nvml: FakeNvml, no_nvml: Path,
              make_prefix: MakePrefix, wheels: Path, native_prefix: NativePrefix
              ) -> dict[str, Scenario]:
    def files(tmp: Path) -> tuple[dict[str, str], Settings, list[str]]:
        (tmp / "bad.toml").write_text("[not closed\n")
        (tmp / "uv.lock").write_text("[[package]\nname=\n")
        (tmp / "requirements.txt").write_text("surely-not-installed-xyz==1.0\n")
        (tmp / "dir.txt").mkdir()
        # -e lines: a project that cannot be named, one that is gone, one not installed
        (tmp / "anonymous").mkdir()
        (tmp / "named").mkdir()
        (tmp / "named" / "pyproject.toml").write_text('[project]\nname = "surely-not-xyz"\n')
        (tmp / "editable.txt").write_text("-e ./anonymous\n")
        (tmp / "gone.txt").write_text("-e file:///nonexistent/project\n")
        (tmp / "local.txt").write_text("-e ./named\n")
        return ({"PATH": "/nonexistent"}, Settings(rootdir=tmp),
                ["lock uv.lock", "lock requirements.txt", "lock dir.txt", "lock missing.txt",
                 "lock bad.toml", "lock editable.txt", "lock gone.txt", "lock local.txt",
                 "consistent", "wheels", "isolated",
                 "command surely-not-a-command", "env NOT_SET_ANYWHERE",
                 "package surely-not-installed-xyz", "package pytest>=1"])

    def native_lines(tmp: Path) -> tuple[dict[str, str], Settings, list[str]]:
        environ = without_loader_vars(PYTHONPATH=str(native.site))
        return (environ, Settings(cache_dir=tmp),
                ["extensions nativebad", "extensions nativegood", "extensions not-installed-xyz",
                 "library libenvguard_nothing.so.9", "library c", "import nativebad._missing",
                 "import surely_not_a_module", "import json"])

    def native_leak(tmp: Path) -> tuple[dict[str, str], Settings, list[str]]:
        # An old libcrypto leaking through LD_LIBRARY_PATH (the interpreter's own modules
        # and `import` break), and a library whose release only its soname tells.
        environ = without_loader_vars(
            LD_LIBRARY_PATH=f"{native.leak_dir}:{native.version_string_lib.parent}")
        return (environ, Settings(cache_dir=tmp),
                ["extensions", "import _hashlib", "library envguard_text >=3.0.1",
                 "library envguard_text >=3", "library envguard_text >=4"])

    def native_stops(tmp: Path) -> tuple[dict[str, str], Settings, list[str]]:
        # Directories named like libraries in LD_LIBRARY_PATH: the loader stops there.
        stops = tmp / "stops"
        for name in ("libcrypto.so.3", "libenvguard_ver.so.1"):
            (stops / name).mkdir(parents=True)
        environ = without_loader_vars(LD_LIBRARY_PATH=f"{stops}:{native.ver_new_dir}")
        return (environ, Settings(cache_dir=tmp),
                ["extensions", "library libenvguard_ver.so.1", "library envguard_ver",
                 "library libcrypto.so.3"])

    def native_unlisted(tmp: Path) -> tuple[dict[str, str], Settings, list[str], dict[str, Any]]:
        # Distributions whose file lists are missing, not a file, over the bound.
        site = tmp / "site"
        shutil.copytree(native.site, site, symlinks=True)
        (site / "nativebad-1.0.dist-info" / "RECORD").unlink()
        (site / "nativebad-1.0.dist-info" / "RECORD").mkdir()
        (site / "nativegood-1.0.dist-info" / "RECORD").unlink()
        (site / "nativegood-1.0.dist-info" / "RECORD").write_bytes(
            b"x.py,,\n" * (extensions.MAX_RECORD_BYTES // 7 + 1))
        return (without_loader_vars(), Settings(cache_dir=tmp),
                ["extensions nativebad", "extensions nativegood", "extensions"],
                {"installed": scan_distributions([str(site)])})

    def conda_native(tmp: Path) -> tuple[dict[str, str], Settings, list[str], dict[str, Any]]:
        # pip wheels against conda's libraries: another soname, a newer symbol version, two
        # copies of one library in one import (the owners named come from kinds too).
        env = prefix_environment(native_prefix.prefix)
        return (without_loader_vars(), Settings(cache_dir=tmp),
                ["extensions so2ext", "extensions newerext", "extensions dupext",
                 "extensions goodext", "extensions", "library libfoo.so.1"],
                {"python": env.python, "installed": env.installed})

    def gpu_lines(tmp: Path, environ: dict[str, str]) -> tuple[dict[str, str], Settings, list[str]]:
        return (environ, Settings(cache_dir=tmp, gpu_timeout=2.0),
                ["cuda >=12", "driver >=400", "gpus >=1", "gpu-memory >=1GiB",
                 "compute-capability >=7.0", "gpu '*H100*'", "cuda-runtime >=11"])

    def rehearsed_libc(tmp: Path) -> tuple[dict[str, str], Settings, list[str]]:
        # A rehearsed glibc older than what the modules need: above-target problems, wheel
        # tags judged for it, the other libc absent.
        environ = without_loader_vars(PYTHONPATH=str(native.site), ENVGUARD_OVERRIDE_GLIBC="2.3")
        return (environ, Settings(cache_dir=tmp),
                ["extensions nativebad", "extensions nativegood", "extensions", "wheels",
                 "consistent", "glibc >=2.17", "musl"])

    def rehearsed_gpus(tmp: Path, gpus: str) -> tuple[dict[str, str], Settings, list[str]]:
        # Rehearsed GPUs: a count (property lines unknown), or a list that does not parse;
        # the driver is this machine's, and it has none.
        return ({**without_loader_vars(), "ENVGUARD_OVERRIDE_GPUS": gpus,
                 "LD_LIBRARY_PATH": str(no_nvml)},
                Settings(cache_dir=tmp, gpu_timeout=2.0),
                ["gpus >=3", "gpu-memory >=1GiB", "gpu '*A100*'", "compute-capability >=7.0",
                 "driver >=500"])

    return {
        "rehearsed-libc": rehearsed_libc,
        "rehearsed-gpus": lambda tmp: rehearsed_gpus(tmp, "2"),
        "rehearsed-bad-gpus": lambda tmp: rehearsed_gpus(tmp, "A100:80GB:8.0"),
        "files": files,
        "native": native_lines,
        "native-leak": native_leak,
        "native-stops": native_stops,
        "native-unlisted": native_unlisted,
        "conda-native": conda_native,
        "nvml-missing": lambda tmp: gpu_lines(tmp, {**without_loader_vars(),
                                                    "LD_LIBRARY_PATH": str(no_nvml)}),
        "nvml-mismatch": lambda tmp: gpu_lines(tmp, nvml.environ(init_error="18")),
        "nvml-hangs": lambda tmp: gpu_lines(tmp, nvml.environ(hang="init")),
        "nvml-answers": lambda tmp: gpu_lines(tmp, nvml.environ()),
        "hidden-gpus": lambda tmp: gpu_lines(tmp, nvml.environ(cuda_visible_devices="")),
        "conda": lambda tmp: conda_scenario(make_prefix, wheels, tmp),
        "conda-no-rattler": lambda tmp: conda_scenario(make_prefix, wheels, tmp),
    }


NAMES = ["rehearsed-libc", "rehearsed-gpus", "rehearsed-bad-gpus", "files", "native", "native-leak",
         "native-stops", "native-unlisted", "conda-native",
         "nvml-missing", "nvml-mismatch",
         "nvml-hangs", "nvml-answers", "hidden-gpus", "conda", "conda-no-rattler"]


@pytest.mark.parametrize("name", NAMES)
def test_renaming_every_message_changes_no_status(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native_build: NativeBuild,
        fake_nvml: FakeNvml, no_nvml_dir: Path, make_prefix: MakePrefix,
        conda_wheels: Path, conda_native_prefix: NativePrefix) -> None:
    environ, settings, lines, *given = scenarios(native_build, fake_nvml, no_nvml_dir,
                                                 make_prefix, conda_wheels,
                                                 conda_native_prefix)[name](tmp_path)
    facts = given[0] if given else {}
    if name == "conda-no-rattler":
        monkeypatch.setitem(sys.modules, "rattler", None)  # `import rattler` fails
    requirements = parse_lines(lines, name)
    monkeypatch.syspath_prepend(str(native_build.site))
    plain = evaluate(requirements, Environment(facts, environ=environ, settings=settings))

    original = Environment.fact

    def fact_with_renamed_messages(self: Environment, key: Any, probe: Callable[[], Any]) -> Any:
        return original(self, key, lambda: renamed(probe()))

    monkeypatch.setattr(Environment, "fact", fact_with_renamed_messages)
    env = Environment(facts, environ=environ, settings=settings)
    reworded = evaluate(requirements, env)

    # The same statuses, and the same `found` (what was decided, in a word) wherever it
    # does not quote a message.
    differ = [(v.line, p.status.value, p.found, v.status.value, v.found)
              for v, p in zip(reworded, plain, strict=True)
              if v.status is not p.status or (RENAMED not in v.found and v.found != p.found)]
    assert differ == []
    # The scenario does reach the failure paths, and the messages really were renamed.
    assert {v.status for v in plain} - {Status.MET}, [(v.line, v.status.value) for v in plain]
    failing = [v for v in reworded if v.status is Status.UNKNOWN]
    if failing:
        assert any(RENAMED in v.reason for v in failing), [v.reason for v in failing]


def test_the_renaming_reaches_nested_facts() -> None:
    from pytest_envguard.probes.extensions import ExtensionsFacts, NativeProblem
    from pytest_envguard.probes.nvml import NvidiaFacts

    facts = ExtensionsFacts("x", 1, 1, (NativeProblem("/m.so", "m.so", "loader-error",
                                                       detail="Is a directory"),))
    assert renamed(facts).problems[0].detail == f"{RENAMED} yrotcerid a sI"
    nvidia = NvidiaFacts("1", "12.0", (), notes=("nvmlDeviceGetName: Not Supported",))
    assert renamed(nvidia).notes == (f"{RENAMED} nvmlDeviceGetName: Not Supported",)
