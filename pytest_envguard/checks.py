"""Requirement × Environment → Verdict: one function per key (DESIGN.md §1–§2).

Checks are pure: everything they know comes from the :class:`Environment`
passed in, so tests build an environment by hand and never touch the OS.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from pytest_envguard import units
from pytest_envguard.environment import Environment
from pytest_envguard.grammar import GPU_KEYS, Requirement


class Status(str, Enum):
    MET = "met"
    UNMET = "unmet"
    UNKNOWN = "unknown"
    NA = "n/a"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Verdict:
    """The outcome of one requirement against the live environment."""

    requirement: Requirement
    status: Status
    found: str
    reason: str
    hint: str | None = None
    overridden: bool = False

    @property
    def ok(self) -> bool:
        """Met or not applicable; ``unknown`` counts as not met."""
        return self.status in (Status.MET, Status.NA)

    @property
    def line(self) -> str:
        return str(self.requirement)

    def skip_reason(self) -> str:
        return f"envguard: needs {self.line} — found {self.found}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "source": self.requirement.source,
            "status": self.status.value,
            "found": self.found,
            "reason": self.reason,
            "hint": self.hint,
            "overridden": self.overridden,
        }


Check = Callable[[Requirement, Environment], Verdict]
CHECKS: dict[str, Check] = {}


def check(*keys: str) -> Callable[[Check], Check]:
    def register(function: Check) -> Check:
        for key in keys:
            CHECKS[key] = function
        return function

    return register


# -- building verdicts ---------------------------------------------------------


def met(requirement: Requirement, found: str, reason: str, **kw: Any) -> Verdict:
    return Verdict(requirement, Status.MET, found, reason, **kw)


def unmet(requirement: Requirement, found: str, reason: str, **kw: Any) -> Verdict:
    return Verdict(requirement, Status.UNMET, found, reason, **kw)


def unknown(requirement: Requirement, reason: str, found: str = "unknown", **kw: Any) -> Verdict:
    return Verdict(requirement, Status.UNKNOWN, found, reason, **kw)


def compare_version(
    requirement: Requirement,
    version: str | None,
    *,
    what: str,
    missing: str | None = None,
    hint: str | None = None,
    overridden: bool = False,
) -> Verdict:
    """A version fact against the requirement's specifier (PEP 440 rules)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    shown = f"{version} (overridden)" if overridden and version else version
    if version is None:
        return unknown(requirement, missing or f"{what} version unknown", overridden=overridden)
    if not requirement.specifier:
        return met(requirement, shown or version, f"{what} {version} is present",
                   overridden=overridden)
    try:
        parsed = Version(version)
    except InvalidVersion:
        return unknown(requirement, f"{what} version {version!r} is not a PEP 440 version",
                       found=version, overridden=overridden)
    # Pre-releases count: a 3.14.0rc1 interpreter is a 3.14 for `python >=3.14`.
    if SpecifierSet(requirement.specifier).contains(parsed, prereleases=True):
        return met(requirement, shown or version,
                   f"{what} {version} satisfies {requirement.specifier}", overridden=overridden)
    return unmet(requirement, shown or version,
                 f"{what} {version} does not satisfy {requirement.specifier}", hint=hint,
                 overridden=overridden)


def satisfies(value: float, constraints: Sequence[tuple[str, str]], *, size: bool) -> bool:
    """A number or size against ``(operator, value)`` pairs (the grammar validated them)."""
    parse = units.parse_size if size else units.parse_count
    return all(units.OPERATORS[op](value, parse(limit)) for op, limit in constraints)


# -- interpreter and platform ----------------------------------------------------------------


@check("python")
def check_python(requirement: Requirement, env: Environment) -> Verdict:
    return compare_version(requirement, env.python.version, what="Python",
                           hint="run the suite with a matching interpreter (tox -e, pyenv, uv python)")


@check("implementation")
def check_implementation(requirement: Requirement, env: Environment) -> Verdict:
    found = env.python.implementation
    wanted = (requirement.argument or "").lower()
    if found.lower() == wanted:
        return met(requirement, found, f"running on {found}")
    return unmet(requirement, found, f"running on {found}, not {wanted}")


@check("abi")
def check_abi(requirement: Requirement, env: Environment) -> Verdict:
    facts = env.abi
    found = "free-threaded" if facts.free_threaded else "gil"
    shown = f"{facts.abis[0] if facts.abis else found} ({found})"
    wanted = (requirement.argument or "").lower()
    if wanted in ("gil", "free-threaded"):
        if wanted == found:
            return met(requirement, shown, f"the interpreter is a {found} build")
        return unmet(requirement, shown, f"the interpreter is a {found} build, not {wanted}",
                     hint="use a free-threaded build (python3.13t)" if wanted == "free-threaded"
                     else "use a standard (GIL) build of CPython")
    if wanted in facts.abis:
        return met(requirement, shown, f"ABI tag {wanted} is supported")
    return unmet(requirement, shown,
                 f"ABI tag {wanted} is not among this interpreter's ({', '.join(facts.abis[:4])})")


