"""``duralog.Saga``: compensations recorded as the workflow goes, run durably in reverse."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from support import PATIENCE, wait_for

import duralog
from duralog.replay.checker import check
from duralog.replay.history import History
from duralog.testing import history_kinds, step_names

RELEASE = threading.Event()


@pytest.fixture(autouse=True)
def fresh() -> None:
    RELEASE.clear()


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def sg_book(what: str) -> str:
    if what.startswith("broken"):
        raise RuntimeError(f"cannot book {what}")
    return f"{what}-ref"


@duralog.step(retry=duralog.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False))
def sg_cancel(ref: str) -> str:
    if ref.startswith("stuck"):
        raise ConnectionError(f"{ref}: the API is down")
    return f"cancelled {ref}"


@duralog.step
def sg_slow_cancel(ref: str) -> str:
    assert RELEASE.wait(PATIENCE), "the test never released the compensation"
    return f"cancelled {ref}"


@duralog.workflow(name="sg-trip")
async def trip(legs: list[str], undo: list[str] | None = None) -> str:
    async with duralog.Saga() as saga:
        for i, leg in enumerate(legs):
            ref = await sg_book(leg)
            saga.add_compensation(sg_cancel, undo[i] if undo else ref)
    return "booked " + ", ".join(legs)


@duralog.workflow(name="sg-catching")
async def catching(legs: list[str]) -> str:
    try:
        return await trip.fn(legs)
    except duralog.StepFailed as exc:
        return f"rolled back: {exc.error.message}"


@duralog.workflow(name="sg-waiting")
async def waiting(legs: list[str]) -> str:
    async with duralog.Saga() as saga:
        for leg in legs:
            saga.add_compensation(sg_cancel, await sg_book(leg))
        await duralog.wait_signal("go")  # cancelled here
    return "done"


@duralog.workflow(name="sg-slow")
async def slow(legs: list[str]) -> str:
    async with duralog.Saga() as saga:
        saga.add_compensation(sg_cancel, await sg_book(legs[0]))
        saga.add_compensation(sg_slow_cancel, await sg_book(legs[1]))
        await sg_book("broken")
    return "unreachable"


@duralog.workflow(name="sg-parallel")
async def parallel(legs: list[str]) -> str:
    async with duralog.Saga(parallel=True) as saga:
        for leg in legs:
            saga.add_compensation(sg_cancel, await sg_book(leg))
        await sg_book("broken")
    return "unreachable"


@duralog.workflow(name="sg-explicit")
async def explicit(legs: list[str]) -> list[str]:
    saga = duralog.Saga()
    for leg in legs:
        saga.add_compensation(sg_cancel, await sg_book(leg))
    names = saga.compensations
    await saga.compensate()  # a business decision, not an exception
    return [*names, *saga.compensations]


@duralog.workflow(name="sg-continues")
async def continues(runs: int) -> int:
    async with duralog.Saga() as saga:
        saga.add_compensation(sg_cancel, await sg_book(f"run{runs}"))
        if runs > 1:
            duralog.continue_as_new(runs - 1)  # control flow, not a failure: no rollback
    return runs


def test_a_saga_that_succeeds_compensates_nothing(engine: duralog.Engine) -> None:
    handle = engine.start(trip, ["flight", "hotel"])
    assert handle.result(timeout=15) == "booked flight, hotel"
    assert step_names(handle) == ["sg_book", "sg_book"]


def test_a_failure_runs_the_compensations_in_reverse_then_reraises(
    engine: duralog.Engine,
) -> None:
    handle = engine.start(catching, ["flight", "hotel", "broken-car"])
    assert handle.result(timeout=15) == "rolled back: cannot book broken-car"
    calls = [
        (e.event.name, e.event.args)  # type: ignore[union-attr]
        for e in handle.history()
        if e.kind == "StepScheduled"
    ]
    assert [(name, bytes(args).decode()) for name, args in calls] == [
        ("sg_book", '["flight"]'),
        ("sg_book", '["hotel"]'),
        ("sg_book", '["broken-car"]'),
        ("sg_cancel", '["hotel-ref"]'),
        ("sg_cancel", '["flight-ref"]'),
    ]
    report = check(History(handle.id, "sg-catching", handle.history()), [catching])
    assert report.ok and report.finished, report.error


def test_a_failing_compensation_is_retried_reported_and_the_others_still_run(
    engine: duralog.Engine,
) -> None:
    handle = engine.start(trip, ["a", "b", "c", "broken"], ["ok-a", "stuck-b", "ok-c"])
    with pytest.raises(duralog.WorkflowFailed) as caught:
        handle.result(timeout=15)
    cause = caught.value.cause
    assert cause.type == "duralog.errors.CompensationFailed"
    assert "after StepFailed" in cause.message and "cannot book broken" in cause.message
    assert "1 of 3 compensations failed" in cause.message
    assert "step 'sg_cancel'" in cause.message and "stuck-b: the API is down" in cause.message
    assert "failed after 3 attempts" in cause.message
    assert step_names(handle)[-3:] == ["sg_cancel"] * 3  # ok-c, stuck-b, ok-a: all ran
    assert history_kinds(handle).count("StepRetrying") == 2  # stuck-b's policy: 3 attempts


def test_compensation_failed_carries_the_cause_and_the_failures() -> None:
    async def body() -> None:
        async with duralog.Saga() as saga:
            saga.add_compensation(sg_cancel, "stuck-x")
            saga.add_compensation(sg_cancel, "fine")
            raise KeyError("boom")

    with pytest.raises(duralog.CompensationFailed) as caught:
        asyncio.run(body())  # outside a workflow the steps simply run
    error = caught.value
    assert isinstance(error.cause, KeyError) and error.__cause__ is error.cause
    assert [type(f) for f in error.failures] == [ConnectionError]
    assert error.compensated == 2


def test_cancelling_inside_a_saga_compensates_then_cancels(engine: duralog.Engine) -> None:
    handle = engine.start(waiting, ["flight", "hotel"])
    wait_for(lambda: history_kinds(handle).count("StepCompleted") == 2)
    handle.cancel()
    with pytest.raises(duralog.WorkflowFailed, match="cancelled"):
        handle.result(timeout=15)
    assert handle.status() is duralog.WorkflowStatus.CANCELLED
    assert step_names(handle) == ["sg_book", "sg_book", "sg_cancel", "sg_cancel"]


def test_a_cancel_during_the_rollback_waits_for_it(engine: duralog.Engine) -> None:
    handle = engine.start(slow, ["flight", "hotel"])
    wait_for(lambda: step_names(handle)[-1:] == ["sg_slow_cancel"])
    handle.cancel()
    wait_for(lambda: "CancelRequested" in history_kinds(handle))
    RELEASE.set()
    with pytest.raises(duralog.WorkflowFailed, match="cancelled"):
        handle.result(timeout=15)
    assert step_names(handle)[-2:] == ["sg_slow_cancel", "sg_cancel"]  # both finished
    assert history_kinds(handle).count("StepCompleted") == 4
    assert handle.status() is duralog.WorkflowStatus.CANCELLED


def test_parallel_compensations_start_together(engine: duralog.Engine) -> None:
    handle = engine.start(parallel, ["a", "b", "c"])
    with pytest.raises(duralog.WorkflowFailed, match="cannot book broken"):
        handle.result(timeout=15)
    kinds = history_kinds(handle)
    first = kinds.index("StepFailed")
    assert kinds[first + 1 : first + 4] == ["StepScheduled"] * 3


def test_compensate_runs_them_now_and_forgets_them(engine: duralog.Engine) -> None:
    assert engine.run(explicit, ["a", "b"], timeout=15) == ["sg_cancel", "sg_cancel"]


def test_continue_as_new_inside_a_saga_is_not_a_failure(engine: duralog.Engine) -> None:
    assert engine.run(continues, 2, id="sg-c", timeout=15) == 1
    for workflow_id in ("sg-c~run1", "sg-c"):
        assert step_names(engine.get(workflow_id)) == ["sg_book"]


@pytest.mark.parametrize(
    ("compensation", "args", "error", "message"),
    [
        (print, ("x",), duralog.ConfigurationError, "must be a @duralog.step"),
        (sg_cancel, (object(),), duralog.PayloadError, "cannot be recorded"),
    ],
)
def test_add_compensation_checks_its_arguments_at_once(
    compensation: Any, args: tuple[Any, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        duralog.Saga().add_compensation(compensation, *args)
