"""The interpreter, the platform, the machine's size, packages, commands, variables."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pytest_envguard import units, versions
from pytest_envguard.environment import Environment, override_name
from pytest_envguard.grammar import Requirement
from pytest_envguard.probes import Failure
from pytest_envguard.verdicts import NOTHING_FOUND, Verdict, met, unknown, unmet


def compare_version(
    requirement: Requirement,
    version: str | None,
    *,
    what: str,
    missing: str | None = None,
    hint: Callable[[], str | None] | None = None,
    overridden: bool = False,
) -> Verdict:
    """A version fact against the requirement's specifier (PEP 440 rules). ``hint``
    is called only for an unmet verdict (hint tables are imported only then)."""
    shown = f"{version} (overridden)" if overridden and version else version
    if version is None:
        return unknown(requirement, missing or f"{what} version unknown", overridden=overridden)
    if not requirement.specifier:
        return met(requirement, shown or version, f"{what} {version} is present",
                   overridden=overridden)
    holds = versions.contains(requirement.specifier, version)
    if holds is None:  # more than plain release numbers: packaging decides
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version

        try:
            parsed = Version(version)
        except InvalidVersion:
            return unknown(requirement, f"{what} version {version!r} is not a PEP 440 version",
                           found=version, overridden=overridden)
        # Pre-releases count: a 3.14.0rc1 interpreter is a 3.14 for `python >=3.14`.
        holds = SpecifierSet(requirement.specifier).contains(parsed, prereleases=True)
    if holds:
        return met(requirement, shown or version,
                   f"{what} {version} satisfies {requirement.specifier}", overridden=overridden)
    return unmet(requirement, shown or version,
                 f"{what} {version} does not satisfy {requirement.specifier}",
                 hint=hint() if hint else None, overridden=overridden)


def satisfies(value: float, constraints: Sequence[tuple[str, str]], *, size: bool) -> bool:
    """A number or size against ``(operator, value)`` pairs (the grammar validated them)."""
    parse = units.parse_size if size else units.parse_count
    return all(units.OPERATORS[op](value, parse(limit)) for op, limit in constraints)


# -- interpreter and platform ----------------------------------------------------------------


def check_python(requirement: Requirement, env: Environment) -> Verdict:
    return compare_version(
        requirement, env.python.version, what="Python",
        hint=lambda: "run the suite with a matching interpreter (tox -e, pyenv, uv python)")


def check_implementation(requirement: Requirement, env: Environment) -> Verdict:
    found = env.python.implementation
    wanted = (requirement.argument or "").lower()
    if found.lower() == wanted:
        return met(requirement, found, f"running on {found}")
    return unmet(requirement, found, f"running on {found}, not {wanted}")


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


def check_platform(requirement: Requirement, env: Environment) -> Verdict:
    return _exact(requirement, env.platform.platform, "sys.platform")


def check_machine(requirement: Requirement, env: Environment) -> Verdict:
    return _exact(requirement, env.platform.machine, "the machine")


def libc_hint(requirement: Requirement) -> Callable[[], str]:
    def hint() -> str:
        from pytest_envguard import hints

        return hints.libc_hint(requirement)

    return hint


def _libc_absent(env: Environment, key: str) -> str:
    """Why a rehearsed machine has no ``key`` (glibc or musl), or "" when it may have it."""
    other = "musl" if key == "glibc" else "glibc"
    source = env.override_source(key)
    if env.override(key) == "":
        return (f"{source} is empty: no {key}" if source == override_name(key)
                else f"{source} has no {key}")
    if env.override(key) is None and env.override(other):
        return (f"{env.override_source(other)} rehearses {other} {env.override(other)}: a "
                f"machine with it has no {key}")
    return ""


def check_libc(requirement: Requirement, env: Environment) -> Verdict:
    key = requirement.key
    absent = _libc_absent(env, key)
    if absent:
        return unmet(requirement, "absent (overridden)", absent, overridden=True,
                     hint=libc_hint(requirement)())
    override = env.override(key)
    if override is not None:
        return compare_version(requirement, override, what=key, overridden=True,
                               hint=libc_hint(requirement))
    facts = env.libc
    if facts.name is None:
        return unknown(requirement, facts.reason or "no libc found")
    if facts.name != requirement.key:
        return unmet(requirement, f"{facts.name} {facts.version or ''}".strip(),
                     f"the C library is {facts.name}, not {requirement.key}")
    return compare_version(requirement, facts.version, what=requirement.key,
                           missing=facts.reason, hint=libc_hint(requirement))


# -- the machine's size ----------------------------------------------------------------------


def check_cpu(requirement: Requirement, env: Environment) -> Verdict:
    facts = env.cpu
    flag = (requirement.argument or "").lower()
    if facts.failure is not None:
        return unknown(requirement, facts.reason or "no CPU flags")
    if flag in facts.flags:
        return met(requirement, flag, f"the CPU has {flag}")
    return unmet(requirement, "absent", f"the CPU ({facts.model or 'unknown model'}) lacks {flag}",
                 hint="run on a newer CPU, or install a build compiled for a baseline ISA")


def check_cpus(requirement: Requirement, env: Environment) -> Verdict:
    facts = env.cpus
    if facts.usable is None:
        return unknown(requirement, facts.reason or "CPU count unknown")
    found = str(facts.usable)
    if satisfies(facts.usable, requirement.constraints, size=False):
        return met(requirement, found, f"{found} usable CPUs ({facts.source})")
    return unmet(requirement, found,
                 f"{found} usable CPUs ({facts.source}) does not satisfy {requirement.specifier}")


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


def check_package(requirement: Requirement, env: Environment) -> Verdict:
    from packaging.requirements import Requirement as Pep508
    from packaging.version import InvalidVersion, Version

    wanted = Pep508(requirement.argument or "")
    facts = env.distribution(wanted.name)
    if facts.version is None:
        if facts.failure is Failure.MISSING:
            return unmet(requirement, "not installed", f"{wanted.name} is not installed",
                         hint=f"pip install '{wanted}'")
        return unknown(requirement, f"{wanted.name}: {facts.reason or 'no version'}",
                       hint=f"pip install --force-reinstall '{wanted}'")
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


def check_command(requirement: Requirement, env: Environment) -> Verdict:
    facts = env.command(requirement.argument or "")
    if facts.path:
        return met(requirement, facts.path, f"{facts.name} is on PATH")
    return unmet(requirement, NOTHING_FOUND, f"{facts.name} is not on PATH",
                 hint=f"install {facts.name} or add its directory to PATH")


def check_env(requirement: Requirement, env: Environment) -> Verdict:
    """Whether a variable is set, and matches; its live value is never shown (it may be a
    token) unless ``envguard_show_env_values`` asks for it."""
    name, has_value, wanted = (requirement.argument or "").partition("=")
    value = env.environ.get(name)
    if value is None:
        return unmet(requirement, "unset", f"${name} is not set", hint=f"export {name}=…")
    if not has_value:
        return met(requirement, "set", f"${name} is set")
    shown = env.settings.show_env_values
    if value != wanted:
        return unmet(requirement, f"{name}={value}" if shown else "set, differs",
                     f"${name} is {value!r}, not {wanted!r}" if shown
                     else f"${name} is set to another value")
    return met(requirement, f"{name}={value}" if shown else "set, matches",
               f"${name} is set and matches")


CHECKS: dict[str, Callable[[Requirement, Environment], Verdict]] = {
    "python": check_python,
    "implementation": check_implementation,
    "abi": check_abi,
    "platform": check_platform,
    "machine": check_machine,
    "glibc": check_libc,
    "musl": check_libc,
    "cpu": check_cpu,
    "cpus": check_cpus,
    "memory": check_memory,
    "memory-available": check_memory,
    "package": check_package,
    "command": check_command,
    "env": check_env,
}
