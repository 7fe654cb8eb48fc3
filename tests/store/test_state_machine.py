"""The workflow state machine: one table, enforced by the store."""

from __future__ import annotations

import msgspec
import pytest

import duralog
from duralog.store import events as ev
from duralog.store.base import (
    TRANSITIONS,
    Append,
    NewWorkflow,
    WorkflowStatus,
    check_transition,
)
from duralog.store.events import LogEntry
from duralog.store.sqlite import SQLiteStore

S = WorkflowStatus
NULL = msgspec.Raw(b"null")


def test_every_status_has_a_row_and_terminal_ones_lead_nowhere() -> None:
    assert set(TRANSITIONS) == set(S)
    for status in S:
        assert (TRANSITIONS[status] == frozenset()) == status.is_terminal


@pytest.mark.parametrize(
    ("current", "new"),
    [(a, b) for a in S for b in S if a is not b and b not in TRANSITIONS[a]],
)
def test_illegal_transitions_are_refused_with_a_clear_error(
    current: WorkflowStatus, new: WorkflowStatus
) -> None:
    with pytest.raises(duralog.IllegalTransition) as info:
        check_transition("wf-1", current, new)
    assert f"from {current.value} to {new.value}" in str(info.value)
    assert "'wf-1'" in str(info.value)


def started(workflow_id: str = "wf") -> NewWorkflow:
    entry = LogEntry(1, 1.0, ev.WorkflowStarted(name="flow", args=msgspec.Raw(b"[]")))
    return NewWorkflow(workflow_id, "flow", entry, owner="me", lease_seconds=10**6)


def test_the_store_refuses_anything_after_the_terminal_event() -> None:
    store = SQLiteStore(":memory:")
    (fence,) = store.create_workflows([started()])
    assert fence is not None
    done = LogEntry(2, 2.0, ev.WorkflowCompleted(result=NULL))
    assert store.append([Append("wf", fence, [done], status=S.COMPLETED)]) == [True]
    late = LogEntry(3, 3.0, ev.TimerFired(timer_seq=2))
    assert store.append([Append("wf", fence, [late])]) == [False]
    assert store.append([Append("wf", fence, [], status=S.RUNNING)]) == [False]
    assert [e.seq for e in store.read_events("wf")] == [1, 2]
    assert store.get_workflow("wf").status is S.COMPLETED  # type: ignore[union-attr]


def test_one_refused_item_does_not_sink_its_group() -> None:
    store = SQLiteStore(":memory:")
    fence_a, fence_b = store.create_workflows([started("a"), started("b")])
    assert fence_a is not None and fence_b is not None
    store.append([Append("a", fence_a, [], status=S.FAILED)])
    results = store.append(
        [
            Append("a", fence_a, [], status=S.RUNNING),  # FAILED -> RUNNING: refused
            Append("b", fence_b, [LogEntry(2, 2.0, ev.TimerStarted(fire_at=5.0))]),
        ]
    )
    assert results == [False, True]
    assert store.get_workflow("b").last_seq == 2  # type: ignore[union-attr]
