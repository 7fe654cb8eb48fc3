"""Signals and cancellation: durable, buffered, consumed once, in order, from any process."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from typing import Any

import pytest
from support import PATIENCE, wait_for

import duralog
from duralog.replay.checker import replay_history

done: list[str] = []


@duralog.step
def record(what: str) -> str:
    done.append(what)
    return what


@duralog.workflow
async def approval(order: str) -> str:
    try:
        decision = await duralog.wait_signal("decision", timeout=dt.timedelta(seconds=30))
    except TimeoutError:
        return await record(f"{order}: timed out")
    return await record(f"{order}: {decision['verdict']} by {decision['by']}")


@duralog.workflow
async def collect(n: int) -> list[Any]:
    await duralog.wait_signal("go")  # the test has sent every item by then
    return [await duralog.wait_signal("item") for _ in range(n)]


@duralog.workflow
async def short_wait() -> str:
    try:
        await duralog.wait_signal("never", timeout=0.2)
    except TimeoutError:
        return "timed out"
    return "signalled"


@duralog.workflow
async def impatient() -> str:
    return str(await duralog.wait_signal("approval", timeout=0.2))


@duralog.workflow
async def cancellable() -> str:
    try:
        await duralog.sleep(3600)
    except asyncio.CancelledError:
        await record("cleanup")  # a cleanup step after the cancellation
        raise
    return "slept"


def test_a_signal_resolves_wait_signal(engine: duralog.Engine) -> None:
    handle = engine.start(approval, "o-1")
    handle.signal("decision", {"verdict": "approved", "by": "ana"})
    assert handle.result(timeout=PATIENCE) == "o-1: approved by ana"
    kinds = [e.kind for e in handle.history()]
    assert kinds.count("SignalReceived") == 1
    instance, _ = replay_history(approval, handle.history())
    assert instance.finished


def test_signals_are_buffered_consumed_once_and_in_order(engine: duralog.Engine) -> None:
    handle = engine.start(collect, 3)
    for i in range(4):  # one more than it reads: it stays unconsumed
        handle.signal("item", i)
    # Only now may it read them: it cannot finish (and refuse the 4th) before all 4 are in.
    handle.signal("go")
    assert handle.result(timeout=PATIENCE) == [0, 1, 2]
    assert [e.kind for e in handle.history()].count("SignalReceived") == 5


def test_wait_signal_timeout_is_a_durable_timer(engine: duralog.Engine) -> None:
    handle = engine.start(short_wait)
    assert handle.result(timeout=PATIENCE) == "timed out"
    assert "TimerFired" in [e.kind for e in handle.history()]


def test_a_wait_signal_timeout_names_the_signal_and_the_wait(engine: duralog.Engine) -> None:
    handle = engine.start(impatient)
    with pytest.raises(duralog.WorkflowFailed) as failed:
        handle.result(timeout=PATIENCE)
    assert failed.value.cause.type == "TimeoutError"
    assert failed.value.cause.message == "no signal 'approval' arrived within 0.2 s"


def test_cancel_runs_cleanup_and_ends_cancelled(engine: duralog.Engine) -> None:
    done.clear()
    handle = engine.start(cancellable)
    wait_for(lambda: "TimerStarted" in [e.kind for e in handle.history()])
    handle.cancel("customer asked")
    with pytest.raises(duralog.WorkflowFailed, match="cancelled"):
        handle.result(timeout=PATIENCE)
    assert handle.status() is duralog.WorkflowStatus.CANCELLED
    assert done == ["cleanup"]
    kinds = [e.kind for e in handle.history()]
    assert "CancelRequested" in kinds and kinds[-1] == "WorkflowCancelled"


def test_signal_to_a_finished_workflow_is_refused(engine: duralog.Engine) -> None:
    handle = engine.start(short_wait)
    handle.result(timeout=PATIENCE)
    with pytest.raises(duralog.DuralogError, match="already COMPLETED"):
        handle.signal("never")


def test_a_signal_from_another_process(db: str) -> None:
    with duralog.Engine(db, poll_interval=0.05) as engine:
        handle = engine.start(approval, "o-2", id="o-2")
        sender = subprocess.run(
            [
                sys.executable,
                "-m",
                "duralog",
                "--db",
                db,
                "signal",
                "o-2",
                "decision",
                "--payload",
                '{"verdict": "rejected", "by": "bo"}',
            ],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )
        assert sender.returncode == 0, sender.stderr
        assert handle.result(timeout=PATIENCE) == "o-2: rejected by bo"


@duralog.step
async def long_async() -> str:
    try:
        await asyncio.sleep(3600)  # it ends only by a cancellation
    except asyncio.CancelledError:
        done.append("step cancelled")
        raise
    return "finished"


@duralog.workflow
async def runs_long_step() -> str:
    return await long_async()


def test_cancel_stops_a_running_async_step(engine: duralog.Engine) -> None:
    done.clear()
    handle = engine.start(runs_long_step)
    wait_for(lambda: "StepStarted" in [e.kind for e in handle.history()])
    handle.cancel()
    with pytest.raises(duralog.WorkflowFailed, match="cancelled"):
        handle.result(timeout=PATIENCE)  # it did not wait for the hour-long step
    wait_for(lambda: done == ["step cancelled"])
    assert handle.history()[-1].kind == "WorkflowCancelled"