def _exact(requirement: Requirement, found: str, what: str) -> Verdict:
    wanted = requirement.argument or ""
    if found.lower() == wanted.lower():
        return met(requirement, found, f"{what} is {found}")
    return unmet(requirement, found, f"{what} is {found}, not {wanted}")


@check("platform")
def check_platform(requirement: Requirement, env: Environment) -> Verdict:
    return _exact(requirement, env.platform.platform, "sys.platform")


@check("machine")
def check_machine(requirement: Requirement, env: Environment) -> Verdict:
    return _exact(requirement, env.platform.machine, "the machine")


@check("glibc", "musl")
def check_libc(requirement: Requirement, env: Environment) -> Verdict:
    override = env.override("glibc") if requirement.key == "glibc" else None
    if override is not None:
        if not override:
            return unmet(requirement, "absent (overridden)",
                         "ENVGUARD_OVERRIDE_GLIBC is empty: no glibc", overridden=True)
        return compare_version(requirement, override, what="glibc", overridden=True)
    facts = env.libc
    if facts.name is None:
        return unknown(requirement, facts.reason or "no libc found")
    if facts.name != requirement.key:
        return unmet(requirement, f"{facts.name} {facts.version or ''}".strip(),
                     f"the C library is {facts.name}, not {requirement.key}")
    from pytest_envguard import hints

    return compare_version(requirement, facts.version, what=requirement.key,
                           missing=facts.reason, hint=hints.libc_hint(requirement))


@check("cpu")
def check_cpu(requirement: Requirement, env: Environment) -> Verdict:
    facts = env.cpu
    flag = (requirement.argument or "").lower()
    if not facts.flags:
        return unknown(requirement, facts.reason or "no CPU flags in /proc/cpuinfo")
    if flag in facts.flags:
        return met(requirement, flag, f"the CPU has {flag}")
    return unmet(requirement, "absent", f"the CPU ({facts.model or 'unknown model'}) lacks {flag}",
                 hint="run on a newer CPU, or install a build compiled for a baseline ISA")


@check("cpus")
def check_cpus(requirement: Requirement, env: Environment) -> Verdict:
    facts = env.cpu
    if facts.usable is None:
        return unknown(requirement, facts.reason or "CPU count unknown")
    found = str(facts.usable)
    if satisfies(facts.usable, requirement.constraints, size=False):
        return met(requirement, found, f"{found} usable CPUs ({facts.usable_source})")
    return unmet(requirement, found,
                 f"{found} usable CPUs ({facts.usable_source}) does not satisfy "
                 f"{requirement.specifier}")


@check("memory", "memory-available")
def check_memory(requirement: Requirement, env: Environment) -> Verdict:
    facts = env.memory
    value = facts.total if requirement.key == "memory" else facts.available
    what = "total memory" if requirement.key == "memory" else "available memory"
    if value is None:
        return unknown(requirement, facts.reason or f"{what} unknown")
    found = units.format_size(value)
    if satisfies(value, requirement.constraints, size=True):
        return met(requirement, found, f"{what} {found} ({facts.source})")
    return unmet(requirement, found,
                 f"{what} {found} ({facts.source}) does not satisfy {requirement.specifier}")


# -- packages, commands, variables -------------------------------------------------


@check("package")
def check_package(requirement: Requirement, env: Environment) -> Verdict:
    from packaging.requirements import Requirement as Pep508
    from packaging.version import InvalidVersion, Version

    wanted = Pep508(requirement.argument or "")
    facts = env.distribution(wanted.name)
    if facts.version is None:
        found = "not installed" if facts.reason == "not installed" else "unknown"
        status = unmet if facts.reason == "not installed" else unknown
        reason = facts.reason or "not installed"
        return status(requirement, found, f"{wanted.name}: {reason}",
                      hint=f"pip install '{wanted}'")
    found = f"{wanted.name} {facts.version}"
    if not wanted.specifier:
        return met(requirement, found, f"{wanted.name} {facts.version} is installed")
    try:
        version = Version(facts.version)
    except InvalidVersion:
        return unknown(requirement, f"installed version {facts.version!r} is not PEP 440",
                       found=found)
    if wanted.specifier.contains(version, prereleases=True):
        return met(requirement, found, f"{found} satisfies {wanted.specifier}")
    return unmet(requirement, found, f"{found} does not satisfy {wanted.specifier}",
                 hint=f"pip install '{wanted}'")


@check("command")
def check_command(requirement: Requirement, env: Environment) -> Verdict:
    facts = env.command(requirement.argument or "")
    if facts.path:
        return met(requirement, facts.path, f"{facts.name} is on PATH")
    return unmet(requirement, "not found", f"{facts.name} is not on PATH",
                 hint=f"install {facts.name} or add its directory to PATH")


