"""The one error hierarchy of duralog; every layer raises from here.

    DuralogError
    ├── ConfigurationError        bad engine/store arguments, unknown options
    │   ├── ResourceMissing       a step needs a resource its engine does not provide
    │   ├── WorkflowConfigError   a workflow document is malformed or invalid (source, line, key)
    │   ├── DAGCycleError         a DAG's dependencies form a cycle
    │   └── MissingDependencyError  a DAG task depends on a task the DAG does not have
    ├── RegistrationError         a workflow or step name is unknown or registered twice
    ├── WorkflowNotFound          no workflow with that id
    ├── WorkflowIdInUse           the id belongs to a workflow of another name
    ├── DuplicateWorkflow         a live workflow on the queue holds the start's dedup id
    ├── WorkflowFailed            the workflow ended FAILED; ``cause`` holds the error
    ├── WorkflowSuspended         the workflow is SUSPENDED (its code diverged)
    ├── WorkflowTimeout           the cause recorded for a workflow past its timeout
    ├── ResultTimeout             ``handle.result(timeout=...)`` ran out (also a TimeoutError)
    ├── StreamTimeout             ``handle.read_stream(timeout=...)`` waited too long for a value
    ├── StepFailed                a step exhausted its retries or raised a non-retryable error
    ├── NondeterminismError       replayed code made a different decision than the history
    │   └── ForkDiverged          a fork was refused: the current code does not replay its copy
    ├── QueryFailed               a query could not be answered (no such query, its handler raised)
    │   └── QueryTimeout          ``handle.query(timeout=...)`` ran out (also a TimeoutError)
    ├── UpdateFailed              an update was rejected, its handler raised, or it got no answer
    │   └── UpdateTimeout         ``handle.update(timeout=...)`` ran out (also a TimeoutError)
    ├── PayloadError              a value could not be encoded or decoded
    ├── HistoryFileError          a history file is malformed; nothing was replayed
    ├── WorkflowSandboxError      workflow code tried real I/O or another forbidden operation
    ├── IllegalTransition         a status change the state machine forbids
    ├── LeaseLost                 the store refused an append (fencing, or the workflow ended)
    ├── CircuitOpen               a step's attempt failed fast: its circuit breaker is open
    ├── CompensationFailed        some compensations of a saga failed for good; the others ran
    └── StoreError                the store cannot be opened, read or written
        └── StoreDamaged          what it holds is damaged: the file, a row no duralog wrote
            └── LogDamaged        a workflow's log: a gap, a broken checksum chain, ...
                └── CorruptEventError   one event body cannot be decoded

Outside the tree, because no ``except Exception:`` in a step should swallow it:

    asyncio.CancelledError
    └── StepCancelled             ``duralog.heartbeat()`` in a step told to stop (its
                                  workflow was cancelled, its lease lost, its attempt
                                  abandoned)

Every error carries the fields a caller needs (``workflow_id``, ``seq``...) and a
message that says what happened, where, and what to do next. ``whole_number``
is the one check of a whole-number argument, and ``positive_seconds`` of a
duration, for every layer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import Literal, overload

import msgspec


class DuralogError(Exception):
    """Base class of every error duralog raises on purpose."""


class ConfigurationError(DuralogError):
    """An engine, store or decorator argument is invalid."""


class ResourceMissing(ConfigurationError):
    """A step needs a resource its engine does not provide (or cannot tell which)."""

    def __init__(self, message: str, *, step: str | None, resource: str) -> None:
        super().__init__(message)
        self.step = step
        self.resource = resource


class WorkflowConfigError(ConfigurationError):
    """A workflow document is malformed or invalid.

    Attributes:
        source: the file name (or the ``source`` given to ``parse_workflow``).
        line: the 1-based line of the offending key (or of the syntax error).
        key: the offending key as a path, e.g. ``"steps.fetch.retry.max_attempts"``;
            None for a syntax error.
        reason: what is wrong, without the location.
    """

    def __init__(self, source: str, line: int, key: str | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.key = key
        self.reason = reason
        where = f"{source}:{line}: " + (f"{key}: " if key else "")
        super().__init__(where + reason)


class DAGCycleError(ConfigurationError):
    """A DAG's dependencies form a cycle; ``cycle`` lists it (``("a", "b", "a")``)."""

    def __init__(self, dag: str, cycle: tuple[str, ...]) -> None:
        self.dag = dag
        self.cycle = cycle
        super().__init__(
            f"DAG {dag!r} has a dependency cycle: {' -> '.join(cycle)} (-> reads "
            "'depends on'); remove one of these dependencies"
        )


