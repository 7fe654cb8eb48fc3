"""Damaged storage and hostile arguments never end in a traceback.

Each case used to end in one (``sqlite3.DatabaseError``, ``ValueError``,
``TypeError``, ``msgspec.ValidationError``, ``RecursionError``, ``IntegrityError``,
``OSError``); each now gives one line that says what and where, and exit 2. A
worker whose database file is deleted or replaced stops with a clear error.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import Result
from support import wait_for

from duralog.store.sqlite import SQLiteStore

HERE = Path(__file__).parent
Invoke = Callable[..., Result]
APP = ("--app", "app_workflows")


def copy_of(shop_db: str, tmp_path: Path) -> str:
    db = str(tmp_path / "copy.db")
    source, target = sqlite3.connect(shop_db), sqlite3.connect(db)
    source.backup(target)
    source.close()
    target.close()
    return db


def run_sql(db: str, statement: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(statement)
    conn.close()


def one_error_line(result: Result, code: int = 2) -> str:
    """Exit ``code``, one ``error: ...`` line on stderr, no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


COMMANDS = {
    "show": ("show", "order-1"),
    "history": ("history", "order-1"),
    "replay": (*APP, "replay", "--all"),
    "stats": ("stats",),
    "start": (*APP, "start", "cli_order", "--input", '["o-9", 1]'),
    "inspect": ("inspect", "order-1"),
    "export": ("export", "order-1", "-o", "-"),
    "verify": ("verify", "--all"),
}


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
def test_a_damaged_database_file(
    cli: Invoke, app: ModuleType, shop_db: str, tmp_path: Path, command: str
) -> None:
    db = copy_of(shop_db, tmp_path)
    with open(db, "r+b") as f:  # every page but the first (the schema) is garbage
        size = f.seek(0, 2)
        f.seek(4096)
        f.write(b"\xa5" * (size - 4096))
    line = one_error_line(cli("--db", db, *COMMANDS[command]))
    assert f"the log file {db} is damaged (database disk image is malformed" in line
    assert "restore it from a backup" in line


@pytest.mark.parametrize(
    ("statement", "seq", "words"),
    [
        ("DELETE FROM events WHERE workflow_id = 'order-1' AND seq = 5", 5, "event 5 is missing"),
        ("DELETE FROM events WHERE workflow_id = 'order-1' AND seq = 1", 1, "event 1 is missing"),
        (
            "UPDATE events SET at = 'yesterday' WHERE workflow_id = 'order-1' AND seq = 3",
            3,
            "'yesterday', not a number",
        ),
    ],
    ids=["gap", "no-WorkflowStarted", "time-as-text"],
)
@pytest.mark.parametrize("command", ["history", "inspect", "export"])
def test_a_damaged_log_names_the_workflow_and_the_seq(
    cli: Invoke, shop_db: str, tmp_path: Path, statement: str, seq: int, words: str, command: str
) -> None:
    db = copy_of(shop_db, tmp_path)
    run_sql(db, statement)
    args = ("export", "order-1", "-o", "-") if command == "export" else (command, "order-1")
    line = one_error_line(cli("--db", db, *args))
    assert f"workflow 'order-1': its log is damaged at seq {seq}: " in line and words in line


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM events WHERE workflow_id = 'order-1' AND seq = 5",
        "DELETE FROM events WHERE workflow_id = 'order-1' AND seq = 1",
    ],
    ids=["gap", "no-WorkflowStarted"],
)
def test_show_shows_a_damaged_log_without_a_traceback(
    cli: Invoke, shop_db: str, tmp_path: Path, statement: str
) -> None:
    db = copy_of(shop_db, tmp_path)
    run_sql(db, statement)
    shown = cli("--db", db, "show", "order-1")
    assert shown.exit_code == 1 and "Traceback" not in shown.output, shown.output
    assert "damaged   seq " in shown.stdout and "events    12" in shown.stdout


@pytest.mark.parametrize(
    ("column", "value"), [("status", "'WEIRD'"), ("created_at", "'last week'")]
)
@pytest.mark.parametrize("command", [("list",), ("show", "fail-1"), ("stats",)])
def test_a_damaged_index_row(
    cli: Invoke,
    shop_db: str,
    tmp_path: Path,
    column: str,
    value: str,
    command: tuple[str, ...],
) -> None:
    db = copy_of(shop_db, tmp_path)
    run_sql(db, f"UPDATE workflows SET {column} = {value} WHERE id = 'fail-1'")
    line = one_error_line(cli("--db", db, *command))
    assert "the index row of workflow 'fail-1' is damaged" in line


@pytest.mark.parametrize(
    "args",
    [
        (*APP, "start", "cli_order", "--input", "[" * 100_000 + "]" * 100_000),
        ("signal", "order-1", "go", "--payload", "[" * 100_000 + "]" * 100_000),
    ],
    ids=["input", "payload"],
)
def test_json_nested_too_deeply(
    cli: Invoke, app: ModuleType, shop_db: str, tmp_path: Path, args: tuple[str, ...]
) -> None:
    db = copy_of(shop_db, tmp_path)
    assert "nested too deeply" in one_error_line(cli("--db", db, *args))


def test_numbers_out_of_range(cli: Invoke, shop_db: str) -> None:
    line = one_error_line(cli("--db", shop_db, "stats", "--since", "99999999999d"))
    assert "'99999999999d' reaches back before the year 1" in line
    huge = cli("--db", shop_db, "list", "--limit", "99999999999999999999")
    assert huge.exit_code == 0 and len(huge.stdout.splitlines()) == 1 + 3, huge.output  # header


def test_an_over_long_path(cli: Invoke, tmp_path: Path) -> None:
    for path in (tmp_path / ("a" * 300) / "x.db", tmp_path / ("b" * 300 + ".db")):
        line = one_error_line(cli("--db", str(path), "list"))
        assert "File name too long" in line and len(line) < 300


# -- a worker whose database file goes away ------------------------------------------


def worker_process(db: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURALOG_")}
    return subprocess.Popen(
        [sys.executable, "-m", "duralog", "--db", db, *APP, "worker"],
        cwd=HERE,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_a_worker_whose_database_file_is_deleted_or_replaced_stops(
    shop_db: str, tmp_path: Path, change: str
) -> None:
    db = copy_of(shop_db, tmp_path)
    other = None
    if change == "replaced":
        (tmp_path / "other").mkdir()
        other = copy_of(shop_db, tmp_path / "other")
    store = SQLiteStore(db)
    worker = worker_process(db)
    try:
        wait_for(lambda: (r := store.get_workflow("sleep-1")) is not None and r.owner is not None)
        store.close()
        if other is None:
            Path(db).unlink()
        else:
            shutil.move(other, db)
        _, err = worker.communicate(timeout=30)
        lines = err.strip().splitlines()
        assert worker.returncode == 2, lines
        assert lines[-1].startswith(f"error: the log file {db} was {change}"), lines
        assert "Traceback" not in err
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.communicate()
