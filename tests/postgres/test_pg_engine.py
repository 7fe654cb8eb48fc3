"""The engine end to end on PostgreSQL: the same workflows as on SQLite, unchanged.

Steps, retries, timers, signals, published values, cancellation, children,
continue-as-new, queues, schedules; and wake-ups across engines through
LISTEN/NOTIFY (workers that would otherwise poll only every 30 s). Each test has
a fresh schema (the ``postgres_url`` fixture); without a server they are skipped.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from click.testing import CliRunner
from support import PATIENCE, wait_for

import duralog
from duralog.cli import main
from duralog.engine.queues import Queue

_lock = threading.Lock()
_attempts: Counter[str] = Counter()
_running = {"now": 0, "peak": 0}


@duralog.step
def pg_add(a: int, b: int) -> int:
    return a + b


@duralog.step(retry=duralog.RetryPolicy(max_attempts=4, initial_interval=0.01, jitter=False))
def pg_flaky(key: str) -> str:
    with _lock:
        _attempts[key] += 1
        attempt = _attempts[key]
    if attempt < 3:
        raise ConnectionError(f"attempt {attempt} of {key} failed")
    return f"{key} after {attempt}"


@duralog.step
def pg_busy(label: str) -> str:
    with _lock:
        _running["now"] += 1
        _running["peak"] = max(_running["peak"], _running["now"])
    time.sleep(0.03)
    with _lock:
        _running["now"] -= 1
    return label


@duralog.workflow(name="pg_steps")
async def pg_steps(n: int) -> int:
    total = 0
    for i in range(n):
        total = await pg_add(total, i)
    parts = await asyncio.gather(pg_add(1, 2), pg_add(3, 4))
    return total + sum(parts)


@duralog.workflow(name="pg_retries")
async def pg_retries(key: str) -> str:
    return await pg_flaky(key)


@duralog.workflow(name="pg_timer")
async def pg_timer() -> float:
    before = duralog.now()
    await duralog.sleep(0.2)
    return (duralog.now() - before).total_seconds()


@duralog.workflow(name="pg_signals")
async def pg_signals() -> list[str]:
    duralog.publish("stage", "waiting")
    got = [await duralog.wait_signal("item", timeout=30) for _ in range(2)]
    duralog.publish("stage", "done")
    return got


@duralog.workflow(name="pg_sleeper")
async def pg_sleeper() -> str:
    try:
        await duralog.sleep(3600)
    except asyncio.CancelledError:
        await pg_add(0, 0)  # a cleanup step
        raise
    return "slept"


@duralog.workflow(name="pg_child")
async def pg_child(n: int) -> int:
    if n < 0:
        raise ValueError("negative")
    return await pg_add(n, n)


@duralog.workflow(name="pg_parent")
async def pg_parent() -> list[object]:
    results: list[object] = [await pg_child(1), await pg_child(2)]
    try:
        await pg_child(-1)
    except duralog.WorkflowFailed as exc:
        results.append(exc.cause.type)
    return results


@duralog.workflow(name="pg_counter")
async def pg_counter(n: int, total: int) -> int:
    total = await pg_add(total, n)
    if n == 0:
        return total
    duralog.continue_as_new(n - 1, total)


@duralog.workflow(name="pg_tick")
async def pg_tick(tick: str, n: int) -> str:
    return f"{tick}: {await pg_add(n, n)}"


@duralog.workflow(name="pg_queued")
async def pg_queued(label: str) -> str:
    return await pg_busy(label)


pg_jobs = Queue("pg-jobs", concurrency=2)


@pytest.fixture
def engine(postgres_url: str) -> Iterator[duralog.Engine]:
    with duralog.Engine(postgres_url, durability="normal", poll_interval=0.1) as e:
        yield e


def history_is_gapless(handle: duralog.WorkflowHandle[object]) -> None:
    seqs = [e.seq for e in handle.history()]
    assert seqs == list(range(1, len(seqs) + 1))


def test_steps_and_gather(engine: duralog.Engine) -> None:
    handle = engine.start(pg_steps, 20)
    assert handle.result(timeout=30) == sum(range(20)) + 10
    history_is_gapless(handle)
    assert handle.status() is duralog.WorkflowStatus.COMPLETED


def test_retries(engine: duralog.Engine) -> None:
    handle = engine.start(pg_retries, "pg-retry")
    assert handle.result(timeout=30) == "pg-retry after 3"
    kinds = [e.kind for e in handle.history()]
    assert kinds.count("StepRetrying") == 2 and kinds[-1] == "WorkflowCompleted"


def test_durable_timer(engine: duralog.Engine) -> None:
    handle = engine.start(pg_timer)
    assert handle.result(timeout=30) > 0
    kinds = [e.kind for e in handle.history()]
    assert kinds.count("TimerStarted") == kinds.count("TimerFired") == 1
    # From the workflow's own time (its start), and never fired early (the now()
    # values it returns are the machine's, and may be taken later on a busy worker).
    by_kind = {e.kind: e for e in handle.history()}
    fire_at = by_kind["TimerStarted"].event.fire_at  # type: ignore[union-attr]
    assert fire_at == pytest.approx(by_kind["WorkflowStarted"].at + 0.2)
    assert by_kind["TimerFired"].at >= fire_at


def test_signals_and_published_values(engine: duralog.Engine) -> None:
    handle = engine.start(pg_signals)
    assert handle.get_event("stage", timeout=30) == "waiting"
    handle.signal("item", "first")
    handle.signal("item", "second")
    assert handle.result(timeout=30) == ["first", "second"]
    assert handle.get_event("stage", timeout=5) == "done"


def test_cancellation_runs_cleanup(engine: duralog.Engine) -> None:
    handle = engine.start(pg_sleeper)
    wait_for(lambda: "TimerStarted" in [e.kind for e in handle.history()])
    handle.cancel("no longer needed")
    with pytest.raises(duralog.WorkflowFailed, match="cancelled"):
        handle.result(timeout=30)
    assert handle.status() is duralog.WorkflowStatus.CANCELLED
    assert "StepCompleted" in [e.kind for e in handle.history()]


def test_children(engine: duralog.Engine) -> None:
    handle = engine.start(pg_parent)
    assert handle.result(timeout=30) == [2, 4, "ValueError"]
    children = [r for r in engine.list(name="pg_child")]
    assert sorted(r.parent_id for r in children) == [handle.id] * 3


def test_continue_as_new(engine: duralog.Engine) -> None:
    handle = engine.start(pg_counter, 4, 0, id="pg-counter")
    assert handle.result(timeout=30) == 4 + 3 + 2 + 1
    runs = sorted(r.id for r in engine.list(name="pg_counter"))
    assert runs == ["pg-counter"] + [f"pg-counter~run{i}" for i in range(1, 5)]


def test_queue_concurrency(postgres_url: str) -> None:
    _running.update(now=0, peak=0)
    with duralog.Engine(
        postgres_url, durability="normal", poll_interval=0.1, queues=[pg_jobs]
    ) as e:
        handles = [e.start(pg_queued, f"j{i}", queue=pg_jobs, priority=i % 3) for i in range(8)]
        assert [h.result(timeout=30) for h in handles] == [f"j{i}" for i in range(8)]
    assert 1 <= _running["peak"] <= 2


def test_schedules_fire_on_postgres(engine: duralog.Engine) -> None:
    engine.schedule("pg-every-second", "* * * * * *", pg_tick, 3)
    wait_for(lambda: len(engine.list(name="pg_tick")) >= 1)
    first = engine.list(name="pg_tick")[-1]
    assert first.id.startswith("pg-every-second@")
    assert engine.get(first.id).result(timeout=30).endswith(": 6")
    assert engine.unschedule("pg-every-second") is True


def test_another_engine_is_woken_by_notifications(postgres_url: str) -> None:
    # The worker polls once an hour: only LISTEN/NOTIFY can bring it work in the test.
    with (
        duralog.Engine(postgres_url, durability="normal", poll_interval=3600) as worker,
        duralog.Engine(postgres_url, worker=False) as client,
    ):
        assert worker.store is not client.store
        handle = client.start(pg_signals)
        assert handle.get_event("stage", timeout=PATIENCE) == "waiting"
        handle.signal("item", "a")
        handle.signal("item", "b")
        assert handle.result(timeout=PATIENCE) == ["a", "b"]


@duralog.workflow(name="pg_lock_flow")
async def pg_lock_flow(i: int) -> int:
    return i


def test_a_short_lock_timeout_does_not_stop_a_worker_from_starting(postgres_url: str) -> None:
    # Regression: with lock_timeout set on the server (here in the URL), the start-up
    # resume's wait for a queue's lock failed, and with it the engine's start.
    import psycopg

    from duralog.store.open import open_store
    from duralog.store.postgres_schema import lock_key

    queue = Queue("pg-lock-q", concurrency=2)
    url = postgres_url.replace("?", "?options=-c%20lock_timeout%3D200&", 1)
    store = open_store(url)
    key = lock_key(store.schema, "queue:pg-lock-q")  # type: ignore[attr-defined]
    store.close()
    holder = psycopg.connect(postgres_url.split("?")[0])
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (key,))  # another worker's claim
    threading.Timer(1.5, holder.rollback).start()
    try:
        with duralog.Engine(url, queues=[queue], poll_interval=0.05) as engine:
            handle = engine.start(pg_lock_flow, 5, queue=queue)
            assert handle.result(timeout=20) == 5
    finally:
        holder.close()


@pytest.mark.parametrize("pool_size", [1, 2])
def test_eight_threads_on_a_small_pool_all_complete(postgres_url: str, pool_size: int) -> None:
    # Worker loop, writer thread, step threads and eight callers share `pool_size`
    # connections: every call waits its turn, none waits while holding one (no deadlock).
    url = f"{postgres_url}&pool_size={pool_size}"
    with duralog.Engine(url, durability="normal", poll_interval=0.1) as engine:
        barrier = threading.Barrier(8)

        def caller(i: int) -> tuple[int, list[object]]:
            barrier.wait()
            steps = engine.start(pg_steps, i)
            parent = engine.start(pg_parent)
            assert engine.get(steps.id).record().name == "pg_steps"
            assert len(engine.list(name="pg_steps")) >= 1
            return steps.result(timeout=60), parent.result(timeout=60)

        with ThreadPoolExecutor(8) as threads:
            results = list(threads.map(caller, range(8)))
        assert results == [(sum(range(i)) + 10, [2, 4, "ValueError"]) for i in range(8)]
        assert len(engine.store._db.backend_pids) <= pool_size  # type: ignore[attr-defined]


def test_a_read_command_creates_no_log_in_an_empty_schema(postgres_url: str) -> None:
    done = CliRunner().invoke(main, ["--db", postgres_url, "list"])
    assert done.exit_code == 1
    assert done.stderr.startswith("error: no duralog log at ") and "nothing was created" in (
        done.stderr
    )
    schema = postgres_url.rsplit("schema=", 1)[1]
    with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    assert found == (0,)
    with duralog.Engine(postgres_url) as engine:  # a command that runs workflows creates it
        engine.start(pg_steps, 2).result(timeout=PATIENCE)
    assert CliRunner().invoke(main, ["--db", postgres_url, "count"]).stdout == "1\n"


_stopped = threading.Event()


@duralog.step(name="pg_forever")
async def pg_forever() -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        _stopped.set()
        raise


@duralog.workflow(name="pg_stuck")
async def pg_stuck() -> None:
    await pg_forever()


def test_terminate_stops_the_step_of_another_engine_at_once(postgres_url: str) -> None:
    # Polling, lease renewals and timers are an hour away: the worker stops the running
    # step because the terminate's NOTIFY told it, not because it found out later.
    _stopped.clear()
    with (
        duralog.Engine(postgres_url, poll_interval=3600, lease_seconds=3600) as worker,
        duralog.Engine(postgres_url, worker=False) as client,
    ):
        handle = worker.start(pg_stuck)
        wait_for(lambda: "StepStarted" in [e.kind for e in handle.history()])
        assert client.get(handle.id).terminate("stuck") is True
        assert _stopped.wait(PATIENCE)
        with pytest.raises(duralog.WorkflowFailed, match="Terminated: stuck"):
            client.get(handle.id).result(timeout=PATIENCE)
        assert [e.kind for e in handle.history()][-1] == "WorkflowTerminated"
        history_is_gapless(handle)


def test_finding_workflows_by_id_prefix_and_end_time(engine: duralog.Engine) -> None:
    for i in range(3):
        engine.run(pg_steps, 1, id=f"find-{i}")
    engine.run(pg_steps, 1, id="find_3")  # _ is no wildcard
    last = engine.get("find-2").record().updated_at
    assert [r.id for r in engine.list(id_prefix="find-")] == ["find-2", "find-1", "find-0"]
    assert [r.id for r in engine.list(id_prefix="find-", ended_since=last)] == ["find-2"]
    page = engine.list(id_prefix="find", limit=2)
    assert [r.id for r in engine.list(id_prefix="find", limit=2, after=page[-1])] == [
        "find-1",
        "find-0",
    ]