class MissingDependencyError(ConfigurationError):
    """A DAG task depends on a task the DAG does not have."""

    def __init__(self, dag: str, task: str, missing: str, known: Iterable[str]) -> None:
        self.dag = dag
        self.task = task
        self.missing = missing
        super().__init__(
            f"DAG {dag!r}: task {task!r} depends on {missing!r}, which is not a task of "
            f"this DAG (tasks: {', '.join(known)})"
        )


class RegistrationError(DuralogError):
    """A workflow or step name is unknown, or two functions claim the same name."""


class WorkflowNotFound(DuralogError):
    """No workflow with this id exists in the store."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"no workflow with id {workflow_id!r} in this store; "
            "check the id (`duralog list` shows them) and the --db path"
        )


class ErrorDetails(msgspec.Struct, frozen=True):
    """A recorded error: what the history keeps of an exception.

    Exceptions are never pickled; the log keeps the type name, the message and
    the formatted traceback, and this value carries them back.
    """

    type: str
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


class WorkflowIdInUse(DuralogError):
    """``start`` was given an id that belongs to a workflow of another name."""


class DuplicateWorkflow(DuralogError):
    """``start(..., dedup_id=...)`` was refused: a workflow on the same queue holds that
    dedup id and has not ended (it is PENDING, RUNNING, PAUSED or SUSPENDED).

    Attributes:
        queue: the queue's name.
        dedup_id: the dedup id asked for.
        workflow_id: the id of the workflow that holds it (None if it ended meanwhile).
    """

    def __init__(self, queue: str, dedup_id: str, workflow_id: str | None) -> None:
        self.queue = queue
        self.dedup_id = dedup_id
        self.workflow_id = workflow_id
        holder = f"workflow {workflow_id!r}" if workflow_id is not None else "another workflow"
        super().__init__(
            f"queue {queue!r} already has dedup id {dedup_id!r}: {holder} holds it until it "
            "ends; wait for it (or cancel it), or start with another dedup id"
        )


class WorkflowFailed(DuralogError):
    """The workflow ended in FAILED; ``cause`` describes the exception that ended it."""

    def __init__(self, workflow_id: str, cause: ErrorDetails) -> None:
        self.workflow_id = workflow_id
        self.cause = cause
        super().__init__(f"workflow {workflow_id!r} failed: {cause}")


class WorkflowTimeout(DuralogError):
    """Recorded as the cause of a workflow that ran past ``engine.start(..., timeout=)``."""


class WorkflowSuspended(DuralogError):
    """The workflow is SUSPENDED: its code no longer matches its history, or its log is
    damaged (``reason`` says which)."""

    def __init__(self, workflow_id: str, reason: str) -> None:
        self.workflow_id = workflow_id
        self.reason = reason
        if reason.startswith(DAMAGED_REASON):  # the reason says what to do
            super().__init__(f"workflow {workflow_id!r} is suspended: {reason}")
            return
        super().__init__(
            f"workflow {workflow_id!r} is suspended: {reason}. Deploy code that replays "
            "the history (see `duralog replay`) and restart the worker to resume it"
        )


class ResultTimeout(DuralogError, TimeoutError):
    """``WorkflowHandle.result(timeout=...)`` returned before the workflow finished."""

    def __init__(self, workflow_id: str, timeout: float, status: str) -> None:
        self.workflow_id = workflow_id
        self.timeout = timeout
        self.status = status
        super().__init__(
            f"workflow {workflow_id!r} did not finish within {timeout:g}s (status {status}); "
            "it keeps running: call result() again, or check that a worker is running"
        )


class StreamTimeout(DuralogError, TimeoutError):
    """``WorkflowHandle.read_stream(key, timeout=...)`` got no new value (nor the
    stream's end) within ``timeout`` seconds; the stream may go on: read it again.

    Attributes:
        workflow_id: the workflow whose stream was read.
        key: the stream's key.
        timeout: the seconds waited.
        received: how many values the stream had (from its start) when the reading
            gave up: the ``start`` to read on from.
    """

    def __init__(self, workflow_id: str, key: str, timeout: float, received: int) -> None:
        self.workflow_id = workflow_id
        self.key = key
        self.timeout = timeout
        self.received = received
        super().__init__(
            f"stream {key!r} of workflow {workflow_id!r}: no new value within {timeout:g}s "
            f"(after {received} value{'' if received == 1 else 's'}); it is not closed and the "
            f"workflow has not ended: read on with read_stream(..., start={received}), or "
            "check that a worker is running"
        )


class StepFailed(DuralogError):
    """A step failed for good: its retries are exhausted or the error is non-retryable.

    Raised inside the workflow at the ``await`` of the step, so workflow code can
    catch it; ``error`` is the recorded error of the last attempt.
    """

    def __init__(
        self, workflow_id: str, step: str, seq: int, attempts: int, error: ErrorDetails
    ) -> None:
        self.workflow_id = workflow_id
        self.step = step
        self.seq = seq
        self.attempts = attempts
        self.error = error
        plural = "s" if attempts != 1 else ""
        super().__init__(
            f"step {step!r} (seq {seq}) of workflow {workflow_id!r} failed after "
            f"{attempts} attempt{plural}: {error}"
        )


class NondeterminismError(DuralogError):
    """Replayed workflow code made a different decision than the one recorded.

    Attributes:
        workflow_id: the workflow whose history was replayed.
        seq: the seq of the recorded decision that did not match (or would have come next).
        recorded: the recorded decision, e.g. ``"StepScheduled charge"``, or None.
        attempted: the decision the code made instead, or None when it made none.
        location: ``file:line`` of the workflow code that made the attempted decision.
    """

    def __init__(
        self,
        workflow_id: str,
        seq: int,
        recorded: str | None,
        attempted: str | None,
        location: str | None = None,
    ) -> None:
        self.workflow_id = workflow_id
        self.seq = seq
        self.recorded = recorded
        self.attempted = attempted
        self.location = location
        where = f" at {location}" if location else ""
        super().__init__(
            f"workflow {workflow_id!r} diverged from its history at seq {seq}: "
            f"recorded {recorded or 'nothing'}, the code now makes "
            f"{attempted or 'no further decision'}{where}. Keep the old behaviour for running "
            "workflows behind `if duralog.patched(...)`, or replay with the old code"
        )


class ForkDiverged(NondeterminismError):
    """A fork (or restart) was refused, nothing written: the current code does not make
    the decisions recorded in the events the fork would copy.

    Attributes:
        source_id: the workflow that was to be forked.
        from_seq: the seq the fork was to start at.
        seq, recorded, attempted, location: the divergence, as ``NondeterminismError``
            (``workflow_id`` is the source's).
    """

    def __init__(
        self,
        source_id: str,
        from_seq: int,
        seq: int,
        recorded: str | None,
        attempted: str | None,
        location: str | None = None,
    ) -> None:
        super().__init__(source_id, seq, recorded, attempted, location)
        self.source_id = source_id
        self.from_seq = from_seq
        where = f" at {location}" if location else ""
        DuralogError.__init__(
            self,
            f"cannot fork {source_id!r} from seq {from_seq}: the current code diverges from "
            f"the events it would copy at seq {seq}: recorded {recorded or 'nothing'}, the "
            f"code now makes {attempted or 'no further decision'}{where}. Fork from a seq "
            f"before {seq}, or make the code take the recorded path there "
            "(`if duralog.patched(...)`)",
        )


class QueryFailed(DuralogError):
    """A query could not be answered: the workflow's code registers no query of that
    name, the arguments do not fit its handler, or the handler raised, tried to act
    (call a step, sleep, wait, publish...) or returned what cannot be encoded.

    Attributes:
        workflow_id: the workflow queried.
        query: the query's name.
        reason: what went wrong, without the workflow and query.
        cause: what the handler raised (type, message, traceback), when it raised.
    """

    def __init__(
        self, workflow_id: str, query: str, reason: str, cause: ErrorDetails | None = None
    ) -> None:
        self.workflow_id = workflow_id
        self.query = query
        self.reason = reason
        self.cause = cause
        super().__init__(f"query {query!r} of workflow {workflow_id!r} failed: {reason}")


class QueryTimeout(QueryFailed, TimeoutError):
    """``WorkflowHandle.query(timeout=...)`` got no answer in time: its handler (or the
    replay of the workflow's code before it) ran on without returning.

    The replay runs on a daemon thread of the asking process. The thread is
    interrupted where CPython allows it (a loop of Python code is stopped at its
    next bytecode); code blocked inside a C call keeps its thread until that call
    returns. Either way it only reads a copy of the log already in memory: it holds
    no lock, writes nothing, and does not keep the process from exiting.
    """

    def __init__(self, workflow_id: str, query: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(
            workflow_id,
            query,
            f"no answer within {timeout:g}s: its handler, or the replay of the workflow's "
            "code before it, did not return (a loop that never ends?); a query handler "
            "should only read the workflow's state and return",
        )


class UpdateFailed(DuralogError):
    """An update was not carried out: it was rejected (no such handler, a payload that
    does not fit it, its validator raised), its handler raised, or the workflow ended
    before answering it.

    Attributes:
        workflow_id: the workflow the update was sent to.
        update: the update's name.
        reason: what went wrong, without the workflow and update.
        cause: what the handler raised (type, message, traceback), when it raised.
        rejected: True when it was rejected: then nothing of it is in the history,
            unless the workflow's state changed between sending and delivery (see
            ``duralog.on_update``).
    """

    def __init__(
        self,
        workflow_id: str,
        update: str,
        reason: str,
        cause: ErrorDetails | None = None,
        *,
        rejected: bool = False,
    ) -> None:
        self.workflow_id = workflow_id
        self.update = update
        self.reason = reason
        self.cause = cause
        self.rejected = rejected
        verb = "was rejected" if rejected else "failed"
        super().__init__(f"update {update!r} of workflow {workflow_id!r} {verb}: {reason}")


class UpdateTimeout(UpdateFailed, TimeoutError):
    """``WorkflowHandle.update(timeout=...)`` got no answer in time; the update was sent,
    and the workflow carries it out when a worker delivers it."""

    def __init__(self, workflow_id: str, update: str, timeout: float, status: str) -> None:
        self.timeout = timeout
        self.status = status
        super().__init__(
            workflow_id,
            update,
            f"no answer within {timeout:g}s (status {status}); it was sent, and the workflow "
            "carries it out when a worker delivers it: check that a worker is running",
        )


class PayloadError(DuralogError):
    """A value could not be encoded into, or decoded from, the log."""


class HistoryFileError(DuralogError):
    """A history file is malformed, truncated or of an unknown version; nothing was replayed."""


class WorkflowSandboxError(DuralogError):
    """Workflow code tried something that cannot be replayed (real I/O, threads...)."""


class IllegalTransition(DuralogError):
    """A status change the workflow state machine forbids (e.g. COMPLETED -> RUNNING)."""


class LeaseLost(DuralogError):
    """This worker no longer holds the workflow: the store refused an append (another
    worker owns it now, or it ended), or its lease lapsed and was not renewed."""

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            message
            or f"the store refused an append to workflow {workflow_id!r}: another worker "
            "owns it now (fencing) or its state forbids it; this worker stops advancing it"
        )


class StepCancelled(asyncio.CancelledError):
    """Raised by ``duralog.heartbeat()`` inside a step attempt that should stop: its
    workflow was cancelled (or ended, or its worker let it go), this worker lost the
    workflow's lease, or the attempt was given up (past its ``timeout`` or
    ``heartbeat_timeout``).

    An ``asyncio.CancelledError``, so ``except Exception:`` in the step does not catch
    it: let it propagate. The step's attempt then ends the way a cancelled async step
    does: when the workflow was cancelled it fails as ``Cancelled`` (not retried);
    otherwise its outcome is not recorded at all.

    Attributes:
        workflow_id, seq, attempt: the attempt told to stop.
        reason: why, in words.
        lease_lost: True when the reason is the lost lease (another worker may run the
            step now).
    """

    def __init__(
        self, workflow_id: str, seq: int, attempt: int, reason: str, *, lease_lost: bool = False
    ) -> None:
        self.workflow_id = workflow_id
        self.seq = seq
        self.attempt = attempt
        self.reason = reason
        self.lease_lost = lease_lost
        super().__init__(
            f"step seq {seq} (attempt {attempt}) of workflow {workflow_id!r} must stop: {reason}"
        )


class CircuitOpen(DuralogError):
    """An attempt was failed fast because its step's circuit breaker is open.

    Attributes:
        breaker: the breaker's name.
        state: ``"open"`` or ``"half_open"`` (a trial call is in flight elsewhere).
        failures: the failures in a row that opened it.
        retry_at: when the breaker may let a call through (engine clock, epoch s).
        retry_after: seconds the step waits before its next attempt, at least.
        step, workflow_id, seq, attempt: the attempt that did not run.
    """

    def __init__(
        self,
        message: str,
        *,
        breaker: str,
        state: str,
        failures: int,
        retry_at: float,
        retry_after: float,
        step: str,
        workflow_id: str,
        seq: int,
        attempt: int,
    ) -> None:
        super().__init__(message)
        self.breaker, self.state, self.failures = breaker, state, failures
        self.retry_at, self.retry_after = retry_at, retry_after
        self.step, self.workflow_id, self.seq, self.attempt = step, workflow_id, seq, attempt


class CompensationFailed(DuralogError):
    """Some compensations of a saga failed for good (after their retries); the others ran.

    Attributes:
        cause: the exception that made the saga compensate (None for an explicit
            ``saga.compensate()``); it is also the ``__cause__``.
        failures: the failed compensations' errors (usually ``StepFailed``), in the
            order they ran (newest compensation first).
        compensated: how many compensations ran in all.
    """

    def __init__(
        self, cause: BaseException | None, failures: Sequence[Exception], compensated: int
    ) -> None:
        self.cause = cause
        self.failures = list(failures)
        self.compensated = compensated
        after = f" after {type(cause).__name__}: {cause}" if cause is not None else ""
        listed = "; ".join(str(f) for f in self.failures)
        super().__init__(
            f"saga compensation incomplete{after}. {len(self.failures)} of {compensated} "
            f"compensations failed: {listed}. The other compensations ran; what the failed "
            "ones were to undo needs fixing by hand"
        )


class StoreError(DuralogError):
    """The store cannot be opened or read as a duralog log."""


class StoreDamaged(StoreError):
    """What the store holds is damaged: its file does not read as a database, or a row
    holds what no duralog wrote. ``duralog verify`` finds the damage in the log."""


#: How the reason of a workflow set aside for a damaged log begins (``LogDamaged.reason``).
DAMAGED_REASON = "its log is damaged"


class LogDamaged(StoreDamaged):
    """A workflow's log is damaged: an event is missing, altered or out of place, or the
    index disagrees with the log. Nothing is appended to it; ``duralog verify ID`` lists
    every problem.

    Attributes:
        workflow_id: the workflow whose log is damaged.
        seq: the seq of the first damaged event (or where the log should continue).
        problem: what is wrong there, in words.
    """

    def __init__(self, workflow_id: str, seq: int, problem: str) -> None:
        self.workflow_id = workflow_id
        self.seq = seq
        self.problem = problem
        super().__init__(f"workflow {workflow_id!r}: {self.reason}")

    @property
    def reason(self) -> str:
        """The damage as the reason of a SUSPENDED workflow: where, what, what to do."""
        return (
            f"{DAMAGED_REASON} at seq {self.seq}: {self.problem}; run `duralog verify "
            f"{_quoted(self.workflow_id)}`, repair or restore the log, then restart a worker"
        )


class CorruptEventError(LogDamaged):
    """An event body in the store cannot be decoded."""

    def __init__(self, workflow_id: str, seq: int, reason: str) -> None:
        super().__init__(workflow_id, seq, f"its body does not decode: {reason}")
        self.args = (
            f"event {seq} of workflow {workflow_id!r} is corrupt and was not decoded: {reason}",
        )


def _quoted(text: str) -> str:
    """``text`` as one shell word (printable: ids may hold anything)."""
    import shlex  # only to word an error message

    safe = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return shlex.quote(safe)


@overload
def whole_number(
    value: object, what: str, *, minimum: int | None = None, optional: Literal[False] = False
) -> int: ...
@overload
def whole_number(
    value: object, what: str, *, minimum: int | None = None, optional: Literal[True]
) -> int | None: ...
def whole_number(
    value: object, what: str, *, minimum: int | None = None, optional: bool = False
) -> int | None:
    """``value`` if it is an int (a bool is not) of at least ``minimum`` (or None when
    ``optional``); otherwise a ``ConfigurationError`` naming ``what``, e.g.
    ``"queue 'mail': concurrency must be a whole number of at least 1 or None, got 0"``.

    The one whole-number check of every layer (here because every layer may import
    this module).
    """
    if value is None and optional:
        return None
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (minimum is None or value >= minimum)
    ):
        return value
    bound = "" if minimum is None else f" of at least {minimum}"
    alternative = " or None" if optional else ""
    raise ConfigurationError(f"{what} must be a whole number{bound}{alternative}, got {value!r}")


@overload
def positive_seconds(
    value: object, what: str, *, or_zero: bool = False, optional: Literal[False] = False
) -> float: ...
@overload
def positive_seconds(
    value: object, what: str, *, or_zero: bool = False, optional: Literal[True]
) -> float | None: ...
def positive_seconds(
    value: object, what: str, *, or_zero: bool = False, optional: bool = False
) -> float | None:
    """``value`` in seconds if it is a number (a bool is not) or a ``timedelta``, finite
    and above 0 (at least 0 with ``or_zero``; None when ``optional``); otherwise a
    ``ConfigurationError`` naming ``what``, e.g.
    ``"queue 'mail': period must be positive seconds (a finite number above 0), got 0"``.

    The one check of a duration argument (a timeout, a period), here beside
    ``whole_number`` for the same reason.
    """
    if value is None and optional:
        return None
    given = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if isinstance(given, bool) or not isinstance(given, int | float):
        alternative = " or None" if optional else ""
        raise ConfigurationError(
            f"{what} must be seconds (a number or a timedelta){alternative}, got {value!r}"
        )
    try:
        seconds = float(given)
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not or_zero):
        words = "seconds" if or_zero else "positive seconds"
        rule = "of at least 0" if or_zero else "above 0"
        raise ConfigurationError(f"{what} must be {words} (a finite number {rule}), got {value!r}")
    return seconds
