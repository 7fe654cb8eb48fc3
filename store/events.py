"""Every event of the log: frozen msgspec Structs in one tagged union.

An event's type name is its tag (the ``kind`` field of its JSON body, and the
``kind`` column of the ``events`` table). Payloads (inputs, results, marker
values) are ``msgspec.Raw``: bytes already encoded by the payload codec, embedded
as they are, so a payload is encoded exactly once and stays readable with
``json_extract``. ``NULL`` stands for "no payload".

Schema evolution follows msgspec's rules: a new field gets a default; a field of
a released event is never renamed, reordered or retyped; a new event is a new
class added to ``Event``. ``FORMAT_VERSION`` counts such changes.

Events whose ``step_seq``/``timer_seq``/... points at another event refer to the
seq of the decision that created the step, timer or child.
"""

from __future__ import annotations

import os
from typing import Any, TypeAlias

import msgspec

from duralog.errors import ErrorDetails

from .envelope import PayloadCodec, seal, seal_error

#: 1: the first format. 2: ``WorkflowStarted`` carries ``format`` and ``run_id``;
#: a step or child called in a run of format 2 is scheduled (gets its seq) when the
#: awaiting task first runs it, never at the call (format 1 scheduled it at the call,
#: and its histories replay that way). 3: ``WorkflowTerminated`` may end a run.
#: 4: streams (``StreamWritten``, ``StreamClosed``, ``StepStreamed``).
FORMAT_VERSION = 4
NULL = msgspec.Raw(b"null")


class BaseEvent(msgspec.Struct, frozen=True, tag=True, tag_field="kind", omit_defaults=True):
    """Common base of every event; the tag is the class name."""


class ForkOrigin(msgspec.Struct, frozen=True, kw_only=True):
    """Where a fork's history was copied from (``WorkflowStarted.forked_from``): the
    source workflow, its run (number and id) and the seq the fork starts at (the
    source's events before it were copied)."""

    workflow_id: str
    run: int
    run_id: str
    seq: int


class WorkflowStarted(BaseEvent, frozen=True, kw_only=True):
    """The workflow was created: seq 1 of every history."""

    name: str
    args: msgspec.Raw
    kwargs: msgspec.Raw = NULL
    parent_id: str | None = None
    code_version: str | None = None
    start_time: float = 0.0
    timeout: float | None = None
    parent_seq: int | None = None
    run: int = 1
    previous_run: str | None = None
    #: The event format the run was started with (absent, so 1, before version 2).
    format: int = 1
    #: Random and unique to this run (empty before format 2): idempotency keys
    #: include it, so no two runs (continue-as-new, fork, a reused id) share a key.
    run_id: str = ""
    #: Set on a fork (``handle.fork``, ``handle.restart``): its events after this one,
    #: up to ``forked_from.seq``, are copies of the source's.
    forked_from: ForkOrigin | None = None
    #: The W3C ``traceparent`` of the run's span when it was started with tracing on
    #: (``duralog.observe.otel``): a resumed run continues that trace.
    trace: str | None = None
    #: The queue it was put on, with its ``priority`` (lower first).
    queue: str | None = None
    priority: int = 0
    #: Unique on its queue among the workflows that have not ended (``start(dedup_id=)``).
    dedup_id: str | None = None
    #: Its partition of a partitioned queue, whose limits apply per partition.
    partition: str | None = None
    #: A delayed start: no worker takes it up before this time (UTC epoch seconds),
    #: and its ``timeout`` counts from then.
    start_at: float | None = None


class StepScheduled(BaseEvent, frozen=True, kw_only=True):
    """Decision: the workflow called a step. This event's seq is the step's seq."""

    name: str
    args: msgspec.Raw
    kwargs: msgspec.Raw = NULL


class StepStarted(BaseEvent, frozen=True, kw_only=True):
    """An attempt of the step began (bookkeeping; not seen by workflow code)."""

    step_seq: int
    attempt: int


class StepRetrying(BaseEvent, frozen=True, kw_only=True):
    """An attempt failed and the retry policy allows another at ``next_attempt_at``."""

    step_seq: int
    attempt: int
    error: ErrorDetails
    next_attempt_at: float


class StepCompleted(BaseEvent, frozen=True, kw_only=True):
    """Input: the step returned ``result``."""

    step_seq: int
    result: msgspec.Raw


