"""The documentation's examples, executed.

Each page marks its fenced code blocks with an HTML comment on the line
before (invisible in the built site):

* ``<!-- file NAME: PATH -->`` — the block is the file PATH of example NAME;
* ``<!-- run NAME: COMMAND → exit N -->`` — run COMMAND (``pytest …``,
  ``python -m pytest_envguard …``, ``envguard …``, ``python FILE``, ``tox …``, optionally
  preceded by ``VAR=value``) in a fresh folder holding the example's files
  declared so far; it must exit with N (or ``any``) and print the block's
  lines, in order, after its first ``$ COMMAND`` line (``…`` stands for
  anything);
* ``<!-- expect-file NAME: PATH -->`` — after the runs before it, PATH holds
  the block's lines, in order;
* ``<!-- lines -->`` — every line of the block is a requirement line that
  parses and evaluates, on this machine, to a verdict;
* ``<!-- not executed: WHY -->`` — shown only, with the reason.

Every block of the pages listed in OWN_PAGES carries one of them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_envguard import grammar
from pytest_envguard.checks import Evaluator
from pytest_envguard.environment import Environment, Settings
from pytest_envguard.verdicts import Status

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OWN_PAGES = ("index.md", "tutorial.md", "keys.md", "recipes.md", "json-schema.md", "comparison.md",
             "native.md", "gpu.md", "hygiene.md", "reliability.md", "adopting.md", "conda.md",
             "rehearse.md")

DIRECTIVE = re.compile(r"<!--\s*(file|run|expect-file|lines|not executed)\b\s*(.*?)\s*-->")
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
RUN = re.compile(r"(?P<command>.+?)\s*→\s*exit\s+(?P<exit>\d+|any)$")


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    kind: str | None = None  # the directive, if any
    argument: str = ""

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


@dataclass
class Example:
    page: str
    name: str
    steps: list[Block] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.name}"


def read_blocks(page: str) -> list[Block]:
    blocks: list[Block] = []
    pending: tuple[str, str] | None = None
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        directive = DIRECTIVE.fullmatch(line.strip())
        fence = FENCE.match(line)
        if directive:
            pending = (directive.group(1), directive.group(2).lstrip(":").strip())
        elif fence:
            start = index
            body: list[str] = []
            index += 1
            while index < len(lines) and lines[index].rstrip() != "```":
                body.append(lines[index])
                index += 1
            kind, argument = pending if pending else (None, "")
            blocks.append(Block(page, start + 1, fence.group(1), "\n".join(body) + "\n", kind, argument))
            pending = None
        elif line.strip():
            pending = None  # a directive applies to the block right after it
        index += 1
    return blocks


def examples() -> list[Example]:
    found: dict[tuple[str, str], Example] = {}
    for page in OWN_PAGES:
        for block in read_blocks(page):
            if block.kind in ("file", "run", "expect-file"):
                name = block.argument.split(":", 1)[0].strip()
                found.setdefault((page, name), Example(page, name)).steps.append(block)
    return list(found.values())


def requirement_blocks() -> list[Block]:
    return [block for page in OWN_PAGES for block in read_blocks(page) if block.kind == "lines"]


def to_pattern(line: str) -> str:
    """A documented output line as an fnmatch pattern: ``…`` matches anything."""
    special = {"…": "*", "*": "[*]", "?": "[?]", "[": "[[]", "]": "[]]"}
    return "".join(special.get(char, char) for char in line.rstrip())


def patterns(lines: list[str]) -> list[str]:
    return [to_pattern(line) for line in lines if line.strip() not in ("", "…")]


# -- the pages are fully covered ---------------------------------------------------------------


@pytest.mark.parametrize("page", OWN_PAGES)
def test_every_code_block_is_executed_or_says_why_not(page: str) -> None:
    bare = [block.where for block in read_blocks(page) if block.kind is None]
    assert not bare, f"code blocks without a directive: {bare}"


@pytest.mark.parametrize("page", OWN_PAGES)
def test_not_executed_blocks_give_a_reason(page: str) -> None:
    for block in read_blocks(page):
        if block.kind == "not executed":
            assert len(block.argument) > 10, block.where


def test_the_parser_reads_directives_files_and_runs() -> None:
    example = {e.id: e for e in examples()}["tutorial.md:tutorial"]
    kinds = [step.kind for step in example.steps]
    assert kinds[:2] == ["file", "file"]
    assert "run" in kinds
    assert example.steps[0].argument == "tutorial: test_model.py"
    assert "def test_tokenize" in example.steps[0].text
    assert to_pattern("SKIPPED [1] a.py:…: needs *") == "SKIPPED [[]1[]] a.py:*: needs [*]"


# -- the examples run ---------------------------------------------------------------------------

#: Variables of the developer's or CI's shell that would change what an example prints.
CLEARED = ("CI", "TOX_ENV_NAME", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_XDIST_WORKER",
           "PYTHONPATH", "CONDA_PREFIX", "COLUMNS")


def example_environ(assignments: dict[str, str]) -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items()
               if key not in CLEARED and not key.startswith("ENVGUARD_OVERRIDE_")}
    environ["COLUMNS"] = "100"
    environ.update(assignments)
    return environ


def argv_of(words: list[str]) -> list[str]:
    program, *args = words
    if program == "pytest":
        return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    if program == "tox":
        return [sys.executable, "-m", "tox", *args]
    if program == "python":
        return [sys.executable, *args]
    if program == "envguard":  # the console script, installed beside this interpreter
        return [str(Path(sys.executable).parent / "envguard"), *args]
    raise AssertionError(f"the docs run an unsupported command: {program}")


def run_step(step: Block, folder: Path) -> None:
    spec = step.argument.split(":", 1)[1].strip()
    match = RUN.fullmatch(spec)
    assert match, f"{step.where}: a run directive reads 'NAME: COMMAND → exit N', not {spec!r}"
    command = match["command"]
    shown = step.text.splitlines()
    assert shown and shown[0] == f"$ {command}", f"{step.where}: the block must start with '$ {command}'"
    words = shlex.split(command)
    assignments = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        assignments[name] = value
    result = subprocess.run(argv_of(words), cwd=folder, env=example_environ(assignments),
                            capture_output=True, text=True, timeout=180, check=False)
    output = (result.stdout + result.stderr).splitlines()
    context = f"{step.where}: {command}\n" + "\n".join(output)
    if match["exit"] != "any":
        assert result.returncode == int(match["exit"]), context
    try:
        pytest.LineMatcher(output).fnmatch_lines(patterns(shown[1:]))
    except pytest.fail.Exception:
        pytest.fail(context, pytrace=False)


@pytest.mark.parametrize("example", examples(), ids=lambda example: example.id)
def test_documented_example(example: Example, tmp_path: Path) -> None:
    runs = 0
    for step in example.steps:
        target = step.argument.split(":", 1)[1].strip()
        if step.kind == "file":
            path = tmp_path / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(step.text, encoding="utf-8")
        elif step.kind == "run":
            run_step(step, tmp_path)
            runs += 1
        else:
            written = (tmp_path / target).read_text(encoding="utf-8").splitlines()
            # junit-xml is one long line: split it at tags to match them one by one.
            if target.endswith(".xml"):
                written = re.sub(r"(<[^/])", r"\n\1", "\n".join(written)).splitlines()
            pytest.LineMatcher(written).fnmatch_lines(patterns(step.text.splitlines()))
    assert runs, f"example {example.id} declares files but never runs them"


# -- every documented requirement line works ------------------------------------------------


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory: pytest.TempPathFactory) -> Evaluator:
    root = tmp_path_factory.mktemp("docs-root")
    settings = Settings(import_timeout=30, rootdir=root)
    return Evaluator(Environment(settings=settings))


@pytest.mark.parametrize("block", requirement_blocks(), ids=lambda block: block.where)
def test_documented_requirement_lines_parse_and_evaluate(block: Block, evaluator: Evaluator) -> None:
    lines = [line for line in block.text.splitlines() if line.strip() and not line.startswith("#")]
    assert lines
    requirements = grammar.parse_lines(lines, block.where)
    verdicts = evaluator.evaluate(requirements)
    assert [verdict.line for verdict in verdicts] == [str(r) for r in requirements]
    for verdict in verdicts:
        assert isinstance(verdict.status, Status)
        assert verdict.reason, verdict


def test_keys_page_has_a_section_and_an_example_for_every_key() -> None:
    text = (DOCS / "keys.md").read_text(encoding="utf-8")
    headings = " ".join(re.findall(r"^###\s+(.*)$", text, flags=re.MULTILINE))
    documented = {str(r.key) for block in requirement_blocks() if block.page == "keys.md"
                  for r in grammar.parse_lines(block.text.splitlines())}
    for key in grammar.KEYS:
        assert f"`{key}`" in headings, f"keys.md has no section for {key!r}"
        assert key in documented, f"keys.md has no example line for {key!r}"


# -- the site's structure and the schema page ---------------------------------------------


def nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:\n", 1)[1]
    return re.findall(r"^\s+-\s+[^:]+:\s+(\S+\.md)\s*$", nav, flags=re.MULTILINE)


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    pages = nav_pages()
    on_disk = sorted(path.name for path in DOCS.glob("*.md"))
    assert set(OWN_PAGES) <= set(pages)
    assert not set(on_disk) - set(pages), "pages missing from the mkdocs.yml nav"
    assert not [page for page in pages if not (DOCS / page).is_file()], "nav entries without a page"


def schema_keys(node: object) -> set[str]:
    keys: set[str] = set()
    if isinstance(node, dict):
        for name, value in node.get("properties", {}).items():
            keys.add(name)
            keys |= schema_keys(value)
        for value in node.get("$defs", {}).values():
            keys |= schema_keys(value)
        for child in ("items", "additionalProperties"):
            keys |= schema_keys(node.get(child))
    return keys


def test_json_schema_page_documents_every_key_of_the_schema() -> None:
    schema = json.loads((ROOT / "pytest_envguard" / "schema.json").read_text(encoding="utf-8"))
    page = (DOCS / "json-schema.md").read_text(encoding="utf-8")
    missing = sorted(key for key in schema_keys(schema) if f"`{key}`" not in page and f"`environment.{key}`" not in page)
    assert not missing, f"json-schema.md does not mention {missing}"
