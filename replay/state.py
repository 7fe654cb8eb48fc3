"""``fold``: the projection of a history into the state of a workflow, and snapshots of it.

``WorkflowState`` is everything the log says about one workflow at a given seq:
its status, each step with its attempts and result, timers, markers, signals,
and the ordered lists of *decisions* (what the code did) and *inputs* (what
happened to it) that drive replay. A workflow is always rebuilt from a state,
never from raw events, so a snapshot plus the tail of the log and the whole log
are, by construction, the same thing to replay:

    fold(load(snapshot(N)), events[N+1..]) == fold(events)

``fold`` updates the state in place and returns it (a history of 10,000 events
must not copy 10,000 times); copy with ``load(snapshot(...))`` when needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec

from duralog.errors import ErrorDetails
from duralog.store import events as ev
from duralog.store.envelope import PayloadCodec, seal, seal_error
from duralog.store.events import NULL, LogEntry

STEP_SCHEDULED = "scheduled"
STEP_RUNNING = "running"
STEP_RETRYING = "retrying"
STEP_COMPLETED = "completed"
STEP_FAILED = "failed"


class StepView(msgspec.Struct, kw_only=True):
    """A step as the log tells it."""

    seq: int
    name: str
    args: msgspec.Raw
    kwargs: msgspec.Raw = NULL
    status: str = STEP_SCHEDULED
    attempt: int = 0
    scheduled_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    next_attempt_at: float | None = None
    result: msgspec.Raw = NULL
    error: ErrorDetails | None = None

    @property
    def done(self) -> bool:
        """True once the step completed or failed for good."""
        return self.status in (STEP_COMPLETED, STEP_FAILED)


class TimerView(msgspec.Struct, kw_only=True):
    """A durable timer: when it fires, and whether it did."""

    seq: int
    fire_at: float
    started_at: float
    fired_at: float | None = None


class MarkerView(msgspec.Struct, kw_only=True):
    """A recorded non-deterministic value."""

    seq: int
    marker: str
    value: msgspec.Raw


class SignalView(msgspec.Struct, kw_only=True):
    """A signal the workflow received."""

    seq: int
    name: str
    payload: msgspec.Raw
    at: float


class Decision(msgspec.Struct, array_like=True):
    """A recorded decision of the workflow code: its seq, event kind and name."""

    seq: int
    kind: str
    name: str

    def describe(self) -> str:
        """``"StepScheduled charge"``: how divergence reports name a decision."""
        return f"{self.kind} {self.name}".rstrip()


class Input(msgspec.Struct, array_like=True):
    """Something delivered to the workflow: its seq, time, kind and what it refers to.

    ``ref`` is the seq of the step, timer or child it resolves, or the index of the
    signal in ``WorkflowState.signals``.
    """

    seq: int
    at: float
    kind: str
    ref: int


class WorkflowState(msgspec.Struct, kw_only=True):
    """The fold of a workflow's history up to ``last_seq``."""

    workflow_id: str = ""
    name: str = ""
    args: msgspec.Raw = NULL
    kwargs: msgspec.Raw = NULL
    parent_id: str | None = None
    parent_seq: int | None = None
    run: int = 1
    previous_run: str | None = None
    format: int = 1
    run_id: str = ""
    forked_from: ev.ForkOrigin | None = None
    status: str = "PENDING"
    started_at: float = 0.0
    last_seq: int = 0
    last_at: float = 0.0
    steps: dict[int, StepView] = msgspec.field(default_factory=dict)
    timers: dict[int, TimerView] = msgspec.field(default_factory=dict)
    markers: dict[int, MarkerView] = msgspec.field(default_factory=dict)
    signals: list[SignalView] = msgspec.field(default_factory=list)
    decisions: list[Decision] = msgspec.field(default_factory=list)
    inputs: list[Input] = msgspec.field(default_factory=list)
    children: dict[int, str] = msgspec.field(default_factory=dict)
    child_results: dict[int, msgspec.Raw] = msgspec.field(default_factory=dict)
    child_errors: dict[int, ErrorDetails] = msgspec.field(default_factory=dict)
    cancel_reasons: list[str] = msgspec.field(default_factory=list)
    published: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict)
    paused: bool = False
    deadline: float | None = None
    result: msgspec.Raw = NULL
    error: ErrorDetails | None = None
    finished_at: float | None = None
    next_args: msgspec.Raw = NULL
    next_kwargs: msgspec.Raw = NULL
    #: Ended by ``terminate`` (a ``WorkflowTerminated`` event), not by its code.
    terminated: bool = False

    @property
    def never_ran(self) -> bool:
        """Whether it ended without running any code: cancelled while it waited on its
        queue, its one decision the ``WorkflowCancelled`` the cancel wrote."""
        return (
            self.status == "CANCELLED"
            and len(self.decisions) == 1
            and not self.inputs
            and not self.cancel_reasons
        )

    @property
    def cancel_requested(self) -> bool:
        """Whether anyone asked the workflow to cancel (or its timeout expired)."""
        return bool(self.cancel_reasons)

    def pending_steps(self) -> list[StepView]:
        """Steps scheduled but neither completed nor failed, in seq order."""
        return [s for s in self.steps.values() if not s.done]

    def open_children(self) -> dict[int, str]:
        """Children started and not yet finished, by the seq that started them."""
        return {
            seq: child_id
            for seq, child_id in self.children.items()
            if seq not in self.child_results and seq not in self.child_errors
        }

    def pending_timers(self) -> list[TimerView]:
        """Timers started but not fired, in seq order."""
        return [t for t in self.timers.values() if t.fired_at is None]


