"""probes/distributions.py: the sys.path scan; `consistent` against real `pip check`; the
consistency and wheel-tag rules of checks/hygiene.py on hand-built facts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging import tags

from pytest_envguard.checks import hygiene
from pytest_envguard.probes import Failure
from pytest_envguard.probes import distributions as packages
from pytest_envguard.probes._io import TooLarge
from pytest_envguard.probes.distributions import (
    InstalledDistribution,
    InstalledFacts,
    scan_distributions,
)
from tests.fixtures_packages import (
    MakeVenv,
    Venv,
    as_pip_check,
    assert_consistent_agrees_with_pip,
    build_wheel,
    clean_environ,
    write_dist_info,
)

LINUX = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
         "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
         "implementation_name": "cpython", "platform_python_implementation": "CPython",
         "platform_release": "", "platform_version": "", "implementation_version": "3.11.7"}


def installed(*dists: InstalledDistribution) -> InstalledFacts:
    seen: set[str] = set()
    marked = []
    for each in dists:
        marked.append(replace(each, shadowed=True) if each.name in seen else each)
        seen.add(each.name)
    return InstalledFacts(tuple(marked), ("/site",))


def find_problems(facts: InstalledFacts) -> tuple[hygiene.Problem, ...]:
    return hygiene.find_problems(facts, LINUX)


def dist(name: str, version: str, *requires: str, location: str = "/site/site-packages",
         **kw: object) -> InstalledDistribution:
    path = kw.pop("path", f"{location}/{name}-{version}.dist-info")
    return InstalledDistribution(name, version, str(path), location, requires=requires,
                                 **kw)  # type: ignore[arg-type]


# -- real venvs, real pip ----------------------------------------------------------------


def test_consistent_venv_matches_pip_check(consistent_venv: Venv) -> None:
    assert consistent_venv.pip_check() == (0, set())
    assert consistent_venv.envguard_problems() == []


def test_broken_venv_has_pip_checks_verdicts(broken_venv: Venv) -> None:
    status, pip_problems = broken_venv.pip_check()
    ours = broken_venv.envguard_problems()
    assert status == 1
    assert pip_problems == {
        ("missing", "needs-missing", "not-there"),
        ("missing", "needs-missing", "linux-only"),
        ("conflict", "needs-new-beta", "beta"),
    }
    assert as_pip_check(ours) == pip_problems


def test_broken_venv_extras_duplicates_and_invalid_metadata(broken_venv: Venv) -> None:
    ours = {(p["kind"], p["distribution"].split()[0]): p
            for p in broken_venv.envguard_problems() if not p["pip_check"]}
    # wants-gpu asks for alpha[gpu]; alpha's gpu extra needs gamma, which --no-deps skipped.
    assert ours["missing", "alpha"]["dependency"] == "gamma"
    assert ours["missing", "alpha"]["via"] == "extra 'gpu' requested by wants-gpu 1.1"
    duplicate = ours["duplicate", "beta"]["detail"]
    assert "1.5 in" in duplicate
    assert "installer pip, in effect" in duplicate
    assert "2.0 in" in duplicate
    assert "installer conda)" in duplicate
    assert ours["invalid", "bad-meta"]["requirement"] == "[not a requirement]"
    # alpha's `delta ; python_version < "3"` does not apply: neither tool reports it.
    assert not any(p["dependency"] == "delta" for p in broken_venv.envguard_problems())


def test_python_m_consistent_exit_status(consistent_venv: Venv, broken_venv: Venv) -> None:
    good = consistent_venv.envguard("consistent")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = broken_venv.envguard("--json", "-", "consistent")
    assert bad.returncode == 6
    (verdict,) = json.loads(bad.stdout)["contract"]
    assert verdict["status"] == "unmet"
    assert verdict["found"] == "6 problems"
    assert verdict["reason"].startswith("needs-missing 0.1 requires not-there, which is not installed; ")
    assert verdict["reason"].endswith("(+3 more)")
    assert verdict["hint"] == "pip install 'not-there>=1'"


def test_facts_are_the_interpreter_under_test(consistent_venv: Venv) -> None:
    code = ("import json; from pytest_envguard.probes import distributions as p; "
            "print(json.dumps(p.probe_installed().to_dict()))")
    facts = json.loads(consistent_venv.run("-c", code).stdout)
    assert facts["distributions"] == {"alpha": "1.0", "beta": "1.5", "gamma": "0.3",
                                      "wants-gpu": "1.1"}
    assert facts["installers"] == {"pip": 4}


def test_wheels_real_install_then_foreign_tag(make_venv: MakeVenv, tmp_path: Path) -> None:
    best = next(iter(tags.sys_tags()))
    wheel = build_wheel(tmp_path, "native-ext", "1.0", tag=str(best))
    venv = make_venv("wheels")
    venv.pip("install", "--no-deps", "--no-index", str(wheel))
    assert venv.envguard("wheels").returncode == 0
    # What pip refuses to install: the same wheel tagged for another interpreter.
    wheel_file = next(venv.site.glob("native_ext-1.0.dist-info")) / "WHEEL"
    foreign = f"cp27-cp27mu-{best.platform}"
    wheel_file.write_text(f"Wheel-Version: 1.0\nTag: {foreign}\n", encoding="utf-8")
    result = venv.envguard("wheels")
    assert result.returncode == 6
    assert "native-ext 1.0 (cp27-cp27mu-" in result.stdout
    assert "interpreter cp27 is not supported here" in result.stdout


# -- the scan ------------------------------------------------------------------------------


def test_metadata_headers_stop_at_the_body(tmp_path: Path) -> None:
    metadata = tmp_path / "METADATA"
    metadata.write_text("Name: foo\nVersion: 1.0\nSummary: a long\n  folded summary\n"
                        "Requires-Dist: bar>=1\n\nRequires-Dist: not-a-header\n",
                        encoding="utf-8")
    headers = packages.read_metadata_headers(str(metadata))
    assert headers == {"name": ["foo"], "version": ["1.0"], "requires-dist": ["bar>=1"]}


#: Pieces of metadata files, as bytes: line ends of every kind, folds, headers the scan
#: keeps, separators, a body, and what decodes oddly (non-ASCII, a lone continuation
#: byte, a character cut in two, bytes that other line splitters treat as line ends).
_METADATA_PIECES = [b"\n", b"\r", b"\r\n", b"\n\n", b" ", b"\t", b":", b"  folded",
                    b"Name: pkg", b"name:other", b"Version: 1.0", b"Requires-Dist: a>=1",
                    b"Provides-Extra: x", b"Summary: s", b"body", b"no colon here",
                    b"\xc3\xa9", b"\xe2\x80\xa8", b"\xc2\x85", b"\x85", b"\xff", b"\xc3",
                    b"\x0b", b"\x0c", b"\x1c", b"\x00"]


def _headers_or_error(read: Callable[[], object]) -> object:
    try:
        return read()
    except TooLarge as error:
        return ("TooLarge", str(error))


@settings(max_examples=600, deadline=None)
@given(pieces=st.lists(st.sampled_from(_METADATA_PIECES), max_size=40),
       chunk=st.sampled_from([1, 2, 3, 5, 8, 13, 64, packages.HEADER_CHUNK]),
       line_limit=st.sampled_from([4, 9, 30, packages.MAX_HEADER_LINE]),
       header_limit=st.sampled_from([1, 2, 5, packages.MAX_HEADERS]))
def test_the_one_read_header_parser_agrees_with_the_line_by_line_one(
        tmp_path_factory: pytest.TempPathFactory, pieces: list[bytes], chunk: int,
        line_limit: int, header_limit: int) -> None:
    """The metadata headers read in one chunk (split into lines as a text file is) and
    read line by line through a text file object: the same headers, the same cut, the
    same refusal, for every input and every chunk size (the block ending within the chunk,
    at its end, past it), and with the bounds on a line and on the header count small
    enough to be hit."""
    path = tmp_path_factory.mktemp("metadata", numbered=True) / "METADATA"
    path.write_bytes(b"".join(pieces))
    saved = packages.HEADER_CHUNK, packages.MAX_HEADER_LINE, packages.MAX_HEADERS
    packages.HEADER_CHUNK, packages.MAX_HEADER_LINE, packages.MAX_HEADERS = (
        chunk, line_limit, header_limit)
    try:
        fast = _headers_or_error(lambda: packages._read_headers(str(path)))

        def line_by_line() -> object:
            with open(path, encoding="utf-8", errors="surrogateescape") as file:
                return packages._parse_headers(file.readline, str(path), True)

        assert fast == _headers_or_error(line_by_line)
    finally:
        packages.HEADER_CHUNK, packages.MAX_HEADER_LINE, packages.MAX_HEADERS = saved


def test_the_one_read_header_parser_agrees_on_every_metadata_file_here() -> None:
    """The same two readers on the metadata of every distribution installed for the
    interpreters on this machine (this venv's, and pyenv's where there is one)."""
    roots = {Path(entry) for entry in sys.path if entry.endswith("-packages")}
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    roots.update(pyenv.glob("*/lib/python3*/site-packages"))
    files = [path for root in roots for pattern in ("*.dist-info/METADATA", "*.egg-info/PKG-INFO")
             for path in root.glob(pattern)]
    assert len(files) >= 20
    for path in files:
        with open(path, encoding="utf-8", errors="surrogateescape") as file:
            expected = packages._parse_headers(file.readline, str(path), True)
        assert packages._read_headers(str(path)) == expected, path


def test_headers_past_the_bound_are_said_not_read(tmp_path: Path) -> None:
    """A header block longer than MAX_HEADERS lines: the lines read are kept, and the
    distribution's facts say the rest was not read (a Requires-Dist may be there)."""
    meta = tmp_path / "long-1.0.dist-info"
    meta.mkdir()
    filler = "Classifier: Topic :: Filler\n" * (packages.MAX_HEADERS - 2)
    (meta / "METADATA").write_text(f"Name: long\nVersion: 1.0\n{filler}Requires-Dist: late\n\n",
                                   encoding="utf-8")
    dist = packages.read_distribution(str(meta), str(tmp_path))
    assert (dist.name, dist.version, dist.failure) == ("long", "1.0", Failure.TOO_LARGE)
    assert dist.reason is not None and "header lines" in dist.reason
    # Exactly at the bound, the block is whole.
    (meta / "METADATA").write_text(f"Name: long\nVersion: 1.0\n{filler}\nbody\n",
                                   encoding="utf-8")
    whole = packages.read_distribution(str(meta), str(tmp_path))
    assert (whole.failure, whole.reason) == (None, None)


