"""Workflow code that blocks the worker's event loop: reported while it blocks (the
workflow id and the blocking line), its workflow suspended once it returns, and the
other workflows of the worker served on; steps are not watched."""

from __future__ import annotations

import logging
import time

import pytest
from support import PATIENCE, wait_for

import duralog
from duralog.replay.definitions import Registry

registry = Registry()
deployed = {"fixed": False}


@duralog.step
def hello(name: str) -> str:
    return f"hello {name}"


@duralog.step(inline=True)
def crunch() -> int:
    time.sleep(0.6)  # a step: on the loop, but not workflow code
    return 1


@duralog.workflow(registry=registry)
async def blocker() -> str:
    await hello("before")
    if not deployed["fixed"]:
        time.sleep(3)  # the blocking call
    return await hello("after")


@duralog.workflow(registry=registry)
async def bystander() -> str:
    first = await hello("first")
    await duralog.sleep(0.5)  # fires while the loop is blocked: served after it
    return f"{first}, {await hello('second')}"


@duralog.workflow(registry=registry)
async def crunching() -> int:
    return await crunch()


@duralog.workflow(registry=registry)
async def naps() -> str:
    time.sleep(0.5)  # blocks, but nobody watches
    return "rested"


def blocked_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "without awaiting" in r.getMessage()
    ]


def test_blocking_workflow_code_is_reported_and_suspended_while_the_others_go_on(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="duralog.engine")
    with duralog.Engine(db, registry=registry, poll_interval=0.05) as engine:
        other = engine.start(bystander, id="bystander")
        stuck = engine.start(blocker, id="blocker")
        assert other.result(timeout=PATIENCE) == "hello first, hello second"
        wait_for(lambda: stuck.status() is duralog.WorkflowStatus.SUSPENDED)
        # The worker still serves new work after the block.
        assert engine.run(bystander, id="later", timeout=PATIENCE) == "hello first, hello second"
        record = stuck.record()
        called = [s.args for s in stuck.state().steps.values()]
    (warning,) = blocked_warnings(caplog)
    assert "workflow 'blocker' has run for" in warning
    assert "(blocked_threshold 2 s)" in warning
    # The stack of the blocking code: the workflow function, at the blocking line.
    assert 'test_blocked_loop.py", line 35, in blocker' in warning
    assert "time.sleep(3)  # the blocking call" in warning
    # Only workflow code: neither asyncio's frames nor duralog's own.
    assert warning.count('  File "') == 1 and "asyncio" not in warning
    assert record.reason is not None
    assert "blocked the worker's event loop for" in record.reason
    assert "test_blocked_loop.py:35 in blocker: time.sleep(3)" in record.reason
    # What the blocking activation decided was dropped: "after" was never called.
    assert [bytes(args) for args in called] == [b'["before"]']

    deployed["fixed"] = True  # the fix, deployed: a worker that starts resumes it
    try:
        with duralog.Engine(db, registry=registry, poll_interval=0.05) as engine:
            assert engine.get("blocker").result(timeout=PATIENCE) == "hello after"
    finally:
        deployed["fixed"] = False


def test_steps_are_not_watched_and_none_turns_the_watch_off(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="duralog.engine")
    with duralog.Engine(db, registry=registry, blocked_threshold=0.2) as engine:
        assert engine.run(crunching, timeout=PATIENCE) == 1
    with duralog.Engine(db, registry=registry, blocked_threshold=None) as engine:
        assert engine.run(naps, timeout=PATIENCE) == "rested"
    assert blocked_warnings(caplog) == []


@pytest.mark.parametrize("threshold", [0, -1.0, "2", float("nan")])
def test_a_bad_threshold_is_refused(db: str, threshold: object) -> None:
    with pytest.raises(duralog.ConfigurationError, match="blocked_threshold"):
        duralog.Engine(db, blocked_threshold=threshold)  # type: ignore[arg-type]
