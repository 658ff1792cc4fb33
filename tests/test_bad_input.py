"""The bad-input corpus: every way a user, a file or the OS can hand envguard
garbage, generated at test time. Each input gets a clear message or an
``unknown`` verdict — never a traceback, an INTERNALERROR or a side effect.

The number of inputs tried is printed at the end of the run (see
``tests/fixtures_reliability.py``).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_envguard import __main__ as cli
from pytest_envguard import render
from pytest_envguard.checks import evaluate
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.grammar import RequirementError, parse_line, parse_lines
from pytest_envguard.probes import commands, distributions, isolation, locks
from pytest_envguard.verdicts import Status, Verdict

Tried = Callable[[int], None]
STATUSES = set(Status)


def no_traceback(*outputs: str) -> None:
    for output in outputs:
        assert "Traceback" not in output, output
        assert "INTERNALERROR" not in output, output


def environment(tmp_path: Path, environ: dict[str, str] | None = None, **facts: object) -> Environment:
    settings = Settings(cache_dir=None, rootdir=tmp_path)
    return Environment(dict(facts), environ=environ or {"PATH": os.defpath}, settings=settings)  # type: ignore[arg-type]


def shown(verdicts: list[Verdict], env: Environment) -> None:
    """Every way a verdict is shown must work: table, skip reason, JSON (as bytes on disk)."""
    render.verdict_table(verdicts)
    for verdict in verdicts:
        assert verdict.status in STATUSES
        assert verdict.reason.strip()
        verdict.skip_reason()
    text = json.dumps(render.json_document(env, verdicts, {"t.py::x": verdicts}), indent=2)
    text.encode("utf-8")


# -- 1. malformed lines in every config format --------------------------------------------------

BAD_LINES = [
    "cdua >=12", "pyhton>=3.10", "frobnicate", "python >=3.1O", "python 3.11", "python >=3.10,",
    "memory >=16XB", "memory >=lots", "memory ~=16GiB", "gpus >= two", "gpus >=-1", "cpu", "library",
    "wheels numpy", "env 1BAD", "package ./local/path", "package foo @ https://example.invalid/x.whl",
    "python; nonexistent_variable == '1'", "python; __import__('os').system('touch pwned')",
    "python; os.getcwd() == '/'", "gpu '*H100*", ">=3.10", "command rm -rf /",
    "import os.system('touch pwned')", "lock", "compute-capability >=8.O", "memory-available >=1e9",
    "cuda ~=12", "driver ==", "extensions numpy>=1", "isolated yes", "abi", "env A B",
    "python >=3.10; python_version >= '3' and", "python — >=3", "é",
    "python; " + "(" * 40 + "os_name == 'posix'" + ")" * 40, "x" * 3000,
    "cuda-runtime >=12 <13", "gpu-memory >=16 GiB yes",
]


def _toml(lines: list[str]) -> str:
    return "[" + ", ".join(json.dumps(line, ensure_ascii=False) for line in lines) + "]"


CONFIG_WRITERS: dict[str, Callable[[list[str]], str]] = {
    "pytest.ini": lambda lines: "[pytest]\nenvguard =\n" + "".join(f"    {x}\n" for x in lines),
    "tox.ini": lambda lines: "[pytest]\nenvguard =\n" + "".join(f"    {x}\n" for x in lines),
    "setup.cfg": lambda lines: "[tool:pytest]\nenvguard =\n" + "".join(f"    {x}\n" for x in lines),
    "pyproject.toml": lambda lines: f"[tool.pytest.ini_options]\nenvguard = {_toml(lines)}\n",
    "pytest.toml": lambda lines: f"[pytest]\nenvguard = {_toml(lines)}\n",
}
# pytest reads pytest.toml from 9.0 on (``python -m pytest_envguard`` reads it everywhere).
PYTEST_READS = sorted(name for name in CONFIG_WRITERS
                      if name != "pytest.toml" or int(pytest.__version__.split(".")[0]) >= 9)

SENTINEL = """
import pathlib
pathlib.Path("collected.txt").write_text("collected")
def test_one():
    pass
