"""Conda prefixes judged: conda's own graph, pip over conda, what ``conda doctor`` checks.

:func:`conda_problems` is what ``consistent`` adds in a conda prefix (the
``conda-*`` and ``pip-*`` kinds of :data:`KINDS`); :func:`check_conda_lock`
is ``lock`` for the conda formats (``pixi.lock``, ``conda-lock.yml``,
explicit spec files, ``environment.yml``). Pure: every fact comes from the
:class:`Environment`, the match-spec semantics from py-rattler through
:mod:`pytest_envguard.probes.conda`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_envguard import hints
from pytest_envguard.environment import Environment
from pytest_envguard.verdicts import Problem, Verdict, listing, met, plural, unknown, unmet

if TYPE_CHECKING:
    from pytest_envguard.grammar import Requirement
    from pytest_envguard.probes.conda import CondaFacts, CondaRecord
    from pytest_envguard.probes.distributions import InstalledDistribution
    from pytest_envguard.probes.extensions import ExtensionsFacts, NativeOwners, NativeProblem
    from pytest_envguard.probes.locks import LockedPackage, LockFacts

#: What ``consistent`` reports in a conda prefix, beyond ``pip check``: the kind each
#: problem carries in the JSON document, and what it means. Sources: ``conda doctor``'s
#: health checks (conda 25.x ``plugins/subcommands/doctor/health_checks``: missing and
#: altered files, ``.pyc``/``.pyo`` left out, consistency of ``depends``/``constrains``),
#: py-rattler's ``PackageRecord.validate`` (the same graph, virtual packages left out),
#: and pip's uninstall (it removes the files a conda record still lists).
KINDS: dict[str, str] = {
    "conda-depends": "a conda package's 'depends' match spec that no installed conda "
                     "package satisfies (missing, or installed at a version or build it "
                     "does not match)",
    "conda-constrains": "an installed conda package that another one's 'constrains' rules out",
    "conda-invalid-spec": "a 'depends' or 'constrains' entry that is no conda match spec",
    "conda-broken-record": "a conda-meta/*.json that is not a record (corrupt JSON, no name, "
                           "version or build), is incomplete, or one package recorded twice",
    "conda-missing-files": "files a conda record lists that are gone (conda doctor: Missing Files)",
    "conda-altered-files": "files a conda record lists whose size or sha256 differs from the "
                           "record (conda doctor: Altered Files)",
    "pip-over-conda": "a distribution another installer (pip, uv) put in the prefix whose files "
                      "overwrite files a conda package owns",
    "pip-replaced-conda": "a conda package's Python distribution that another installer "
                          "uninstalled and replaced with another version: conda still records "
                          "the old one",
    "pip-shadows-conda": "a conda package's Python distribution with another installer's copy of "
                         "the same name in effect over it",
    "conda-metadata-edited": "a conda package's *.dist-info that another installer rewrote "
                             "(its INSTALLER is no longer conda's)",
    "conda-leftover": "a *.dist-info whose INSTALLER says conda but that no conda record lists: "
                      "left behind when conda removed its package",
    "name-spelling": "one name installed by conda and by another installer under two "
                     "spellings (case, '-', '_', '.')",
}

#: Installers that write Python distributions into a conda prefix besides conda:
#: pip, uv, pixi's uv (``uv-pixi``, pixi's PIXI_UV_INSTALLER).
PYPI_INSTALLERS = ("pip", "uv", "uv-pixi")


@dataclass(frozen=True)
class CondaProblem:
    """One conda-side problem: its :data:`KINDS` entry, its words, what fixes it."""

    kind: str
    text: str
    hint: str
    covers: str | None = None  # the canonical Python name whose `duplicate` this replaces

    def problem(self) -> Problem:
        return Problem(self.kind, self.text)


def _canonical(name: str) -> str:
    from pytest_envguard.probes.distributions import canonical_name

    return canonical_name(name)


def _quoted(spec: str) -> str:
    return f"'{spec}'" if any(char in spec for char in " <>=*|,") else spec


def _files(paths: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" (+{len(paths) - limit} more)" if len(paths) > limit else "")


def _metadata_identity(path: str) -> tuple[str, str]:
    """The name and version a metadata directory's name spells: ``ruamel.yaml-0.18.6.dist-info``
    → (``ruamel.yaml``, ``0.18.6``); ``PyYAML-6.0-py3.11.egg-info`` → (``PyYAML``, ``6.0``)."""
    base = os.path.basename(path)
    for suffix in (".dist-info", ".egg-info"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    name, _, rest = base.partition("-")
    return name, rest.split("-")[0]


def _spelled(dist: InstalledDistribution) -> str:
    """A distribution's name as its metadata directory spells it."""
    return _metadata_identity(dist.path)[0]