def new_state(workflow_id: str) -> WorkflowState:
    """The state before any event."""
    return WorkflowState(workflow_id=workflow_id)


def fold(state: WorkflowState, entry: LogEntry) -> WorkflowState:
    """Apply one event to ``state`` (in place) and return it.

    Raises ``ValueError`` when ``entry`` does not follow ``state.last_seq``.
    """
    seq, at, e = entry.seq, entry.at, entry.event
    if seq != state.last_seq + 1:
        raise _out_of_order(state, seq)
    try:
        _APPLY[type(e)](state, seq, at, e)
    except KeyError as exc:
        raise _unknown_ref(state, e, seq, exc) from None
    state.last_seq, state.last_at = seq, at
    return state


def fold_all(workflow_id: str, entries: list[LogEntry]) -> WorkflowState:
    """The state after every entry, from scratch."""
    state = new_state(workflow_id)
    apply, expected = _APPLY, 1
    for entry in entries:  # fold(), inlined: the loop of every replay and rebuild
        e = entry.event
        if entry.seq != expected:
            state.last_seq = expected - 1
            raise _out_of_order(state, entry.seq)
        try:
            apply[type(e)](state, expected, entry.at, e)
        except KeyError as exc:
            raise _unknown_ref(state, e, expected, exc) from None
        expected += 1
    if entries:
        state.last_seq, state.last_at = expected - 1, entries[-1].at
    return state


def _out_of_order(state: WorkflowState, seq: int) -> ValueError:
    return ValueError(
        f"workflow {state.workflow_id!r}: event seq {seq} does not follow {state.last_seq}"
    )


def _unknown_ref(state: WorkflowState, e: object, seq: int, exc: KeyError) -> ValueError:
    return ValueError(
        f"workflow {state.workflow_id!r}: {type(e).__name__} at seq {seq} refers to seq"
        f" {exc.args[0]}, which is not a step, timer or child of this history"
    )


# -- one function per event type (``_APPLY``): a dict lookup, not a chain of matches --
# Each takes (state, seq, at, event) and raises KeyError for a seq that is not a
# step, timer or child of the history.

Apply = Callable[[WorkflowState, int, float, Any], None]


def _step_started(state: WorkflowState, seq: int, at: float, e: ev.StepStarted) -> None:
    step = state.steps[e.step_seq]
    step.status, step.attempt, step.started_at = STEP_RUNNING, e.attempt, at
    step.next_attempt_at = None


def _step_completed(state: WorkflowState, seq: int, at: float, e: ev.StepCompleted) -> None:
    s = e.step_seq
    step = state.steps[s]
    step.status, step.result, step.finished_at = STEP_COMPLETED, e.result, at
    step.error = None  # a failed attempt before it is history, not its state
    state.inputs.append(Input(seq, at, "StepCompleted", s))


def _step_retrying(state: WorkflowState, seq: int, at: float, e: ev.StepRetrying) -> None:
    step = state.steps[e.step_seq]
    step.status, step.attempt, step.error = STEP_RETRYING, e.attempt, e.error
    step.next_attempt_at = e.next_attempt_at


def _step_failed(state: WorkflowState, seq: int, at: float, e: ev.StepFailed) -> None:
    s = e.step_seq
    step = state.steps[s]
    step.status, step.attempt, step.error, step.finished_at = (
        STEP_FAILED,
        max(e.attempt, step.attempt),
        e.error,
        at,
    )
    state.inputs.append(Input(seq, at, "StepFailed", s))