"""


@pytest.mark.parametrize("name", PYTEST_READS)
def test_malformed_lines_in_every_config_format(pytester: pytest.Pytester, name: str,
                                                bad_inputs: Tried) -> None:
    pytester.makepyfile(test_sentinel=SENTINEL)
    problems = []
    for line in BAD_LINES:
        (pytester.path / name).write_text(CONFIG_WRITERS[name](["python >=3", line]),
                                          encoding="utf-8")
        result = pytester.runpytest("-p", "no:cacheprovider")
        out, err = result.stdout.str(), result.stderr.str()
        bad_inputs(1)
        if result.ret != 4 or f"ERROR: envguard: {name} [envguard]: " not in err:
            problems.append(f"{line!r}: exit {result.ret}\n{err}{out}")
        if "Traceback" in out + err or "INTERNALERROR" in out + err:
            problems.append(f"{line!r}: traceback\n{err}{out}")
        if (pytester.path / "collected.txt").exists() or (pytester.path / "pwned").exists():
            problems.append(f"{line!r}: collected or executed")
    assert not problems, "\n\n".join(problems)


MAIN_CONFIG_NAMES = {"pytest.ini": "pytest.ini", ".pytest.ini": "pytest.ini", "tox.ini": "tox.ini",
                     "setup.cfg": "setup.cfg", "pyproject.toml": "pyproject.toml",
                     "pytest.toml": "pytest.toml", ".pytest.toml": "pytest.toml"}


@pytest.mark.parametrize("name", sorted(MAIN_CONFIG_NAMES))
def test_malformed_lines_in_every_config_format_outside_pytest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    name: str, bad_inputs: Tried,
) -> None:
    """``python -m pytest_envguard`` reads the same files itself."""
    monkeypatch.chdir(tmp_path)
    for line in BAD_LINES:
        (tmp_path / name).write_text(CONFIG_WRITERS[MAIN_CONFIG_NAMES[name]](["python >=3", line]),
                                     encoding="utf-8")
        assert cli.main(["-q", "-c", name]) == 4, line
        err = capsys.readouterr().err
        assert err.startswith(f"envguard: {name} [envguard]: "), (line, err)
        bad_inputs(1)


CONFIG_VALUES = [
    ("pyproject.toml", "[tool.pytest.ini_options]\nenvguard = [1, 2]\n", "not int"),
    ("pyproject.toml", '[tool.pytest.ini_options]\nenvguard = ["python", 5]\n', "not int"),
    ("pyproject.toml", '[tool.pytest.ini_options]\nenvguard = [["python"]]\n', "not list"),
    ("pyproject.toml", "[tool.pytest.ini_options]\nenvguard = 5\n", "starts with a key"),
    ("pyproject.toml", '[tool.pytest.ini_options]\nenvguard_gpu_timeout = "nan"\n', "positive number"),
    ("pyproject.toml", '[tool.pytest.ini_options]\nenvguard_gpu_timeout = "-1"\n', "positive number"),
    ("pyproject.toml", '[tool.pytest.ini_options]\nenvguard_import_timeout = "inf"\n', "positive number"),
    ("pyproject.toml", '[tool.pytest.ini_options]\nenvguard_strict = "sometimes"\n', "invalid value"),
    ("pyproject.toml", '[tool.pytest.ini_options]\nenvguard_lock_extras = "maybe"\n', "invalid value"),
    ("pytest.ini", "[pytest]\nenvguard_gpu_timeout = 1e999\n", "positive number"),
    ("pytest.ini", "[pytest]\nenvguard_gpu_timeout = 0\n", "positive number"),
    ("pytest.ini", "[pytest]\nenvguard_import_timeout = soon\n", "positive number"),
    ("pytest.ini", "[pytest]\nenvguard_strict = 2\n", "invalid value"),
    ("tox.ini", "[pytest]\nenvguard =\n    python >=3\n    python; 'a' in\n", "invalid environment marker"),
]


@pytest.mark.parametrize(("name", "text", "message"), CONFIG_VALUES)
def test_config_values_of_wrong_types(pytester: pytest.Pytester, name: str, text: str, message: str,
                                      bad_inputs: Tried) -> None:
    pytester.makepyfile(test_sentinel=SENTINEL)
    (pytester.path / name).write_text(text, encoding="utf-8")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    bad_inputs(1)
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"ERROR: *{message}*"])
    no_traceback(result.stdout.str(), result.stderr.str())
    assert not (pytester.path / "collected.txt").exists()


# -- 2. marker arguments of wrong types ----------------------------------------------------------

BAD_MARKERS = [
    "1", "2.5", "None", "True", "False", "[]", '["python"]', '("python",)', 'b"python"',
    'bytearray(b"python")', '{"python": ">=3"}', "object()", "...", 'float("nan")', "10**100", "-1",
    "1j", "[type]", '"python", print', "pytest", "set()", '"python", 3', 'gpus=2', 'gpus=2.0', "cuda=None",
    'python=b">=3"', 'gpu_memory=[">=1GiB"]', "cuda=False", "cpus={}", "memory=object()",
    "isolated=1", 'bogus="x"', '**{"": "x"}', '**{"gpu memory": ">=1GiB"}', 'strict="yes"',
    "strict=1", "strict=[]", "reason=5", 'reason=b"x"', '"python", strict="no"',
    '"cdua >=12"', '"python; __import__(\'os\').system(\'touch pwned\')"', '"gpus >=2; os.name"',
    '"python\\n>=3"', '"python\\x00"', '"\\udcff"', '"python >=3.10" * 1000',
]
BAD_REQUIRE_CALLS = [
    "5", "None", 'b"python"', '["python"]', 'gpus=2', 'python=None', 'bogus=">=1"', '"cdua"',
    'strict="yes"', '"python", reason=7',
]


def test_marker_arguments_of_wrong_types(pytester: pytest.Pytester, bad_inputs: Tried) -> None:
    tests = [f"@pytest.mark.requires({args})\ndef test_marker_{index}():\n    pass\n"
             for index, args in enumerate(BAD_MARKERS)]
    tests += [f"def test_require_{index}(envguard):\n    envguard.require({args})\n"
              for index, args in enumerate(BAD_REQUIRE_CALLS)]
    pytester.makepyfile("import pytest\n\n" + "\n".join(tests) + "\ndef test_good():\n    pass\n")
    # Bad markers are collection errors; --continue-on-collection-errors runs the rest.
    result = pytester.runpytest("-p", "no:cacheprovider", "-rfE", "--continue-on-collection-errors")
    bad_inputs(len(BAD_MARKERS) + len(BAD_REQUIRE_CALLS))
    out = result.stdout.str()
    no_traceback(out, result.stderr.str())
    result.assert_outcomes(passed=1, errors=len(BAD_MARKERS), failed=len(BAD_REQUIRE_CALLS))
    for index in range(len(BAD_MARKERS)):
        assert f"envguard: requires marker of test_marker_arguments_of_wrong_types.py::" \
               f"test_marker_{index}: " in out, BAD_MARKERS[index]
    for index in range(len(BAD_REQUIRE_CALLS)):
        assert f"envguard: envguard.require() in test_marker_arguments_of_wrong_types.py::" \
               f"test_require_{index}" in out, BAD_REQUIRE_CALLS[index]
    assert not (pytester.path / "pwned").exists()


# -- 3. injection attempts in "; marker" and in names ----------------------------------------

INJECTIONS = [
    "python; __import__('os').system('touch pwned')",
    "python; os.system('touch pwned') == 0",
    "python; python_version == '3' or __import__('os')",
    "python; exec('open(\"pwned\", \"w\")')",
    "python; sys_platform == 'linux' and open('pwned','w')",
    "python; python_version == '{0.__class__.__mro__}'",
    "python; python_version == '%(x)s' and os_name == '${IFS}'",
    "command touch pwned",
    "command $(touch pwned)",
    "command `touch pwned`",
    "command ;touch pwned",
    "command touch&&pwned",
    "command ../../../usr/bin/touch",
    "command touch\x00pwned",
    "import os;__import__('os').system('touch pwned')",
    "import os.system('touch pwned')",
    "import __import__('os')",
    "import os; python_version >= '0'",
    "env X=$(touch pwned)",
    "env X=`touch pwned`",
    "env PATH=/tmp; os_name == 'posix'",
    "env $(touch pwned)",
    "library ../../../tmp/pwned",
    "library libc.so.6; touch pwned",
    "library $(touch pwned)",
    "package foo @ file:///etc/passwd",
    "package foo; __import__('os')",
    "package foo==1; os.system('x')",
    "package os.system('touch pwned')",
    "lock ../../../../etc/passwd",
    "lock /etc/shadow",
    "lock $(touch pwned)",
    "lock '/dev/zero'",
    "gpu '*'; __import__('os')",
    "gpu \"*\"; os_name == 'posix'",
    "platform linux\"; import os; \"",
    "implementation {0.__init__.__globals__}",
    "abi %s%s%s%n",
    "cpu avx2\x1b[2J",
    "machine x86_64 || touch pwned",
    "extensions ../../etc",
]


@pytest.mark.parametrize("line", INJECTIONS, ids=range(len(INJECTIONS)))
def test_injection_attempts_are_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str,
                                     bad_inputs: Tried) -> None:
    monkeypatch.chdir(tmp_path)
    bad_inputs(1)
    try:
        requirement = parse_line(line, "injection")
    except RequirementError as error:
        message = str(error)
        requirement = None
    if requirement is None:
        assert message.startswith("injection: ")
    else:
        env = environment(tmp_path)
        verdicts = evaluate([requirement], env)
        shown(verdicts, env)
    assert not (tmp_path / "pwned").exists()
    assert not Path("/tmp/pwned").exists()
    assert sorted(os.listdir(tmp_path)) == []


# -- 4. non-UTF-8 bytes in environment variables and file names ---------------------------

def _surrogates(text: str) -> str:
    """What Python makes of non-UTF-8 bytes in os.environ and file names."""
    return os.fsdecode(os.fsencode(text.replace("?", "\udcff")))


NON_UTF8_ENVIRONS: list[tuple[str, dict[str, str]]] = [
    ("env BADVAR", {"BADVAR": _surrogates("a?b")}),
    ("env BADVAR=x", {"BADVAR": _surrogates("a?b")}),
    ("env BADVAR=a", {"BADVAR": _surrogates("?")}),
    ("isolated", {"PYTHONPATH": _surrogates("/x?/y")}),
    ("isolated", {"PYTHONHOME": _surrogates("/?")}),
    ("isolated", {"LD_LIBRARY_PATH": _surrogates("/?:/tmp/?/lib::")}),
    ("isolated", {"VIRTUAL_ENV": _surrogates("/venv?")}),
    ("isolated", {"CONDA_PREFIX": _surrogates("/opt/conda?")}),
    ("command ls", {"PATH": _surrogates("/no?where:/bin:/usr/bin")}),
    ("command nothing-here", {"PATH": _surrogates("?:??:/?/?")}),
    ("glibc >=2.17", {"ENVGUARD_OVERRIDE_GLIBC": _surrogates("2.?")}),
    ("glibc >=2.17", {"ENVGUARD_OVERRIDE_GLIBC": "not a version"}),
    ("glibc >=2.17", {"ENVGUARD_OVERRIDE_GLIBC": "99999999999999999999999999.1"}),
    ("glibc", {"ENVGUARD_OVERRIDE_GLIBC": "-1"}),
    ("cuda >=12", {"ENVGUARD_OVERRIDE_CUDA": _surrogates("12.?")}),
    ("driver >=535", {"ENVGUARD_OVERRIDE_DRIVER": "five hundred"}),
    ("gpus >=1", {"ENVGUARD_OVERRIDE_GPUS": _surrogates("?")}),
    ("gpus >=1", {"ENVGUARD_OVERRIDE_GPUS": "-3"}),
    ("gpus >=1", {"ENVGUARD_OVERRIDE_GPUS": "1e3"}),
    ("compute-capability >=8.0", {"ENVGUARD_OVERRIDE_COMPUTE_CAPABILITY": "eight"}),
    ("gpu-memory >=1GiB", {"ENVGUARD_OVERRIDE_GPUS": _surrogates("A?:81920:8.0;B:1:1.0")}),
    ("gpu-memory >=1GiB", {"ENVGUARD_OVERRIDE_GPUS": "A:1:8.0;" * 3000}),
    ("gpu '*'", {"ENVGUARD_OVERRIDE_GPUS": "::;;:"}),
    ("wheels", {"ENVGUARD_OVERRIDE_GLIBC": _surrogates("2.?")}),
    ("wheels", {"ENVGUARD_OVERRIDE_MUSL": "one.two"}),
    ("musl >=1.2", {"ENVGUARD_OVERRIDE_MUSL": _surrogates("1.?")}),
    ("gpus >=1", {"CUDA_VISIBLE_DEVICES": _surrogates("GPU-?,0,-1")}),
    ("gpus >=1", {"CUDA_VISIBLE_DEVICES": "0,0,0,999999999999999999999"}),
    ("env " + _surrogates("X?"), {}),
]


@pytest.mark.parametrize(("line", "environ"), NON_UTF8_ENVIRONS, ids=range(len(NON_UTF8_ENVIRONS)))
def test_non_utf8_environment_variables(tmp_path: Path, line: str, environ: dict[str, str],
                                        bad_inputs: Tried) -> None:
    bad_inputs(1)
    try:
        requirements = parse_lines([line], "non-utf8")
    except RequirementError as error:
        message = str(error)
        requirements = []
    if not requirements:
        assert "non-utf8" in message
        return
    env = environment(tmp_path, {"PATH": os.defpath, **environ})
    verdicts = evaluate(requirements, env)
    shown(verdicts, env)
    env.probe_cheap()
    render.environment_lines(env)


def test_non_utf8_bytes_in_a_whole_session(pytester: pytest.Pytester, bad_inputs: Tried) -> None:
    """The values reach the terminal, the skip summary and the JSON document intact."""
    other = pytester.path / "other"
    (other / "lib\udcff").mkdir(parents=True)
    (other / "pyvenv.cfg").write_text("home = /usr\n")
    (pytester.path / "requirements\udcff.txt").write_text("\xff-not-a-pin\n", encoding="latin-1")
    pytester.makepyfile(r"""
        import pytest
        @pytest.mark.requires("env BADVAR=x")
        def test_env():
            pass
        @pytest.mark.requires("isolated")
        def test_isolated():
            pass
        def test_lock(envguard):
            envguard.require("lock 'requirements\udcff.txt'")
    """)
    env = dict(os.environ, BADVAR=_surrogates("a?b"), PYTHONPATH=_surrogates("/x?"),
               LD_LIBRARY_PATH=str(other / "lib\udcff"))
    result = _run_pytest(pytester, env, "-rsfE", "--envguard-json", "r.json")
    bad_inputs(5)
    no_traceback(result.stdout, result.stderr)
    assert "needs env BADVAR=x" in result.stdout
    assert "needs isolated" in result.stdout
    assert "lock file unusable" in result.stdout
    document = json.loads((pytester.path / "r.json").read_text(encoding="utf-8"))
    assert len(document["tests"]) == 3
    report = _run_pytest(pytester, env, "--envguard-report", "--envguard-require", "isolated",
                         "--envguard-require", "env BADVAR")
    no_traceback(report.stdout, report.stderr)
    assert report.returncode == 6
    assert "PYTHONPATH" in report.stdout


def _run_pytest(pytester: pytest.Pytester, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=pytester.path, env=env, capture_output=True, text=True,
                          errors="surrogateescape", timeout=120, check=False)


# -- 5. unparsable lock files ------------------------------------------------------------------

DEEP = "(" * 3000 + "os_name == 'posix'" + ")" * 3000

LOCKS: list[tuple[str, bytes]] = [
    ("requirements.txt", b"\xff\xfe garbage"),
    ("requirements.txt", b"numpy\n"),
    ("requirements.txt", b"numpy>=1\n"),
    ("requirements.txt", b"numpy==1.*\n"),
    ("requirements.txt", b"-r\n"),
    ("requirements.txt", b"-r missing.txt\n"),
    ("requirements.txt", b"--hash\n"),
    ("requirements.txt", b"--frobnicate\n"),
    ("requirements.txt", b"-i\n"),
    ("requirements.txt", b"\x00\x00\x00"),
    ("requirements.txt", b"numpy==1; python_version >\n"),
    ("requirements.txt", b"numpy==1; " + DEEP.encode() + b"\n"),
    ("requirements.txt", b"numpy==1 \\\n\\\n\\"),
    ("requirements.txt", b"[section]\nnumpy==1\n"),
    ("requirements.txt", b"numpy===\n"),
    ("requirements.txt", b"-r /dev/zero\n"),
    ("requirements.txt", b"-c /dev/null\n"),
    ("requirements.txt", b"numpy==1\n" * 1000 + b"broken==\n"),
    ("requirements.txt", b"numpy ==1 --hash=sha256:\xff\n"),
    ("requirements.in", b"numpy @\n"),
    ("requirements.txt", b"~\x00x\n"),  # found by the fuzzer: expanduser raised ValueError
    ("pylock.toml", b"\xff"),
    ("pylock.toml", b"not = toml = at all"),
    ("pylock.toml", b"packages = []\n"),
    ("pylock.toml", b"lock-version='1'\npackages=1\n"),
    ("pylock.toml", b"lock-version='1'\npackages=[1, 2]\n"),
    ("pylock.toml", b"lock-version='1'\n[[packages]]\nname=1\n"),
    ("pylock.toml", b"lock-version='1'\n[[packages]]\nversion='1'\n"),
    ("pylock.toml", b"lock-version='1'\n[[packages]]\nname='a'\nversion=1\n"),
    ("pylock.toml", b"lock-version='1'\n[[packages]]\nname='a'\nmarker=5\n"),
    ("pylock.toml", b"a=" + b"[" * 5000 + b"]" * 5000),
    ("pylock.toml", b"a={" + b"b={" * 3000 + b"}" * 3001),
    ("pylock.toml", b"lock-version='1'\n[[packages]]\nname='a'\nversion='1'\nmarker=\"" + DEEP.replace("'", "\\\"").encode() + b"\"\n"),
    ("pylock.dev.toml", b"lock-version='1'\n[[packages]]\nname=''\n"),
    ("uv.lock", b"\x00"),
    ("uv.lock", b"[[package]]\nname='a'\n"),
    ("uv.lock", b"version=1\npackage=5\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\nsource=5\n"),
    ("uv.lock", b"version=1\nmanifest=5\n"),
    ("uv.lock", b"version=1\nmanifest={members=5}\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\nresolution-markers=5\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\nresolution-markers=[5]\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\noptional-dependencies=5\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\noptional-dependencies={x=5}\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\ndependencies=[{name='b', extra=5}]\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\ndependencies=[{name='b', extra=[5]}]\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\ndependencies=[{name=5}]\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\ndependencies=[5]\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\ndev-dependencies=5\nsource={editable='.'}\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\ndev-dependencies={dev=5}\nsource={editable='.'}\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\nsource={editable='.'}\ndependencies=[{name='b', marker=5}]\n[[package]]\nname='b'\n"),
    ("uv.lock", b"version=1\n[[package]]\nname='a'\nsource={editable='.'}\ndependencies=[{name='b', marker='" + DEEP.replace("'", '"').encode() + b"'}]\n[[package]]\nname='b'\n"),
    ("poetry.lock", b"[[package]]\nname='a'\n"),
    ("poetry.lock", b"metadata=1\npackage={}\n"),
    ("poetry.lock", b"metadata=1\n[[package]]\nname='a'\ndependencies=5\n"),
    ("poetry.lock", b"metadata=1\n[[package]]\nname='a'\ndependencies={b=[5]}\n"),
    ("poetry.lock", b"metadata=1\n[[package]]\nname='a'\ndependencies={b={extras=5}}\n"),
    ("poetry.lock", b"metadata=1\n[[package]]\nname='a'\ndependencies={b={markers=5}}\n"),
    ("poetry.lock", b"metadata=1\n[[package]]\nname='a'\nmarkers=5\n"),
    ("poetry.lock", b"metadata=1\n[[package]]\nname='a'\nmarkers={a=5}\n"),
    ("poetry.lock", b"metadata=1\n[[package]]\nname='a'\nextras=5\n"),
    ("poetry.lock", b"metadata=1\n[[package]]\nname='a'\nextras={x=5}\n"),
    ("poetry.lock", b"metadata=1\n[[package]]\nname='a'\nversion=[1]\n"),
    ("poetry.lock", b"metadata=1\n[[package]]\nname='a'\noptional='yes'\n"),
    ("Pipfile.lock", b"{}"),
    ("lock", b""),
    # conda's formats
    ("environment.yml", b"\xff"),
    ("environment.yml", b"dependencies:\n\t- zlib\n"),
    ("environment.yml", b"dependencies:\n  - conda: 1\n"),
    ("environment.yml", b"- zlib\n"),
    ("environment.yml", b"dependencies: [a, b\n"),
    ("environment.yml", b"dependencies:\n  - pip:\n    - numpy>=>1\n"),
    ("environment.yml", b"dependencies:\n  - pip:\n    - -r /dev/zero\n"),
    ("environment.yml", b"dependencies:\n  - pip:\n    - --frobnicate\n"),
    ("environment.yml", b"dependencies:\n  - '[' \n  - ::\n"),
    ("spec-file.txt", b"@EXPLICIT\nhttps://x.invalid/a.whl\n"),
    ("spec-file.txt", b"https://x.invalid/a-1-0.conda\n@EXPLICIT\n"),
    ("spec-file.txt", b"@EXPLICIT\n-1-.conda\n"),
    ("spec-file.txt", b"@EXPLICIT\nhttps://[x/a-1-0.conda\n"),  # found by the fuzzer
    ("conda-linux-64.lock", b"@EXPLICIT\n\xff\xfe\n"),
    ("pixi.lock", b"\x00"),
    ("pixi.lock", b"version: 6\nenvironments: 5\n"),
    ("pixi.lock", b"version: 1000\n"),
    ("pixi.lock", b"[" * 5000),
    ("conda-lock.yml", b"metadata: {}\npackage: 5\nversion: 1\n"),
    ("conda-lock.yml", b"a: &x [*x]\n"),
]


@pytest.mark.parametrize(("name", "content"), LOCKS, ids=range(len(LOCKS)))
def test_unparsable_lock_files(tmp_path: Path, name: str, content: bytes, bad_inputs: Tried) -> None:
    bad_inputs(1)
    path = tmp_path / name
    path.write_bytes(content)
    facts = locks.read_lock(str(path))
    if facts.reason is not None:
        assert facts.failure is not None
        assert facts.reason.startswith(str(path)), facts.reason
        assert "\n" not in facts.reason
    env = environment(tmp_path, installed=distributions.InstalledFacts((), (str(tmp_path),)))
    [verdict] = evaluate([parse_line(f"lock {name}")], env)
    shown([verdict], env)
    assert "probe failed" not in verdict.reason, verdict.reason
    if facts.reason is not None:
        assert verdict.status is Status.UNKNOWN
        assert "lock file unusable" in verdict.reason and name in verdict.reason


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo", "dangling", "loop", "non-utf8-name",
                                  "huge-sparse", "device"])
def test_lock_paths_that_are_not_files(tmp_path: Path, kind: str, bad_inputs: Tried) -> None:
    bad_inputs(1)
    path = tmp_path / ("requirements.txt" if kind != "non-utf8-name" else "requirements\udcff.txt")
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling":
        path.symlink_to(tmp_path / "nowhere")
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "non-utf8-name":
        path.write_bytes(b"numpy==1\n")
    elif kind == "huge-sparse":
        with path.open("wb") as file:
            file.truncate(8 << 30)  # 8 GiB of nothing, no disk used
    elif kind == "device":
        path.symlink_to("/dev/zero")
    facts = _in_subprocess_with_timeout(
        f"from pytest_envguard.probes import locks; print(locks.read_lock({str(path)!r}).reason)")
    if kind == "non-utf8-name":
        assert facts == "None"
    else:
        assert facts.startswith(str(path)), facts


def _in_subprocess_with_timeout(code: str, timeout: float = 20) -> str:
    """Run a probe where a hang shows as a timeout, not a stuck test run."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            errors="surrogateescape", timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# -- 6. dist-info folders with missing or garbled METADATA / WHEEL / RECORD -------------------

