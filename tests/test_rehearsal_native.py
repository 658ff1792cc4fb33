"""One override, every consequence: a rehearsed glibc is what ``wheels`` and
``extensions`` judge with, checked on real wheels against the real tools.

A venv holds numpy (repacked at test time from the test interpreter's own, so nothing
is downloaded) and wheels of ``cc``-built extension modules, each needing a chosen
``GLIBC_2.x`` through a symbol version reference: 2.2.5, 2.17, 2.18 (one above
manylinux2014), 2.28 (in a wheel that says manylinux2014: its tag lies), 2.28 again
only through a vendored library, and 2.34. Under ``--target manylinux2014`` (and
``manylinux1``, ``manylinux_2_28``) the verdicts must agree with three oracles on the
same files:

* ``auditwheel show --json`` — which symbol versions each wheel needs beyond the
  target policy, per library and family: exactly what ``extensions`` reports;
* ``readelf --version-info`` — every GLIBC need above the target's glibc, per file
  and library: exactly the ``above-target`` problems, naming the module (or the
  vendored library) and the version;
* ``uv pip install --dry-run --python-platform`` — which wheels the target's pip
  would take: exactly the distributions ``wheels`` does not report.
"""

from __future__ import annotations

import concurrent.futures
import importlib.machinery
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_native import compile_shared
from tests.fixtures_packages import MakeVenv, Venv, clean_environ, uv_binary, write_wheel
from tests.test_rehearsal_targets import auditwheel_policies

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64" or sys.platform != "linux",
                                reason="the symbol versions below are x86_64 glibc's")

PY = f"cp{sys.version_info.major}{sys.version_info.minor}"
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # .cpython-311-x86_64-linux-gnu.so


def reference(symbol: str, version: str, module: str | None) -> str:
    """C source referring to ``symbol@version`` (so the object needs that version), with a
    ``PyInit_`` function when it is a module (auditwheel tells modules by it)."""
    init = f"void *PyInit_{module}(void) {{ return (void *)&envguard_ref; }}\n" if module else \
        "void *envguard_dep(void) { return (void *)&envguard_ref; }\n"
    return (f"extern int envguard_ref(void);\n"
            f'__asm__(".symver envguard_ref, {symbol}@{version}");\n{init}')


@dataclass(frozen=True)
class NativeWheel:
    distribution: str
    module: str
    symbol: str
    version: str
    tag: str  # the platform part of its tag
    vendored: bool = False  # the version is needed by a vendored library, not the module


WHEELS = (
    NativeWheel("old-only", "_old", "memcpy", "GLIBC_2.2.5", "manylinux_2_5_x86_64.manylinux1_x86_64"),
    NativeWheel("at-2014", "_at", "clock_gettime", "GLIBC_2.17",
                "manylinux_2_17_x86_64.manylinux2014_x86_64"),
    NativeWheel("just-above", "_above", "__cxa_thread_atexit_impl", "GLIBC_2.18",
                "manylinux_2_18_x86_64"),
    NativeWheel("mislabelled", "_liar", "fcntl64", "GLIBC_2.28",
                "manylinux_2_17_x86_64.manylinux2014_x86_64"),
    NativeWheel("vendors", "_vend", "fcntl64", "GLIBC_2.28", "manylinux_2_28_x86_64",
                vendored=True),
    NativeWheel("new-glibc", "_new", "dlopen", "GLIBC_2.34", "manylinux_2_34_x86_64"),
)

#: The targets rehearsed, and the uv platform naming the same machine (uv knows none
#: older than manylinux2014).
TARGETS = {"manylinux2014": "x86_64-manylinux_2_17", "manylinux1": None,
           "manylinux_2_28": "x86_64-manylinux_2_28"}


