"""Every store creates a fork the same way: its row, its first event and the copies in
one transaction, chained afresh under the new id, and findable from its source.

Each test runs against a SQLite file, SQLite in memory and PostgreSQL (``conftest.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from duralog.errors import LogDamaged
from duralog.replay.forks import fork_history
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import Append, EventStore, NewWorkflow, WorkflowQuery, WorkflowStatus
from duralog.store.events import LogEntry
from duralog.store.verify import verify

RunSQL = Callable[..., list[tuple[Any, ...]]]
T0 = 1_700_000_000.0


def write_source(store: EventStore, workflow_id: str = "src", steps: int = 3) -> list[LogEntry]:
    """A source with ``steps`` completed steps (3 events each) after its start."""
    first = ev.started_entry(T0, name="job", args=codec.encode([1]))
    assert store.create_workflows([NewWorkflow(workflow_id, "job", first, owner="w1")]) == [1]
    entries: list[LogEntry] = []
    for i in range(steps):
        seq = 2 + 3 * i
        entries += [
            LogEntry(seq, T0 + seq, ev.StepScheduled(name="step", args=codec.encode([i]))),
            LogEntry(seq + 1, T0 + seq, ev.StepStarted(step_seq=seq, attempt=1)),
            LogEntry(seq + 2, T0 + seq, ev.StepCompleted(step_seq=seq, result=codec.encode(i))),
        ]
    assert store.append([Append(workflow_id, 1, entries)]) == [True]
    return store.read_events(workflow_id)


def fork_item(
    source: list[LogEntry], from_seq: int, new_id: str = "fork", queue: str | None = None
) -> tuple[NewWorkflow, list[LogEntry]]:
    first = fork_history("src", source, from_seq, at=T0 + 100, run_id="r-fork")
    return NewWorkflow(new_id, "job", first[0], queue=queue), first[1:]


def test_a_fork_is_written_whole_and_chained_afresh(store: EventStore) -> None:
    source = write_source(store)
    item, copied = fork_item(source, 8)
    assert store.fork_workflow(item, copied)
    history = store.read_events("fork")  # reading checks the chain
    assert [e.seq for e in history] == list(range(1, 8))
    assert [e.event for e in history[1:]] == [e.event for e in source[1:7]]
    record = store.get_workflow("fork")
    assert record is not None
    assert (record.status, record.last_seq, record.owner, record.fence) == (
        WorkflowStatus.PENDING,
        7,
        None,
        0,
    )
    assert record.created_at == T0 + 100  # the fork's start, not its source's
    assert [c.ok for c in verify(store)] == [True, True]
    forks = store.find_workflows(WorkflowQuery(forked_from=("src",)))
    assert [r.id for r in forks] == ["fork"]
    assert store.count_workflows(WorkflowQuery(forked_from=("fork",))) == 0


def test_a_taken_id_writes_nothing(store: EventStore) -> None:
    source = write_source(store)
    write_source(store, "other", steps=1)
    item, copied = fork_item(source, 8, new_id="other")
    assert not store.fork_workflow(item, copied)
    assert len(store.read_events("other")) == 4
    assert store.count_workflows(WorkflowQuery(forked_from=("src",))) == 0


def test_a_queued_fork_waits_on_its_queue(store: EventStore) -> None:
    source = write_source(store, steps=1)
    item, copied = fork_item(source, 5, queue="slow")
    assert store.fork_workflow(item, copied)
    assert store.claim("w2", T0, 30, [WorkflowStatus.PENDING]) == []  # only claim_queued
    assert store.queue_counts() == {"slow": {WorkflowStatus.PENDING: 1}}


def test_a_failed_fork_leaves_nothing_behind(store: EventStore, run_sql: RunSQL) -> None:
    """A fork that cannot be written whole (here: events already under its id, which
    only a damaged log holds) rolls back, its row included."""
    source = write_source(store)
    item, copied = fork_item(source, 8)
    run_sql(
        "INSERT INTO events (workflow_id, seq, kind, at, body) VALUES (?,?,?,?,?)",
        "fork",
        5,
        "StepStarted",
        T0,
        "{}",
    )
    with pytest.raises(LogDamaged, match="no index row"):
        store.fork_workflow(item, copied)
    assert store.get_workflow("fork") is None
    assert run_sql("SELECT seq FROM events WHERE workflow_id = ?", "fork") == [(5,)]
