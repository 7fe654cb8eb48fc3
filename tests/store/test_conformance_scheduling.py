"""Every store keeps queue limits, schedule ticks and breakers the same way, across writers.

Runs against a SQLite file, SQLite in memory and PostgreSQL (see ``conftest.py``).
The cross-writer tests open several stores on one log and race them in threads.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import (
    Append,
    BreakerRecord,
    Claim,
    EventStore,
    NewWorkflow,
    QueueLimits,
    ScheduleRecord,
    WorkflowStatus,
)
from duralog.store.events import LogEntry

Lapse = Callable[..., None]  # the fixture of conftest.py
Opener = Callable[[], EventStore]  # the fixture of conftest.py
T0 = 1_700_000_000.0
S = WorkflowStatus


def queued(
    workflow_id: str, queue: str = "q", priority: int = 0, at: float = T0, name: str = "job"
) -> NewWorkflow:
    started = LogEntry(1, at, ev.WorkflowStarted(name=name, args=codec.encode([])))
    return NewWorkflow(workflow_id, name, started, queue=queue, priority=priority)


def plain(workflow_id: str, at: float = T0, name: str = "report") -> NewWorkflow:
    started = LogEntry(1, at, ev.WorkflowStarted(name=name, args=codec.encode([])))
    return NewWorkflow(workflow_id, name, started)


def take(store: EventStore, worker: str, limits: QueueLimits, now: float = T0) -> list[str]:
    return [c.workflow_id for c in store.claim_queued(worker, now, 30, limits)]


def finish(store: EventStore, claim: Claim) -> None:
    assert store.append([Append(claim.workflow_id, claim.fence, [], status=S.COMPLETED)]) == [True]


def ids(claims: list[Claim]) -> list[str]:
    return [c.workflow_id for c in claims]


def suspend(store: EventStore, claim: Claim) -> None:
    """End ``claim``'s lease as SUSPENDED, as a worker does when the code diverged."""
    suspended = Append(claim.workflow_id, claim.fence, [], status=S.SUSPENDED, reason="diverged")
    assert store.append([suspended]) == [True]


def state(store: EventStore, workflow_id: str) -> tuple[object, ...]:
    found = store.get_workflow(workflow_id)
    assert found is not None
    return (found.status, found.owner, found.fence)


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


# -- queues ------------------------------------------------------------------


def test_queued_workflows_leave_by_priority_then_age(store: EventStore) -> None:
    store.create_workflows(
        [
            queued("p5", priority=5, at=T0),
            queued("p-1", priority=-1, at=T0 + 1),
            queued("p3-old", priority=3, at=T0 + 2),
            queued("p0", priority=0, at=T0 + 3),
            queued("p3-new", priority=3, at=T0 + 4),
            queued("other-queue", queue="other", priority=-9),
        ]
    )
    one_at_a_time = QueueLimits("q", concurrency=1)
    order = []
    while claims := store.claim_queued("w1", T0, 30, one_at_a_time):
        (claim,) = claims
        found = store.get_workflow(claim.workflow_id)
        assert found is not None
        assert (found.status, found.owner, found.fence) == (S.RUNNING, "w1", 1)
        assert found.lease_until is not None
        order.append(claim.workflow_id)
        finish(store, claim)
    assert order == ["p-1", "p0", "p3-old", "p3-new", "p5"]
    assert take(store, "w2", QueueLimits("q")) == []


def test_queue_concurrency_counts_running_and_paused(store: EventStore) -> None:
    store.create_workflows([queued(f"j{i}", at=T0 + i) for i in range(5)])
    limits = QueueLimits("q", concurrency=2)
    first = store.claim_queued("w1", T0, 30, limits)
    assert [c.workflow_id for c in first] == ["j0", "j1"]
    assert take(store, "w2", limits) == []
    store.append([Append("j0", first[0].fence, [], status=S.PAUSED)])  # still holds its slot
    assert take(store, "w2", limits) == []
    finish(store, first[1])
    assert take(store, "w2", limits) == ["j2"]


