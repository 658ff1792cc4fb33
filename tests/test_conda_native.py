"""Issue 16, point 3: native libraries from two managers in one conda prefix.

A real prefix (py-rattler installs it from a local channel) whose conda packages ship
ELF libraries built here with ``cc`` — ``libfoo`` (``lib/libfoo.so.1``, symbol version
``FOO_1.0``) and ``libbar`` (``lib/libbar.so.1``, which needs ``libfoo.so.1``) — and
pip wheels whose extension modules were built elsewhere, as users pip-install them
into conda environments:

* ``so2ext`` needs ``libfoo.so.2`` (built against a newer libfoo): not in the prefix;
* ``newerext`` needs ``FOO_2.0`` from ``libfoo.so.1`` (a newer libfoo.so.1 than conda's);
* ``dupext`` vendors its own ``dupext.libs/libfoo-ab12cd34.so.1`` (as auditwheel
  renames a vendored copy) and needs conda's ``libbar.so.1``, which brings conda's
  ``libfoo.so.1``: one import, two copies of libfoo;
* ``goodext`` needs only what conda's libfoo gives.

Every verdict comes from ``python -m pytest_envguard`` run by the prefix's own python,
and is judged against the real loader: ``ctypes.CDLL`` in a subprocess of that python,
whose link map (``dlinfo``) lists every file the import loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_envguard.probes.conda import library_stem
from pytest_envguard.probes.extensions import ExtensionsFacts, ModuleClosure, library_copies
from tests.fixtures_conda import VENDORED_LIBFOO, NativePrefix
from tests.fixtures_native import same_file
from tests.fixtures_packages import clean_environ


@pytest.fixture(scope="module")
def report(conda_native_prefix: NativePrefix) -> dict[str, Any]:
    """One run of the command in the prefix: every line's verdict and the facets."""
    return conda_native_prefix.prefix.envguard_json(
        "extensions so2ext", "extensions newerext", "extensions dupext", "extensions goodext",
        "library libfoo.so.1", "library libbar.so.1")


def verdict(report: dict[str, Any], line: str) -> dict[str, Any]:
    (found,) = [item for item in report["contract"] if item["line"] == line]
    return dict(found)


def test_a_wheel_needing_another_soname_than_condas(conda_native_prefix: NativePrefix,
                                                    report: dict[str, Any]) -> None:
    module = conda_native_prefix.modules["so2ext"]
    answer = conda_native_prefix.loader(module)
    assert not answer.loaded and "libfoo.so.2: cannot open shared object file" in answer.error
    result = verdict(report, "extensions so2ext")
    assert (result["status"], result["found"]) == ("unmet", "1 of 1 module broken")
    assert result["problems"] == [{
        "kind": "missing-library",
        "text": f"so2ext/_ext.so [pip: so2ext 1.0]: libfoo.so.2 not found; the prefix has "
                f"{conda_native_prefix.lib / 'libfoo.so.1'} [conda: libfoo 1.0 h0]"}]
    assert "conda install so2ext" in result["hint"] and "libfoo 1.0 h0" in result["hint"]


def test_a_wheel_needing_a_newer_symbol_version_than_condas_copy(
        conda_native_prefix: NativePrefix, report: dict[str, Any]) -> None:
    module = conda_native_prefix.modules["newerext"]
    answer = conda_native_prefix.loader(module)
    assert not answer.loaded and "version `FOO_2.0' not found" in answer.error
    result = verdict(report, "extensions newerext")
    assert result["status"] == "unmet"
    [problem] = result["problems"]
    assert problem == {
        "kind": "missing-version",
        "text": f"newerext/_ext.so [pip: newerext 1.0]: FOO_2.0 not in "
                f"{conda_native_prefix.lib / 'libfoo.so.1'} [conda: libfoo 1.0 h0] (has up to FOO_1.0)"}
    # The file the plugin names is the file the loader's error names.
    assert same_file(answer.error_file(), conda_native_prefix.lib / "libfoo.so.1")
    assert "conda install newerext" in result["hint"]


def test_two_copies_of_one_library_in_one_import(conda_native_prefix: NativePrefix,
                                                 report: dict[str, Any]) -> None:
    """The module loads — and the loader's link map holds both libfoo copies: the wheel's
    vendored one and conda's, which conda's libbar brings. Reported with both owners."""
    module = conda_native_prefix.modules["dupext"]
    answer = conda_native_prefix.loader(module)
    vendored = conda_native_prefix.prefix.site / "dupext.libs" / VENDORED_LIBFOO
    condas = conda_native_prefix.lib / "libfoo.so.1"
    assert answer.loaded, answer.error
    assert sum(same_file(path, vendored) for path in answer.objects) == 1
    assert sum(same_file(path, condas) for path in answer.objects) == 1
    result = verdict(report, "extensions dupext")
    assert (result["status"], result["found"]) == ("unmet", "1 library loaded twice")
    assert result["problems"] == [{
        "kind": "duplicate-library",
        "text": f"dupext/_ext.so: libfoo loaded twice: {vendored} [pip: dupext 1.0]; "
                f"{condas} [conda: libfoo 1.0 h0]"}]
    assert "conda install dupext" in result["hint"] and "libfoo 1.0 h0" in result["hint"]


