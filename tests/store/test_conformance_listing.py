"""Every store reads its index alike for operators: ``find_workflows``, ``count_workflows``,
``queue_counts``, ``step_counts`` and ``delete_workflow`` (``ListingStore``).

Each test runs against a SQLite file, SQLite in memory and PostgreSQL (see
``conftest.py``); the PostgreSQL cases are skipped when no server is reachable.
"""

from __future__ import annotations

import msgspec
import pytest

from duralog.errors import ErrorDetails
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import (
    Append,
    EventStore,
    NewWorkflow,
    StepCounts,
    WorkflowQuery,
    WorkflowStatus,
)
from duralog.store.events import LogEntry

T0 = 1_700_000_000.0
S = WorkflowStatus


def new(
    workflow_id: str,
    at: float,
    *,
    name: str = "checkout",
    queue: str | None = None,
    parent_id: str | None = None,
    owner: str | None = None,
) -> NewWorkflow:
    started = LogEntry(1, at, ev.WorkflowStarted(name=name, args=codec.encode([workflow_id])))
    return NewWorkflow(
        workflow_id,
        name,
        started,
        parent_id=parent_id,
        owner=owner,
        lease_seconds=30 if owner else None,
        queue=queue,
    )


@pytest.fixture
def filled(store: EventStore) -> EventStore:
    *_, fence = store.create_workflows(
        [
            new("c1", T0 + 1),
            new("r1", T0 + 2, name="refund"),
            new("q1", T0 + 3, queue="emails"),
            new("q2", T0 + 3, queue="emails"),
            new("p", T0 + 4, owner="w1"),
            new("p/1", T0 + 5, parent_id="p"),
            new("done", T0 + 6, owner="w1"),
        ]
    )
    assert fence is not None
    completed = LogEntry(2, T0 + 7, ev.WorkflowCompleted(result=codec.encode(1)))
    assert store.append([Append("done", fence, [completed])]) == [True]
    return store


def ids(store: EventStore, limit: int | None = None, **query: object) -> list[str]:
    found = store.find_workflows(WorkflowQuery(**query), limit=limit)  # type: ignore[arg-type]
    assert store.count_workflows(WorkflowQuery(**query)) >= len(found)  # type: ignore[arg-type]
    return [r.id for r in found]


def test_find_filters_and_orders_newest_first(filled: EventStore) -> None:
    assert ids(filled) == ["done", "p/1", "p", "q1", "q2", "r1", "c1"]
    assert ids(filled, statuses=(S.PENDING,), names=("checkout",)) == ["p/1", "q1", "q2", "c1"]
    assert ids(filled, statuses=(S.RUNNING, S.COMPLETED)) == ["done", "p"]
    assert ids(filled, names=("refund", "nothing")) == ["r1"]
    assert ids(filled, queues=("emails",)) == ["q1", "q2"]
    assert ids(filled, parents=("p",)) == ["p/1"]
    assert ids(filled, started_since=T0 + 3, started_until=T0 + 5) == ["p", "q1", "q2"]
    assert ids(filled, limit=2) == ["done", "p/1"]
    assert ids(filled, limit=0) == []


def test_after_pages_through_ties_without_gaps(filled: EventStore) -> None:
    pages: list[str] = []
    query = WorkflowQuery()
    while page := filled.find_workflows(query, limit=2):
        pages += [r.id for r in page]
        query = msgspec.structs.replace(query, after=(page[-1].created_at, page[-1].id))
    assert pages == ids(filled)


def test_count(filled: EventStore) -> None:
    assert filled.count_workflows(WorkflowQuery()) == 7
    assert filled.count_workflows(WorkflowQuery(statuses=(S.PENDING,), queues=("emails",))) == 2
    assert filled.count_workflows(WorkflowQuery(names=("nothing",))) == 0


def test_queue_counts(filled: EventStore) -> None:
    assert filled.queue_counts() == {"emails": {S.PENDING: 2}}


def test_a_negative_limit_is_refused(filled: EventStore) -> None:
    with pytest.raises(ValueError, match="0 or more"):
        filled.find_workflows(WorkflowQuery(), limit=-1)


def test_delete_removes_a_finished_workflow_only(filled: EventStore) -> None:
    gone = filled.delete_workflow("done")
    assert gone is not None and gone.status is S.COMPLETED and gone.last_seq == 2
    assert filled.get_workflow("done") is None and filled.read_events("done") == []
    kept = filled.delete_workflow("p")
    assert kept is not None and kept.status is S.RUNNING
    assert filled.get_workflow("p") is not None and len(filled.read_events("p")) == 1
    assert filled.delete_workflow("nope") is None


def test_step_counts_reads_the_steps_and_retries_of_the_ids_given(filled: EventStore) -> None:
    raw, err = codec.encode(1), ErrorDetails("ConnectionError", "down", "")
    steps = [
        ev.StepScheduled(name="pay", args=codec.encode([])),  # 3
        ev.StepStarted(step_seq=3, attempt=1),
        ev.StepRetrying(step_seq=3, attempt=1, error=err, next_attempt_at=T0 + 9),
        ev.StepStarted(step_seq=3, attempt=2),
        ev.StepRetrying(step_seq=3, attempt=2, error=err, next_attempt_at=T0 + 9),
        ev.StepStarted(step_seq=3, attempt=3),
        ev.StepCompleted(step_seq=3, result=raw),
        ev.StepScheduled(name="ship", args=codec.encode([])),  # 10
        ev.StepStarted(step_seq=10, attempt=1),
    ]
    record = filled.get_workflow("p")
    assert record is not None
    entries = [LogEntry(seq, T0 + 8, e) for seq, e in enumerate(steps, start=record.last_seq + 1)]
    assert filled.append([Append("p", record.fence, entries)]) == [True]
    asked = ["p", "c1", "nobody", *(f"x{i}" for i in range(600)), "p"]  # past one statement
    assert filled.step_counts(asked) == {"p": StepCounts(steps=2, retries=2)}
    assert filled.step_counts([]) == {}
