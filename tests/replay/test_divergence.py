"""Replaying a history against changed code: what must agree, and what must be reported."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

import duralog
from duralog.replay.checker import replay_history
from duralog.replay.definitions import Registry, Workflow
from duralog.store.events import LogEntry, StepCompleted, StepScheduled


@duralog.step
def reserve(order: str) -> str:
    return f"reserved {order}"


@duralog.step
def charge(order: str) -> str:
    return f"charged {order}"


@duralog.step
def ship(order: str) -> str:
    return f"shipped {order}"


@duralog.step(name="charge")
def charge_new_body(order: str) -> str:
    return f"charged {order} (new implementation)"


@duralog.step(name="bill")
def bill(order: str) -> str:
    return f"billed {order}"


async def original(order: str) -> list[str]:
    return [await reserve(order), await charge(order), await ship(order)]


async def body_changed(order: str) -> list[str]:
    return [await reserve(order), await charge_new_body(order), await ship(order)]


async def renamed(order: str) -> list[str]:
    return [await reserve(order), await bill(order), await ship(order)]


async def removed(order: str) -> list[str]:
    return [await reserve(order), await ship(order)]


async def added(order: str) -> list[str]:
    return [await reserve(order), await charge(order), await charge(order), await ship(order)]


async def reordered(order: str) -> list[str]:
    return [await charge(order), await reserve(order), await ship(order)]


async def sleep_instead(order: str) -> list[str]:
    first = await reserve(order)
    await duralog.sleep(1)
    return [first, await ship(order)]


def as_workflow(fn: Any) -> Workflow[Any, Any]:
    return Workflow(fn, name="order")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> list[LogEntry]:
    registry = Registry()
    registry.add(as_workflow(original))
    db = str(tmp_path_factory.mktemp("div") / "log.db")
    with duralog.Engine(db, durability="normal", registry=registry) as engine:
        handle = engine.start("order", "o-1")
        assert handle.result(timeout=10) == ["reserved o-1", "charged o-1", "shipped o-1"]
        return handle.history()


def test_same_code_replays(history: list[LogEntry]) -> None:
    instance, state = replay_history(as_workflow(original), history)
    assert instance.finished and state.status == "COMPLETED"


def test_only_a_body_changed_replays(history: list[LogEntry]) -> None:
    instance, _ = replay_history(as_workflow(body_changed), history)
    assert instance.finished


def seq_of(history: list[LogEntry], name: str) -> int:
    return next(
        e.seq for e in history if isinstance(e.event, StepScheduled) and e.event.name == name
    )


@pytest.mark.parametrize(
    ("code", "recorded", "attempted", "at_step"),
    [
        (renamed, "StepScheduled charge", "StepScheduled bill", "charge"),
        (removed, "StepScheduled charge", "StepScheduled ship", "charge"),
        (added, "StepScheduled ship", "StepScheduled charge", "ship"),
        (reordered, "StepScheduled reserve", "StepScheduled charge", "reserve"),
        (sleep_instead, "StepScheduled charge", "TimerStarted", "charge"),
    ],
)
def test_changed_decisions_are_reported(
    history: list[LogEntry], code: Any, recorded: str, attempted: str, at_step: str | None
) -> None:
    with pytest.raises(duralog.NondeterminismError) as info:
        replay_history(as_workflow(code), history, workflow_id="order-1")
    error = info.value
    assert error.workflow_id == "order-1"
    assert error.recorded == recorded
    assert error.attempted == attempted
    expected_seq = seq_of(history, at_step) if at_step else history[-1].seq
    assert error.seq == expected_seq
    assert error.location is not None and __file__ in error.location
    assert "duralog.patched" in str(error)


async def stops_early(order: str) -> list[str]:
    return [await reserve(order)]


def test_a_recorded_decision_the_code_no_longer_makes(history: list[LogEntry]) -> None:
    with pytest.raises(duralog.NondeterminismError) as info:
        replay_history(as_workflow(stops_early), history)
    assert info.value.recorded == "StepScheduled charge"
    assert info.value.attempted == "WorkflowCompleted"


@duralog.step
def jittery(i: int) -> int:
    time.sleep(random.random() * 0.01)
    return i


@duralog.workflow
async def gathered(n: int) -> list[int]:
    first = list(await asyncio.gather(*(jittery(i) for i in range(n))))
    second = list(await asyncio.gather(*(jittery(i + n) for i in range(n))))
    return first + second


def test_gather_over_steps_finishing_in_random_order_replays(engine: duralog.Engine) -> None:
    # dbos-transact-py#688: results recorded in completion order must replay.
    orders = set()
    for _ in range(5):
        handle = engine.start(gathered, 6)
        assert handle.result(timeout=20) == list(range(12))
        history = handle.history()
        orders.add(tuple(e.event.step_seq for e in history if isinstance(e.event, StepCompleted)))
        instance, _ = replay_history(gathered, history)
        assert instance.finished
    assert len(orders) > 1, "the steps always finished in the same order; the test proves little"


def test_gather_replays_with_results_in_reverse_order() -> None:
    # A history written by hand: three steps scheduled together, completed backwards.
    import msgspec

    from duralog.store import events as ev

    def raw(value: object) -> msgspec.Raw:
        return msgspec.Raw(msgspec.json.encode(value))

    entries = [LogEntry(1, 10.0, ev.WorkflowStarted(name="gathered", args=raw([3])))]
    for i in range(3):
        entries.append(LogEntry(2 + i, 10.0, ev.StepScheduled(name="jittery", args=raw([i]))))
    for i, step_seq in enumerate((4, 3, 2)):
        entries.append(
            LogEntry(5 + i, 11.0 + i, ev.StepCompleted(step_seq=step_seq, result=raw(step_seq - 2)))
        )
    instance, _ = replay_history(gathered, entries)
    assert not instance.finished  # it now waits on the second gather, which is not recorded
    assert not instance.is_replaying


async def patched_reorder(order: str) -> list[str]:
    if duralog.patched("charge-first"):
        first = await charge(order)
        return [await reserve(order), first, await ship(order)]
    return [await reserve(order), await charge(order), await ship(order)]


def test_patched_keeps_old_histories_replaying(history: list[LogEntry], db: str) -> None:
    # The history recorded before the change replays the old path...
    instance, _ = replay_history(as_workflow(patched_reorder), history)
    assert instance.finished
    # ...while a new run takes the new path, records the marker, and replays too.
    registry = Registry()
    registry.add(as_workflow(patched_reorder))
    with duralog.Engine(db, durability="normal", registry=registry) as engine:
        handle = engine.start("order", "o-2")
        assert handle.result(timeout=10) == ["reserved o-2", "charged o-2", "shipped o-2"]
        new_history = handle.history()
    names = [e.event.name for e in new_history if isinstance(e.event, StepScheduled)]
    assert names == ["charge", "reserve", "ship"]
    assert any(e.kind == "MarkerRecorded" for e in new_history)
    instance, _ = replay_history(as_workflow(patched_reorder), new_history)
    assert instance.finished


async def patch_deprecated(order: str) -> list[str]:
    duralog.deprecate_patch("charge-first")
    first = await charge(order)
    return [await reserve(order), first, await ship(order)]


def test_deprecate_patch_replays_histories_that_took_the_new_path(
    history: list[LogEntry], db: str
) -> None:
    registry = Registry()
    registry.add(as_workflow(patched_reorder))
    with duralog.Engine(db, durability="normal", registry=registry) as engine:
        handle = engine.start("order", "o-3")
        handle.result(timeout=10)
        patched_history = handle.history()
    instance, _ = replay_history(as_workflow(patch_deprecated), patched_history)
    assert instance.finished
    with pytest.raises(duralog.NondeterminismError):  # an old-path history cannot replay
        replay_history(as_workflow(patch_deprecated), history)


async def parallel(order: str) -> list[str]:
    return list(await asyncio.gather(reserve(order), charge(order), ship(order)))


async def parallel_changed(order: str) -> list[str]:
    return list(await asyncio.gather(bill(order), bill(order), bill(order)))


async def parallel_through_map(order: str) -> list[str]:
    return await duralog.map(bill, [order, order, order], max_parallel=3)


@pytest.fixture(scope="module")
def parallel_history(tmp_path_factory: pytest.TempPathFactory) -> list[LogEntry]:
    registry = Registry()
    registry.add(Workflow(parallel, name="order"))
    db = str(tmp_path_factory.mktemp("par") / "log.db")
    with duralog.Engine(db, durability="normal", registry=registry) as engine:
        handle = engine.start("order", "o-2")
        handle.result(timeout=10)
        return handle.history()


@pytest.mark.parametrize("code", [parallel_changed, parallel_through_map])
def test_parallel_divergences_report_the_first_mismatch(
    parallel_history: list[LogEntry], code: Any
) -> None:
    with pytest.raises(duralog.NondeterminismError) as info:
        replay_history(Workflow(code, name="order"), parallel_history)
    # Every task of the turn diverges; the first one (reserve, seq 2) is the one reported.
    assert (info.value.recorded, info.value.attempted) == (
        "StepScheduled reserve",
        "StepScheduled bill",
    )
    assert info.value.seq == seq_of(parallel_history, "reserve")
    # map() makes the calls in duralog's own tasks: the location falls back to the
    # workflow's definition, never to whatever drives the event loop (this test).
    assert info.value.location is not None and __file__ in info.value.location
    if code is parallel_through_map:
        defined = f"{__file__}:{parallel_through_map.__code__.co_firstlineno}"
        assert info.value.location == defined
