"""``copy_store``: a whole log moves between stores, verified, in batches, refusing clashes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from duralog.errors import StoreError
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import (
    Append,
    BreakerRecord,
    EventStore,
    HeartbeatRecord,
    NewWorkflow,
    QueueLimits,
    QueueOverrides,
    ScheduleRecord,
    Snapshot,
    WorkflowStatus,
)
from duralog.store.copy import COPIED, copy_store
from duralog.store.events import LogEntry
from duralog.store.open import open_store

T0 = 1_700_000_000.0


def new_workflow(workflow_id: str, owner: str | None = "w1", **options: object) -> NewWorkflow:
    started = LogEntry(1, T0, ev.WorkflowStarted(name="flow", args=codec.encode([workflow_id])))
    return NewWorkflow(
        workflow_id,
        "flow",
        started,
        owner=owner,
        lease_seconds=30 if owner else None,
        **options,  # type: ignore[arg-type]
    )


def fill(store: EventStore, workflows: int = 7) -> None:
    """A log with a bit of everything: long and finished histories, snapshots, inboxes,
    a continued run, a queued workflow taken off its queue, schedules and breakers."""
    ids = [f"wf-{i}" for i in range(workflows)] + ["\u00e9t\u00e9/1", "loop"]
    store.create_workflows([new_workflow(w) for w in ids])
    store.create_workflows([new_workflow("queued", owner=None, queue="q", priority=2)])
    store.claim_queued("w1", T0 + 1, 30, QueueLimits("q"))
    for n, workflow_id in enumerate(ids[:workflows]):
        entries = [
            LogEntry(seq, T0 + seq, ev.StepScheduled(name="s", args=codec.encode(["x\u0000", seq])))
            for seq in range(2, 2 + n * 3)
        ]
        snapshot = (
            Snapshot(workflow_id, 1 + len(entries), b"\x00\xffstate", "sum") if n % 2 else None
        )
        store.append([Append(workflow_id, 1, entries, snapshot=snapshot)])
        store.send(workflow_id, "signal", f"sig-{n}", b'{"n": %d}' % n, T0 + n)
    done = LogEntry(2, T0 + 9, ev.WorkflowCompleted(result=codec.encode("ok")))
    store.append([Append("\u00e9t\u00e9/1", 1, [done])])
    end = LogEntry(2, T0 + 5, ev.ContinuedAsNew(args=codec.encode([2])))
    run2 = LogEntry(1, T0 + 6, ev.WorkflowStarted(name="flow", args=codec.encode([2]), run=2))
    assert store.continue_as_new(Append("loop", 1, [end]), "loop~run1", run2)
    store.send("loop", "cancel", "", None, T0 + 7)
    for i, paused in enumerate([False, True]):
        store.put_schedule(
            ScheduleRecord(
                f"sched-{i}", "0 * * * *", "flow", b'["tick"]', T0, T0, T0, paused=paused
            )
        )
    assert store.put_heartbeat(HeartbeatRecord("wf-1", 2, "run", 3, b'{"offset":7}', T0), 1)
    store.put_breaker(BreakerRecord("payments", "open", 5, T0, 1, T0))
    store.put_breaker(BreakerRecord("email", "closed", 0, None, 1, T0))
    store.put_queue_limits("q", QueueOverrides(concurrency=2, rate_limit=None), T0)
    options = NewWorkflow(
        "options",
        "flow",
        LogEntry(1, T0, ev.WorkflowStarted(name="flow", args=codec.encode([]))),
        queue="tenants",
        dedup_id="k",
        partition_key="t-1",
        start_at=T0 + 60,
    )
    store.create_workflows([options])


def dump(store: EventStore) -> dict[str, list[tuple[object, ...]]]:
    """Every copied table, rows in key order; inbox ids (assigned anew) and leases left out."""
    out = {}
    for table in COPIED:
        rows = store.export_rows(table, None, 10_000)
        if table == "inbox":
            rows = [row[1:] for row in rows]
        if table == "workflows":
            rows = [row[:4] + row[6:] for row in rows]  # without owner, lease_until
        out[table] = rows
    return out


@pytest.fixture
def sqlite_log(tmp_path: Path) -> Iterator[EventStore]:
    store = open_store(str(tmp_path / "source.db"))
    fill(store)
    yield store
    store.close()


def test_a_log_survives_a_round_trip_through_postgres(
    sqlite_log: EventStore, postgres_url: str, tmp_path: Path
) -> None:
    postgres = open_store(postgres_url)
    back = open_store(str(tmp_path / "back.db"))
    try:
        reported: list[tuple[str, int]] = []
        counts = copy_store(
            sqlite_log, postgres, batch_size=3, progress=lambda t, n: reported.append((t, n))
        )
        assert counts == {t: sqlite_log.count_rows(t) for t in COPIED}
        assert counts["events"] > 3 and ("events", 3) in reported
        assert copy_store(postgres, back) == counts
        original = dump(sqlite_log)
        assert dump(postgres) == original
        assert dump(back) == original
        for store in (sqlite_log, postgres, back):
            assert [e.seq for e in store.read_events("wf-6")] == list(range(1, 20))
        assert postgres.load_snapshot("wf-5") == sqlite_log.load_snapshot("wf-5")
        assert [i.name for i in back.inbox("wf-3")] == ["sig-3"]
        assert postgres.schedules() == sqlite_log.schedules()
        assert back.get_breaker("email") == sqlite_log.get_breaker("email")
        assert back.queue_limits() == postgres.queue_limits() == sqlite_log.queue_limits()
        assert back.get_workflow("options") == sqlite_log.get_workflow("options")
    finally:
        postgres.close()
        back.close()


def test_copied_workflows_arrive_unowned_and_claimable(
    sqlite_log: EventStore, tmp_path: Path
) -> None:
    target = open_store(str(tmp_path / "target.db"))
    try:
        copy_store(sqlite_log, target)
        moved = target.get_workflow("wf-1")
        assert moved is not None and (moved.owner, moved.lease_until) == (None, None)
        assert moved.fence == 1 and moved.status is WorkflowStatus.RUNNING
        claimed = target.claim("w9", T0, 30, [WorkflowStatus.RUNNING], workflow_id="wf-1")
        assert [(c.workflow_id, c.fence) for c in claimed] == [("wf-1", 2)]
        assert target.workers() == []
    finally:
        target.close()


@pytest.mark.parametrize("taken", ["workflows", "schedules", "breakers", "queue_limits"])
def test_a_target_holding_any_of_the_ids_is_refused(
    sqlite_log: EventStore, tmp_path: Path, taken: str
) -> None:
    target = open_store(str(tmp_path / "target.db"))
    try:
        target.create_workflows([new_workflow("mine-only")])
        if taken == "workflows":
            target.create_workflows([new_workflow("wf-4")])
        elif taken == "schedules":
            target.put_schedule(ScheduleRecord("sched-1", "* * * * *", "x", b"[]", T0, T0, T0))
        elif taken == "breakers":
            target.put_breaker(BreakerRecord("payments", "closed", 0, None, 1, T0))
        else:
            target.put_queue_limits("q", QueueOverrides(worker_concurrency=1), T0)
        before = {t: target.count_rows(t) for t in COPIED}
        with pytest.raises(StoreError, match="already holds") as info:
            copy_store(sqlite_log, target, batch_size=2)
        assert "nothing was copied" in str(info.value)
        assert {t: target.count_rows(t) for t in COPIED} == before
    finally:
        target.close()


def test_a_target_with_other_workflows_gets_the_copy_beside_them(
    sqlite_log: EventStore, tmp_path: Path
) -> None:
    target = open_store(str(tmp_path / "target.db"))
    try:
        target.create_workflows([new_workflow("mine-only")])
        target.send("mine-only", "signal", "x", None, T0)
        counts = copy_store(sqlite_log, target)
        assert target.count_rows("workflows") == counts["workflows"] + 1
        assert [i.name for i in target.inbox("mine-only")] == ["x"]
        assert [i.name for i in target.inbox("wf-2")] == ["sig-2"]
    finally:
        target.close()


def test_bad_tables_and_batch_sizes_are_clear_errors(
    sqlite_log: EventStore, tmp_path: Path
) -> None:
    with pytest.raises(StoreError, match="not a table of a duralog log"):
        sqlite_log.export_rows("sqlite_master")
    with pytest.raises(StoreError, match="not a table"):
        sqlite_log.count_rows("events; DROP TABLE events")
    with pytest.raises(StoreError, match="batch_size"):
        copy_store(sqlite_log, sqlite_log, batch_size=0)


def test_a_copy_that_fails_midway_says_what_the_target_holds(
    sqlite_log: EventStore, postgres_url: str
) -> None:
    # SQLite stores a NUL in an id; PostgreSQL text cannot. The first batches land.
    sqlite_log.create_workflows([new_workflow("zz\x00nul")])
    target = open_store(postgres_url)
    try:
        with pytest.raises(StoreError) as info:
            copy_store(sqlite_log, target, batch_size=2)
        message = str(info.value)
        assert "copying workflows failed after" in message and "NUL" in message
        assert "the target now holds part of the log" in message
        assert "drop it (or its schema)" in message
    finally:
        target.close()
