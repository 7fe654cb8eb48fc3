"""Poison isolation: a workflow that cannot run, diverges or hangs never blocks the others."""

from __future__ import annotations

import threading
from typing import Any

from support import PATIENCE, wait_for

import duralog
from duralog.replay.definitions import Registry, Workflow

release = threading.Event()


@duralog.step
def hangs() -> str:
    release.wait(PATIENCE)  # a step stuck on a dead dependency
    return "late"


@duralog.step(timeout=0.2, retry=duralog.RetryPolicy(max_attempts=1))
def hangs_with_timeout() -> str:
    release.wait(PATIENCE)
    return "late"


@duralog.step
def healthy(i: int) -> int:
    return i


async def stuck() -> str:
    return await hangs()


async def reported() -> str:
    try:
        return await hangs_with_timeout()
    except duralog.StepFailed as exc:
        return exc.error.message


async def fine(i: int) -> int:
    return await healthy(i)


async def waits_long() -> None:
    await duralog.sleep(3600)


async def version_one() -> str:
    # A long sleep: the old engine closes with it still running, however slowly this
    # test's thread gets there (with a short one, a busy machine let it finish).
    await duralog.sleep(3600)
    return str(await healthy(1))


async def version_two() -> str:
    await healthy(2)  # a different first decision: diverges from version one's history
    return "two"


def registry(**workflows: Any) -> Registry:
    found = Registry()
    for name, fn in workflows.items():
        found.add(Workflow(fn, name=name))
    return found


def test_poison_never_blocks_the_others(db: str) -> None:
    # Another deployment left behind: a workflow whose code this worker lacks, and one
    # whose recorded history the new code no longer matches.
    with duralog.Engine(db, registry=registry(orphan=waits_long, upgraded=version_one)) as old:
        old.start("orphan", id="orphan")
        upgraded = old.start("upgraded", id="upgraded")
        wait_for(lambda: "TimerStarted" in [e.kind for e in upgraded.history()])
    try:
        reg = registry(stuck=stuck, reported=reported, fine=fine, upgraded=version_two)
        with duralog.Engine(db, registry=reg, poll_interval=0.05) as engine:
            engine.start("stuck", id="stuck")
            message = engine.start("reported").result(timeout=10)
            assert "did not finish within its timeout of 0.2s" in message
            for i in range(20):
                assert engine.start("fine", i).result(timeout=10) == i
            # Suspended once this worker claims it and replays it (a busy machine may
            # get there after the twenty above).
            wait_for(lambda: engine.get("upgraded").status() is duralog.WorkflowStatus.SUSPENDED)
            assert engine.get("orphan").status() is duralog.WorkflowStatus.RUNNING
            assert engine.get("orphan").record().owner is None  # left for a worker with its code
            assert engine.get("stuck").status() is duralog.WorkflowStatus.RUNNING
    finally:
        release.set()
