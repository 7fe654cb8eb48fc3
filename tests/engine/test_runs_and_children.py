"""Successive runs and their children: continue-as-new gives each run's children ids of
their own, and a child of an earlier run cannot answer for the next run's child.
(Regressions found in review: each failed on the old code.)"""

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


@duralog.workflow
async def times_ten(n: int) -> int:
    return n * 10


@duralog.workflow
async def parent_runs(run: int) -> int:
    result = await times_ten(run)
    if run < 2:
        duralog.continue_as_new(run + 1)
    return result


def test_children_of_successive_runs_do_not_collide(engine: duralog.Engine) -> None:
    assert engine.start(parent_runs, 1, id="pr").result(timeout=10) == 20
    assert {r.id for r in engine.list(name="times_ten")} == {"pr/2", "pr/2.2"}
