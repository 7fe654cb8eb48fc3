"""A worker that loses a workflow's lease stops acting for it at once.

The lease is taken from under the worker by editing its row, exactly as another
worker's takeover leaves it (a new owner, the fence bumped). The worker hears of it
at its next renewal: running async steps are cancelled, and sync steps see
``step_info().lease_lost``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from support import wait_for

import duralog

seen: dict[str, threading.Event] = {
    "sync noticed": threading.Event(),
    "async cancelled": threading.Event(),
    "async started": threading.Event(),
}


@duralog.step
def long_import(rows: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if duralog.step_info().lease_lost:
            seen["sync noticed"].set()
            return "stopped"
        time.sleep(0.01)
    return "never noticed"


@duralog.step
async def long_wait() -> str:
    seen["async started"].set()
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        seen["async cancelled"].set()
        raise
    return "never cancelled"


@duralog.workflow(name="lease_loss_sync")
async def sync_flow() -> str:
    return await long_import(10)


@duralog.workflow(name="lease_loss_async")
async def async_flow() -> str:
    return await long_wait()


def take_over(db: str, workflow_id: str) -> None:
    """What another worker's claim leaves behind: its name as owner, the fence bumped."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE workflows SET owner = 'thief', fence = fence + 1, lease_until = ? WHERE id = ?",
            (time.time() + 3600, workflow_id),
        )
    conn.close()


def kinds(db: str, workflow_id: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT kind FROM events WHERE workflow_id = ? ORDER BY seq", (workflow_id,)
        ).fetchall()
    conn.close()
    return [kind for (kind,) in rows]


def test_a_sync_step_sees_that_its_lease_was_lost(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    with duralog.Engine(db, lease_seconds=0.6, poll_interval=0.05, durability="normal") as engine:
        engine.start(sync_flow, id="import-1")
        wait_for(lambda: "StepStarted" in kinds(db, "import-1"))
        take_over(db, "import-1")
        assert seen["sync noticed"].wait(30), "the step never saw lease_lost"
        # Nothing the step returned is recorded: the history stops at its start.
        assert kinds(db, "import-1")[-1] == "StepStarted"


def test_an_async_step_is_cancelled_when_its_lease_is_lost(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    with duralog.Engine(db, lease_seconds=0.6, poll_interval=0.05, durability="normal") as engine:
        engine.start(async_flow, id="wait-1")
        assert seen["async started"].wait(30)
        take_over(db, "wait-1")
        assert seen["async cancelled"].wait(30), "the async step was never cancelled"
        assert "StepCompleted" not in kinds(db, "wait-1")
        assert "StepFailed" not in kinds(db, "wait-1")