def build_wheel(spec: NativeWheel, build: Path, house: Path) -> Path:
    package = spec.distribution.replace("-", "_")
    files: dict[str, bytes] = {f"{package}/__init__.py": b""}
    module_source = build / f"{spec.module}.c"
    module_file = build / package / f"{spec.module}{SUFFIX}"
    if spec.vendored:
        (build / "dep.c").write_text(reference(spec.symbol, spec.version, None), encoding="utf-8")
        dep = compile_shared(build / package / "libdep-1a2b3c4d.so", build / "dep.c",
                             "-Wl,-soname,libdep-1a2b3c4d.so")
        module_source.write_text(
            f"extern void *envguard_dep(void);\n"
            f"void *PyInit_{spec.module}(void) {{ return envguard_dep(); }}\n", encoding="utf-8")
        compile_shared(module_file, module_source, str(dep), f"-Wl,-rpath,$ORIGIN/../{package}.libs")
        files[f"{package}.libs/libdep-1a2b3c4d.so"] = dep.read_bytes()
    else:
        module_source.write_text(reference(spec.symbol, spec.version, spec.module),
                                 encoding="utf-8")
        compile_shared(module_file, module_source)
    files[f"{package}/{spec.module}{SUFFIX}"] = module_file.read_bytes()
    return write_wheel(house, spec.distribution, "1.0", files, f"{PY}-{PY}-{spec.tag}")


@dataclass
class Rehearsal:
    venv: Venv
    wheels: dict[str, Path]  # distribution → wheel file
    house: Path
    outside: Path  # a wheel whose module loads a library found through LD_LIBRARY_PATH
    outside_dir: Path  # where that library is


def build_outside(build: Path, house: Path) -> tuple[Path, Path]:
    """A wheel whose module needs ``libenvguard_outside.so``, a library of "the system"
    (a directory on ``LD_LIBRARY_PATH``) that no manylinux policy leaves to the machine."""
    libdir = build / "system-lib"
    (build / "outside_lib.c").write_text("int envguard_outside(void) { return 1; }\n",
                                         encoding="utf-8")
    library = compile_shared(libdir / "libenvguard_outside.so", build / "outside_lib.c",
                             "-Wl,-soname,libenvguard_outside.so")
    (build / "_outside.c").write_text("extern int envguard_outside(void);\n"
                                      "void *PyInit__outside(void) "
                                      "{ return (void *)&envguard_outside; }\n", encoding="utf-8")
    module = compile_shared(build / "outside" / f"_outside{SUFFIX}", build / "_outside.c",
                            str(library))
    wheel = write_wheel(house, "outside", "1.0", {"outside/__init__.py": b"",
                                                  f"outside/_outside{SUFFIX}": module.read_bytes()},
                        f"{PY}-{PY}-manylinux_2_5_x86_64.manylinux1_x86_64")
    return wheel, libdir


@pytest.fixture(scope="module")
def rehearsal(make_venv: MakeVenv, numpy_wheel: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    build = tmp_path_factory.mktemp("rehearsal-build")
    house = tmp_path_factory.mktemp("rehearsal-wheels")
    wheels = {spec.distribution: build_wheel(spec, build, house) for spec in WHEELS}
    wheels["numpy"] = Path(shutil.copy(numpy_wheel, house))  # the oracles read the house
    outside, outside_dir = build_outside(build, house)
    venv = make_venv("rehearsal")
    venv.pip("install", "--no-index", "--no-deps", *map(str, wheels.values()), str(outside))
    return Rehearsal(venv, wheels, house, outside, outside_dir)


def envguard_json(venv: Venv, *args: str) -> dict[str, Any]:
    result = venv.envguard("--json", "-", *args, env=clean_environ())
    assert result.returncode in (0, 6), result.stdout + result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


# -- the oracles ------------------------------------------------------------------------------


def auditwheel_show(wheel: Path, **environ: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "auditwheel", "show", "--json", str(wheel)],
                            capture_output=True, text=True, check=False, timeout=300,
                            env=clean_environ(**environ))
    assert result.returncode == 0, result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


