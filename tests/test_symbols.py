"""Symbols without a version: ``extensions`` and ``library`` find what ``dlopen`` reports
as ``undefined symbol: NAME`` — a library with the right name that lacks a function the
module was built against — and the real loader (``dlopen`` in a fresh interpreter, as
Python's import does it) answers every case too.

The libraries are built with ``cc`` here: ``libenvguard_sym.so.1`` in an old build
(``sym_a``) and a new one (``sym_a``, ``sym_b``, ``sym_data``), modules that use one or
the other, directly or through a library of their own, weakly, from the interpreter, with a
version (``sym_b@V2``), and builds whose ``sym_b`` carries a version, the default one or
a hidden one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_envguard import checks, grammar
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.probes import elf
from pytest_envguard.probes.distributions import scan_distributions
from pytest_envguard.verdicts import Status, Verdict
from tests.fixtures_native import (
    LoaderAnswer,
    _write_dist,
    compile_shared,
    plugin_and_loader_agree,
    real_loader,
    without_loader_vars,
    write_sources,
)

SOURCES = {
    "old.c": "int sym_a(void) { return 1; }\n",
    "new.c": "int sym_a(void) { return 1; }\nint sym_b(void) { return 2; }\nint sym_data = 3;\n",
    "uses_a.c": "extern int sym_a(void);\nint entry(void) { return sym_a(); }\n",
    "uses_b.c": "extern int sym_b(void);\nint entry(void) { return sym_b(); }\n",
    "middle.c": "extern int sym_b(void);\nint middle(void) { return sym_b(); }\n",
    "uses_middle.c": "extern int middle(void);\nint entry(void) { return middle(); }\n",
    "weak.c": "extern int sym_c(void) __attribute__((weak));\n"
              "int entry(void) { return sym_c ? sym_c() : 0; }\n",
    "python.c": "extern int Py_IsInitialized(void);\nint entry(void) { return Py_IsInitialized(); }\n",
    "data.c": "extern int sym_data;\nint entry(void) { return sym_data; }\n",
    # sym_b in two versions: V1's is hidden (sym_b@V1), V2's the default (sym_b@@V2).
    "versioned.c": "int sym_a(void) { return 1; }\nint sym_data = 3;\n"
                   "int sym_b_v1(void) { return 1; }\nint sym_b_v2(void) { return 2; }\n"
                   '__asm__(".symver sym_b_v1, sym_b@V1");\n'
                   '__asm__(".symver sym_b_v2, sym_b@@V2");\n',
    # sym_b in V2 only, and hidden: no default version an unversioned reference takes.
    "hidden.c": "int sym_a(void) { return 1; }\nint sym_data = 3;\n"
                "int sym_b_v2(void) { return 2; }\n"
                '__asm__(".symver sym_b_v2, sym_b@V2");\n',
    "two.map": "V1 { global: sym_a; sym_data; local: *; };\nV2 { } V1;\n",
}
SONAME = "libenvguard_sym.so.1"


@dataclass(frozen=True)
class Built:
    root: Path
    site: Path  # a site-packages whose "sympkg" modules load libsym from ../sympkg.libs
    libs: Path  # sympkg.libs: the library the modules load (the old build, at first)
    new: Path  # the new build, linked against
    builds: dict[str, Path]  # "old", "new", "versioned", "hidden": the library, by build


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("symbols")
    src = write_sources(root, SOURCES)
    soname = f"-Wl,-soname,{SONAME}"
    builds = {name: compile_shared(root / name / SONAME, src / f"{name}.c", soname)
              for name in ("old", "new")}
    for name in ("versioned", "hidden"):
        builds[name] = compile_shared(root / name / SONAME, src / f"{name}.c", soname,
                                      f"-Wl,--version-script={src / 'two.map'}")
    new = builds["new"]
    site = root / "site"
    libs = site / "sympkg.libs"
    libs.mkdir(parents=True)
    (libs / SONAME).write_bytes(builds["old"].read_bytes())
    runpath = ("-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN/../sympkg.libs")
    middle = compile_shared(libs / "libenvguard_middle.so.1", src / "middle.c", str(new),
                            "-Wl,-soname,libenvguard_middle.so.1", "-Wl,--enable-new-dtags",
                            "-Wl,-rpath,$ORIGIN")
    modules = [
        compile_shared(site / "sympkg" / "_uses_a.so", src / "uses_a.c", str(new), *runpath),
        compile_shared(site / "sympkg" / "_uses_b.so", src / "uses_b.c", str(new), *runpath),
        compile_shared(site / "sympkg" / "_middle.so", src / "uses_middle.c", str(middle),
                       *runpath),
        compile_shared(site / "sympkg" / "_weak.so", src / "weak.c", *runpath),
        compile_shared(site / "sympkg" / "_python.so", src / "python.c"),
        compile_shared(site / "sympkg" / "_data.so", src / "data.c", str(new), *runpath),
        # linked against the versioned build: it needs sym_b@V2 of libenvguard_sym.so.1
        compile_shared(site / "sympkg" / "_uses_b_v2.so", src / "uses_b.c",
                       str(builds["versioned"]), *runpath),
    ]
    _write_dist(site, "sympkg", [*modules, libs / SONAME, middle])
    return Built(root, site, libs, new, builds)


def module(built: Built, name: str) -> Path:
    return built.site / "sympkg" / f"_{name}.so"


MODULES = ("uses_a", "uses_b", "middle", "weak", "python", "data", "uses_b_v2")


def with_library(built: Built, build: str) -> None:
    """The modules' copy of libenvguard_sym.so.1 replaced by another build."""
    (built.libs / SONAME).write_bytes(built.builds[build].read_bytes())


