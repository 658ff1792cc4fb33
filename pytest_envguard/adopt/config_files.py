"""The suggested contract as a pytest config block, and merged into a config file.

Both forms put each line's reason on a comment line of its own, which pytest's
ini reader, ``configparser`` (what ``python -m pytest_envguard --config``
reads) and TOML all skip, so the block pastes as it is.

Writing into a file edits text, never re-serialises it: the ``envguard``
value gets the new lines (those whose key and argument it does not have
yet) at its end, or the key is added at the end of its table, or the table at
the end of the file. The result is parsed again and compared with the
original; when anything but the ``envguard`` value differs, nothing is
written.
"""

from __future__ import annotations

import configparser
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_envguard.adopt.suggest import Candidate, Dropped, Suggestion

HEADER = "# envguard: the contract `python -m pytest_envguard --suggest` derived on this machine"


class ConfigWriteError(ValueError):
    """The file cannot be merged into safely; the message says why."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def comment_lines(entry: Candidate | Dropped) -> list[str]:
    """A line and its reason, or a left-out line as a comment."""
    if isinstance(entry, Candidate):
        return [f"# {_one_line(entry.why)}", entry.line]
    return [f"# left out ({_one_line(entry.verdict)}): {entry.line} — {_one_line(entry.why)}"]


def toml_string(text: str) -> str:
    """A TOML basic string."""
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def value_lines(entries: Sequence[Candidate | Dropped], form: str, indent: str = "    ") -> list[str]:
    """The lines of an ``envguard`` value (without the key), comments included; lines
    derived for the same reason (an ISA level's flags) share its comment."""
    lines = []
    previous = None
    for entry in entries:
        shared = isinstance(entry, Candidate) and isinstance(previous, Candidate) \
            and previous.why == entry.why
        previous = entry
        for line in comment_lines(entry)[1 if shared else 0:]:
            shown = line if line.startswith("#") or form == "ini" else toml_string(line) + ","
            lines.append(indent + shown)
    return lines


def render(suggestion: Suggestion, form: str, table: str | None = None) -> str:
    """The block: ``form`` is ``ini`` (``[pytest]``) or ``toml``
    (``[tool.pytest.ini_options]`` unless ``table`` names another)."""
    if form == "ini":
        body = [f"[{table or 'pytest'}]", "envguard =", *value_lines(suggestion.entries, "ini")]
    else:
        body = [f"[{table or 'tool.pytest.ini_options'}]", "envguard = [",
                *value_lines(suggestion.entries, "toml"), "]"]
    return "\n".join([HEADER, *body]) + "\n"


# -- which file, which table ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    form: str  # "ini" or "toml"
    table: str  # the section or table the contract goes in


def target_of(path: Path) -> Target:
    """Where a pytest config file keeps its options (the names pytest reads)."""
    name = path.name
    if name == "pyproject.toml":
        return Target("toml", "tool.pytest.ini_options")
    if name in ("pytest.toml", ".pytest.toml"):
        return Target("toml", "pytest")
    if name.endswith(".toml"):
        raise ConfigWriteError(f"{path}: pytest reads TOML options only from pyproject.toml, "
                               "pytest.toml or .pytest.toml")
    if name == "setup.cfg":
        return Target("ini", "tool:pytest")
    return Target("ini", "pytest")


def _key(line: str) -> tuple[str, str | None]:
    from pytest_envguard.grammar import RequirementError, parse_line

    try:
        requirement = parse_line(line)
    except RequirementError:
        return (line.strip(), None)
    return (requirement.key, requirement.argument)


def new_entries(suggestion: Suggestion, existing: Sequence[str]) -> tuple[
        list[Candidate | Dropped], list[str]]:
    """The suggested entries the file does not have yet, and notes on the ones it has:
    a line of the same key and argument already there is the user's, and stays."""
    have = {_key(line): line for line in existing if line.strip() and not line.startswith("#")}
    entries: list[Candidate | Dropped] = []
    notes = []
    for entry in suggestion.entries:
        if isinstance(entry, Candidate) and _key(entry.line) in have:
            kept = have[_key(entry.line)]
            if kept.strip() != entry.line:
                notes.append(f"kept {kept.strip()!r} (suggested {entry.line!r})")
            continue
        entries.append(entry)
    return entries, notes


# -- merging --------------------------------------------------------------------------------


def merge(path: Path, suggestion: Suggestion) -> tuple[str, str, list[str]]:
    """(old text, new text, notes): the file with the suggestion merged in. Raises
    :class:`ConfigWriteError` when the file cannot be read or merged safely."""
    target = target_of(path)
    try:
        raw = path.read_bytes() if path.exists() else b""
    except OSError as error:
        raise ConfigWriteError(f"{path}: {error}") from None
    try:
        old = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigWriteError(f"{path}: not UTF-8 text; left as it is") from None
    newline = "\r\n" if "\r\n" in old else "\n"
    text = old.replace("\r\n", "\n")
    if target.form == "toml":
        new, notes = _merge_toml(text, target.table, suggestion, str(path))
    else:
        new, notes = _merge_ini(text, target.table, suggestion, str(path))
    return old, new.replace("\n", newline), notes


def _ensure_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


# -- ini ---------------------------------------------------------------------------------------

_SECTION = re.compile(r"\[(?P<name>[^\]]+)\]")


def _ini_parse(text: str, where: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=where)
    except configparser.Error as error:
        raise ConfigWriteError(f"{where}: {error}") from None
    return parser


def _ini_snapshot(parser: configparser.ConfigParser, section: str) -> dict[str, dict[str, str]]:
    """Every option but ours (a section holding only ours counts as absent)."""
    snapshot = {name: {key: value for key, value in parser[name].items()
                       if not (name == section and key == "envguard")}
                for name in parser.sections()}
    if not snapshot.get(section, True):
        del snapshot[section]
    return snapshot


def _merge_ini(text: str, section: str, suggestion: Suggestion, where: str) -> tuple[str, list[str]]:
    before = _ini_parse(text, where)
    existing: list[str] = []
    if before.has_section(section) and before.has_option(section, "envguard"):
        existing = [line.strip() for line in before.get(section, "envguard").splitlines()]
    entries, notes = new_entries(suggestion, existing)
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    start = next((index for index, line in enumerate(lines)
                  if (match := _SECTION.match(line)) and match["name"].strip() == section), None)
    added = value_lines(entries, "ini")
    if start is None:
        block = render(Suggestion(tuple(entries)), "ini", section)
        new = _ensure_newline(text) + ("\n" if text.strip() else "") + block
    else:
        end = next((index for index in range(start + 1, len(lines)) if _SECTION.match(lines[index])),
                   len(lines))
        key = next((index for index in range(start + 1, end)
                    if re.match(r"envguard\s*[=:]", lines[index], re.IGNORECASE)), None)
        if key is not None:
            last = key
            for index in range(key + 1, end):
                if lines[index][:1] in (" ", "\t") and lines[index].strip():
                    last = index
                elif lines[index].strip():
                    break
            lines[last + 1:last + 1] = added
        else:
            last = max((index for index in range(start, end) if lines[index].strip()), default=start)
            lines[last + 1:last + 1] = ["envguard =", *added]
        new = "\n".join(lines) + "\n"
    after = _ini_parse(new, where)
    wanted = [*existing, *(entry.line for entry in entries if isinstance(entry, Candidate))]
    got = [line.strip() for line in after.get(section, "envguard", fallback="").splitlines()]
    if _ini_snapshot(before, section) != _ini_snapshot(after, section) or \
            [line for line in got if line] != [line for line in wanted if line]:
        raise ConfigWriteError(f"{where}: merging would change more than the envguard lines; "
                               "nothing written (paste the block by hand)")
    return new, notes


# -- toml ---------------------------------------------------------------------------------------


def _toml_parse(text: str, where: str) -> dict[str, object]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
    try:
        document: dict[str, object] = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as error:
        raise ConfigWriteError(f"{where}: {error}") from None
    return document


def _table_of(document: dict[str, object], table: str) -> dict[str, object] | None:
    node: object = document
    for part in table.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


class _TomlScanner:
    """Just enough TOML lexing to find statement starts, table headers and the end of
    a value, past strings, comments and nested arrays."""

    def __init__(self, text: str) -> None:
        self.text = text

    def skip_string(self, position: int) -> int:
        text = self.text
        for quote in ('"""', "'''"):
            if text.startswith(quote, position):
                end = text.find(quote, position + 3)
                while end != -1 and quote == '"""' and _escaped(text, end):
                    end = text.find(quote, end + 1)
                if end == -1:
                    raise ValueError("unterminated string")
                end += 3
                while text.startswith(quote[0], end):  # up to two quotes may end the content
                    end += 1
                return end
        quote = text[position]
        index = position + 1
        while index < len(text) and text[index] != "\n":
            if quote == '"' and text[index] == "\\":
                index += 2
                continue
            if text[index] == quote:
                return index + 1
            index += 1
        raise ValueError("unterminated string")

    def value_end(self, position: int) -> tuple[int, int]:
        """(end of the value starting at ``position``, end of its last item or token)."""
        text = self.text
        if text[position] in "\"'":
            end = self.skip_string(position)
            return end, end
        if text[position] != "[":
            end = position
            while end < len(text) and text[end] not in "\n#":
                end += 1
            return len(text[:end].rstrip()), len(text[:end].rstrip())
        depth = 0
        index = position
        last = position + 1
        while index < len(text):
            char = text[index]
            if char in "\"'":
                index = self.skip_string(index)
                last = index
                continue
            if char == "#":
                index = text.find("\n", index)
                if index == -1:
                    raise ValueError("unterminated array")
                continue
            if char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
                if depth == 0:
                    return index + 1, last
                last = index + 1
            elif not char.isspace():
                last = index + 1
            index += 1
        raise ValueError("unterminated array")

    def statements(self) -> list[tuple[int, int]]:
        """(start, end) of every top-level line: headers and key = value statements."""
        text = self.text
        result = []
        index = 0
        while index < len(text):
            line_end = text.find("\n", index)
            line_end = len(text) if line_end == -1 else line_end
            stripped = text[index:line_end].strip()
            if not stripped or stripped.startswith(("#", "[")):
                result.append((index, line_end))
                index = line_end + 1
                continue
            equals = _key_end(text, index, line_end)
            if equals is None:
                result.append((index, line_end))
                index = line_end + 1
                continue
            value = equals + 1
            while value < len(text) and text[value] in " \t":
                value += 1
            end, _ = self.value_end(value)
            next_line = text.find("\n", end)
            next_line = len(text) if next_line == -1 else next_line
            result.append((index, next_line))
            index = next_line + 1
        return result


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and text[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _key_end(text: str, start: int, line_end: int) -> int | None:
    """The position of the ``=`` of a key/value statement starting at ``start``."""
    index = start
    while index < line_end:
        char = text[index]
        if char in "\"'":
            close = text.find(char, index + 1)
            if close == -1 or close > line_end:
                return None
            index = close + 1
            continue
        if char == "=":
            return index
        index += 1
    return None


_HEADER = re.compile(r"\s*\[(?!\[)\s*(?P<name>[^\]]+?)\s*\]\s*(#.*)?$")
_ARRAY_HEADER = re.compile(r"\s*\[\[")
_ENVGUARD_KEY = re.compile(r"\s*(envguard|\"envguard\"|'envguard')\s*=")


def _header_name(line: str) -> str | None:
    match = _HEADER.match(line)
    if not match:
        return None
    return ".".join(part.strip().strip("\"'") for part in match["name"].split("."))


def _merge_toml(text: str, table: str, suggestion: Suggestion, where: str) -> tuple[str, list[str]]:
    before = _toml_parse(text, where)
    target = _table_of(before, table)
    if target is None and table == "tool.pytest.ini_options":
        native = _table_of(before, "tool.pytest")
        if native is not None and "ini_options" not in native and native:
            table, target = "tool.pytest", native  # pytest 9's native [tool.pytest] table
    current = target.get("envguard") if target is not None else None
    from pytest_envguard.option_table import OptionError
    from pytest_envguard.options import as_lines

    try:
        existing = as_lines(current, f"{where} [{table}] envguard") if current is not None else []
    except OptionError as error:
        raise ConfigWriteError(str(error)) from None
    entries, notes = new_entries(suggestion, existing)
    scanner = _TomlScanner(text)
    try:
        statements = scanner.statements()
    except ValueError as error:
        raise ConfigWriteError(f"{where}: {error}") from None
    header = None
    table_end = None
    for start, end in statements:
        line = text[start:end]
        name = _header_name(line)
        if name is not None or _ARRAY_HEADER.match(line):
            if header is not None and table_end is None:
                table_end = start
            if name == table:
                header = (start, end)
    added = value_lines(entries, "toml")
    if header is None:
        if target is not None:
            raise ConfigWriteError(f"{where}: [{table}] is written in a form this merge does "
                                   "not edit (dotted keys or an inline table); nothing written")
        block = render(Suggestion(tuple(entries)), "toml", table)
        new = _ensure_newline(text) + ("\n" if text.strip() else "") + block
    else:
        limit = table_end if table_end is not None else len(text)
        inside = [(start, end) for start, end in statements if header[1] < start < limit]
        key = next(((start, end) for start, end in inside
                    if _ENVGUARD_KEY.match(text[start:end])), None)
        if key is None:
            content = [end for start, end in inside
                       if text[start:end].strip() and not text[start:end].lstrip().startswith("#")]
            at = (content[-1] if content else header[1])
            insertion = "\n" + "\n".join(["envguard = [", *added, "]"])
            new = text[:at] + insertion + text[at:]
        else:
            new = _extend_toml_value(text, key, existing, entries, added, scanner)
    after = _toml_parse(new, where)
    _check_toml(before, after, table, existing, entries, where)
    return new, notes


def _extend_toml_value(text: str, key: tuple[int, int], existing: list[str],
                       entries: Sequence[Candidate | Dropped], added: list[str],
                       scanner: _TomlScanner) -> str:
    equals = text.index("=", key[0])
    value = equals + 1
    while text[value] in " \t":
        value += 1
    end, last = scanner.value_end(value)
    if not entries:
        return text
    if text[value] == "[" and "\n" in text[last:end]:
        # A multi-line array: new items go before the line of its closing bracket.
        items = text[value + 1:last].strip()
        comma = "," if items and not items.endswith(",") else ""
        closing_line = text.rfind("\n", 0, end - 1) + 1
        insertion = "\n".join(added) + "\n"
        return text[:last] + comma + text[last:closing_line] + insertion + text[closing_line:]
    # A one-line array or a string: rewritten as a multi-line array of the same lines.
    kept = [f"    {toml_string(line)}," for line in existing]
    replacement = "\n".join(["[", *kept, *added, "]"])
    return text[:value] + replacement + text[end:]


def _check_toml(before: dict[str, object], after: dict[str, object], table: str,
                existing: list[str], entries: Sequence[Candidate | Dropped], where: str) -> None:
    from pytest_envguard.options import as_lines

    def without_envguard(document: dict[str, object]) -> dict[str, object]:
        import copy

        document = copy.deepcopy(document)
        target = _table_of(document, table)
        if target is not None:
            target.pop("envguard", None)
            if not target:
                parts = table.split(".")
                parent = _table_of(document, ".".join(parts[:-1])) if len(parts) > 1 else document
                if parent is not None:
                    parent.pop(parts[-1], None)
                    _prune(document)
        return document

    target = _table_of(after, table)
    got = as_lines(target.get("envguard", []), where) if target is not None else []
    wanted = [*existing, *(entry.line for entry in entries if isinstance(entry, Candidate))]
    if without_envguard(before) != without_envguard(after) or got != wanted:
        raise ConfigWriteError(f"{where}: merging would change more than the envguard lines; "
                               "nothing written (paste the block by hand)")


def _prune(node: dict[str, object]) -> None:
    for key in [key for key, value in node.items() if isinstance(value, dict)]:
        child = node[key]
        assert isinstance(child, dict)
        _prune(child)
        if not child:
            del node[key]