def test_a_requirement_past_the_header_bound_is_never_silently_met(make_venv: MakeVenv) -> None:
    """pip check reads every header: a Requires-Dist after 10,000 Classifier lines is
    unmet for it. `consistent` did not read that far, and says so instead of met."""
    venv = make_venv("long-metadata")
    meta = write_dist_info(venv.site, "verbose", "1.0")
    filler = "Classifier: Topic :: Filler\n" * packages.MAX_HEADERS
    (meta / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: verbose\nVersion: 1.0\n{filler}"
        "Requires-Dist: surely-absent-dependency\n\nbody\n", encoding="utf-8")
    code, problems = venv.pip_check()
    assert code == 1 and ("missing", "verbose", "surely-absent-dependency") in problems
    verdict = venv.verdict("consistent")
    assert verdict["status"] == "unmet", verdict
    [problem] = verdict["problems"]
    assert problem["kind"] == "broken-metadata"
    assert "more than 10,000 header lines" in problem["text"]


def test_requires_txt_sections_become_markers() -> None:
    text = 'base>=1\n\n[gpu]\ncupy\n[:sys_platform == "win32"]\npywin32\n[Doc:python_version<"3.12"]\nsphinx\n'
    assert packages.requires_txt_requirements(text) == [
        "base>=1",
        'cupy ; extra == "gpu"',
        'pywin32 ; sys_platform == "win32"',
        'sphinx ; (python_version<"3.12") and extra == "doc"',
    ]