GOOD_METADATA = b"Metadata-Version: 2.1\nName: good\nVersion: 1.0\n\nbody\n"
DIST_INFOS: list[tuple[str, dict[str, bytes | None]]] = [
    # (directory name, {file: content, None = a directory instead})
    ("a-1.0.dist-info", {}),
    ("b-1.0.dist-info", {"METADATA": b""}),
    ("c-1.0.dist-info", {"METADATA": b"\xff\xfe\x00garbage\x00"}),
    ("d-1.0.dist-info", {"METADATA": None, "WHEEL": None, "RECORD": None}),
    ("e-1.0.dist-info", {"METADATA": b"Name: e\n"}),
    ("f-1.0.dist-info", {"METADATA": b"Version: 1\n"}),
    ("g-1.0.dist-info", {"METADATA": b"Name:\nVersion:\n"}),
    ("h-1.0.dist-info", {"METADATA": b" folded first\n\tagain\nName: h\nVersion: 1\n"}),
    ("i-1.0.dist-info", {"METADATA": b"Name: i\nVersion: 1\nRequires-Dist: [not a requirement]\n"}),
    ("j-1.0.dist-info", {"METADATA": b"Name: j\nVersion: 1\nRequires-Dist: x; " + DEEP.encode() + b"\n"}),
    ("k-1.0.dist-info", {"METADATA": b"Name: k\nVersion: not.a.version!\nRequires-Dist: good>=1\n"}),
    ("l-1.0.dist-info", {"METADATA": b"Name: l\nVersion: 1\nRequires-Dist: l[l]\nProvides-Extra: l\n"
                                     b"Requires-Dist: l[l]; extra == 'l'\n"}),
    ("m-1.0.dist-info", {"METADATA": b"Name: m\r\nVersion: 1\r\nRequires-Dist: good (>=1)\r\n"}),
    ("n-1.0.dist-info", {"METADATA": b"Name: n\nVersion: 1\n", "WHEEL": b"\xff\x00"}),
    ("o-1.0.dist-info", {"METADATA": b"Name: o\nVersion: 1\n", "WHEEL": b"Tag: \nTag: ---\nTag: a-b\n"
                                                                        b"Tag: -\nTag: ..-..-..\n"}),
    ("p-1.0.dist-info", {"METADATA": b"Name: p\nVersion: 1\n", "WHEEL": b"Tag: cp99-cp99t-os2_9\n"}),
    ("q-1.0.dist-info", {"METADATA": b"Name: q\nVersion: 1\n", "WHEEL": b"Tag" * 10000}),
    ("r-1.0.dist-info", {"METADATA": b"Name: r\nVersion: 1\n", "RECORD": b"\xff,\x00,\n,,,,\n"}),
    ("s-1.0.dist-info", {"METADATA": b"Name: s\nVersion: 1\n", "INSTALLER": b"\xff\xfe\n\n"}),
    ("t-1.0.dist-info", {"METADATA": b"Name: good\nVersion: 2.0\n"}),  # a duplicate
    ("u-1.0.dist-info", {"METADATA": b"Name: " + b"u" * 100000 + b"\nVersion: 1\n"}),
    ("v\xff-1.0.dist-info", {"METADATA": b"Name: v\xff\nVersion: 1\xff\n"}),
    (".dist-info", {"METADATA": b"Name: w\nVersion: 1\n"}),
    ("x.egg-info", {"PKG-INFO": b"Name: x\nVersion: 1\n", "requires.txt": b"[:\xff\nfoo\n[extra:(((\nbar\n"}),
    ("y.egg-info", {"PKG-INFO": None}),
    ("z-1.0.dist-info", {"METADATA": b"Name: z\nVersion: 1\nRequires-Dist: good>=99\n"
                                     b"Requires-Dist: missing-thing\nRequires-Dist: good; os_name == '\xff'\n"}),
]
SPECIAL_DIST_INFOS = ["file.egg-info", "loop.dist-info", "dangling.dist-info", "metaloop",
                      "metafifo", "metadangling"]


