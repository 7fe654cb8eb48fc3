"""Queries: read-only questions a workflow's code answers about its own state.

Workflow code registers a handler (``duralog.on_query("progress", fn)``); from
outside, ``handle.query("progress")`` rebuilds the workflow by replaying its log in
the asking process, then calls the handler on the rebuilt code's state. Nothing is
recorded and nothing runs but the workflow's code: no step, no worker involved.

``QueryHandlers`` keeps one run's handlers and guards the instance while one
answers: whatever would act (call a step or a child, sleep, wait for a signal,
publish, record a value, continue as new) is refused, and the query fails even if
the handler caught the refusal. ``answer`` calls a handler on a replayed instance;
``call_read_only`` is the guarded call itself, which update validators go through too.
"""

from __future__ import annotations

import asyncio
import inspect
from asyncio import events as asyncio_events
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from duralog.errors import (
    ConfigurationError,
    ErrorDetails,
    PayloadError,
    QueryFailed,
    WorkflowSandboxError,
)
from duralog.store import codec
from duralog.store import events as ev

from .context import RunningCode, _current
from .decisions import ContinueAsNew
from .definitions import Workflow, _convert_call, _signature_types
from .failures import details_of
from .loop import WorkflowLoop


class QueryHandlers:
    """The query handlers one run's code registered, by name, and the guard that
    keeps a query from acting.

    Args:
        workflow_id: the run's id (named in the errors).
    """

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self._handlers: dict[str, Callable[..., Any]] = {}
        #: What runs read-only now, if anything does: ``"query 'progress'"``, or the
        #: validator of an update.
        self.answering: str | None = None
        #: What the handler tried that a query may not do (the first such thing).
        self.refused: str | None = None

    def register(self, name: str, handler: Callable[..., Any]) -> None:
        """Answer query ``name`` with ``handler`` (a later registration replaces it)."""
        if not isinstance(name, str) or not name:
            raise ConfigurationError(
                f"workflow {self.workflow_id!r}: a query name must be a non-empty string, "
                f"not {name!r}"
            )
        if not callable(handler):
            raise ConfigurationError(
                f"workflow {self.workflow_id!r}: the handler of query {name!r} must be a "
                f"function, not {handler!r}"
            )
        if self.answering is not None:
            self.refuse(f"register query {name!r}")
        self._handlers[name] = handler

    def names(self) -> list[str]:
        """The registered query names, sorted."""
        return sorted(self._handlers)

    def get(self, name: str) -> Callable[..., Any] | None:
        """The handler of query ``name``, if the code registered one."""
        return self._handlers.get(name)

    def refuse(self, what: str) -> None:
        """Raise ``WorkflowSandboxError`` if a query is being answered: it may not ``what``
        (and the query fails, whatever the handler does with the error)."""
        if self.answering is None:
            return
        if self.refused is None:
            self.refused = what
        reader, workflow_id = self.answering, self.workflow_id
        raise WorkflowSandboxError(
            f"{reader} of workflow {workflow_id!r} cannot {what}: it may only read the "
            "workflow's state"
        )


_ONLY_READS = (
    "a query only reads the workflow's state; change the workflow with a signal or an update"
)


class Replayed(RunningCode, Protocol):
    """What answering a query uses of a replayed ``WorkflowInstance`` (which runs the
    handler as its own code)."""

    workflow: Workflow[Any, Any]
    workflow_id: str
    loop: WorkflowLoop
    queries: QueryHandlers


def answer(instance: Replayed, name: str, args: msgspec.Raw) -> msgspec.Raw:
    """Call query ``name`` of the replayed ``instance`` with ``args`` (an encoded JSON
    array); return its result, encoded.

    Raises ``QueryFailed`` when the code registered no such query, the arguments do
    not fit the handler, the handler raised, tried to act, or returned something
    that cannot be encoded.
    """
    queries = instance.queries
    handler = queries.get(name)
    workflow_id = instance.workflow_id
    if handler is None:
        known = ", ".join(queries.names()) or "none"
        raise QueryFailed(
            workflow_id,
            name,
            f"workflow {instance.workflow.name!r} registers no query {name!r} (registered: "
            f"{known}); its code registers them with duralog.on_query(name, fn)",
        )
    try:
        decoded = _arguments(handler, args)
    except (PayloadError, TypeError) as exc:
        raise QueryFailed(
            workflow_id, name, f"the arguments do not fit its handler: {exc}"
        ) from None
    value, failure = call_read_only(instance, f"query {name!r}", handler, decoded)
    if queries.refused is not None:
        raise QueryFailed(
            workflow_id, name, f"its handler tried to {queries.refused}: {_ONLY_READS}"
        )
    if failure is not None:
        raise QueryFailed(workflow_id, name, f"its handler raised {failure}", failure)
    try:
        return codec.encode(value)
    except PayloadError as exc:
        raise QueryFailed(workflow_id, name, f"its result cannot be encoded: {exc}") from None


def call_read_only(
    instance: Replayed, label: str, handler: Callable[..., Any], args: list[Any]
) -> tuple[Any, ErrorDetails | None]:
    """Run ``handler`` inside the instance (its context and loop), refusing whatever
    would act (``instance.queries.refused`` then says what it tried); return its value
    or what it raised. ``label`` names it in the errors (``"query 'progress'"``)."""
    queries = instance.queries
    queries.answering, queries.refused = label, None
    token = _current.set(instance)
    outer_loop = asyncio_events._get_running_loop()
    asyncio_events._set_running_loop(instance.loop)
    try:
        value = handler(*args)
        if inspect.isawaitable(value):  # an async handler: it may compute, never wait
            task: asyncio.Task[Any] = instance.loop.create_task(_awaited(value), name=label)
            instance.loop.run_until_idle()
            if not task.done():
                task.cancel()
                instance.loop.run_until_idle()
                queries.refuse("wait for something not ready")
            value = task.result()
        return value, None
    except WorkflowSandboxError as exc:
        if queries.refused is not None:
            return None, None
        return None, details_of(exc, with_traceback=True)
    except ContinueAsNew:
        queries.refused = queries.refused or "continue the workflow as new"
        return None, None
    except (Exception, SystemExit, asyncio.CancelledError) as exc:  # the handler's own
        return None, details_of(exc, with_traceback=True)
    finally:
        queries.answering = None
        asyncio_events._set_running_loop(outer_loop)
        _current.reset(token)


def _arguments(handler: Callable[..., Any], args: msgspec.Raw) -> list[Any]:
    """``args`` decoded for ``handler``: typed by its annotations, and refused
    (``TypeError``) when its signature cannot take them."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # no signature to read (some builtins): as given
        given: Any = codec.decode(args)
        if not isinstance(given, list):
            raise PayloadError("the arguments must be a JSON array") from None
        return given
    params = _signature_types(handler)[1]
    decoded, named = _convert_call(params, args, ev.NULL, None)
    signature.bind(*decoded, **named)
    return decoded


async def _awaited(value: Any) -> Any:
    return await value