def test_queue_worker_concurrency_is_per_worker(store: EventStore) -> None:
    store.create_workflows([queued(f"j{i}", at=T0 + i) for i in range(6)])
    limits = QueueLimits("q", worker_concurrency=2)
    assert take(store, "w1", limits) == ["j0", "j1"]
    assert take(store, "w1", limits) == []
    assert take(store, "w2", limits) == ["j2", "j3"]
    queued_limits = QueueLimits("q", concurrency=5, worker_concurrency=2)
    assert take(store, "w3", queued_limits) == ["j4"]  # 4 running: one slot left in all


def test_queue_rate_limit_counts_a_sliding_window(store: EventStore) -> None:
    store.create_workflows([queued(f"j{i}", at=T0 + i) for i in range(6)])
    limits = QueueLimits("q", rate_limit=2, rate_period=10.0)
    assert take(store, "w1", limits, now=T0) == ["j0", "j1"]
    assert take(store, "w2", limits, now=T0 + 5) == []
    assert take(store, "w2", limits, now=T0 + 9.9) == []
    assert take(store, "w2", limits, now=T0 + 10.5) == ["j2", "j3"]
    assert take(store, "w1", limits, now=T0 + 15) == []


def test_queue_claims_only_known_workflow_names(store: EventStore) -> None:
    store.create_workflows([queued("a", name="known"), queued("b", name="unknown")])
    claims = store.claim_queued("w1", T0, 30, QueueLimits("q"), names=["known"])
    assert [c.workflow_id for c in claims] == ["a"]
    assert store.claim_queued("w1", T0, 30, QueueLimits("q"), names=[]) == []


def test_queue_limits_hold_across_racing_writers(opener: Opener) -> None:
    first = opener()
    first.create_workflows([queued(f"j{i:02}", at=T0 + i) for i in range(40)])
    stores = [first, opener(), opener(), opener()]
    limits = QueueLimits("q", concurrency=5, worker_concurrency=2)

    def claim_twice(store: EventStore, i: int) -> list[Claim]:
        return store.claim_queued(f"w{i}", T0, 30, limits) + store.claim_queued(
            f"w{i}", T0, 30, limits
        )

    claims = race(stores, claim_twice)
    # A claimer that finds the queue busy may come back empty-handed (PostgreSQL
    # does not wait for the queue's lock): top up one by one, as later polls would.
    for _ in range(3):
        for i, store in enumerate(stores):
            claims[i] += store.claim_queued(f"w{i}", T0, 30, limits)
    per_worker = [len(c) for c in claims]
    assert sum(per_worker) == 5 and max(per_worker) <= 2
    assert len({c.workflow_id for batch in claims for c in batch}) == 5
    running = [r for r in first.list_workflows(status=S.RUNNING)]
    assert len(running) == 5


def test_queue_rate_limit_holds_across_racing_writers(opener: Opener) -> None:
    first = opener()
    first.create_workflows([queued(f"j{i:02}", at=T0 + i) for i in range(30)])
    stores = [first, opener(), opener()]
    limits = QueueLimits("q", rate_limit=4, rate_period=60.0)
    claims = race(stores, lambda s, i: s.claim_queued(f"w{i}", T0, 30, limits))
    assert sum(len(c) for c in claims) == 4


# -- taking over and resuming queued workflows --------------------------------


def test_taking_over_a_dead_workers_queued_workflows_keeps_worker_concurrency(
    store: EventStore, lapse: Lapse
) -> None:
    store.create_workflows([queued(f"j{i}", at=T0 + i) for i in range(3)])
    assert take(store, "A", QueueLimits("q")) == ["j0", "j1", "j2"]  # A had no worker limit
    one = QueueLimits("q", worker_concurrency=1)

    def take_over(worker: str, now: float = T0, dead: tuple[str, ...] = ("A",)) -> list[Claim]:
        return store.claim_queued(worker, now, 300, one, dead_owners=dead)

    (first,) = take_over("B")
    assert (first.workflow_id, first.fence) == ("j0", 2)
    assert state(store, "j0") == (S.RUNNING, "B", 2)
    assert take_over("B") == []  # its one slot is taken
    assert take_over("C", dead=()) == []  # A's lease still runs
    lapse("A")
    assert ids(take_over("C", dead=())) == ["j1"]  # ... until it expires
    assert take_over("C", dead=()) == []
    finish(store, first)
    assert ids(take_over("B")) == ["j2"]
    assert [state(store, f"j{i}") for i in range(3)] == [
        (S.COMPLETED, None, 2),
        (S.RUNNING, "C", 2),
        (S.RUNNING, "B", 2),
    ]