def _step_scheduled(state: WorkflowState, seq: int, at: float, e: ev.StepScheduled) -> None:
    name = e.name
    state.steps[seq] = StepView(seq=seq, name=name, args=e.args, kwargs=e.kwargs, scheduled_at=at)
    state.decisions.append(Decision(seq, "StepScheduled", name))


def _timer_started(state: WorkflowState, seq: int, at: float, e: ev.TimerStarted) -> None:
    state.timers[seq] = TimerView(seq=seq, fire_at=e.fire_at, started_at=at)
    state.decisions.append(Decision(seq, "TimerStarted", ""))


def _timer_fired(state: WorkflowState, seq: int, at: float, e: ev.TimerFired) -> None:
    t = e.timer_seq
    state.timers[t].fired_at = at
    state.inputs.append(Input(seq, at, "TimerFired", t))


def _marker_recorded(state: WorkflowState, seq: int, at: float, e: ev.MarkerRecorded) -> None:
    marker = e.marker
    state.markers[seq] = MarkerView(seq=seq, marker=marker, value=e.value)
    state.decisions.append(Decision(seq, "MarkerRecorded", marker))


def _signal_received(state: WorkflowState, seq: int, at: float, e: ev.SignalReceived) -> None:
    signals = state.signals
    signals.append(SignalView(seq=seq, name=e.name, payload=e.payload, at=at))
    state.inputs.append(Input(seq, at, "SignalReceived", len(signals) - 1))


def _cancel_requested(state: WorkflowState, seq: int, at: float, e: ev.CancelRequested) -> None:
    reasons = state.cancel_reasons
    reasons.append(e.reason)
    state.inputs.append(Input(seq, at, "CancelRequested", len(reasons) - 1))


def _state_published(state: WorkflowState, seq: int, at: float, e: ev.StatePublished) -> None:
    key = e.key
    state.published[key] = e.value
    state.decisions.append(Decision(seq, "StatePublished", key))


def _pause_requested(state: WorkflowState, seq: int, at: float, e: ev.PauseRequested) -> None:
    state.paused = True


def _resume_requested(state: WorkflowState, seq: int, at: float, e: ev.ResumeRequested) -> None:
    state.paused = False


def _child_started(state: WorkflowState, seq: int, at: float, e: ev.ChildStarted) -> None:
    state.children[seq] = e.child_id
    state.decisions.append(Decision(seq, "ChildStarted", e.name))


def _child_completed(state: WorkflowState, seq: int, at: float, e: ev.ChildCompleted) -> None:
    c = e.child_seq
    state.children[c]  # KeyError for an unknown child
    state.child_results[c] = e.result
    state.inputs.append(Input(seq, at, "ChildCompleted", c))


def _child_failed(state: WorkflowState, seq: int, at: float, e: ev.ChildFailed) -> None:
    c = e.child_seq
    state.children[c]  # KeyError for an unknown child
    state.child_errors[c] = e.error
    state.inputs.append(Input(seq, at, "ChildFailed", c))


def _workflow_started(state: WorkflowState, seq: int, at: float, e: ev.WorkflowStarted) -> None:
    state.name, state.args, state.kwargs, state.parent_id = e.name, e.args, e.kwargs, e.parent_id
    state.parent_seq, state.run, state.previous_run = e.parent_seq, e.run, e.previous_run
    forked_from = e.forked_from
    state.format, state.run_id, state.forked_from = e.format, e.run_id, forked_from
    # A fork's first event keeps its source's time; the fork began at start_time.
    begun = e.start_time if forked_from is not None else at
    state.status, state.started_at = "RUNNING", begun
    # A delayed start's timeout counts from when it may start.
    due = begun if e.start_at is None else max(begun, e.start_at)
    state.deadline = due + e.timeout if e.timeout is not None else None


def _workflow_completed(state: WorkflowState, seq: int, at: float, e: ev.WorkflowCompleted) -> None:
    state.status, state.result, state.finished_at = "COMPLETED", e.result, at
    state.decisions.append(Decision(seq, "WorkflowCompleted", ""))


def _workflow_failed(state: WorkflowState, seq: int, at: float, e: ev.WorkflowFailed) -> None:
    state.status, state.error, state.finished_at = "FAILED", e.error, at
    state.decisions.append(Decision(seq, "WorkflowFailed", ""))


def _workflow_cancelled(state: WorkflowState, seq: int, at: float, e: ev.WorkflowCancelled) -> None:
    state.status, state.finished_at = "CANCELLED", at
    state.decisions.append(Decision(seq, "WorkflowCancelled", ""))


def _workflow_terminated(
    state: WorkflowState, seq: int, at: float, e: ev.WorkflowTerminated
) -> None:
    # Not a decision: the code never made it, and replay compares none after it.
    state.status, state.error, state.finished_at = "FAILED", e.error, at
    state.terminated = True


