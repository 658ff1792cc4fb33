"""Point 3 from the outside: which manager owns each file a native check names.

The ELF walk that finds which libraries an import loads lives in
``probes/extensions.py``; these are the pieces that, given its answer, name the
manager (conda or pip) of each file, and spot two copies of one library — a
wheel's vendored ``*.libs`` copy and the conda prefix's ``lib/`` one — in one
closure. The prefix and the wheel are real (py-rattler, pip).
"""

from __future__ import annotations

from pathlib import Path

from pytest_envguard.checks.conda import duplicate_libraries, owners_of_native
from pytest_envguard.probes.conda import FileOwners, library_stem, probe_conda
from tests.fixtures_conda import MakePrefix, build_wheel_with_files, prefix_environment


def test_each_file_is_named_with_its_manager(make_prefix: MakePrefix, tmp_path: Path) -> None:
    prefix = make_prefix("zed")
    wheel = build_wheel_with_files(tmp_path, "zedwheel", "1.0", {
        "zedwheel/__init__.py": b"",
        "zedwheel.libs/libzed-ab12cd34.so.1.10": b"a vendored copy\n"})
    prefix.pip("install", str(wheel))
    env = prefix_environment(prefix)
    owners = FileOwners(probe_conda(str(prefix.root)), env.installed)
    conda_lib = str(prefix.root / "lib" / "libzed.so.1.10")
    vendored = str(prefix.site / "zedwheel.libs" / "libzed-ab12cd34.so.1.10")
    nobody = str(prefix.root / "lib" / "unowned.so")
    found = owners_of_native([conda_lib, vendored, nobody], owners)
    assert {path: owner.describe() for path, owner in found.items()} == {
        conda_lib: "conda (libzed 1.10 h0)", vendored: "pip (zedwheel 1.0)", nobody: "unknown"}
    (duplicate,) = duplicate_libraries([vendored, conda_lib, conda_lib], owners)
    assert duplicate == (f"libzed loaded twice: {vendored} (pip (zedwheel 1.0)); "
                         f"{conda_lib} (conda (libzed 1.10 h0))")


def test_one_library_through_a_symlink_is_no_duplicate(make_prefix: MakePrefix) -> None:
    prefix = make_prefix("zed")
    lib = prefix.root / "lib" / "libzed.so.1.10"
    (prefix.root / "lib" / "libzed.so").symlink_to(lib.name)
    owners = FileOwners(probe_conda(str(prefix.root)), prefix_environment(prefix).installed)
    assert duplicate_libraries([str(lib), str(prefix.root / "lib" / "libzed.so")], owners) == []


def test_library_stems() -> None:
    assert library_stem("/x/libgomp.so.1") == "libgomp"
    assert library_stem("/x/torch.libs/libgomp-a34b3233.so.1.0.0") == "libgomp"
    assert library_stem("libssl.so") == "libssl"
    assert library_stem("_umath.cpython-311-x86_64-linux-gnu.so") is None