def _make_dist_info(site: Path, name: str, files: dict[str, bytes | None]) -> None:
    directory = site / os.fsdecode(name.encode("latin-1"))
    directory.mkdir()
    for file, content in files.items():
        if content is None:
            (directory / file).mkdir()
        else:
            (directory / file).write_bytes(content)


def _make_special(site: Path, kind: str) -> None:
    if kind == "file.egg-info":
        (site / kind).write_bytes(b"\xff\xff")
    elif kind == "loop.dist-info":
        (site / "loop.dist-info").symlink_to("loop2.dist-info")
        (site / "loop2.dist-info").symlink_to("loop.dist-info")
    elif kind == "dangling.dist-info":
        (site / kind).symlink_to(site / "nowhere")
    else:
        directory = site / f"{kind}-1.0.dist-info"
        directory.mkdir()
        metadata = directory / "METADATA"
        if kind == "metaloop":
            metadata.symlink_to(metadata)
        elif kind == "metafifo":
            os.mkfifo(metadata)
        else:
            metadata.symlink_to(directory / "gone")


def _judge_site(site: Path, tmp_path: Path) -> list[Verdict]:
    facts = distributions.scan_distributions([str(site)])
    json.dumps(facts.to_dict())
    (tmp_path / "requirements.txt").write_text("good==1.0\n")
    env = environment(tmp_path, installed=facts,
                      **{"supported-tags": distributions.probe_supported_tags()})
    verdicts = evaluate(parse_lines(["consistent", "wheels", "lock requirements.txt"]), env)
    shown(verdicts, env)
    for verdict in verdicts:
        assert "probe failed" not in verdict.reason, verdict.reason
    return verdicts


