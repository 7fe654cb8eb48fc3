"""Endings that hold: step and workflow timeouts whatever the code does with the
cancellation, a cancelled parent that waits for its children's cleanup, and a paused
parent that starts nothing and pauses its children. Every cleanup is bounded by the
engine's ``cleanup_grace``."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import wait_for

import duralog
from duralog.replay.checker import replay_history

cleaned: list[str] = []
gates: dict[str, threading.Event] = {}


def gate(name: str) -> threading.Event:
    return gates.setdefault(name, threading.Event())


@pytest.fixture
def quick_grace(tmp_path: Path) -> Iterator[duralog.Engine]:
    """An engine whose cleanup grace period is short (half a second)."""
    db = str(tmp_path / "log.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05, cleanup_grace=0.5) as e:
        yield e
    for event in gates.values():
        event.set()  # free any step thread still waiting
    gates.clear()


@duralog.step
def cleanup(what: str) -> str:
    cleaned.append(what)
    return what


@duralog.step
def blocked(name: str) -> str:
    assert gate(name).wait(60), f"gate {name} never opened"
    return name


# -- step timeouts ---------------------------------------------------------------


@duralog.step(timeout=0.2, retry=duralog.RetryPolicy(max_attempts=2, initial_interval=0.01))
async def swallows_its_timeout() -> str:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        return "I ignored the cancellation"
    return "slept"


@duralog.step(timeout=0.2, retry=duralog.RetryPolicy(max_attempts=1))
async def keeps_going() -> str:
    for _ in range(3):  # ignores the cancellation three times, then gives up
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            continue
    return "finished late"


@duralog.workflow(name="ending_stubborn_step")
async def stubborn_step(which: str) -> str:
    step = swallows_its_timeout if which == "swallows" else keeps_going
    try:
        return await step()
    except duralog.StepFailed as exc:
        return f"{exc.error.type} after {exc.attempts} attempts"


@pytest.mark.parametrize(("which", "attempts"), [("swallows", 2), ("keeps going", 1)])
def test_a_step_past_its_timeout_fails_whatever_its_code_does(
    engine: duralog.Engine, which: str, attempts: int
) -> None:
    handle = engine.start(stubborn_step, which)
    assert handle.result(timeout=30) == f"TimeoutError after {attempts} attempts"
    kinds = [e.kind for e in handle.history()]
    assert "StepCompleted" not in kinds
    assert kinds.count("StepRetrying") == attempts - 1


# -- workflow timeouts -----------------------------------------------------------


@duralog.workflow(name="ending_cleans_up_and_returns")
async def cleans_up_and_returns() -> str:
    try:
        await duralog.sleep(3600)
    except asyncio.CancelledError:
        await cleanup("released the reservation")
        return "returned normally"  # after its deadline: still a timeout
    return "woke up"


@duralog.workflow(name="ending_overstays")
async def overstays_its_cleanup() -> str:
    try:
        await duralog.sleep(3600)
    except asyncio.CancelledError:
        await duralog.sleep(3600)  # a "cleanup" that never ends
    return "never"


def test_a_workflow_that_returns_after_its_deadline_fails_with_workflow_timeout(
    engine: duralog.Engine,
) -> None:
    cleaned.clear()
    handle = engine.start(cleans_up_and_returns, timeout=dt.timedelta(seconds=0.3))
    with pytest.raises(duralog.WorkflowFailed) as info:
        handle.result(timeout=30)
    assert info.value.cause.type == "duralog.errors.WorkflowTimeout"
    assert cleaned == ["released the reservation"]  # its cleanup ran first
    instance, _ = replay_history(cleans_up_and_returns, handle.history())
    assert instance.finished


def test_a_cleanup_past_the_grace_period_is_cut_short(quick_grace: duralog.Engine) -> None:
    handle = quick_grace.start(overstays_its_cleanup, timeout=0.3)
    with pytest.raises(duralog.WorkflowFailed) as info:
        handle.result(timeout=30)
    assert info.value.cause.type == "duralog.errors.WorkflowTimeout"
    assert "did not finish within its grace period" in info.value.cause.message
    history = handle.history()
    reasons = [e.event.reason for e in history if e.kind == "CancelRequested"]  # type: ignore[union-attr]
    assert reasons == ["workflow timeout", "cleanup grace period over"]
    instance, _ = replay_history(overstays_its_cleanup, history)
    assert instance.finished


# -- parents and children --------------------------------------------------------


@duralog.workflow(name="ending_child_with_cleanup")
async def child_with_cleanup(name: str) -> str:
    try:
        await duralog.sleep(3600)
    except asyncio.CancelledError:
        await blocked(name)  # its cleanup: done when the test opens the gate
        raise
    return "woke up"


@duralog.workflow(name="ending_parent")
async def parent(name: str) -> str:
    return await child_with_cleanup(name)


def test_a_cancelled_parent_waits_for_its_childs_cleanup(engine: duralog.Engine) -> None:
    handle = engine.start(parent, "cleanup-1", id="parent-1")
    wait_for(lambda: engine.list(name="ending_child_with_cleanup"))
    child = engine.get("parent-1/2")
    wait_for(lambda: "TimerStarted" in [e.kind for e in child.history()])
    handle.cancel("order withdrawn")
    # The child's cleanup step runs, and waits for the gate.
    wait_for(lambda: "StepStarted" in [e.kind for e in child.history()])
    handle.signal("noise")  # a later event in the parent's log: it is still waiting
    wait_for(lambda: "SignalReceived" in [e.kind for e in handle.history()])
    assert handle.status() is duralog.WorkflowStatus.RUNNING
    gate("cleanup-1").set()
    with pytest.raises(duralog.WorkflowFailed):
        handle.result(timeout=30)
    assert handle.status() is duralog.WorkflowStatus.CANCELLED
    child_kinds = [e.kind for e in child.history()]
    assert "StepCompleted" in child_kinds  # the cleanup finished: nothing killed it
    assert child.status() is duralog.WorkflowStatus.CANCELLED
    parent_kinds = [e.kind for e in handle.history()]
    assert parent_kinds.index("ChildFailed") < parent_kinds.index("WorkflowCancelled")


def test_a_childs_cleanup_past_the_grace_period_is_cut_short(
    quick_grace: duralog.Engine,
) -> None:
    handle = quick_grace.start(parent, "never-opened", id="parent-2")
    wait_for(lambda: quick_grace.list(name="ending_child_with_cleanup"))
    child = quick_grace.get("parent-2/2")
    wait_for(lambda: "TimerStarted" in [e.kind for e in child.history()])
    handle.cancel("order withdrawn")
    with pytest.raises(duralog.WorkflowFailed):
        handle.result(timeout=30)
    assert handle.status() is duralog.WorkflowStatus.CANCELLED
    wait_for(lambda: child.status().is_terminal, timeout=30)
    assert child.status() is duralog.WorkflowStatus.CANCELLED
    reasons = [e.event.reason for e in child.history() if e.kind == "CancelRequested"]  # type: ignore[union-attr]
    assert reasons[-1] == "cleanup grace period over"


@duralog.workflow(name="ending_paused_child")
async def working_child(name: str) -> str:
    return await blocked(name)


@duralog.workflow(name="ending_paused_parent")
async def parent_that_starts_a_child_later(name: str) -> str:
    await blocked(f"{name}-first")
    return await working_child(f"{name}-child")


def test_a_paused_parent_starts_no_child_until_resumed(engine: duralog.Engine) -> None:
    handle = engine.start(parent_that_starts_a_child_later, "p3", id="parent-3")
    wait_for(lambda: "StepStarted" in [e.kind for e in handle.history()])
    handle.pause()
    wait_for(lambda: handle.status() is duralog.WorkflowStatus.PAUSED)
    gate("p3-first").set()  # the running step finishes; the code then calls the child
    wait_for(lambda: "ChildStarted" in [e.kind for e in handle.history()])
    handle.resume()
    gate("p3-child").set()
    assert handle.result(timeout=30) == "p3-child"
    history = handle.history()
    resumed_at = next(e.at for e in history if e.kind == "ResumeRequested")
    started = next(e.event for e in history if e.kind == "ChildStarted")
    created = engine.get(started.child_id).history()[0]  # type: ignore[union-attr]
    assert created.at >= resumed_at  # the child was created only after the resume


def test_pausing_a_parent_pauses_its_running_children(engine: duralog.Engine) -> None:
    handle = engine.start(parent, "p4", id="parent-4")
    wait_for(lambda: engine.list(name="ending_child_with_cleanup"))
    child = engine.get("parent-4/2")
    handle.pause()
    wait_for(lambda: child.status() is duralog.WorkflowStatus.PAUSED)
    handle.resume()
    wait_for(lambda: child.status() is duralog.WorkflowStatus.RUNNING)
    kinds = [e.kind for e in child.history()]
    assert kinds.count("PauseRequested") == 1 and kinds.count("ResumeRequested") == 1