def _by_installer(dist: InstalledDistribution) -> str:
    return f"{dist.installer or 'another installer'}'s"


# -- records ----------------------------------------------------------------------------------


def _record_problems(conda: CondaFacts) -> list[CondaProblem]:
    problems = []
    for broken in conda.broken:
        problems.append(CondaProblem(
            "conda-broken-record", f"unusable conda record: {broken.reason}",
            hints.conda_fix("conda-unusable-record", file=os.path.basename(broken.path))))
    for record in conda.records:
        if record.notes:
            problems.append(CondaProblem(
                "conda-broken-record", f"{record.display}: its conda record "
                f"{os.path.basename(record.source)} is incomplete: {'; '.join(record.notes)}",
                hints.conda_fix("conda-broken-record", package=record.name)))
    seen: dict[str, list[CondaRecord]] = {}
    for record in conda.records:
        seen.setdefault(record.name.lower(), []).append(record)
    for records in seen.values():
        if len(records) > 1:
            problems.append(CondaProblem(
                "conda-broken-record", f"{records[0].name} has {len(records)} conda records: "
                + ", ".join(os.path.basename(r.source) for r in records)
                + " (an interrupted transaction)",
                hints.conda_fix("conda-broken-record", package=records[0].name)))
    return problems


# -- the Python side: pip over conda ----------------------------------------------------------


