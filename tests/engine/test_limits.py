"""Limits: payload sizes and history length are refused with a clear error, nothing lost."""

from __future__ import annotations

import pytest

import duralog


@duralog.step
def big(n: int) -> str:
    return "x" * n


@duralog.workflow
async def returns_big(n: int) -> str:
    try:
        return await big(n)
    except duralog.StepFailed as exc:
        return exc.error.message


@duralog.workflow
async def endless(n: int) -> None:
    for i in range(n):
        await big(i % 3)


@duralog.workflow
async def waits_for_signal() -> object:
    return await duralog.wait_signal("data")


def test_payload_limits(db: str) -> None:
    with duralog.Engine(db, durability="normal", max_payload_bytes=1000) as engine:
        assert engine.run(returns_big, 10, timeout=10) == "x" * 10
        message = engine.run(returns_big, 5000, timeout=10)
        assert "the result of step 'big' is 5,002 bytes, over the limit of 1,000" in message
        assert "pass a reference" in message
        with pytest.raises(duralog.PayloadError, match="input of workflow 'returns_big'"):
            engine.start(returns_big, "y" * 5000)
        handle = engine.start(waits_for_signal)
        with pytest.raises(duralog.PayloadError, match="signal 'data'"):
            handle.signal("data", "z" * 5000)
        handle.signal("data", "small")
        assert handle.result(timeout=10) == "small"


def test_a_history_past_its_limit_is_suspended_with_the_remedy(db: str) -> None:
    with duralog.Engine(db, durability="normal", max_history_events=60) as engine:
        handle = engine.start(endless, 100)
        with pytest.raises(duralog.WorkflowSuspended, match="continue_as_new"):
            handle.result(timeout=10)
        assert 60 < len(handle.history()) < 70  # stopped at the limit, nothing lost