def test_taking_over_ignores_the_global_limits_its_workflows_already_count_in(
    store: EventStore,
) -> None:
    store.create_workflows([queued(f"j{i}", at=T0 + i) for i in range(4)])
    limits = QueueLimits("q", concurrency=3, rate_limit=3, rate_period=60.0)
    first = store.claim_queued("A", T0, 30, limits)
    assert ids(first) == ["j0", "j1", "j2"]
    store.append([Append("j1", first[1].fence, [], status=S.PAUSED)])
    # The queue is full and its rate used up: j3 waits, but A's orphans are taken over.
    assert take(store, "B", limits, now=T0 + 10) == []
    two = QueueLimits("q", concurrency=3, worker_concurrency=2, rate_limit=3, rate_period=60.0)
    taken = store.claim_queued("B", T0 + 10, 30, two, dead_owners=["A"])
    assert ids(taken) == ["j0", "j1"]
    rest = store.claim_queued("C", T0 + 10, 30, limits, dead_owners=["A"])
    assert ids(rest) == ["j2"]  # and not j3
    assert [state(store, f"j{i}") for i in range(4)] == [
        (S.RUNNING, "B", 2),
        (S.PAUSED, "B", 2),  # a taken-over workflow keeps its status
        (S.RUNNING, "C", 2),
        (S.PENDING, None, 0),
    ]
    for claim in [*taken, *rest]:
        finish(store, claim)
    # A takeover is no departure from the queue: the rate window holds only the
    # three dequeues at T0, so at T0 + 61 there is room again.
    assert take(store, "D", limits, now=T0 + 61) == ["j3"]


def test_a_suspended_queued_workflow_is_resumed_only_on_request_and_within_concurrency(
    store: EventStore,
) -> None:
    store.create_workflows([queued("stuck", at=T0), queued("busy", at=T0 + 1)])
    limits = QueueLimits("q", concurrency=1, rate_limit=2, rate_period=60.0)
    (stuck,) = store.claim_queued("A", T0, 30, limits)
    suspend(store, stuck)  # SUSPENDED holds no slot ...
    (busy,) = store.claim_queued("A", T0, 30, limits)  # ... so busy takes it
    assert busy.workflow_id == "busy"

    def resume(flag: bool) -> list[Claim]:
        return store.claim_queued("B", T0 + 1, 30, limits, resume_suspended=flag)

    assert resume(True) == []  # busy holds the only slot
    finish(store, busy)
    assert resume(False) == []
    assert state(store, "stuck") == (S.SUSPENDED, None, 1)
    # Resumed although the rate limit is used up (2 dequeues in the window).
    (claim,) = resume(True)
    assert (claim.workflow_id, claim.fence) == ("stuck", 2)
    found = store.get_workflow("stuck")
    assert found is not None
    assert (found.status, found.reason, found.owner) == (S.RUNNING, None, "B")
    assert found.lease_until is not None
    assert resume(True) == []  # it holds the slot now