def _python_problems(env: Environment, skip_records: set[str]) -> tuple[list[CondaProblem],
                                                                        set[tuple[str, str]]]:
    """pip's copies over conda's, conda's metadata rewritten, leftovers, spellings; and the
    (package, file) pairs those explain, which the file checks then leave out."""
    from pytest_envguard.probes.conda import metadata_owners, relative_to_prefix

    conda, installed = env.conda, env.installed
    active = installed.active()
    problems: list[CondaProblem] = []
    explained: set[tuple[str, str]] = set()
    owned_dirs = metadata_owners(conda)
    owned_names = {_canonical(_metadata_identity(path)[0]) for path in owned_dirs}
    for state in env.conda_metadata.states:
        spelled, version = _metadata_identity(state.path)
        name, version = _canonical(spelled), version or "?"
        record = next(r for r in conda.records if r.display == state.record)
        in_effect = active.get(name)
        copies = [dist for dist in installed.distributions
                  if dist.name == name and not dist.conda_package]
        other = next((dist for dist in copies if dist is in_effect), copies[0] if copies else None)
        if not state.exists and other is not None:
            skip_records.add(record.source)
            problems.append(CondaProblem(
                "pip-replaced-conda",
                f"{_by_installer(other)} {other.display} replaced conda's {name} {version} "
                f"({record.display}): it removed the files conda installed, and conda-meta "
                f"still records {record.display}",
                hints.conda_fix("pip-replaced-conda", name=name, package=record.name,
                                version=other.version), covers=name))
        elif state.exists and other is not None and other is in_effect:
            problems.append(CondaProblem(
                "pip-shadows-conda",
                f"{_by_installer(other)} {other.display} ({other.path}) shadows conda's {name} "
                f"{version} ({record.display}): imports get {other.version}, conda's graph "
                f"counts {version}",
                hints.conda_fix("pip-shadows-conda", name=name, conda_version=version,
                                package=record.name, version=other.version), covers=name))
        elif state.exists and other is not None:
            problems.append(CondaProblem(
                "pip-shadows-conda",
                f"{_by_installer(other)} {other.display} ({other.path}) is installed beside "
                f"conda's {name} {version} ({record.display}), which is in effect: which copy "
                "an import gets depends on sys.path and directory order",
                hints.conda_fix("pip-beside-conda", path=other.path, name=name), covers=name))
        elif state.exists and state.installer_altered:
            # Every file of that metadata directory: the edit explains them all.
            relative = relative_to_prefix(state.path, conda.prefix) or state.path
            explained.update((record.name, path) for path in record.files
                             if path.startswith(relative + "/"))
            problems.append(CondaProblem(
                "conda-metadata-edited",
                f"conda's {name} {version} ({record.display}) metadata at {state.path} was "
                f"rewritten by {state.installer or 'another installer'} (INSTALLER): "
                "another installer reinstalled it over conda's files",
                hints.conda_fix("conda-metadata-edited", package=record.name)))
    prefix = conda.prefix
    by_canonical: dict[str, list[CondaRecord]] = {}
    for record in conda.records:
        by_canonical.setdefault(_canonical(record.name), []).append(record)
    for dist in active.values():
        if dist.conda_package or relative_to_prefix(dist.path, prefix) is None:
            continue
        if dist.installer == "conda":
            if conda.broken:  # it may be one of theirs: said by the broken-record problem
                continue
            problems.append(CondaProblem(
                "conda-leftover",
                f"{dist.display} ({dist.path}) says INSTALLER conda, but no conda record lists "
                "it: conda removed its package and left the metadata",
                hints.conda_fix("conda-leftover", path=dist.path)))
            continue
        for record in by_canonical.get(dist.name, []):
            if record.name != _spelled(dist) and dist.name not in owned_names:
                problems.append(CondaProblem(
                    "name-spelling",
                    f"{dist.name} is installed twice under two spellings: conda package "
                    f"{record.display} and {_by_installer(dist)} {_spelled(dist)} {dist.version}",
                    hints.conda_fix("name-spelling", name=dist.name, package=record.name),
                    covers=dist.name))
    for overlap in env.conda_overlaps.overlaps:
        record = next(r for r in conda.records if r.display == overlap.record)
        if record.source in skip_records:
            continue
        explained.update((overlap.package, path) for path in overlap.files)
        problems.append(CondaProblem(
            "pip-over-conda",
            f"{overlap.installer or 'another installer'}'s {overlap.distribution} "
            f"{overlap.version} wrote over {plural(len(overlap.files), 'file')} of conda's "
            f"{overlap.record}: {_files(list(overlap.files))}",
            hints.conda_fix("pip-over-conda", name=overlap.distribution,
                            package=overlap.package)))
    return problems, explained


def _file_problems(env: Environment, skip_records: set[str],
                   explained: set[tuple[str, str]]) -> list[CondaProblem]:
    records = {record.display: record for record in env.conda.records}
    grouped: dict[tuple[str, str], list[str]] = {}
    for issue in env.conda_files.issues:
        record = records.get(issue.record)
        if record is None or record.source in skip_records or (issue.name, issue.path) in explained:
            continue
        text = f"{issue.path} ({issue.detail})" if issue.detail else issue.path
        grouped.setdefault((issue.record, issue.kind), []).append(text)
    problems = []
    for (display, kind), paths in grouped.items():
        name = records[display].name
        problems.append(CondaProblem(
            f"conda-{kind}-files",
            f"{display}: {plural(len(paths), 'file')} {kind}: {_files(paths)}",
            hints.conda_fix(f"conda-{kind}-files", package=name)))
    return problems


# -- conda's graph --------------------------------------------------------------------------------