def judged(built: Built, **environ: str) -> tuple[Verdict, Environment]:
    env = Environment(facts={"installed": scan_distributions([str(built.site)])},
                      environ=without_loader_vars(**environ), settings=Settings())
    [verdict] = checks.evaluate(grammar.parse_lines(["extensions sympkg"]), env)
    return verdict, env


def agree(env: Environment, built: Built) -> dict[str, LoaderAnswer]:
    """The plugin's facts and the real loader agree on every module."""
    oracle = {str(module(built, name)): real_loader(module(built, name), env.environ)
              for name in MODULES}
    assert plugin_and_loader_agree(env.extensions("sympkg"), oracle) == []
    return oracle


@pytest.mark.parametrize(("build", "broken"), [
    # No version table at all: _uses_b_v2's need of V2 passes (the loader only warns of a
    # library without versions), but ld.so will not bind sym_b@V2 in the very library it
    # is needed from without one: it stops the process ("Inconsistency detected").
    ("new", {"uses_b_v2"}),
    # No sym_b, no sym_data: the version need passes all the same (the loader only warns
    # of a library without versions), the binding fails.
    ("old", {"uses_b", "middle", "data", "uses_b_v2"}),
    ("versioned", set()),  # sym_b@@V2: the default version binds an unversioned reference
    # Only sym_b@V2, hidden: nothing for an unversioned reference, all _uses_b_v2 needs.
    ("hidden", {"uses_b", "middle"}),
])
def test_the_library_build_decides_which_modules_load(built: Built, build: str,
                                                      broken: set[str]) -> None:
    with_library(built, build)
    try:
        verdict, env = judged(built)
        oracle = agree(env, built)
        assert {name for name in MODULES
                if not oracle[str(module(built, name))].loaded} == broken
        if not broken:
            assert verdict.status is Status.MET, verdict.reason
            return
        assert verdict.status is Status.UNMET
        assert verdict.found == f"{len(broken)} of {len(MODULES)} modules broken"
        texts = [problem.text for problem in verdict.problems]  # the reason may shorten
        if "data" in broken:  # a variable, bound at load all the same
            assert "sympkg/_data.so: undefined symbol: sym_data" in texts
        if "uses_b_v2" in broken:
            assert "sympkg/_uses_b_v2.so: undefined symbol: sym_b@V2" in texts
        if "uses_b" in broken:
            assert "sympkg/_uses_b.so: undefined symbol: sym_b" in verdict.reason
            assert "undefined symbol: sym_b (via libenvguard_middle.so.1)" in verdict.reason
            assert "undefined symbol: sym_b" in oracle[str(module(built, "uses_b"))].error
        assert verdict.hint is not None and "built against" in verdict.hint
        kinds = {problem.kind for problem in env.extensions("sympkg").problems}
        assert kinds == {"undefined-symbol"}
        assert any(problem.kind == "undefined-symbol" for problem in verdict.problems)
    finally:
        with_library(built, "old")