def test_scan_reads_dist_info_egg_info_and_distutils_files(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    write_dist_info(site, "Foo_Bar", "1.0", ["baz"], wheel_tag="py3-none-any")
    write_dist_info(site, "eggy", "2.0", installer=None, egg_info=True,
                    requires_txt="baz\n[extra]\nqux\n")
    (site / "old-0.1.egg-info").write_text("Metadata-Version: 1.0\nName: old\nVersion: 0.1\n",
                                           encoding="utf-8")
    (site / "not-meta").mkdir()
    facts = scan_distributions([str(site), str(tmp_path / "absent"), str(site)])
    found = {d.name: d for d in facts.distributions}
    assert set(found) == {"foo-bar", "eggy", "old"}
    assert found["foo-bar"].requires == ("baz",)
    assert found["foo-bar"].wheel_tags == ("py3-none-any",)
    assert found["foo-bar"].installer == "pip"
    assert found["eggy"].requires == ("baz", 'qux ; extra == "extra"')
    assert found["eggy"].wheel_tags is None
    assert found["old"].version == "0.1"
    assert facts.paths == (str(site), str(tmp_path / "absent"))


def test_scan_marks_later_copies_shadowed(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "site-packages", tmp_path / "b" / "site-packages"
    write_dist_info(first, "foo", "2.0")
    write_dist_info(second, "foo", "1.0", installer="uv")
    facts = scan_distributions([str(first), str(second)])
    assert [(d.version, d.shadowed) for d in facts.distributions] == [("2.0", False),
                                                                      ("1.0", True)]
    assert facts.active()["foo"].version == "2.0"
    assert facts.installers() == {"pip": 1, "uv": 1}
    assert facts.summary() == "2 distributions (pip 1, uv 1)"
    assert facts.to_dict()["distributions"] == {"foo": "2.0"}
    problems = find_problems(facts)
    assert [p.kind for p in problems] == ["duplicate"]
    assert "installer uv" in (problems[0].detail or "")


def test_conda_meta_names_the_installer(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    site = prefix / "lib" / "python3.11" / "site-packages"
    write_dist_info(site, "numpy", "1.26.4", installer=None)
    write_dist_info(site, "requests", "2.31.0", installer=None)
    (prefix / "conda-meta").mkdir()
    (prefix / "conda-meta" / "numpy-1.26.4-py311_0.json").write_text(json.dumps(
        {"name": "numpy", "files": ["lib/python3.11/site-packages/numpy-1.26.4.dist-info/METADATA"]}),
        encoding="utf-8")
    facts = scan_distributions([str(site)])
    assert {d.name: d.installer for d in facts.distributions} == {"numpy": "conda",
                                                                  "requests": None}
    assert facts.installers() == {"?": 1, "conda": 1}


def test_broken_metadata_is_reported(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    (site / "noname-1.0.dist-info").mkdir(parents=True)
    (site / "noname-1.0.dist-info" / "METADATA").write_text("Version: 1.0\n", encoding="utf-8")
    (site / "unreadable-1.0.dist-info").mkdir()
    facts = scan_distributions([str(site)])
    reasons = {d.name: d.reason for d in facts.distributions}
    assert reasons["noname"] == "its metadata has no Name"
    assert (reasons["unreadable"] or "").startswith("unreadable metadata: FileNotFoundError")
    assert {p.kind for p in find_problems(facts)} == {"broken"}


def test_probe_installed_sees_this_interpreter() -> None:
    facts = packages.probe_installed()
    assert "pytest" in facts.active()
    assert facts.active()["packaging"].version
    assert facts.failure is None and str(Path(packages.__file__).parents[2]) in facts.paths


def test_probe_distribution_still_answers_the_package_key() -> None:
    assert packages.probe_distribution("pytest").version
    assert packages.probe_distribution("surely-not-installed-xyz").failure is Failure.MISSING


# -- consistency rules, on hand-built facts ---------------------------------------------------


def test_pip_check_rules_markers_and_prereleases() -> None:
    facts = installed(
        dist("app", "1.0", "lib>=2.0", 'winonly ; sys_platform == "win32"',
             'docs ; extra == "doc"', "pre>=1.0", "Weird_Name"),
        dist("lib", "1.9"), dist("pre", "1.1rc1"), dist("weird-name", "0.1"),
    )
    problems = find_problems(facts)
    assert [(p.kind, p.dependency, p.installed) for p in problems] == [("conflict", "lib", "1.9")]
    assert problems[0].describe() == "app 1.0 has requirement lib>=2.0, but you have lib 1.9"


def test_extras_are_followed_transitively_and_only_when_requested() -> None:
    facts = installed(
        dist("top", "1", "mid[fast]"),
        dist("mid", "1", 'speed[turbo] ; extra == "fast"', 'never ; extra == "other"'),
        dist("speed", "1", 'nitro>=2 ; extra == "turbo"'),
        dist("nitro", "1"),
    )
    problems = find_problems(facts)
    assert [(p.kind, p.distribution, p.dependency, p.via) for p in problems] == [
        ("conflict", "speed 1", "nitro", "extra 'turbo' requested by mid 1"),
    ]
    assert not problems[0].pip_check


def test_invalid_version_and_invalid_requirement() -> None:
    facts = installed(dist("app", "1", "old>=1", "bad req !!"), dist("old", "not.a.version"))
    kinds = {p.kind: p for p in find_problems(facts)}
    # pip check leaves out both (app: a requirement it cannot parse; old: its version),
    # so to pip, old is not installed, and app's requirements go unjudged.
    assert set(kinds) == {"invalid", "invalid-version", "missing"}
    assert kinds["invalid"].requirement == "bad req !!"
    assert kinds["missing"].extension == "skipped-by-pip"
    assert kinds["missing"].detail == "version 'not.a.version' is not PEP 440"
    assert [p.json_kind for p in find_problems(facts)] == [
        "skipped-by-pip", "invalid-requirement", "invalid-version"]


def test_editable_build_leftover_is_not_a_duplicate() -> None:
    facts = installed(
        dist("proj", "0.1", location="/src/proj", path="/src/proj/proj.egg-info"),
        dist("proj", "0.1", location="/venv/lib/python3.11/site-packages"),
    )
    assert find_problems(facts) == ()
    # A different version in the source tree is a real duplicate.
    facts = installed(
        dist("proj", "0.2", location="/src/proj", path="/src/proj/proj.egg-info"),
        dist("proj", "0.1", location="/venv/lib/python3.11/site-packages"),
    )
    assert [p.kind for p in find_problems(facts)] == ["duplicate"]


# -- wheel tags -----------------------------------------------------------------------------

SUPPORTED = ("cp311-cp311-manylinux_2_17_x86_64", "cp311-abi3-manylinux_2_17_x86_64",
             "cp311-none-any", "py3-none-any", "py3-none-manylinux_2_17_x86_64")


@pytest.mark.parametrize(("tag", "parts"), [
    ("cp312-cp312-manylinux_2_17_x86_64", ("interpreter", "abi")),
    ("cp311-cp311-macosx_11_0_arm64", ("platform",)),
    ("cp311-cp311t-manylinux_2_17_x86_64", ("abi",)),
    ("py3-cp311-any", ()),
])
def test_unsupported_wheel_names_the_part(tag: str, parts: tuple[str, ...]) -> None:
    facts = installed(dist("ext", "1.0", wheel_tags=(tag,)))
    (mismatch,) = hygiene.unsupported_wheels(facts, SUPPORTED)
    assert mismatch.parts == parts
    assert mismatch.closest == tag


def test_any_supported_tag_is_enough_and_no_wheel_file_is_fine() -> None:
    facts = installed(
        dist("multi", "1", wheel_tags=("cp312-cp312-any", "py2.py3-none-any")),
        dist("sdist", "1"),  # no WHEEL file: installed from an sdist, egg or conda
    )
    assert hygiene.unsupported_wheels(facts, SUPPORTED) == ()


def test_supported_tags_probe() -> None:
    probed = packages.probe_supported_tags()
    assert probed.tags[0] == str(next(iter(tags.sys_tags())))
    assert probed.to_dict()["count"] == len(probed.tags)


def test_benchmark_diffs_the_verdicts(broken_venv: Venv) -> None:
    script = Path(__file__).parent.parent / "benchmarks" / "bench_consistent.py"
    result = subprocess.run(
        [sys.executable, str(script), "--repeat", "1", "--python", str(broken_venv.python)],
        capture_output=True, text=True, check=False, env=clean_environ(), cwd=broken_venv.root,
        timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pip check exit 1, 3 problems; consistent: 3 of the same kind" in result.stdout
    assert "x faster" in result.stdout
    assert result.stdout.rstrip().endswith("verdicts agree")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="AbZz09-_.~ ", max_size=20))
def test_canonical_names_agree_with_packaging(name: str) -> None:
    from packaging.utils import canonicalize_name

    assert packages.canonical_name(name) == canonicalize_name(name)


# -- the differential oracle: real pip check, real importlib.metadata -----------------------


def two_copies_in_one_directory(site: Path, name: str, stale: str, fresh: str) -> Path:
    """Two metadata directories of ``name`` in ``site``, the stale one listed first by the
    directory (what ``importlib.metadata`` then returns, and the sorted order would not):
    the spelling of the stale directory's name and the order of creation are varied
    until the directory lists it first. Returns the stale directory."""
    module = name.replace("-", "_")
    spellings = [module, module.upper(), module.capitalize(), module.title()]
    for spelling in spellings:
        for stale_first in (True, False):
            paths = []
            for version in ((stale, fresh) if stale_first else (fresh, stale)):
                paths.append(write_dist_info(site, name, version))
            stale_path = paths[0] if stale_first else paths[1]
            renamed = stale_path.with_name(f"{spelling}-{stale}.dist-info")
            stale_path.rename(renamed)
            listed = [n for n in os.listdir(site) if n.lower().startswith(f"{module}-")]
            if listed[0] == renamed.name and sorted(listed)[0] != renamed.name:
                return renamed
            for path in site.glob(f"*-{stale}.dist-info"):
                shutil.rmtree(path)
            for path in site.glob(f"{module}-{fresh}.dist-info"):
                shutil.rmtree(path)
    pytest.fail("could not make the directory list the stale copy first")


def test_copy_in_effect_is_importlibs_within_one_directory(make_venv: MakeVenv) -> None:
    # Issue 14, point 1: typing-extensions 4.16.0 and 4.5.0 in one directory; the
    # directory lists 4.5.0 first, so importlib.metadata (every library, and `package`)
    # sees 4.5.0, and pip check reports what needs >=4.16 as broken.
    venv = make_venv("two-in-one-dir")
    stale = two_copies_in_one_directory(venv.site, "typing-extensions", "4.5.0", "4.16.0")
    write_dist_info(venv.site, "needs-new-te", "1.0", ["typing-extensions>=4.16"])
    write_dist_info(venv.site, "needs-te", "1.0", ["typing_extensions"])
    assert venv.in_effect()["typing-extensions"] == str(stale)
    verdict, ours = assert_consistent_agrees_with_pip(venv)
    assert ("conflict", "needs-new-te", "typing-extensions") in as_pip_check(ours)
    assert "you have typing-extensions 4.5.0" in verdict["reason"]
    duplicate = next(p for p in ours if p["kind"] == "duplicate")
    assert duplicate["distribution"] == "typing-extensions 4.5.0"
    assert f"4.5.0 in {stale} (installer pip, in effect)" in duplicate["detail"]


def test_copy_in_effect_across_sys_path(make_venv: MakeVenv, wheelhouse: Path) -> None:
    # The first sys.path entry wins, whatever the versions: a .pth file puts another
    # site directory after the venv's.
    venv = make_venv("across-sys-path")
    venv.pip("install", "--no-index", "--find-links", str(wheelhouse), "needs-new-beta")
    other = venv.root / "other-site"
    write_dist_info(other, "beta", "1.0")
    write_dist_info(other, "gamma", "0.3", ["beta<2"])
    (venv.site / "zz-other.pth").write_text(f"{other}\n", encoding="utf-8")
    _, ours = assert_consistent_agrees_with_pip(venv)
    assert ("conflict", "gamma", "beta") in as_pip_check(ours)
    assert [p["kind"] for p in ours if not p["pip_check"]] == ["duplicate"]


def test_system_site_packages_venv_shadowing_its_base_is_consistent(
        tmp_path: Path, envguard_shim: Path) -> None:
    # Issue 14, point 2: a fresh --system-site-packages venv (with its own pip) shadows
    # the base interpreter's pip: what such a venv is for, and pip check is silent.
    root = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)],
                   check=True, env=clean_environ(), timeout=300)
    venv = Venv(root)
    (venv.site / "envguard-shim.pth").write_text(f"{envguard_shim}\n", encoding="utf-8")
    base = next(Path(sys.base_prefix, "lib").glob("python3*/site-packages"))
    shadowed = {packages.canonical_name(p.name.split("-")[0]) for p in base.glob("*.dist-info")}
    shadowed &= {packages.canonical_name(p.name.split("-")[0])
                 for p in venv.site.glob("*.dist-info")}
    assert "pip" in shadowed, "the base interpreter has no pip for the venv's pip to shadow"
    verdict, ours = assert_consistent_agrees_with_pip(venv)
    assert not [p for p in ours if p["kind"] == "duplicate"
                and p["distribution"].split()[0] in shadowed]
    if verdict["status"] == "met":
        assert "shadowing the base environment's" in verdict["found"]
        assert "pip" in verdict["reason"]