def _graph_problems(env: Environment) -> tuple[list[CondaProblem], str | None]:
    from pytest_envguard.probes.conda import INSTALL_HINT

    graph = env.conda_graph
    if graph.failure is not None:
        return [], graph.reason or f"py-rattler is not available: {INSTALL_HINT}"
    problems = []
    for issue in graph.issues:
        if issue.kind == "missing":
            problems.append(CondaProblem(
                "conda-depends", f"{issue.package} depends on {_quoted(issue.spec or '')}, "
                "which is not installed",
                hints.conda_fix("conda-depends", spec=_quoted(issue.spec or ""))))
        elif issue.kind == "conflict":
            problems.append(CondaProblem(
                "conda-depends", f"{issue.package} depends on {_quoted(issue.spec or '')}, but "
                f"{' and '.join(issue.installed)} {'is' if len(issue.installed) == 1 else 'are'} "
                "installed", hints.conda_fix("conda-depends", spec=_quoted(issue.spec or ""))))
        elif issue.kind == "constrains":
            problems.append(CondaProblem(
                "conda-constrains", f"{issue.package} constrains {_quoted(issue.spec or '')}, "
                f"but {' and '.join(issue.installed)} is installed",
                hints.conda_fix("conda-constrains", spec=_quoted(issue.spec or ""))))
        elif issue.kind == "invalid-spec":
            problems.append(CondaProblem(
                "conda-invalid-spec", f"{issue.package} has {_quoted(issue.spec or '')}, which "
                f"is no conda match spec: {issue.detail}",
                hints.conda_fix("conda-invalid-spec", package=issue.package.split()[0])))
        else:
            problems.append(CondaProblem(
                "conda-broken-record", f"py-rattler cannot read the conda record {issue.package}: "
                f"{issue.detail}", hints.conda_fix("conda-unusable-record",
                                                   file=os.path.basename(issue.package))))
    return problems, None


def conda_problems(env: Environment) -> tuple[list[CondaProblem], str | None]:
    """What ``consistent`` adds in a conda prefix: every :data:`KINDS` problem, and
    None or why conda's graph could not be judged (then the verdict cannot be ``met``)."""
    conda = env.conda
    if not conda.present:
        return [], None
    if conda.failure is not None and not conda.records:
        return [], conda.reason or "the conda records cannot be read"
    skip_records: set[str] = set()
    problems = _record_problems(conda)
    python, explained = _python_problems(env, skip_records)
    graph, graph_unknown = _graph_problems(env)
    problems += graph + python + _file_problems(env, skip_records, explained)
    if conda.failure is not None:
        graph_unknown = graph_unknown or conda.reason
    return problems, graph_unknown


def graph_summary(env: Environment) -> str:
    """``conda's graph of 12 packages holds (py-rattler 0.28.0)``, for a met verdict."""
    graph = env.conda_graph
    version = f" (py-rattler {graph.rattler})" if graph.rattler else ""
    kind = env.conda.kind or "conda"
    return f"the {kind} graph of {plural(len(env.conda.records), 'package')} holds{version}"


# -- lock: the conda formats ------------------------------------------------------------------------


def _conda_found(record: CondaRecord) -> str:
    return f"{record.version} {record.build}"


def _compare_exact(locked: LockedPackage, record: CondaRecord) -> bool:
    """The lock's version and build are the record's (a source package pixi builds has
    neither in the lock: its presence is what is checked)."""
    return ((locked.version is None or record.version == locked.version)
            and (locked.build is None or record.build == locked.build))


