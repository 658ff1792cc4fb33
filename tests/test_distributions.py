"""probes/distributions.py: the sys.path scan; `consistent` against real `pip check`; the
consistency and wheel-tag rules of checks/hygiene.py on hand-built facts."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging import tags

from pytest_envguard.checks import hygiene
from pytest_envguard.probes import Failure
from pytest_envguard.probes import distributions as packages
from pytest_envguard.probes.distributions import (
    InstalledDistribution,
    InstalledFacts,
    scan_distributions,
)
from tests.fixtures_packages import (
    MakeVenv,
    Venv,
    as_pip_check,
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
    assert set(kinds) == {"invalid", "conflict"}
    assert kinds["invalid"].requirement == "bad req !!"


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
