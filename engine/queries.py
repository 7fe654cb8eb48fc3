"""Answering a query from outside: read the workflow's log, replay it here, ask.

A query needs no worker and leaves no trace: the asking process reads the log in
one statement (a consistent prefix of whole commits, whatever a worker appends
meanwhile), replays the workflow's code against it (``replay.checker.query_history``)
and calls the handler the code registered. Nothing is written.
"""

from __future__ import annotations

from typing import Any

from duralog.errors import ConfigurationError, PayloadError, RegistrationError, WorkflowNotFound
from duralog.replay.checker import query_history
from duralog.replay.definitions import Workflow
from duralog.store import codec
from duralog.store.base import EventStore
from duralog.store.envelope import PayloadCodec


def ask(
    store: EventStore,
    payload_codec: PayloadCodec | None,
    workflow_id: str,
    definition: Workflow[Any, Any] | None,
    name: str,
    args: tuple[Any, ...],
    result_type: Any = Any,
) -> Any:
    """Query ``name`` of workflow ``workflow_id`` with ``args``; its decoded result."""
    record = store.get_workflow(workflow_id)
    if record is None:
        raise WorkflowNotFound(workflow_id)
    if definition is None or definition.name != record.name:
        raise RegistrationError(
            f"cannot query workflow {workflow_id!r}: the code of workflow {record.name!r} is "
            "not registered in this process, and a query replays it; import the module that "
            "defines it (CLI: --app MODULE)"
        )
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a query name must be a non-empty string, not {name!r}")
    try:
        encoded, _ = codec.encode_call(args, {})
    except PayloadError as exc:
        raise PayloadError(
            f"cannot send query {name!r} to workflow {workflow_id!r}: {exc}"
        ) from None
    entries = store.read_events(workflow_id)  # one read: a consistent snapshot
    if not entries:  # deleted since the record was read
        raise WorkflowNotFound(workflow_id)
    found = query_history(definition, entries, name, encoded, workflow_id, payload_codec)
    return codec.decode(found, result_type)
