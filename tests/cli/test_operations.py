"""``duralog result``, ``get-event``, ``queues`` and ``delete``, and the confirmations
of ``signal``, ``cancel``, ``pause`` and ``resume``, on real logs.

``ops_db`` (see ``conftest.py``) is read-only; tests that change a log make their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import Result
from support import PATIENCE

import duralog
from duralog.store.sqlite import SQLiteStore

Invoke = Callable[..., Result]
Run = Callable[..., subprocess.CompletedProcess[str]]


def one_error(result: Result, code: int) -> str:
    """Exit ``code`` with one ``error:`` line on stderr and nothing on stdout."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


# -- result ----------------------------------------------------------------


def test_result_of_a_completed_workflow(cli: Invoke, ops_db: str) -> None:
    done = cli("--db", ops_db, "result", "e-2")
    assert done.exit_code == 0, done.output
    assert done.stdout == '"X2"\n'
    as_json = cli("--db", ops_db, "result", "e-2", "-o", "json")
    assert json.loads(as_json.stdout) == {
        "workflow_id": "e-2",
        "status": "COMPLETED",
        "result": "X2",
    }


def test_result_of_a_failed_workflow_exits_1(cli: Invoke, ops_db: str) -> None:
    line = one_error(cli("--db", ops_db, "result", "f-1"), 1)
    assert "'f-1' failed" in line and "boom: f" in line
    as_json = cli("--db", ops_db, "result", "f-1", "--json")
    assert as_json.exit_code == 1
    found = json.loads(as_json.stdout)
    assert found["status"] == "FAILED" and "boom: f" in found["error"]


def test_result_times_out_with_exit_2(cli: Invoke, ops_db: str) -> None:
    line = one_error(cli("--db", ops_db, "result", "pub-1", "--timeout", "0.2"), 2)
    assert "did not finish within 0.2s (status RUNNING)" in line
    assert "duralog result pub-1" in line and "result()" not in line


def test_result_of_an_unknown_workflow(cli: Invoke, ops_db: str, tmp_path: Path) -> None:
    assert "no workflow with id 'nope'" in one_error(cli("--db", ops_db, "result", "nope"), 1)
    missing = tmp_path / "missing.db"
    assert "no duralog database" in one_error(cli("--db", str(missing), "result", "x"), 1)
    assert not missing.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("result", "e-1", "--timeout", "-1"), "--timeout must be"),
        (("result", "e-1", "--timeout", "nan"), "--timeout must be"),
        (("result", "e-1", "--timeout", "soon"), "--timeout"),
    ],
)
def test_bad_timeouts(cli: Invoke, ops_db: str, args: tuple[str, ...], message: str) -> None:
    assert message in one_error(cli("--db", ops_db, *args), 2)


