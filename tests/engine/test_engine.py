"""The engine end to end on real SQLite files: starts, results, retries, timers, markers."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
import uuid

import msgspec
import pytest
from support import PATIENCE, wait_for

import duralog
from duralog.store.events import StepCompleted, StepFailed, StepRetrying, StepStarted


@dataclasses.dataclass
class Receipt:
    order_id: str
    cents: int


class Parcel(msgspec.Struct):
    id: str
    at: dt.datetime


ran: list[str] = []


@duralog.step
def make_receipt(order_id: str, cents: int) -> Receipt:
    ran.append(f"receipt {order_id}")
    return Receipt(order_id, cents)


@duralog.step
async def make_parcel(order_id: str) -> Parcel:
    return Parcel(f"p-{order_id}", dt.datetime(2026, 1, 2, tzinfo=dt.UTC))


@duralog.workflow
async def typed_flow(order_id: str, cents: int) -> str:
    receipt = await make_receipt(order_id, cents)
    parcel = await make_parcel(order_id)
    assert isinstance(receipt, Receipt) and isinstance(parcel, Parcel)
    assert isinstance(parcel.at, dt.datetime)
    return f"{receipt.order_id}:{receipt.cents}:{parcel.id}"


def test_run_returns_typed_results(engine: duralog.Engine) -> None:
    assert engine.run(typed_flow, "o1", 250, timeout=10) == "o1:250:p-o1"


def test_start_is_idempotent_per_id(engine: duralog.Engine) -> None:
    ran.clear()
    first = engine.start(typed_flow, "o2", 1, id="order-o2")
    assert first.result(timeout=10) == "o2:1:p-o2"
    again = engine.start(typed_flow, "o2", 1, id="order-o2")
    assert again.id == "order-o2"
    assert again.result(timeout=10) == "o2:1:p-o2"
    assert ran == ["receipt o2"]
    assert len(engine.list(name="typed_flow")) == 1


def test_same_id_for_another_workflow_is_refused(engine: duralog.Engine) -> None:
    engine.run(typed_flow, "o3", 1, id="shared-id", timeout=10)
    with pytest.raises(duralog.WorkflowIdInUse, match="shared-id"):
        engine.start(sleepy, 0.0, id="shared-id")


def test_history_status_and_list(engine: duralog.Engine) -> None:
    handle = engine.start(typed_flow, "o4", 7)
    handle.result(timeout=10)
    assert handle.status() is duralog.WorkflowStatus.COMPLETED
    kinds = [e.kind for e in handle.history()]
    assert kinds[0] == "WorkflowStarted" and kinds[-1] == "WorkflowCompleted"
    assert [e.seq for e in handle.history()] == list(range(1, len(kinds) + 1))
    assert any(r.id == handle.id for r in engine.list(status="COMPLETED"))


def test_unknown_id_is_a_clear_error(engine: duralog.Engine) -> None:
    with pytest.raises(duralog.WorkflowNotFound, match="no-such-id"):
        engine.get("no-such-id")


attempts: dict[str, int] = {}


@duralog.step(retry=duralog.RetryPolicy(max_attempts=4, initial_interval=0.01, jitter=False))
def flaky(key: str, fail_times: int) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    assert duralog.step_info().attempt == attempts[key]
    if attempts[key] <= fail_times:
        raise ConnectionError(f"attempt {attempts[key]} failed")
    return f"ok after {attempts[key]}"


@duralog.step(retry=duralog.RetryPolicy(max_attempts=5, non_retryable=(ValueError,)))
def invalid(key: str) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    raise ValueError("bad card number")


@duralog.workflow
async def retrying(key: str, fail_times: int) -> str:
    return await flaky(key, fail_times)


@duralog.workflow
async def catches(key: str) -> str:
    try:
        await invalid(key)
    except duralog.StepFailed as exc:
        return f"caught {exc.error.type}: {exc.error.message} after {exc.attempts}"
    return "not reached"


@duralog.workflow
async def fails(key: str) -> str:
    return await invalid(key)


def test_retries_are_recorded_attempt_by_attempt(engine: duralog.Engine) -> None:
    key = uuid.uuid4().hex
    handle = engine.start(retrying, key, 2)
    assert handle.result(timeout=10) == "ok after 3"
    events = [e.event for e in handle.history()]
    assert [e.attempt for e in events if isinstance(e, StepStarted)] == [1, 2, 3]
    retries = [e for e in events if isinstance(e, StepRetrying)]
    assert [r.attempt for r in retries] == [1, 2]
    assert retries[0].error.type == "ConnectionError"
    assert "attempt 1 failed" in retries[0].error.message
    assert "raise ConnectionError" in retries[0].error.traceback


def test_exhausted_retries_fail_the_workflow_with_the_cause(engine: duralog.Engine) -> None:
    key = uuid.uuid4().hex
    handle = engine.start(retrying, key, 10)
    with pytest.raises(duralog.WorkflowFailed) as info:
        handle.result(timeout=10)
    assert attempts[key] == 4
    assert "flaky" in str(info.value) and "ConnectionError" in str(info.value)
    assert handle.status() is duralog.WorkflowStatus.FAILED
    assert any(isinstance(e.event, StepFailed) for e in handle.history())


def test_non_retryable_errors_fail_at_once_and_can_be_caught(engine: duralog.Engine) -> None:
    key = uuid.uuid4().hex
    result = engine.run(catches, key, timeout=10)
    assert result == "caught ValueError: bad card number after 1"
    assert attempts[key] == 1


def test_failed_workflow_raises_workflow_failed(engine: duralog.Engine) -> None:
    with pytest.raises(duralog.WorkflowFailed) as info:
        engine.run(fails, uuid.uuid4().hex, timeout=10)
    assert info.value.cause.type == "duralog.errors.StepFailed"
    assert "bad card number" in info.value.cause.message


@duralog.step(timeout=0.2, retry=duralog.RetryPolicy(max_attempts=1))
async def too_slow() -> None:
    await asyncio.sleep(5)


released = threading.Event()


@duralog.step(timeout=1.0, retry=duralog.RetryPolicy(max_attempts=2, initial_interval=0.01))
def too_slow_sync() -> str:
    if duralog.step_info().attempt == 1:
        released.wait(PATIENCE)  # held past its timeout (the test lets it go at the end)
    return "second attempt"


@duralog.workflow
async def times_out() -> str:
    try:
        await too_slow()
    except duralog.StepFailed as exc:
        return exc.error.message
    return "no timeout"


@duralog.workflow
async def times_out_sync() -> str:
    return await too_slow_sync()


def test_step_timeouts(engine: duralog.Engine) -> None:
    message = engine.run(times_out, timeout=10)
    assert "did not finish within its timeout of 0.2s" in message
    released.clear()
    try:
        assert engine.run(times_out_sync, timeout=PATIENCE) == "second attempt"
    finally:
        released.set()


class Unencodable:
    pass


@duralog.step(retry=duralog.RetryPolicy(max_attempts=3))
def returns_object() -> Unencodable:
    return Unencodable()


@duralog.workflow
async def bad_result() -> str:
    try:
        await returns_object()
    except duralog.StepFailed as exc:
        return exc.error.message
    return "recorded?"


def test_unencodable_result_fails_the_step_with_a_clear_message(engine: duralog.Engine) -> None:
    message = engine.run(bad_result, timeout=10)
    assert "returns_object" in message and "Unencodable" in message
    assert "msgspec can encode" in message


@duralog.workflow
async def sleepy(seconds: float) -> float:
    start = duralog.now()
    await duralog.sleep(dt.timedelta(seconds=seconds))
    return (duralog.now() - start).total_seconds()


def test_durable_sleep_waits_and_is_recorded(engine: duralog.Engine) -> None:
    handle = engine.start(sleepy, 0.3)
    assert handle.result(timeout=PATIENCE) > 0
    kinds = {e.kind: e for e in handle.history()}
    begun, started, fired = kinds["WorkflowStarted"], kinds["TimerStarted"], kinds["TimerFired"]
    # The deadline counts from the workflow's own time (here its start), not from when
    # a busy worker got to run its code; and the timer fires at it or after, never before.
    assert started.event.fire_at == pytest.approx(begun.at + 0.3)  # type: ignore[union-attr]
    assert fired.at >= started.event.fire_at  # type: ignore[union-attr]


@duralog.workflow
async def markers() -> list[str]:
    return [
        str(duralog.uuid4()),
        str(duralog.random()),
        duralog.now().isoformat(),
        str(duralog.side_effect(lambda: 42)),
    ]


def test_markers_are_recorded_and_replayed(engine: duralog.Engine) -> None:
    from duralog.replay.checker import replay_history

    handle = engine.start(markers)
    values = handle.result(timeout=10)
    recorded = [e for e in handle.history() if e.kind == "MarkerRecorded"]
    assert [e.event.marker for e in recorded] == ["uuid", "random", "now", "side_effect"]  # type: ignore[union-attr]
    assert values[3] == "42"
    instance, _ = replay_history(markers, handle.history())
    assert instance.finished


barrier = threading.Barrier(3, timeout=PATIENCE)


@duralog.step
def meet(i: int) -> int:
    barrier.wait()  # only passes if all three run at once
    return i * i


@duralog.workflow
async def fan_out() -> list[int]:
    return list(await asyncio.gather(meet(1), meet(2), meet(3)))


def test_gather_runs_sync_steps_concurrently(engine: duralog.Engine) -> None:
    assert engine.run(fan_out, timeout=10) == [1, 4, 9]


@duralog.step
def key_of() -> str:
    return duralog.step_info().idempotency_key


@duralog.workflow
async def keys() -> list[str]:
    return [await key_of(), await key_of()]


def test_idempotency_keys_are_workflow_id_run_id_and_seq(engine: duralog.Engine) -> None:
    handle = engine.start(keys, id="k-1")
    started = handle.history()[0].event
    assert isinstance(started, duralog.store.events.WorkflowStarted)
    run_id = started.run_id
    assert len(run_id) == 16
    assert handle.result(timeout=10) == [f"k-1:{run_id}:2", f"k-1:{run_id}:5"]


def test_result_timeout_is_a_timeout_error(engine: duralog.Engine) -> None:
    handle = engine.start(sleepy, 30.0)
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.1s"):
        handle.result(timeout=0.1)


def test_step_called_outside_a_workflow_just_runs() -> None:
    receipt = asyncio.run(make_receipt("direct", 5))
    assert receipt == Receipt("direct", 5)
    assert make_receipt.fn("fn", 1) == Receipt("fn", 1)


def test_result_values_survive_the_snapshot(db: str) -> None:
    with duralog.Engine(db, durability="normal", snapshot_every=2) as engine:
        handle = engine.start(typed_flow, "o9", 9)
        assert handle.result(timeout=10) == "o9:9:p-o9"
        assert engine.store.load_snapshot(handle.id) is not None
        completed = [e for e in handle.history() if isinstance(e.event, StepCompleted)]
        assert len(completed) == 2


@duralog.step(name="engine_test.count", inline=True)
def count(i: int) -> int:
    return i


@duralog.workflow(name="engine_test.counting")
async def counting(n: int) -> int:
    return sum([await count(i) for i in range(n)])


def test_a_finished_workflow_gets_no_final_snapshot(db: str) -> None:
    def snapshot_of(engine: duralog.Engine, workflow_id: str) -> int | None:
        found = engine.store.load_snapshot(workflow_id)
        return None if found is None else found.seq

    with duralog.Engine(db, durability="normal") as engine:  # snapshot_every=500
        short = engine.start(counting, 3)
        assert short.result(timeout=10) == 3
        assert snapshot_of(engine, short.id) is None
        assert short.state().last_seq == len(short.history())  # folded from the log
    with duralog.Engine(db, durability="normal", snapshot_every=8) as engine:
        long = engine.start(counting, 40)  # 122 events: snapshots on the way only
        assert long.result(timeout=10) == sum(range(40))
        taken = snapshot_of(engine, long.id)
        assert taken is not None and 8 <= taken < len(long.history())


sibling_started = threading.Event()
sibling_ended: list[str] = []


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def fails_fast() -> None:
    assert sibling_started.wait(PATIENCE)  # fail while the sibling runs
    raise KeyError("gone")


@duralog.step
async def slow_sibling() -> str:
    sibling_started.set()
    try:
        await asyncio.sleep(3600)  # it ends only by a cancellation
    except asyncio.CancelledError:
        sibling_ended.append("cancelled")
        raise
    return "late"


@duralog.workflow
async def gather_fails() -> list[str]:
    return list(await asyncio.gather(fails_fast(), slow_sibling()))  # type: ignore[arg-type]


def test_nothing_follows_the_terminal_event(db: str) -> None:
    sibling_started.clear()
    sibling_ended.clear()
    with duralog.Engine(db, durability="normal") as engine:
        handle = engine.start(gather_fails)
        with pytest.raises(duralog.WorkflowFailed, match="gone"):
            handle.result(timeout=PATIENCE)
        wait_for(lambda: sibling_ended == ["cancelled"])  # by the failure, not by close()
    # The engine is closed: everything it was ever going to append is on disk.
    with duralog.Engine(db, worker=False) as engine:
        assert engine.get(handle.id).history()[-1].kind == "WorkflowFailed"
