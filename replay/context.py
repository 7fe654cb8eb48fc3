"""Which workflow instance is running right now, if any.

The instance sets ``_current`` while it runs workflow code; tasks created by that
code copy the context, so every step call, timer and marker finds its instance.
Code outside any workflow sees ``None``.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from .instance import WorkflowInstance

_current: contextvars.ContextVar[WorkflowInstance | None] = contextvars.ContextVar(
    "duralog_workflow_instance", default=None
)


def current_instance() -> WorkflowInstance | None:
    """The instance whose code is running in this context, or None."""
    return _current.get()


class WorkflowInfo(msgspec.Struct, frozen=True):
    """What a workflow can know about itself (``duralog.workflow_info()``): its id and
    name, when it started, whether it is replaying, which run of the id it is (1, then
    one more per ``continue_as_new``) and that run's random ``run_id``."""

    workflow_id: str
    name: str
    started_at: float
    is_replaying: bool
    run: int = 1
    run_id: str = ""
