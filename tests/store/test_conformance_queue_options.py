"""Every store keeps dedup ids, delayed starts, partitions and queue limits set at
runtime the same way, across writers.

Runs against a SQLite file, SQLite in memory and PostgreSQL (see ``conftest.py``).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import (
    Append,
    Claim,
    EventStore,
    NewWorkflow,
    QueueLimits,
    QueueOverrides,
    WorkflowStatus,
)
from duralog.store.events import LogEntry

Opener = Callable[[], EventStore]  # the fixture of conftest.py
RunSQL = Callable[..., list[tuple[Any, ...]]]
S = WorkflowStatus
T0 = 1_700_000_000.0


def take(store: EventStore, worker: str, limits: QueueLimits, now: float = T0) -> list[str]:
    return [c.workflow_id for c in store.claim_queued(worker, now, 30, limits)]


def ids(claims: list[Claim]) -> list[str]:
    return [c.workflow_id for c in claims]


def finish(store: EventStore, claim: Claim) -> None:
    assert store.append([Append(claim.workflow_id, claim.fence, [], status=S.COMPLETED)]) == [True]


def race(stores: list[EventStore], work: Callable[[EventStore, int], Any]) -> list[Any]:
    """Run ``work(store, i)`` in one thread per store, all released at once."""
    barrier = threading.Barrier(len(stores))
    results: list[Any] = [None] * len(stores)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(stores[i], i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def job(
    workflow_id: str,
    *,
    queue: str | None = "q",
    dedup: str | None = None,
    part: str | None = None,
    start_at: float | None = None,
    at: float = T0,
    priority: int = 0,
) -> NewWorkflow:
    started = LogEntry(
        1,
        at,
        ev.WorkflowStarted(
            name="job",
            args=codec.encode([]),
            queue=queue,
            dedup_id=dedup,
            partition=part,
            start_at=start_at,
        ),
    )
    return NewWorkflow(
        workflow_id,
        "job",
        started,
        queue=queue,
        priority=priority,
        dedup_id=dedup,
        partition_key=part,
        start_at=start_at,
    )


# -- dedup ids -----------------------------------------------------------------


def test_a_dedup_id_is_held_until_its_workflow_ends(store: EventStore) -> None:
    assert store.create_workflows([job("a", dedup="k")]) == [0]
    record = store.get_workflow("a")
    assert record is not None and record.dedup_id == "k"
    # Held while PENDING, then RUNNING: nothing written for the second.
    assert store.create_workflows([job("b", dedup="k")]) == [None]
    (claim,) = store.claim_queued("w", T0, 30, QueueLimits("q"))
    assert store.create_workflows([job("b", dedup="k")]) == [None]
    assert store.get_workflow("b") is None and store.read_events("b") == []
    # Other queues, and other dedup ids, are free meanwhile.
    assert store.create_workflows([job("c", dedup="k", queue="other"), job("d", dedup="j")]) == [
        0,
        0,
    ]
    finish(store, claim)
    assert store.create_workflows([job("b", dedup="k")]) == [0]


def test_a_suspended_workflow_keeps_its_dedup_id(store: EventStore) -> None:
    store.create_workflows([job("a", dedup="k")])
    (claim,) = store.claim_queued("w", T0, 30, QueueLimits("q"))
    assert store.append([Append("a", claim.fence, [], status=S.SUSPENDED, reason="x")]) == [True]
    assert store.create_workflows([job("b", dedup="k")]) == [None]
    assert store.cancel_queued("a", T0) is False  # (not waiting: resumed or failed later)


def test_one_batch_creates_one_workflow_per_dedup_id(store: EventStore) -> None:
    fences = store.create_workflows([job("a", dedup="k"), job("b", dedup="k"), job("c")])
    assert sorted(f is None for f in fences) == [False, False, True]
    live = [r.id for r in store.list_workflows() if r.dedup_id == "k"]
    assert len(live) == 1


def test_racing_writers_create_one_workflow_per_dedup_id(opener: Opener) -> None:
    stores = [opener() for _ in range(4)]
    created = race(stores, lambda s, i: s.create_workflows([job(f"w{i}", dedup="k")])[0])
    assert sorted(c is None for c in created) == [False, True, True, True]
    assert [r.dedup_id for r in stores[0].list_workflows()] == ["k"]


def test_an_existing_id_with_a_dedup_id_is_only_an_existing_id(store: EventStore) -> None:
    store.create_workflows([job("a", dedup="k")])
    assert store.create_workflows([job("a", dedup="k")]) == [None]
    assert [r.id for r in store.list_workflows()] == ["a"]


# -- delayed starts ------------------------------------------------------------


def test_a_delayed_workflow_is_not_claimed_before_its_start(store: EventStore) -> None:
    store.create_workflows(
        [job("later", queue=None, start_at=T0 + 10), job("queued-later", start_at=T0 + 10)]
    )
    assert store.claim("w", T0, 30, [S.PENDING, S.RUNNING]) == []
    assert take(store, "w", QueueLimits("q"), now=T0 + 9) == []
    assert store.next_start(T0, ["q"]) == T0 + 10
    assert store.next_start(T0, []) == T0 + 10  # the unqueued one
    assert store.next_start(T0 + 10, ["q"]) is None  # due: no wake-up left to wait for
    assert ids(store.claim("w", T0 + 10, 30, [S.PENDING])) == ["later"]
    assert take(store, "w", QueueLimits("q"), now=T0 + 10) == ["queued-later"]
    assert store.next_start(T0, ["q"]) is None


def test_a_delayed_start_waits_behind_nothing(store: EventStore) -> None:
    store.create_workflows([job("delayed", start_at=T0 + 60, priority=-5), job("now")])
    assert take(store, "w", QueueLimits("q", concurrency=1)) == ["now"]


def test_a_waiting_delayed_workflow_is_cancelled_at_once(store: EventStore) -> None:
    store.create_workflows([job("later", queue=None, start_at=T0 + 60)])
    assert store.cancel_queued("later", T0 + 1, "no longer needed") is True
    record = store.get_workflow("later")
    assert record is not None and record.status is S.CANCELLED
    assert [e.kind for e in store.read_events("later")] == ["WorkflowStarted", "WorkflowCancelled"]
    # An unqueued workflow that is not delayed goes through its inbox, as before.
    store.create_workflows([job("plain", queue=None)])
    assert store.cancel_queued("plain", T0) is False


# -- partitions ----------------------------------------------------------------


def test_partition_limits_are_counted_per_partition(store: EventStore) -> None:
    store.create_workflows(
        [job(f"a{i}", part="a", at=T0 + i) for i in range(5)]
        + [job("b0", part="b", at=T0 + 10), job("c0", part="c", at=T0 + 11)]
    )
    per_tenant = QueueLimits("q", concurrency=2, partitioned=True)
    assert take(store, "w1", per_tenant) == ["a0", "a1", "b0", "c0"]
    assert take(store, "w2", per_tenant) == []
    # Unpartitioned, the same limit is the whole queue's.
    assert take(store, "w2", QueueLimits("q", concurrency=5)) == ["a2"]


def test_worker_and_rate_limits_per_partition(store: EventStore) -> None:
    store.create_workflows([job(f"{p}{i}", part=p, at=T0 + i) for p in "ab" for i in range(2)])
    mine = QueueLimits("q", worker_concurrency=1, partitioned=True)
    assert take(store, "w1", mine) == ["a0", "b0"]
    assert take(store, "w2", mine) == ["a1", "b1"]
    assert take(store, "w1", mine) == []
    store.create_workflows(
        [job(f"r{p}{i}", queue="r", part=p, at=T0 + i) for p in "ab" for i in range(3)]
    )
    rated = QueueLimits("r", rate_limit=2, rate_period=60, partitioned=True)
    assert take(store, "w3", rated, now=T0 + 1) == ["ra0", "rb0", "ra1", "rb1"]
    assert take(store, "w3", rated, now=T0 + 2) == []  # 2 dequeued in the minute, each
    assert take(store, "w3", rated, now=T0 + 62) == ["ra2", "rb2"]


def test_orphans_of_a_partition_are_taken_over_within_its_share(store: EventStore) -> None:
    store.create_workflows([job(f"a{i}", part="a", at=T0 + i) for i in range(3)])
    assert take(store, "dead", QueueLimits("q", partitioned=True)) == ["a0", "a1", "a2"]
    limits = QueueLimits("q", worker_concurrency=2, partitioned=True)
    claims = store.claim_queued("w", T0 + 100, 30, limits, dead_owners=["dead"])
    assert ids(claims) == ["a0", "a1"]


_examples = itertools.count()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.sampled_from("abcd"), min_size=1, max_size=12),
    st.integers(1, 3),
)
def test_no_partition_passes_its_concurrency(
    store: EventStore, partitions: list[str], concurrency: int
) -> None:
    prefix = f"h{next(_examples)}-"  # each example its own queue
    store.create_workflows(
        [job(f"{prefix}{i}", queue=prefix, part=p, at=T0 + i) for i, p in enumerate(partitions)]
    )
    limits = QueueLimits(prefix, concurrency=concurrency, partitioned=True)
    taken = take(store, "w", limits)
    by_partition = {p: partitions.count(p) for p in partitions}
    want = sum(min(n, concurrency) for n in by_partition.values())
    assert len(taken) == want
    got: dict[str, int] = {}
    for workflow_id in taken:
        p = partitions[int(workflow_id.removeprefix(prefix))]
        got[p] = got.get(p, 0) + 1
    assert all(n <= concurrency for n in got.values())
    assert take(store, "w2", limits) == []  # nothing more until some end


# -- limits set at runtime -----------------------------------------------------


def test_stored_limits_merge_and_clear(store: EventStore) -> None:
    assert store.queue_limits() == {}
    assert store.put_queue_limits("q", QueueOverrides(concurrency=2), T0) == QueueOverrides(
        concurrency=2
    )
    both = store.put_queue_limits("q", QueueOverrides(rate_limit=None), T0 + 1)
    assert both == QueueOverrides(concurrency=2, rate_limit=None)
    assert store.queue_limits() == {"q": both}
    assert store.clear_queue_limits("q") is True
    assert store.clear_queue_limits("q") is False
    assert store.queue_limits() == {}


def test_every_claim_counts_with_the_stored_limits(opener: Opener) -> None:
    store, other = opener(), opener()
    store.create_workflows([job(f"j{i}", at=T0 + i) for i in range(5)])
    declared = QueueLimits("q", concurrency=4, rate_limit=100)
    other.put_queue_limits("q", QueueOverrides(concurrency=1), T0)
    assert take(store, "w", declared) == ["j0"]
    other.put_queue_limits("q", QueueOverrides(concurrency=None, rate_limit=2), T0)
    assert take(store, "w", declared) == ["j1"]  # 2 in the second: j0 and j1
    other.clear_queue_limits("q")
    assert take(store, "w", declared) == ["j2", "j3"]  # 4 running: the declared limit


def test_an_unreadable_stored_limit_leaves_the_declared_ones(
    store: EventStore, run_sql: RunSQL
) -> None:
    run_sql("INSERT INTO queue_limits (name, limits, updated_at) VALUES ('q', 'garbage', 0)")
    store.create_workflows([job("a"), job("b", at=T0 + 1)])
    assert take(store, "w", QueueLimits("q", concurrency=1)) == ["a"]
    assert store.queue_limits() == {}


def test_plain_workflows_ignore_all_of_it(store: EventStore) -> None:
    store.create_workflows([job("p", queue=None)])
    assert ids(store.claim("w", T0, 30, [S.PENDING])) == ["p"]


@pytest.mark.parametrize("field", ["dedup_id", "partition_key", "start_at"])
def test_the_index_rows_carry_what_the_start_recorded(store: EventStore, field: str) -> None:
    item = job("a", dedup="k", part="t", start_at=T0 + 5)
    store.create_workflows([item])
    record = store.get_workflow("a")
    (first,) = store.read_events("a")
    assert isinstance(first.event, ev.WorkflowStarted)
    recorded = {
        "dedup_id": first.event.dedup_id,
        "partition_key": first.event.partition,
        "start_at": first.event.start_at,
    }
    assert getattr(record, field) == recorded[field] == getattr(item, field)
