"""Adoption in one command: ``--suggest`` and ``--migrate`` (DESIGN.md §3).

* :mod:`.suggest` derives a contract from the installed binaries and keeps only
  the lines met on this machine; :mod:`.config_files` prints it as a pytest
  config block or merges it into a config file.
* :mod:`.migrate` finds the skip conditions of a test suite with ``ast`` and
  rewrites those a ``requires`` line expresses.

Outer layer: it uses probes, checks and options; nothing but ``__main__``
imports it.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

EXIT_OK = 0
EXIT_REFUSED = 1  # --migrate: a file could not be read or parsed, and was left as it is
EXIT_USAGE = 4


def unified_diff(path: str, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        f"a/{path}", f"b/{path}"))


def run_suggest(form: str | None, write: Path | None, *, cwd: Path,
                out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``--suggest [--format ini|toml] [--write FILE]``."""
    out, err = out or sys.stdout, err or sys.stderr
    from pytest_envguard.adopt import config_files
    from pytest_envguard.adopt.suggest import suggest
    from pytest_envguard.environment import Environment, Settings

    target = None
    if write is not None:
        try:
            target = config_files.target_of(write)
        except config_files.ConfigWriteError as error:
            print(f"envguard: {error}", file=err)
            return EXIT_USAGE
        if form is not None and form != target.form:
            print(f"envguard: --format {form} does not fit {write.name}, which is {target.form}",
                  file=err)
            return EXIT_USAGE
    suggestion = suggest(Environment(settings=Settings(rootdir=cwd)), cwd)
    if write is None or target is None:
        out.write(config_files.render(suggestion, form or "ini"))
        return EXIT_OK
    try:
        old, new, notes = config_files.merge(write, suggestion)
    except config_files.ConfigWriteError as error:
        print(f"envguard: {error}", file=err)
        out.write(config_files.render(suggestion, target.form, target.table))
        return EXIT_USAGE
    for note in notes:
        print(f"envguard: {write}: {note}", file=err)
    if new == old:
        print(f"envguard: {write} already has every suggested line", file=err)
        return EXIT_OK
    try:
        write.write_bytes(new.encode("utf-8"))
    except OSError as error:
        print(f"envguard: could not write {write}: {error}", file=err)
        return EXIT_USAGE
    out.write(unified_diff(str(write), old, new))
    return EXIT_OK


def run_migrate(paths: Sequence[Path], write: bool, *, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    """``--migrate PATH… [--write]``."""
    out, err = out or sys.stdout, err or sys.stderr
    from pytest_envguard.adopt import migrate

    missing = [path for path in paths if not path.exists()]
    if missing:
        print(f"envguard: no such file or directory: {', '.join(map(str, missing))}", file=err)
        return EXIT_USAGE
    report = migrate.migrate(migrate.test_files(paths), write=write)
    out.write(report.render())
    return EXIT_REFUSED if report.refused else EXIT_OK
