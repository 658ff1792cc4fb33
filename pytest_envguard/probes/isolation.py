"""Isolation: which environment the interpreter runs in (venv, conda, system), and every
way the shell's environment reaches past it (the ``isolated`` key)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_envguard.probes import Facts


@dataclass(frozen=True)
class Leak(Facts):
    """One way the shell's environment reaches past the interpreter's own."""

    variable: str  # "PYTHONPATH", "LD_LIBRARY_PATH", "CONDA_PREFIX", … or "sys.prefix"
    value: str
    reason: str
    hint: str


@dataclass(frozen=True)
class IsolationFacts(Facts):
    """Which environment the interpreter runs in, and what leaks into it."""

    kind: str  # "venv", "conda" or "system"
    prefix: str
    base_kind: str  # what the venv was made from: "conda" or "system" (= kind when not a venv)
    leaks: tuple[Leak, ...]

    def summary(self) -> str:
        base = f" on {self.base_kind}" if self.kind == "venv" and self.base_kind != "system" else ""
        leaks = f", leaks: {', '.join(leak.variable for leak in self.leaks)}" if self.leaks else ""
        return f"{self.kind}{base} {self.prefix}{leaks}"


def environment_root(directory: str) -> str | None:
    """The environment holding ``directory``: the nearest ancestor (or itself)
    with a ``conda-meta/`` directory or a ``pyvenv.cfg`` file."""
    current = os.path.abspath(directory)
    while True:
        if os.path.isdir(os.path.join(current, "conda-meta")) or os.path.isfile(
            os.path.join(current, "pyvenv.cfg")
        ):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _same_path(left: str, right: str) -> bool:
    try:
        return os.path.samefile(left, right)
    except OSError:
        return os.path.realpath(left) == os.path.realpath(right)


def _kind_of(prefix: str) -> str:
    if os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
        return "venv"
    if os.path.isdir(os.path.join(prefix, "conda-meta")):
        return "conda"
    return "system"


def running_user_site() -> str | None:
    """The user site directory ``site`` put on this interpreter's ``sys.path`` (it
    does so when user sites are enabled: outside a venv, or in one made with
    ``--system-site-packages``, unless ``-s``/``PYTHONNOUSERSITE``), as ``site``
    computed it at start-up (``PYTHONUSERBASE`` or ``~/.local``); None when disabled."""
    import site

    enabled = getattr(site, "ENABLE_USER_SITE", None)
    user_site = getattr(site, "USER_SITE", None)
    return user_site if enabled and isinstance(user_site, str) else None


def _holds_anything(directory: str) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


def _user_site_leak(user_site: str | None, path: Sequence[str]) -> Leak | None:
    """The user site on ``sys.path`` with something in it: ``pip install --user``
    packages importable from inside the environment, ahead of its own in a venv."""
    if not user_site or not any(entry and _same_path(entry, user_site) for entry in path):
        return None
    if not _holds_anything(user_site):
        return None
    return Leak(
        "user site", user_site,
        f"the user site-packages {user_site} is on sys.path: what `pip install --user` put "
        "there is importable here (in a venv, ahead of the venv's own packages)",
        f"set PYTHONNOUSERSITE=1 (or run python -s), or empty {user_site}")


def probe_isolation(
    environ: Mapping[str, str],
    prefix: str | None = None,
    base_prefix: str | None = None,
    path: Sequence[str] | None = None,
    user_site: str | None = None,
) -> IsolationFacts:
    """Where the interpreter runs and every activation leak in ``environ``, plus a
    user site-packages directory on ``path``.

    ``environ`` is the snapshot the checks see, never ``os.environ`` read here. The
    defaults are this interpreter's: ``sys.prefix``, ``sys.base_prefix``, ``sys.path``
    and the user site ``site`` enabled at start-up (:func:`running_user_site`); a
    caller that gives ``prefix`` describes another interpreter, whose user site is
    only looked at when given.
    """
    if prefix is None:
        path = sys.path if path is None else path
        user_site = running_user_site() if user_site is None else user_site
    prefix = prefix if prefix is not None else sys.prefix
    base_prefix = base_prefix if base_prefix is not None else sys.base_prefix
    kind = _kind_of(prefix)
    if kind == "venv" or not _same_path(prefix, base_prefix):
        kind = "venv"
        base_kind = _kind_of(base_prefix) if not _same_path(prefix, base_prefix) else "system"
    else:
        base_kind = kind
    ours = [prefix, base_prefix]
    leaks: list[Leak] = []
    if kind == "system":
        leaks.append(Leak(
            "sys.prefix", prefix, "the interpreter is a system Python, not a venv or conda env",
            f"create an environment and run the tests in it: {sys.executable} -m venv .venv",
        ))
    leak = _user_site_leak(user_site, path or ())
    if leak is not None:
        leaks.append(leak)
    for name, hint in (
        ("PYTHONPATH", "unset PYTHONPATH; install the project into the environment "
                       "(pip install -e .) instead"),
        ("PYTHONHOME", "unset PYTHONHOME; it points every interpreter at one standard library"),
    ):
        value = environ.get(name)
        if value:
            leaks.append(Leak(name, value, f"${name} adds paths outside the environment", hint))
    for entry in (environ.get("LD_LIBRARY_PATH") or "").split(os.pathsep):
        if not entry:
            continue
        root = environment_root(entry)
        if root is None or any(_same_path(root, own) for own in ours):
            continue
        other = "conda env" if os.path.isdir(os.path.join(root, "conda-meta")) else "venv"
        leaks.append(Leak(
            "LD_LIBRARY_PATH", entry, f"entry {entry} lies inside another {other} ({root})",
            "conda deactivate (or run through `conda run -n ENV`) so its libraries "
            "do not shadow this environment's; else unset LD_LIBRARY_PATH",
        ))
    for name, what, hint in (
        ("CONDA_PREFIX", "an activated conda env",
         "conda deactivate before running this interpreter, or run through `conda run -n ENV`"),
        ("VIRTUAL_ENV", "an activated venv",
         "deactivate it, or run the tests with that venv's own python"),
    ):
        value = environ.get(name)
        if value and not _same_path(value, prefix):
            leaks.append(Leak(name, value, f"${name} names {what} ({value}), "
                                           f"but this interpreter's sys.prefix is {prefix}", hint))
    return IsolationFacts(kind=kind, prefix=prefix, base_kind=base_kind, leaks=tuple(leaks))
