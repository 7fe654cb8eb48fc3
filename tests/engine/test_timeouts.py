"""Workflow timeouts, and asyncio timeouts inside workflows, on durable timers."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

import duralog
from duralog.replay.checker import replay_history

cleaned: list[str] = []


@duralog.step
def cleanup(what: str) -> str:
    cleaned.append(what)
    return what


@duralog.step
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slow done"


@duralog.workflow
async def overstays() -> str:
    try:
        await duralog.sleep(3600)
    except asyncio.CancelledError:
        await cleanup("released the reservation")
        raise
    return "woke up"


@duralog.workflow
async def races(limit: float, seconds: float) -> str:
    try:
        return await asyncio.wait_for(slow(seconds), timeout=limit)
    except TimeoutError:
        return "gave up"


def test_a_workflow_past_its_timeout_fails_after_its_cleanup(engine: duralog.Engine) -> None:
    cleaned.clear()
    handle = engine.start(overstays, timeout=dt.timedelta(seconds=0.3))
    with pytest.raises(duralog.WorkflowFailed) as info:
        handle.result(timeout=10)
    assert info.value.cause.type == "duralog.errors.WorkflowTimeout"
    assert "exceeded its timeout of 0.3s" in info.value.cause.message
    assert cleaned == ["released the reservation"]
    kinds = [e.kind for e in handle.history()]
    assert "CancelRequested" in kinds and kinds[-1] == "WorkflowFailed"
    instance, _ = replay_history(overstays, handle.history())
    assert instance.finished


def test_a_timeout_must_be_positive(engine: duralog.Engine) -> None:
    with pytest.raises(duralog.ConfigurationError):
        engine.start(overstays, timeout=0)


# The step outlasts the durable timer by an hour, or the timer outlasts it by an hour.
RACES = [(0.1, 3600.0, "gave up"), (3600.0, 0.0, "slow done")]


@pytest.mark.parametrize(("limit", "seconds", "expected"), RACES)
def test_wait_for_inside_a_workflow(
    engine: duralog.Engine, limit: float, seconds: float, expected: str
) -> None:
    handle = engine.start(races, limit, seconds)
    assert handle.result(timeout=10) == expected
    instance, _ = replay_history(races, handle.history())
    assert instance.finished


@duralog.workflow
async def scoped(limit: float, seconds: float) -> str:
    try:
        async with asyncio.timeout(limit):
            return await slow(seconds)
    except TimeoutError:
        return "scope expired"


@pytest.mark.parametrize(
    ("limit", "seconds", "expected"),
    [(0.1, 3600.0, "scope expired"), (3600.0, 0.0, "slow done")],
)
def test_asyncio_timeout_inside_a_workflow(
    engine: duralog.Engine, limit: float, seconds: float, expected: str
) -> None:
    handle = engine.start(scoped, limit, seconds)
    assert handle.result(timeout=10) == expected
    instance, _ = replay_history(scoped, handle.history())
    assert instance.finished
