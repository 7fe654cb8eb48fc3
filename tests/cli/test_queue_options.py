"""``duralog start --dedup-id/--partition/--delay``, what ``list`` and ``show`` say of
them, and ``duralog queues set/clear``: limits set at runtime, stored in the log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import Result

import duralog
from duralog.store.sqlite import SQLiteStore

Invoke = Callable[..., Result]
APP = ("--app", "app_ops")


def one_error(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


@pytest.fixture
def db(tmp_path: Path, ops: ModuleType) -> str:
    return str(tmp_path / "queues.db")


def started(cli: Invoke, db: str, *args: str) -> dict[str, str]:
    done = cli("--db", db, *APP, "start", "ops_echo", "--input", '["a"]', *args, "-o", "json")
    assert done.exit_code == 0, done.output
    found: dict[str, str] = json.loads(done.stdout)
    return found


def test_a_dedup_id_is_refused_while_its_holder_lives(cli: Invoke, db: str) -> None:
    first = started(cli, db, "--queue", "ops_emails", "--dedup-id", "user-7")
    assert first["status"] == "PENDING"  # no worker: it waits on its queue
    line = one_error(
        cli(
            "--db",
            db,
            *APP,
            "start",
            "ops_echo",
            "--input",
            '["b"]',
            "--queue",
            "ops_emails",
            "--dedup-id",
            "user-7",
        ),
        1,
    )
    assert f"workflow {first['id']!r} holds it" in line and "'user-7'" in line
    assert "'ops_emails'" in line
    shown = cli("--db", db, "show", first["id"])
    assert "queue     ops_emails (dedup id user-7)" in shown.stdout
    as_json = json.loads(cli("--db", db, "show", first["id"], "-o", "json").stdout)
    assert as_json["dedup_id"] == "user-7" and as_json["queue"] == "ops_emails"
    assert one_error(
        cli("--db", db, *APP, "start", "ops_echo", "--input", '["c"]', "--dedup-id", "k"), 2
    ).endswith("or give the workflow an id (a start with an id that exists returns that workflow)")


def test_a_partitioned_queue_needs_a_partition(cli: Invoke, db: str) -> None:
    line = one_error(
        cli("--db", db, *APP, "start", "ops_echo", "--input", '["a"]', "--queue", "ops_exports"),
        2,
    )
    assert "queue 'ops_exports' is partitioned" in line and "partition=KEY" in line
    line = one_error(
        cli(
            "--db",
            db,
            *APP,
            "start",
            "ops_echo",
            "--input",
            '["a"]',
            "--queue",
            "ops_emails",
            "--partition",
            "t1",
        ),
        2,
    )
    assert "'ops_emails', which is not partitioned" in line
    one = started(cli, db, "--queue", "ops_exports", "--partition", "tenant-42")
    listed = cli("--db", db, "list")
    assert "ops_exports [tenant-42]" in listed.stdout
    rows = json.loads(cli("--db", db, "list", "-o", "json").stdout)
    assert [(r["id"], r["partition_key"]) for r in rows] == [(one["id"], "tenant-42")]
    counted = cli("--db", db, "list", "--queue", "ops_exports", "-o", "jsonl")
    assert len(counted.stdout.splitlines()) == 1


def test_a_delayed_start_waits_then_runs(cli: Invoke, db: str, ops: ModuleType) -> None:
    before = time.time()
    found = started(cli, db, "--delay", "1h")
    listed = cli("--db", db, "list").stdout
    assert "PENDING" in listed and "starts " in listed
    shown = cli("--db", db, "show", found["id"]).stdout
    assert "starts    " in shown and "(a delayed start)" in shown
    assert "waiting   delayed: no worker takes it up before " in shown
    record = json.loads(cli("--db", db, "show", found["id"], "-o", "json").stdout)
    assert before + 3600 <= record["start_at"] <= time.time() + 3600
    for bad in ("soon", "-5", "1y"):
        line = one_error(
            cli("--db", db, *APP, "start", "ops_echo", "--input", '["a"]', "--delay", bad), 2
        )
        assert "--delay" in line and "is not a duration" in line
    # Due at once: a worker runs it.
    quick = started(cli, db, "--delay", "0.2")
    with duralog.Engine(db, poll_interval=0.05) as engine:
        assert engine.get(quick["id"]).result(timeout=30) == "A"
        assert engine.get(found["id"]).status() is duralog.WorkflowStatus.PENDING


def test_queues_set_and_clear(cli: Invoke, db: str) -> None:
    started(cli, db)  # the log exists
    done = cli(
        "--db",
        db,
        "queues",
        "set",
        "ops_emails",
        "--concurrency",
        "1",
        "--rate-limit",
        "none",
        "--period",
        "1m",
    )
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == "ops_emails: set (concurrency 1, rate-limit none, period 60)"
    again = cli(
        "--db", db, "queues", "set", "ops_emails", "--worker-concurrency", "4", "-o", "json"
    )
    assert json.loads(again.stdout) == {
        "queue": "ops_emails",
        "done": "set",
        "stored": {
            "concurrency": 1,
            "worker_concurrency": 4,
            "rate_limit": None,
            "rate_period": 60.0,
        },
    }
    store = SQLiteStore(db)
    try:
        assert store.queue_limits()["ops_emails"].concurrency == 1
    finally:
        store.close()
    table = cli("--db", db, *APP, "queues").stdout.splitlines()
    (row,) = [r for r in table if r.startswith("ops_emails")]
    assert row.split()[:5] == ["ops_emails", "1", "4", "-", "no"]
    assert "concurrency, rate-limit, period, worker-concurrency" in row or (
        "concurrency, worker-concurrency, rate-limit, period" in row
    )
    (listed,) = [
        q
        for q in json.loads(cli("--db", db, "queues", "-o", "json").stdout)
        if q["name"] == "ops_emails"
    ]
    assert listed["declared"] is False and listed["concurrency"] == 1
    cleared = cli("--db", db, "queues", "clear", "ops_emails")
    assert cleared.stdout.strip() == "ops_emails: cleared"
    line = one_error(cli("--db", db, "queues", "clear", "ops_emails"), 1)
    assert "has no limits set at runtime" in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--concurrency", "0"), "--concurrency: give a whole number of at least 1, or none"),
        (("--rate-limit", "many"), "--rate-limit: give a whole number of at least 1, or none"),
        (("--period", "0"), "--period must be above 0"),
        ((), "was given no limit to set"),
    ],
)
def test_queues_set_refuses_bad_limits(
    cli: Invoke, db: str, args: tuple[str, ...], words: str
) -> None:
    started(cli, db)
    assert words in one_error(cli("--db", db, "queues", "set", "ops_emails", *args), 2)
    line = one_error(cli("--db", db, "queues", "set", "bad name!", "--concurrency", "1"), 2)
    assert "a queue name is 1-100 letters" in line