@pytest.mark.parametrize(("name", "files"), DIST_INFOS, ids=[name for name, _ in DIST_INFOS])
def test_garbled_dist_info(tmp_path: Path, name: str, files: dict[str, bytes | None],
                           bad_inputs: Tried) -> None:
    bad_inputs(1)
    site = tmp_path / "site"
    site.mkdir()
    _make_dist_info(site, "good-1.0.dist-info", {"METADATA": GOOD_METADATA})
    _make_dist_info(site, name, files)
    consistent, _, _ = _judge_site(site, tmp_path)
    assert consistent.status in (Status.MET, Status.UNMET)


def test_special_dist_info_entries(tmp_path: Path, bad_inputs: Tried) -> None:
    """Symlink loops, dangling links, a FIFO where METADATA should be (which would
    block a naive open forever): run in a child with a time limit."""
    site = tmp_path / "site"
    site.mkdir()
    _make_dist_info(site, "good-1.0.dist-info", {"METADATA": GOOD_METADATA})
    for kind in SPECIAL_DIST_INFOS:
        _make_special(site, kind)
    bad_inputs(len(SPECIAL_DIST_INFOS))
    output = _in_subprocess_with_timeout(
        "from pytest_envguard.probes import distributions\n"
        f"facts = distributions.scan_distributions([{str(site)!r}])\n"
        "for dist in facts.distributions:\n"
        "    print(dist.name, dist.reason)\n")
    lines = dict(line.split(" ", 1) for line in output.splitlines())
    assert lines["good"] == "None"
    assert "not a regular file" in lines["metafifo"]
    assert "Too many levels of symbolic links" in lines["metaloop"]
    assert "No such file" in lines["metadangling"]


def test_special_metadata_through_the_package_key(tmp_path: Path, bad_inputs: Tried) -> None:
    """``importlib.metadata`` itself would block forever on a FIFO named METADATA; the
    ``package`` key must not (run in a child with a time limit)."""
    site = tmp_path / "site"
    site.mkdir()
    kinds = ["metafifo", "metaloop", "metadangling"]
    for kind in kinds:
        _make_special(site, kind)
    _make_dist_info(site, "pkginfo-1.0.dist-info", {"PKG-INFO": b"Name: pkginfo\nVersion: 3.1\n"})
    bad_inputs(len(kinds))
    output = _in_subprocess_with_timeout(
        "import sys\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        "from pytest_envguard.probes import distributions as packages\n"
        f"for name in {[*kinds, 'pkginfo']!r}:\n"
        "    facts = packages.probe_distribution(name)\n"
        "    print(name, facts.version, facts.reason)\n")
    lines = dict(line.split(" ", 1) for line in output.splitlines())
    assert lines["metafifo"].startswith("None ") and "not a regular file" in lines["metafifo"]
    assert "Too many levels of symbolic links" in lines["metaloop"]
    assert "No such file" in lines["metadangling"]
    assert lines["pkginfo"] == "3.1 None"  # a dist-info with PKG-INFO only, as importlib reads it


@pytest.mark.parametrize(("name", "files"), DIST_INFOS[:12], ids=[name for name, _ in DIST_INFOS[:12]])
def test_garbled_dist_info_through_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, files: dict[str, bytes | None],
    bad_inputs: Tried,
) -> None:
    """The ``package`` key asks importlib.metadata, which reads lazily (and raises late)."""
    bad_inputs(1)
    site = tmp_path / "site"
    site.mkdir()
    _make_dist_info(site, name, files)
    _make_special(site, "metaloop")
    monkeypatch.syspath_prepend(str(site))
    env = environment(tmp_path)
    project = name.split("-", maxsplit=1)[0]
    verdicts = evaluate(parse_lines([f"package {project}>=0", "package metaloop"]), env)
    shown(verdicts, env)
    for verdict in verdicts:
        assert "probe failed" not in verdict.reason, verdict.reason
    assert verdicts[1].status is Status.UNKNOWN


# -- 7. truncated, corrupt, huge and sparse ELF files ---------------------------------------

def _elf_header(*, is64: bool = True, little: bool = True, phoff: int = 64, phentsize: int = 56,
                phnum: int = 1) -> bytes:
    order = "<" if little else ">"
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if little else 2, 1]) + bytes(9)
    if is64:
        rest = struct.pack(order + "HHIQQQIHHHHHH", 3, 62, 1, 0, phoff, 0, 0, 64, phentsize, phnum,
                           64, 0, 0)
    else:
        rest = struct.pack(order + "HHIIIIIHHHHHH", 3, 3, 1, 0, phoff, 0, 0, 52, phentsize, phnum,
                           40, 0, 0)
    return ident + rest


def _interp(offset: int, size: int) -> bytes:
    return struct.pack("<IIQQQQQQ", 3, 4, offset, 0, 0, size, size, 1)


