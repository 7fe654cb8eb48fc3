"""A worker SIGKILLed in the middle of a long step: the next worker's attempt starts
from the details the dead one last stored, on SQLite and PostgreSQL.

The details live in the store (``heartbeats``), not in the dead process's memory;
the dead worker's lease expires (or, on this host, its pid is seen dead) and another
worker re-runs the attempt, as it would any attempt that was running when its worker
died.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import PATIENCE, load_app, popen, read_line, wait_for

import duralog
from duralog.store import codec

APP = Path(__file__).with_name("app_heartbeat.py")
app = load_app(APP)  # its workflow, for the worker this test runs after the kill


def stored_offset(address: str) -> object:
    with duralog.Engine(address, worker=False) as engine:
        found = engine.store.get_heartbeat("import", 2)
        return None if found is None else codec.decode(found.details)


def test_the_next_worker_resumes_from_the_dead_ones_last_stored_details(
    address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = tmp_path / "ledger"
    monkeypatch.setenv("HB_LEDGER", str(ledger))
    worker = popen(
        [sys.executable, str(APP), address],
        env={**os.environ, "HB_HANG": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert read_line(worker.stdout) == "hung"
    wait_for(lambda: stored_offset(address) == app.HANG_AT, what="the stored offset")
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(PATIENCE) == -signal.SIGKILL

    with duralog.Engine(address, poll_interval=0.05, lease_seconds=2) as engine:
        handle = engine.get("import")
        assert handle.result(timeout=PATIENCE) == app.ROWS - app.HANG_AT
        assert ledger.read_text().splitlines() == ["attempt from 0", f"attempt from {app.HANG_AT}"]
        kinds = [e.kind for e in handle.history()]
        assert kinds.count("StepCompleted") == 1 and kinds[-1] == "WorkflowCompleted"
        # The step ended: its details went with it.
        wait_for(lambda: engine.store.get_heartbeat("import", 2) is None)