def test_unsupported_wheels_are_pip_check_verdicts(make_venv: MakeVenv, tmp_path: Path) -> None:
    # Issue 14, points 3 and 4: wheels unpacked by hand for another platform, and a WHEEL
    # file with no Tag line: pip check (>= 24.1) says "not supported on this platform".
    venv = make_venv("unsupported")
    write_dist_info(venv.site, "musl-ext", "1.0", wheel_tag="cp311-cp311-musllinux_1_2_x86_64")
    write_dist_info(venv.site, "arm-ext", "1.0", wheel_tag="cp311-cp311-manylinux_2_17_aarch64")
    write_dist_info(venv.site, "old-ext", "1.0", wheel_tag="cp27-cp27mu-manylinux1_i686")
    write_dist_info(venv.site, "fine", "1.0", wheel_tag="py2.py3-none-any")
    untagged = write_dist_info(venv.site, "no-tag", "1.0")
    (untagged / "WHEEL").write_text("Wheel-Version: 1.0\nGenerator: by hand\n", encoding="utf-8")
    verdict, ours = assert_consistent_agrees_with_pip(venv)
    assert {p["distribution"] for p in ours if p["kind"] == "unsupported"} == {
        "musl-ext 1.0", "arm-ext 1.0", "old-ext 1.0", "no-tag 1.0"}
    assert all(p["pip_check"] for p in ours)
    assert len(verdict["problems"]) == 4  # point 10: every one in the JSON
    assert "no-tag 1.0 (none): its WHEEL file has no valid Tag line" in venv.verdict("wheels")[
        "reason"] + " ".join(p["text"] for p in venv.verdict("wheels")["problems"])


