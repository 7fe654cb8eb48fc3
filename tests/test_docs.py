"""The README and docs/ say what runs: every snippet runs or type-checks, every
``duralog`` command line they show parses, and the debugging walk-through works.

How a snippet is marked, and how dev.py type-checks each one: docs/snippets/extract.py.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest

from duralog.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent


def load_extract() -> ModuleType:
    path = ROOT / "docs" / "snippets" / "extract.py"
    spec = importlib.util.spec_from_file_location("duralog_docs_extract", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


extract = load_extract()
SNIPPETS = extract.snippets(ROOT)
PYTHON = [s for s in SNIPPETS if s.lang == "python"]
PROGRAMS = [s for s in PYTHON if not s.fragment]


def test_every_python_snippet_compiles_as_a_program_or_in_its_context() -> None:
    assert len(PYTHON) >= 15  # the README's and docs/' snippets were found
    for snippet in PYTHON:
        compile(extract.module_text(ROOT, snippet), snippet.where, "exec")


@pytest.mark.parametrize("snippet", PROGRAMS, ids=[s.where for s in PROGRAMS])
def test_program_snippets_run_as_written(snippet: Any, tmp_path: Path) -> None:
    """Each program runs in an empty folder, as a reader would paste it."""
    (tmp_path / "snippet.py").write_text(snippet.code)
    done = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def command_lines() -> list[tuple[str, list[str]]]:
    """The ``duralog`` command lines of every console block: (where, arguments)."""
    found = []
    for snippet in SNIPPETS:
        if snippet.lang != "console":
            continue
        lines = snippet.code.splitlines()
        prompted = any(line.startswith("$ ") for line in lines)
        for offset, line in enumerate(lines):
            if prompted:
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:]
            words = shlex.split(line, comments=True)
            while words and "=" in words[0] and not words[0].startswith("-"):
                words.pop(0)  # VAR=value before the command
            if "|" in words:
                words = words[: words.index("|")]
            if words[:1] == ["duralog"]:
                found.append((f"{snippet.source}:{snippet.line + offset}", words[1:]))
    return found


COMMANDS = command_lines()


def parse(args: list[str]) -> None:
    """Parse a command line as ``duralog`` would, without running anything or converting
    values (a file it names need not exist here): an unknown command or option, or an
    argument too many, raises ``click.UsageError``."""
    command: click.Command = cli
    # With each command's context settings, as click makes them: a context without
    # them (`-h` for help) would leave the commands a help option of the wrong names,
    # which click keeps and later help texts show.
    ctx = click.Context(cli, info_name="duralog", **cli.context_settings)
    while True:
        _, rest, _ = command.make_parser(ctx).parse_args(list(args))
        if not isinstance(command, click.Group):
            if rest:
                raise click.UsageError(f"unexpected arguments {rest}")
            return
        if not rest:
            return
        name, found, args = command.resolve_command(ctx, rest)
        assert found is not None
        command = found
        ctx = click.Context(command, parent=ctx, info_name=name, **command.context_settings)


def test_the_docs_show_duralog_command_lines() -> None:
    assert len(COMMANDS) >= 25


@pytest.mark.parametrize("where,args", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_every_duralog_command_line_in_the_docs_parses(where: str, args: list[str]) -> None:
    try:
        parse(args)
    except click.UsageError as exc:
        pytest.fail(f"{where}: duralog {shlex.join(args)}: {exc.format_message()}")


def duralog(*args: str, cwd: Path, code: int = 0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "duralog", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout + done.stderr


def fragment(after: str) -> str:
    """The python fragment of docs/debugging.md that follows the text ``after``."""
    text = (ROOT / "docs" / "debugging.md").read_text()
    line = text[: text.index(after)].count("\n") + 1
    block = next(s for s in extract.parse(text, "docs/debugging.md") if s.line > line)
    assert block.lang == "python"
    return str(block.code)


def test_the_debugging_walk_through(tmp_path: Path) -> None:
    """docs/debugging.md on examples/checkout.py, from the demo to the patched fix."""
    (tmp_path / "examples").mkdir()
    example = tmp_path / "examples" / "checkout.py"
    shutil.copy(ROOT / "examples" / "checkout.py", example)
    app = ["--db", "shop.db", "--app", "examples.checkout"]
    demo = subprocess.run(
        [sys.executable, "examples/checkout.py", "shop.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "order-1001" in duralog("--db", "shop.db", "list", cwd=tmp_path)
    assert "COMPLETED" in duralog("--db", "shop.db", "show", "order-1001", cwd=tmp_path)
    assert "at seq    7" in duralog(
        "--db", "shop.db", "inspect", "order-1001", "--at", "7", cwd=tmp_path
    )
    duralog("--db", "shop.db", "export", "order-1001", "-o", "order-1001.json", cwd=tmp_path)
    agrees = "order-1001 (checkout): agrees (replayed 16 of 16 events, finished)"
    replay = ["--app", "examples.checkout", "replay", "--file", "order-1001.json"]
    assert agrees in duralog(*replay, cwd=tmp_path)

    # 4. the two calls swapped: the recorded history diverges at seq 2
    original = example.read_text()
    calls = (
        "    slots = await reserve(order_id, items)\n"
        "    receipt = await charge(order_id, cents)  # a Receipt, in a live run and on replay\n"
    )
    assert calls in original, "docs/debugging.md changes these two lines of checkout"
    swapped = fragment("## 4. Find a divergence")
    example.write_text(original.replace(calls, _indent(swapped)))
    out = duralog(*replay, cwd=tmp_path, code=1)
    assert "order-1001 (checkout): DIVERGES at seq 2" in out
    assert "recorded:  StepScheduled reserve" in out
    assert "attempted: StepScheduled charge" in out

    # 5. behind duralog.patched: the old history replays again
    patched = fragment("## 5. Fix it with `duralog.patched`")
    example.write_text(original.replace(calls, _indent(patched)))
    assert agrees in duralog(*replay, cwd=tmp_path)
    assert "agrees" in duralog(*app, "replay", "--all", cwd=tmp_path)
    duralog("--db", "shop.db", "verify", "--all", cwd=tmp_path)


def _indent(code: str) -> str:
    return "".join(f"    {line}\n" if line else "\n" for line in code.splitlines())


def test_the_quick_start_says_what_the_suite_needs() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start") : readme.index("## A workflow")]
    default = re.search(
        r'"DURALOG_TEST_POSTGRES", "([^"]+)"', (ROOT / "tests" / "conftest.py").read_text()
    )
    assert default and f"`{default[1]}`" in quick_start
    assert "skipped" in quick_start and "`--app`" in quick_start
    assert re.search(r"must not\s+start an `Engine`", quick_start)
    assert re.search(r"`python3 dev.py test` takes about \d", quick_start)


USER_DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    ROOT / "benchmarks" / "README.md",
]


def test_the_documents_speak_to_users() -> None:
    """No wording about the project's own work items: a user never saw them."""
    leftovers = re.compile(
        r"\b(the|an?|this|that)( \w+)? issue\b|\bissue's\b|issue was silent", re.I
    )
    for path in USER_DOCUMENTS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found = leftovers.search(line)
            assert not found, f"{path.relative_to(ROOT)}:{number}: {found[0]!r}"


def test_the_api_reference_lists_every_public_name() -> None:
    import duralog

    page = (ROOT / "docs" / "reference.md").read_text()
    listed = set(re.findall(r"^::: duralog\.(\w+)$", page, re.MULTILINE))
    public = {*duralog.__all__, "map"} - {"__version__"}
    assert listed - {"errors", "testing", "replay"} == public
