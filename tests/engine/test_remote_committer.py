"""``RemoteAppendCommitter`` (a remote store's group commit, on writer threads): a
workflow's appends commit in the order queued, a held write holds up no other
workflow, a ``call`` waits for everything queued before it, and each caller hears
its own outcome. A fake store, so no server is needed; order of events, not timing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, cast

import pytest

from duralog.engine.committer import RemoteAppendCommitter
from duralog.errors import LogDamaged
from duralog.store.base import EventStore
from duralog.store.records import Append, Appended

PATIENCE = 30.0


class FakeStore:
    """Records what it wrote; holds the first write of ``held`` until ``release``."""

    remote = True

    def __init__(self, held: str = "") -> None:
        self.held = held
        self.holding = threading.Event()
        self.release = threading.Event()
        self.log: list[str] = []
        self.damaged: set[str] = set()
        self._lock = threading.Lock()

    def note(self, what: str) -> None:
        with self._lock:
            self.log.append(what)

    def append(self, batch: Sequence[Append]) -> list[Appended]:
        ids = [item.workflow_id for item in batch]
        if self.held in ids and not self.holding.is_set():
            self.holding.set()
            self.release.wait(PATIENCE)
        self.note("+".join(ids))
        return [LogDamaged(i, 1, "bad") if i in self.damaged else True for i in ids]


def item(workflow_id: str) -> Append:
    return Append(workflow_id, 1, [])


async def _in_thread(event: threading.Event) -> None:
    await asyncio.get_running_loop().run_in_executor(None, event.wait, PATIENCE)


def run(coro: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro(loop))
    finally:
        loop.close()


def test_a_held_write_holds_up_its_own_workflow_only() -> None:
    store = FakeStore(held="a")

    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        committer = RemoteAppendCommitter(cast(EventStore, store), loop)
        try:
            first = committer.append(item("a"))
            await _in_thread(store.holding)  # a's first write waits on the "network"
            second = committer.append(item("a"))  # must wait for the first
            other = committer.append(item("b"))
            assert await asyncio.wait_for(other, PATIENCE) is True
            store.note("b released")
            assert not first.done() and not second.done()
            store.release.set()
            assert await asyncio.wait_for(first, PATIENCE) is True
            assert await asyncio.wait_for(second, PATIENCE) is True
            assert not committer.busy
        finally:
            store.release.set()
            committer.close()

    run(scenario)
    assert store.log == ["b", "b released", "a", "a"]


def test_a_call_runs_after_everything_before_it_and_before_what_follows() -> None:
    store = FakeStore(held="a")

    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        committer = RemoteAppendCommitter(cast(EventStore, store), loop)
        try:
            first = committer.append(item("a"))
            await _in_thread(store.holding)
            called = committer.call(lambda s: store.note("call") or "done")
            after = committer.append(item("c"))
            await asyncio.sleep(
                0.05
            )  # (time for a wrong order to show, not needed for a right one)
            assert not called.done() and not after.done()
            store.release.set()
            assert await asyncio.wait_for(called, PATIENCE) == "done"
            await asyncio.wait_for(asyncio.gather(first, after), PATIENCE)
        finally:
            store.release.set()
            committer.close()

    run(scenario)
    assert store.log == ["a", "call", "c"]


def test_each_caller_hears_its_own_outcome() -> None:
    store = FakeStore()
    store.damaged.add("bad")

    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        committer = RemoteAppendCommitter(cast(EventStore, store), loop)
        try:
            good, bad = committer.append(item("good")), committer.append(item("bad"))
            failing = committer.call(lambda s: 1 / 0)
            assert await good is True
            with pytest.raises(LogDamaged):
                await bad
            with pytest.raises(ZeroDivisionError):
                await failing
        finally:
            committer.close()

    run(scenario)
    assert store.log == ["good+bad"]  # one round of the loop: one transaction
