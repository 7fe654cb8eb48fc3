"""What every command shares: ``-o table|json|jsonl`` (``--json``), repeated options
honoured or refused, and usage errors as one line (exit 2), never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import click
import pytest
from click.testing import Result
from support import PATIENCE, commands_of

import duralog
from duralog._cli_common import Command, Group
from duralog.cli import main

HERE = Path(__file__).parent
Invoke = Callable[..., Result]
Run = Callable[..., subprocess.CompletedProcess[str]]


def one_error(result: Result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


def every_command(group: click.Group = main, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every command under ``group`` (a group's own path first)."""
    found = []
    for name, command in sorted(commands_of(group).items()):
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += every_command(command, (*path, name))
    return found


def test_every_command_is_a_duralog_command() -> None:
    """Each refuses repeated options and prints usage errors on one line."""
    assert isinstance(main, Group)
    for path in every_command():
        command: click.Command = main
        for name in path:
            assert isinstance(command, click.Group)
            command = commands_of(command)[name]
        assert isinstance(command, Command | Group), path


# -- -o table|json|jsonl ---------------------------------------------------

PRINTING = [
    ("list",),
    ("count",),
    ("queues",),
    ("show", "e-1"),
    ("history", "e-1"),
    ("inspect", "e-1"),
    ("result", "e-1"),
    ("get-event", "pub-1", "progress"),
    ("schedules",),
]


@pytest.mark.parametrize("command", PRINTING, ids=lambda c: c[0])
def test_output_formats(cli: Invoke, ops_db: str, command: tuple[str, ...]) -> None:
    table = cli("--db", ops_db, *command)
    assert table.exit_code == 0, table.output
    as_json = cli("--db", ops_db, *command, "-o", "json")
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert cli("--db", ops_db, *command, "--json").stdout == as_json.stdout
    lines = cli("--db", ops_db, *command, "-o", "jsonl").stdout.splitlines()
    objects = [json.loads(line) for line in lines]
    if isinstance(document, list):
        assert objects == document
    else:
        assert objects == [document]
    assert cli("--db", ops_db, *command, "-o", "TABLE").stdout == table.stdout


LINES = [
    ("--app", "app_ops", "replay", "--all"),
    ("verify", "--all"),
    ("tail", "--no-follow", "--since", "1h"),
]


@pytest.mark.parametrize("command", LINES, ids=["replay", "verify", "tail"])
def test_commands_that_print_as_they_go_keep_json_as_json_lines(
    cli: Invoke, ops_db: str, command: tuple[str, ...]
) -> None:
    lines = cli("--db", ops_db, *command, "--json")
    assert lines.exit_code == 0, lines.output
    assert cli("--db", ops_db, *command, "-o", "jsonl").stdout == lines.stdout
    objects = [json.loads(line) for line in lines.stdout.splitlines()]
    assert len(objects) > 1
    as_json = cli("--db", ops_db, *command, "-o", "json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == objects


def test_stats_output(cli: Invoke, ops_db: str) -> None:
    for args in (("-o", "json"), ("--json",), ("-o", "jsonl")):
        done = cli("--db", ops_db, "stats", *args)
        assert done.exit_code == 0, done.output
        (line,) = done.stdout.splitlines()
        assert {w["name"] for w in json.loads(line)["workflows"]} >= {"ops_echo", "ops_fail"}
    line = one_error(cli("--db", ops_db, "stats", "-o", "jsonl", "--prometheus"))
    assert "choose one of -o jsonl and --prometheus" in line


def test_tail_prints_one_array_only_when_it_ends(cli: Invoke, ops_db: str) -> None:
    line = one_error(cli("--db", ops_db, "tail", "-o", "json"))
    assert "--no-follow or --count" in line
    first = cli("--db", ops_db, "tail", "--since", "1h", "--count", "2", "-o", "json")
    assert first.exit_code == 0, first.output
    assert len(json.loads(first.stdout)) == 2


def test_migrate_store_confirms_as_json(cli: Invoke, ops_db: str, tmp_path: Path) -> None:
    copy = str(tmp_path / "copy.db")
    done = cli("migrate-store", "--from", ops_db, "--to", copy, "-o", "json")
    assert done.exit_code == 0, done.output
    found = json.loads(done.stdout)
    assert found["from"] == ops_db and found["to"] == copy
    assert found["copied"]["workflows"] == 11


def test_show_json_has_the_record_state_and_events(cli: Invoke, ops_db: str) -> None:
    shown = json.loads(cli("--db", ops_db, "show", "f-1", "-o", "json").stdout)
    assert shown["id"] == "f-1" and shown["status"] == "FAILED" and shown["findings"] == []
    assert shown["state"]["status"] == "FAILED"
    assert [e["seq"] for e in shown["events"]] == list(range(1, shown["last_seq"] + 1))


def test_json_with_another_output_is_refused(cli: Invoke, ops_db: str) -> None:
    line = one_error(cli("--db", ops_db, "list", "--json", "-o", "table"))
    assert "--json is -o json" in line


# -- repeated options ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--db", "a.db", "--db", "b.db", "list"), "--db"),
        (("list", "--limit", "1", "--limit", "2"), "--limit"),
        (("show", "e-1", "-o", "json", "-o", "table"), "-o/--output"),
        (("result", "e-1", "--timeout", "1", "--timeout", "2"), "--timeout"),
        (("start", "ops_echo", "--id", "a", "--id", "b"), "--id"),
    ],
)
def test_a_repeated_single_value_option_is_refused(
    cli: Invoke, ops_db: str, args: tuple[str, ...], option: str
) -> None:
    if args[0] != "--db":
        args = ("--db", ops_db, *args)
    line = one_error(cli(*args))
    assert f"{option} is given 2 times" in line


