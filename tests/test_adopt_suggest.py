"""``python -m pytest_envguard --suggest``: a contract derived from the installed binaries.

The main test builds a real venv: numpy installed by pip from a wheel repacked at test
time out of the test interpreter's own numpy (no download), wheels of ``cc``-built
extensions (one needing ``GLIBC_2.34`` through a symbol version reference, one linked
to the system's ``libz.so.1``, one library installed only for ``x86-64-v3``), and
hand-made CUDA wheel metadata. The suggested block, saved as it is, must be met by
``--config FILE`` in that venv; its glibc floor must be the maximum ``readelf
--version-info`` finds over the same files, its cpu lines must cover numpy's own
``__cpu_baseline__``, and its CUDA lines must follow from the CUDA wheels' versions.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from pytest_envguard.adopt import knowledge
from pytest_envguard.adopt.suggest import Candidate, cuda_lines, musllinux_floor
from pytest_envguard.options import read_config
from pytest_envguard.probes.distributions import InstalledDistribution
from tests.fixtures_native import compile_shared
from tests.fixtures_packages import (
    MakeVenv,
    Venv,
    clean_environ,
    write_dist_info,
    write_wheel,
)

SOURCES = {
    # A reference to dlopen@GLIBC_2.34 (dlopen moved into libc.so.6 in glibc 2.34).
    "needs234.c": "extern void *envguard_dlopen(const char *, int);\n"
                  '__asm__(".symver envguard_dlopen, dlopen@GLIBC_2.34");\n'
                  "void *envguard_open(void) { return envguard_dlopen((void *)0, 1); }\n",
    "zuser.c": "extern const char *zlibVersion(void);\n"
               "const char *envguard_zlib(void) { return zlibVersion(); }\n",
    "hw.c": "int envguard_hw(void) { return 3; }\n",
}


def readelf_glibc_needs(path: str) -> list[str]:
    """The non-weak GLIBC_x.y versions ``readelf --version-info`` lists as needed."""
    output = subprocess.run(["readelf", "--version-info", "--wide", path], capture_output=True,
                            text=True, check=False).stdout
    needs = output.split("Version needs section", 1)
    if len(needs) < 2:
        return []
    section = needs[1].split("Version definition section", 1)[0]
    return [match[0] for match in re.findall(r"Name: (GLIBC_\d+(\.\d+)*)\s+Flags: (\S+)", section)
            if "WEAK" not in match]


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.removeprefix("GLIBC_").split("."))


@pytest.fixture(scope="module")
def adopt_venv(make_venv: MakeVenv, numpy_wheel: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Venv:
    """A venv with numpy, three cc-built native wheels and two CUDA wheels' metadata."""
    if sys.platform != "linux":  # pragma: no cover - the project runs on Linux
        pytest.fail("these tests build ELF files")
    build = tmp_path_factory.mktemp("adopt-build")
    for name, text in SOURCES.items():
        (build / name).write_text(text, encoding="utf-8")
    needs234 = compile_shared(build / "_needs234.so", build / "needs234.c")
    zuser = compile_shared(build / "_zuser.so", build / "zuser.c", "-l:libz.so.1")
    hw = compile_shared(build / "libhw.so", build / "hw.c")
    house = tmp_path_factory.mktemp("adopt-wheels")
    tag = "py3-none-linux_x86_64" if os.uname().machine == "x86_64" else \
        f"py3-none-linux_{os.uname().machine}"
    wheels = [
        numpy_wheel,
        write_wheel(house, "needs-glibc", "1.0", {"needs_glibc/__init__.py": b"",
                                                  "needs_glibc/_needs234.so": needs234.read_bytes()},
                    tag),
        write_wheel(house, "zuser", "1.0", {"zuser/__init__.py": b"",
                                            "zuser/_zuser.so": zuser.read_bytes()}, tag),
        write_wheel(house, "hwonly", "1.0", {
            "hwonly/__init__.py": b"",
            "hwonly/lib/glibc-hwcaps/x86-64-v3/libhw.so": hw.read_bytes()}, tag),
    ]
    venv = make_venv("adopt")
    venv.pip("install", "--no-index", "--no-deps", *map(str, wheels))
    write_dist_info(venv.site, "nvidia-cuda-runtime-cu12", "12.4.127",
                    wheel_tag="py3-none-manylinux2014_x86_64")
    write_dist_info(venv.site, "nvidia-cublas-cu12", "12.4.5.8",
                    wheel_tag="py3-none-manylinux2014_x86_64")
    return venv


