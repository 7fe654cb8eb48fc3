"""Every store hands out leases the same way: claims, expiry, dead owners, renewals, workers.

Runs against a SQLite file, SQLite in memory and PostgreSQL (see ``conftest.py``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from duralog.errors import ErrorDetails
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import (
    Append,
    Claim,
    EventStore,
    NewWorkflow,
    QueueLimits,
    WorkflowStatus,
)
from duralog.store.events import LogEntry

Opener = Callable[[], EventStore]  # the fixture of conftest.py
Lapse = Callable[..., None]  # the fixture of conftest.py
T0 = 1_700_000_000.0
#: What a worker passes as ``now``: its wall clock (PostgreSQL judges leases by its own).
NOW = time.time
S = WorkflowStatus
ACTIVE = [S.PENDING, S.RUNNING]


def new_workflow(
    workflow_id: str,
    *,
    name: str = "checkout",
    at: float = T0,
    owner: str | None = None,
    lease_seconds: float | None = None,
) -> NewWorkflow:
    started = LogEntry(1, at, ev.WorkflowStarted(name=name, args=codec.encode([])))
    return NewWorkflow(workflow_id, name, started, owner=owner, lease_seconds=lease_seconds)


def ids(claims: list[Claim]) -> list[str]:
    return [c.workflow_id for c in claims]


def test_claim_unowned_pending_workflow(store: EventStore) -> None:
    store.create_workflows([new_workflow("a")])
    before = time.time()
    assert [(c.workflow_id, c.fence) for c in store.claim("w1", NOW(), 30, ACTIVE)] == [("a", 1)]
    found = store.get_workflow("a")
    assert found is not None and found.lease_until is not None
    assert (found.owner, found.status) == ("w1", S.RUNNING)
    assert before + 29 < found.lease_until < time.time() + 31  # 30 s by the store's clock
    assert store.claim("w2", NOW(), 30, ACTIVE) == []  # held by w1, lease alive


def test_claim_expired_lease(store: EventStore, lapse: Lapse) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_seconds=30)])
    assert store.claim("w2", NOW(), 30, ACTIVE) == []  # not yet expired
    lapse()
    (claim,) = store.claim("w2", NOW(), 30, ACTIVE)
    assert claim.fence == 2
    found = store.get_workflow("a")
    assert found is not None and found.owner == "w2"
    assert found.lease_until is not None and found.lease_until > time.time() + 29


def test_claim_from_dead_owner_before_lease_expires(store: EventStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_seconds=300)])
    assert store.claim("w2", T0, 30, ACTIVE, dead_owners=["w9"]) == []
    (claim,) = store.claim("w2", T0, 30, ACTIVE, dead_owners=["w9", "w1"])
    assert (claim.workflow_id, claim.fence) == ("a", 2)


def test_worker_never_reclaims_its_own_workflow(store: EventStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_seconds=30)])
    assert store.claim("w1", NOW() + 1000, 30, ACTIVE) == []
    assert store.claim("w1", T0, 30, ACTIVE, dead_owners=["w1"]) == []
    found = store.get_workflow("a")
    assert found is not None and found.fence == 1


def test_claim_honours_statuses_id_limit_and_age(store: EventStore) -> None:
    store.create_workflows(
        [new_workflow(w, at=T0 + i) for i, w in enumerate(["old", "mid", "new", "x"])]
    )
    assert store.claim("w1", T0, 30, [S.RUNNING]) == []
    assert ids(store.claim("w1", T0, 30, ACTIVE, limit=2)) == ["old", "mid"]
    assert ids(store.claim("w1", T0, 30, ACTIVE, workflow_id="x")) == ["x"]
    assert ids(store.claim("w1", T0, 30, ACTIVE)) == ["new"]


def test_claim_only_workflows_whose_code_the_worker_has(store: EventStore) -> None:
    store.create_workflows([new_workflow("a", name="mine"), new_workflow("b", name="theirs")])
    assert store.claim("w1", T0, 30, ACTIVE, names=[]) == []
    assert ids(store.claim("w1", T0, 30, ACTIVE, names=["mine", "other"])) == ["a"]
    assert ids(store.claim("w2", T0, 30, ACTIVE, names=None)) == ["b"]


def test_claim_leaves_queued_pending_workflows_to_their_queue(store: EventStore) -> None:
    queued = NewWorkflow("q", "checkout", new_workflow("q").started, queue="emails")
    store.create_workflows([queued, new_workflow("plain")])
    assert ids(store.claim("w1", T0, 30, ACTIVE)) == ["plain"]


def test_claim_leaves_every_queued_workflow_to_its_queue(store: EventStore, lapse: Lapse) -> None:
    # Orphaned RUNNING (its owner is dead) and SUSPENDED workflows, queued and not.
    queued = [
        NewWorkflow(w, "checkout", new_workflow(w).started, queue="emails")
        for w in ("q-orphan", "q-stuck")
    ]
    store.create_workflows(queued)
    assert ids(store.claim_queued("w1", T0, 30, QueueLimits("emails"))) == [
        "q-orphan",
        "q-stuck",
    ]
    store.create_workflows(
        [new_workflow(w, owner="w1", lease_seconds=30) for w in ("orphan", "stuck")]
    )
    for workflow_id, fence in (("q-stuck", 1), ("stuck", 1)):
        store.append([Append(workflow_id, fence, [], status=S.SUSPENDED, reason="diverged")])
    every = [S.PENDING, S.RUNNING, S.PAUSED, S.SUSPENDED]
    assert sorted(ids(store.claim("w2", T0, 30, every, dead_owners=["w1"]))) == [
        "orphan",
        "stuck",
    ]
    # Every lease has expired by now: still only the unqueued ones.
    lapse()
    assert sorted(ids(store.claim("w3", NOW(), 30, every))) == ["orphan", "stuck"]
    found = store.get_workflow("q-orphan")
    assert found is not None and (found.owner, found.fence) == ("w1", 1)


def test_claim_resumes_a_suspended_workflow(store: EventStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_seconds=30)])
    store.append([Append("a", 1, [], status=S.SUSPENDED, reason="diverged")])
    store.release("w1", "a", 1)
    (claim,) = store.claim("w2", T0, 30, [S.SUSPENDED])
    found = store.get_workflow("a")
    assert found is not None
    assert (found.status, found.reason, found.fence) == (S.RUNNING, None, 2)
    assert claim.fence == 2


def test_renew_leases_extends_only_own_unfinished(store: EventStore) -> None:
    store.create_workflows(
        [
            new_workflow("mine", owner="w1", lease_seconds=30),
            new_workflow("done", owner="w1", lease_seconds=30),
            new_workflow("theirs", owner="w2", lease_seconds=30),
        ]
    )
    store.append([Append("done", 1, [], status=S.COMPLETED)])
    before = time.time()
    assert store.renew_leases("w1", 90) == ["mine"]
    leases = {w: store.get_workflow(w) for w in ("mine", "done", "theirs")}
    until = {w: r.lease_until for w, r in leases.items() if r}
    assert until["mine"] is not None and until["mine"] > before + 89
    assert until["done"] is None  # finishing ended its lease in the same commit
    assert until["theirs"] is not None and until["theirs"] < before + 31
    assert leases["done"] is not None and leases["done"].owner is None
    assert store.renew_leases("nobody", 90) == []


def test_renew_leases_leaves_out_what_another_worker_took_over(
    store: EventStore, lapse: Lapse
) -> None:
    store.create_workflows([new_workflow(w, owner="w1", lease_seconds=30) for w in "ab"])
    lapse()  # w1 was frozen past its leases...
    assert ids(store.claim("w2", NOW(), 30, ACTIVE, workflow_id="a")) == ["a"]
    assert store.renew_leases("w1", 30) == ["b"]  # ... and hears on waking that it lost a
    found = store.get_workflow("a")
    assert found is not None and (found.owner, found.fence) == ("w2", 2)


def test_release_drops_the_lease_only_under_the_current_fence(store: EventStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_seconds=30)])
    store.release("w1", "a", fence=0)  # stale fence: no effect
    store.release("w2", "a", fence=1)  # not the owner: no effect
    found = store.get_workflow("a")
    assert found is not None and found.owner == "w1"
    store.release("w1", "a", fence=1)
    found = store.get_workflow("a")
    assert found is not None
    assert (found.owner, found.lease_until, found.status) == (None, None, S.RUNNING)
    (claim,) = store.claim("w2", T0, 30, ACTIVE)
    assert claim.fence == 2


def test_workers_register_and_unregister_releases_leases(store: EventStore) -> None:
    store.register_worker("w1", "host-a", 123, T0)
    store.register_worker("w2", "host-b", 456, T0)
    store.register_worker("w2", "host-b", 457, T0 + 1)  # registering again replaces
    assert sorted(store.workers()) == [("w1", "host-a", 123), ("w2", "host-b", 457)]
    store.create_workflows([new_workflow("a", owner="w1", lease_seconds=300)])
    store.unregister_worker("w1")
    assert store.workers() == [("w2", "host-b", 457)]
    found = store.get_workflow("a")
    assert found is not None and found.owner is None
    assert ids(store.claim("w2", T0, 30, ACTIVE)) == ["a"]


def test_concurrent_claimers_never_share_a_workflow(opener: Opener) -> None:
    first = opener()
    first.create_workflows([new_workflow(f"wf-{i:03}", at=T0 + i) for i in range(120)])
    stores = [first, opener(), opener()]
    barrier = threading.Barrier(len(stores))
    taken: dict[str, list[Claim]] = {}

    def claim_all(store: EventStore, worker: str) -> None:
        barrier.wait()
        mine = taken.setdefault(worker, [])
        while batch := store.claim(worker, T0, 30, ACTIVE, limit=7):
            mine += batch

    threads = [threading.Thread(target=claim_all, args=(s, f"w{i}")) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [c for claims in taken.values() for c in claims]
    assert Counter(c.workflow_id for c in every) == Counter(f"wf-{i:03}" for i in range(120))
    assert {c.fence for c in every} == {1}
    for worker, claims in taken.items():
        for claim in claims:
            found = first.get_workflow(claim.workflow_id)
            assert found is not None and found.owner == worker


def test_a_child_is_created_only_while_its_parent_holds_its_fence(store: EventStore) -> None:
    """A worker that lost its parent (terminated, or claimed by another worker) cannot
    add a child: the store checks the parent's fence in the creating transaction."""
    (fence,) = store.create_workflows([new_workflow("parent", owner="w1", lease_seconds=30)])
    assert fence is not None

    def child(child_id: str, parent_fence: int) -> NewWorkflow:
        started = LogEntry(1, T0, ev.WorkflowStarted(name="part", args=codec.encode([])))
        return NewWorkflow(
            child_id,
            "part",
            started,
            parent_id="parent",
            owner="w1",
            lease_seconds=30,
            parent_fence=parent_fence,
        )

    assert store.create_workflows([child("c-1", fence)]) == [1]
    assert store.create_workflows([child("c-2", fence + 1)]) == [None]  # not its fence
    assert store.terminate("parent", T0, ErrorDetails("Terminated", "stop")) is not None
    made = store.create_workflows([child("c-3", fence), new_workflow("unrelated")])
    assert made == [None, 0]  # refused alone: the rest of the batch is created
    assert [store.get_workflow(c) for c in ("c-2", "c-3")] == [None, None]
    assert store.read_events("c-3") == [] and store.inbox("c-3") == []
    assert [w.id for w in store.list_workflows() if w.parent_id == "parent"] == ["c-1"]
