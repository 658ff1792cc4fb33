"""Every option the plugin and the CLI take, declared once: name, kind, default and help
(:data:`INI_OPTIONS`), the :class:`Options` they resolve into, the exit statuses.

The one options module the plugin imports in every run: resolving the values
(:mod:`pytest_envguard.options`) is imported only when one of them is set.
Knows no pytest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from pytest_envguard.environment import LockExtras, Settings
    from pytest_envguard.grammar import Requirement
    from pytest_envguard.targets import Target

#: Exit statuses (DESIGN.md §3), the same in pytest and in ``python -m pytest_envguard``.
EXIT_OK = 0
EXIT_USAGE = 4
EXIT_CONTRACT_UNMET = 6

if TYPE_CHECKING:
    StrictMode = Literal["false", "true", "ci"]
    XdistController = Literal["check", "skip"]
    XdistGpus = Literal["off", "auto"] | int

STRICT_MODES: tuple[StrictMode, ...] = ("false", "true", "ci")
LOCK_EXTRAS: tuple[LockExtras, ...] = ("report", "ignore", "fail")  # (Settings.lock_extras)
XDIST_CONTROLLER: tuple[XdistController, ...] = ("check", "skip")


class IniOption:
    """One ini option: its name, kind (how it is validated), default and help. (A plain
    class: the plugin imports this module in every run, and a dataclass costs more to
    define than the whole module otherwise does.)"""

    __slots__ = ("choices", "default", "help", "kind", "name")

    def __init__(self, name: str,
                 kind: Literal["lines", "choice", "seconds", "bool", "gpus", "path"],
                 default: object, help: str, choices: tuple[str, ...] = ()) -> None:
        self.name = name
        self.kind = kind
        self.default = default
        self.help = help
        self.choices = choices


INI_OPTIONS: tuple[IniOption, ...] = (
    IniOption("envguard", "lines", [], "the session contract: one requirement line per line"),
    IniOption("envguard_strict", "choice", "false",
              "false (skip), true (fail) or ci (fail when $CI is set) for unmet markers",
              STRICT_MODES),
    IniOption("envguard_gpu_timeout", "seconds", "10", "seconds NVML may take to answer (default 10)"),
    IniOption("envguard_import_timeout", "seconds", "60",
              "seconds an 'import MODULE' check may take in its subprocess (default 60)"),
    IniOption("envguard_lock_extras", "choice", "report",
              "installed packages missing from a 'lock' file: report (default), ignore or fail",
              LOCK_EXTRAS),
    IniOption("envguard_junit_properties", "bool", False,
              "add the environment snapshot to the junit-xml report as testsuite properties"),
    IniOption("envguard_xdist_gpus", "gpus", "off",
              "under pytest-xdist, give each worker its own share of the visible GPUs: off "
              "(default), auto, or a number of GPUs per worker"),
    IniOption("envguard_xdist_controller", "choice", "check",
              "under pytest-xdist, whether the controller checks the session contract too: check "
              "(default) or skip (leave it to the workers, e.g. on remote --tx hosts)",
              XDIST_CONTROLLER),
    IniOption("envguard_tox_python", "bool", False,
              "under tox, add 'python ==X.Y.*' to the contract from the env's pyXY factor"),
    IniOption("envguard_show_env_values", "bool", False,
              "show the values of variables in 'env NAME=value' verdicts (default false: only "
              "whether each is set and matches, since a value may be a secret)"),
    IniOption("envguard_targets", "path", "",
              "a TOML file of [profile.NAME] tables that --envguard-target NAME may name "
              "(relative to the config file)"),
    IniOption("envguard_conda_hashes", "bool", False,
              "in a conda prefix, 'consistent' hashes every file conda linked (default false: "
              "only those whose size or mtime changed)"),
)
INI_NAMES = frozenset(option.name for option in INI_OPTIONS)


class OptionError(ValueError):
    """An option value that is not valid; the message names where it came from."""


class Options(NamedTuple):
    """Everything the plugin and the CLI were told, validated (immutable)."""

    contract: tuple[Requirement, ...] = ()
    strict: StrictMode = "false"
    gpu_timeout: float = 10.0
    import_timeout: float = 60.0
    lock_extras: LockExtras = "report"
    junit_properties: bool = False
    xdist_gpus: XdistGpus = "off"
    xdist_controller: XdistController = "check"
    tox_python: bool = False
    show_env_values: bool = False
    conda_hashes: bool = False
    strict_flag: bool = False  # --envguard-strict was given (it wins over envguard_strict)
    target: Target | None = None  # --envguard-target: judge as on this machine

    def settings(self, *, cache_dir: Path | None, rootdir: Path | None) -> Settings:
        from pytest_envguard.environment import Settings

        return Settings(cache_dir=cache_dir, gpu_timeout=self.gpu_timeout,
                        import_timeout=self.import_timeout, rootdir=rootdir,
                        lock_extras=self.lock_extras, show_env_values=self.show_env_values,
                        conda_hashes=self.conda_hashes)

    def strict_now(self, environ: Mapping[str, str]) -> bool:
        """Whether unmet markers fail here: always, never, or when ``$CI`` says so."""
        return self.strict == "true" or (self.strict == "ci" and is_ci(environ.get("CI")))

    def strict_explanation(self, environ: Mapping[str, str]) -> str:
        """In which mode unmet markers were enforced, and why: ``markers skip:
        envguard_strict = ci and CI is unset`` (under tox, ``CI`` reaches the tests
        only through ``pass_env``). A marker's own ``strict=`` wins over it."""
        verb = "fail" if self.strict_now(environ) else "skip"
        if self.strict_flag:
            why = "--envguard-strict"
        elif self.strict != "ci":
            why = f"envguard_strict = {self.strict}"
        else:
            ci = environ.get("CI")
            state = ("unset" if ci is None else f"set to {ci!r}, which counts as not CI"
                     if not is_ci(ci) else f"set ({ci!r})")
            why = f"envguard_strict = ci and CI is {state}"
        return f"unmet markers {verb}: {why} (a marker's own strict= wins)"


def is_ci(value: str | None) -> bool:
    """``CI`` set to a non-empty value other than ``0``/``false`` (DESIGN.md §3)."""
    return value is not None and value.strip().lower() not in ("", "0", "false")