def test_claim_queued_takes_over_then_resumes_then_dequeues_within_one_limit(
    store: EventStore,
) -> None:
    store.create_workflows(
        [
            queued("orphan", at=T0),
            queued("orphan-x", at=T0, name="other"),
            queued("stuck", at=T0 + 1),
            queued("stuck-x", at=T0 + 1, name="other"),
        ]
    )
    claims = {c.workflow_id: c for c in store.claim_queued("A", T0, 30, QueueLimits("q"))}
    suspend(store, claims["stuck"])
    suspend(store, claims["stuck-x"])
    store.create_workflows(
        [queued("p2", at=T0 + 3), queued("p1", at=T0 + 2), queued("p-x", at=T0, name="other")]
    )

    def claim(limit: int, worker_concurrency: int | None = None) -> list[str]:
        limits = QueueLimits("q", worker_concurrency=worker_concurrency)
        found = store.claim_queued(
            "B",
            T0,
            T0 + 30,
            limits,
            names=["job"],
            limit=limit,
            dead_owners=["A"],
            resume_suspended=True,
        )
        return ids(found)

    assert claim(limit=5, worker_concurrency=2) == ["orphan", "stuck"]
    assert claim(limit=1) == ["p1"]
    assert claim(limit=5) == ["p2"]
    assert claim(limit=5) == []
    assert state(store, "orphan-x") == (S.RUNNING, "A", 1)
    assert state(store, "stuck-x") == (S.SUSPENDED, None, 1)
    assert state(store, "p-x") == (S.PENDING, None, 0)


def test_claim_queued_leaves_the_excluded_workflows(store: EventStore) -> None:
    store.create_workflows([queued("bad", at=T0), queued("next", at=T0 + 1)])
    assert ids(store.claim_queued("A", T0, 30, QueueLimits("q"), limit=1)) == ["bad"]
    one = QueueLimits("q", worker_concurrency=1)
    # A worker that skipped "bad" lately does not spend its one slot on it.
    found = store.claim_queued("B", T0, 30, one, dead_owners=["A"], exclude=["bad", "x"])
    assert ids(found) == ["next"]
    assert state(store, "bad") == (S.RUNNING, "A", 1)
    store.create_workflows([queued("later", at=T0 + 2)])
    assert store.claim_queued("C", T0, 30, QueueLimits("q"), exclude=["later"]) == []


# -- schedules -----------------------------------------------------------------


def test_cancel_queued_ends_only_a_workflow_still_waiting(store: EventStore) -> None:
    store.create_workflows([queued("first"), queued("second", at=T0 + 1), plain("plain")])
    store.send("second", "signal", "go", b"1", T0)
    assert take(store, "w1", QueueLimits("q", concurrency=1)) == ["first"]
    assert store.cancel_queued("first", T0 + 1) is False  # running: through its inbox
    assert store.cancel_queued("plain", T0 + 1) is False  # not queued
    assert store.cancel_queued("nope", T0 + 1) is False
    assert store.cancel_queued("second", T0 + 2, "not needed") is True
    assert store.cancel_queued("second", T0 + 3) is False  # once
    record = store.get_workflow("second")
    assert record is not None and (record.status, record.last_seq) == (S.CANCELLED, 2)
    (_, last) = store.read_events("second")
    assert (last.seq, last.at, last.event) == (2, T0 + 2, ev.WorkflowCancelled(reason="not needed"))
    assert store.inbox("second") == []
    assert take(store, "w2", QueueLimits("q")) == []  # nothing left on the queue


def schedule(schedule_id: str = "nightly", **fields: Any) -> ScheduleRecord:
    values: dict[str, Any] = {
        "id": schedule_id,
        "cron": "0 3 * * *",
        "workflow": "report",
        "args": b'["all"]',
        "last_tick": T0,
        "created_at": T0,
        "updated_at": T0,
    }
    return ScheduleRecord(**{**values, **fields})


def test_put_schedule_creates_then_updates_its_definition_only(store: EventStore) -> None:
    store.put_schedule(schedule("b"))
    store.put_schedule(schedule("a", queue="reports", catch_up="all", timezone="Europe/Paris"))
    assert [s.id for s in store.schedules()] == ["a", "b"]
    assert store.schedules()[0] == schedule(
        "a", queue="reports", catch_up="all", timezone="Europe/Paris"
    )
    store.put_schedule(schedule("a", queue="tenants", partition_key="acme"))
    assert store.schedules()[0] == schedule("a", queue="tenants", partition_key="acme")
    assert store.fire_schedule("b", T0, T0 + 50, []) is True
    assert store.pause_schedule("b", True, T0 + 1) is True
    # A worker that read the schedule before the pause cannot fire it after.
    assert store.fire_schedule("b", T0 + 50, T0 + 60, []) is False
    store.put_schedule(
        schedule("b", cron="*/5 * * * *", args=b"[]", last_tick=0.0, updated_at=T0 + 2)
    )
    (_, b) = store.schedules()
    # The definition changed; the last tick and the pause stay.
    assert (b.cron, b.args, b.last_tick, b.paused, b.updated_at) == (
        "*/5 * * * *",
        b"[]",
        T0 + 50,
        True,
        T0 + 2,
    )


