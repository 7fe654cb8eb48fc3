"""Child workflows: started durably, awaited, failures caught, cancelled with the parent."""

from __future__ import annotations

import asyncio

import pytest
from support import wait_for

import duralog
from duralog.replay.checker import replay_history

ran: list[str] = []


@duralog.step
def pack(item: str) -> str:
    ran.append(item)
    return f"packed {item}"


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def explode(item: str) -> str:
    raise RuntimeError(f"{item} broke")


@duralog.workflow
async def pack_one(item: str) -> str:
    return await pack(item)


@duralog.workflow
async def pack_broken(item: str) -> str:
    return await explode(item)


@duralog.workflow
async def wait_forever() -> None:
    try:
        await duralog.sleep(3600)
    except asyncio.CancelledError:
        await pack("child cleanup")
        raise


@duralog.workflow
async def parcel(items: list[str]) -> list[str]:
    return list(await asyncio.gather(*(pack_one(item) for item in items)))


@duralog.workflow
async def parcel_with_failure() -> str:
    try:
        await pack_broken("vase")
    except duralog.WorkflowFailed as exc:
        return f"child {exc.workflow_id} failed: {exc.cause.message}"
    return "no failure"


@duralog.workflow
async def parent_of_sleeper() -> None:
    await wait_forever()


def test_children_run_and_return_their_results(engine: duralog.Engine) -> None:
    handle = engine.start(parcel, ["cup", "pot"], id="parcel-1")
    assert handle.result(timeout=10) == ["packed cup", "packed pot"]
    kinds = [e.kind for e in handle.history()]
    assert kinds.count("ChildStarted") == 2 and kinds.count("ChildCompleted") == 2
    children = sorted(r.id for r in engine.list(name="pack_one"))
    assert children == ["parcel-1/2", "parcel-1/3"]  # <parent id>/<seq>: deterministic
    assert engine.get("parcel-1/2").record().parent_id == "parcel-1"
    instance, _ = replay_history(parcel, handle.history(), workflow_id="parcel-1")
    assert instance.finished


def test_a_failed_child_is_an_error_the_parent_can_catch(engine: duralog.Engine) -> None:
    handle = engine.start(parcel_with_failure, id="p-2")
    message = handle.result(timeout=10)
    assert message.startswith("child p-2/2 failed: step 'explode'")
    assert message.endswith("RuntimeError: vase broke")


def test_cancelling_the_parent_cancels_its_children(engine: duralog.Engine) -> None:
    ran.clear()
    handle = engine.start(parent_of_sleeper, id="p-3")
    wait_for(lambda: engine.list(name="wait_forever") != [])
    child = engine.get("p-3/2")
    wait_for(lambda: "TimerStarted" in [e.kind for e in child.history()])
    handle.cancel("order withdrawn")
    with pytest.raises(duralog.WorkflowFailed):
        handle.result(timeout=10)
    wait_for(lambda: child.status().is_terminal)
    assert child.status() is duralog.WorkflowStatus.CANCELLED
    assert ran == ["child cleanup"]


def test_a_child_survives_the_crash_of_its_parent(db: str) -> None:
    # The parent is stopped after starting the child; a new engine finishes both.
    with duralog.Engine(db, poll_interval=0.05) as engine:
        engine.start(parent_of_sleeper, id="p-4")
        wait_for(lambda: engine.list(name="wait_forever") != [])
    with duralog.Engine(db, poll_interval=0.05) as engine:
        engine.get("p-4").cancel()
        with pytest.raises(duralog.WorkflowFailed):
            engine.get("p-4").result(timeout=10)
        wait_for(lambda: engine.get("p-4/2").status().is_terminal)
        assert len(engine.list(name="wait_forever")) == 1
