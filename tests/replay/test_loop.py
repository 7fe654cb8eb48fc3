"""``WorkflowLoop``: a clockless asyncio loop, driven one activation at a time.

Its time is workflow time, its callbacks run in FIFO order until none is ready,
its timers belong to an owner that makes them durable, and whatever would touch
the outside world is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from duralog.errors import WorkflowSandboxError
from duralog.replay.loop import WorkflowLoop


class Owner:
    """Records what the loop asks of a timer owner."""

    def __init__(self) -> None:
        self.started: list[asyncio.TimerHandle] = []
        self.cancelled: list[asyncio.TimerHandle] = []

    def timer_started(self, handle: asyncio.TimerHandle) -> None:
        self.started.append(handle)

    def timer_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self.cancelled.append(handle)


@pytest.fixture
def owner() -> Owner:
    return Owner()


@pytest.fixture
def loop(owner: Owner) -> Iterator[WorkflowLoop]:
    loop = WorkflowLoop(owner)
    yield loop
    loop.close()


@contextlib.contextmanager
def running(loop: WorkflowLoop) -> Iterator[None]:
    """Make ``loop`` the running loop (as the instance does during an activation)."""
    outer = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(loop)
    try:
        yield
    finally:
        asyncio.events._set_running_loop(outer)


@given(st.lists(st.floats(0, 1e9, allow_nan=False)))
def test_time_is_what_the_owner_sets_and_never_moves_backwards(times: list[float]) -> None:
    loop = WorkflowLoop(Owner())
    latest = 0.0
    for t in times:
        loop.set_time(t)
        latest = max(latest, t)
        assert loop.time() == latest


def test_callbacks_run_in_fifo_order_until_none_is_ready(loop: WorkflowLoop) -> None:
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        loop.call_soon(ran.append, "queued by first")

    loop.call_soon(first)
    loop.call_soon(ran.append, "second")
    cancelled = loop.call_soon(ran.append, "cancelled")
    cancelled.cancel()
    loop.run_until_idle()
    assert ran == ["first", "second", "queued by first"]


def test_a_timer_goes_to_the_owner_and_runs_only_when_fired(
    loop: WorkflowLoop, owner: Owner
) -> None:
    ran: list[str] = []
    loop.set_time(100.0)
    handle = loop.call_later(5, ran.append, "fired")
    assert owner.started == [handle] and handle.when() == 105.0
    loop.run_until_idle()
    assert ran == []  # no clock of its own: nothing fires by itself
    loop.fire(handle)
    loop.run_until_idle()
    assert ran == ["fired"]


def test_a_cancelled_timer_is_reported_and_never_runs(loop: WorkflowLoop, owner: Owner) -> None:
    ran: list[str] = []
    handle = loop.call_later(1, ran.append, "fired")
    handle.cancel()
    assert owner.cancelled == [handle]
    loop.fire(handle)
    loop.run_until_idle()
    assert ran == []


def test_a_negative_delay_is_now_and_an_infinite_one_is_refused(
    loop: WorkflowLoop, owner: Owner
) -> None:
    loop.set_time(10.0)
    assert loop.call_later(-3, print).when() == 10.0
    with pytest.raises(WorkflowSandboxError, match="finite delay"):
        loop.call_later(math.inf, print)
    assert len(owner.started) == 1


def test_tasks_gather_and_sleep_run_deterministically(loop: WorkflowLoop, owner: Owner) -> None:
    order: list[str] = []

    async def worker(name: str, delay: float) -> str:
        await asyncio.sleep(delay)
        order.append(name)
        return name

    async def main() -> list[str]:
        return list(await asyncio.gather(worker("slow", 2), worker("quick", 1)))

    with running(loop):
        task = loop.create_task(main())
        loop.run_until_idle()
        assert [h.when() for h in owner.started] == [2.0, 1.0]  # in the order asked
        for handle in sorted(owner.started, key=lambda h: h.when()):
            loop.set_time(handle.when())
            loop.fire(handle)
            loop.run_until_idle()
    assert task.result() == ["slow", "quick"] and order == ["quick", "slow"]


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda loop: loop.run_in_executor(None, print), "executor"),
        (lambda loop: loop.call_soon_threadsafe(print), "other threads"),
        (lambda loop: loop.add_reader(0, print), "file descriptors"),
        (lambda loop: loop.add_signal_handler(2, print), "signal handlers"),
        (lambda loop: loop.run_until_complete(None), "run the event loop"),
        (lambda loop: loop.set_task_factory(None), "task factory"),
    ],
)
def test_what_touches_the_outside_world_is_refused(
    loop: WorkflowLoop, call: Any, what: str
) -> None:
    with pytest.raises(WorkflowSandboxError, match=what):
        call(loop)


@pytest.mark.parametrize(
    "opener",
    [
        lambda: asyncio.open_connection("example.com", 80),
        lambda: asyncio.create_subprocess_exec("true"),
        lambda: asyncio.get_running_loop().getaddrinfo("example.com", 80),
    ],
)
def test_network_and_subprocesses_are_refused_from_workflow_code(
    loop: WorkflowLoop, opener: Any
) -> None:
    async def main() -> None:
        await opener()

    with running(loop):
        task = loop.create_task(main())
        loop.run_until_idle()
    assert isinstance(task.exception(), WorkflowSandboxError)
    assert "Do it in a step" in str(task.exception())


def test_an_exception_nobody_retrieved_is_kept_not_printed(loop: WorkflowLoop) -> None:
    loop.call_exception_handler({"message": "forgotten task"})
    loop.default_exception_handler({"message": "another"})
    assert [c["message"] for c in loop.unhandled] == ["forgotten task", "another"]
