"""Requirement × Environment → Verdict: all judgement lives here (DESIGN.md §1–§2).

Checks are pure: everything they know comes from the :class:`Environment`
passed in — the ``; marker`` conditions too, evaluated against the
environment's marker facet — so tests build an environment by hand and never
touch the OS. One module per domain: :mod:`.basic` (interpreter, platform,
size, packages, commands, variables), :mod:`.hygiene` (``consistent``,
``wheels``, ``lock``, ``isolated``; in a conda prefix and for conda's lock files with
:mod:`.conda`), :mod:`.native` (``library``,
``extensions``, ``import``), :mod:`.gpu` (CUDA and the GPU lines).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import ModuleType

from pytest_envguard.environment import Environment
from pytest_envguard.grammar import GPU_KEYS, Requirement
from pytest_envguard.verdicts import Status, Verdict, not_applicable, unknown

Check = Callable[[Requirement, Environment], Verdict]

#: Which module judges each key of the grammar (a test keeps the two in step). The
#: module is imported the first time one of its keys is judged: a contract of cheap
#: keys never imports the hygiene, native or GPU checks.
DOMAINS: Mapping[str, str] = {
    **dict.fromkeys(("python", "implementation", "abi", "platform", "machine", "glibc", "musl",
                     "cpu", "cpus", "memory", "memory-available", "package", "command", "env"),
                    "basic"),
    **dict.fromkeys(("consistent", "wheels", "lock", "isolated"), "hygiene"),
    **dict.fromkeys(("library", "extensions", "import"), "native"),
    **dict.fromkeys(("cuda", "driver", "cuda-runtime", "gpus", "gpu-memory", "compute-capability",
                     "gpu"), "gpu"),
}


def _domain(name: str) -> ModuleType:
    if name == "basic":
        from pytest_envguard.checks import basic as module
    elif name == "hygiene":
        from pytest_envguard.checks import hygiene as module  # type: ignore[no-redef]
    elif name == "native":
        from pytest_envguard.checks import native as module  # type: ignore[no-redef]
    else:
        from pytest_envguard.checks import gpu as module  # type: ignore[no-redef]
    return module


def check_for(key: str) -> Check:
    """The check of one key (importing its domain module on first use)."""
    check: Check = _domain(DOMAINS[key]).CHECKS[key]
    return check


def all_checks() -> dict[str, Check]:
    """Every key's check: each domain module's table, together."""
    return {key: check_for(key) for key in DOMAINS}


def applies(requirement: Requirement, env: Environment) -> tuple[bool, str | None]:
    """Whether the line's ``; marker`` holds in ``env``; the second item is why it
    could not be evaluated, if it could not."""
    if requirement.marker is None:
        return True, None
    from packaging.markers import Marker, UndefinedComparison, UndefinedEnvironmentName

    try:
        return Marker(requirement.marker).evaluate(dict(env.markers)), None
    except (UndefinedComparison, UndefinedEnvironmentName, ValueError) as error:
        return False, f"its condition could not be evaluated: {error}"


def run_check(requirement: Requirement, env: Environment) -> Verdict:
    """One requirement; a probe that raises becomes ``unknown`` with the reason."""
    try:
        return check_for(requirement.key)(requirement, env)
    except Exception as error:
        from pytest_envguard.probes import describe_error

        return unknown(requirement, f"probe failed: {describe_error(error)}")


def evaluate(requirements: Sequence[Requirement], env: Environment) -> list[Verdict]:
    """Every requirement's verdict, in order; GPU lines are judged together."""
    verdicts: dict[int, Verdict] = {}
    gpu_lines: list[tuple[int, Requirement]] = []
    for index, requirement in enumerate(requirements):
        holds, error = applies(requirement, env)
        if error:
            verdicts[index] = unknown(requirement, error)
        elif not holds:
            verdicts[index] = not_applicable(requirement, f"condition {requirement.marker} is false")
        elif requirement.key in GPU_KEYS:
            gpu_lines.append((index, requirement))
        else:
            verdicts[index] = run_check(requirement, env)
    if gpu_lines:
        try:
            results = _domain("gpu").check_gpu_group([requirement for _, requirement in gpu_lines],
                                                     env)
        except Exception as error:
            from pytest_envguard.probes import describe_error

            results = [unknown(r, f"probe failed: {describe_error(error)}") for _, r in gpu_lines]
        for (index, _), verdict in zip(gpu_lines, results, strict=True):
            verdicts[index] = verdict
    ordered = [verdicts[index] for index in range(len(requirements))]
    if env.target is not None:
        ordered = [on_this_machine(verdict) for verdict in ordered]
    return ordered


#: Appended to what a verdict found, under ``--envguard-target``, when the target did not
#: describe it: the value is this machine's (``python >=3.10  3.11.7 (this machine)``).
THIS_MACHINE = " (this machine)"


def on_this_machine(verdict: Verdict) -> Verdict:
    """Under a target, a verdict no override answered says that it judged this machine:
    a target changes what it describes (and that value's consequences), nothing else."""
    if verdict.overridden or verdict.status is Status.NA or not verdict.found:
        return verdict
    return replace(verdict, found=verdict.found + THIS_MACHINE)


class Evaluator:
    """Memoises verdicts per distinct requirement set, so thousands of tests
    marked with the same lines probe and compare once."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._cache: dict[tuple[Requirement, ...], list[Verdict]] = {}
        # The answer for one tuple object, kept with it: the tests that share a marker's
        # parsed requirements are answered without hashing them again.
        self._same: dict[int, tuple[tuple[Requirement, ...], tuple[Verdict, ...], bool]] = {}

    def evaluate(self, requirements: Sequence[Requirement]) -> list[Verdict]:
        return list(self.judge(requirements)[0])

    def judge(self, requirements: Sequence[Requirement]) -> tuple[tuple[Verdict, ...], bool]:
        """The verdicts, and whether every one is ok: for a tuple seen before (the
        thousands of tests that share a marker), a lookup by identity."""
        same = self._same.get(id(requirements))
        if same is not None and same[0] is requirements:
            return same[1], same[2]
        key = tuple(requirements)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = evaluate(key, self.env)
        if not all(verdict.requirement.source == requirement.source
                   for verdict, requirement in zip(cached, requirements, strict=True)):
            # Equal requirements from another source: the verdicts name this caller's.
            cached = [replace(verdict, requirement=requirement)
                      for verdict, requirement in zip(cached, requirements, strict=True)]
        verdicts = tuple(cached)
        met = all(verdict.ok for verdict in verdicts)
        if isinstance(requirements, tuple):
            self._same[id(requirements)] = (requirements, verdicts, met)
        return verdicts, met
