"""Group commit under contention: every request is written and answered exactly once."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path

import msgspec
import pytest
from support import race_close, wait_for

import duralog
from duralog.engine.committer import StartCommitter
from duralog.errors import StoreError
from duralog.store import events as ev
from duralog.store.base import NewWorkflow
from duralog.store.events import LogEntry
from duralog.store.sqlite import SQLiteStore


@pytest.fixture
def busy_switching() -> Iterator[None]:
    # Switch threads as often as possible, so the writer swaps its queues while
    # callers are in the middle of submitting.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_no_request_is_lost_while_the_writer_swaps_its_queues(
    tmp_path: Path, busy_switching: None
) -> None:
    # Regression: a request queued while the writer took the previous batch went
    # into the taken list and was never written; its caller waited forever. The
    # writer thread takes the creates of child workflows, made from a worker's loop.
    store = SQLiteStore(tmp_path / "log.db", durability="normal")
    committer = StartCommitter(store)
    count = 2000
    started = ev.WorkflowStarted(name="flow", args=msgspec.Raw(b"[]"))

    async def create_all() -> list[int | None]:
        pending = []
        for batch in range(20):
            for i in range(count // 20):
                item = NewWorkflow(f"w-{batch}-{i}", "flow", LogEntry(1, 1.0, started))
                pending.append(asyncio.ensure_future(committer.create_async(item)))
            await asyncio.sleep(0)
        return await asyncio.wait_for(asyncio.gather(*pending), timeout=60)

    fences = asyncio.run(create_all())
    committer.close()
    assert len(fences) == count and None not in fences
    assert len(store.list_workflows()) == count
    store.close()


class CountingStore(SQLiteStore):
    """A real SQLite log that also counts its ``create_workflows`` transactions."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, durability="normal")
        self.creates: list[int] = []

    def create_workflows(self, items: Sequence[NewWorkflow]) -> list[int | None]:
        self.creates.append(len(items))
        return super().create_workflows(items)


def test_starts_from_many_threads_are_written_by_their_callers_in_one_commit(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "log.db")
    committer = StartCommitter(store)
    started = LogEntry(1, 1.0, ev.WorkflowStarted(name="flow", args=msgspec.Raw(b"[]")))
    answers: dict[str, list[int | None]] = {}

    def start(workflow_id: str) -> None:
        answers[workflow_id] = committer.create([NewWorkflow(workflow_id, "flow", started)])

    # While one caller holds the turn to write, five more queue up behind it...
    with committer._direct_writer:
        threads = [threading.Thread(target=start, args=(f"w-{i}",)) for i in range(5)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(committer._direct) == 5)
    for thread in threads:
        thread.join(timeout=20)
    # ...and the first of them to get the turn writes all five in one transaction.
    assert store.creates == [5]
    assert answers == {f"w-{i}": [0] for i in range(5)}  # created unowned: fence 0
    assert committer.create([NewWorkflow("w-0", "flow", started)]) == [None]  # exists
    assert committer.create([]) == []
    committer.close()
    with pytest.raises(StoreError, match="the engine is closed"):
        committer.create([NewWorkflow("late", "flow", started)])
    assert [w.id for w in store.list_workflows()].count("late") == 0
    store.close()


