"""A step that a workflow calls as its previous step ends runs in that step's task
(no task per step); every other way a step starts still gets a task of its own. These
tests pin what must not change with that: parallel steps run at once, a cancel stops
a step run this way, and the history is the one the steps would make anyway."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from support import wait_for

import duralog
from duralog.store import events as ev

both_started = threading.Barrier(2, timeout=20)
cancel_me = threading.Event()
stopped = threading.Event()


@duralog.step(name="sequences.first")
def first(x: int) -> int:
    return x + 1


@duralog.step(name="sequences.meet")
def meet(x: int) -> int:
    both_started.wait()  # returns only once the other parallel step runs too
    return x


@duralog.step(name="sequences.long")
def long(x: int) -> int:
    cancel_me.set()
    try:
        while True:
            duralog.heartbeat()  # raises StepCancelled once the workflow is cancelled
            threading.Event().wait(0.01)
    except duralog.StepCancelled:
        stopped.set()
        raise


@duralog.workflow(name="sequences.parallel_after_one")
async def parallel_after_one(x: int) -> list[int]:
    y = await first(x)  # its task, once it ends, runs one of the two steps below
    pair = await asyncio.gather(meet(y), meet(y + 1))
    z = await first(pair[1])
    return [*pair, z]


@duralog.workflow(name="sequences.second_is_cancelled")
async def second_is_cancelled(x: int) -> int:
    y = await first(x)
    return await long(y)  # started in first's task


def test_parallel_steps_after_a_step_still_run_at_once(tmp_path: Path) -> None:
    with duralog.Engine(tmp_path / "log.db") as engine:
        assert engine.run(parallel_after_one, 1, timeout=60) == [2, 3, 4]
        events = [e.event for e in engine.get(engine.list()[0].id).history()]
        assert sum(isinstance(e, ev.StepCompleted) for e in events) == 4


def test_a_step_started_in_the_previous_steps_task_is_cancelled_with_its_workflow(
    tmp_path: Path,
) -> None:
    with duralog.Engine(tmp_path / "log.db") as engine:
        handle = engine.start(second_is_cancelled, 1)
        assert cancel_me.wait(30)
        handle.cancel("no longer needed")
        with pytest.raises(duralog.WorkflowFailed, match="cancelled"):
            handle.result(timeout=60)
        assert stopped.wait(30)  # the step heard of it at its next heartbeat
        events = [e.event for e in handle.history()]
        # The interrupted attempt is not recorded: the run ended while it ran.
        assert [type(e).__name__ for e in events[-4:]] == [
            "StepScheduled",
            "StepStarted",
            "CancelRequested",
            "WorkflowCancelled",
        ]


class Abort(BaseException):
    """Not an Exception (like pytest's Failed, or gevent's Timeout)."""


@duralog.step(name="sequences.abort")
def abort() -> int:
    raise Abort("not an Exception")


@duralog.workflow(name="sequences.aborted")
async def aborted() -> int:
    return await abort()


def test_a_step_raising_a_base_exception_drops_its_workflow_to_be_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with duralog.Engine(tmp_path / "log.db", error_backoff=3600) as engine:
        engine.start(aborted, id="aborted")
        worker = engine._worker
        assert worker is not None
        wait_for(
            lambda: any("dropped workflow aborted" in r.getMessage() for r in caplog.records),
            what="the worker reporting the workflow dropped",
        )
        assert "aborted" not in worker.executions  # not held with nothing running