def make_project(root: Path, numpy_version: str) -> Path:
    root.mkdir()
    (root / "pyproject.toml").write_text(
        '[project]\nname = "sample"\nversion = "1.0"\nrequires-python = ">=3.9"\n\n'
        '[tool.pytest.ini_options]\naddopts = "-q"  # stays\n\n[tool.other]\nkey = [1, 2]\n',
        encoding="utf-8")
    (root / "requirements.txt").write_text(f"numpy=={numpy_version}\n", encoding="utf-8")
    return root


def contract_lines(text: str, name: str, tmp_path: Path) -> list[str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    values = read_config(path) or {}
    from pytest_envguard.options import as_lines

    return as_lines(values.get("envguard", []), name)


OVERRIDES = {"ENVGUARD_OVERRIDE_CUDA": "12.4", "ENVGUARD_OVERRIDE_DRIVER": "550.54.14"}


def interpreter_files(venv: Venv) -> list[str]:
    """The interpreter as the loader loads it: its executable and any libpython."""
    executable = os.path.realpath(venv.python)
    ldd = subprocess.run(["ldd", executable], capture_output=True, text=True, check=False).stdout
    return [executable, *re.findall(r"=> (\S*libpython\S+)", ldd)]


def test_the_suggested_block_is_met_when_fed_back(adopt_venv: Venv, tmp_path: Path) -> None:
    numpy_version = metadata.version("numpy")
    project = make_project(tmp_path / "project", numpy_version)
    env = clean_environ(**OVERRIDES)
    result = adopt_venv.run("-m", "pytest_envguard", "--suggest", env=env, cwd=project)
    assert result.returncode == 0, result.stderr
    block = result.stdout
    assert block.splitlines()[1:3] == ["[pytest]", "envguard ="]
    # Every line has its reason on the comment line right above it (the flags of one
    # ISA level share theirs).
    body = block.splitlines()[3:]
    assert body[0].strip().startswith("#")
    for index, line in enumerate(body):
        if not line.strip().startswith("#") and not body[index - 1].strip().startswith("#"):
            assert line.strip().startswith("cpu ") and body[index - 1].strip().startswith("cpu "), line

    (project / "suggested.ini").write_text(block, encoding="utf-8")
    fed = adopt_venv.run("-m", "pytest_envguard", "--config", "suggested.ini", "-q", env=env,
                         cwd=project)
    assert fed.returncode == 0, fed.stdout + fed.stderr
    lines = contract_lines(block, "suggested.ini", tmp_path)

    # python: the project's Requires-Python.
    assert "python >=3.9" in lines
    # glibc: the highest non-weak GLIBC_ need readelf finds over the same files.
    files = [str(path) for path in adopt_venv.site.rglob("*.so*") if path.is_file()]
    files += interpreter_files(adopt_venv)
    needs = {path: readelf_glibc_needs(path) for path in files}
    assert "GLIBC_2.34" in needs[str(adopt_venv.site / "needs_glibc" / "_needs234.so")]
    highest = max((need for found in needs.values() for need in found), key=version_key)
    assert f"glibc >={highest.removeprefix('GLIBC_')}" in lines
    setter = block.splitlines()[block.splitlines().index(
        f"    glibc >={highest.removeprefix('GLIBC_')}") - 1]
    assert any(highest in found and os.path.basename(path) in setter
               for path, found in needs.items()), setter
    # cpu: numpy's own baseline, and the x86-64-v3 hwcaps-only library.
    if os.uname().machine == "x86_64":
        baseline = subprocess.run(
            [str(adopt_venv.python), "-c",
             "from numpy._core import _multiarray_umath as m; print(' '.join(m.__cpu_baseline__))"],
            capture_output=True, text=True, check=True, env=clean_environ()).stdout.split()
        if "X86_V2" in baseline:
            assert {f"cpu {flag}" for flag in knowledge.level_flags("x86-64-v2")} <= set(lines)
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        flags = set(re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE).group(1).split())  # type: ignore[union-attr]
        for flag in knowledge.level_flags("x86-64-v3"):
            if flag in flags:
                assert f"cpu {flag}" in lines
            else:
                assert re.search(rf"# left out \(.*\): cpu {flag} ", block), flag
        assert "hwonly/lib/glibc-hwcaps/x86-64-v3/libhw.so (hwonly 1.0)" in block
    # CUDA: from the nvidia-*-cu12 wheels, the driver from the minor-version table.
    assert "cuda >=12.0" in lines
    assert "driver >=525.60.13" in lines
    assert "nvidia-cuda-runtime-cu12 12.4.127" in block
    # The system library and its soname; hygiene keys; the lock file in the root.
    assert "library libz.so.1" in lines
    zlib_comment = block.splitlines()[block.splitlines().index("    library libz.so.1") - 1]
    assert "_zuser.so" in zlib_comment
    for line in ("extensions", "wheels", "consistent", "isolated", "lock requirements.txt"):
        assert line in lines, line


