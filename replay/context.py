"""Which workflow instance is running right now, if any.

The instance sets ``_current`` while it runs workflow code; tasks created by that
code copy the context, so every step call, timer and marker finds its instance.
Code outside any workflow sees ``None``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Coroutine
from typing import Any, Protocol

import msgspec


class RunningCode(Protocol):
    """What a step or workflow definition asks of the instance whose code calls it
    (``WorkflowInstance`` in replay/instance.py; ``current_instance()`` there gives
    the instance itself, with the rest of its methods)."""

    def call_step(
        self, step: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]: ...

    def start_child(
        self, workflow: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]: ...


_current: contextvars.ContextVar[RunningCode | None] = contextvars.ContextVar(
    "duralog_workflow_instance", default=None
)


def running_code() -> RunningCode | None:
    """The instance whose code is running in this context, or None."""
    return _current.get()


#: ``running_code`` without the Python call around the context variable (what every
#: step call asks first).
running_code_get = _current.get


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