@check("env")
def check_env(requirement: Requirement, env: Environment) -> Verdict:
    name, has_value, wanted = (requirement.argument or "").partition("=")
    value = env.environ.get(name)
    if value is None:
        return unmet(requirement, "unset", f"${name} is not set", hint=f"export {name}=…")
    if has_value and value != wanted:
        return unmet(requirement, f"{name}={value}", f"${name} is {value!r}, not {wanted!r}")
    return met(requirement, f"{name}={value}" if has_value else "set", f"${name} is set")


# -- environment hygiene: consistent, wheels, lock, isolated ------------------------------


def _listing(items: Sequence[str], limit: int = 3) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _problem_hint(problem: Any, env: Environment) -> str:
    from pytest_envguard import hints

    if problem.kind in ("missing", "conflict"):
        return f"pip install '{problem.requirement}'"
    if problem.kind == "duplicate":
        name = problem.distribution.split()[0]
        installers = sorted({dist.installer for dist in env.installed.distributions
                             if dist.name == name and dist.installer})
        how = " or ".join(hints.uninstall_hint(name, installer) for installer in installers)
        return f"keep one copy of {name}: {how or hints.uninstall_hint(name, None)}"
    name = problem.distribution.split()[0]
    return f"reinstall it: pip install --force-reinstall --no-deps {name}"


@check("consistent")
def check_consistent(requirement: Requirement, env: Environment) -> Verdict:
    from pytest_envguard.probes import packages

    installed = env.installed
    if installed.reason:
        return unknown(requirement, installed.reason)
    problems = packages.find_problems(installed)
    count = len(installed.active())
    if not problems:
        return met(requirement, f"{count} distributions",
                   f"every requirement of the {count} installed distributions is met")
    return unmet(requirement, f"{len(problems)} problem{'s' if len(problems) > 1 else ''}",
                 _listing([problem.describe() for problem in problems]),
                 hint=_problem_hint(problems[0], env))


@check("wheels")
def check_wheels(requirement: Requirement, env: Environment) -> Verdict:
    from pytest_envguard.probes import packages

    installed, supported = env.installed, env.supported_tags
    if installed.reason or not supported.tags:
        return unknown(requirement, installed.reason or supported.reason or "no supported tags")
    wheels = sum(1 for dist in installed.active().values() if dist.wheel_tags)
    mismatches = packages.unsupported_wheels(installed, supported.tags)
    if not mismatches:
        return met(requirement, f"{wheels} wheels",
                   f"every installed wheel has a tag this interpreter supports ({supported.tags[0]}, …)")
    first = mismatches[0].distribution.split()[0]
    return unmet(requirement, f"{len(mismatches)} unsupported",
                 _listing([mismatch.describe() for mismatch in mismatches]),
                 hint=f"reinstall for this interpreter ({supported.tags[0]}): "
                      f"pip install --force-reinstall --no-deps {first}")


