"""What a workflow's inbox items become in its log, and what a child tells its parent.

Other processes never write a workflow's log: they leave signals, cancel and
pause requests, and children's endings in its inbox, and the workflow's owner
moves them into the log. ``translate`` decides what each item becomes (pure: no
I/O), the execution appends and commits it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import msgspec

from duralog.errors import ErrorDetails
from duralog.replay.state import WorkflowState
from duralog.store import events as ev
from duralog.store.base import InboxItem, Notice, WorkflowStatus
from duralog.store.envelope import PayloadCodec, seal_error

log = logging.getLogger("duralog.engine")


class Moved:
    """What a batch of inbox items becomes: events to append, items to delete.

    A plain class, not a dataclass: ``dataclasses`` would cost every worker's start
    about half a millisecond, for one constructor."""

    __slots__ = ("cancel_reasons", "consumed", "events", "paused", "status")

    def __init__(self, paused: bool = False) -> None:
        self.events: list[ev.Event] = []
        self.consumed: list[int] = []
        self.cancel_reasons: list[str] = []
        self.status: WorkflowStatus | None = None  # PAUSED or RUNNING when a pause changed
        self.paused = paused  # whether the workflow is paused after the batch


def translate(
    workflow_id: str, items: Sequence[InboxItem], open_children: Mapping[int, str], paused: bool
) -> Moved:
    """The events ``items`` become, in order, for a workflow ``paused`` or not."""
    moved = Moved(paused=paused)
    for item in items:
        payload = msgspec.Raw(item.payload) if item.payload is not None else ev.NULL
        moved.consumed.append(item.id)
        if not _is_json(payload):  # written around the API: never log garbage
            log.warning(
                "dropping inbox item %d of %s: its payload is not JSON", item.id, workflow_id
            )
            continue
        if item.kind == "signal":
            moved.events.append(ev.SignalReceived(name=item.name or "", payload=payload))
        elif item.kind == "cancel":
            moved.events.append(ev.CancelRequested(reason=item.name or ""))
            moved.cancel_reasons.append(item.name or "")
        elif item.kind in ("child_completed", "child_failed"):
            seq_text, _, sender = (item.name or "0").partition(":")
            child_seq = int(seq_text)
            child_id = open_children.get(child_seq)
            if child_id is None or (sender and sender != child_id):
                # Not (or no longer) an open child of this run: a child of an earlier
                # run, or a repeat. It can never apply: it is consumed all the same.
                continue
            if item.kind == "child_completed":
                moved.events.append(ev.ChildCompleted(child_seq=child_seq, result=payload))
            else:
                error = msgspec.json.decode(payload, type=ErrorDetails)
                moved.events.append(ev.ChildFailed(child_seq=child_seq, error=error))
        elif item.kind == "pause" and not moved.paused:
            moved.events.append(ev.PauseRequested(reason=item.name or ""))
            moved.paused, moved.status = True, WorkflowStatus.PAUSED
        elif item.kind == "resume" and moved.paused:
            moved.events.append(ev.ResumeRequested())
            moved.paused, moved.status = False, WorkflowStatus.RUNNING
    return moved


def notice_to_parent(
    state: WorkflowState,
    workflow_id: str,
    terminal: ev.Event,
    payload_codec: PayloadCodec | None,
) -> tuple[Notice, ...]:
    """The inbox item that tells a child's parent how the child ended (none for a
    workflow without a parent), written in the same commit as the terminal event."""
    parent, seq = state.parent_id, state.parent_seq
    if parent is None or seq is None:
        return ()
    # "<seq>:<child id>": the parent may have continued as new since, and its new run
    # may have a child of its own at the same seq; the id tells them apart.
    name = f"{seq}:{workflow_id}"
    if isinstance(terminal, ev.WorkflowCompleted):
        return (Notice(parent, "child_completed", name, bytes(terminal.result)),)
    error = (
        terminal.error
        if isinstance(terminal, ev.WorkflowFailed | ev.WorkflowTerminated)
        else ErrorDetails("Cancelled", f"child workflow {workflow_id!r} was cancelled")
    )
    # The parent's inbox holds it until the parent logs it: sealed like the log.
    return (
        Notice(parent, "child_failed", name, msgspec.json.encode(seal_error(error, payload_codec))),
    )


def _is_json(payload: msgspec.Raw) -> bool:
    try:
        msgspec.json.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return False
    return True
