"""Replay a recorded history against workflow code, without running any step.

This is how a code change is checked before it is deployed, and how a test
pins a golden history: the code must make exactly the recorded decisions, in
order, given the recorded inputs; otherwise ``NondeterminismError`` says where.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from duralog.store.events import LogEntry

from .definitions import Workflow
from .instance import WorkflowInstance
from .state import WorkflowState, fold_all


def replay_history(
    workflow: Workflow[Any, Any], entries: Sequence[LogEntry], workflow_id: str = "replay"
) -> tuple[WorkflowInstance, WorkflowState]:
    """Run ``workflow``'s code against ``entries``; raises ``NondeterminismError`` on a divergence.

    Returns the instance (``finished`` tells whether the code reached its end)
    and the folded state of the history.
    """
    state = fold_all(workflow_id, list(entries))
    instance = WorkflowInstance(workflow, workflow_id)
    instance.feed(state, state.last_seq + 1)
    return instance, state