def _same_version(installed: str, locked: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(installed) == Version(locked)
    except InvalidVersion:
        return installed == locked


@check("lock")
def check_lock(requirement: Requirement, env: Environment) -> Verdict:
    from pytest_envguard import hints
    from pytest_envguard.probes import locks

    lock = env.lock(requirement.argument or "")
    if lock.error:
        # The line parsed; the file did not. `unknown` (which fails a contract)
        # carries the file:line, since the plugin cannot read the file at parse time.
        return unknown(requirement, f"lock file unusable: {lock.error}", found="unreadable",
                       hint="fix or regenerate the lock file")
    installed = env.installed
    active = installed.active()
    wanted = locks.applicable(lock, dict(installed.marker_environment))
    differ: list[str] = []
    missing: list[str] = []
    for name in dict.fromkeys(package.name for package in wanted):
        versions = [package for package in wanted if package.name == name]
        found = active.get(name)
        if found is None:
            if any(package.required for package in versions):
                pinned = versions[0]
                missing.append(f"{name}{'==' + pinned.version if pinned.version else ''} "
                               f"({pinned.source})")
            continue
        pinned_versions = [package.version for package in versions if package.version]
        if pinned_versions and not any(_same_version(found.version, v) for v in pinned_versions):
            differ.append(f"{name} {found.version} installed, lock has {pinned_versions[0]} "
                          f"({versions[0].source})")
    locked_names = {package.name for package in lock.packages}
    extra = sorted(name for name in active if name not in locked_names
                   and name not in hints.LOCK_EXEMPT)
    mode = env.settings.extra.get("lock_extras", "report")
    name = lock.filename
    extra_text = f"; not in the lock: {', '.join(extra[:8])}{' …' if len(extra) > 8 else ''}" \
        if extra and mode != "ignore" else ""
    if differ or missing or (extra and mode == "fail"):
        parts = [f"{len(differ)} differ", f"{len(missing)} missing"]
        if mode == "fail":
            parts.append(f"{len(extra)} extra")
        problems = differ + [f"missing {item}" for item in missing]
        return unmet(requirement, ", ".join(parts),
                     f"{name}: " + _listing(problems) + extra_text if problems
                     else f"{name}: installed distributions are not in the lock{extra_text}",
                     hint=hints.lock_hint(lock.format, requirement.argument or lock.path))
    return met(requirement, f"{len(wanted)} pinned",
               f"{name}: the {len(wanted)} packages locked for this interpreter are installed "
               f"at the locked versions{extra_text}")


@check("isolated")
def check_isolated(requirement: Requirement, env: Environment) -> Verdict:
    facts = env.isolation
    if not facts.leaks:
        return met(requirement, facts.kind, f"running in a {facts.kind} ({facts.prefix}) "
                                            "with no activation leaks")
    return unmet(requirement,
                 f"{facts.kind}, {len(facts.leaks)} leak{'s' if len(facts.leaks) > 1 else ''}",
                 "; ".join(leak.reason for leak in facts.leaks),
                 hint="; ".join(dict.fromkeys(leak.hint for leak in facts.leaks)))


# -- native libraries: library, extensions, import ------------------------------------------


@check("library")
def check_library(requirement: Requirement, env: Environment) -> Verdict:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    from pytest_envguard import hints
    from pytest_envguard.probes import loader

    name = requirement.argument or ""
    facts = env.library(name)
    if facts.path is None:
        if facts.reason and facts.reason.startswith("cannot read"):
            return unknown(requirement, facts.reason)
        return unmet(requirement, "not found", facts.reason or f"{name} not found",
                     hint=hints.library_hint(name)
                     or f"install the package that provides {name}, or add its directory "
                        "to LD_LIBRARY_PATH")
    candidates = list(facts.candidates)
    chosen = candidates[0]
    if requirement.specifier:
        def fits(version: str | None) -> bool:
            try:
                return version is not None and SpecifierSet(requirement.specifier).contains(
                    Version(version), prereleases=True)
            except InvalidVersion:
                return False

        if ".so" not in name:  # a short name: any of its sonames will do
            chosen = next((item for item in candidates if fits(item.version)), chosen)
        if not fits(chosen.version):
            seen = ", ".join(f"{item.version or '?'} ({item.path})" for item in candidates[:3])
            status = unknown if chosen.version is None else unmet
            return status(requirement, f"{chosen.path} ({chosen.source})",
                          f"{name} {chosen.version or 'of unknown version'} does not satisfy "
                          f"{requirement.specifier}; found {seen}",
                          hint=hints.library_hint(name))
    shown = os.path.basename(chosen.soname or chosen.path)
    reason = f"{shown} {chosen.version or ''} found through {chosen.source}".replace("  ", " ")
    if chosen is not candidates[0]:
        first = candidates[0]
        reason += f"; searched first: {first.path} ({first.source}, {first.version or '?'})"
    others = [item for item in candidates[candidates.index(chosen) + 1:]
              if (item.soname or "") == (chosen.soname or "")]
    if others and chosen is candidates[0]:
        # Copies in site-packages nvidia/*/lib or a conda prefix are loaded through
        # the RPATHs of the packages that use them, so they are not shadowed.
        other = others[0]
        beyond = other.source in (loader.SOURCE_NVIDIA, loader.SOURCE_CONDA)
        reason += (f"; also in {other.path} ({other.source})" if beyond
                   else f"; it shadows {other.path} ({other.source})")
    return met(requirement, f"{chosen.path} ({chosen.source})", reason)


def _native_hint(problem: Any, env: Environment) -> str:
    from pytest_envguard import hints

    dist = problem.distribution or "the distribution"
    if problem.kind == "missing-version":
        return hints.version_hint(problem.version, problem.library, env.platform.machine,
                                  problem.distribution)
    if problem.kind == "missing-library":
        return hints.library_hint(problem.library) or (
            f"install the package that provides {problem.library}, or add its directory "
            "to LD_LIBRARY_PATH")
    if problem.kind == "wrong-architecture":
        return f"reinstall it for this interpreter: pip install --force-reinstall --no-deps {dist}"
    return f"reinstall it: pip install --force-reinstall --no-deps {dist}"


def _native_cause(problem: Any) -> str:
    via = f" (via {os.path.basename(problem.via)})" if problem.via else ""
    if problem.kind == "missing-library":
        return f"{problem.library} not found{via}"
    if problem.kind == "missing-version":
        has = f"has up to {problem.available}" if problem.available else "lacks it"
        return f"{problem.version} not in {problem.library_path}{via} ({has})"
    return f"{problem.detail}{via}"


@check("extensions")
def check_extensions(requirement: Requirement, env: Environment) -> Verdict:
    facts = env.extensions(requirement.argument)
    if facts.reason:
        if facts.reason.endswith("is not installed"):
            return unmet(requirement, "not installed", facts.reason,
                         hint=f"pip install {requirement.argument}")
        return unknown(requirement, facts.reason)
    unscanned = (f"; not scanned (no RECORD): {', '.join(facts.unscanned[:5])}"
                 if facts.unscanned else "")
    if not facts.problems:
        return met(requirement, f"{facts.modules} modules",
                   f"the {facts.modules} extension modules ({facts.files} ELF files) find every "
                   f"library and symbol version they need{unscanned}")
    # One line per cause, naming the files it breaks: a missing libcudnn breaks dozens.
    causes: dict[str, list[str]] = {}
    for problem in facts.problems:
        causes.setdefault(_native_cause(problem), []).append(problem.display)
    parts = []
    for cause, files in causes.items():
        more = f" (+{len(files) - 1} more)" if len(files) > 1 else ""
        parts.append(f"{files[0]}{more}: {cause}")
    broken = len({problem.file for problem in facts.problems})
    return unmet(requirement, f"{broken} of {facts.modules} modules broken",
                 _listing(parts) + unscanned, hint=_native_hint(facts.problems[0], env))


@check("import")
def check_import(requirement: Requirement, env: Environment) -> Verdict:
    from pytest_envguard import hints

    name = requirement.argument or ""
    facts = env.module_import(name)
    if facts.status == "ok":
        found = f"{name} {facts.version}" if facts.version else name
        return met(requirement, found,
                   f"import {name} succeeds in a subprocess ({facts.elapsed:.2f} s)")
    if facts.status == "not-installed":
        return unmet(requirement, "not installed", f"{facts.error}",
                     hint=f"install the distribution that provides {name.split('.')[0]}")
    if facts.status in ("timeout", "error"):
        return unknown(requirement, facts.error or facts.status, found=facts.status)
    if facts.status == "crashed":
        return unmet(requirement, f"crashed ({facts.signal})", facts.error or "crashed",
                     hint=f"run python -X faulthandler -c 'import {name}' to see where")
    loading = f" (loading {facts.native_file})" if facts.native_file else ""
    hint = None
    if facts.missing_kind == "library" and facts.missing:
        hint = hints.library_hint(facts.missing)
    elif facts.missing_kind == "version" and facts.missing:
        hint = hints.version_hint(facts.missing, None, env.platform.machine, name.split(".")[0])
    elif facts.missing_kind == "symbol":
        hint = ("an extension module was built against another version of a library it "
                "links to: reinstall the two so that they match")
    elif facts.missing_kind == "module" and facts.missing:
        hint = f"install the distribution that provides {facts.missing.split('.')[0]}"
    return unmet(requirement, "installed but broken", f"{facts.error}{loading}",
                 hint=hint or f"run python -c 'import {name}' to see the full traceback")


# -- CUDA and GPUs: cuda, driver, cuda-runtime, and the GPU lines ---------------------------


def _nvml_unknown(requirement: Requirement, env: Environment, **kw: Any) -> Verdict:
    from pytest_envguard import hints

    facts = env.nvidia
    return unknown(requirement, facts.reason or "NVML gave no answer",
                   hint=hints.nvml_hint(facts.error_code, facts.reason), **kw)


def _lower_bound(requirement: Requirement) -> str | None:
    """The lowest version a specifier asks for (``>=12.4``, ``==12.*`` → ``12``), if any."""
    for op, value in requirement.constraints:
        if op in (">=", ">", "==", "~=", "==="):
            return value.removesuffix(".*")
    return None


def _overridden_version(requirement: Requirement, env: Environment, key: str,
                        what: str, hint: str | None) -> Verdict | None:
    """The verdict from ``ENVGUARD_OVERRIDE_<KEY>``, or None when it is not set."""
    from pytest_envguard.environment import override_name

    value = env.override(key)
    if value is None:
        return None
    if not value:
        return unmet(requirement, "absent (overridden)", f"{override_name(key)} is empty: no {what}",
                     hint=hint, overridden=True)
    return compare_version(requirement, value, what=what, hint=hint, overridden=True)


@check("cuda")
def check_cuda(requirement: Requirement, env: Environment) -> Verdict:
    from pytest_envguard import hints

    wanted = _lower_bound(requirement)
    hint = hints.driver_for_cuda(wanted) if wanted else None
    overridden = _overridden_version(requirement, env, "cuda", "CUDA", hint)
    if overridden is not None:
        return overridden
    facts = env.nvidia
    if facts.reason is not None:
        return _nvml_unknown(requirement, env)
    if facts.cuda is None:
        return unknown(requirement, "NVML did not report the CUDA version: "
                       + (_listing(list(facts.notes)) or "no answer"))
    verdict = compare_version(requirement, facts.cuda, what="CUDA", hint=hint)
    return replace(verdict, reason=f"{verdict.reason} (the highest the driver "
                                   f"{facts.driver or '?'} supports)")


@check("driver")
def check_driver(requirement: Requirement, env: Environment) -> Verdict:
    wanted = _lower_bound(requirement)
    hint = f"upgrade the NVIDIA driver to >= {wanted}" if wanted else "install the NVIDIA driver"
    overridden = _overridden_version(requirement, env, "driver", "NVIDIA driver", hint)
    if overridden is not None:
        return overridden
    facts = env.nvidia
    if facts.reason is not None:
        return _nvml_unknown(requirement, env)
    return compare_version(requirement, facts.driver, what="NVIDIA driver", hint=hint,
                           missing="NVML did not report the driver version")


def _major_minor(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:2]:
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


@check("cuda-runtime")
def check_cuda_runtime(requirement: Requirement, env: Environment) -> Verdict:
    from pytest_envguard import hints

    facts = env.cuda_runtime
    if facts.path is None:
        return unmet(requirement, "not found", facts.reason or "no libcudart.so found",
                     hint=hints.library_hint("libcudart"))
    if facts.version is None:
        return unknown(requirement, facts.reason or f"the version of {facts.path} is unknown")
    verdict = compare_version(requirement, facts.version, what="the CUDA runtime",
                              hint=hints.library_hint("libcudart"))
    reason = f"{verdict.reason}: {facts.path} ({facts.source}; version from {facts.version_source})"
    # Against the driver: a runtime of a newer CUDA major than the driver supports fails
    # with "CUDA driver version is insufficient"; a newer minor runs (minor version
    # compatibility) but cannot JIT newer PTX.
    driver_cuda, overridden = env.override("cuda"), True
    if driver_cuda is None:
        nvidia = env.nvidia
        driver_cuda, overridden = (nvidia.cuda if nvidia.reason is None else None), False
    runtime, driver = _major_minor(facts.version), _major_minor(driver_cuda or "")
    if runtime and driver:
        source = "ENVGUARD_OVERRIDE_CUDA" if overridden else "the driver"
        if runtime[0] > driver[0]:
            return unmet(requirement, verdict.found,
                         f"{reason}; but {source} supports only CUDA {driver_cuda}: CUDA programs "
                         "fail with 'CUDA driver version is insufficient'",
                         hint=hints.driver_for_cuda(".".join(map(str, runtime))),
                         overridden=overridden)
        if runtime[0] == driver[0] and len(runtime) > 1 and runtime > driver:
            reason += (f"; newer than CUDA {driver_cuda} of {source}: it runs through minor "
                       "version compatibility, but PTX newer than the driver cannot be JIT-compiled")
    return replace(verdict, reason=reason)


@dataclass(frozen=True)
class _Gpu:
    """One GPU as the GPU lines see it (a real one, or one an override adds)."""

    label: str
    name: str | None
    memory: int | None
    capability: str | None  # "" when ENVGUARD_OVERRIDE_COMPUTE_CAPABILITY says absent


@dataclass(frozen=True)
class _Pool:
    gpus: tuple[_Gpu, ...]
    visibility: str  # why these GPUs, in words
    hidden: bool = False  # CUDA_VISIBLE_DEVICES hides GPUs NVML lists
    reason: str | None = None  # why the GPUs are unknown
    hint: str | None = None
    count_overridden: bool = False
    capability_overridden: bool = False


def _gpu_pool(env: Environment, need_properties: bool) -> _Pool:
    from pytest_envguard import hints
    from pytest_envguard.environment import override_name

    count_override = env.override("gpus")
    capability_override = env.override("compute-capability")
    real: list[_Gpu] | None = None
    visibility, hidden = "", False
    if count_override is None or need_properties:
        facts = env.nvidia
        if facts.reason is None or facts.visible_known:
            real = [_Gpu(gpu.label, gpu.name, gpu.memory_total, gpu.capability)
                    for gpu in facts.visible]
            visibility = facts.visibility
            if env.environ.get("CUDA_VISIBLE_DEVICES") is not None:
                from pytest_envguard.probes.nvidia import visible_gpus

                everything, _ = visible_gpus(facts.devices, None)
                hidden = facts.reason is not None or len(facts.visible) < len(everything)
        elif count_override is None:
            return _Pool((), "", reason=facts.reason,
                         hint=hints.nvml_hint(facts.error_code, facts.reason))
    gpus = list(real or [])
    if count_override is not None:
        try:
            count = units.parse_count(count_override) if count_override else 0
        except units.UnitError as error:
            return _Pool((), "", reason=f"{override_name('gpus')}={count_override!r}: {error}",
                         count_overridden=True)
        gpus = gpus[:count] + [_Gpu(f"GPU {index} (overridden)", None, None, None)
                               for index in range(len(gpus), count)]
        visibility = f"{override_name('gpus')}={count_override!r}" + (
            f"; real: {visibility}" if real is not None else "")
    if capability_override is not None:
        gpus = [replace(gpu, capability=capability_override) for gpu in gpus]
    return _Pool(tuple(gpus), visibility, hidden, count_overridden=count_override is not None,
                 capability_overridden=capability_override is not None)


def _gpu_meets(requirement: Requirement, gpu: _Gpu) -> bool | None:
    """Whether one GPU meets one GPU line; None when its value is unknown."""
    import fnmatch

    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    if requirement.key == "gpu-memory":
        return None if gpu.memory is None else satisfies(gpu.memory, requirement.constraints,
                                                         size=True)
    if requirement.key == "compute-capability":
        if gpu.capability is None:
            return None
        if not gpu.capability:
            return False
        try:
            version = Version(gpu.capability)
        except InvalidVersion:
            return None
        return SpecifierSet(requirement.specifier).contains(version, prereleases=True)
    if gpu.name is None:
        return None
    return fnmatch.fnmatchcase(gpu.name.lower(), (requirement.argument or "").lower())


def _gpu_value(requirement: Requirement, gpu: _Gpu) -> str:
    if requirement.key == "gpu-memory":
        return units.format_size(gpu.memory) if gpu.memory is not None else "unknown"
    if requirement.key == "compute-capability":
        return gpu.capability or ("absent" if gpu.capability == "" else "unknown")
    return gpu.name or "unknown"


def _gpu_found(requirement: Requirement, gpus: Sequence[_Gpu]) -> str:
    """The GPUs' values for one line: ``2× 79.6 GiB`` or ``9.0, 7.5``."""
    if not gpus:
        return "no GPU"
    counts: dict[str, int] = {}
    for gpu in gpus:
        value = _gpu_value(requirement, gpu)
        counts[value] = counts.get(value, 0) + 1
    return ", ".join(f"{n}× {value}" if n > 1 else value for value, n in counts.items())


_GPU_WHAT = {"gpu-memory": "memory", "compute-capability": "compute capability", "gpu": "name"}

_GPU_HINTS = {
    "gpu-memory": "run on a GPU with more memory (CUDA_VISIBLE_DEVICES can pick the larger one)",
    "compute-capability": "run on a newer GPU, or install a build compiled for this GPU's "
                          "architecture",
    "gpu": "run on a worker with that GPU model (the argument is a glob: '*H100*')",
}


def check_gpu_group(requirements: Sequence[Requirement], env: Environment) -> list[Verdict]:
    """``gpus``, ``gpu-memory``, ``compute-capability``, ``gpu`` as one question:
    at least N visible GPUs each of which meets the other GPU lines (DESIGN.md §1).

    ``gpus`` lines count the visible GPUs that meet every other GPU line
    (``gpus >=1`` when there is none). When the group is met every line is;
    when not, a property line is unmet if some visible GPU fails it, and met
    if every visible GPU meets it (it is not the cause).
    """
    property_lines = [r for r in requirements if r.key != "gpus"]
    count_lines = [r.constraints for r in requirements if r.key == "gpus"] or [((">=", "1"),)]
    pool = _gpu_pool(env, bool(property_lines))
    if pool.reason is not None:
        return [unknown(r, pool.reason, hint=pool.hint, overridden=pool.count_overridden)
                for r in requirements]
    gpus = pool.gpus
    meets = [[_gpu_meets(r, gpu) for gpu in gpus] for r in property_lines]
    every: list[bool | None] = []
    for column in range(len(gpus)):
        answers = [row[column] for row in meets]
        every.append(False if False in answers else None if None in answers else True)
    yes, maybe = every.count(True), every.count(None)

    def counted(n: int, constraints: Sequence[Sequence[tuple[str, str]]]) -> bool:
        return all(satisfies(n, clauses, size=False) for clauses in constraints)

    def status(constraints: Sequence[Sequence[tuple[str, str]]]) -> Status:
        if counted(yes, constraints):
            return Status.MET
        if any(counted(n, constraints) for n in range(yes + 1, yes + maybe + 1)):
            return Status.UNKNOWN
        return Status.UNMET

    group = status(count_lines)
    lines = ", ".join(str(r) for r in property_lines)
    gpu_lines = iter(meets)
    verdicts = []
    for requirement in requirements:
        if requirement.key == "gpus":
            own = status([requirement.constraints])
            found = str(yes) + (f" (+{maybe} unknown)" if maybe else "")
            counted_gpus = f"{len(gpus)} visible GPU{'s' if len(gpus) != 1 else ''}"
            reason = (f"{yes} of {counted_gpus} meet {lines}" if property_lines
                      else counted_gpus) + f" ({pool.visibility})"
            hint = None
            if own is Status.UNMET:
                hint = ("CUDA_VISIBLE_DEVICES hides GPUs: unset it or name more devices"
                        if pool.hidden else "run on a worker with (more) NVIDIA GPUs, or set "
                        "ENVGUARD_OVERRIDE_GPUS to exercise the suite's GPU gating")
            verdicts.append(Verdict(requirement, own, found, reason, hint,
                                    overridden=pool.count_overridden))
            continue
        row = next(gpu_lines)
        found = _gpu_found(requirement, gpus)
        overridden = pool.count_overridden or (
            requirement.key == "compute-capability" and pool.capability_overridden)
        if overridden:
            found += " (overridden)"
        what = _GPU_WHAT[requirement.key]
        fitting = [gpu.label for gpu, ok in zip(gpus, row, strict=True) if ok]
        failing = [f"{gpu.label}: {_gpu_value(requirement, gpu)}"
                   for gpu, ok in zip(gpus, row, strict=True) if ok is False]
        if group is Status.MET:
            verdicts.append(met(requirement, found, f"{len(fitting)} visible GPU"
                                f"{'s' if len(fitting) != 1 else ''} meet it: "
                                f"{_listing(fitting)}", overridden=overridden))
        elif not gpus:
            verdicts.append(unmet(requirement, found, f"no visible GPU ({pool.visibility})",
                                  hint=_GPU_HINTS[requirement.key], overridden=overridden))
        elif not failing and None not in row:
            verdicts.append(met(requirement, found, f"every visible GPU meets it ({what}: {found})",
                                overridden=overridden))
        elif None in row and group is Status.UNKNOWN:
            unknowns = [gpu.label for gpu, ok in zip(gpus, row, strict=True) if ok is None]
            verdicts.append(unknown(requirement, f"the {what} of {_listing(unknowns)} is unknown",
                                    found=found, overridden=overridden))
        else:
            together = (" — but not with the other GPU lines on the same GPUs"
                        if len(property_lines) > 1 and counted(len(fitting), count_lines) else "")
            verdicts.append(unmet(requirement, found,
                                  f"{len(fitting)} of {len(gpus)} visible GPUs meet it"
                                  f"{together}; {what}: {_listing(failing) or found}",
                                  hint=_GPU_HINTS[requirement.key], overridden=overridden))
    return verdicts


# -- evaluating a set of requirements ---------------------------------------------------


def applies(requirement: Requirement, env: Environment) -> tuple[bool, str | None]:
    """Whether the line's ``; marker`` holds; the second item is why not, or an error."""
    if requirement.marker is None:
        return True, None
    from packaging.markers import Marker, UndefinedComparison, UndefinedEnvironmentName

    try:
        return Marker(requirement.marker).evaluate(), None
    except (UndefinedComparison, UndefinedEnvironmentName, ValueError) as error:
        return False, f"its condition could not be evaluated: {error}"


def run_check(requirement: Requirement, env: Environment) -> Verdict:
    """One requirement; a probe that raises becomes ``unknown`` with the reason."""
    try:
        return CHECKS[requirement.key](requirement, env)
    except Exception as error:
        from pytest_envguard.probes import describe_error

        return unknown(requirement, f"probe failed: {describe_error(error)}")


def evaluate(requirements: Sequence[Requirement], env: Environment) -> list[Verdict]:
    """Every requirement's verdict, in order; GPU lines are judged together."""
    verdicts: dict[int, Verdict] = {}
    gpu: list[tuple[int, Requirement]] = []
    for index, requirement in enumerate(requirements):
        holds, error = applies(requirement, env)
        if error:
            verdicts[index] = unknown(requirement, error)
        elif not holds:
            verdicts[index] = Verdict(requirement, Status.NA, "-",
                                      f"condition {requirement.marker} is false")
        elif requirement.key in GPU_KEYS:
            gpu.append((index, requirement))
        else:
            verdicts[index] = run_check(requirement, env)
    if gpu:
        try:
            results = check_gpu_group([requirement for _, requirement in gpu], env)
        except Exception as error:
            from pytest_envguard.probes import describe_error

            results = [unknown(r, f"probe failed: {describe_error(error)}") for _, r in gpu]
        for (index, _), verdict in zip(gpu, results, strict=True):
            verdicts[index] = verdict
    return [verdicts[index] for index in range(len(requirements))]


class Evaluator:
    """Memoises verdicts per distinct requirement set, so thousands of tests
    marked with the same lines probe and compare once."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._cache: dict[tuple[Requirement, ...], list[Verdict]] = {}

    def evaluate(self, requirements: Sequence[Requirement]) -> list[Verdict]:
        key = tuple(requirements)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = evaluate(key, self.env)
        if all(verdict.requirement.source == requirement.source
               for verdict, requirement in zip(cached, requirements, strict=True)):
            return list(cached)
        # Equal requirements from another source: the verdicts name this caller's.
        return [replace(verdict, requirement=requirement)
                for verdict, requirement in zip(cached, requirements, strict=True)]