def test_an_old_library_from_ld_library_path_is_named(built: Built, tmp_path: Path) -> None:
    # The module's RUNPATH holds the new build; LD_LIBRARY_PATH, searched first, the old one.
    with_library(built, "new")
    try:
        leak = tmp_path / "leak"
        leak.mkdir()
        (leak / SONAME).write_bytes(built.builds["old"].read_bytes())
        verdict, env = judged(built, LD_LIBRARY_PATH=str(leak))
        agree(env, built)
        assert verdict.status is Status.UNMET
        assert (f"sympkg/_uses_b.so: undefined symbol: sym_b, with {SONAME} from "
                "LD_LIBRARY_PATH") in verdict.reason
        assert verdict.hint is not None and "LD_LIBRARY_PATH" in verdict.hint
    finally:
        with_library(built, "old")


def test_the_library_key_sees_a_dependency_without_the_symbol(built: Built,
                                                              tmp_path: Path) -> None:
    # libenvguard_middle needs sym_b; beside it, the old libenvguard_sym has none.
    env = Environment(environ=without_loader_vars(LD_LIBRARY_PATH=str(built.libs)),
                      settings=Settings())
    [verdict] = checks.evaluate(grammar.parse_lines(["library libenvguard_middle.so.1"]), env)
    answer = real_loader("libenvguard_middle.so.1", env.environ)
    assert not answer.loaded and "undefined symbol: sym_b" in answer.error
    assert verdict.status is Status.UNMET, verdict
    assert "undefined symbol: sym_b" in verdict.reason


def test_the_library_lines_of_an_environment_share_one_checker(built: Built) -> None:
    # One checker reads the interpreter's libraries (and their symbols) once for every
    # line; each line is still judged on its own file.
    env = Environment(environ=without_loader_vars(LD_LIBRARY_PATH=str(built.libs)),
                      settings=Settings())
    middle, sym = checks.evaluate(grammar.parse_lines(
        ["library libenvguard_middle.so.1", f"library {SONAME}"]), env)
    assert middle.status is Status.UNMET and "undefined symbol: sym_b" in middle.reason
    assert sym.status is Status.MET, sym
    checker = env._load_checker
    assert checker is not None
    assert {str(built.libs / "libenvguard_middle.so.1"), str(built.libs / SONAME)} <= checker.seen


def test_symbol_tables_read_as_the_loader_binds(built: Built) -> None:
    old = elf.read_symbols(str(built.builds["old"]))
    versioned = elf.read_symbols(str(built.builds["versioned"]))
    hidden = elf.read_symbols(str(built.builds["hidden"]))
    weak = elf.read_symbols(str(module(built, "weak")))
    middle = elf.read_symbols(str(built.libs / "libenvguard_middle.so.1"))
    assert old is not None and b"sym_a" in old.defined and b"sym_b" not in old.defined
    assert versioned is not None and {b"sym_a", b"sym_b"} <= versioned.defined
    assert hidden is not None and b"sym_a" in hidden.defined and b"sym_b" not in hidden.defined
    assert weak is not None and b"sym_c" not in weak.undefined  # weak: may stay unbound
    assert middle is not None and b"sym_b" in middle.undefined and b"middle" in middle.defined
    old_scope = elf.scope_of([str(built.builds["old"])])
    assert old_scope is not None
    assert elf.unbound([str(built.libs / "libenvguard_middle.so.1")], [old_scope]) == {
        str(built.libs / "libenvguard_middle.so.1"): ("sym_b",)}
    # A versioned reference: a definition of that version binds it, hidden or not; an
    # object without a version table binds it by name.
    v2 = elf.read_symbols(str(module(built, "uses_b_v2")))
    new = elf.read_symbols(str(built.builds["new"]))
    assert v2 is not None and new is not None and not new.has_versions
    assert (b"sym_b", "V2", SONAME) in v2.needs and b"sym_b" not in v2.undefined
    assert versioned.binds(b"sym_b", "V2") and hidden.binds(b"sym_b", "V2")
    assert not versioned.binds(b"sym_b", "V3") and not old.binds(b"sym_b", "V2")
    assert new.binds(b"sym_b", "V2") and not new.binds(b"sym_b", "V2", named=True)


@pytest.mark.parametrize("content", [b"", b"not an ELF file\n" * 8, None])
def test_a_table_that_cannot_be_read_says_nothing(built: Built, tmp_path: Path,
                                                  content: bytes | None) -> None:
    path = tmp_path / "lib.so"
    if content is None:  # cut inside its symbol table
        data = built.builds["new"].read_bytes()
        path.write_bytes(data[:len(data) // 3])
    else:
        path.write_bytes(content)
    assert elf.read_symbols(str(path)) is None
    assert elf.read_symbols(str(tmp_path / "absent.so")) is None
    assert elf.scope_of([str(path)]) is None
    assert elf.unbound([str(path)], []) is None
