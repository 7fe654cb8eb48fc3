"""Every store keeps steps' heartbeat details the same way: one row per step, written
only under the workflow's current fence, gone with the step, the run or the workflow.

Runs against a SQLite file, SQLite in memory and PostgreSQL (see ``conftest.py``).
"""

from __future__ import annotations

from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import Append, EventStore, HeartbeatRecord, NewWorkflow, WorkflowStatus
from duralog.store.events import LogEntry

T0 = 1_700_000_000.0


def started(store: EventStore, workflow_id: str) -> int:
    """Create a workflow owned by worker ``w1``; its fence."""
    first = LogEntry(1, T0, ev.WorkflowStarted(name="imports", args=codec.encode([]), run_id="r1"))
    item = NewWorkflow(workflow_id, "imports", first, owner="w1", lease_seconds=30)
    fence = store.create_workflows([item])[0]
    assert fence is not None
    return fence


def beat(workflow_id: str, seq: int, details: object, attempt: int = 1) -> HeartbeatRecord:
    return HeartbeatRecord(workflow_id, seq, "r1", attempt, bytes(codec.encode(details)), T0 + seq)


def test_details_are_kept_per_step_and_replaced(store: EventStore) -> None:
    fence = started(store, "imp")
    assert store.get_heartbeat("imp", 2) is None
    assert store.put_heartbeat(beat("imp", 2, {"offset": 10}), fence)
    assert store.put_heartbeat(beat("imp", 3, "other step"), fence)
    assert store.put_heartbeat(beat("imp", 2, {"offset": 20}, attempt=2), fence)
    found = store.get_heartbeat("imp", 2)
    assert found == beat("imp", 2, {"offset": 20}, attempt=2)
    assert codec.decode(found.details) == {"offset": 20}
    assert store.count_rows("heartbeats") == 2
    assert store.delete_heartbeats("imp", 2) == 1
    assert store.get_heartbeat("imp", 2) is None
    assert store.get_heartbeat("imp", 3) is not None
    assert store.delete_heartbeats("imp") == 1
    assert store.count_rows("heartbeats") == 0


def test_a_stale_fence_writes_nothing(store: EventStore) -> None:
    fence = started(store, "imp")
    assert store.put_heartbeat(beat("imp", 2, 1), fence)
    assert not store.put_heartbeat(beat("imp", 2, 2), fence + 1)
    assert not store.put_heartbeat(beat("nobody", 2, 2), 1)
    # Another worker takes the workflow over (the lease was released): the fence moves.
    store.release("w1", "imp", fence)
    claims = store.claim("w2", T0 + 100, 30, [WorkflowStatus.RUNNING])
    assert [c.workflow_id for c in claims] == ["imp"]
    assert not store.put_heartbeat(beat("imp", 2, 3), fence)
    assert codec.decode(store.get_heartbeat("imp", 2).details) == 1  # type: ignore[union-attr]
    assert store.put_heartbeat(beat("imp", 2, 4), claims[0].fence)


def test_details_go_with_their_workflow_and_their_run(store: EventStore) -> None:
    fence = started(store, "loop")
    assert store.put_heartbeat(beat("loop", 2, 1), fence)
    end = LogEntry(2, T0 + 5, ev.ContinuedAsNew(args=codec.encode([2])))
    run2 = LogEntry(1, T0 + 6, ev.WorkflowStarted(name="imports", args=codec.encode([]), run=2))
    assert store.continue_as_new(Append("loop", fence, [end]), "loop~run1", run2)
    assert store.get_heartbeat("loop", 2) is None  # seq 2 of the next run is another step

    fence = started(store, "done")
    assert store.put_heartbeat(beat("done", 2, 1), fence)
    finished = LogEntry(2, T0 + 9, ev.WorkflowCompleted(result=codec.encode("ok")))
    assert store.append([Append("done", fence, [finished], status=WorkflowStatus.COMPLETED)])
    assert store.delete_workflow("done") is not None
    assert store.get_heartbeat("done", 2) is None

    fence = started(store, "old")
    assert store.put_heartbeat(beat("old", 2, 1), fence)
    finished = LogEntry(2, T0 + 9, ev.WorkflowCompleted(result=codec.encode("ok")))
    assert store.append([Append("old", fence, [finished], status=WorkflowStatus.COMPLETED)])
    assert [r.id for r in store.prune(finished_before=T0 + 10**9, dry_run=False)] == [
        "loop~run1",
        "old",
    ]
    assert store.count_rows("heartbeats") == 0