@pytest.fixture(scope="module")
def audited(rehearsal: Rehearsal) -> dict[str, dict[str, Any]]:
    """``auditwheel show --json`` of every wheel (run side by side: numpy's takes seconds)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(rehearsal.wheels, pool.map(auditwheel_show, rehearsal.wheels.values()),
                        strict=True))


def key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def split_version(version: str) -> tuple[str, tuple[int, ...]] | None:
    match = re.fullmatch(r"([A-Z]+)_(\d+(?:\.\d+)*)", version)
    return (match.group(1), key(match.group(2))) if match else None


def auditwheel_excess(shown: dict[str, Any], policy: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(library, family) → the highest version the wheel needs that ``policy`` does not
    allow, as auditwheel judges it (its versioned symbols against the policy's x86_64
    symbol versions, on the libraries the policy leaves to the machine)."""
    allowed = policy["symbol_versions"]["x86_64"]
    excess: dict[tuple[str, str], str] = {}
    for library, versions in shown["versioned_symbols"].items():
        if library not in policy["lib_whitelist"]:
            continue
        for version in versions:
            family, _, number = version.partition("_")
            if family in allowed and number not in allowed[family] and split_version(version):
                current = excess.get((library, family))
                if current is None or key(number) > key(current.partition("_")[2]):
                    excess[(library, family)] = version
    return excess


def readelf_glibc(path: Path) -> dict[str, str]:
    """library → the highest non-weak GLIBC version ``readelf --version-info`` lists."""
    output = subprocess.run(["readelf", "--version-info", "--wide", str(path)],
                            capture_output=True, text=True, check=True).stdout
    section = output.split("Version needs section", 1)[-1] if "Version needs section" in output \
        else ""
    highest: dict[str, str] = {}
    library = None
    for line in section.splitlines():
        file = re.search(r"File: (\S+)", line)
        if file:
            library = file.group(1)
        need = re.search(r"Name: (GLIBC_\d+(?:\.\d+)*)\s+Flags: (\S+)", line)
        if need and library and "WEAK" not in need.group(2):
            version = need.group(1)
            if library not in highest or key(version[6:]) > key(highest[library][6:]):
                highest[library] = version
    return highest


def uv_takes(rehearsal: Rehearsal, distribution: str, platform: str) -> bool:
    """Whether pip's resolver on that platform (uv's, offline) would install the wheel."""
    result = subprocess.run(
        [uv_binary(), "pip", "install", "--dry-run", "--no-index", "--find-links",
         str(rehearsal.house), "--python-platform", platform, "--python-version",
         f"{sys.version_info.major}.{sys.version_info.minor}", "--target",
         str(rehearsal.house / "target"), distribution],
        capture_output=True, text=True, check=False, timeout=120,
        env=clean_environ(UV_NO_CACHE="1", UV_OFFLINE="1"))
    return result.returncode == 0


# -- the verdicts -------------------------------------------------------------------------------

ABOVE = re.compile(r"^(?P<display>.+?): needs (?P<version>\S+) from (?P<library>\S+)"
                   r"(?: \(via (?P<via>[^)]+)\))?, ")


def above_target(verdict: dict[str, Any]) -> list[re.Match[str]]:
    found = []
    for problem in verdict.get("problems", []):
        if problem["kind"] == "above-target":
            match = ABOVE.match(problem["text"])
            assert match, problem
            found.append(match)
    return found


@pytest.fixture(scope="module")
def judged(rehearsal: Rehearsal) -> dict[str, dict[str, Any]]:
    """Per target: the JSON document of ``extensions DIST`` for every wheel, and ``wheels``."""
    lines = [f"extensions {name}" for name in rehearsal.wheels] + ["wheels"]
    return {target: envguard_json(rehearsal.venv, "--target", target, *lines)
            for target in TARGETS}