def test_what_the_walk_resolved_is_what_the_loader_loaded(conda_native_prefix: NativePrefix,
                                                          report: dict[str, Any]) -> None:
    """The closure the extensions facet exposes per module: each needed name and the file
    it resolved to; the files are the ones the real loader mapped for that import."""
    for name in ("dupext", "goodext"):
        facet = report["environment"][f"extensions:{name}"]
        [closure] = facet["closures"]
        module = conda_native_prefix.modules[name]
        assert same_file(closure["file"], module)
        resolved = dict(closure["resolved"])
        answer = conda_native_prefix.loader(module)
        assert answer.loaded, answer.error
        loaded = {os.path.realpath(path) for path in answer.objects} - {os.path.realpath(module)}
        assert {os.path.realpath(path) for path in resolved.values()} == loaded, (resolved, loaded)
    goodext = dict(report["environment"]["extensions:goodext"]["closures"][0]["resolved"])
    assert goodext == {"libfoo.so.1": str(conda_native_prefix.lib / "libfoo.so.1")}
    assert verdict(report, "extensions goodext")["status"] == "met"


def test_library_names_the_owner_of_the_file_it_picks(conda_native_prefix: NativePrefix,
                                                      report: dict[str, Any]) -> None:
    for name, package in (("libfoo.so.1", "libfoo 1.0 h0"), ("libbar.so.1", "libbar 1.0 h0")):
        result = verdict(report, f"library {name}")
        assert result["status"] == "met", result
        assert result["found"].startswith(str(conda_native_prefix.lib / name))
        assert result["reason"].endswith(f"; owned by conda ({package})")


def test_no_owner_lookup_outside_a_conda_prefix(conda_native_prefix: NativePrefix) -> None:
    """The owners are probed only in a conda prefix: outside one, no facet, no cost."""
    from pytest_envguard import checks, grammar
    from pytest_envguard.environment import Environment
    from pytest_envguard.probes.distributions import scan_distributions

    env = Environment({"installed": scan_distributions([str(conda_native_prefix.prefix.site)])},
                      environ=clean_environ())
    checks.evaluate(grammar.parse_lines(["extensions so2ext", "library libc.so.6"]), env)
    assert not [key for key in env.probed() if isinstance(key, tuple) and key[0].endswith("owners")]


def test_a_prefix_with_nothing_to_name_reads_no_conda_record(
        conda_native_prefix: NativePrefix) -> None:
    """The warm path stays cheap in a conda prefix too: with no problem and no library
    loaded twice, the owners are not looked for and conda-meta is not read."""
    document = conda_native_prefix.prefix.envguard_json("extensions goodext")
    [result] = document["contract"]
    assert result["status"] == "met"
    environment = document["environment"]
    assert environment["native-owners:goodext"] == {"owners": [], "duplicates": [],
                                                   "conda_copies": []}
    assert "conda" not in environment


# -- the duplicate finder, on facts built by hand --------------------------------------------


def test_copies_are_grouped_once_and_a_symlink_is_one_file(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "wheel.libs").mkdir()
    real = tmp_path / "lib" / "libgomp.so.1"
    real.write_bytes(b"")
    (tmp_path / "lib" / "libgomp.so").symlink_to(real.name)
    vendored = tmp_path / "wheel.libs" / "libgomp-a34b3233.so.1.0.0"
    vendored.write_bytes(b"")
    facts = ExtensionsFacts(None, 3, 3, closures=(
        ModuleClosure("/m/a.so", "a.so", (("libgomp-a34b3233.so.1.0.0", str(vendored)),
                                  ("libgomp.so.1", str(real)))),
        ModuleClosure("/m/b.so", "b.so", (("libgomp-a34b3233.so.1.0.0", str(vendored)),
                                  ("libgomp.so.1", str(real)))),
        ModuleClosure("/m/c.so", "c.so", (("libgomp.so", str(tmp_path / "lib" / "libgomp.so")),
                                  ("libgomp.so.1", str(real)))),
    ), loaded_first=(("libc.so.6", "/lib/libc.so.6"),))
    [group] = library_copies(facts)
    assert (group.stem, group.copies, group.modules) == (
        "libgomp", (str(vendored), str(real)), ("a.so", "b.so"))


def test_library_stems() -> None:
    assert library_stem("/x/libgomp.so.1") == "libgomp"
    assert library_stem("/x/torch.libs/libgomp-a34b3233.so.1.0.0") == "libgomp"
    assert library_stem("libssl.so") == "libssl"
    assert library_stem("_umath.cpython-311-x86_64-linux-gnu.so") is None
