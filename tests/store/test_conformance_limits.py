"""Every store reads a row limit the same way: None is every row, 0 none, a negative
limit a ``ValueError`` (never all rows on one database and none on another).

Each test runs against a SQLite file, SQLite in memory and PostgreSQL (``conftest.py``).
"""

from __future__ import annotations

import pytest

from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import MAX_ROWS, EventStore, NewWorkflow, QueueLimits, WorkflowStatus
from duralog.store.events import LogEntry
from duralog.store.records import limit_value

T0 = 1_700_000_000.0
ACTIVE = (WorkflowStatus.PENDING, WorkflowStatus.RUNNING)


def create(store: EventStore, count: int, queue: str | None = None) -> list[str]:
    ids = [f"{queue or 'w'}{i}" for i in range(count)]
    store.create_workflows(
        [
            NewWorkflow(
                wid,
                "job",
                LogEntry(1, T0 + i, ev.WorkflowStarted(name="job", args=codec.encode([]))),
                queue=queue,
            )
            for i, wid in enumerate(ids)
        ]
    )
    return ids


def test_the_one_limit_rule() -> None:
    assert limit_value(None) == MAX_ROWS
    assert limit_value(0) == 0
    assert limit_value(7) == 7
    assert limit_value(2**80) == MAX_ROWS
    with pytest.raises(ValueError, match="-1"):
        limit_value(-1)


def test_list_limits(store: EventStore) -> None:
    create(store, 3)
    assert len(store.list_workflows()) == 3
    assert len(store.list_workflows(limit=None)) == 3
    assert store.list_workflows(limit=0) == []
    assert [r.id for r in store.list_workflows(limit=2)] == ["w2", "w1"]
    assert len(store.list_workflows(limit=2**80)) == 3
    for negative in (-1, -(2**80)):
        with pytest.raises(ValueError, match="limit"):
            store.list_workflows(limit=negative)


def test_claim_limits(store: EventStore) -> None:
    create(store, 3)
    assert store.claim("w1", T0, 30, ACTIVE, limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        store.claim("w1", T0, 30, ACTIVE, limit=-1)
    assert [c.workflow_id for c in store.claim("w1", T0, 30, ACTIVE, limit=2)] == ["w0", "w1"]
    assert [c.workflow_id for c in store.claim("w2", T0, 30, ACTIVE, limit=2**80)] == ["w2"]


def test_queue_claim_limits(store: EventStore) -> None:
    create(store, 3, queue="q")
    limits = QueueLimits("q")
    assert store.claim_queued("w1", T0, 30, limits, limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        store.claim_queued("w1", T0, 30, limits, limit=-1)
    assert [c.workflow_id for c in store.claim_queued("w1", T0, 30, limits, limit=1)] == ["q0"]
    taken = store.claim_queued("w1", T0, 30, limits, limit=None)
    assert [c.workflow_id for c in taken] == ["q1", "q2"]


def test_export_limits(store: EventStore) -> None:
    create(store, 3)
    assert store.export_rows("workflows", limit=0) == []
    assert len(store.export_rows("workflows", limit=2)) == 2
    assert len(store.export_rows("workflows", limit=2**80)) == 3
    with pytest.raises(ValueError, match="limit"):
        store.export_rows("workflows", limit=-1)
