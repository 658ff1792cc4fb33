"""Requirement × Environment → Verdict: one function per key (DESIGN.md §1–§2).

Checks are pure: everything they know comes from the :class:`Environment`
passed in, so tests build an environment by hand and never touch the OS.
"""

from __future__ import annotations

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


# -- checks that later issues fill in --------------------------------------------------------


def _not_implemented(requirement: Requirement, env: Environment) -> Verdict:
    return unknown(requirement, f"the {requirement.key!r} probe is not available in this version")


for _key in ("cuda", "driver", "cuda-runtime", "library", "import", "wheels", "extensions",
             "consistent", "lock", "isolated"):
    CHECKS.setdefault(_key, _not_implemented)


def check_gpu_group(requirements: Sequence[Requirement], env: Environment) -> list[Verdict]:
    """``gpus``, ``gpu-memory``, ``compute-capability``, ``gpu`` as one question:
    at least N visible GPUs each of which meets the other GPU lines (DESIGN.md §1)."""
    return [_not_implemented(requirement, env) for requirement in requirements]


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
        if key not in self._cache:
            self._cache[key] = evaluate(key, self.env)
        # The verdicts carry this caller's requirements (their sources differ).
        return [replace(verdict, requirement=requirement)
                for verdict, requirement in zip(self._cache[key], requirements, strict=True)]