def elf_corpus() -> Iterator[tuple[str, bytes | int]]:
    """(name, content) — an int content is the size of a sparse file with a valid header."""
    good = _elf_header() + _interp(120, 28) + b"/lib64/ld-linux-x86-64.so.2\x00"
    yield "good", good
    for cut in (0, 1, 3, 4, 5, 16, 52, 63, 64, 65, 100, 119, 121, len(good) - 1):
        yield f"truncated-{cut}", good[:cut]
    yield "not-elf", b"MZ" + bytes(200)
    yield "text", b"#!/bin/sh\necho hi\n" * 10
    yield "big-endian", _elf_header(little=False) + bytes(100)
    yield "elf32", _elf_header(is64=False, phoff=52, phentsize=32) + bytes(64)
    yield "bad-class", b"\x7fELF\x07\x09" + bytes(100)
    yield "phoff-huge", _elf_header(phoff=2**63) + bytes(64)
    yield "phoff-past-end", _elf_header(phoff=10**6) + bytes(64)
    yield "phentsize-0", _elf_header(phentsize=0, phnum=65535) + bytes(64)
    yield "phentsize-1", _elf_header(phentsize=1, phnum=65535) + bytes(64)
    yield "phnum-max", _elf_header(phnum=65535) + _interp(120, 28) * 4
    yield "interp-offset-huge", _elf_header() + _interp(2**63, 28)
    yield "interp-size-huge", _elf_header() + _interp(120, 2**63) + b"/lib/ld.so\x00"
    yield "interp-not-utf8", _elf_header() + _interp(120, 8) + b"/\xff\xfe\xfdld\x00"
    yield "interp-no-nul", _elf_header() + _interp(120, 4096) + b"x" * 10000
    yield "random", bytes((index * 7919 + 13) % 256 for index in range(4096))
    yield "zeros", bytes(4096)
    yield "ones", b"\xff" * 4096
    yield "sparse-4GiB", 4 << 30
    yield "sparse-huge-phoff", 1 << 36  # 64 GiB: ext4, xfs, btrfs and tmpfs keep it sparse


@pytest.fixture(scope="module")
def elf_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("elf-corpus")
    files = {}
    for name, content in elf_corpus():
        path = directory / name
        if isinstance(content, int):
            with path.open("wb") as file:
                file.write(_elf_header(phoff=content - 4096 if content < 1 << 36 else 2**62))
                file.truncate(content)
        else:
            path.write_bytes(content)
        files[name] = path
    # The other shapes a path can have.
    os.mkfifo(directory / "fifo")
    (directory / "loop").symlink_to(directory / "loop")
    (directory / "dangling").symlink_to(directory / "nowhere")
    (directory / "dir").mkdir()
    files.update({name: directory / name for name in ("fifo", "loop", "dangling", "dir")})
    files["missing"] = directory / "missing"
    files["non-utf8\udcff"] = directory / "non-utf8\udcff"
    files["non-utf8\udcff"].write_bytes(b"\x7fELF")
    return files


