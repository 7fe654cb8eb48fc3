"""engine.subscribe: every committed event, off the worker, bounded, never breaking it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import duralog
from duralog.observe.subscribe import CommittedEvent
from duralog.store.events import ChildStarted

Wait = Callable[..., Any]


@duralog.step
def sub_double(x: int) -> int:
    return 2 * x


@duralog.step(retry=duralog.RetryPolicy(max_attempts=2, initial_interval=0.01))
def sub_flaky(x: int) -> int:
    if duralog.step_info().attempt == 1:
        raise ConnectionError("first attempt fails")
    return x


@duralog.workflow(name="sub_child")
async def sub_child(x: int) -> int:
    return await sub_double(x)


@duralog.workflow(name="sub_parent")
async def sub_parent(x: int) -> int:
    y = await sub_flaky(x)
    await duralog.sleep(0.01)
    z = await sub_child(y)
    return await sub_double(z)


@duralog.workflow(name="sub_many")
async def sub_many(n: int) -> int:
    total = 0
    for i in range(n):
        total += await sub_double(i)
    return total


@duralog.workflow(name="sub_again")
async def sub_again(n: int) -> int:
    await sub_double(n)
    if n:
        duralog.continue_as_new(n - 1)
    return n


def test_every_committed_event_arrives_in_order_with_names(
    engine: duralog.Engine, wait_for: Wait
) -> None:
    seen: list[CommittedEvent] = []
    subscription = engine.subscribe(seen.append)
    handle = engine.start(sub_parent, 5, id="sub-1")
    assert handle.result(timeout=10) == 20
    (started,) = [e.event for e in handle.history() if isinstance(e.event, ChildStarted)]
    child = engine.get(started.child_id)
    assert child.result(timeout=10) == 10
    # A result can come back before its last commit reaches the subscribers: the
    # parent's end, the last event, is the witness that every other one has.
    wait_for(lambda: ("sub-1", "WorkflowCompleted") in [(e.workflow_id, e.kind) for e in seen])
    subscription.close()
    for wf in (handle, child):
        mine = [e for e in seen if e.workflow_id == wf.id]
        history = wf.history()
        assert [(e.seq, e.kind, e.at) for e in mine] == [(h.seq, h.kind, h.at) for h in history]
        assert all(e.committed_at is not None and e.committed_at >= e.at - 1 for e in mine)
        assert {e.workflow_name for e in mine} == {"sub_parent" if wf is handle else "sub_child"}
    steps = {(e.kind, e.step) for e in seen if e.workflow_id == "sub-1" and e.step}
    assert ("StepRetrying", "sub_flaky") in steps and ("StepCompleted", "sub_double") in steps
    assert all(e.step is None for e in seen if not e.kind.startswith("Step"))
    assert subscription.dropped == 0 and subscription.errors == 0


def test_iterate_filter_and_continue_as_new(engine: duralog.Engine) -> None:
    with engine.subscribe(kinds={"WorkflowStarted", "ContinuedAsNew"}) as sub:
        assert engine.start(sub_again, 2, id="again").result(timeout=10) == 0
        got = []
        while len(got) < 5:
            event = sub.get(timeout=10)
            assert event is not None
            got.append((event.kind, event.seq, event.workflow_id))
    # A run's last commit moves it to its archived id: that is where those events are.
    assert got == [
        ("WorkflowStarted", 1, "again"),
        ("ContinuedAsNew", 5, "again~run1"),
        ("WorkflowStarted", 1, "again"),
        ("ContinuedAsNew", 5, "again~run2"),
        ("WorkflowStarted", 1, "again"),
    ]
    with (
        engine.subscribe(workflow_id="again-2", kinds={"WorkflowCompleted"}) as only,
        engine.subscribe(kinds={"WorkflowCompleted"}) as later,  # offered each batch after
    ):
        engine.start(sub_again, 0, id="again-2").result(timeout=10)
        assert engine.start(sub_again, 0, id="other").result(timeout=10) == 0
        event = only.get(timeout=10)
        assert event is not None and event.workflow_id == "again-2"
        # Witness: the later subscription got other's end, so `only` was offered it.
        assert [e.workflow_id for e in (later.get(timeout=10), later.get(timeout=10)) if e] == [
            "again-2",
            "other",
        ]
        assert only.get(timeout=0) is None
    assert list(sub) == []  # closed and drained: iteration ends


def test_a_stuck_subscriber_neither_slows_nor_stops_the_worker(
    engine: duralog.Engine, caplog: pytest.LogCaptureFixture, wait_for: Wait
) -> None:
    release = threading.Event()
    received: list[CommittedEvent] = []

    def stuck(event: CommittedEvent) -> None:
        received.append(event)
        release.wait()

    subscription = engine.subscribe(stuck, max_pending=5, name="stuck-dashboard")
    fast = engine.subscribe(max_pending=100_000)  # offered each batch after `stuck`
    assert engine.run(sub_many, 30, timeout=10) == sum(2 * i for i in range(30))
    fast_saw: list[str] = []

    def fast_saw_the_end() -> bool:
        while (event := fast.get(timeout=0)) is not None:
            fast_saw.append(event.kind)
        return "WorkflowCompleted" in fast_saw

    # The result can come back before the last commit is offered to subscribers: once
    # `fast` has it, `stuck` was offered every event (and kept only 5 of them).
    wait_for(fast_saw_the_end)
    wait_for(lambda: received)
    assert len(received) == 1  # still inside its first call, and the workflow is done
    assert subscription.dropped > 0
    with caplog.at_level(logging.WARNING, logger="duralog.observe"):
        release.set()
        wait_for(lambda: "stuck-dashboard lagged" in caplog.text)
    assert f"lost {subscription.dropped} events" in caplog.text
    assert fast.dropped == 0  # one slow subscriber costs the others nothing
    subscription.close()
    fast.close()
    assert len(received) == 1 + 5  # its first event, then the queue it kept


def test_a_raising_callback_is_logged_and_counted(
    engine: duralog.Engine, caplog: pytest.LogCaptureFixture, wait_for: Wait
) -> None:
    def broken(event: CommittedEvent) -> None:
        raise RuntimeError(f"dashboard down at {event.kind}")

    with caplog.at_level(logging.ERROR, logger="duralog.observe"):
        subscription = engine.subscribe(broken)
        assert engine.run(sub_many, 3, timeout=10) == 6
        wait_for(lambda: subscription.errors >= 3)
        subscription.close()
    assert "dashboard down at WorkflowStarted" in caplog.text
    assert caplog.text.count("raised on") == 1  # the first error, not one per event


def test_closing_the_engine_ends_iteration_and_unsubscribing_stops_delivery(db: str) -> None:
    with duralog.Engine(db, durability="normal") as engine:
        sub = engine.subscribe()
        seen: list[CommittedEvent] = []
        gone = engine.subscribe(seen.append)
        gone.close()
        engine.run(sub_many, 2, timeout=10)
    kinds = [e.kind for e in sub]  # the engine closed it: the loop ends by itself
    assert kinds[0] == "WorkflowStarted" and kinds[-1] == "WorkflowCompleted"
    assert seen == []


def test_bad_arguments(engine: duralog.Engine) -> None:
    with pytest.raises(duralog.ConfigurationError, match="unknown event kinds"):
        engine.subscribe(kinds={"StepDone"})
    with pytest.raises(duralog.ConfigurationError, match="max_pending"):
        engine.subscribe(max_pending=0)
    with engine.subscribe(print) as printing, pytest.raises(duralog.ConfigurationError):
        iter(printing)
