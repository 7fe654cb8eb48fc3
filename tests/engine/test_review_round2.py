"""Regressions found by the second review of this session (each failed on the old code)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

from support import PATIENCE, wait_for

import duralog
from duralog.store.base import WorkflowStatus

released = threading.Event()  # lets run 0's child's step end (long after it was cancelled)
stale_read = threading.Event()  # lets run 1's child end


@duralog.step
def slow_work(x: str) -> str:
    if x == "run0":  # still running when its parent continues as new
        released.wait(PATIENCE)
    else:  # still running when the cancelled child's notice reaches the parent
        assert stale_read.wait(PATIENCE)
    return x


@duralog.workflow(name="rr2_child")
async def child(x: str) -> str:
    return await slow_work(x)


@duralog.workflow(name="rr2_parent")
async def parent(run: int) -> str:
    if run == 0:
        # A child started and left running; continuing as new cancels it, and its
        # cancellation notice must not reach the next run's child at the same seq.
        asyncio.ensure_future(child("run0"))  # noqa: RUF006 - left running on purpose
        await duralog.sleep(0.1)  # (recorded first: the child is scheduled when it runs)
        duralog.continue_as_new(1)
    duralog.random()  # one decision, as run 0's timer: this run's child gets its seq
    return await child("run1")


def test_a_child_of_an_earlier_run_cannot_answer_for_the_next_runs_child(db: str) -> None:
    released.clear()
    stale_read.clear()

    def children() -> dict[str, WorkflowStatus]:
        return {r.id: r.status for r in engine.list(name="rr2_child")}

    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        try:
            handle = engine.start(parent, 0, id="P")
            # Run 0's child is cancelled; its notice goes to P's inbox (with its
            # status), where run 1, whose own child runs at the same seq, reads it.
            wait_for(lambda: WorkflowStatus.CANCELLED in children().values())
            # Witness: a workflow started by another process is taken up by a poll of
            # this worker, which reads the inboxes of the workflows running here first.
            with duralog.Engine(db, worker=False) as client:
                assert client.start(flow, 1).result(timeout=PATIENCE) == 1
            stale_read.set()
            assert handle.result(timeout=PATIENCE) == "run1"
            assert engine.get("P").status() is WorkflowStatus.COMPLETED
            (cancelled,) = [i for i, s in children().items() if s is WorkflowStatus.CANCELLED]
            (completed,) = [i for i, s in children().items() if s is WorkflowStatus.COMPLETED]
            assert seq_of(cancelled) == seq_of(completed)  # the case this test is about
        finally:
            released.set()
            stale_read.set()
    assert inbox(db, "P") == 0  # the stale notice was consumed, not left to re-read


def seq_of(child_id: str) -> str:
    """The parent's seq in a child's id: ``P/3`` (run 1), ``P/2.3`` (run 2)."""
    return child_id.rpartition("/")[2].rpartition(".")[2]


def inbox(db: str, workflow_id: str) -> int:
    with sqlite3.connect(db) as conn:
        found: int = conn.execute(
            "SELECT COUNT(*) FROM inbox WHERE workflow_id = ?", (workflow_id,)
        ).fetchone()[0]
    conn.close()
    return found


@duralog.step
def quick(i: int) -> int:
    return i


@duralog.workflow(name="rr2_flow")
async def flow(i: int) -> int:
    return await quick(i)


def test_a_restart_resumes_suspended_workflows_behind_a_full_batch(db: str) -> None:
    from duralog.engine import claims as worker_module

    with duralog.Engine(db, worker=False) as client:
        for i in range(7):
            client.start(flow, i, id=f"w{i}")
    with sqlite3.connect(db) as conn:  # the three newest diverged once; new code is deployed
        conn.execute("UPDATE workflows SET status = 'SUSPENDED' WHERE id IN ('w4','w5','w6')")
    saved = worker_module._CLAIM_BATCH
    worker_module._CLAIM_BATCH = 2  # four older workflows fill two whole batches first
    try:
        with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
            assert [engine.get(f"w{i}").result(timeout=10) for i in range(7)] == list(range(7))
    finally:
        worker_module._CLAIM_BATCH = saved


def test_an_inbox_hint_for_a_workflow_about_to_be_adopted_is_kept(db: str) -> None:
    # A hint (PostgreSQL's NOTIFY) can arrive between the commit that creates a
    # workflow here and its adoption on the loop: it must not be dropped, or the
    # workflow's first activation runs before the inbox is read.
    with duralog.Engine(db, durability="normal") as engine:
        worker = engine._worker
        assert worker is not None
        assert worker.reserve("arriving")
        worker._poke_if_running("arriving")
        worker._poke_if_running("elsewhere")  # owned by another process: dropped
        assert "arriving" in worker._pokes and "elsewhere" not in worker._pokes
        worker.unreserve("arriving")
