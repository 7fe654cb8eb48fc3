"""A workflow taken up from the log reads its inbox before its code runs."""

from __future__ import annotations

import threading

import pytest

import duralog

ran: list[str] = []
_lock = threading.Lock()


@duralog.step
def side_effect(label: str) -> str:
    with _lock:
        ran.append(label)
    return label


@duralog.workflow(name="inbox_first_flow")
async def flow(label: str) -> str:
    await side_effect(label)
    return await side_effect(label + "-2")


@duralog.workflow(name="inbox_first_signal")
async def waits(label: str) -> str:
    first = await duralog.wait_signal("go", timeout=0.0001)  # only if already there
    return f"{label}:{first}"


def test_a_cancel_sent_before_any_worker_ran_it_runs_none_of_its_steps(db: str) -> None:
    ran.clear()
    with duralog.Engine(db, worker=False) as client:
        handle = client.start(flow, "never", id="cancel-first")
        handle.cancel("changed my mind")
    with (
        duralog.Engine(db, durability="normal", poll_interval=0.05) as engine,
        pytest.raises(duralog.WorkflowFailed, match="cancel"),
    ):
        engine.get("cancel-first").result(timeout=10)
    assert ran == []


def test_a_signal_sent_before_any_worker_ran_it_is_there_at_its_first_await(db: str) -> None:
    with duralog.Engine(db, worker=False) as client:
        handle = client.start(waits, "s", id="signal-first")
        handle.signal("go", "early")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        assert engine.get("signal-first").result(timeout=10) == "s:early"
