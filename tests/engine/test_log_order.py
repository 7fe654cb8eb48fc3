"""The log's order: a decision that fails consumes no seq, and nothing follows a
run's terminal event. (Regressions found in review: each failed before its fix.)"""

from __future__ import annotations

import asyncio
import sqlite3

import duralog
from duralog.store.events import StepScheduled, StepStarted


@duralog.step
def add_one(x: int) -> int:
    return x + 1


def boom() -> None:
    raise RuntimeError("nope")


@duralog.workflow
async def side_effect_fails() -> int:
    try:  # noqa: SIM105 - the point is user code catching the failure
        duralog.side_effect(boom)
    except RuntimeError:
        pass
    return await add_one(1)


def test_a_failed_decision_consumes_no_seq(engine: duralog.Engine) -> None:
    handle = engine.start(side_effect_fails)
    assert handle.result(timeout=10) == 2
    history = handle.history()
    scheduled = next(e.seq for e in history if isinstance(e.event, StepScheduled))
    started = next(e.event for e in history if isinstance(e.event, StepStarted))
    assert started.step_seq == scheduled


@duralog.step
async def count_to(n: int) -> int:
    for _ in range(n):
        await asyncio.sleep(0)
    return n


@duralog.workflow
async def fire_and_forget(n: int, m: int) -> int:
    asyncio.ensure_future(count_to(m))  # noqa: RUF006 - never awaited, on purpose
    return await count_to(n)


def test_nothing_is_appended_after_the_terminal_event(db: str) -> None:
    with duralog.Engine(db, durability="normal") as engine:
        handles = [engine.start(fire_and_forget, i % 4, (i * 7) % 5) for i in range(200)]
        for handle in handles:
            assert handle.result(timeout=30) == handles.index(handle) % 4
    with sqlite3.connect(db) as conn:
        late = conn.execute(
            "SELECT count(*) FROM events t JOIN events x ON x.workflow_id = t.workflow_id"
            " AND x.seq > t.seq WHERE t.kind IN"
            " ('WorkflowCompleted', 'WorkflowFailed', 'WorkflowCancelled')"
        ).fetchone()[0]
    assert late == 0