class StepFailed(BaseEvent, frozen=True, kw_only=True):
    """Input: the step failed for good (no attempt left, or a non-retryable error)."""

    step_seq: int
    attempt: int
    error: ErrorDetails


class TimerStarted(BaseEvent, frozen=True, kw_only=True):
    """Decision: a durable timer (``duralog.sleep``, ``asyncio.sleep``, a timeout)."""

    fire_at: float


class TimerFired(BaseEvent, frozen=True, kw_only=True):
    """Input: the timer started at ``timer_seq`` fired."""

    timer_seq: int


class SignalReceived(BaseEvent, frozen=True, kw_only=True):
    """Input: a signal moved from the inbox into the log."""

    name: str
    payload: msgspec.Raw = NULL


class MarkerRecorded(BaseEvent, frozen=True, kw_only=True):
    """Decision: a recorded non-deterministic value (now, random, uuid, side_effect, patch)."""

    marker: str
    value: msgspec.Raw


class StatePublished(BaseEvent, frozen=True, kw_only=True):
    """Decision: the workflow published ``value`` under ``key`` (``duralog.publish``)."""

    key: str
    value: msgspec.Raw


class StreamWritten(BaseEvent, frozen=True, kw_only=True):
    """Decision: the workflow code appended ``value`` to its stream ``key``
    (``duralog.write_stream``)."""

    key: str
    value: msgspec.Raw


class StreamClosed(BaseEvent, frozen=True, kw_only=True):
    """Decision: the workflow code closed its stream ``key`` (``duralog.close_stream``)."""

    key: str


class StepStreamed(BaseEvent, frozen=True, kw_only=True):
    """Bookkeeping: attempt ``attempt`` of the step at ``step_seq`` appended ``value`` to
    the stream ``key`` (``duralog.write_stream`` in a step), or closed it (``closed``;
    ``value`` is then ``NULL``). Not a decision: replay never makes it again."""

    step_seq: int
    attempt: int
    key: str
    value: msgspec.Raw = NULL
    closed: bool = False


class PauseRequested(BaseEvent, frozen=True, kw_only=True):
    """Bookkeeping: the workflow was paused (no new step, no timer fires until resumed)."""

    reason: str = ""


class ResumeRequested(BaseEvent, frozen=True, kw_only=True):
    """Bookkeeping: a paused workflow was resumed."""


class ChildStarted(BaseEvent, frozen=True, kw_only=True):
    """Decision: the workflow started a child workflow."""

    child_id: str
    name: str
    args: msgspec.Raw
    kwargs: msgspec.Raw = NULL


class ChildCompleted(BaseEvent, frozen=True, kw_only=True):
    """Input: the child started at ``child_seq`` completed."""

    child_seq: int
    result: msgspec.Raw


class ChildFailed(BaseEvent, frozen=True, kw_only=True):
    """Input: the child started at ``child_seq`` failed."""

    child_seq: int
    error: ErrorDetails


#: The reason of the ``CancelRequested`` a worker appends when a workflow's timeout expires.
TIMEOUT_REASON = "workflow timeout"
#: The reason of the ``CancelRequested`` that ends a run at once, without what its code
#: or its children still had to do: appended when a cleanup grace period is over (a
#: timed-out run's, or a cancelled parent's wait for its children), and sent to the
#: children of a run ended that way.
GRACE_REASON = "cleanup grace period over"


class CancelRequested(BaseEvent, frozen=True, kw_only=True):
    """Input: someone asked the workflow to cancel (or its timeout expired)."""

    reason: str = ""


class WorkflowCompleted(BaseEvent, frozen=True, kw_only=True):
    """Terminal decision: the workflow function returned ``result``."""

    result: msgspec.Raw


class WorkflowFailed(BaseEvent, frozen=True, kw_only=True):
    """Terminal decision: the workflow function raised."""

    error: ErrorDetails


class WorkflowCancelled(BaseEvent, frozen=True, kw_only=True):
    """Terminal decision: the workflow ended by cancellation."""

    reason: str = ""


class WorkflowTerminated(BaseEvent, frozen=True, kw_only=True):
    """Terminal input, not a decision: someone ended the workflow at once (``terminate``),
    without running any more of its code. It ends the run ``FAILED`` with ``error``
    (type ``Terminated``). Replay compares the code's decisions up to it, and none after."""

    error: ErrorDetails


