"""``engine.start`` with ``dedup_id``, ``partition``, ``delay``/``start_at``, and
``engine.set_queue_limits``, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest
from support import PATIENCE, wait_for

import duralog
from duralog import Queue
from duralog.errors import ConfigurationError

_S = duralog.WorkflowStatus
_gates: dict[str, threading.Event] = {}
_ran: list[tuple[str, float]] = []


@duralog.step
def gated(label: str) -> str:
    _ran.append((label, time.time()))
    gate = _gates.setdefault(label.split("-")[0], threading.Event())
    assert gate.wait(PATIENCE), f"the test never opened gate {label!r}"
    return label


@duralog.workflow(name="options_gated")
async def gated_job(label: str) -> str:
    return await gated(label)


@duralog.workflow(name="options_quick")
async def quick(label: str) -> str:
    _ran.append((label, time.time()))
    return label


@duralog.workflow(name="options_slow")
async def slow() -> str:
    await duralog.sleep(3600)
    return "late"


@pytest.fixture(autouse=True)
def _reset() -> None:
    _gates.clear()
    _ran.clear()


@pytest.fixture(params=["sqlite", "postgres"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh log: a SQLite file, or a PostgreSQL schema."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "log.db")


def open_gate(name: str) -> None:
    _gates.setdefault(name, threading.Event()).set()


# -- dedup ids ---------------------------------------------------------------------


def test_a_dedup_id_is_refused_until_its_holder_ends(log: str) -> None:
    mail = Queue("opt-mail")
    with duralog.Engine(log, durability="normal", poll_interval=0.05, queues=[mail]) as engine:
        first = engine.start(gated_job, "one-a", queue=mail, dedup_id="user-7")
        with pytest.raises(duralog.DuplicateWorkflow) as refused:
            engine.start(gated_job, "one-b", queue=mail, dedup_id="user-7")
        assert (refused.value.queue, refused.value.dedup_id) == ("opt-mail", "user-7")
        assert refused.value.workflow_id == first.id
        assert f"workflow {first.id!r} holds it until it ends" in str(refused.value)
        wait_for(lambda: first.status() is _S.RUNNING)
        with pytest.raises(duralog.DuplicateWorkflow):  # RUNNING holds it too
            engine.start(gated_job, "one-c", queue="opt-mail", dedup_id="user-7")
        # Starting the holder's own id again is an idempotent start, not a duplicate.
        assert engine.start(gated_job, "one-a", id=first.id, queue=mail, dedup_id="user-7").id == (
            first.id
        )
        open_gate("one")
        assert first.result(timeout=PATIENCE) == "one-a"
        second = engine.start(gated_job, "one-d", queue=mail, dedup_id="user-7")
        assert second.result(timeout=PATIENCE) == "one-d"
        started = second.history()[0].event
        assert getattr(started, "dedup_id", None) == "user-7"
        assert getattr(started, "queue", None) == "opt-mail"
        assert engine.list(status="COMPLETED")[0].dedup_id == "user-7"


def test_racing_engines_start_one_workflow_per_dedup_id(log: str) -> None:
    mail = Queue("opt-race")
    engines = [
        duralog.Engine(log, worker=False, durability="normal", queues=[mail]) for _ in range(4)
    ]
    barrier = threading.Barrier(len(engines))
    outcomes: list[str] = []

    def start(engine: duralog.Engine, i: int) -> None:
        barrier.wait()
        try:
            engine.start(gated_job, f"race-{i}", queue=mail, dedup_id="once")
            outcomes.append("started")
        except duralog.DuplicateWorkflow:
            outcomes.append("refused")

    threads = [threading.Thread(target=start, args=(e, i)) for i, e in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sorted(outcomes) == ["refused", "refused", "refused", "started"]
        assert len(engines[0].list()) == 1
    finally:
        for engine in engines:
            engine.close()


def test_start_options_are_checked_before_anything_is_written(log: str) -> None:
    mail, tenants = Queue("opt-check"), Queue("opt-tenants", partitioned=True)
    with duralog.Engine(log, worker=False, queues=[mail, tenants]) as engine:
        cases = [
            (dict(dedup_id="k"), "dedup_id 'k' needs a queue"),
            (dict(queue=mail, dedup_id=""), "a dedup id must be a non-empty string"),
            (dict(queue=mail, partition="t"), "which is not partitioned"),
            (dict(partition="t"), "partition 't' was given with no queue; a partition is for"),
            (dict(queue=tenants), "queue 'opt-tenants' is partitioned"),
            (dict(queue=tenants, partition=5), "a partition must be a non-empty string"),
            (dict(delay=-1), "a start delay must be"),
            (dict(delay=1, start_at=dt.datetime.now(dt.UTC)), "delay or start_at, not both"),
            (dict(start_at=dt.datetime(2030, 1, 1)), "has no time zone"),
            (dict(start_at="tomorrow"), "start_at must be a datetime"),
        ]
        for options, words in cases:
            with pytest.raises(ConfigurationError, match=words):
                engine.start(quick, "x", **options)  # type: ignore[arg-type]
        assert engine.list() == []


# -- delayed starts ------------------------------------------------------------------


def test_a_delayed_start_runs_when_due_without_polling(log: str) -> None:
    # A poll every minute: only the worker's wake-up for the start can run it in time.
    with duralog.Engine(log, durability="normal", poll_interval=60) as engine:
        before = time.time()
        handle = engine.start(quick, "later", delay=dt.timedelta(seconds=0.5))
        assert handle.status() is _S.PENDING
        record = engine.store.get_workflow(handle.id)
        assert record is not None and record.start_at is not None
        assert record.start_at == pytest.approx(before + 0.5, abs=0.2)
        assert handle.result(timeout=PATIENCE) == "later"
        ((_, at),) = _ran
        assert at >= record.start_at
        started = handle.history()[0].event
        assert getattr(started, "start_at", None) == record.start_at


def test_a_delayed_queued_start_waits_behind_nothing(log: str) -> None:
    mail = Queue("opt-delayed", concurrency=1)
    with duralog.Engine(log, durability="normal", poll_interval=0.05, queues=[mail]) as engine:
        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.6)
        later = engine.start(quick, "later", queue=mail, start_at=at, priority=-9)
        now = engine.start(quick, "now", queue=mail)
        assert now.result(timeout=PATIENCE) == "now"
        assert later.status() is _S.PENDING  # its start has not come: "now" went first
        assert later.result(timeout=PATIENCE) == "later"
        assert [label for label, _ in _ran] == ["now", "later"]
        assert _ran[1][1] >= at.timestamp()


def test_another_process_s_delayed_start_wakes_the_worker(log: str) -> None:
    with duralog.Engine(log, durability="normal", poll_interval=0.2) as worker:
        with duralog.Engine(log, worker=False) as client:
            handle = client.start(quick, "from-afar", delay=1.0)
            due = client.store.get_workflow(handle.id).start_at  # type: ignore[union-attr]
        assert worker.get(handle.id).result(timeout=PATIENCE) == "from-afar"
        assert _ran[0][1] >= due  # type: ignore[operator]


def test_a_delayed_workflow_is_cancelled_at_once_and_times_out_from_its_start(log: str) -> None:
    with duralog.Engine(log, durability="normal", poll_interval=0.05) as engine:
        waiting = engine.start(quick, "never", delay=3600)
        waiting.cancel("not needed")
        assert waiting.status() is _S.CANCELLED and _ran == []
        timed = engine.start(slow, delay=3600, timeout=60)
        state = timed.state()
        assert state.deadline == pytest.approx(state.started_at + 3600 + 60, abs=1)


# -- partitions ---------------------------------------------------------------------


def test_one_tenant_cannot_starve_the_others(log: str) -> None:
    tenants = Queue("opt-fair", concurrency=1, partitioned=True)
    with duralog.Engine(log, durability="normal", poll_interval=0.05, queues=[tenants]) as engine:
        big = [
            engine.start(gated_job, f"big-{i}", queue=tenants, partition="big") for i in range(5)
        ]
        wait_for(lambda: big[0].status() is _S.RUNNING)
        small = engine.start(quick, "small", queue=tenants, partition="small")
        assert small.result(timeout=PATIENCE) == "small"  # while "big" holds its one slot
        assert [h.status() for h in big[1:]] == [_S.PENDING] * 4
        open_gate("big")
        assert [h.result(timeout=PATIENCE) for h in big] == [f"big-{i}" for i in range(5)]
        fork = big[0].restart()
        record = engine.store.get_workflow(fork.id)
        assert record is not None and record.partition_key == "big"


# -- limits set at runtime ------------------------------------------------------------


def test_limits_set_at_runtime_reach_every_worker(log: str) -> None:
    batch = Queue("opt-batch", concurrency=1)
    with duralog.Engine(log, durability="normal", poll_interval=0.05, queues=[batch]) as worker:
        handles = [worker.start(gated_job, f"batch-{i}", queue=batch) for i in range(4)]
        wait_for(lambda: handles[0].status() is _S.RUNNING)
        with duralog.Engine(log, worker=False) as operator:  # another process, say
            limits = operator.set_queue_limits("opt-batch", concurrency=3)
            assert limits.concurrency == 3
            wait_for(lambda: [h.status() for h in handles].count(_S.RUNNING) == 3)
            operator.set_queue_limits("opt-batch", rate_limit=None, worker_concurrency=None)
            assert operator.store.queue_limits()["opt-batch"].concurrency == 3
            assert operator.clear_queue_limits("opt-batch") is True
            assert operator.clear_queue_limits("opt-batch") is False
        assert worker.queue_limits(batch).concurrency == 1  # declared again
        open_gate("batch")
        for handle in handles:
            handle.result(timeout=PATIENCE)
        with pytest.raises(ConfigurationError, match="was given no limit to set"):
            worker.set_queue_limits(batch)
        with pytest.raises(ConfigurationError, match="concurrency must be a whole number"):
            worker.set_queue_limits(batch, concurrency=0)
