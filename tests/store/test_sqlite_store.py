"""The SQLite store on real files and ``:memory:``: the log, its guards, leases and schema."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from duralog.errors import ConfigurationError, CorruptEventError, ErrorDetails, StoreError
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import Append, NewWorkflow, Snapshot, WorkflowStatus
from duralog.store.events import LogEntry
from duralog.store.schema import SCHEMA_VERSION
from duralog.store.sqlite import SQLiteStore

T0 = 1_700_000_000.0


def started(at: float = T0, name: str = "checkout") -> LogEntry:
    return LogEntry(1, at, ev.WorkflowStarted(name=name, args=codec.encode(["order-1"])))


def new_workflow(
    workflow_id: str,
    *,
    name: str = "checkout",
    at: float = T0,
    owner: str | None = None,
    lease_until: float | None = None,
    parent_id: str | None = None,
) -> NewWorkflow:
    return NewWorkflow(
        workflow_id,
        name,
        started(at, name),
        parent_id=parent_id,
        owner=owner,
        lease_until=lease_until,
    )


def scheduled(seq: int, at: float = T0, name: str = "charge") -> LogEntry:
    return LogEntry(seq, at + seq, ev.StepScheduled(name=name, args=codec.encode([seq])))


def sql_count(path: Path, sql: str, *params: object) -> int:
    with sqlite3.connect(path) as conn:
        (n,) = conn.execute(sql, params).fetchone()
    conn.close()
    return int(n)


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLiteStore]:
    path = str(tmp_path / "log.db") if request.param == "file" else ":memory:"
    s = SQLiteStore(path, durability="normal")
    yield s
    s.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "log.db"


# -- create_workflows --------------------------------------------------------


def test_create_returns_fences_and_writes_first_event(store: SQLiteStore) -> None:
    fences = store.create_workflows(
        [new_workflow("a"), new_workflow("b", owner="w1", lease_until=T0 + 30)]
    )
    assert fences == [0, 1]
    a, b = store.get_workflow("a"), store.get_workflow("b")
    assert a is not None and b is not None
    assert (a.status, a.owner, a.fence, a.last_seq) == (WorkflowStatus.PENDING, None, 0, 1)
    assert (b.status, b.owner, b.fence, b.lease_until) == (
        WorkflowStatus.RUNNING,
        "w1",
        1,
        T0 + 30,
    )
    assert store.read_events("a") == [started()]


def test_create_twice_returns_none_and_writes_nothing(store: SQLiteStore) -> None:
    assert store.create_workflows([new_workflow("a")]) == [0]
    before = store.get_workflow("a")
    other = NewWorkflow(
        "a",
        "other-name",
        LogEntry(1, T0 + 99, ev.WorkflowStarted(name="other-name", args=codec.encode([2]))),
        owner="w9",
        lease_until=T0 + 999,
    )
    assert store.create_workflows([other, new_workflow("b")]) == [None, 0]
    assert store.get_workflow("a") == before
    assert store.read_events("a") == [started()]
    assert store.get_workflow("b") is not None


def test_create_same_id_twice_in_one_batch(store: SQLiteStore) -> None:
    assert store.create_workflows([new_workflow("a"), new_workflow("a", name="x")]) == [0, None]
    record = store.get_workflow("a")
    assert record is not None and record.name == "checkout"
    assert len(store.read_events("a")) == 1


def test_get_unknown_workflow_is_none(store: SQLiteStore) -> None:
    assert store.get_workflow("nope") is None
    assert store.read_events("nope") == []
    assert store.load_snapshot("nope") is None


# -- append and read ---------------------------------------------------------


def every_event_kind() -> list[ev.Event]:
    err = ErrorDetails("ValueError", "bad card", "Traceback...")
    raw = codec.encode({"k": [1, 2.5, None, "x"]})
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
    ]


def test_every_event_kind_round_trips_through_the_store(store: SQLiteStore) -> None:
    every = every_event_kind()
    assert {type(e).__name__ for e in every} | {"WorkflowStarted"} == ev.EVENT_KINDS
    # One history holds one terminal event, last: the others go to workflows of their own.
    terminal = [e for e in every if isinstance(e, ev.TERMINAL)]
    events = [e for e in every if not isinstance(e, ev.TERMINAL)] + terminal[:1]
    for i, end in enumerate(terminal[1:]):
        store.create_workflows([new_workflow(f"end-{i}", owner="w1", lease_until=T0 + 30)])
        assert store.append([Append(f"end-{i}", 1, [LogEntry(2, T0 + 1, end)])]) == [True]
        assert store.read_events(f"end-{i}")[-1].event == end
    store.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 30)])
    entries = [LogEntry(seq, T0 + seq / 7, e) for seq, e in enumerate(events, start=2)]
    assert store.append([Append("a", 1, entries)]) == [True]
    got = store.read_events("a")
    assert got == [started(), *entries]
    assert [g.kind for g in got] == ["WorkflowStarted"] + [type(e).__name__ for e in events]
    assert store.append([Append("a", 1, [scheduled(len(got) + 1)])]) == [False]  # after the end
    record = store.get_workflow("a")
    assert record is not None
    assert (record.last_seq, record.updated_at) == (entries[-1].seq, entries[-1].at)


def test_read_events_ranges(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 30)])
    tail = [scheduled(seq) for seq in range(2, 8)]
    assert store.append([Append("a", 1, tail)]) == [True]
    assert [e.seq for e in store.read_events("a")] == list(range(1, 8))
    assert [e.seq for e in store.read_events("a", after_seq=3)] == [4, 5, 6, 7]
    assert [e.seq for e in store.read_events("a", after_seq=3, until_seq=5)] == [4, 5]
    assert store.read_events("a", after_seq=7) == []


def test_append_updates_status_wake_and_reason(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 30)])
    assert store.append(
        [
            Append(
                "a",
                1,
                [scheduled(2)],
                status=WorkflowStatus.SUSPENDED,
                wake_at=T0 + 9,
                reason="diverged",
            )
        ]
    ) == [True]
    record = store.get_workflow("a")
    assert record is not None
    assert (record.status, record.wake_at, record.reason) == (
        WorkflowStatus.SUSPENDED,
        T0 + 9,
        "diverged",
    )
    # status=None keeps the status; no entries with a status updates the row only.
    assert store.append([Append("a", 1, [scheduled(3)])]) == [True]
    record = store.get_workflow("a")
    assert record is not None and record.status is WorkflowStatus.SUSPENDED
    assert store.append([Append("a", 1, [], status=WorkflowStatus.RUNNING)]) == [True]
    record = store.get_workflow("a")
    assert record is not None and (record.status, record.last_seq) == (WorkflowStatus.RUNNING, 3)


def test_append_to_unknown_workflow_is_refused(store: SQLiteStore) -> None:
    assert store.append([Append("ghost", 0, [scheduled(2)])]) == [False]
    assert store.read_events("ghost") == []


# -- the (workflow_id, seq) guard --------------------------------------------


def test_appending_an_existing_seq_fails_and_writes_nothing(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 30)])
    assert store.append([Append("a", 1, [scheduled(2)])]) == [True]
    # seq 3 is new but seq 2 collides: the whole item is refused, seq 3 not written.
    clash = Append("a", 1, [scheduled(3), scheduled(2, name="other")], status=WorkflowStatus.PAUSED)
    assert store.append([clash]) == [False]
    assert [e.seq for e in store.read_events("a")] == [1, 2]
    assert store.read_events("a")[1].event == scheduled(2).event
    record = store.get_workflow("a")
    assert record is not None and (record.last_seq, record.status) == (2, WorkflowStatus.RUNNING)


def test_seq_collision_fails_only_its_item_in_a_batch(store: SQLiteStore) -> None:
    store.create_workflows(
        [new_workflow(w, owner="w1", lease_until=T0 + 30) for w in ("a", "b", "c")]
    )
    snap = Snapshot("b", 1, b"{}", "x")
    batch = [
        Append("a", 1, [scheduled(2)]),
        Append("b", 1, [scheduled(2), scheduled(1)], snapshot=snap),  # seq 1 exists
        Append("c", 1, [scheduled(2), scheduled(3)]),
    ]
    assert store.append(batch) == [True, False, True]
    assert [e.seq for e in store.read_events("a")] == [1, 2]
    assert [e.seq for e in store.read_events("b")] == [1]
    assert [e.seq for e in store.read_events("c")] == [1, 2, 3]
    assert store.load_snapshot("b") is None
    record = store.get_workflow("b")
    assert record is not None and record.last_seq == 1


def test_two_writers_cannot_both_append_seq_n(path: Path) -> None:
    one, two = SQLiteStore(path), SQLiteStore(path)
    try:
        one.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 30)])
        assert one.append([Append("a", 1, [scheduled(2, name="first")])]) == [True]
        assert two.append([Append("a", 1, [scheduled(2, name="second")])]) == [False]
        (_, second) = two.read_events("a")
        assert isinstance(second.event, ev.StepScheduled) and second.event.name == "first"
    finally:
        one.close()
        two.close()


# -- fencing -----------------------------------------------------------------


def test_claim_bumps_fence_and_stale_append_writes_nothing(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 30)])
    (claim,) = store.claim(
        "w2", now=T0 + 31, lease_until=T0 + 61, statuses=[WorkflowStatus.RUNNING]
    )
    assert (claim.workflow_id, claim.fence) == ("a", 2)
    before = store.get_workflow("a")
    stale = Append(
        "a",
        1,
        [scheduled(2)],
        status=WorkflowStatus.COMPLETED,
        wake_at=T0,
        reason="stale",
        snapshot=Snapshot("a", 2, b"{}", "x"),
    )
    assert store.append([stale]) == [False]
    assert store.read_events("a") == [started()]
    assert store.get_workflow("a") == before
    assert store.load_snapshot("a") is None
    assert store.append([Append("a", claim.fence, [scheduled(2)])]) == [True]


def test_stale_fence_fails_only_its_item_in_a_batch(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow(w, owner="w1", lease_until=T0 + 30) for w in ("a", "b")])
    store.claim("w2", T0 + 31, T0 + 61, [WorkflowStatus.RUNNING], workflow_id="a")
    assert store.append([Append("a", 1, [scheduled(2)]), Append("b", 1, [scheduled(2)])]) == [
        False,
        True,
    ]
    assert [e.seq for e in store.read_events("a")] == [1]
    assert [e.seq for e in store.read_events("b")] == [1, 2]


# -- claims, leases ----------------------------------------------------------

ACTIVE = [WorkflowStatus.PENDING, WorkflowStatus.RUNNING]


def test_claim_unowned_pending_workflow(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow("a")])
    assert [(c.workflow_id, c.fence) for c in store.claim("w1", T0, T0 + 30, ACTIVE)] == [("a", 1)]
    record = store.get_workflow("a")
    assert record is not None
    assert (record.owner, record.lease_until, record.status) == (
        "w1",
        T0 + 30,
        WorkflowStatus.RUNNING,
    )
    # Held by w1 with a live lease: nobody else gets it.
    assert store.claim("w2", T0 + 1, T0 + 31, ACTIVE) == []


def test_claim_expired_lease(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 30)])
    assert store.claim("w2", T0 + 30, T0 + 60, ACTIVE) == []  # not yet expired
    (claim,) = store.claim("w2", T0 + 30.5, T0 + 60, ACTIVE)
    assert claim.fence == 2
    record = store.get_workflow("a")
    assert record is not None and (record.owner, record.lease_until) == ("w2", T0 + 60)


def test_claim_from_dead_owner_before_lease_expires(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 300)])
    assert store.claim("w2", T0, T0 + 30, ACTIVE, dead_owners=["w9"]) == []
    (claim,) = store.claim("w2", T0, T0 + 30, ACTIVE, dead_owners=["w9", "w1"])
    assert (claim.workflow_id, claim.fence) == ("a", 2)


def test_worker_never_reclaims_its_own_workflow(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 30)])
    assert store.claim("w1", T0 + 1000, T0 + 1030, ACTIVE) == []
    assert store.claim("w1", T0, T0 + 30, ACTIVE, dead_owners=["w1"]) == []
    record = store.get_workflow("a")
    assert record is not None and record.fence == 1


def test_claim_honours_statuses_id_limit_and_age(store: SQLiteStore) -> None:
    store.create_workflows(
        [new_workflow(w, at=T0 + i) for i, w in enumerate(["old", "mid", "new", "x"])]
    )
    assert store.claim("w1", T0, T0 + 30, [WorkflowStatus.RUNNING]) == []
    assert [c.workflow_id for c in store.claim("w1", T0, T0 + 30, ACTIVE, limit=2)] == [
        "old",
        "mid",
    ]
    assert [c.workflow_id for c in store.claim("w1", T0, T0 + 30, ACTIVE, workflow_id="x")] == ["x"]
    assert [c.workflow_id for c in store.claim("w1", T0, T0 + 30, ACTIVE)] == ["new"]


def test_claim_resumes_a_suspended_workflow(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 30)])
    store.append([Append("a", 1, [], status=WorkflowStatus.SUSPENDED, reason="diverged")])
    store.release("w1", "a", 1)
    (claim,) = store.claim("w2", T0, T0 + 30, [WorkflowStatus.SUSPENDED])
    record = store.get_workflow("a")
    assert record is not None
    assert (record.status, record.reason, record.fence) == (WorkflowStatus.RUNNING, None, 2)
    assert claim.fence == 2


def test_renew_leases_extends_only_own_unfinished(store: SQLiteStore) -> None:
    store.create_workflows(
        [
            new_workflow("mine", owner="w1", lease_until=T0 + 30),
            new_workflow("done", owner="w1", lease_until=T0 + 30),
            new_workflow("theirs", owner="w2", lease_until=T0 + 30),
        ]
    )
    store.append([Append("done", 1, [], status=WorkflowStatus.COMPLETED)])
    assert store.renew_leases("w1", T0 + 90) == 1
    leases = {w: store.get_workflow(w) for w in ("mine", "done", "theirs")}
    assert {w: r.lease_until for w, r in leases.items() if r} == {
        "mine": T0 + 90,
        "done": None,  # finishing ended its lease in the same commit
        "theirs": T0 + 30,
    }
    assert leases["done"] is not None and leases["done"].owner is None
    assert store.renew_leases("nobody", T0 + 90) == 0


def test_release_drops_the_lease_only_under_the_current_fence(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 30)])
    store.release("w1", "a", fence=0)  # stale fence: no effect
    store.release("w2", "a", fence=1)  # not the owner: no effect
    record = store.get_workflow("a")
    assert record is not None and record.owner == "w1"
    store.release("w1", "a", fence=1)
    record = store.get_workflow("a")
    assert record is not None
    assert (record.owner, record.lease_until, record.status) == (
        None,
        None,
        WorkflowStatus.RUNNING,
    )
    (claim,) = store.claim("w2", T0, T0 + 30, ACTIVE)
    assert claim.fence == 2


def test_workers_register_and_unregister_releases_leases(store: SQLiteStore) -> None:
    store.register_worker("w1", "host-a", 123, T0)
    store.register_worker("w2", "host-b", 456, T0)
    assert sorted(store.workers()) == [("w1", "host-a", 123), ("w2", "host-b", 456)]
    store.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 300)])
    store.unregister_worker("w1")
    assert store.workers() == [("w2", "host-b", 456)]
    record = store.get_workflow("a")
    assert record is not None and record.owner is None
    assert [c.workflow_id for c in store.claim("w2", T0, T0 + 30, ACTIVE)] == ["a"]


# -- snapshots ---------------------------------------------------------------


def test_snapshots_keep_the_newest_and_delete(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow(w, owner="w1", lease_until=T0 + 30) for w in ("a", "b")])
    s2 = Snapshot("a", 2, b"\x00state-2\xff", "c2")
    s3 = Snapshot("a", 3, b"state-3", "c3")
    store.append([Append("a", 1, [scheduled(2)], snapshot=s2)])
    assert store.load_snapshot("a") == s2
    store.append([Append("a", 1, [scheduled(3)], snapshot=s3)])
    assert store.load_snapshot("a") == s3
    store.append([Append("b", 1, [scheduled(2)], snapshot=Snapshot("b", 2, b"b", "cb"))])
    assert store.delete_snapshots("a") == 1
    assert store.load_snapshot("a") is None
    assert store.load_snapshot("b") is not None
    assert store.delete_snapshots("a") == 0
    assert store.delete_snapshots() == 1
    assert store.load_snapshot("b") is None


def test_snapshot_rows_replace_older_ones(path: Path) -> None:
    store = SQLiteStore(path)
    store.create_workflows([new_workflow("a", owner="w1", lease_until=T0 + 30)])
    for seq in (2, 3, 4):
        store.append([Append("a", 1, [scheduled(seq)], snapshot=Snapshot("a", seq, b"s", "c"))])
    store.close()
    assert sql_count(path, "SELECT count(*) FROM snapshots WHERE workflow_id = ?", "a") == 1


# -- list_workflows ----------------------------------------------------------


def test_list_workflows_filters_and_orders_newest_first(store: SQLiteStore) -> None:
    store.create_workflows(
        [
            new_workflow("c1", name="checkout", at=T0 + 1),
            new_workflow("r1", name="refund", at=T0 + 2),
            new_workflow("c2", name="checkout", at=T0 + 3, owner="w1", lease_until=T0 + 30),
            new_workflow("c3", name="checkout", at=T0 + 4, owner="w1", lease_until=T0 + 30),
        ]
    )
    store.append([Append("c3", 1, [], status=WorkflowStatus.COMPLETED)])

    def ids(**kw: object) -> list[str]:
        return [r.id for r in store.list_workflows(**kw)]  # type: ignore[arg-type]

    assert ids() == ["c3", "c2", "r1", "c1"]
    assert ids(name="checkout") == ["c3", "c2", "c1"]
    assert ids(status=WorkflowStatus.PENDING) == ["r1", "c1"]
    assert ids(status=WorkflowStatus.RUNNING, name="checkout") == ["c2"]
    assert ids(status="COMPLETED") == ["c3"]
    assert ids(name="checkout", limit=2) == ["c3", "c2"]
    assert ids(name="nothing") == []
    assert ids(limit=0) == []


def test_list_workflows_records_carry_parent(store: SQLiteStore) -> None:
    store.create_workflows([new_workflow("p"), new_workflow("p/1", parent_id="p", at=T0 + 1)])
    child, parent = store.list_workflows()
    assert (child.id, child.parent_id, parent.parent_id) == ("p/1", "p", None)
    assert child.created_at == child.updated_at == T0 + 1


# -- schema, opening -----------------------------------------------------------


def test_reopening_a_file_keeps_data_and_migrates_once(path: Path) -> None:
    store = SQLiteStore(path)
    store.create_workflows([new_workflow("a")])
    store.close()
    for _ in range(2):
        store = SQLiteStore(path)
        assert store.read_events("a") == [started()]
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert SCHEMA_VERSION >= 1
    assert (
        sql_count(path, "SELECT count(*) FROM _sqlite_migrations WHERE migration_set = 'duralog'")
        == SCHEMA_VERSION
    )


def test_migration_rerun_with_user_version_reset_is_harmless(path: Path) -> None:
    store = SQLiteStore(path)
    store.create_workflows([new_workflow("a")])
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 0")
    conn.close()
    store = SQLiteStore(path)
    assert store.read_events("a") == [started()]
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_two_stores_open_one_new_file(path: Path) -> None:
    one, two = SQLiteStore(path), SQLiteStore(path)
    one.create_workflows([new_workflow("a")])
    assert two.read_events("a") == [started()]
    one.close()
    two.close()


def test_memory_stores_are_private() -> None:
    one, two = SQLiteStore(":memory:"), SQLiteStore(":memory:")
    one.create_workflows([new_workflow("a")])
    assert two.get_workflow("a") is None
    one.close()
    two.close()


def test_closed_store_raises_store_error(store: SQLiteStore) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_workflow("a")


@pytest.mark.parametrize(
    "content",
    [b"hello, this is not a database " * 40, b"hi", b"SQLite format 3\x00" + b"\xff" * 200],
    ids=["text", "tiny", "bad-header"],
)
def test_opening_a_non_database_file_raises_store_error(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    with pytest.raises(StoreError, match=str(path)) as info:
        SQLiteStore(path)
    assert type(info.value) is StoreError
    assert path.read_bytes() == content


def test_opening_a_directory_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SQLiteStore(tmp_path)


def test_missing_folder_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        SQLiteStore(tmp_path / "no" / "such" / "log.db")


@pytest.mark.parametrize("durability", ["bogus", "FULL", "", None])
def test_bad_durability_is_a_configuration_error(path: Path, durability: object) -> None:
    with pytest.raises(ConfigurationError, match="durability"):
        SQLiteStore(path, durability=durability)  # type: ignore[arg-type]
    assert not path.exists()


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_durability_sets_synchronous(path: Path, durability: str) -> None:
    store = SQLiteStore(path, durability=durability)  # type: ignore[arg-type]
    store.create_workflows([new_workflow("a")])
    assert repr(store) == f"SQLiteStore({str(path)!r}, durability={durability!r})"
    store.close()


# -- corrupt records -----------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        "garbage",
        "{",
        '{"kind": "NoSuchEvent"}',
        '{"kind": "StepCompleted", "step_seq": "two"}',
        '{"kind": "StepStarted"}',
        "[]",
        b"\xff\xfe\x00",
        42,
    ],
    ids=[
        "text",
        "truncated",
        "unknown-kind",
        "wrong-type",
        "missing-field",
        "array",
        "blob",
        "number",
    ],
)
def test_corrupt_event_body_raises_corrupt_event_error(path: Path, garbage: object) -> None:
    store = SQLiteStore(path)
    store.create_workflows([new_workflow("order-7", owner="w1", lease_until=T0 + 30)])
    store.append([Append("order-7", 1, [scheduled(s) for s in (2, 3, 4)])])
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE events SET body = ? WHERE workflow_id = ? AND seq = 3", (garbage, "order-7")
        )
    conn.close()
    with pytest.raises(CorruptEventError) as info:
        store.read_events("order-7")
    err = info.value
    assert isinstance(err, StoreError)
    assert (err.workflow_id, err.seq) == ("order-7", 3)
    assert "order-7" in str(err) and "3" in str(err)
    assert isinstance(err.__cause__, msgspec.MsgspecError | TypeError)
    # Reading around the corrupt event still works.
    assert [e.seq for e in store.read_events("order-7", until_seq=2)] == [1, 2]
    assert [e.seq for e in store.read_events("order-7", after_seq=3)] == [4]
    store.close()