def test_lines_not_met_here_are_left_out_with_the_reason(adopt_venv: Venv, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", metadata.version("numpy"))
    # No NVML on a machine without a GPU (and none through the overrides): the CUDA
    # lines the wheels imply are not met here, so they are comments.
    env = clean_environ(ENVGUARD_OVERRIDE_CUDA="", ENVGUARD_OVERRIDE_DRIVER="")
    result = adopt_venv.run("-m", "pytest_envguard", "--suggest", env=env, cwd=project)
    assert result.returncode == 0, result.stderr
    lines = contract_lines(result.stdout, "pytest.ini", tmp_path)
    assert not [line for line in lines if line.startswith(("cuda", "driver"))]
    assert re.search(r"^    # left out \(unmet here: .*\): cuda >=12\.0 — .*nvidia-cuda-runtime-cu12",
                     result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^    # left out \(unmet here: .*\): driver >=525\.60\.13 — ",
                     result.stdout, re.MULTILINE)


def test_write_merges_into_pyproject_and_is_read_back(adopt_venv: Venv, tmp_path: Path) -> None:
    from pytest_envguard.probes._io import load_toml

    project = make_project(tmp_path / "project", metadata.version("numpy"))
    before = load_toml(str(project / "pyproject.toml"), 1 << 20)
    original = (project / "pyproject.toml").read_text(encoding="utf-8")
    env = clean_environ(**OVERRIDES)
    result = adopt_venv.run("-m", "pytest_envguard", "--suggest", "--write", "pyproject.toml",
                            env=env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("--- a/pyproject.toml\n+++ b/pyproject.toml\n")
    text = (project / "pyproject.toml").read_text(encoding="utf-8")
    assert text.startswith(original.split("[tool.other]")[0].rstrip("\n"))  # nothing before moved
    assert 'addopts = "-q"  # stays' in text
    after = load_toml(str(project / "pyproject.toml"), 1 << 20)
    envguard = after["tool"]["pytest"]["ini_options"].pop("envguard")
    assert after == before
    assert "python >=3.9" in envguard
    fed = adopt_venv.run("-m", "pytest_envguard", "--config", "pyproject.toml", "-q", env=env,
                         cwd=project)
    assert fed.returncode == 0, fed.stdout + fed.stderr
    # A second run finds every line already there and changes nothing.
    again = adopt_venv.run("-m", "pytest_envguard", "--suggest", "--write", "pyproject.toml",
                           env=env, cwd=project)
    assert again.returncode == 0, again.stderr
    assert (project / "pyproject.toml").read_text(encoding="utf-8") == text
    assert "already has every suggested line" in again.stderr


@pytest.mark.parametrize("form", ["ini", "toml"])
def test_pytest_itself_reads_the_pasted_block(pytester: pytest.Pytester, form: str) -> None:
    """The block as printed, pasted into pytest.ini or pyproject.toml: pytest's own ini
    reader skips the comment lines and the session contract is met."""
    # Made the way the session will run (pytester's subprocess environment), printed.
    made = pytester.run(sys.executable, "-m", "pytest_envguard", "--suggest", "--format", form)
    assert made.ret == 0, made.stderr.str()
    block = made.stdout.str()
    lines = [line.strip() for line in block.splitlines()[3:]
             if line.strip() and not line.strip().startswith(("#", "]"))]
    if form == "ini":
        pytester.makeini(block)
    else:
        pytester.makepyprojecttoml(block)
    pytester.makepyfile("def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("--envguard-report", "-p", "no:randomly")
    assert result.ret == 0, result.stdout.str()
    assert lines
    for line in lines:
        result.stdout.fnmatch_lines([f"ok *{line.strip(',').strip(chr(34))} *"])


# -- the knowledge, line by line --------------------------------------------------------------


def dist(name: str, version: str, tags: tuple[str, ...] | None = None) -> InstalledDistribution:
    return InstalledDistribution(name, version, f"/site/{name}.dist-info", "/site", "pip",
                                 wheel_tags=tags)


@pytest.mark.parametrize(("installed", "expected"), [
    ([dist("nvidia-cuda-runtime-cu12", "12.4.127"), dist("nvidia-cudnn-cu12", "9.1.0.70")],
     ["cuda >=12.0", "driver >=525.60.13"]),
    ([dist("torch", "2.5.1+cu118")], ["cuda >=11.0", "driver >=450.80.02"]),
    ([dist("torch", "2.9.0+cu130")], ["cuda >=13.0", "driver >=580"]),
    ([dist("nvidia-cuda-runtime", "13.0.96")], ["cuda >=13.0", "driver >=580"]),
    ([dist("cupy-cuda12x", "13.3.0")], ["cuda >=12.0", "driver >=525.60.13"]),
    ([dist("cupy-cuda117", "10.6.0")], ["cuda >=11.0", "driver >=450.80.02"]),
    ([dist("jax-cuda12-plugin", "0.4.35"), dist("jax-cuda12-pjrt", "0.4.35")],
     ["cuda >=12.0", "driver >=525.60.13"]),
    # Mixed majors: the newest decides (a CUDA 11 wheel runs on a CUDA 12 driver).
    ([dist("nvidia-cublas-cu11", "11.11.3.6"), dist("nvidia-cublas-cu12", "12.4.5.8")],
     ["cuda >=12.0", "driver >=525.60.13"]),
    ([dist("torch", "2.5.1"), dist("torch-cuda-not", "1.0"), dist("numpy", "2.1.0")], []),
    ([dist("torch", "2.5.1+cpu")], []),
])
def test_cuda_lines_follow_from_the_wheels(installed: list[InstalledDistribution],
                                           expected: list[str]) -> None:
    assert [candidate.line for candidate in cuda_lines(installed)] == expected


def test_the_cuda_comment_names_the_wheels_and_full_support() -> None:
    lines = cuda_lines([dist("nvidia-cuda-runtime-cu12", "12.4.127")])
    assert lines[0].why.startswith("nvidia-cuda-runtime-cu12 12.4.127 need CUDA 12.4")
    assert "550.54.14 supports CUDA 12.4 fully" in lines[1].why


def test_musl_floor_is_the_highest_musllinux_tag() -> None:
    installed = [dist("a", "1", ("cp311-cp311-musllinux_1_1_x86_64",)),
                 dist("b", "2", ("cp311-cp311-manylinux_2_17_x86_64.musllinux_1_2_x86_64",)),
                 dist("c", "3", None)]
    assert musllinux_floor(installed) == ((1, 2), "b 2")


def test_level_flags_include_the_lower_levels() -> None:
    v3 = knowledge.level_flags("x86-64-v3")
    assert set(knowledge.level_flags("x86-64-v2")) < set(v3)
    assert "avx2" in v3
    assert knowledge.level_flags("power10") == ()


def test_candidates_are_plain_values() -> None:
    assert Candidate("wheels", "why") == Candidate("wheels", "why")
