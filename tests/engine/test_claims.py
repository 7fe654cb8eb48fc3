"""Claims: a worker adopts the workflows it should, however they reach it: suspended
ones behind a full claim batch after a restart, and inbox hints for a workflow about to
be adopted. (Regressions found in review: each failed on the old code.)"""

from __future__ import annotations

import sqlite3

import duralog


@duralog.step
def quick(i: int) -> int:
    return i


@duralog.workflow(name="claims_flow")
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
