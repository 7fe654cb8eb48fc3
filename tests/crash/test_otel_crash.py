"""A traced run killed with SIGKILL and resumed by a fresh process stays one trace,
and what the first process did is not traced again (``duralog.observe.otel``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import PATIENCE, popen

from duralog.store import events as ev
from duralog.store.open import open_store

pytest.importorskip("opentelemetry.sdk")

APP = str(Path(__file__).with_name("app_otel.py"))


def run(db: str, spans: Path, **env: str) -> subprocess.CompletedProcess[str]:
    process = popen(
        [sys.executable, APP, db, str(spans), "t-1"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = process.communicate(timeout=PATIENCE)
    return subprocess.CompletedProcess(process.args, process.returncode, out)


def spans_in(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file, or a fresh PostgreSQL schema (skipped without a server)."""
    if request.param == "sqlite":
        return str(tmp_path / "log.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_a_run_killed_and_resumed_elsewhere_continues_its_trace(db: str, tmp_path: Path) -> None:
    before, after = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    killed = run(db, before, CRASH="1")
    assert killed.returncode == -signal.SIGKILL
    resumed = run(db, after)
    assert resumed.returncode == 0 and resumed.stdout.strip() == "10"

    store = open_store(db)
    try:
        log = store.read_events("t-1")
    finally:
        store.close()
    started = log[0].event
    assert isinstance(started, ev.WorkflowStarted) and started.trace is not None
    _, trace_id, run_span_id, _ = started.trace.split("-")
    # The attempt of ``second`` that returned (the one the kill cut short is recorded
    # only if its ``StepStarted`` was committed before the kill: bookkeeping may wait).
    attempts = [e.event.attempt for e in log if isinstance(e.event, ev.StepStarted)]

    # The killed process: the request that started the run, and the one step that
    # ended. The run's own span died with the process; the step hangs under its id.
    first = {span["name"]: span for span in spans_in(before)}
    assert sorted(first) == ["request", "step first"]
    assert first["request"]["trace_id"] == trace_id
    assert first["step first"]["trace_id"] == trace_id
    assert first["step first"]["parent_id"] == run_span_id
    assert first["step first"]["attributes"]["duralog.seq"] == 2

    # The fresh process: its own span of the run, under the recorded one, in the same
    # trace; only the work it did (no span for ``first``, which ran before the kill).
    second = spans_in(after)
    names = [span["name"] for span in second]
    assert sorted(names) == ["request", "step second", "workflow traced"]
    by_name = {span["name"]: span for span in second}
    run_span, step = by_name["workflow traced"], by_name["step second"]
    assert run_span["trace_id"] == step["trace_id"] == trace_id
    assert run_span["parent_id"] == run_span_id
    assert run_span["attributes"]["duralog.resumed"] is True
    assert run_span["attributes"]["duralog.outcome"] == "completed"
    assert step["parent_id"] == run_span["span_id"]
    assert step["attributes"]["duralog.attempt"] == attempts[-1]
    assert step["attributes"]["duralog.idempotency_key"].startswith("t-1:")
    # The timer fired before the kill: it is not an event of the resumed span.
    assert run_span["events"] == []
    # Its start found the run it had started: its own request is in another trace.
    assert by_name["request"]["trace_id"] != trace_id