def test_metadata_pip_check_cannot_parse(make_venv: MakeVenv) -> None:
    # A version that is not PEP 440, a Requires-Dist that does not parse, metadata with
    # no Version: pip check leaves each distribution out (and counts it "not installed"
    # for whoever requires it); `consistent` says so, and why, as extension kinds.
    venv = make_venv("unparsable")
    write_dist_info(venv.site, "odd-version", "not.a.version")
    write_dist_info(venv.site, "bad-req", "1.0", ["[not a requirement]", "absent-dep>=1"])
    # pip takes a *.dist-info's version from its directory's name, an egg-info's from
    # its metadata: only the second, without a Version, is left out by pip check.
    for name, egg_info in (("versionless", True), ("named-version", False)):
        meta = write_dist_info(venv.site, name, "1.0", egg_info=egg_info)
        (meta / ("PKG-INFO" if egg_info else "METADATA")).write_text(
            f"Metadata-Version: 2.1\nName: {name}\n\n", encoding="utf-8")
    write_dist_info(venv.site, "user", "1.0", ["odd-version", "bad-req>=1", "versionless",
                                               "named-version>=1"])
    verdict, ours = assert_consistent_agrees_with_pip(venv)
    assert as_pip_check(ours) == {("missing", "user", "odd-version"), ("missing", "user", "bad-req"),
                                  ("missing", "user", "versionless")}
    kinds = {(p["extension"], p["distribution"].split()[0]) for p in ours if not p["pip_check"]}
    assert kinds == {("invalid-version", "odd-version"), ("invalid-requirement", "bad-req"),
                     ("skipped-by-pip", "bad-req"), ("broken-metadata", "versionless"),
                     ("broken-metadata", "named-version")}
    assert "whose metadata pip check cannot read (version 'not.a.version' is not PEP 440)" \
        in " ".join(p["text"] for p in verdict["problems"])


def test_broken_venv_agrees_with_pip_and_lists_every_problem(broken_venv: Venv) -> None:
    # Issue 14, point 10: more than three problems; the terminal shortens, the JSON
    # lists all, each with its kind.
    verdict, ours = assert_consistent_agrees_with_pip(broken_venv)
    assert len(ours) > 3
    assert verdict["reason"].endswith(f"(+{len(ours) - 3} more)")
    assert [p["kind"] for p in verdict["problems"]] == [
        "pip-check", "pip-check", "pip-check", "requested-extra", "invalid-requirement",
        "duplicate"]


def test_consistent_venv_agrees_with_pip(consistent_venv: Venv) -> None:
    verdict, ours = assert_consistent_agrees_with_pip(consistent_venv)
    assert (verdict["status"], ours) == ("met", [])