def check_conda_lock(requirement: Requirement, env: Environment, lock: LockFacts) -> Verdict:
    """``lock`` against a conda lock: its conda packages against the prefix's records
    (name, version and build; an ``environment.yml`` match spec with py-rattler's
    semantics), its PyPI packages against the installed distributions, as the other
    formats are judged."""
    from pytest_envguard.checks.hygiene import applicable, same_version
    from pytest_envguard.probes.conda import match_specs

    conda = env.conda
    records = conda.by_name() if conda.present else {}
    conda_wanted = [package for package in lock.packages if package.manager == "conda"]
    pypi = [package for package in lock.packages if package.manager != "conda"]
    differ: list[str] = []
    missing: list[str] = []
    specs = [package.spec for package in conda_wanted if package.spec]
    answers: dict[str, tuple[str, ...]] = {}
    if specs and records:
        matched, why = match_specs(conda, specs)
        if why is not None:
            return unknown(requirement, f"{lock.filename}: cannot judge its conda match specs: "
                                        f"{why}", found="unknown",
                           hint=hints.CONDA_EXTRA_HINT)
        answers = {answer.spec: answer.matching for answer in matched}
    for package in conda_wanted:
        record = records.get(package.name.lower())
        if record is None:
            missing.append(f"{package.display} ({package.source})")
        elif package.spec:
            if not answers.get(package.spec):
                differ.append(f"{record.display} installed, lock has {package.spec} "
                              f"({package.source})")
        elif not _compare_exact(package, record):
            pinned = " ".join(part for part in (package.version, package.build) if part)
            differ.append(f"{record.name} {_conda_found(record)} installed, lock has {pinned} "
                          f"({package.source})")
    python_active = env.installed.active()
    for package in applicable(lock.__class__(lock.path, lock.format, tuple(pypi)), env.markers):
        found = python_active.get(package.name)
        if found is None:
            if package.required:
                missing.append(f"{package.name}{'==' + package.version if package.version else ''}"
                               f" ({package.source})")
        elif package.version and not same_version(found.version, package.version):
            differ.append(f"{package.name} {found.version} installed, lock has {package.version} "
                          f"({package.source})")
    extra = _conda_lock_extra(env, lock, records)
    mode = env.settings.lock_extras
    where = lock.filename + (f" ({lock.selection})" if lock.selection else "")
    extra_text = (f"; not in the lock: {', '.join(extra[:8])}{' …' if len(extra) > 8 else ''}"
                  if extra and mode != "ignore" else "")
    if differ or missing or (extra and mode == "fail"):
        parts = [f"{len(differ)} differ", f"{len(missing)} missing"]
        if mode == "fail":
            parts.append(f"{len(extra)} extra")
        listed = ([Problem("differs", item) for item in differ]
                  + [Problem("missing", f"missing {item}") for item in missing]
                  + [Problem("extra", f"{item} is not in the lock") for item in extra
                     if mode == "fail"])
        items = differ + [f"missing {item}" for item in missing]
        return unmet(requirement, ", ".join(parts),
                     f"{where}: " + (listing(items) if items
                                     else "installed packages are not in the lock") + extra_text,
                     hint=hints.lock_hint(lock.format, requirement.argument or lock.path),
                     problems=tuple(listed))
    count = len(conda_wanted) + len(pypi)
    return met(requirement, f"{count} pinned",
               f"{where}: the {count} packages it locks ({len(conda_wanted)} conda, "
               f"{len(pypi)} PyPI) are installed as locked{extra_text}")


def _conda_lock_extra(env: Environment, lock: LockFacts,
                      records: Mapping[str, CondaRecord]) -> list[str]:
    """What is installed and not in the lock: conda packages it does not name, and
    Python distributions neither it nor a conda package accounts for."""

    conda_names = {p.name.lower() for p in lock.packages if p.manager == "conda"}
    pypi_names = {p.name for p in lock.packages if p.manager != "conda"}
    extra = [record.name for key, record in sorted(records.items()) if key not in conda_names]
    extra += sorted(name for name, dist in env.installed.active().items()
                    if not dist.conda_package and name not in pypi_names
                    and name not in hints.LOCK_EXEMPT)
    return extra


# -- point 3: native libraries from two managers (`extensions`, `library`) -------------------------

#: The kind of the problem that names two copies of one library loaded by one import.
DUPLICATE_LIBRARY = "duplicate-library"


def native_owners(env: Environment, argument: str | None,
                  facts: ExtensionsFacts) -> NativeOwners | None:
    """In a conda prefix, who owns each file the ``extensions`` verdict names, and the
    libraries one import loads twice (probed once per line, kept beside the facts);
    None elsewhere: a venv pays one ``stat`` for this."""
    if not (facts.problems or facts.closures) or not env.in_conda_prefix():
        return None
    from pytest_envguard.probes.extensions import probe_native_owners

    return env.fact(("native-owners", argument or "*"),
                    lambda: probe_native_owners(facts, lambda: env.conda, env.installed))


