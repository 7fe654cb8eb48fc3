"""``duralog query``: answers, failures and exit codes, in-process and in real
processes, with a worker running and after it was SIGKILLed."""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import Result
from support import PATIENCE, load_app, popen, wait_for, wait_in_log

import duralog

HERE = Path(__file__).parent
Invoke = Callable[..., Result]
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def app() -> ModuleType:
    return load_app(HERE / "app_queries.py")


@pytest.fixture(scope="module")
def query_db(tmp_path_factory: pytest.TempPathFactory, app: ModuleType) -> str:
    """``run-1``: a RUNNING ``qa_counter`` that added 1, 2 and 3 and waits for
    ``finish``; ``done-1``: one that COMPLETED with 10. Read-only for the tests."""
    db = str(tmp_path_factory.mktemp("queries") / "queries.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        done = engine.start(app.counter, [4, 6], id="done-1")
        done.signal("finish")
        assert done.result(timeout=PATIENCE) == 10
        running = engine.start(app.counter, [1, 2, 3], id="run-1")
        wait_for(lambda: sum(e.kind == "StepCompleted" for e in running.history()) == 3)
    return db


def log_rows(db: str) -> list[tuple[object, ...]]:
    """Every row of every table but the ones SQLite keeps for itself."""
    with sqlite3.connect(db) as conn:
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith("sqlite_")
        ]
        return [
            (table, *row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"')
        ]


def one_error(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


def test_query_prints_the_answer(cli: Invoke, query_db: str) -> None:
    before = log_rows(query_db)
    asked = cli("--db", query_db, "--app", "app_queries", "query", "run-1", "total")
    assert asked.exit_code == 0, asked.output
    assert asked.stdout == "6\n"
    with_args = cli("--db", query_db, "--app", "app_queries", "query", "run-1", "after", "1")
    assert with_args.stdout == "[2, 3]\n"
    for flag in (("-o", "json"), ("--json",), ("-o", "jsonl")):
        found = cli("--db", query_db, "--app", "app_queries", "query", "done-1", "total", *flag)
        assert found.exit_code == 0, found.output
        assert json.loads(found.stdout) == {"workflow_id": "done-1", "query": "total", "result": 10}
    assert log_rows(query_db) == before  # nothing written, not even an index row


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (
            ("run-1", "totl"),
            1,
            "registers no query 'totl' (registered: after, broken, spin, total)",
        ),
        (("run-1", "broken"), 1, "its handler raised IndexError: list index out of range"),
        (
            ("run-1", "after", "x"),
            2,
            "argument 1 (x) is not valid JSON; a string needs JSON quotes",
        ),
        (("run-1", "after", '"x"'), 1, "argument 1 (i): expected int, got str"),
        (("run-1", "after", "1", "2"), 1, "too many positional arguments"),
        (("run-1", "after", "[" * 100_000), 2, "argument 1 is nested too deeply"),
        (("nobody", "total"), 1, "no workflow with id 'nobody'"),
        (("run-1", ""), 2, "the query's NAME must not be empty"),
        (("run-1", "spin", "--timeout", "0.2"), 2, "no answer within 0.2s: its handler"),
        (("run-1", "total", "--timeout", "-1"), 2, "--timeout must be a number of seconds"),
    ],
)
def test_query_failures_are_one_line(
    cli: Invoke, query_db: str, args: tuple[str, ...], code: int, said: str
) -> None:
    line = one_error(cli("--db", query_db, "--app", "app_queries", "query", *args), code)
    assert said in line


def test_a_failed_query_with_json_output_says_why_on_stdout(cli: Invoke, query_db: str) -> None:
    found = cli("--db", query_db, "--app", "app_queries", "query", "run-1", "broken", "-o", "json")
    assert found.exit_code == 1
    assert json.loads(found.stdout) == {
        "workflow_id": "run-1",
        "query": "broken",
        "error": "query 'broken' of workflow 'run-1' failed: its handler raised "
        "IndexError: list index out of range",
    }


def test_query_needs_the_code(cli: Invoke, python_m: Run, query_db: str) -> None:
    line = one_error(cli("--db", query_db, "query", "run-1", "total"), 2)
    assert "pass --app MODULE" in line
    # Another process, whose --app does not define qa_counter (this one imported it).
    found = python_m("--db", query_db, "--app", "app_ops", "query", "run-1", "total")
    assert (found.returncode, found.stdout) == (2, ""), found.stderr
    assert "the code of workflow 'qa_counter' is not registered" in found.stderr
    assert "Traceback" not in found.stderr


def test_a_diverged_history_exits_1_with_the_report(python_m: Run, query_db: str) -> None:
    found = python_m("--db", query_db, "--app", "app_queries_changed", "query", "run-1", "total")
    assert found.returncode == 1, found.stderr
    assert found.stdout == "" and "Traceback" not in found.stderr
    assert "diverged from its history at seq 2: recorded StepScheduled qa_add" in found.stderr


def test_an_encrypted_log_needs_its_key(
    cli: Invoke, app: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = os.urandom(32)
    db = str(tmp_path / "vault.db")
    vault = duralog.AesGcmCodec({"k1": key}, "k1")
    with duralog.Engine(db, durability="normal", poll_interval=0.05, payload_codec=vault) as engine:
        handle = engine.start(app.counter, [40, 2], id="secret")
        wait_for(lambda: sum(e.kind == "StepCompleted" for e in handle.history()) == 2)
    line = one_error(cli("--db", db, "--app", "app_queries", "query", "secret", "total"), 2)
    assert "'k1'" in line
    monkeypatch.setenv("DURALOG_KEYS", f"k1:{base64.b64encode(key).decode()}")
    found = cli("--db", db, "--app", "app_queries", "query", "secret", "total")
    assert found.exit_code == 0, found.output
    assert found.stdout == "42\n"


def test_query_answers_after_its_worker_was_killed(python_m: Run, tmp_path: Path) -> None:
    """A real worker process runs the workflow until its third step, which waits; the
    query is answered while it runs, and the same after a SIGKILL left nobody serving it."""
    db = str(tmp_path / "killed.db")
    started = python_m(
        "--db", db, "--app", "app_queries", "start", "qa_counter", "--input", "[[1, 2, 3]]",
        "--id", "k-1",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURALOG_")}
    worker = popen(
        [sys.executable, "-m", "duralog", "--db", db, "--app", "app_queries", "worker"],
        cwd=HERE,
        env={**env, "QA_GATE": str(tmp_path / "never")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_in_log(db, "StepCompleted", 2, "k-1")
    wait_in_log(db, "StepStarted", 3, "k-1")  # the third step runs, and waits
    while_running = python_m("--db", db, "--app", "app_queries", "query", "k-1", "total")
    assert (while_running.returncode, while_running.stdout) == (0, "3\n"), while_running.stderr
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(PATIENCE) == -signal.SIGKILL
    before = log_rows(db)
    after_kill = python_m("--db", db, "--app", "app_queries", "query", "k-1", "after", "0")
    assert (after_kill.returncode, after_kill.stdout) == (0, "[1, 2]\n"), after_kill.stderr
    assert log_rows(db) == before