class InterruptedStore(SQLiteStore):
    """A real SQLite log whose first ``create_workflows`` is interrupted (Ctrl-C)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, durability="normal")
        self.calls = 0

    def create_workflows(self, items: Sequence[NewWorkflow]) -> list[int | None]:
        self.calls += 1
        if self.calls == 1:
            raise KeyboardInterrupt
        return super().create_workflows(items)


def test_an_interrupted_writer_leaves_no_caller_waiting(tmp_path: Path) -> None:
    store = InterruptedStore(tmp_path / "log.db")
    committer = StartCommitter(store)
    started = LogEntry(1, 1.0, ev.WorkflowStarted(name="flow", args=msgspec.Raw(b"[]")))
    raised: list[BaseException] = []

    def writer() -> None:
        try:
            committer.create([NewWorkflow("writer", "flow", started)])
        except BaseException as exc:
            raised.append(exc)

    queued: Future[int | None] = Future()  # a second caller, queued behind the writer
    with committer._direct_writer:
        thread = threading.Thread(target=writer)
        thread.start()
        wait_for(lambda: len(committer._direct) == 1)
        committer._direct.append((NewWorkflow("queued", "flow", started), queued))
    # The writer takes the turn and writes both; Ctrl-C interrupts that write.
    thread.join(timeout=20)
    assert [type(e) for e in raised] == [KeyboardInterrupt]
    with pytest.raises(StoreError, match="the start was interrupted"):
        queued.result(timeout=0)
    assert committer.create([NewWorkflow("after", "flow", started)]) == [0]
    committer.close()
    store.close()


@duralog.workflow(name="committer_test.flow")
async def trivial(i: int) -> int:
    return i


def test_starts_racing_close_hear_that_the_engine_is_closed(tmp_path: Path) -> None:
    # Regression: a caller still writing its start when close() closed the store
    # under it crashed the process (SQLite closed the connection mid-COMMIT).
    for trial in range(20):
        engine = duralog.Engine(str(tmp_path / f"{trial}.db"), worker=False, durability="normal")
        stopped = race_close(lambda: engine.start(trivial, 1), engine.close)  # noqa: B023
        assert [str(e) for e in stopped] == [
            "the engine is closed; no more writes are accepted"
        ] * 3


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
def test_threads_that_started_a_workflow_and_ended_leave_no_connection_open(
    tmp_path: Path,
) -> None:
    with duralog.Engine(str(tmp_path / "log.db"), worker=False, durability="normal") as engine:
        engine.start(trivial, 0)
        before = len(list(Path("/proc/self/fd").iterdir()))
        for i in range(50):  # a thread per request, as some servers do
            thread = threading.Thread(target=engine.start, args=(trivial, i))
            thread.start()
            thread.join()
        after = len(list(Path("/proc/self/fd").iterdir()))
        assert after - before <= 4  # one thread's connection at most, not fifty


def test_a_start_written_while_the_engine_closes_is_left_free_for_the_next_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: the start committed after the worker stopped, and then failed with
    # RuntimeError('Event loop is closed'), leaving the workflow owned by a worker that
    # was gone (nobody ran it before its lease expired).
    db = str(tmp_path / "log.db")
    engine = duralog.Engine(db, durability="normal")
    engine.__enter__()
    in_write, release = threading.Event(), threading.Event()
    create = engine.store.create_workflows

    def slow_create(items: Sequence[NewWorkflow]) -> list[int | None]:
        in_write.set()
        release.wait(timeout=20)  # a slow commit (an fsync, another process's lock)
        return create(items)

    monkeypatch.setattr(engine.store, "create_workflows", slow_create)
    outcome: list[object] = []

    def start() -> None:
        try:
            outcome.append(engine.start(trivial, 7, id="late"))
        except BaseException as exc:
            outcome.append(exc)

    starter = threading.Thread(target=start)
    starter.start()
    assert in_write.wait(timeout=20)
    threading.Timer(0.2, release.set).start()
    engine.close()
    starter.join(timeout=20)
    (result,) = outcome
    assert not isinstance(result, BaseException), result  # written, and said so
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as again:
        assert again.get("late").result(timeout=10) == 7  # at once, not after a lease


def test_close_from_inside_a_start_does_not_deadlock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: a SIGTERM handler calling engine.close() while its own thread was
    # writing a start waited forever for that write to finish.
    engine = duralog.Engine(str(tmp_path / "log.db"), worker=False, durability="normal")
    create = engine.store.create_workflows

    def create_then_interrupted(items: Sequence[NewWorkflow]) -> list[int | None]:
        engine.close()  # what the signal handler runs, on this same thread
        return create(items)

    monkeypatch.setattr(engine.store, "create_workflows", create_then_interrupted)
    outcome: list[BaseException] = []

    def start() -> None:
        try:
            engine.start(trivial, 1)
        except BaseException as exc:
            outcome.append(exc)

    starter = threading.Thread(target=start, daemon=True)  # a deadlock must not hang pytest
    starter.start()
    starter.join(timeout=10)
    assert not starter.is_alive(), "engine.close() inside a start deadlocked"
    assert [type(e) for e in outcome] == [StoreError]