def test_result_waits_for_a_worker_in_another_process(ops: ModuleType, tmp_path: Path) -> None:
    db = str(tmp_path / "wait.db")
    with duralog.Engine(db, worker=False) as engine:
        engine.start(ops.echo, "later", id="w-1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURALOG_")}
    waiting = subprocess.Popen(
        [sys.executable, "-m", "duralog", "--db", db, "result", "w-1", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        with duralog.Engine(db, poll_interval=0.05) as engine:
            assert engine.get("w-1").result(timeout=PATIENCE) == "LATER"
        out, err = waiting.communicate(timeout=PATIENCE)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 0, err
    assert out == '"LATER"\n'


# -- get-event -------------------------------------------------------------


def test_get_event_prints_the_published_value(cli: Invoke, ops_db: str) -> None:
    done = cli("--db", ops_db, "get-event", "pub-1", "progress")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"done": 0, "of": 3}
    as_json = cli("--db", ops_db, "get-event", "pub-1", "progress", "-o", "json")
    assert json.loads(as_json.stdout) == {
        "workflow_id": "pub-1",
        "key": "progress",
        "value": {"done": 0, "of": 3},
    }


def test_get_event_of_a_key_never_published(cli: Invoke, ops_db: str) -> None:
    line = one_error(cli("--db", ops_db, "get-event", "pub-1", "other"), 1)
    assert "has published nothing under 'other'" in line
    line = one_error(cli("--db", ops_db, "get-event", "pub-1", "other", "--timeout", "0.2"), 1)
    assert "within 0.2s" in line
    line = one_error(cli("--db", ops_db, "get-event", "e-1", "progress", "--timeout", "5"), 1)
    assert "(COMPLETED) has published nothing" in line  # ended: no use waiting
    assert "'nope'" in one_error(cli("--db", ops_db, "get-event", "nope", "k"), 1)


# -- queues ----------------------------------------------------------------


def test_queues_with_limits_and_counts(cli: Invoke, ops_db: str) -> None:
    done = cli("--db", ops_db, "--app", "app_ops", "queues")
    assert done.exit_code == 0, done.output
    header, *rows = done.stdout.splitlines()
    assert header.split()[:4] == ["QUEUE", "CONCURRENCY", "PER", "WORKER"]
    (row,) = [r for r in rows if r.startswith("ops_emails")]
    assert row.split()[:8] == ["ops_emails", "3", "2", "10/60s", "no", "-", "2", "0"]
    as_json = cli("--db", ops_db, "--app", "app_ops", "queues", "-o", "json")
    (queue,) = [q for q in json.loads(as_json.stdout) if q["name"] == "ops_emails"]
    assert queue["declared"] is True and queue["concurrency"] == 3
    assert queue["worker_concurrency"] == 2 and queue["rate_limit"] == 10
    assert queue["counts"]["PENDING"] == 2 and queue["counts"]["RUNNING"] == 0


def test_queues_without_app_shows_counts_only(cli: Invoke, ops_db: str) -> None:
    done = cli("--db", ops_db, "queues", "-o", "jsonl")
    assert done.exit_code == 0, done.output
    (queue,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert queue["name"] == "ops_emails" and queue["declared"] is False
    assert queue["concurrency"] is None and queue["counts"]["PENDING"] == 2
    table = cli("--db", ops_db, "queues")
    assert "add --app MODULE" in table.stdout.splitlines()[-1]


# -- delete ----------------------------------------------------------------


def events_of(db: str, workflow_id: str) -> int:
    store = SQLiteStore(db)
    try:
        return len(store.read_events(workflow_id, verify=False))
    finally:
        store.close()


def test_delete_removes_one_finished_workflow(cli: Invoke, ops: ModuleType, tmp_path: Path) -> None:
    db = str(tmp_path / "delete.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        engine.run(ops.echo, "a", id="d-1")
        engine.run(ops.echo, "b", id="d-2")
    events = events_of(db, "d-1")
    done = cli("--db", db, "delete", "d-1")
    assert done.exit_code == 0, done.output
    assert done.stdout == f"deleted d-1 (COMPLETED, {events} events)\n"
    assert events_of(db, "d-1") == 0
    assert "'d-1'" in one_error(cli("--db", db, "show", "d-1"), 1)
    assert cli("--db", db, "count").stdout == "1\n"  # d-2 stays
    assert "no workflow with id 'd-1'" in one_error(cli("--db", db, "delete", "d-1"), 1)
    as_json = cli("--db", db, "delete", "d-2", "-o", "json")
    assert json.loads(as_json.stdout)["status"] == "COMPLETED"


def test_delete_refuses_a_workflow_that_has_not_ended(
    cli: Invoke, ops: ModuleType, tmp_path: Path
) -> None:
    db = str(tmp_path / "delete.db")
    with duralog.Engine(db, worker=False) as engine:
        engine.start(ops.echo, "a", id="d-1")
    line = one_error(cli("--db", db, "delete", "d-1"), 1)
    assert "is PENDING: only a finished workflow" in line and "cancel or terminate it first" in line
    assert events_of(db, "d-1") == 1


# -- confirmations ---------------------------------------------------------


def test_confirmations_go_to_stdout_with_the_status(
    cli: Invoke, ops: ModuleType, tmp_path: Path
) -> None:
    db = str(tmp_path / "control.db")
    with duralog.Engine(db, worker=False) as engine:
        engine.start(ops.publisher, 1, id="c-1")
        engine.start(ops.echo, "a", id="c-2", queue=ops.emails)
    signalled = cli("--db", db, "signal", "c-1", "go", "--payload", '"now"')
    assert signalled.exit_code == 0, signalled.output
    assert signalled.stdout == "sent signal go to c-1 (status PENDING)\n"
    assert signalled.stderr == ""
    paused = cli("--db", db, "pause", "c-1", "-o", "json")
    assert json.loads(paused.stdout) == {
        "workflow_id": "c-1",
        "action": "pause",
        "status": "PENDING",
    }
    resumed = cli("--db", db, "resume", "c-1", "-o", "jsonl")
    assert json.loads(resumed.stdout)["action"] == "resume"
    cancelled = cli("--db", db, "cancel", "c-2")  # queued: cancelled at once
    assert cancelled.stdout == "cancel requested for c-2 (status CANCELLED)\n"


def test_start_says_the_status(cli: Invoke, ops: ModuleType, tmp_path: Path) -> None:
    db = str(tmp_path / "start.db")
    started = cli("--db", db, "--app", "app_ops", "start", "ops_echo", "--input", '["a"]',
                  "--id", "s-1", "-o", "json")  # fmt: skip
    assert started.exit_code == 0, started.output
    assert json.loads(started.stdout) == {"id": "s-1", "name": "ops_echo", "status": "PENDING"}
    waited = cli("--db", db, "--app", "app_ops", "start", "ops_echo", "--input", '["b"]',
                 "--id", "s-2", "--wait", "--json")  # fmt: skip
    assert json.loads(waited.stdout) == {
        "id": "s-2",
        "name": "ops_echo",
        "result": "B",
        "status": "COMPLETED",
    }
