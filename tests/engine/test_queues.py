"""Queues: concurrency, rate limits and priorities, counted in the store."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from support import PATIENCE, peak, wait_for

import duralog
from duralog import Queue
from duralog.errors import ConfigurationError
from duralog.replay.checker import replay_history
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import Append, EventStore, QueueLimits
from duralog.store.events import LogEntry

_S = duralog.WorkflowStatus

_lock = threading.Lock()
_running: dict[str, int] = {"now": 0, "peak": 0}
_order: list[str] = []
_gate = threading.Event()


@duralog.step
def busy(label: str) -> str:
    with _lock:
        _running["now"] += 1
        _running["peak"] = max(_running["peak"], _running["now"])
        _order.append(label)
    time.sleep(0.05)
    with _lock:
        _running["now"] -= 1
    return label


@duralog.workflow(name="queued_job")
async def queued_job(label: str) -> str:
    return await busy(label)


@duralog.step
def hold() -> None:
    assert _gate.wait(PATIENCE), "the test never opened the gate"


@duralog.workflow(name="queue_blocker")
async def blocker() -> str:
    await hold()
    return "unblocked"


_intervals: list[tuple[float, float]] = []


@duralog.step
def timed(label: str) -> str:
    start = time.monotonic()
    time.sleep(0.15)
    with _lock:
        _intervals.append((start, time.monotonic()))
    return label


@duralog.workflow(name="timed_job")
async def timed_job(label: str) -> str:
    return await timed(label)


@pytest.fixture(autouse=True)
def _reset() -> None:
    _running.update(now=0, peak=0)
    _order.clear()
    _gate.clear()
    _intervals.clear()


def _orphan(store: EventStore, queue: str, worker_id: str, pid: int) -> list[str]:
    """Take every waiting workflow off ``queue`` as worker ``worker_id`` (process ``pid``
    on this host), with no worker limit and a long lease; what it took."""
    now = time.time()
    store.register_worker(worker_id, socket.gethostname(), pid, now)
    return [c.workflow_id for c in store.claim_queued(worker_id, now, 300, QueueLimits(queue))]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_concurrency_is_bounded_and_everything_runs(db: str) -> None:
    queue = Queue("test-bounded", concurrency=2)
    with duralog.Engine(db, durability="normal", poll_interval=0.05, queues=[queue]) as engine:
        handles = [engine.start(queued_job, f"j{i}", queue=queue) for i in range(8)]
        assert [h.result(timeout=20) for h in handles] == [f"j{i}" for i in range(8)]
    assert 1 <= _running["peak"] <= 2


def test_queued_workflows_wait_pending_until_a_slot_frees(db: str) -> None:
    queue = Queue("test-one-slot", concurrency=1)
    with duralog.Engine(db, durability="normal", poll_interval=0.05, queues=[queue]) as engine:
        first = engine.start(blocker, queue=queue)
        wait_for(lambda: first.status() is duralog.WorkflowStatus.RUNNING)
        second = engine.start(queued_job, "after", queue="test-one-slot")
        # A job on another queue served by the same worker: once it has run, the
        # worker has looked at every queue after `second` was enqueued.
        other = Queue("test-one-slot-probe")
        engine.queues[other.name] = other
        assert engine.start(queued_job, "probe", queue=other).result(timeout=10) == "probe"
        assert second.status() is duralog.WorkflowStatus.PENDING
        _gate.set()
        assert first.result(timeout=10) == "unblocked"
        assert second.result(timeout=10) == "after"


def test_lower_priority_number_runs_first(db: str) -> None:
    queue = Queue("test-priority", concurrency=1)
    with duralog.Engine(db, durability="normal", poll_interval=0.05, queues=[queue]) as engine:
        first = engine.start(blocker, queue=queue)
        wait_for(lambda: first.status() is duralog.WorkflowStatus.RUNNING)
        handles = [
            engine.start(queued_job, label, queue=queue, priority=priority)
            for label, priority in [("p5", 5), ("p-1", -1), ("p3a", 3), ("p0", 0), ("p3b", 3)]
        ]
        _gate.set()
        for handle in handles:
            handle.result(timeout=10)
    assert _order == ["p-1", "p0", "p3a", "p3b", "p5"]  # equal priorities: oldest first


def test_rate_limit_holds_over_every_window(db: str) -> None:
    queue = Queue("test-rate", rate_limit=2, period=0.3)
    with duralog.Engine(db, durability="normal", poll_interval=0.02, queues=[queue]) as engine:
        handles = [engine.start(queued_job, f"r{i}", queue=queue) for i in range(6)]
        for handle in handles:
            handle.result(timeout=20)
    with sqlite3.connect(db) as conn:
        taken = sorted(
            row[0]
            for row in conn.execute("SELECT dequeued_at FROM workflows WHERE queue = 'test-rate'")
        )
    assert len(taken) == 6
    # Any three consecutive dequeues span more than one period: at most 2 per window.
    assert all(later - earlier > 0.3 for earlier, later in zip(taken, taken[2:], strict=False))


def test_a_queued_workflow_outlives_its_starter(db: str) -> None:
    queue = Queue("test-durable", concurrency=1)
    with duralog.Engine(db, worker=False, queues=[queue]) as client:
        handle = client.start(queued_job, "later", queue=queue, id="q-later")
        assert client.start(queued_job, "later", queue=queue, id="q-later").id == handle.id
    with duralog.Engine(db, durability="normal", poll_interval=0.05, queues=[queue]) as engine:
        assert engine.get("q-later").result(timeout=10) == "later"
        record = engine.get("q-later").record()
        assert (record.queue, record.priority) == ("test-durable", 0)


def test_a_worker_serves_only_its_queues(db: str) -> None:
    served, other = Queue("test-served"), Queue("test-other")
    with duralog.Engine(db, durability="normal", poll_interval=0.05, queues=[served]) as engine:
        waiting = engine.start(queued_job, "x", queue=other)
        done = engine.start(queued_job, "y", queue=served)
        assert done.result(timeout=10) == "y"  # a dequeue pass ran after both starts
        assert waiting.status() is duralog.WorkflowStatus.PENDING


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"concurrency": 0}, "concurrency must be a whole number of at least 1"),
        ({"worker_concurrency": 1.5}, "worker_concurrency must be"),
        ({"rate_limit": True}, "rate_limit must be"),
        ({"rate_limit": 1, "period": 0}, "period must be positive"),
        ({"period": float("nan")}, "period must be positive"),
        ({"period": "1s"}, "period must be seconds"),
    ],
)
def test_bad_queue_options_are_clear_errors(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        Queue("test-bad", **options)  # type: ignore[arg-type]


def test_bad_names_and_priorities_are_clear_errors(db: str) -> None:
    with pytest.raises(ConfigurationError, match="queue name"):
        Queue("has space")
    queue = Queue("test-known")
    with duralog.Engine(db, worker=False, queues=[queue]) as client:
        with pytest.raises(ConfigurationError, match=r"no queue named 'test-typo'.*test-known"):
            client.start(queued_job, "x", queue="test-typo")
        with pytest.raises(ConfigurationError, match="priority"):
            client.start(queued_job, "x", queue=queue, priority=True)
        with pytest.raises(ConfigurationError, match="32 bits"):
            client.start(queued_job, "x", queue=queue, priority=2**40)
        assert client.list() == []


def test_queue_repr_shows_its_limits() -> None:
    queue = Queue("test-repr", concurrency=3, rate_limit=10, period=60)
    assert repr(queue) == "Queue('test-repr', concurrency=3, rate_limit=10, period=60)"


def test_a_batch_taken_at_once_still_runs_by_priority(db: str) -> None:
    # Ten jobs waiting, no concurrency limit: one claim takes them all, and the
    # single step thread must still run them lowest priority number first.
    queue = Queue("test-batch-priority")
    with duralog.Engine(db, worker=False, queues=[queue]) as client:
        for priority in range(9, -1, -1):
            client.start(queued_job, f"p{priority}", queue=queue, priority=priority)
    with duralog.Engine(
        db, durability="normal", poll_interval=0.05, queues=[queue], max_threads=1
    ) as engine:
        for record in engine.list():
            engine.get(record.id).result(timeout=20)
    assert _order == [f"p{priority}" for priority in range(10)]


def test_cancelling_a_waiting_workflow_ends_it_without_running_it(db: str) -> None:
    queue = Queue("test-cancel", concurrency=1)
    with duralog.Engine(db, durability="normal", poll_interval=0.05, queues=[queue]) as engine:
        first = engine.start(blocker, queue=queue)
        wait_for(lambda: first.status() is duralog.WorkflowStatus.RUNNING)
        with engine.subscribe(workflow_id="q-cancelled") as seen:
            waiting = engine.start(queued_job, "never", queue=queue, id="q-cancelled")
            waiting.cancel("not needed any more")
            assert waiting.status() is duralog.WorkflowStatus.CANCELLED  # at once
            kinds = [seen.get(timeout=PATIENCE), seen.get(timeout=PATIENCE)]
        # subscribers hear of it like any commit of this engine
        assert [(e.kind, e.seq) for e in kinds if e] == [
            ("WorkflowStarted", 1),
            ("WorkflowCancelled", 2),
        ]
        with pytest.raises(duralog.WorkflowFailed, match="cancel"):
            waiting.result(timeout=1)
        _gate.set()
        first.result(timeout=10)
        assert [type(e.event).__name__ for e in waiting.history()] == [
            "WorkflowStarted",
            "WorkflowCancelled",
        ]
        # Its history replays: none of its code ran, so the check runs none either (it
        # used to report a divergence at seq 2, the code attempting its first step).
        instance, _ = replay_history(queued_job, waiting.history(), "q-cancelled")
        assert instance.finished
    assert "never" not in _order


def test_max_workflows_bounds_what_one_worker_runs_at_once(db: str) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05, max_workflows=2) as engine:
        handles = [engine.start(queued_job, f"m{i}") for i in range(8)]
        assert [h.result(timeout=20) for h in handles] == [f"m{i}" for i in range(8)]
    assert 1 <= _running["peak"] <= 2
    with pytest.raises(ConfigurationError, match="max_workflows"):
        duralog.Engine(db, max_workflows=0)


def test_a_dead_workers_queued_workflows_are_taken_over_within_worker_concurrency(
    db: str,
) -> None:
    queue = Queue("test-takeover", worker_concurrency=1)
    with duralog.Engine(db, worker=False, queues=[queue]) as client:
        for i in range(3):
            client.start(timed_job, f"t{i}", queue=queue, id=f"t{i}")
        # A worker with no worker limit took all three, then died (its leases still run).
        assert _orphan(client.store, queue.name, "gone", _dead_pid()) == ["t0", "t1", "t2"]
    with duralog.Engine(db, durability="normal", poll_interval=0.05, queues=[]) as bystander:
        # Its start-up recovery has run: a worker not serving the queue leaves them.
        assert {bystander.get(f"t{i}").record().owner for i in range(3)} == {"gone"}
    with duralog.Engine(db, durability="normal", poll_interval=0.05, queues=[queue]) as engine:
        assert [engine.get(f"t{i}").result(timeout=20) for i in range(3)] == ["t0", "t1", "t2"]
        assert [engine.get(f"t{i}").record().fence for i in range(3)] == [2, 2, 2]
    assert len(_intervals) == 3
    assert peak(_intervals) == 1  # one at a time on this worker, as worker_concurrency says


def test_a_suspended_queued_workflow_resumes_at_start_only_within_concurrency(db: str) -> None:
    queue = Queue("test-resume", concurrency=1)
    with duralog.Engine(db, worker=False, queues=[queue]) as client:
        client.start(timed_job, "stuck", queue=queue, id="stuck")
        client.start(timed_job, "busy", queue=queue, id="busy")
        store, now = client.store, time.time()
        # "stuck" ran first and diverged (SUSPENDED holds no slot); then "busy" took
        # the queue's one slot, on a worker that is alive (this process).
        (stuck,) = store.claim_queued("old", now, 300, queue.limits)
        suspended = Append("stuck", stuck.fence, [], status=_S.SUSPENDED, reason="diverged")
        assert store.append([suspended]) == [True]
        store.register_worker("live", socket.gethostname(), os.getpid(), now)
        (busy,) = store.claim_queued("live", now, 300, queue.limits)
        assert busy.workflow_id == "busy"
    with duralog.Engine(db, durability="normal", poll_interval=0.05, queues=[queue]) as engine:
        # Its start-up recovery has run, and found no room on the queue.
        assert engine.get("stuck").status() is _S.SUSPENDED
        done = LogEntry(2, time.time(), ev.WorkflowCompleted(result=codec.encode("busy")))
        ended = Append("busy", busy.fence, [done], status=_S.COMPLETED)
        assert engine.store.append([ended]) == [True]
        # The slot is free again, but only a worker starting up resumes SUSPENDED ones.
        assert engine.start(timed_job, "probe", queue=queue).result(timeout=10) == "probe"
        assert engine.get("stuck").status() is _S.SUSPENDED
    with duralog.Engine(db, durability="normal", poll_interval=0.05, queues=[queue]) as engine:
        assert engine.get("stuck").result(timeout=20) == "stuck"
        record = engine.get("stuck").record()
        assert (record.status, record.reason, record.fence) == (_S.COMPLETED, None, 2)


def test_an_orphan_that_cannot_be_rebuilt_does_not_hold_a_worker_slot(db: str) -> None:
    queue = Queue("test-corrupt-orphan", worker_concurrency=1)
    with duralog.Engine(db, worker=False, queues=[queue]) as client:
        client.start(timed_job, "bad", queue=queue, id="bad")
        assert _orphan(client.store, queue.name, "gone", _dead_pid()) == ["bad"]
        client.start(timed_job, "good", queue=queue, id="good")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET body = '{\"kind\": 42' WHERE workflow_id = 'bad'")
    conn.close()
    with duralog.Engine(db, durability="normal", poll_interval=0.05, queues=[queue]) as engine:
        # Taken over once, found corrupt and given back: from then on this worker
        # passes it over, and its one slot serves the next workflow.
        assert engine.get("good").result(timeout=10) == "good"
        assert engine.get("bad").record().owner is None