def _mixed_log(tmp_path: Path, app: ModuleType, ops: ModuleType) -> str:
    db = str(tmp_path / "mixed.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        engine.start(app.order, "o-1", 1, id="order-1").result(timeout=PATIENCE)
        engine.start(ops.echo, "a", id="echo-1").result(timeout=PATIENCE)
    return db


def test_every_app_is_imported(
    python_m: Run, app: ModuleType, ops: ModuleType, tmp_path: Path
) -> None:
    db = _mixed_log(tmp_path, app, ops)
    both = python_m("--db", db, "--app", "app_workflows", "--app", "app_ops", "replay", "--all")
    assert both.returncode == 0, both.stdout + both.stderr
    assert both.stdout.strip().splitlines()[-1] == "2 agree, 0 diverge"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURALOG_")}
    from_env = subprocess.run(
        [sys.executable, "-m", "duralog", "--db", db, "replay", "--all"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env={**env, "DURALOG_APP": "app_workflows app_ops"},
    )
    assert from_env.returncode == 0, from_env.stdout + from_env.stderr
    one = python_m("--db", db, "--app", "app_ops", "replay", "--all")
    # cli_order is not registered without app_workflows: skipped, and counted
    assert "1 skipped (no code registered for cli_order (1)" in one.stdout


def test_replay_all_takes_every_name(cli: Invoke, ops_db: str) -> None:
    names = ("--name", "ops_echo", "--name", "ops_fail")
    expected = int(cli("--db", ops_db, "count", *names).stdout)
    assert expected == 7
    done = cli("--db", ops_db, "--app", "app_ops", "replay", "--all", *names)
    assert done.exit_code == 0, done.output
    assert done.stdout.strip().splitlines()[-1] == f"{expected} agree, 0 diverge"
    line = one_error(cli("--db", ops_db, "--app", "app_ops", "replay", "e-1", *names))
    assert "--name goes with --all" in line


# -- usage errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("list", "--status", "DONE"), "'DONE' is not one of"),
        (("list", "--bogus"), "--bogus"),
        (("nope",), "No such command 'nope'"),
        (("show",), "Missing argument 'WORKFLOW_ID'"),
        (("list", "-o", "yaml"), "'yaml' is not one of"),
        (("inspect", "e-1", "--at", "x"), "'x' is not a valid integer"),
    ],
)
def test_usage_errors_are_one_line(
    cli: Invoke, ops_db: str, args: tuple[str, ...], expected: str
) -> None:
    line = one_error(cli("--db", ops_db, *args))
    assert expected in line and "--help" in line


def test_a_worker_with_no_step_threads_is_refused(cli: Invoke, tmp_path: Path) -> None:
    # With 0 threads no sync step could ever run: the worker would hang without a word.
    done = cli("--db", str(tmp_path / "x.db"), "worker", "--concurrency", "0")
    assert done.exit_code == 2
    assert "--concurrency" in done.stderr and "x>=1" in done.stderr
