"""Every store keeps a tamper-evident log and never appends past a gap.

Each event carries a checksum chained to the one before it; a log damaged behind
the store's back (rows edited with plain SQL, as an adversary would) is found by
``read_events`` and by ``verify`` with the workflow id and the seq, and an append
that would continue a damaged log is refused with ``LogDamaged``, without failing
the other workflows of its batch. Runs on a SQLite file, in memory, and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from duralog.errors import CorruptEventError, LogDamaged, StoreDamaged
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import Append, EventStore, NewWorkflow, QueueLimits, WorkflowStatus
from duralog.store.copy import copy_store
from duralog.store.events import LogEntry
from duralog.store.integrity import GENESIS, link
from duralog.store.open import is_postgres, open_store
from duralog.store.verify import WorkflowCheck, verify, verify_read

RunSQL = Callable[..., list[tuple[Any, ...]]]
T0 = 1_700_000_000.0
S = WorkflowStatus


def started(name: str = "checkout") -> LogEntry:
    return LogEntry(1, T0, ev.WorkflowStarted(name=name, args=codec.encode(["order-1"])))


def owned(*ids: str) -> list[NewWorkflow]:
    return [NewWorkflow(w, "checkout", started(), owner="w1", lease_seconds=30) for w in ids]


def scheduled(seq: int) -> LogEntry:
    return LogEntry(seq, T0 + seq, ev.StepScheduled(name="charge", args=codec.encode([seq])))


def completed(seq: int, step_seq: int, result: str = "ok") -> LogEntry:
    return LogEntry(seq, T0 + seq, ev.StepCompleted(step_seq=step_seq, result=codec.encode(result)))


def finished(seq: int) -> LogEntry:
    return LogEntry(seq, T0 + seq, ev.WorkflowCompleted(result=codec.encode("done")))


def a_finished_workflow(store: EventStore, workflow_id: str = "a") -> None:
    """seq 1 started, 2 step scheduled, 3 step completed, 4 workflow completed."""
    store.create_workflows(owned(workflow_id))
    entries = [scheduled(2), completed(3, 2, "charged 1999"), finished(4)]
    assert store.append([Append(workflow_id, 1, entries)]) == [True]


def a_running_workflow(store: EventStore, workflow_id: str = "a", steps: int = 3) -> None:
    store.create_workflows(owned(workflow_id))
    assert store.append([Append(workflow_id, 1, [scheduled(s) for s in range(2, steps + 2)])]) == [
        True
    ]


def checked(store: EventStore, workflow_id: str = "a") -> WorkflowCheck:
    """``verify``'s check of one workflow, which ``verify_read`` (what ``duralog replay``
    reads with) must give too, with the events only when the log is intact."""
    (check,) = verify(store, workflow_id)
    found, events = verify_read(store, workflow_id, batch_size=2)
    assert found == check
    assert events == (store.read_events(workflow_id) if check.ok else [])
    return check


def findings(store: EventStore, workflow_id: str = "a") -> list[tuple[int, str]]:
    return [(f.seq, f.code) for f in checked(store, workflow_id).findings]


def rows(run_sql: RunSQL, workflow_id: str = "a") -> list[tuple[Any, ...]]:
    return run_sql(
        "SELECT seq, kind, at, body, checksum FROM events WHERE workflow_id = ? ORDER BY seq",
        workflow_id,
    )


# -- the chain ---------------------------------------------------------------------


def test_every_event_is_chained_on_the_one_before(store: EventStore, run_sql: RunSQL) -> None:
    a_finished_workflow(store)
    previous = GENESIS
    for seq, kind, at, body, checksum in rows(run_sql):
        assert checksum == link(previous, seq, kind, at, body)
        previous = checksum


def test_every_way_of_writing_events_chains_them(opener: Callable[[], EventStore]) -> None:
    store = opener()
    a_finished_workflow(store, "appended")
    store.create_workflows(owned("continued"))
    ended = LogEntry(2, T0 + 2, ev.ContinuedAsNew(args=codec.encode([2])))
    next_run = LogEntry(1, T0 + 3, ev.WorkflowStarted(name="checkout", args=codec.encode([2])))
    assert store.continue_as_new(Append("continued", 1, [ended]), "continued~run1", next_run)
    queued = NewWorkflow("queued", "checkout", started(), queue="q")
    store.create_workflows([queued])
    assert store.cancel_queued("queued", T0 + 5, "not needed")
    checks = list(verify(store))
    assert [c.workflow_id for c in checks] == ["appended", "continued", "continued~run1", "queued"]
    assert all(c.ok for c in checks), checks
    assert [c.events for c in checks] == [4, 1, 2, 2]


def test_a_copied_log_keeps_its_chains(
    store: EventStore, address: str, tmp_path: Any, postgres_url: str
) -> None:
    a_finished_workflow(store)
    a_running_workflow(store, "b")
    targets = [open_store(str(tmp_path / "copy.db"))]
    if not is_postgres(address):  # (a PostgreSQL log is copied into SQLite)
        targets.append(open_store(postgres_url))
    try:
        for target in targets:
            copy_store(store, target)
            assert [(c.workflow_id, c.ok) for c in verify(target)] == [("a", True), ("b", True)]
    finally:
        for target in targets:
            target.close()


def test_an_intact_log_is_read_once_with_its_check(store: EventStore) -> None:
    a_finished_workflow(store)
    a_running_workflow(store, "b")
    assert findings(store) == [] and findings(store, "b") == []
    found, events = verify_read(store, "a")
    assert found == WorkflowCheck("a", 4, []) and [e.seq for e in events] == [1, 2, 3, 4]


def test_an_index_behind_its_intact_log_is_found_by_both(
    store: EventStore, run_sql: RunSQL
) -> None:
    a_running_workflow(store)
    run_sql("UPDATE workflows SET last_seq = 2 WHERE id = 'a'")
    assert findings(store) == [(3, "index")]


@pytest.mark.parametrize("seq", [0, -5, 2**63 - 1], ids=["zero", "negative", "past-any-read"])
def test_a_row_no_read_reaches_is_still_found(store: EventStore, run_sql: RunSQL, seq: int) -> None:
    # read_events reads seqs 1 to MAX_ROWS: verify_read must still see every row verify sees.
    a_running_workflow(store)
    run_sql(
        "INSERT INTO events (workflow_id, seq, kind, at, body) VALUES ('a', ?, 'StepScheduled',"
        ' ?, \'{"kind":"StepScheduled","name":"refund","args":[]}\')',
        seq,
        T0,
    )
    assert findings(store) != []


# -- damage found on read and by verify --------------------------------------------


def test_an_event_inserted_after_the_end(store: EventStore, run_sql: RunSQL) -> None:
    a_finished_workflow(store)
    run_sql(
        "INSERT INTO events (workflow_id, seq, kind, at, body) VALUES ('a', 5, 'StepScheduled',"
        ' ?, \'{"kind":"StepScheduled","name":"refund","args":[]}\')',
        T0 + 5,
    )
    assert (5, "after-end") in findings(store)
    with pytest.raises(LogDamaged) as info:
        store.read_events("a")
    assert (info.value.workflow_id, info.value.seq) == ("a", 5)


def test_an_event_inserted_with_a_recomputed_checksum_is_still_after_the_end(
    store: EventStore, run_sql: RunSQL
) -> None:
    a_finished_workflow(store)
    (last,) = run_sql("SELECT checksum FROM events WHERE workflow_id = 'a' AND seq = 4")
    body = '{"kind":"StepScheduled","name":"refund","args":[]}'
    forged = link(last[0], 5, "StepScheduled", T0 + 5, body)
    run_sql(
        "INSERT INTO events (workflow_id, seq, kind, at, body, checksum)"
        " VALUES ('a', 5, 'StepScheduled', ?, ?, ?)",
        T0 + 5,
        body,
        forged,
    )
    run_sql("UPDATE workflows SET last_seq = 5 WHERE id = 'a'")
    assert findings(store) == [(5, "after-end")]


def test_the_terminal_event_deleted_while_the_index_says_completed(
    store: EventStore, run_sql: RunSQL
) -> None:
    a_finished_workflow(store)
    run_sql("DELETE FROM events WHERE workflow_id = 'a' AND seq = 4")
    check = checked(store)
    assert not check.ok
    problems = " / ".join(f.problem for f in check.findings)
    assert "ends at seq 3" in problems and "COMPLETED" in problems


@pytest.mark.parametrize(
    ("seq", "old", "new"),
    [(3, "charged 1999", "charged 1"), (2, "[2]", "[200]")],
    ids=["step-result", "step-arguments"],
)
def test_an_altered_event(store: EventStore, run_sql: RunSQL, seq: int, old: str, new: str) -> None:
    a_finished_workflow(store)
    run_sql(
        "UPDATE events SET body = replace(body, ?, ?) WHERE workflow_id = 'a' AND seq = ?",
        old,
        new,
        seq,
    )
    assert findings(store) == [(seq, "chain")]
    with pytest.raises(LogDamaged, match=f"damaged at seq {seq}: its checksum does not match"):
        store.read_events("a")
    assert [e.seq for e in store.read_events("a", verify=False)] == [1, 2, 3, 4]


def test_a_kind_column_that_does_not_match_the_body(store: EventStore, run_sql: RunSQL) -> None:
    a_finished_workflow(store)
    run_sql("UPDATE events SET kind = 'StepFailed' WHERE workflow_id = 'a' AND seq = 3")
    assert findings(store) == [(3, "kind"), (3, "chain")]


@pytest.mark.parametrize("deleted", [1, 2, 3], ids=["started", "middle", "two"])
def test_a_gap(store: EventStore, run_sql: RunSQL, deleted: int) -> None:
    a_running_workflow(store, steps=4)
    run_sql("DELETE FROM events WHERE workflow_id = 'a' AND seq IN (?, ?)", deleted, deleted + 1)
    assert findings(store)[0] == (deleted, "gap")
    with pytest.raises(LogDamaged, match=f"events {deleted} to {deleted + 1} are missing"):
        store.read_events("a")


def test_a_read_from_the_middle_checks_against_the_event_before(
    store: EventStore, run_sql: RunSQL
) -> None:
    a_running_workflow(store, steps=4)
    assert [e.seq for e in store.read_events("a", after_seq=3)] == [4, 5]
    run_sql("UPDATE events SET body = replace(body, '[4]', '[40]') WHERE workflow_id = 'a'")
    with pytest.raises(LogDamaged, match="at seq 4"):
        store.read_events("a", after_seq=3)
    assert [e.seq for e in store.read_events("a", after_seq=4)] == [5]  # 5 is chained on 4


def test_a_damaged_index_row(store: EventStore, run_sql: RunSQL) -> None:
    a_finished_workflow(store)
    a_running_workflow(store, "b")
    run_sql("UPDATE workflows SET status = 'WEIRD' WHERE id = 'a'")
    with pytest.raises(StoreDamaged, match="index row of workflow 'a' is damaged"):
        store.list_workflows()
    with pytest.raises(StoreDamaged, match="'a'"):
        store.get_workflow("a")
    checks = list(verify(store))
    assert [(c.workflow_id, c.ok) for c in checks] == [("a", False), ("b", True)]
    assert "WEIRD" in checks[0].findings[0].problem


def test_an_undecodable_body_is_still_a_corrupt_event(store: EventStore, run_sql: RunSQL) -> None:
    a_finished_workflow(store)
    run_sql("UPDATE events SET body = '{\"kind\": 42' WHERE workflow_id = 'a' AND seq = 3")
    with pytest.raises(CorruptEventError) as info:
        store.read_events("a")
    assert (info.value.workflow_id, info.value.seq) == ("a", 3)
    assert findings(store)[0] == (3, "body")


# -- appends never continue a damaged log --------------------------------------------


def test_no_append_past_a_gap_when_the_index_is_ahead(store: EventStore, run_sql: RunSQL) -> None:
    a_running_workflow(store, steps=3)  # seqs 1-4
    a_running_workflow(store, "b")
    run_sql("UPDATE workflows SET last_seq = 5 WHERE id = 'a'")
    batch = [Append("b", 1, [scheduled(5)]), Append("a", 1, [scheduled(5)])]
    result = store.append(batch)
    assert result[0] is True  # the other workflow of the batch is written
    damage = result[1]
    assert isinstance(damage, LogDamaged) and damage.workflow_id == "a" and damage.seq == 5
    assert "event 5 is missing" in str(damage)
    (rows_after,) = run_sql("SELECT max(seq) FROM events WHERE workflow_id = 'a'")
    assert rows_after == (4,)  # nothing past the gap
    # Also the seq the log would continue with (the engine's own view) is refused.
    assert isinstance(store.append([Append("a", 1, [scheduled(6)])])[0], LogDamaged)


def test_no_append_when_the_last_event_was_deleted(store: EventStore, run_sql: RunSQL) -> None:
    a_running_workflow(store, steps=3)
    run_sql("DELETE FROM events WHERE workflow_id = 'a' AND seq = 4")
    (damage,) = store.append([Append("a", 1, [scheduled(5)])])
    assert isinstance(damage, LogDamaged) and damage.seq == 4
    assert [r[0] for r in rows(run_sql)] == [1, 2, 3]


def test_no_append_when_the_log_is_ahead_of_its_index(store: EventStore, run_sql: RunSQL) -> None:
    a_running_workflow(store, steps=3)
    a_running_workflow(store, "b")
    run_sql("UPDATE workflows SET last_seq = 3 WHERE id = 'a'")
    result = store.append([Append("a", 1, [scheduled(4)]), Append("b", 1, [scheduled(5)])])
    assert isinstance(result[0], LogDamaged) and "past its end in the index" in str(result[0])
    assert result[1] is True


def test_a_stale_fence_is_still_a_plain_refusal(store: EventStore, run_sql: RunSQL) -> None:
    a_running_workflow(store, steps=3)
    run_sql("DELETE FROM events WHERE workflow_id = 'a' AND seq = 4")
    assert store.append([Append("a", 7, [scheduled(5)])]) == [False]  # not ours: no diagnosis


def test_a_damaged_log_can_still_be_set_aside(store: EventStore, run_sql: RunSQL) -> None:
    a_running_workflow(store, steps=3)
    run_sql("DELETE FROM events WHERE workflow_id = 'a' AND seq = 4")
    aside = Append("a", 1, [], status=S.SUSPENDED, reason="its log is damaged at seq 4")
    assert store.append([aside]) == [True]
    found = store.get_workflow("a")
    assert found is not None and found.status is S.SUSPENDED and found.owner is None


def test_an_unknown_status_refuses_only_its_item(store: EventStore, run_sql: RunSQL) -> None:
    a_running_workflow(store, steps=3)
    a_running_workflow(store, "b")
    run_sql("UPDATE workflows SET status = 'WEIRD' WHERE id = 'a'")
    result = store.append(
        [Append("a", 1, [scheduled(5)], status=S.PAUSED), Append("b", 1, [scheduled(5)])]
    )
    assert isinstance(result[0], LogDamaged) and "WEIRD" in str(result[0])
    assert result[1] is True


def test_cancelling_a_queued_workflow_never_appends_past_a_gap(
    store: EventStore, run_sql: RunSQL
) -> None:
    store.create_workflows([NewWorkflow("q-1", "checkout", started(), queue="q")])
    run_sql("UPDATE workflows SET last_seq = 2 WHERE id = 'q-1'")
    with pytest.raises(LogDamaged, match="event 2 is missing"):
        store.cancel_queued("q-1", T0 + 5)
    assert [r[0] for r in rows(run_sql, "q-1")] == [1]
    assert store.claim_queued("w", T0, 30, QueueLimits("q"))  # still waiting, untouched


def test_a_refusal_inside_a_group_of_step_appends_refuses_only_its_item(
    store: EventStore, run_sql: RunSQL
) -> None:
    # Steps of many workflows, each continuing what this store wrote last, are written
    # together (one UPDATE, one INSERT); one that fails its checks falls back alone.
    for workflow_id in "abcd":
        a_running_workflow(store, workflow_id, steps=1)  # seqs 1-2
    run_sql("UPDATE workflows SET fence = 9 WHERE id = 'b'")  # taken over by another worker
    run_sql("DELETE FROM events WHERE workflow_id = 'c' AND seq = 2")  # its last event
    batch = [Append(w, 1, [scheduled(3), completed(4, 3)]) for w in "abcd"]
    result = store.append(batch)
    assert result[0] is True and result[1] is False and result[3] is True
    assert isinstance(result[2], LogDamaged) and result[2].seq == 2
    for workflow_id, last in (("a", 4), ("b", 2), ("c", 1), ("d", 4)):
        assert [r[0] for r in rows(run_sql, workflow_id)] == list(range(1, last + 1))
    assert findings(store, "a") == findings(store, "b") == findings(store, "d") == []
    # The next group continues the chains the first one wrote.
    assert store.append([Append(w, 1, [scheduled(5)]) for w in "ad"]) == [True, True]
    assert findings(store, "a") == findings(store, "d") == []
