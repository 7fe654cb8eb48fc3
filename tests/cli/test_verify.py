"""``duralog verify``, and ``replay``/``show``/``list`` on damaged logs.

Each test damages a copy of the shared log (``shop_db``: ``order-1`` COMPLETED in 13
events, ``fail-1`` FAILED, ``sleep-1`` RUNNING) with plain SQL, as an adversary would.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import Result
from support import wait_for

import duralog

Invoke = Callable[..., Result]
APP = ("--app", "app_workflows")


def copy_of(shop_db: str, tmp_path: Path) -> str:
    db = str(tmp_path / "copy.db")
    source, target = sqlite3.connect(shop_db), sqlite3.connect(db)
    source.backup(target)
    source.close()
    target.close()
    return db


def run_sql(db: str, *statements: str) -> None:
    with sqlite3.connect(db) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_an_intact_log(cli: Invoke, shop_db: str) -> None:
    everything = cli("--db", shop_db, "verify", "--all")
    assert everything.exit_code == 0, everything.output
    assert everything.stdout == "3 workflows: 3 intact, 0 damaged\n"
    one = cli("--db", shop_db, "verify", "order-1")
    assert (one.exit_code, one.stdout) == (0, "order-1: intact (13 events)\n")
    lines = cli("--db", shop_db, "verify", "--all", "--json").stdout.splitlines()
    checks = [json.loads(line) for line in lines]
    assert [(c["workflow_id"], c["ok"], c["findings"]) for c in checks] == [
        ("fail-1", True, []),
        ("order-1", True, []),
        ("sleep-1", True, []),
    ]


# (the damage, the seq that names it, words of the finding)
DAMAGES = {
    "event-after-the-end": (
        "INSERT INTO events (workflow_id, seq, kind, at, body) SELECT workflow_id, 14, kind,"
        " at + 1, body FROM events WHERE workflow_id = 'order-1' AND seq = 12",
        14,
        "comes after the workflow's end",
    ),
    "terminal-event-deleted": (
        "DELETE FROM events WHERE workflow_id = 'order-1' AND seq = 13",
        13,
        "the index says the log ends at seq 13, but it ends at seq 12",
    ),
    "step-result-altered": (
        "UPDATE events SET body = replace(body, 'charged o-1 1999', 'charged o-1 1')"
        " WHERE workflow_id = 'order-1' AND seq = 7",
        7,
        "its checksum does not match",
    ),
    "step-arguments-altered": (
        "UPDATE events SET body = replace(body, '1999', '1') WHERE workflow_id = 'order-1'"
        " AND seq = 5",
        5,
        "its checksum does not match",
    ),
    "kind-not-the-body's": (
        "UPDATE events SET kind = 'StepFailed' WHERE workflow_id = 'order-1' AND seq = 7",
        7,
        "its body is a StepCompleted event but its kind column says StepFailed",
    ),
    "gap": (
        "DELETE FROM events WHERE workflow_id = 'order-1' AND seq = 5",
        5,
        "event 5 is missing",
    ),
    "no-WorkflowStarted": (
        "DELETE FROM events WHERE workflow_id = 'order-1' AND seq = 1",
        1,
        "event 1 is missing",
    ),
    "time-as-text": (
        "UPDATE events SET at = 'yesterday' WHERE workflow_id = 'order-1' AND seq = 3",
        3,
        "its time (at) is 'yesterday', not a number",
    ),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_damage_is_found_with_workflow_and_seq(
    cli: Invoke, app: ModuleType, shop_db: str, tmp_path: Path, damage: str
) -> None:
    statement, seq, words = DAMAGES[damage]
    db = copy_of(shop_db, tmp_path)
    run_sql(db, statement)
    everything = cli("--db", db, "verify", "--all")
    assert everything.exit_code == 1, everything.output
    assert "order-1: DAMAGED" in everything.stdout
    assert f"  seq {seq}: " in everything.stdout and words in everything.stdout
    assert everything.stdout.endswith("3 workflows: 2 intact, 1 damaged\n")
    one = cli("--db", db, "verify", "order-1", "--json")
    assert one.exit_code == 1
    (check,) = [json.loads(line) for line in one.stdout.splitlines()]
    assert check["ok"] is False
    assert any(f["seq"] == seq and words in f["problem"] for f in check["findings"])


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_replay_checks_the_log_first(
    cli: Invoke, app: ModuleType, shop_db: str, tmp_path: Path, damage: str
) -> None:
    # It used to replay these histories and say they agree (or end in a traceback).
    statement, seq, _ = DAMAGES[damage]
    db = copy_of(shop_db, tmp_path)
    run_sql(db, statement)
    replay = cli("--db", db, *APP, "replay", "--all")
    assert replay.exit_code == 1, replay.output
    assert "order-1: DAMAGED" in replay.stdout
    assert replay.stdout.endswith("2 agree, 0 diverge, 1 damaged\n")
    alone = cli("--db", db, *APP, "replay", "order-1")
    assert alone.exit_code == 1 and f"seq {seq}: " in alone.stdout


def test_a_damaged_index_row(cli: Invoke, app: ModuleType, shop_db: str, tmp_path: Path) -> None:
    db = copy_of(shop_db, tmp_path)
    run_sql(db, "UPDATE workflows SET status = 'WEIRD' WHERE id = 'fail-1'")
    found = cli("--db", db, "verify", "--all")
    assert found.exit_code == 1
    assert "fail-1: DAMAGED" in found.stdout and "WEIRD" in found.stdout
    line = one_error_line(cli("--db", db, "list"), 2)
    assert "index row of workflow 'fail-1' is damaged" in line


def test_what_verify_cannot_read(cli: Invoke, shop_db: str, tmp_path: Path) -> None:
    assert "give a workflow ID or --all" in one_error_line(cli("--db", shop_db, "verify"), 2)
    assert "'nope'" in one_error_line(cli("--db", shop_db, "verify", "nope"), 2)
    missing = str(tmp_path / "missing.db")
    assert "no duralog database" in one_error_line(cli("--db", missing, "verify", "--all"), 2)
    db = copy_of(shop_db, tmp_path)
    with open(db, "r+b") as f:  # every page but the schema's
        f.seek(4096)
        size = f.seek(0, 2) - 4096
        f.seek(4096)
        f.write(b"\xa5" * size)
    line = one_error_line(cli("--db", db, "verify", "--all"), 2)
    assert f"the log file {db} is damaged" in line


def test_a_workflow_set_aside_shows_why_in_show_and_list(
    cli: Invoke, app: ModuleType, shop_db: str, tmp_path: Path
) -> None:
    db = copy_of(shop_db, tmp_path)
    run_sql(db, "UPDATE workflows SET last_seq = last_seq + 1 WHERE id = 'sleep-1'")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        handle = engine.get("sleep-1")
        wait_for(lambda: handle.status() is duralog.WorkflowStatus.SUSPENDED)
        assert handle.record().owner is None
    shown = cli("--db", db, "show", "sleep-1")
    assert shown.exit_code == 1, shown.output
    status, damaged = shown.stdout.splitlines()[1:3]
    assert status.startswith("status    SUSPENDED: its log is damaged at seq ")
    assert "run `duralog verify sleep-1`" in status
    assert damaged.startswith("damaged   seq ") and "see `duralog verify sleep-1`" in damaged
    assert "TimerStarted" in shown.stdout  # the timeline is still shown
    listed = cli("--db", db, "list", "--status", "SUSPENDED")
    assert listed.exit_code == 0
    header, row = listed.stdout.splitlines()
    assert header.split()[-1] == "NOTE"  # why it is SUSPENDED
    assert row.startswith("sleep-1") and "its log is damaged at seq" in row
