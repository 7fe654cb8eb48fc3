"""Queries and updates on PostgreSQL: the same answers as on SQLite, with a worker and
without, through the API and the command line; nothing written by a query or by a
rejected update."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
from click.testing import CliRunner
from support import PATIENCE, load_app, wait_for

import duralog
from duralog.cli import main

APP = load_app(Path(__file__).parent.parent / "cli" / "app_queries.py")


def snapshot(url: str, workflow_id: str) -> bytes:
    """The workflow's events, and what its index row says of them (a running worker
    renews the row's lease meanwhile)."""
    with duralog.Engine(url, worker=False) as engine:
        handle = engine.get(workflow_id)
        record = handle.record()
        return msgspec.json.encode([handle.history(), record.status, record.last_seq])


def test_queries_on_postgres(postgres_url: str) -> None:
    values = list(range(1, 21))
    with duralog.Engine(postgres_url, poll_interval=0.05) as engine:
        handle = engine.start(APP.counter, values, id="pg-q")
        answers: list[int] = []
        errors: list[BaseException] = []

        def ask_until_done() -> None:  # racing the worker's appends
            try:
                while not answers or answers[-1] != sum(values):
                    answers.append(handle.query("total"))
            except BaseException as exc:
                errors.append(exc)

        asker = threading.Thread(target=ask_until_done)
        asker.start()
        asker.join(PATIENCE)
        assert not errors, errors
        assert set(answers) <= {sum(values[:k]) for k in range(len(values) + 1)}
        wait_for(lambda: handle.query("after", 18) == [19, 20])
        try:
            handle.query("broken")
        except duralog.QueryFailed as exc:
            assert "IndexError" in str(exc)
        else:
            raise AssertionError("the broken handler answered")
    # No worker in any process now: the log alone answers, here and on the CLI.
    before = snapshot(postgres_url, "pg-q")
    with duralog.Engine(postgres_url, worker=False) as engine:
        assert engine.get("pg-q").query("total") == sum(values)
    env: dict[str, str | None] = {"DURALOG_DB": None, "DURALOG_APP": None}
    asked = CliRunner().invoke(
        main,
        ["--db", postgres_url, "--app", "app_queries", "query", "pg-q", "total", "-o", "json"],
        env=env,
    )
    assert asked.exit_code == 0, asked.output
    assert asked.stdout == f'{{"workflow_id":"pg-q","query":"total","result":{sum(values)}}}\n'
    assert snapshot(postgres_url, "pg-q") == before


def test_updates_on_postgres(postgres_url: str) -> None:
    with duralog.Engine(postgres_url, poll_interval=0.05) as engine:
        handle = engine.start(APP.counter, [1], id="pg-u")
        # Its body adds 1 with a step: an update handled before that step ends would race
        # it (``total += await add(x)`` in both), so the update comes once it is added.
        wait_for(lambda: handle.query("total") == 1)
        assert handle.update("more", 2, timeout=PATIENCE) == 3
        before = snapshot(postgres_url, "pg-u")
        try:
            handle.update("more", -1, timeout=PATIENCE)
        except duralog.UpdateFailed as exc:
            assert exc.rejected and "-1 is not positive" in str(exc)
        else:
            raise AssertionError("the validator admitted -1")
        assert snapshot(postgres_url, "pg-u") == before  # rejected: no trace
        env: dict[str, str | None] = {"DURALOG_DB": None, "DURALOG_APP": None}
        args = ["--db", postgres_url, "--app", "app_queries", "update", "pg-u", "more"]
        sent = CliRunner().invoke(main, [*args, "--payload", "4", "--timeout", "60"], env=env)
        assert sent.exit_code == 0, sent.output
        assert sent.stdout == "7\n"
        handle.signal("finish")
        assert handle.result(timeout=PATIENCE) == 7