class ContinuedAsNew(BaseEvent, frozen=True, kw_only=True):
    """Terminal decision: the run ended and a new run starts with ``args``."""

    args: msgspec.Raw
    kwargs: msgspec.Raw = NULL


Event: TypeAlias = (
    WorkflowStarted
    | StepScheduled
    | StepStarted
    | StepRetrying
    | StepCompleted
    | StepFailed
    | TimerStarted
    | TimerFired
    | SignalReceived
    | MarkerRecorded
    | ChildStarted
    | ChildCompleted
    | ChildFailed
    | CancelRequested
    | WorkflowCompleted
    | WorkflowFailed
    | WorkflowCancelled
    | ContinuedAsNew
    | StatePublished
    | PauseRequested
    | ResumeRequested
    | WorkflowTerminated
    | StreamWritten
    | StreamClosed
    | StepStreamed
)

#: Events made by workflow code; replay matches them one by one.
DECISIONS: tuple[type[BaseEvent], ...] = (
    StepScheduled,
    TimerStarted,
    MarkerRecorded,
    StatePublished,
    StreamWritten,
    StreamClosed,
    ChildStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowCancelled,
    ContinuedAsNew,
)
TERMINAL: tuple[type[BaseEvent], ...] = (
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowCancelled,
    ContinuedAsNew,
    WorkflowTerminated,
)
TERMINAL_KINDS: frozenset[str] = frozenset(cls.__name__ for cls in TERMINAL)
EVENT_KINDS: frozenset[str] = frozenset(cls.__name__ for cls in Event.__args__)


class LogEntry(msgspec.Struct, frozen=True):
    """One event as the log holds it: its seq, its commit time (UTC epoch seconds)."""

    seq: int
    at: float
    event: Event

    @property
    def kind(self) -> str:
        """The event's type name, e.g. ``"StepCompleted"``."""
        return type(self.event).__name__


def started_entry(at: float, **fields: Any) -> LogEntry:
    """Seq 1 of a new run: its ``WorkflowStarted`` event, started at ``at``, in the
    current format and with a fresh ``run_id``."""
    fields.setdefault("format", FORMAT_VERSION)
    fields.setdefault("run_id", new_run_id())
    return LogEntry(1, at, WorkflowStarted(start_time=at, **fields))


def new_run_id() -> str:
    """A random run id: 16 hex digits (what ``secrets.token_hex(8)`` gives, without
    loading ``secrets``, whose ``random`` and ``hmac`` cost every process ~2 ms)."""
    return os.urandom(8).hex()


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


_DURALOG_REASONS = frozenset({TIMEOUT_REASON, GRACE_REASON})


def seal_event(event: Event, payload_codec: PayloadCodec | None) -> Event:
    """``event`` with the texts derived from user data sealed by the payload codec:
    an error's message and traceback, a cancel or pause reason (``store/envelope.py``).

    Payloads are sealed when they are encoded; these texts are sealed here, where
    events become bytes for the store, so no path that writes an event can forget
    them. Without a codec, and for a text already sealed, nothing changes. The
    reasons duralog itself records (``TIMEOUT_REASON``, ``GRACE_REASON``) stay
    readable: the engine and replay recognise them.
    """
    used = payload_codec
    if used is None:
        return event
    error = getattr(event, "error", None)
    if isinstance(error, ErrorDetails):
        sealed = seal_error(error, used)
        return event if sealed is error else msgspec.structs.replace(event, error=sealed)
    reason = getattr(event, "reason", None)
    if isinstance(reason, str) and reason not in _DURALOG_REASONS:
        sealed_reason = seal(reason, used)
        return (
            event
            if sealed_reason is reason
            else msgspec.structs.replace(event, reason=sealed_reason)
        )
    return event


def encode_event(event: Event, payload_codec: PayloadCodec | None) -> bytes:
    """The JSON body of ``event`` as the store keeps it (its texts sealed by
    ``payload_codec``, see ``seal_event``; None writes the event as it is)."""
    return _encoder.encode(event if payload_codec is None else seal_event(event, payload_codec))


def decode_event(body: bytes | str) -> Event:
    """Decode one event body; raises ``msgspec.DecodeError`` / ``ValidationError``."""
    event: Event = _decoder.decode(body)
    return event