def library_owners(env: Environment, name: str, paths: Sequence[str | None]) -> NativeOwners | None:
    """In a conda prefix, who owns the files a ``library`` verdict names."""
    wanted = [path for path in paths if path]
    if not wanted or not env.in_conda_prefix():
        return None
    from pytest_envguard.probes.extensions import probe_owners

    return env.fact(("library-owners", name),
                    lambda: probe_owners(wanted, env.conda, env.installed))


def owned(path: str, owners: NativeOwners | None) -> str:
    """``/prefix/lib/libfoo.so.1 [conda: libfoo 1.0 h0]``: a file and who owns it."""
    owner = owners.owner(path) if owners is not None else None
    if owner is None:
        return path
    return f"{path} [{owner.manager}: {owner.package}]" if owner.package else \
        f"{path} [{owner.manager} owner]"


def owned_by(path: str | None, owners: NativeOwners | None) -> str:
    """``; owned by conda (libfoo 1.0 h0)``, or nothing when it is not known."""
    owner = owners.owner(path) if owners is not None else None
    return f"; owned by {owner.describe()}" if owner is not None else ""


def conda_copies(name: str, owners: NativeOwners | None) -> str:
    """For a needed library not found: ``; the prefix has conda's lib/libfoo.so.1 …``."""
    found = dict(owners.conda_copies).get(name, ()) if owners is not None else ()
    if not found:
        return ""
    return "; the prefix has " + ", ".join(owned(path, owners) for path in found[:3])


def duplicate_problems(owners: NativeOwners) -> list[Problem]:
    """Each library one import loads twice, with every copy's owner."""
    found = []
    for group in owners.duplicates:
        more = f" (+{len(group.modules) - 1} more)" if len(group.modules) > 1 else ""
        found.append(Problem(DUPLICATE_LIBRARY, f"{group.modules[0]}{more}: {group.stem} loaded "
                             "twice: " + "; ".join(owned(path, owners) for path in group.copies)))
    return found


def across_managers_hint(problem: NativeProblem, owners: NativeOwners | None) -> str | None:
    """The fix of a module another manager installed that needs what conda's copy of a
    library does not give (another soname, a newer symbol version)."""
    if owners is None:
        return None
    module = owners.owner(problem.file)
    if module is None or module.manager == "conda" or not module.package:
        return None
    library = owners.owner(problem.library_path)
    if library is None or library.manager != "conda":
        copies = dict(owners.conda_copies).get(problem.library or "", ())
        library = owners.owner(copies[0]) if copies else None
    if library is None or library.manager != "conda" or not library.package:
        return None
    needed = f"{problem.version} of {problem.library}" if problem.version else problem.library
    return hints.conda_fix("native-across-managers", name=module.package.split()[0],
                           manager=module.manager, needed=needed or "a library",
                           package=library.package)


def duplicate_hint(owners: NativeOwners) -> str | None:
    group = owners.duplicates[0]
    by_manager = [owners.owner(path) for path in group.copies]
    other = next((o for o in by_manager if o is not None and o.manager != "conda" and o.package),
                 None)
    conda = next((o for o in by_manager if o is not None and o.manager == "conda" and o.package),
                 None)
    if other is None or other.package is None or conda is None or conda.package is None:
        return None
    return hints.conda_fix("duplicate-library", stem=group.stem,
                           name=other.package.split()[0], package=conda.package)


def unknown_without_rattler(requirement: Requirement, reason: str, count: int) -> Verdict:

    return unknown(requirement, f"every requirement of the {count} installed distributions is "
                                f"met, but conda's own graph was not judged: {reason}",
                   found=f"{count} distributions, conda graph unknown",
                   hint=hints.CONDA_EXTRA_HINT)