def _continued_as_new(state: WorkflowState, seq: int, at: float, e: ev.ContinuedAsNew) -> None:
    state.status, state.finished_at = "CONTINUED", at
    state.next_args, state.next_kwargs = e.args, e.kwargs
    state.decisions.append(Decision(seq, "ContinuedAsNew", ""))


def _stream_written(state: WorkflowState, seq: int, at: float, e: ev.StreamWritten) -> None:
    # The values stay in the log, for readers: the state keeps none of them.
    state.decisions.append(Decision(seq, "StreamWritten", e.key))


def _stream_closed(state: WorkflowState, seq: int, at: float, e: ev.StreamClosed) -> None:
    state.decisions.append(Decision(seq, "StreamClosed", e.key))


def _step_streamed(state: WorkflowState, seq: int, at: float, e: ev.StepStreamed) -> None:
    state.steps[e.step_seq]  # KeyError for an unknown step; a step's output, not a decision


def _ignored(state: WorkflowState, seq: int, at: float, e: object) -> None:
    return None


class _Appliers(dict[type, Apply]):
    """Event type -> its function; a type not listed gets that of the type it derives
    from (as ``isinstance`` would match it), else nothing."""

    def __missing__(self, cls: type) -> Apply:
        for known, apply in list(self.items()):
            if issubclass(cls, known):
                self[cls] = apply
                return apply
        return _ignored


#: How each event type changes the state: every type of ``ev.Event`` is here.
_APPLY = _Appliers(
    {
        ev.StepStarted: _step_started,
        ev.StepCompleted: _step_completed,
        ev.StepRetrying: _step_retrying,
        ev.StepFailed: _step_failed,
        ev.StepScheduled: _step_scheduled,
        ev.TimerStarted: _timer_started,
        ev.TimerFired: _timer_fired,
        ev.MarkerRecorded: _marker_recorded,
        ev.SignalReceived: _signal_received,
        ev.CancelRequested: _cancel_requested,
        ev.StatePublished: _state_published,
        ev.PauseRequested: _pause_requested,
        ev.ResumeRequested: _resume_requested,
        ev.ChildStarted: _child_started,
        ev.ChildCompleted: _child_completed,
        ev.ChildFailed: _child_failed,
        ev.WorkflowStarted: _workflow_started,
        ev.WorkflowCompleted: _workflow_completed,
        ev.WorkflowFailed: _workflow_failed,
        ev.WorkflowCancelled: _workflow_cancelled,
        ev.WorkflowTerminated: _workflow_terminated,
        ev.ContinuedAsNew: _continued_as_new,
        ev.StreamWritten: _stream_written,
        ev.StreamClosed: _stream_closed,
        ev.StepStreamed: _step_streamed,
    }
)


_state_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(WorkflowState)


def dump_state(state: WorkflowState, payload_codec: PayloadCodec | None) -> tuple[bytes, str]:
    """Encode a state for a snapshot: its bytes and their checksum.

    A snapshot keeps what the log keeps: under a payload codec, error texts and
    cancel reasons are sealed in it as they are in the events (``ev.seal_event``),
    whether ``state`` holds them sealed (read back) or plain (folded live).
    """
    data = _state_encoder.encode(state)
    used = payload_codec
    if used is not None and _has_texts(state):
        sealed = _state_decoder.decode(data)
        _seal_texts(sealed, used)
        data = _state_encoder.encode(sealed)
    return data, checksum(data)


def _has_texts(state: WorkflowState) -> bool:
    return bool(
        state.error is not None
        or state.child_errors
        or any(state.cancel_reasons)
        or any(step.error is not None for step in state.steps.values())
    )


def _seal_texts(state: WorkflowState, used: PayloadCodec) -> None:
    if state.error is not None:
        state.error = seal_error(state.error, used)
    for seq, error in state.child_errors.items():
        state.child_errors[seq] = seal_error(error, used)
    state.cancel_reasons = [
        reason if reason == ev.TIMEOUT_REASON else seal(reason, used)
        for reason in state.cancel_reasons
    ]
    for step in state.steps.values():
        if step.error is not None:
            step.error = seal_error(step.error, used)


def load_state(data: bytes, expected_checksum: str) -> WorkflowState | None:
    """Decode a snapshot; None when its checksum or its body is wrong (a cache miss)."""
    if checksum(data) != expected_checksum:
        return None
    try:
        return _state_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def checksum(data: bytes) -> str:
    """The snapshot checksum (BLAKE2b, 128 bits, hex)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()