def test_elf_interpreter_on_the_elf_corpus(elf_files: dict[str, Path], bad_inputs: Tried) -> None:
    """``elf.read_interpreter`` (how musl is found) reads the program headers alone."""
    bad_inputs(len(elf_files) - 1)
    code = ("import json, sys\nfrom pytest_envguard.probes import elf\n"
            "paths = json.loads(sys.argv[1])\n"
            "print(json.dumps({name: elf.read_interpreter(path) for name, path in paths.items()}))\n")
    names = {name: str(path) for name, path in elf_files.items() if name != "fifo"}
    result = subprocess.run([sys.executable, "-c", code, json.dumps(names)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["good"] == "/lib64/ld-linux-x86-64.so.2"
    assert all(value is None or isinstance(value, str) for value in found.values())
    for name in ("not-elf", "text", "zeros", "missing", "dir", "loop", "truncated-0", "truncated-63"):
        assert found[name] is None, name


def test_elf_interpreter_of_a_fifo_does_not_block(elf_files: dict[str, Path], bad_inputs: Tried) -> None:
    bad_inputs(1)
    output = _in_subprocess_with_timeout(
        f"from pytest_envguard.probes import elf; print(elf.read_interpreter({str(elf_files['fifo'])!r}))",
        timeout=20)
    assert output == "None"


# -- 8. symlink loops and unreadable directories in sys.path -----------------------------------

def _sys_path_entries(root: Path) -> list[str]:
    (root / "loop").symlink_to(root / "loop")
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "a-file").write_text("not a directory")
    (root / "zipped.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    os.mkfifo(root / "fifo")
    (root / "non-utf8-\udcff").mkdir()
    (root / "unreadable").mkdir()
    (root / "unreadable" / "hidden-1.0.dist-info").mkdir()
    (root / "unsearchable").mkdir(mode=0o600)
    (root / "self-loop-site").mkdir()
    (root / "self-loop-site" / "inner").symlink_to(root / "self-loop-site")
    (root / "self-loop-site" / "ok-1.0.dist-info").mkdir()
    (root / "self-loop-site" / "ok-1.0.dist-info" / "METADATA").write_bytes(
        b"Name: ok\nVersion: 1\n")
    (root / "unreadable").chmod(0)
    return [str(root / name) for name in (
        "loop", "loop-a", "dangling", "a-file", "zipped.zip", "fifo", "non-utf8-\udcff",
        "unreadable", "unsearchable", "self-loop-site", "self-loop-site/inner", "",
        "/proc/self/fd", "\udcff", "relative/does/not/exist", "/dev/null", "//", "/" + "x" * 5000,
    )]


def test_sys_path_with_symlink_loops_and_unreadable_directories(tmp_path: Path, bad_inputs: Tried) -> None:
    """The ``consistent``/``wheels``/``lock`` scan of sys.path, with the OS refusing access
    (a child without root's file-access capabilities)."""
    from tests.fixtures_reliability import restore, run_unprivileged

    entries = _sys_path_entries(tmp_path)
    bad_inputs(len(entries))
    try:
        result = run_unprivileged(f"""
            import json, sys
            from pytest_envguard.probes import distributions
            from pytest_envguard.checks import evaluate
            from pytest_envguard.environment import Environment
            from pytest_envguard.grammar import parse_lines
            entries = {entries!r}
            facts = distributions.scan_distributions(entries)
            print(json.dumps([dist.name for dist in facts.distributions]))
            # Not the FIFO: CPython's own zipimport and importlib.metadata open each
            # sys.path entry that is not a directory, and would block there.
            sys.path[:0] = [entry for entry in entries if not entry.endswith("fifo")]
            env = Environment(environ={{"PATH": ":".join(entries)}})
            for verdict in evaluate(parse_lines(["consistent", "wheels", "command ls", "isolated",
                                                 "package ok"]), env):
                print(verdict.status.value, verdict.reason)
            try:
                open({str(tmp_path / 'unreadable' / 'x')!r})
            except PermissionError:
                print("permission denied, as it should be")
            except OSError:
                pass
        """)
    finally:
        restore(tmp_path / "unreadable", tmp_path / "unsearchable")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert json.loads(lines[0]).count("ok") == 2  # through the loop too: one shadowed
    assert "hidden" not in lines[0]
    assert "permission denied, as it should be" in lines
    assert all(line.split()[0] in {"met", "unmet", "unknown"} for line in lines[1:-1])
    assert not any("probe failed" in line for line in lines)


def test_path_and_library_path_oddities(tmp_path: Path, bad_inputs: Tried) -> None:
    entries = _sys_path_entries(tmp_path)
    bad_inputs(len(entries))
    try:
        joined = os.pathsep.join(entries)
        environ = {"PATH": joined, "LD_LIBRARY_PATH": joined, "PYTHONPATH": joined,
                   "VIRTUAL_ENV": entries[0], "CONDA_PREFIX": entries[2]}
        facts = isolation.probe_isolation(environ)
        assert {leak.variable for leak in facts.leaks} >= {"PYTHONPATH", "VIRTUAL_ENV"}
        assert commands.probe_command("no-such-command", environ).path is None
        env = environment(tmp_path, environ)
        verdicts = evaluate(parse_lines(["isolated", "command ls", "command sh"]), env)
        shown(verdicts, env)
        assert verdicts[0].status is Status.UNMET
    finally:
        (tmp_path / "unreadable").chmod(0o700)
        (tmp_path / "unsearchable").chmod(0o700)


# -- 7b. the ELF reader of the native checks (probes/elf.py) on the same corpus -------------

ELF_READER = """
import json, sys
from pytest_envguard.probes import elf
out = {}
for name, path in json.loads(sys.argv[1]).items():
    facts = elf.read_elf(path)
    out[name] = [facts.reason, facts.soname, list(facts.needed), facts.failure]
print(json.dumps(out))
"""

E_FIELDS = {"e_phoff": (32, "Q"), "e_shoff": (40, "Q"), "e_phentsize": (54, "H"), "e_phnum": (56, "H"),
            "e_shentsize": (58, "H"), "e_shnum": (60, "H"), "e_shstrndx": (62, "H")}


def corrupted_copies(source: Path, directory: Path) -> dict[str, Path]:
    """A real shared object, truncated and with each header field set to boundary values."""
    data = source.read_bytes()
    copies: dict[str, bytes] = {}
    for cut in sorted({1, 16, 63, 64, 65, 128, 512, 1024, 4096, len(data) // 2, len(data) - 1,
                       *range(len(data) - 4096, len(data), 512)}):
        if 0 < cut < len(data):
            copies[f"cut-{cut}"] = data[:cut]
    for field, (offset, code) in E_FIELDS.items():
        for value in (0, 1, 0x7FFF, 0xFFFF, len(data), len(data) - 8, (1 << 32) - 1, (1 << 64) - 1):
            if code == "H" and value > 0xFFFF:
                continue
            patched = bytearray(data)
            struct.pack_into("<" + code, patched, offset, value)
            copies[f"{field}={value:#x}"] = bytes(patched)
    # The dynamic section and string tables: every 97th byte of the second half flipped.
    flipped = bytearray(data)
    for index in range(len(data) // 2, len(data), 97):
        flipped[index] ^= 0xFF
    copies["flipped"] = bytes(flipped)
    paths = {}
    for name, content in copies.items():
        path = directory / name.replace("=", "-")
        path.write_bytes(content)
        paths[name] = path
    return paths


def test_elf_reader_on_the_elf_corpus(elf_files: dict[str, Path], native_build: Any,
                                      tmp_path: Path, bad_inputs: Tried) -> None:
    files = {name: str(path) for name, path in elf_files.items() if name != "fifo"}
    files.update({name: str(path) for name, path in
                  corrupted_copies(native_build.ext_plain, tmp_path).items()})
    files["real"] = str(native_build.ext_plain)
    bad_inputs(len(files) - 1)
    result = subprocess.run([sys.executable, "-c", ELF_READER, json.dumps(files)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout)
    assert found["real"][0] is None
    for name in ("not-elf", "text", "zeros", "missing", "dir", "loop", "truncated-0", "truncated-63",
                 "cut-16", "cut-63"):
        assert found[name][0], name  # a reason
    for name, (reason, _, _, failure) in found.items():
        assert reason is None or (isinstance(reason, str) and reason.strip() and "\n" not in reason), name
        assert (reason is None) is (failure is None), name  # every reason has its kind


SYMBOL_READER = """
import json, sys
from pytest_envguard.probes import elf
out = {}
for name, path in json.loads(sys.argv[1]).items():
    table = elf.read_symbols(path)
    scope = elf.scope_of([path])
    out[name] = None if table is None else [len(table.undefined), len(table.defined),
                                            scope is not None, elf.unbound([path], [])]
print(json.dumps(out))
"""


def test_symbol_reader_on_the_elf_corpus(elf_files: dict[str, Path], native_build: Any,
                                         tmp_path: Path, bad_inputs: Tried) -> None:
    """``.dynsym`` read from every file of the corpus and every corrupted copy: a table or
    None (nothing can be said of its symbols), never an exception."""
    files = {name: str(path) for name, path in elf_files.items() if name != "fifo"}
    files.update({name: str(path) for name, path in
                  corrupted_copies(native_build.ext_needs_dep, tmp_path).items()})
    files["real"] = str(native_build.ext_needs_dep)
    bad_inputs(len(files) - 1)
    result = subprocess.run([sys.executable, "-c", SYMBOL_READER, json.dumps(files)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout)
    assert found["real"] == [1, 1, True, {files["real"]: ["envguard_dep"]}]
    for name in ("not-elf", "text", "zeros", "missing", "dir", "loop", "truncated-0", "cut-63"):
        assert found[name] is None, name
    output = _in_subprocess_with_timeout(  # a FIFO named like a library must not block
        "from pytest_envguard.probes import elf\n"
        f"print(elf.read_symbols({str(elf_files['fifo'])!r}))\n", timeout=10)
    assert output == "None"


def test_elf_reader_does_not_block_on_a_fifo(elf_files: dict[str, Path], bad_inputs: Tried) -> None:
    """A FIFO named like a library (in a RECORD, on LD_LIBRARY_PATH) must not hang the session."""
    bad_inputs(1)
    output = _in_subprocess_with_timeout(
        "from pytest_envguard.probes import elf\n"
        f"print(elf.read_elf({str(elf_files['fifo'])!r}).reason)\n", timeout=10)
    assert output != "None"


def test_extensions_listed_in_a_garbled_record(tmp_path: Path, native_build: Any,
                                               bad_inputs: Tried) -> None:
    """``extensions`` reads RECORD and every .so it lists: truncated, corrupt, missing,
    a directory, a symlink loop, a huge sparse file, a name that is not UTF-8."""
    site = tmp_path / "site"
    package = site / "garbled"
    package.mkdir(parents=True)
    suffix = ".cpython-311-x86_64-linux-gnu.so"
    data = native_build.ext_plain.read_bytes()
    (package / f"truncated{suffix}").write_bytes(data[:200])
    (package / f"corrupt{suffix}").write_bytes(b"\x7fELF" + bytes(60) + data[64:])
    (package / f"directory{suffix}").mkdir()
    (package / f"loop{suffix}").symlink_to(package / f"loop{suffix}")
    (package / f"dangling{suffix}").symlink_to(package / "nowhere")
    with (package / f"sparse{suffix}").open("wb") as file:
        file.write(data[:64])
        file.truncate(4 << 30)
    (package / f"name\udcff{suffix}").write_bytes(data)
    (package / f"good{suffix}").write_bytes(data)
    names = [path.name for path in package.iterdir()] + ["missing" + suffix, "../../escape" + suffix,
                                                         "/etc/passwd" + suffix]
    meta = site / "garbled-1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Name: garbled\nVersion: 1.0\n")
    record = "".join(f"garbled/{name},,\n" for name in names) + "\xff,\x00,,,\n\n,,,\n"
    (meta / "RECORD").write_bytes(record.encode("utf-8", "surrogateescape"))
    bad_inputs(len(names) + 1)
    code = f"""
import json
from pytest_envguard.checks import evaluate
from pytest_envguard.environment import Environment
from pytest_envguard.grammar import parse_lines
from pytest_envguard.probes import distributions
env = Environment({{"installed": distributions.scan_distributions([{str(site)!r}])}}, environ={{}})
print(json.dumps([[v.status.value, v.found, v.reason] for v in
                  evaluate(parse_lines(["extensions", "extensions garbled"]), env)]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            errors="surrogateescape", timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    verdicts = json.loads(result.stdout)
    for status, _, reason in verdicts:
        assert status in ("unmet", "unknown"), reason
        assert "probe failed" not in reason, reason


# -- 9. hostile sizes: tag products, header floods, file lists, version chains ------------------
# A small file must not cost unbounded time or memory: each case is timed, and none may end
# in a traceback on any path a user takes (a check, the CLI report, --envguard-report).

def wheel_tag_bomb() -> bytes:
    """A 7.7 KB WHEEL file whose one compressed tag line expands to hundreds of millions
    of tags (packaging.tags.parse_tag would build every one of them)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    items = [*digits, *(a + b for a in digits for b in digits)]

    def part(budget: int) -> str:
        chosen, size = [], 0
        for item in items:
            if size + len(item) + 1 > budget:
                break
            chosen.append(item)
            size += len(item) + 1
        return ".".join(chosen)

    line = f"Tag: {part(2540)}-{part(2540)}-{part(2540)}\n"
    return ("Wheel-Version: 1.0\nGenerator: bomb\nRoot-Is-Purelib: true\n" + line).encode()


def test_the_wheel_tag_bomb_is_what_it_claims() -> None:
    data = wheel_tag_bomb()
    assert 7000 < len(data) < 8000
    tag = data.decode().split("Tag: ")[1].strip()
    product = 1
    for part in tag.split("-"):
        product *= len(part.split("."))
    assert product > 5 * 10**8


def _bomb_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    directory = site / "bomb-1.0.dist-info"
    directory.mkdir(parents=True)
    (directory / "METADATA").write_bytes(b"Metadata-Version: 2.1\nName: bomb\nVersion: 1.0\n")
    (directory / "WHEEL").write_bytes(wheel_tag_bomb())
    (directory / "INSTALLER").write_bytes(b"pip\n")
    return site


def test_a_wheel_tag_bomb_through_the_wheels_key(tmp_path: Path, bad_inputs: Tried) -> None:
    import time

    site = _bomb_site(tmp_path)
    bad_inputs(1)
    started = time.monotonic()
    output = _in_subprocess_with_timeout(
        "import json\n"
        "from pytest_envguard.checks import evaluate\n"
        "from pytest_envguard.environment import Environment\n"
        "from pytest_envguard.grammar import parse_lines\n"
        "from pytest_envguard.probes import distributions\n"
        f"facts = distributions.scan_distributions([{str(site)!r}])\n"
        "env = Environment({'installed': facts}, environ={})\n"
        "[v] = evaluate(parse_lines(['wheels']), env)\n"
        "print(json.dumps([v.status.value, v.reason, [p.kind for p in v.problems]]))\n", timeout=60)
    assert time.monotonic() - started < 30
    status, reason, _ = json.loads(output)
    assert status in ("unmet", "unknown") and "bomb" in reason and "1024" in reason, reason


def test_a_wheel_tag_bomb_through_the_cli_and_the_report(pytester: pytest.Pytester, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         bad_inputs: Tried) -> None:
    site = _bomb_site(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(site))  # the bomb is installed on the interpreter's path
    bad_inputs(2)
    cli_run = subprocess.run([sys.executable, "-m", "pytest_envguard", "wheels"], capture_output=True,
                             text=True, timeout=120, check=False, cwd=tmp_path)
    no_traceback(cli_run.stdout, cli_run.stderr)
    assert cli_run.returncode == 6 and "bomb" in cli_run.stdout, cli_run.stdout
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("--envguard-report", "--envguard-require", "wheels",
                                           "--envguard-json", "out.json", timeout=120)
    no_traceback(result.stdout.str(), result.stderr.str())
    assert result.ret == 6
    result.stdout.fnmatch_lines(["*wheels*", "*bomb*"])
    document = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    assert document["contract"][0]["status"] in ("unmet", "unknown")


#: METADATA files that are all header: long lines, endless folding, floods of headers.
HOSTILE_METADATA = {
    "a-header-line-of-8-MiB": b"Name: hm\nVersion: 1\nSummary: " + b"s" * (8 << 20) + b"\n",
    "a-name-with-no-end": b"Name: hm" + b"m" * (8 << 20),
    "200k-headers": b"Name: hm\nVersion: 1\n" + b"Requires-Dist: good\n" * 200_000,
    "endless-folding": b"Name: hm\nVersion: 1\nDescription: a\n" + b" more\n" * 1_000_000,
    "nul-bytes": b"Name: hm\x00\nVersion: 1\x00\n" + b"\x00" * (1 << 20),
    "only-newlines": b"\n" * (8 << 20),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_METADATA))
def test_hostile_metadata_headers(tmp_path: Path, name: str, bad_inputs: Tried) -> None:
    import time

    bad_inputs(1)
    site = tmp_path / "site"
    site.mkdir()
    _make_dist_info(site, "good-1.0.dist-info", {"METADATA": GOOD_METADATA})
    _make_dist_info(site, "hm-1.0.dist-info", {"METADATA": HOSTILE_METADATA[name]})
    started = time.monotonic()
    consistent, wheels, _ = _judge_site(site, tmp_path)
    assert time.monotonic() - started < 20
    assert consistent.status in STATUSES and wheels.status in STATUSES


#: RECORD files: over the size bound, a flood of empty lines, more shared objects than
#: any distribution ships, one line with no end.
HOSTILE_RECORDS = {
    "over-16-MiB": lambda: b"hostile/x.py,,\n" * ((17 << 20) // 15),
    "8-MiB-of-newlines": lambda: b"\n" * (8 << 20),
    "150k-shared-objects": lambda: b"".join(b"hostile/_m%d.so,,\n" % index for index in range(150_000)),
    "one-endless-line": lambda: b"hostile/_m.so" + b"," * (12 << 20),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_RECORDS))
def test_hostile_record_files(tmp_path: Path, native_build: Any, name: str,
                              bad_inputs: Tried) -> None:
    import time

    from pytest_envguard.probes import extensions

    site = tmp_path / "site"
    (site / "hostile").mkdir(parents=True)
    (site / "hostile" / "_m.so").write_bytes(native_build.ext_plain.read_bytes())
    meta = site / "hostile-1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_bytes(b"Metadata-Version: 2.1\nName: hostile\nVersion: 1.0\n")
    (meta / "RECORD").write_bytes(HOSTILE_RECORDS[name]())
    bad_inputs(1)
    facts = distributions.scan_distributions([str(site)])
    [dist] = facts.distributions
    started = time.monotonic()
    listed = extensions.extension_files(dist)
    env = Environment({"installed": facts}, environ={"PATH": os.defpath})
    [verdict] = evaluate(parse_lines(["extensions hostile"]), env)
    assert time.monotonic() - started < 20
    shown([verdict], env)
    if name == "one-endless-line":
        assert listed == [str(site / "hostile" / "_m.so")]
    elif name == "8-MiB-of-newlines":
        assert listed == []
    else:  # over a bound: not scanned, and said so
        assert listed is None
        assert verdict.status is Status.UNKNOWN, verdict  # its modules were not checked
        assert "not scanned" in verdict.reason and "hostile" in verdict.reason, verdict


def test_a_looping_version_chain_in_an_extension_module(tmp_path: Path, bad_inputs: Tried) -> None:
    """An 81 KB module whose version-need records chain back on themselves: the walk is
    bounded per file, and the verdict names the file and why, in well under a second."""
    import time

    from tests.test_elf import looping_version_needs

    site = tmp_path / "site"
    (site / "crafted").mkdir(parents=True)
    module = looping_version_needs(site / "crafted" / "_chain.so", 5000)
    assert 70_000 < module.stat().st_size < 90_000
    meta = site / "crafted-1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_bytes(b"Metadata-Version: 2.1\nName: crafted\nVersion: 1.0\n")
    (meta / "RECORD").write_bytes(b"crafted/_chain.so,,\n")
    bad_inputs(1)
    env = Environment({"installed": distributions.scan_distributions([str(site)])},
                      environ={"PATH": os.defpath})
    started = time.monotonic()
    [verdict] = evaluate(parse_lines(["extensions crafted"]), env)
    assert time.monotonic() - started < 5
    assert verdict.status in (Status.UNMET, Status.UNKNOWN), verdict
    assert "_chain.so" in verdict.reason and "65536 records" in verdict.reason, verdict
    shown([verdict], env)
