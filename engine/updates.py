"""Sending an update from outside and waiting for the workflow's answer.

``check`` replays the workflow's log here and runs the update's validator on the
state it reaches: a rejected update is never sent. An update whose id was sent
before (``update_id=``, a retry) is not validated or sent again: the caller waits
for the first request's answer, which may come from an earlier run. ``WorkflowHandle.update`` then
sends the request as a signal (``replay/updates.py`` tells the whole path), and
``wait`` polls the log for the answer the workflow publishes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from duralog.errors import (
    ConfigurationError,
    PayloadError,
    RegistrationError,
    UpdateFailed,
    UpdateTimeout,
    WorkflowNotFound,
)
from duralog.replay.checker import replay_history
from duralog.replay.definitions import Workflow
from duralog.replay.updates import (
    SIGNAL_PREFIX,
    Answer,
    Rejected,
    Request,
    answer_key,
    validate,
)
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import EventStore, WorkflowStatus
from duralog.store.envelope import PayloadCodec


def check(
    store: EventStore,
    payload_codec: PayloadCodec | None,
    workflow_id: str,
    definition: Workflow[Any, Any] | None,
    name: str,
    payload: Any,
    update_id: str | None = None,
) -> tuple[Request, int, bool]:
    """The request for update ``name`` with ``payload``, the run it goes to, and
    whether to send it: True once the validator admitted it against the workflow's
    current state (``UpdateFailed``, rejected, otherwise, and nothing is sent); False
    when ``update_id`` was sent before, to the run returned, whose answer is the
    one to wait for (whatever the workflow's state now)."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"an update name must be a non-empty string, not {name!r}")
    if update_id is not None and (not isinstance(update_id, str) or not update_id):
        raise ConfigurationError(
            f"an update id must be a non-empty string, not {update_id!r} (or None for a new one)"
        )
    record = store.get_workflow(workflow_id)
    if record is None:
        raise WorkflowNotFound(workflow_id)
    if update_id is not None:
        run = _sent_before(store, payload_codec, workflow_id, update_id)
        if run is not None:
            return Request(id=update_id, payload=payload), run, False
    if record.status.is_terminal:
        raise UpdateFailed(
            workflow_id, name, f"the workflow is already {record.status.value}; nothing was sent"
        )
    if definition is None or definition.name != record.name:
        raise RegistrationError(
            f"cannot update workflow {workflow_id!r}: the code of workflow {record.name!r} is "
            "not registered in this process, and the update's validator runs here first; "
            "import the module that defines it (CLI: --app MODULE)"
        )
    try:  # as the workflow will see it: JSON
        sent = codec.decode(codec.encode(payload))
    except PayloadError as exc:
        raise PayloadError(f"cannot send update {name!r} to {workflow_id!r}: {exc}") from None
    entries = store.read_events(workflow_id)  # one read: a consistent snapshot
    codec.require_readable(workflow_id, entries, payload_codec)
    instance, state = replay_history(definition, entries, workflow_id, payload_codec=payload_codec)
    try:
        validate(instance, name, sent)
    except Rejected as exc:
        raise UpdateFailed(workflow_id, name, exc.reason, rejected=True) from None
    return Request(id=update_id or uuid.uuid4().hex, payload=payload), state.run, True


def wait(
    store: EventStore,
    payload_codec: PayloadCodec | None,
    workflow_id: str,
    name: str,
    request: Request,
    timeout: float | None,
    result_type: Any = Any,
    run: int = 1,
) -> Any:
    """The workflow's answer to ``request``, sent to its run ``run``: its handler's
    result, decoded as ``result_type``; ``UpdateFailed`` for any other answer or none
    (the run ended, or continued as new, without answering)."""
    key = answer_key(request.id)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.005
    archived = f"{workflow_id}~run{run}"  # where the run's events go if it continues as new
    while True:
        record = store.get_workflow(workflow_id)
        found = store.published(workflow_id, key)
        if found is not None:
            break
        if record is None:
            raise WorkflowNotFound(workflow_id)
        if store.get_workflow(archived) is not None:  # the run continued as new
            found = store.published(archived, key)  # (having answered?)
            if found is not None:
                break
            if _delivered(store.read_events(archived), payload_codec, request.id):
                raise UpdateFailed(
                    workflow_id, name, f"run {run} continued as new before answering it"
                )
            # Not delivered: it went back to the inbox, for the next run to answer.
        if record.status.is_terminal:
            raise UpdateFailed(
                workflow_id,
                name,
                f"the workflow ended ({record.status.value}) before answering it",
            )
        if record.status is WorkflowStatus.SUSPENDED:
            raise UpdateFailed(
                workflow_id,
                name,
                "the workflow is SUSPENDED (its code diverged from its history): the update "
                "is kept, and is answered once code that replays is deployed",
            )
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise UpdateTimeout(workflow_id, name, timeout or 0.0, record.status.value)
        time.sleep(pause if left is None else min(pause, left))
        pause = min(pause * 2, 0.25)
    answer = codec.decode(found, Answer, payload_codec=payload_codec)
    if answer.rejected is not None:
        raise UpdateFailed(workflow_id, name, answer.rejected, rejected=True)
    if answer.error is not None:
        raise UpdateFailed(workflow_id, name, f"its handler raised {answer.error}", answer.error)
    return codec.convert(answer.result, result_type, "the update's result")


def _sent_before(
    store: EventStore, payload_codec: PayloadCodec | None, workflow_id: str, update_id: str
) -> int | None:
    """The run update ``update_id`` was sent to, if it was: in the workflow's inbox,
    or delivered to its current run or to an earlier one (followed back through
    continue-as-new), answered or not; None when it was never sent."""
    in_inbox = any(
        item.kind == "signal" and _carries(item.name, item.payload, payload_codec, update_id)
        for item in store.inbox(workflow_id)
    )
    run_id: str | None = workflow_id
    while run_id is not None:
        entries = store.read_events(run_id)
        started = entries[0].event if entries else None
        if not isinstance(started, ev.WorkflowStarted):
            return None
        if in_inbox or _delivered(entries, payload_codec, update_id):
            return started.run
        run_id = started.previous_run
    return None


def _delivered(
    entries: Sequence[ev.LogEntry], payload_codec: PayloadCodec | None, update_id: str
) -> bool:
    """Whether update ``update_id`` reached the code of the run whose log is ``entries``."""
    return any(
        isinstance(entry.event, ev.SignalReceived)
        and _carries(entry.event.name, entry.event.payload, payload_codec, update_id)
        for entry in entries
    )


def _carries(
    signal: str | None,
    payload: msgspec.Raw | bytes | None,
    payload_codec: PayloadCodec | None,
    update_id: str,
) -> bool:
    """Whether a signal named ``signal`` carrying ``payload`` is update ``update_id``."""
    if signal is None or payload is None or not signal.startswith(SIGNAL_PREFIX):
        return False
    try:
        request: Request = codec.decode(payload, Request, payload_codec=payload_codec)
    except PayloadError:
        return False
    return request.id == update_id
