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
        raise ValueError(
            f"workflow {state.workflow_id!r}: event seq {seq} does not follow {state.last_seq}"
        )
    kind = type(e).__name__
    try:
        _apply(state, seq, at, kind, e)
    except KeyError as exc:
        raise ValueError(
            f"workflow {state.workflow_id!r}: {kind} at seq {seq} refers to seq {exc.args[0]},"
            " which is not a step, timer or child of this history"
        ) from None
    state.last_seq, state.last_at = seq, at
    return state


def _apply(state: WorkflowState, seq: int, at: float, kind: str, e: ev.Event) -> None:
    match e:
        case ev.StepStarted(step_seq=s, attempt=attempt):
            step = state.steps[s]
            step.status, step.attempt, step.started_at = STEP_RUNNING, attempt, at
            step.next_attempt_at = None
        case ev.StepCompleted(step_seq=s, result=result):
            step = state.steps[s]
            step.status, step.result, step.finished_at = STEP_COMPLETED, result, at
            step.error = None  # a failed attempt before it is history, not its state
            state.inputs.append(Input(seq, at, kind, s))
        case ev.StepRetrying(step_seq=s, attempt=attempt, error=error, next_attempt_at=nxt):
            step = state.steps[s]
            step.status, step.attempt, step.error = STEP_RETRYING, attempt, error
            step.next_attempt_at = nxt
        case ev.StepFailed(step_seq=s, attempt=attempt, error=error):
            step = state.steps[s]
            step.status, step.attempt, step.error, step.finished_at = (
                STEP_FAILED,
                max(attempt, step.attempt),
                error,
                at,
            )
            state.inputs.append(Input(seq, at, kind, s))
        case ev.StepScheduled(name=name, args=args, kwargs=kwargs):
            state.steps[seq] = StepView(
                seq=seq, name=name, args=args, kwargs=kwargs, scheduled_at=at
            )
            state.decisions.append(Decision(seq, kind, name))
        case ev.TimerStarted(fire_at=fire_at):
            state.timers[seq] = TimerView(seq=seq, fire_at=fire_at, started_at=at)
            state.decisions.append(Decision(seq, kind, ""))
        case ev.TimerFired(timer_seq=t):
            state.timers[t].fired_at = at
            state.inputs.append(Input(seq, at, kind, t))
        case ev.MarkerRecorded(marker=marker, value=value):
            state.markers[seq] = MarkerView(seq=seq, marker=marker, value=value)
            state.decisions.append(Decision(seq, kind, marker))
        case ev.SignalReceived(name=name, payload=payload):
            state.signals.append(SignalView(seq=seq, name=name, payload=payload, at=at))
            state.inputs.append(Input(seq, at, kind, len(state.signals) - 1))
        case ev.CancelRequested(reason=reason):
            state.cancel_reasons.append(reason)
            state.inputs.append(Input(seq, at, kind, len(state.cancel_reasons) - 1))
        case ev.StatePublished(key=key, value=value):
            state.published[key] = value
            state.decisions.append(Decision(seq, kind, key))
        case ev.PauseRequested():
            state.paused = True
        case ev.ResumeRequested():
            state.paused = False
        case ev.ChildStarted(name=name, child_id=child_id):
            state.children[seq] = child_id
            state.decisions.append(Decision(seq, kind, name))
        case ev.ChildCompleted(child_seq=c, result=result):
            state.children[c]  # KeyError for an unknown child
            state.child_results[c] = result
            state.inputs.append(Input(seq, at, kind, c))
        case ev.ChildFailed(child_seq=c, error=error):
            state.children[c]  # KeyError for an unknown child
            state.child_errors[c] = error
            state.inputs.append(Input(seq, at, kind, c))
        case ev.WorkflowStarted(
            name=name,
            args=args,
            kwargs=kwargs,
            parent_id=parent,
            timeout=timeout,
            parent_seq=parent_seq,
            run=run,
            previous_run=previous_run,
            format=format,
            run_id=run_id,
            forked_from=forked_from,
        ):
            state.name, state.args, state.kwargs, state.parent_id = name, args, kwargs, parent
            state.parent_seq, state.run, state.previous_run = parent_seq, run, previous_run
            state.format, state.run_id, state.forked_from = format, run_id, forked_from
            # A fork's first event keeps its source's time; the fork began at start_time.
            begun = e.start_time if forked_from is not None else at
            state.status, state.started_at = "RUNNING", begun
            # A delayed start's timeout counts from when it may start.
            due = begun if e.start_at is None else max(begun, e.start_at)
            state.deadline = due + timeout if timeout is not None else None
        case ev.WorkflowCompleted(result=result):
            state.status, state.result, state.finished_at = "COMPLETED", result, at
            state.decisions.append(Decision(seq, kind, ""))
        case ev.WorkflowFailed(error=error):
            state.status, state.error, state.finished_at = "FAILED", error, at
            state.decisions.append(Decision(seq, kind, ""))
        case ev.WorkflowCancelled():
            state.status, state.finished_at = "CANCELLED", at
            state.decisions.append(Decision(seq, kind, ""))
        case ev.WorkflowTerminated(error=error):
            # Not a decision: the code never made it, and replay compares none after it.
            state.status, state.error, state.finished_at = "FAILED", error, at
            state.terminated = True
        case ev.ContinuedAsNew(args=args, kwargs=kwargs):
            state.status, state.finished_at = "CONTINUED", at
            state.next_args, state.next_kwargs = args, kwargs
            state.decisions.append(Decision(seq, kind, ""))
        case ev.StreamWritten(key=key) | ev.StreamClosed(key=key):
            # The values stay in the log, for readers: the state keeps none of them.
            state.decisions.append(Decision(seq, kind, key))
        case ev.StepStreamed(step_seq=s):
            state.steps[s]  # KeyError for an unknown step; a step's output, not a decision


def fold_all(workflow_id: str, entries: list[LogEntry]) -> WorkflowState:
    """The state after every entry, from scratch."""
    state = new_state(workflow_id)
    for entry in entries:
        fold(state, entry)
    return state


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
