"""Every store keeps the log the same way: appends, guards, snapshots, inbox, runs, pruning.

Each test runs against a SQLite file, SQLite in memory and PostgreSQL (see
``conftest.py``); the PostgreSQL cases are skipped, with the reason, when no
server is reachable.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from duralog.errors import ConfigurationError, CorruptEventError, ErrorDetails, StoreError
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import (
    Append,
    EventStore,
    NewWorkflow,
    Notice,
    Snapshot,
    WorkflowStatus,
)
from duralog.store.events import LogEntry
from duralog.store.open import open_store

Opener = Callable[[], EventStore]  # the fixtures of conftest.py
RunSQL = Callable[..., list[tuple[Any, ...]]]
T0 = 1_700_000_000.0
S = WorkflowStatus


def started(at: float = T0, name: str = "checkout") -> LogEntry:
    return LogEntry(1, at, ev.WorkflowStarted(name=name, args=codec.encode(["order-1"])))


def new_workflow(
    workflow_id: str,
    *,
    name: str = "checkout",
    at: float = T0,
    owner: str | None = None,
    lease_seconds: float | None = None,
    parent_id: str | None = None,
) -> NewWorkflow:
    return NewWorkflow(
        workflow_id,
        name,
        started(at, name),
        parent_id=parent_id,
        owner=owner,
        lease_seconds=lease_seconds,
    )


def owned(*ids: str) -> list[NewWorkflow]:
    return [new_workflow(w, owner="w1", lease_seconds=30) for w in ids]


def scheduled(seq: int, at: float = T0, name: str = "charge") -> LogEntry:
    return LogEntry(seq, at + seq, ev.StepScheduled(name=name, args=codec.encode([seq])))


def seqs(store: EventStore, workflow_id: str) -> list[int]:
    return [e.seq for e in store.read_events(workflow_id)]


def record(store: EventStore, workflow_id: str) -> tuple[object, ...]:
    found = store.get_workflow(workflow_id)
    assert found is not None
    return msgspec.structs.astuple(found)


# -- create_workflows --------------------------------------------------------


def test_create_returns_fences_and_writes_first_event(store: EventStore) -> None:
    fences = store.create_workflows(
        [new_workflow("a"), new_workflow("b", owner="w1", lease_seconds=30)]
    )
    assert fences == [0, 1]
    a, b = store.get_workflow("a"), store.get_workflow("b")
    assert a is not None and b is not None
    assert (a.status, a.owner, a.fence, a.last_seq) == (S.PENDING, None, 0, 1)
    assert (b.status, b.owner, b.fence) == (S.RUNNING, "w1", 1)
    assert b.lease_until is not None and b.lease_until > time.time() + 29
    assert store.read_events("a") == [started()]


def test_create_twice_returns_none_and_writes_nothing(store: EventStore) -> None:
    assert store.create_workflows([new_workflow("a")]) == [0]
    before = store.get_workflow("a")
    other = NewWorkflow(
        "a",
        "other-name",
        LogEntry(1, T0 + 99, ev.WorkflowStarted(name="other-name", args=codec.encode([2]))),
        owner="w9",
        lease_seconds=999,
    )
    assert store.create_workflows([other, new_workflow("b")]) == [None, 0]
    assert store.get_workflow("a") == before
    assert store.read_events("a") == [started()]
    assert store.get_workflow("b") is not None


def test_create_same_id_twice_in_one_batch(store: EventStore) -> None:
    assert store.create_workflows([new_workflow("a"), new_workflow("a", name="x")]) == [0, None]
    found = store.get_workflow("a")
    assert found is not None and found.name == "checkout"
    assert len(store.read_events("a")) == 1


def test_create_queued_is_pending_and_unowned(store: EventStore) -> None:
    item = NewWorkflow(
        "q", "checkout", started(), owner="w1", lease_seconds=30, queue="emails", priority=-3
    )
    assert store.create_workflows([item]) == [0]
    found = store.get_workflow("q")
    assert found is not None
    assert (found.status, found.owner, found.queue, found.priority) == (
        S.PENDING,
        None,
        "emails",
        -3,
    )


def test_get_unknown_workflow_is_none(store: EventStore) -> None:
    assert store.get_workflow("nope") is None
    assert store.read_events("nope") == []
    assert store.load_snapshot("nope") is None
    assert store.inbox("nope") == []


# -- append and read ---------------------------------------------------------


def every_event_kind() -> list[ev.Event]:
    err = ErrorDetails("ValueError", "bad card", "Traceback...")
    raw = codec.encode({"k": [1, 2.5, None, "x\u0000y", "\u00e9\U0001f600"]})
    return [
        ev.StepScheduled(name="charge", args=raw, kwargs=codec.encode({"a": 1})),
        ev.StepStarted(step_seq=2, attempt=1),
        ev.StepRetrying(step_seq=2, attempt=1, error=err, next_attempt_at=T0 + 5),
        ev.StepCompleted(step_seq=2, result=raw),
        ev.StepFailed(step_seq=2, attempt=3, error=err),
        ev.TimerStarted(fire_at=T0 + 60),
        ev.TimerFired(timer_seq=7),
        ev.SignalReceived(name="approve", payload=raw),
        ev.MarkerRecorded(marker="uuid", value=codec.encode("0f0e")),
        ev.ChildStarted(child_id="a/child", name="sub", args=raw),
        ev.ChildCompleted(child_seq=11, result=raw),
        ev.ChildFailed(child_seq=11, error=err),
        ev.CancelRequested(reason="user asked"),
        ev.WorkflowCompleted(result=raw),
        ev.WorkflowFailed(error=err),
        ev.WorkflowCancelled(reason="user asked"),
        ev.ContinuedAsNew(args=raw),
        ev.StatePublished(key="progress", value=raw),
        ev.PauseRequested(reason="outage"),
        ev.ResumeRequested(),
        ev.WorkflowTerminated(error=ErrorDetails("Terminated", "by an operator")),
        ev.StreamWritten(key="tokens", value=raw),
        ev.StreamClosed(key="tokens"),
        ev.StepStreamed(step_seq=2, attempt=1, key="tokens", value=raw),
    ]


def test_every_event_kind_round_trips_through_the_store(store: EventStore) -> None:
    every = every_event_kind()
    assert {type(e).__name__ for e in every} | {"WorkflowStarted"} == ev.EVENT_KINDS
    # One history holds one terminal event, last: the others go to workflows of their own.
    terminal = [e for e in every if isinstance(e, ev.TERMINAL)]
    events = [e for e in every if not isinstance(e, ev.TERMINAL)] + terminal[:1]
    for i, end in enumerate(terminal[1:]):
        store.create_workflows(owned(f"end-{i}"))
        assert store.append([Append(f"end-{i}", 1, [LogEntry(2, T0 + 1, end)])]) == [True]
        assert store.read_events(f"end-{i}")[-1].event == end
    store.create_workflows(owned("a"))
    entries = [LogEntry(seq, T0 + seq / 7, e) for seq, e in enumerate(events, start=2)]
    assert store.append([Append("a", 1, entries)]) == [True]
    got = store.read_events("a")
    assert got == [started(), *entries]
    assert [g.kind for g in got] == ["WorkflowStarted"] + [type(e).__name__ for e in events]
    assert store.append([Append("a", 1, [scheduled(len(got) + 1)])]) == [False]  # after the end
    found = store.get_workflow("a")
    assert found is not None
    assert (found.last_seq, found.updated_at, found.status) == (
        entries[-1].seq,
        entries[-1].at,
        S.COMPLETED,
    )


def test_read_events_ranges(store: EventStore) -> None:
    store.create_workflows(owned("a"))
    assert store.append([Append("a", 1, [scheduled(seq) for seq in range(2, 8)])]) == [True]
    assert seqs(store, "a") == list(range(1, 8))
    assert [e.seq for e in store.read_events("a", after_seq=3)] == [4, 5, 6, 7]
    assert [e.seq for e in store.read_events("a", after_seq=3, until_seq=5)] == [4, 5]
    assert store.read_events("a", after_seq=7) == []


def test_append_updates_status_wake_and_reason(store: EventStore) -> None:
    store.create_workflows(owned("a"))
    suspend = Append("a", 1, [scheduled(2)], status=S.SUSPENDED, wake_at=T0 + 9, reason="diverged")
    assert store.append([suspend]) == [True]
    found = store.get_workflow("a")
    assert found is not None
    assert (found.status, found.wake_at, found.reason) == (S.SUSPENDED, T0 + 9, "diverged")
    # status=None keeps the status; no entries with a status updates the row only.
    assert store.append([Append("a", 1, [scheduled(3)])]) == [True]
    found = store.get_workflow("a")
    assert found is not None and (found.status, found.reason) == (S.SUSPENDED, "diverged")
    assert store.append([Append("a", 1, [], status=S.RUNNING)]) == [True]
    found = store.get_workflow("a")
    assert found is not None
    assert (found.status, found.last_seq, found.reason, found.wake_at) == (S.RUNNING, 3, None, None)


def test_append_to_unknown_workflow_is_refused(store: EventStore) -> None:
    assert store.append([Append("ghost", 0, [scheduled(2)])]) == [False]
    assert store.read_events("ghost") == []


def test_an_empty_batch_and_an_empty_append(store: EventStore) -> None:
    store.create_workflows(owned("a"))
    assert store.append([]) == []
    before = record(store, "a")
    assert store.append([Append("a", 1, [])]) == [True]
    assert record(store, "a") == before


# -- the gapless guard ---------------------------------------------------------


def test_appending_an_existing_seq_fails_and_writes_nothing(store: EventStore) -> None:
    store.create_workflows(owned("a"))
    assert store.append([Append("a", 1, [scheduled(2)])]) == [True]
    # seq 3 is new but seq 2 collides: the whole item is refused, seq 3 not written.
    clash = Append("a", 1, [scheduled(3), scheduled(2, name="other")], status=S.PAUSED)
    assert store.append([clash]) == [False]
    assert seqs(store, "a") == [1, 2]
    assert store.read_events("a")[1].event == scheduled(2).event
    found = store.get_workflow("a")
    assert found is not None and (found.last_seq, found.status) == (2, S.RUNNING)


@pytest.mark.parametrize("tail", [[3], [2, 4], [2, 2], [1]], ids=["gap", "hole", "twice", "old"])
def test_seqs_must_continue_the_log(store: EventStore, tail: list[int]) -> None:
    store.create_workflows(owned("a"))
    assert store.append([Append("a", 1, [scheduled(s) for s in tail])]) == [False]
    assert seqs(store, "a") == [1]
    assert store.append([Append("a", 1, [scheduled(2), scheduled(3)])]) == [True]


def test_seq_collision_fails_only_its_item_in_a_batch(store: EventStore) -> None:
    store.create_workflows(owned("a", "b", "c"))
    batch = [
        Append("a", 1, [scheduled(2)]),
        Append("b", 1, [scheduled(2), scheduled(1)], snapshot=Snapshot("b", 1, b"{}", "x")),
        Append("c", 1, [scheduled(2), scheduled(3)]),
    ]
    assert store.append(batch) == [True, False, True]
    assert (seqs(store, "a"), seqs(store, "b"), seqs(store, "c")) == ([1, 2], [1], [1, 2, 3])
    assert store.load_snapshot("b") is None
    found = store.get_workflow("b")
    assert found is not None and found.last_seq == 1


def test_one_workflow_twice_in_a_batch(store: EventStore) -> None:
    store.create_workflows(owned("a"))
    batch = [
        Append("a", 1, [scheduled(2)]),
        Append("a", 1, [scheduled(3)], status=S.PAUSED),
        Append("a", 1, [scheduled(3)]),  # seq 3 is taken by now
        Append("a", 1, [scheduled(4)], status=S.RUNNING),
    ]
    assert store.append(batch) == [True, True, False, True]
    assert seqs(store, "a") == [1, 2, 3, 4]
    found = store.get_workflow("a")
    assert found is not None and (found.last_seq, found.status) == (4, S.RUNNING)


def test_two_writers_cannot_both_append_seq_n(opener: Opener) -> None:
    one, two = opener(), opener()
    one.create_workflows(owned("a"))
    assert one.append([Append("a", 1, [scheduled(2, name="first")])]) == [True]
    assert two.append([Append("a", 1, [scheduled(2, name="second")])]) == [False]
    (_, second) = two.read_events("a")
    assert isinstance(second.event, ev.StepScheduled) and second.event.name == "first"


def test_writers_racing_on_one_workflow_leave_a_gapless_log(opener: Opener) -> None:
    first = opener()
    first.create_workflows(owned("a"))
    stores = [first, opener(), opener()]
    barrier = threading.Barrier(len(stores))
    won: list[int] = []

    def write(store: EventStore, label: int) -> None:
        barrier.wait()
        for _ in range(30):
            last = store.read_events("a")[-1].seq
            if store.append([Append("a", 1, [scheduled(last + 1, name=str(label))])]) == [True]:
                won.append(label)

    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seqs(first, "a") == list(range(1, len(won) + 2))
    names = [e.event.name for e in first.read_events("a")[1:]]  # type: ignore[union-attr]
    assert Counter(names) == Counter(map(str, won))


# -- fencing -----------------------------------------------------------------


def test_claim_bumps_fence_and_stale_append_writes_nothing(store: EventStore) -> None:
    store.create_workflows(owned("a"))
    # w1 died: w2 takes its workflow over.
    (claim,) = store.claim("w2", T0, 30, [S.RUNNING], dead_owners=["w1"])
    assert (claim.workflow_id, claim.fence) == ("a", 2)
    before = store.get_workflow("a")
    stale = Append(
        "a",
        1,
        [scheduled(2)],
        status=S.COMPLETED,
        wake_at=T0,
        reason="stale",
        snapshot=Snapshot("a", 2, b"{}", "x"),
        notices=[Notice("parent", "child", "done", b"1")],
    )
    assert store.append([stale]) == [False]
    assert store.read_events("a") == [started()]
    assert store.get_workflow("a") == before
    assert store.load_snapshot("a") is None
    assert store.inbox("parent") == []
    assert store.append([Append("a", claim.fence, [scheduled(2)])]) == [True]


def test_stale_fence_fails_only_its_item_in_a_batch(store: EventStore) -> None:
    store.create_workflows(owned("a", "b"))
    store.claim("w2", T0, 30, [S.RUNNING], workflow_id="a", dead_owners=["w1"])
    batch = [Append("a", 1, [scheduled(2)]), Append("b", 1, [scheduled(2)])]
    assert store.append(batch) == [False, True]
    assert (seqs(store, "a"), seqs(store, "b")) == ([1], [1, 2])


# -- the status table ----------------------------------------------------------


def test_nothing_is_appended_after_the_terminal_event(store: EventStore) -> None:
    store.create_workflows(owned("wf"))
    done = LogEntry(2, T0 + 2, ev.WorkflowCompleted(result=codec.encode(1)))
    assert store.append([Append("wf", 1, [done], status=S.COMPLETED)]) == [True]
    assert store.append([Append("wf", 1, [LogEntry(3, T0 + 3, ev.TimerFired(timer_seq=2))])]) == [
        False
    ]
    assert store.append([Append("wf", 1, [], status=S.RUNNING)]) == [False]
    assert seqs(store, "wf") == [1, 2]
    found = store.get_workflow("wf")
    assert found is not None and (found.status, found.owner, found.lease_until) == (
        S.COMPLETED,
        None,
        None,
    )


def test_a_terminal_event_must_be_last(store: EventStore) -> None:
    store.create_workflows(owned("wf"))
    done = LogEntry(2, T0 + 2, ev.WorkflowCancelled(reason="x"))
    assert store.append([Append("wf", 1, [done, scheduled(3)])]) == [False]
    assert seqs(store, "wf") == [1]


def test_the_index_follows_the_log(store: EventStore) -> None:
    store.create_workflows(owned("a"))
    failed = LogEntry(2, T0 + 2, ev.WorkflowFailed(error=ErrorDetails("E", "m")))
    # The terminal event decides the status, whatever the append says.
    assert store.append([Append("a", 1, [failed], status=S.PAUSED)]) == [True]
    found = store.get_workflow("a")
    assert found is not None and found.status is S.FAILED


def test_one_refused_transition_does_not_sink_its_group(store: EventStore) -> None:
    store.create_workflows(owned("a", "b"))
    store.append([Append("a", 1, [], status=S.FAILED)])
    batch = [
        Append("a", 1, [], status=S.RUNNING),  # FAILED -> RUNNING: refused
        Append("b", 1, [LogEntry(2, T0 + 2, ev.TimerStarted(fire_at=5.0))]),
    ]
    assert store.append(batch) == [False, True]
    found = store.get_workflow("b")
    assert found is not None and found.last_seq == 2


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ([S.PAUSED, S.RUNNING, S.SUSPENDED], True),
        ([S.PAUSED, S.CANCELLED], True),
        ([S.SUSPENDED, S.PAUSED], False),
        ([S.COMPLETED, S.RUNNING], False),
        ([S.CANCELLED, S.FAILED], False),
    ],
)
def test_status_changes_follow_the_table(
    store: EventStore, path: list[WorkflowStatus], allowed: bool
) -> None:
    store.create_workflows(owned("a"))
    *before, last = path
    for status in before:
        assert store.append([Append("a", 1, [], status=status)]) == [True]
    assert store.append([Append("a", 1, [], status=last)]) == [allowed]
    found = store.get_workflow("a")
    assert found is not None and found.status is (last if allowed else before[-1])


def test_suspending_ends_the_lease_in_the_same_commit(store: EventStore) -> None:
    store.create_workflows(owned("a"))
    assert store.append([Append("a", 1, [], status=S.SUSPENDED, reason="diverged")]) == [True]
    found = store.get_workflow("a")
    assert found is not None and (found.owner, found.lease_until) == (None, None)


# -- snapshots ---------------------------------------------------------------


def test_snapshots_keep_the_newest_and_delete(store: EventStore) -> None:
    store.create_workflows(owned("a", "b"))
    s2 = Snapshot("a", 2, b"\x00state-2\xff", "c2")
    s3 = Snapshot("a", 3, b"state-3", "c3")
    store.append([Append("a", 1, [scheduled(2)], snapshot=s2)])
    assert store.load_snapshot("a") == s2
    store.append([Append("a", 1, [scheduled(3)], snapshot=s3)])
    assert store.load_snapshot("a") == s3
    assert store.count_rows("snapshots") == 1  # the older one is replaced
    store.append([Append("b", 1, [scheduled(2)], snapshot=Snapshot("b", 2, b"b", "cb"))])
    assert store.delete_snapshots("a") == 1
    assert store.load_snapshot("a") is None
    assert store.load_snapshot("b") is not None
    assert store.delete_snapshots("a") == 0
    assert store.delete_snapshots() == 1
    assert store.load_snapshot("b") is None


# -- list_workflows ----------------------------------------------------------


def test_list_workflows_filters_and_orders_newest_first(store: EventStore) -> None:
    store.create_workflows(
        [
            new_workflow("c1", name="checkout", at=T0 + 1),
            new_workflow("r1", name="refund", at=T0 + 2),
            new_workflow("c2", name="checkout", at=T0 + 3, owner="w1", lease_seconds=30),
            new_workflow("c3", name="checkout", at=T0 + 4, owner="w1", lease_seconds=30),
        ]
    )
    store.append([Append("c3", 1, [], status=S.COMPLETED)])

    def ids(**kw: object) -> list[str]:
        return [r.id for r in store.list_workflows(**kw)]  # type: ignore[arg-type]

    assert ids() == ["c3", "c2", "r1", "c1"]
    assert ids(name="checkout") == ["c3", "c2", "c1"]
    assert ids(status=S.PENDING) == ["r1", "c1"]
    assert ids(status=S.RUNNING, name="checkout") == ["c2"]
    assert ids(status="COMPLETED") == ["c3"]
    assert ids(name="checkout", limit=2) == ["c3", "c2"]
    assert ids(name="nothing") == []
    assert ids(limit=0) == []


def test_list_ties_are_ordered_by_id_bytes(store: EventStore) -> None:
    names = ["b", "B", "a", "_", "\u00e9", "a-1", "a/1"]
    store.create_workflows([new_workflow(n) for n in names])
    assert [r.id for r in store.list_workflows()] == sorted(names)


def test_list_workflows_records_carry_parent(store: EventStore) -> None:
    store.create_workflows([new_workflow("p"), new_workflow("p/1", parent_id="p", at=T0 + 1)])
    child, parent = store.list_workflows()
    assert (child.id, child.parent_id, parent.parent_id) == ("p/1", "p", None)
    assert child.created_at == child.updated_at == T0 + 1


# -- inbox and published values ------------------------------------------------


def test_inbox_items_are_read_in_order_and_consumed_by_an_append(store: EventStore) -> None:
    store.create_workflows(owned("a"))
    first = store.send("a", "signal", "go", b'{"n": 1}', T0 + 1)
    second = store.send("a", "cancel", "bored", None, T0 + 2)
    assert second > first
    items = store.inbox("a")
    assert [(i.id, i.kind, i.name, i.payload, i.at) for i in items] == [
        (first, "signal", "go", b'{"n": 1}', T0 + 1),
        (second, "cancel", "bored", None, T0 + 2),
    ]
    got = LogEntry(2, T0 + 3, ev.SignalReceived(name="go", payload=codec.encode({"n": 1})))
    assert store.append([Append("a", 1, [got], consumed=[first])]) == [True]
    assert [i.id for i in store.inbox("a")] == [second]
    # A stale writer consumes nothing.
    assert store.append([Append("a", 0, [], consumed=[second])]) == [False]
    assert [i.id for i in store.inbox("a")] == [second]


def test_notices_commit_with_their_append(store: EventStore) -> None:
    store.create_workflows(owned("parent", "parent/2"))
    done = LogEntry(2, T0 + 5, ev.WorkflowCompleted(result=codec.encode("ok")))
    notice = Notice("parent", "child", "parent/2", b'"ok"')
    assert store.append([Append("parent/2", 1, [done], notices=[notice])]) == [True]
    (item,) = store.inbox("parent")
    assert (item.kind, item.name, item.payload, item.at) == ("child", "parent/2", b'"ok"', T0 + 5)


def test_owned_with_inbox(store: EventStore) -> None:
    store.create_workflows([*owned("a", "b"), new_workflow("c", owner="w2", lease_seconds=30)])
    for workflow_id in ("a", "c", "a"):
        store.send(workflow_id, "signal", "x", None, T0)
    assert store.owned_with_inbox("w1") == ["a"]
    assert store.owned_with_inbox("w2") == ["c"]
    assert store.owned_with_inbox("nobody") == []


def test_published_returns_the_latest_value_of_a_key(store: EventStore) -> None:
    store.create_workflows(owned("a"))
    keys = ["progress", 'qu"ote', "\u00e9t\u00e9"]  # (SQLite misses a key with a NUL)
    entries = []
    seq = 2
    for round_ in range(2):
        for key in keys:
            value = codec.encode({"round": round_, "key": key})
            entries.append(LogEntry(seq, T0 + seq, ev.StatePublished(key=key, value=value)))
            seq += 1
    # A value that spells another key's encoding must not be taken for it.
    decoy = codec.encode({"key": "missing"})
    entries.append(LogEntry(seq, T0 + seq, ev.StatePublished(key="decoy", value=decoy)))
    assert store.append([Append("a", 1, entries)]) == [True]
    for key in keys:
        assert msgspec.json.decode(store.published("a", key) or b"") == {"round": 1, "key": key}
    assert store.published("a", "missing") is None
    assert store.published("ghost", "progress") is None


# -- continue-as-new -----------------------------------------------------------


def test_continue_as_new_archives_the_run_and_restarts_at_seq_1(store: EventStore) -> None:
    store.create_workflows(owned("loop"))
    store.append([Append("loop", 1, [scheduled(2)], snapshot=Snapshot("loop", 2, b"s", "c"))])
    end = LogEntry(3, T0 + 3, ev.ContinuedAsNew(args=codec.encode([2])))
    nxt = LogEntry(1, T0 + 4, ev.WorkflowStarted(name="checkout", args=codec.encode([2]), run=2))
    assert store.continue_as_new(Append("loop", 1, [end]), "loop~run1", nxt) is True
    assert store.read_events("loop") == [nxt]
    assert seqs(store, "loop~run1") == [1, 2, 3]
    archived, current = store.get_workflow("loop~run1"), store.get_workflow("loop")
    assert archived is not None and current is not None
    assert (archived.status, archived.last_seq, archived.owner) == (S.COMPLETED, 3, None)
    assert (current.status, current.last_seq, current.owner, current.fence) == (
        S.RUNNING,
        1,
        "w1",
        1,
    )
    assert store.load_snapshot("loop") is None


def test_continue_as_new_is_refused_for_a_stale_fence_or_a_taken_archive(
    store: EventStore,
) -> None:
    store.create_workflows([*owned("loop"), new_workflow("loop~run1")])
    end = LogEntry(2, T0 + 2, ev.ContinuedAsNew(args=codec.encode([2])))
    nxt = LogEntry(1, T0 + 4, ev.WorkflowStarted(name="checkout", args=codec.encode([2]), run=2))
    assert store.continue_as_new(Append("loop", 7, [end]), "loop~run2", nxt) is False
    assert store.continue_as_new(Append("loop", 1, [end]), "loop~run1", nxt) is False
    assert seqs(store, "loop") == [1]
    found = store.get_workflow("loop")
    assert found is not None and found.status is S.RUNNING


# -- pruning -------------------------------------------------------------------


def test_prune_deletes_only_what_finished_before(store: EventStore) -> None:
    store.create_workflows(owned("old", "new", "running"))
    for workflow_id, at in (("old", T0 + 10), ("new", T0 + 100)):
        done = LogEntry(2, at, ev.WorkflowCompleted(result=codec.encode(1)))
        snap = Snapshot(workflow_id, 2, b"s", "c")
        store.append([Append(workflow_id, 1, [done], snapshot=snap)])
        store.send(workflow_id, "signal", "late", None, at)
    assert [r.id for r in store.prune(T0 + 50)] == ["old"]  # a dry run
    assert store.get_workflow("old") is not None
    assert [r.id for r in store.prune(T0 + 50, dry_run=False)] == ["old"]
    assert store.get_workflow("old") is None
    assert (store.read_events("old"), store.load_snapshot("old"), store.inbox("old")) == (
        [],
        None,
        [],
    )
    assert [r.id for r in store.prune(T0 + 10**6, dry_run=False)] == ["new"]
    assert [r.id for r in store.list_workflows()] == ["running"]


# -- corrupt records, errors -----------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    ["garbage", "{", '{"kind": "NoSuchEvent"}', '{"kind": "StepCompleted", "step_seq": "two"}'],
    ids=["text", "truncated", "unknown-kind", "wrong-type"],
)
def test_corrupt_event_body_raises_corrupt_event_error(
    store: EventStore, run_sql: RunSQL, garbage: str
) -> None:
    store.create_workflows(owned("order-7"))
    store.append([Append("order-7", 1, [scheduled(s) for s in (2, 3, 4)])])
    run_sql("UPDATE events SET body = ? WHERE workflow_id = ? AND seq = 3", garbage, "order-7")
    with pytest.raises(CorruptEventError) as info:
        store.read_events("order-7")
    assert (info.value.workflow_id, info.value.seq) == ("order-7", 3)
    assert isinstance(info.value.__cause__, msgspec.MsgspecError)
    assert [e.seq for e in store.read_events("order-7", until_seq=2)] == [1, 2]
    assert [e.seq for e in store.read_events("order-7", after_seq=3)] == [4]


def test_closed_store_raises_store_error(store: EventStore) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_workflow("a")
    store.close()  # twice is fine


@pytest.mark.parametrize("durability", ["bogus", "FULL", "", None])
def test_bad_durability_is_a_configuration_error(address: str, durability: object) -> None:
    with pytest.raises(ConfigurationError, match="durability"):
        open_store(address, durability=durability)  # type: ignore[arg-type]


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_both_durabilities_open_and_write(address: str, durability: str) -> None:
    store = open_store(address, durability=durability)  # type: ignore[arg-type]
    try:
        assert store.create_workflows([new_workflow("a")]) == [0]
        assert f"durability={durability!r}" in repr(store)
    finally:
        store.close()


def test_many_threads_share_one_store(store: EventStore) -> None:
    ids = [f"t{i}" for i in range(8)]
    store.create_workflows(owned(*ids))
    errors: list[BaseException] = []

    def work(workflow_id: str) -> None:
        try:
            for seq in range(2, 22):
                assert store.append([Append(workflow_id, 1, [scheduled(seq)])]) == [True]
                assert store.read_events(workflow_id)[-1].seq == seq
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(seqs(store, w) == list(range(1, 22)) for w in ids)


def test_racing_creators_create_each_workflow_once(opener: Opener) -> None:
    stores = [opener() for _ in range(4)]
    rounds = [[f"r{r}-{i:02}" for i in range(60)] for r in range(5)]
    barrier = threading.Barrier(len(stores))
    fences: list[int | None] = []
    errors: list[BaseException] = []

    def create(i: int) -> None:
        for ids in rounds:
            order = ids if i % 2 else ids[::-1]  # the same ids, in opposite orders
            barrier.wait()
            try:
                fences.extend(stores[i].create_workflows([new_workflow(w) for w in order]))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    every = sorted(w for ids in rounds for w in ids)
    assert fences.count(0) == len(every)  # each created once
    assert sorted(r.id for r in stores[0].list_workflows()) == every
    assert all(seqs(stores[0], w) == [1] for w in every[:10])


def test_changed_workflows_since_a_time(store: EventStore) -> None:
    store.create_workflows(owned("a", "b", "c"))
    store.append([Append("b", 1, [scheduled(2, at=T0 + 10)])])  # at T0 + 12
    store.append([Append("a", 1, [scheduled(2, at=T0 + 20)])])  # at T0 + 22
    assert [r.id for r in store.changed_workflows(T0 + 12)] == ["b", "a"]
    assert [r.id for r in store.changed_workflows(T0 + 13)] == ["a"]
    assert [r.id for r in store.changed_workflows(T0)] == ["c", "b", "a"]
    assert store.changed_workflows(T0 + 100) == []
