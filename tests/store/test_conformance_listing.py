"""Every store reads its index alike for operators: ``find_workflows``, ``count_workflows``,
``queue_counts`` and ``delete_workflow`` (``ListingStore``).

Each test runs against a SQLite file, SQLite in memory and PostgreSQL (see
``conftest.py``); the PostgreSQL cases are skipped when no server is reachable.
"""

from __future__ import annotations

import msgspec
import pytest

from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import Append, EventStore, NewWorkflow, WorkflowQuery, WorkflowStatus
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
