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
    environment_kind: str = ""  # "venv", "conda", "pixi" or "system": which tool made it

    def summary(self) -> str:
        base = f" on {self.base_kind}" if self.kind == "venv" and self.base_kind != "system" else ""
        leaks = f", leaks: {', '.join(leak.variable for leak in self.leaks)}" if self.leaks else ""
        return f"{self.environment_kind or self.kind}{base} {self.prefix}{leaks}"


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


def is_conda_prefix(prefix: str) -> bool:
    """Whether ``prefix`` holds a ``conda-meta/`` directory (one ``stat``): a conda, mamba,
    micromamba or pixi environment."""
    return os.path.isdir(os.path.join(prefix, "conda-meta"))


def pixi_environment_of(prefix: str) -> str | None:
    """The environment name of a prefix where pixi keeps them: ``<project>/.pixi/envs/<name>``."""
    parent = os.path.dirname(os.path.normpath(prefix))
    if os.path.basename(parent) == "envs" and os.path.basename(os.path.dirname(parent)) == ".pixi":
        return os.path.basename(os.path.normpath(prefix))
    return None


def is_pixi_environment(prefix: str) -> bool:
    """A conda prefix pixi installed: its ``conda-meta/pixi`` marker, or the
    ``<project>/.pixi/envs/<name>`` place pixi keeps environments in."""
    return (os.path.lexists(os.path.join(prefix, "conda-meta", "pixi"))
            or pixi_environment_of(prefix) is not None)


def _is_conda_env(root: str) -> bool:
    return os.path.isdir(os.path.join(root, "conda-meta"))


def _stacked(environ: Mapping[str, str]) -> dict[str, str]:
    """The conda envs an activation stack keeps (``CONDA_PREFIX_1``… up to
    ``CONDA_SHLVL - 1``): realpath → the variable naming it."""
    try:
        level = int(environ.get("CONDA_SHLVL") or 0)
    except ValueError:
        return {}
    found = {}
    for index in range(1, min(level, 64)):
        value = environ.get(f"CONDA_PREFIX_{index}")
        if value:
            found[os.path.realpath(value)] = f"CONDA_PREFIX_{index}"
    return found


def _stack_note(root: str, environ: Mapping[str, str]) -> str:
    variable = _stacked(environ).get(os.path.realpath(root))
    if variable is None:
        return ""
    return (f" (an activation stack: CONDA_SHLVL={environ.get('CONDA_SHLVL')}, "
            f"{variable}={environ.get(variable)})")


def _path_leaks(environ: Mapping[str, str], ours: Sequence[str]) -> list[Leak]:
    """``PATH`` entries inside a conda env other than this interpreter's own: that env's
    ``python``, compilers and tools answer every subprocess the tests start. (conda's
    ``condabin``, which holds only the ``conda`` command, is left alone.)"""
    leaks = []
    for entry in dict.fromkeys((environ.get("PATH") or "").split(os.pathsep)):
        if not entry or os.path.basename(os.path.normpath(entry)) == "condabin":
            continue
        root = environment_root(entry)
        if root is None or not _is_conda_env(root) or any(_same_path(root, own) for own in ours):
            continue
        leaks.append(Leak(
            "PATH", entry,
            f"entry {entry} lies inside another conda env ({root}): its python and tools "
            f"answer the commands the tests run{_stack_note(root, environ)}",
            "conda deactivate (every level of a stacked activation), or run the tests "
            "through `conda run -n ENV` / the environment's own python with a clean PATH"))
    return leaks


def _pixi_leaks(environ: Mapping[str, str], prefix: str) -> list[Leak]:
    """pixi's activation (``pixi shell``, ``pixi run``) names an environment of a
    project; the interpreter should be that environment's."""
    root = environ.get("PIXI_PROJECT_ROOT")
    name = environ.get("PIXI_ENVIRONMENT_NAME")
    if not root and not name:
        return []
    expected = environ.get("CONDA_PREFIX") or (
        os.path.join(root, ".pixi", "envs", name or "default") if root else None)
    if expected is None or _same_path(expected, prefix):
        return []
    variable = "PIXI_ENVIRONMENT_NAME" if name else "PIXI_PROJECT_ROOT"
    return [Leak(
        variable, environ.get(variable, ""),
        f"pixi activated environment {name or 'default'!r} of the project at "
        f"{root or '?'} ({expected}), but this interpreter's sys.prefix is {prefix}",
        f"run the tests with that environment's interpreter: pixi run -e {name or 'default'} "
        "python -m pytest (or leave the pixi shell before using another interpreter)")]


def _conda_prefix_leak(environ: Mapping[str, str], prefix: str, base_prefix: str,
                       kind: str) -> Leak | None:
    value = environ.get("CONDA_PREFIX")
    if not value or _same_path(value, prefix):
        return None
    if environ.get("PIXI_PROJECT_ROOT") or environ.get("PIXI_ENVIRONMENT_NAME"):
        return None  # pixi's activation: said once, by the pixi leak
    hint = "conda deactivate before running this interpreter, or run through `conda run -n ENV`"
    if kind == "venv" and _same_path(value, base_prefix):
        return Leak("CONDA_PREFIX", value,
                    f"conda env {value} is activated under this venv, which was made from it: "
                    "conda's activation (PATH, LD_LIBRARY_PATH, its activate.d variables) "
                    f"applies to the venv's interpreter ({prefix}) too",
                    "conda deactivate, then activate only the venv")
    return Leak("CONDA_PREFIX", value, f"$CONDA_PREFIX names an activated conda env ({value}), "
                                       f"but this interpreter's sys.prefix is {prefix}"
                                       f"{_stack_note(value, environ)}", hint)


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
        other = "conda env" if _is_conda_env(root) else "venv"
        leaks.append(Leak(
            "LD_LIBRARY_PATH", entry, f"entry {entry} lies inside another {other} ({root})"
                                      f"{_stack_note(root, environ)}",
            "conda deactivate (or run through `conda run -n ENV`) so its libraries "
            "do not shadow this environment's; else unset LD_LIBRARY_PATH",
        ))
    leaks.extend(_path_leaks(environ, ours))
    conda_leak = _conda_prefix_leak(environ, prefix, base_prefix, kind)
    if conda_leak is not None:
        leaks.append(conda_leak)
    leaks.extend(_pixi_leaks(environ, prefix))
    value = environ.get("VIRTUAL_ENV")
    if value and not _same_path(value, prefix):
        leaks.append(Leak("VIRTUAL_ENV", value, f"$VIRTUAL_ENV names an activated venv ({value}), "
                                                f"but this interpreter's sys.prefix is {prefix}",
                          "deactivate it, or run the tests with that venv's own python"))
    environment_kind = kind
    if kind == "conda" and is_pixi_environment(prefix):
        environment_kind = "pixi"
    return IsolationFacts(kind=kind, prefix=prefix, base_kind=base_kind, leaks=tuple(leaks),
                          environment_kind=environment_kind)
