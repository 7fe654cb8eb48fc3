"""The help of ``duralog`` and of each of its commands, pinned by a snapshot; and the
README's CLI table, checked against it.

After a deliberate change to a help text, rewrite the snapshot and review its diff:

    DURALOG_UPDATE_HELP=1 .venv/bin/python -m pytest tests/cli/test_help.py
"""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import click
from click.testing import CliRunner
from support import commands_of

from duralog.cli import _COMMANDS, main

HERE = Path(__file__).parent
SNAPSHOT = HERE / "help.txt"
README = HERE.parent.parent / "README.md"


def command_paths(group: click.Group = main, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """``()`` for ``duralog`` itself, then the path of every command, groups' first."""
    found = [path]
    for name, command in sorted(commands_of(group).items()):
        if isinstance(command, click.Group):
            found += command_paths(command, (*path, name))
        else:
            found.append((*path, name))
    return found


def help_text(path: tuple[str, ...]) -> str:
    runner = CliRunner()
    env: dict[str, str | None] = {"DURALOG_DB": None, "DURALOG_APP": None, "COLUMNS": "80"}
    result = runner.invoke(main, [*path, "--help"], env=env, prog_name="duralog", terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.stdout


def everything() -> str:
    text = "".join(
        f"=== duralog {' '.join(path)} --help\n{help_text(path)}\n".replace(
            "duralog  --help", "duralog --help"
        )
        for path in command_paths()
    )
    # click 8.3.1, the lowest version allowed, writes a group that runs without a
    # subcommand (`queues`, `schedules`) as if one were required; later ones do not.
    # One snapshot serves both.
    return re.sub(
        r"Usage: duralog (\S+) \[OPTIONS\] COMMAND \[ARGS\]",
        r"Usage: duralog \1 [OPTIONS] [COMMAND] [ARGS]",
        text,
    )


def test_help_matches_the_snapshot() -> None:
    text = everything()
    if os.environ.get("DURALOG_UPDATE_HELP"):
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text(), (
        "the help changed: if that was meant, rewrite tests/cli/help.txt with "
        "DURALOG_UPDATE_HELP=1 and review its diff"
    )


def test_every_command_has_an_example() -> None:
    for path in command_paths()[1:]:
        text = help_text(path)
        assert "Example" in text, path


def test_the_readme_table_lists_every_command() -> None:
    section = README.read_text().split("<!-- cli-table:", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    in_readme = {
        name for row in rows for name in re.findall(r"`([a-z][a-z-]*)[ `]", row.split(" | ")[0])
    }
    commands = set(commands_of(main))
    assert in_readme == commands, (
        f"missing from the README: {sorted(commands - in_readme)}; "
        f"not commands: {sorted(in_readme - commands)}"
    )


def test_the_summaries_duralog_help_lists_are_the_commands_own() -> None:
    """``duralog --help`` lists the commands without importing them (``cli._COMMANDS``)."""
    for name, (_, _, summary) in _COMMANDS.items():
        command = commands_of(main)[name]
        assert command.help is not None, name
        first = inspect.cleandoc(command.help).split("\n\n")[0]
        assert summary.split() == first.split(), name


def test_shell_completion_completes_commands_and_statuses() -> None:
    # What the README's `eval "$(_DURALOG_COMPLETE=bash_source duralog)"` line asks for.
    def complete(words: str) -> list[str]:
        env = {
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
            "_DURALOG_COMPLETE": "bash_complete",
        }
        result = CliRunner().invoke(main, [], env=env, prog_name="duralog")
        return [line.partition(",")[2] for line in result.stdout.splitlines()]

    assert complete("duralog te") == ["terminate"]
    assert "fork" in complete("duralog f")
    # (click 8.3.1 offers a case-insensitive choice in its own case, later ones lower)
    statuses = [s.lower() for s in complete("duralog list --status ")]
    assert statuses[:3] == ["pending", "running", "paused"]
    source = CliRunner().invoke(
        main, [], env={"_DURALOG_COMPLETE": "bash_source"}, prog_name="duralog"
    )
    assert "_duralog_completion" in source.stdout