@pytest.mark.parametrize("target", list(TARGETS))
def test_extensions_agree_with_auditwheel(target: str, judged: dict[str, dict[str, Any]],
                                          audited: dict[str, dict[str, Any]],
                                          rehearsal: Rehearsal) -> None:
    policy = next(p for p in auditwheel_policies().values()
                  if target in (p["name"], *p["aliases"]))
    verdicts = {v["requirement"]["argument"]: v for v in judged[target]["contract"]
                if v["requirement"]["key"] == "extensions"}
    for distribution in rehearsal.wheels:
        verdict = verdicts[distribution]
        excess = auditwheel_excess(audited[distribution], policy)
        ours: dict[tuple[str, str], str] = {}
        for match in above_target(verdict):
            family = match["version"].split("_")[0]
            current = ours.get((match["library"], family))
            if current is None or key(match["version"].split("_")[1]) > key(current.split("_")[1]):
                ours[(match["library"], family)] = match["version"]
        assert ours == excess, (target, distribution, verdict["reason"])
        assert (verdict["status"] == "unmet") is bool(excess), (target, distribution)
        assert verdict["overridden"] is True
        assert verdict["found"].endswith("(overridden)")


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_glibc_need_above_the_target_is_named_as_readelf_lists_it(
        target: str, judged: dict[str, dict[str, Any]], rehearsal: Rehearsal) -> None:
    glibc = key(next(p for p in auditwheel_policies().values()
                     if target in (p["name"], *p["aliases"]))["name"].split("_", 1)[1]
                .replace("_", "."))
    site = rehearsal.venv.site
    expected: set[tuple[str, str, str]] = set()
    for distribution in rehearsal.wheels:
        record = (next(site.glob(f"{distribution.replace('-', '_')}-*.dist-info")) / "RECORD")
        for line in record.read_text(encoding="utf-8").splitlines():
            name = line.split(",", 1)[0]
            if ".so" not in name:
                continue
            for library, version in readelf_glibc(site / name).items():
                if key(version[6:]) > glibc:
                    expected.add((os.path.basename(name), library, version))
    ours: set[tuple[str, str, str]] = set()
    for verdict in judged[target]["contract"]:
        for match in above_target(verdict):
            if match["version"].startswith("GLIBC_"):
                needer = match["via"] or os.path.basename(match["display"])
                ours.add((needer, match["library"], match["version"]))
    assert ours == expected


@pytest.mark.parametrize("target", [name for name, platform in TARGETS.items() if platform])
def test_wheels_agree_with_what_uv_would_install_there(
        target: str, judged: dict[str, dict[str, Any]], rehearsal: Rehearsal) -> None:
    wheels, = (v for v in judged[target]["contract"] if v["line"] == "wheels")
    unsupported = {problem["text"].split()[0] for problem in wheels.get("problems", [])}
    platform = TARGETS[target]
    assert platform is not None
    refused = {name for name in rehearsal.wheels if not uv_takes(rehearsal, name, platform)}
    assert unsupported & set(rehearsal.wheels) == refused
    assert wheels["overridden"] is True
    # The lying wheel: its tag passes, its module does not.
    if target == "manylinux2014":
        assert "mislabelled" not in refused
        liar, = (v for v in judged[target]["contract"] if v["line"] == "extensions mislabelled")
        assert liar["status"] == "unmet"
        assert "_liar" in liar["reason"] and "GLIBC_2.28" in liar["reason"]


def test_a_vendored_librarys_need_names_the_library(judged: dict[str, dict[str, Any]]) -> None:
    verdict, = (v for v in judged["manylinux2014"]["contract"] if v["line"] == "extensions vendors")
    assert verdict["status"] == "unmet"
    assert "needs GLIBC_2.28 from libc.so.6 (via libdep-1a2b3c4d.so)" in verdict["reason"]