def test_pause_resume_and_delete_schedules(store: EventStore) -> None:
    store.put_schedule(schedule())
    assert store.pause_schedule("nightly", True, T0 + 1) is True
    assert store.schedules()[0].paused is True
    assert store.pause_schedule("nightly", False, T0 + 2) is True
    assert (store.schedules()[0].paused, store.schedules()[0].updated_at) == (False, T0 + 2)
    # Resuming skips what fell while paused: the last tick moves up to the resume.
    assert store.schedules()[0].last_tick == max(schedule().last_tick, T0 + 2)
    assert store.pause_schedule("nope", True, T0) is False
    assert store.delete_schedule("nightly") is True
    assert store.delete_schedule("nightly") is False
    assert store.schedules() == []


def test_fire_schedule_moves_the_tick_and_creates_its_workflows(store: EventStore) -> None:
    store.put_schedule(schedule())
    ticks = [plain("nightly@1", T0 + 1), plain("nightly@2", T0 + 2)]
    assert store.fire_schedule("nightly", T0, T0 + 2, ticks) is True
    assert store.schedules()[0].last_tick == T0 + 2
    assert sorted(r.id for r in store.list_workflows()) == ["nightly@1", "nightly@2"]
    # The old tick is gone: firing from it again does nothing.
    assert store.fire_schedule("nightly", T0, T0 + 3, [plain("x")]) is False
    assert store.get_workflow("x") is None
    assert store.fire_schedule("ghost", T0, T0 + 3, []) is False


def test_each_tick_is_fired_once_across_racing_writers(opener: Opener) -> None:
    first = opener()
    first.put_schedule(schedule())
    stores = [first, opener(), opener(), opener()]

    fired = race(stores, lambda s, i: s.fire_schedule("nightly", T0, T0 + 60, [plain(f"tick-{i}")]))
    assert fired.count(True) == 1
    assert [r.id for r in first.list_workflows()] == [f"tick-{fired.index(True)}"]


# -- circuit breakers ------------------------------------------------------------


def breaker(version: int, state: str = "open", failures: int = 3) -> BreakerRecord:
    return BreakerRecord("payments", state, failures, T0 + version, version, T0 + version)


def test_breakers_change_by_compare_and_set(store: EventStore) -> None:
    assert store.get_breaker("payments") is None
    assert store.put_breaker(breaker(2)) is False  # there is no version 1 yet
    assert store.put_breaker(breaker(1, "closed", 1)) is True
    assert store.get_breaker("payments") == breaker(1, "closed", 1)
    assert store.put_breaker(breaker(1, "open", 5)) is False  # version 1 exists
    assert store.put_breaker(breaker(2)) is True
    assert store.put_breaker(breaker(2, "half-open")) is False  # stale
    assert store.get_breaker("payments") == breaker(2)
    none_open = BreakerRecord("db", "closed", 0, None, 1, T0)
    assert store.put_breaker(none_open) is True
    assert store.get_breaker("db") == none_open


@pytest.mark.parametrize("version", [1, 2])
def test_one_breaker_change_wins_across_racing_writers(opener: Opener, version: int) -> None:
    first = opener()
    if version == 2:
        assert first.put_breaker(breaker(1, "closed", 0)) is True
    stores = [first, opener(), opener(), opener()]
    won = race(stores, lambda s, i: s.put_breaker(breaker(version, f"state-{i}", i)))
    assert Counter(won) == Counter({True: 1, False: 3})
    found = first.get_breaker("payments")
    assert found is not None and found.state == f"state-{won.index(True)}"
