"""``duralog.map``: bounded fan-out from workflow code, results in input order."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from support import PATIENCE, wait_in_log

import duralog
from duralog.replay.checker import check
from duralog.replay.history import History
from duralog.testing import step_names

LOCK = threading.Lock()
RUNNING = {"now": 0, "max": 0}
BARRIER = threading.Barrier(3, timeout=PATIENCE)
DB = {"path": ""}


@pytest.fixture(autouse=True)
def fresh(db: str) -> None:
    global BARRIER
    RUNNING.update(now=0, max=0)
    BARRIER = threading.Barrier(3, timeout=PATIENCE)
    DB["path"] = db


@duralog.step
def mp_square(n: int) -> int:
    with LOCK:
        RUNNING["now"] += 1
        RUNNING["max"] = max(RUNNING["max"], RUNNING["now"])
    try:
        if n < 6:  # the first six meet in threes: proof that three run at once
            BARRIER.wait()
        return n * n
    finally:
        with LOCK:
            RUNNING["now"] -= 1


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def mp_check(n: int) -> int:
    if n == 1:
        raise ValueError(f"item {n} is odd")
    if n == 0:  # finish only after item 1's failure is in the log
        wait_in_log(DB["path"], "StepFailed")
    return n


@duralog.workflow(name="mp-squares")
async def squares(count: int, limit: int | None) -> list[int]:
    return await duralog.map(mp_square, range(count), max_parallel=limit)


@duralog.workflow(name="mp-checks")
async def checks(items: list[int], collect: bool) -> list[str]:
    results = await duralog.map(mp_check, items, max_parallel=2, return_exceptions=collect)
    return [type(r).__name__ if isinstance(r, Exception) else str(r) for r in results]


@duralog.workflow(name="mp-child")
async def child(n: int) -> int:
    return await mp_square(n + 10)


@duralog.workflow(name="mp-children")
async def children(count: int) -> list[int]:
    return await duralog.map(child, range(count), max_parallel=2)


def in_flight_at_most(handle: duralog.WorkflowHandle[Any]) -> int:
    running: set[int] = set()
    most = 0
    for entry in handle.history():
        if entry.kind == "StepScheduled":
            running.add(entry.seq)
        elif entry.kind in ("StepCompleted", "StepFailed"):
            running.discard(entry.event.step_seq)  # type: ignore[union-attr]
        most = max(most, len(running))
    return most


def test_results_in_input_order_with_at_most_max_parallel_at_once(engine: duralog.Engine) -> None:
    handle = engine.start(squares, 9, 3)
    assert handle.result(timeout=15) == [n * n for n in range(9)]
    assert step_names(handle) == ["mp_square"] * 9
    assert RUNNING["max"] == 3
    assert in_flight_at_most(handle) == 3
    report = check(History(handle.id, "mp-squares", handle.history()), [squares])
    assert report.ok and report.finished, report.error


def test_without_a_bound_everything_starts_at_once(engine: duralog.Engine) -> None:
    handle = engine.start(squares, 3, None)
    assert handle.result(timeout=15) == [0, 1, 4]
    kinds = [e.kind for e in handle.history()]
    assert kinds[1:4] == ["StepScheduled"] * 3


def test_a_failure_stops_new_items_and_is_raised_with_its_index(engine: duralog.Engine) -> None:
    handle = engine.start(checks, [0, 1, 2, 3], False)
    with pytest.raises(duralog.WorkflowFailed, match="item 1 is odd") as caught:
        handle.result(timeout=15)
    assert "in duralog.map, item 1 of 4" in caught.value.cause.traceback
    assert step_names(handle) == ["mp_check", "mp_check"]  # items 2 and 3 never started


def test_return_exceptions_runs_everything(engine: duralog.Engine) -> None:
    handle = engine.start(checks, [0, 1, 2, 3], True)
    assert handle.result(timeout=15) == ["0", "StepFailed", "2", "3"]


def test_child_workflows_fan_out_too(engine: duralog.Engine) -> None:
    assert engine.run(children, 3, timeout=15) == [100, 121, 144]
    assert len(engine.list(name="mp-child")) == 3


def test_outside_a_workflow_the_bound_holds_on_the_current_loop() -> None:
    state = {"now": 0, "max": 0}

    async def visit(n: int) -> int:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.001)
        state["now"] -= 1
        return -n

    assert asyncio.run(duralog.map(visit, range(10), max_parallel=4)) == [-n for n in range(10)]
    assert state["max"] == 4
    assert asyncio.run(duralog.map(visit, [])) == []


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_max_parallel_must_be_a_positive_int(limit: object) -> None:
    with pytest.raises(duralog.ConfigurationError, match="max_parallel"):
        asyncio.run(duralog.map(mp_square, [1], max_parallel=limit))  # type: ignore[call-overload]