def test_the_real_machine_meets_them_all(rehearsal: Rehearsal) -> None:
    """Without a target, every module loads here (glibc 2.36): what fails above is the
    rehearsal's doing."""
    document = envguard_json(rehearsal.venv, *(f"extensions {name}" for name in rehearsal.wheels),
                             "wheels")
    assert [(v["line"], v["status"]) for v in document["contract"] if v["status"] != "met"] == []
    assert not any(v["overridden"] for v in document["contract"])


def test_a_musl_target_takes_no_glibc_module(rehearsal: Rehearsal) -> None:
    document = envguard_json(rehearsal.venv, "--target", "musllinux_1_2", "extensions old-only",
                             "wheels", "glibc", "musl >=1.2", "consistent")
    extensions, wheels, glibc, musl, consistent = document["contract"]
    # pip check's unsupported wheels, judged for musl too: said so.
    assert (consistent["status"], consistent["overridden"]) == ("unmet", True)
    assert consistent["found"].endswith("(overridden)")
    assert extensions["status"] == "unmet"
    assert "the rehearsed machine has no glibc (target musllinux_1_2)" in extensions["reason"]
    assert wheels["status"] == "unmet"  # every wheel here is manylinux: uv agrees
    unsupported = {problem["text"].split()[0] for problem in wheels["problems"]}
    assert unsupported & set(rehearsal.wheels) == {
        name for name in rehearsal.wheels
        if not uv_takes(rehearsal, name, "x86_64-unknown-linux-musl")} == set(rehearsal.wheels)
    assert (glibc["status"], glibc["found"]) == ("unmet", "absent (overridden)")
    assert (musl["status"], musl["found"]) == ("met", "1.2 (overridden)")
    assert document["environment"]["target"]["name"] == "musllinux_1_2"


def test_the_override_variable_alone_does_the_same(rehearsal: Rehearsal) -> None:
    """``ENVGUARD_OVERRIDE_GLIBC=2.17`` is the glibc part of ``--target manylinux2014``:
    the same modules fail the GLIBC needs (the policy's other families aside)."""
    result = rehearsal.venv.envguard("--json", "-", "extensions just-above", "extensions at-2014",
                                     env=clean_environ(ENVGUARD_OVERRIDE_GLIBC="2.17"))
    above, at = json.loads(result.stdout)["contract"]
    assert (above["status"], at["status"]) == ("unmet", "met")
    assert "needs GLIBC_2.18 from libc.so.6, above glibc 2.17 (ENVGUARD_OVERRIDE_GLIBC)" in \
        above["reason"]


def test_a_system_library_the_policy_does_not_allow_is_unknown_as_auditwheel_says(
        rehearsal: Rehearsal) -> None:
    """A module loading a library of this machine's that the manylinux2014 policy does not
    leave to the machine (auditwheel would have to vendor it): the target may lack it, so
    ``extensions`` is ``unknown`` there — met here, where the loader finds it."""
    environ = clean_environ(LD_LIBRARY_PATH=str(rehearsal.outside_dir))
    shown = auditwheel_show(rehearsal.outside, LD_LIBRARY_PATH=str(rehearsal.outside_dir))
    assert list(shown["external_libs"]) == ["libenvguard_outside.so"]
    assert auditwheel_show(rehearsal.wheels["at-2014"])["external_libs"] == {}
    result = rehearsal.venv.envguard("--json", "-", "--target", "manylinux2014",
                                     "extensions outside", "extensions at-2014", env=environ)
    outside, at = json.loads(result.stdout)["contract"]
    assert (outside["status"], at["status"]) == ("unknown", "met")
    assert [problem["kind"] for problem in outside["problems"]] == ["outside-target"]
    assert "loads libenvguard_outside.so from this machine" in outside["reason"]
    assert "target manylinux2014 is not known to provide it" in outside["reason"]
    here = rehearsal.venv.envguard("--json", "-", "extensions outside", env=environ)
    assert json.loads(here.stdout)["contract"][0]["status"] == "met"
