"""A step or child is scheduled when the awaiting task first runs its call, never at the
call itself: a call never awaited, or whose task is cancelled before it starts, records
nothing and runs nothing (Temporal's semantics). Histories recorded in event format 1,
which scheduled at the call, replay as they were recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support import load_app

import duralog
from duralog.replay.checker import check
from duralog.replay.definitions import Registry, Workflow
from duralog.replay.history import History, load_history
from duralog.store import events as ev

ran: list[str] = []


@duralog.step(name="lazy_note")
def note(what: str) -> str:
    ran.append(what)
    return what


@duralog.workflow(name="lazy_called_early")
async def called_early() -> str:
    later = note("late")  # called before the timer, awaited after it
    await asyncio.sleep(0.01)
    return await later


@duralog.workflow(name="lazy_cancelled_before_start")
async def cancelled_before_start() -> str:
    task = asyncio.ensure_future(note("cancelled"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return await note("kept")


@duralog.workflow(name="lazy_child")
async def child(n: int) -> int:
    return n


@duralog.workflow(name="lazy_child_cancelled")
async def child_cancelled_before_start() -> str:
    task = asyncio.ensure_future(child(1))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return "done"


@duralog.workflow(name="lazy_never_awaited")
async def never_awaited() -> str:
    forgotten = note("forgotten")
    del forgotten  # never awaited: nothing is recorded and nothing runs
    return await note("awaited")


def decisions(handle: duralog.WorkflowHandle[object]) -> list[str]:
    return [
        f"{e.kind} {getattr(e.event, 'name', '')}".rstrip()
        for e in handle.history()
        if isinstance(e.event, ev.DECISIONS)
    ]


def test_a_step_is_scheduled_when_it_is_awaited(engine: duralog.Engine) -> None:
    handle = engine.start(called_early, id="early-1")
    assert handle.result(timeout=30) == "late"
    assert decisions(handle) == ["TimerStarted", "StepScheduled lazy_note", "WorkflowCompleted"]


def test_a_step_whose_task_is_cancelled_before_it_starts_never_runs(
    engine: duralog.Engine,
) -> None:
    ran.clear()
    handle = engine.start(cancelled_before_start, id="cancel-1")
    assert handle.result(timeout=30) == "kept"
    assert ran == ["kept"]
    assert decisions(handle) == ["StepScheduled lazy_note", "WorkflowCompleted"]


def test_a_child_whose_task_is_cancelled_before_it_starts_is_never_created(
    engine: duralog.Engine,
) -> None:
    handle = engine.start(child_cancelled_before_start, id="parent-1")
    assert handle.result(timeout=30) == "done"
    assert decisions(handle) == ["WorkflowCompleted"]
    assert [r.id for r in engine.list() if r.id.startswith("parent-1/")] == []


def test_a_step_never_awaited_is_neither_recorded_nor_run(
    engine: duralog.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    ran.clear()
    handle = engine.start(never_awaited, id="never-1")
    assert handle.result(timeout=30) == "awaited"
    assert ran == ["awaited"]
    assert decisions(handle) == ["StepScheduled lazy_note", "WorkflowCompleted"]
    # The worker says so, naming the step (logged before the result is released).
    assert "never awaited, which were neither recorded nor run: lazy_note" in caplog.text


def test_a_new_history_replays_with_the_lazy_order(engine: duralog.Engine) -> None:
    handle = engine.start(called_early, id="early-2")
    handle.result(timeout=30)
    history = History("early-2", "lazy_called_early", handle.history())
    assert check(history, [called_early]).ok


def test_a_format_1_history_scheduled_at_the_call_still_replays() -> None:
    path = Path(__file__).parents[1] / "histories" / "format1" / "called_early.json"
    history = load_history(path.read_bytes())
    started = history.events[0].event
    assert isinstance(started, ev.WorkflowStarted) and started.format == 1
    # Recorded by a duralog that scheduled at the call: the step before the timer.
    assert [e.kind for e in history.events][1:3] == ["StepScheduled", "TimerStarted"]

    # The golden workflows' step (tests/histories/workflows.py), as they recorded it.
    ship = load_app(Path(__file__).parents[1] / "cli" / "shop_steps.py").shop("golden").ship

    async def called_early_golden(order: str) -> str:
        shipping = ship(order)
        await asyncio.sleep(0.01)
        return await shipping

    registry = Registry()
    registry.add(Workflow(called_early_golden, name="golden_called_early"))
    report = check(history, registry)
    assert report.ok, report.error
    assert report.finished
