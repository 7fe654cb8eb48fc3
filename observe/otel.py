"""OpenTelemetry traces of an engine's workflows (``pip install 'duralog[otel]'``).

``instrument(engine)`` makes the engine's runs and step attempts spans:

- ``workflow <name>``: one per run, from its ``WorkflowStarted`` to its terminal
  event. Its parent is the span current where ``engine.start`` was called (a web
  request's), the parent workflow's run span for a child workflow, or the previous
  run's span after ``continue_as_new``. Timers, signals, published state, children,
  cancel and pause requests are span events on it.
- ``step <name>``: one per attempt, a child of its run's span, from the attempt's
  start to its recorded outcome, with ``duralog.workflow_id``, ``duralog.seq``,
  ``duralog.attempt`` and ``duralog.idempotency_key``. A failed attempt has an
  error status and an ``exception`` event (type, message, traceback). It is the
  current span while the step's code runs (an attempt guard, ``engine/hooks.py``),
  so the spans the step makes itself (an instrumented HTTP client's) are its
  children.

Spans are made from the events this engine commits (it is a commit listener,
``engine/hooks.py``), timed by the events' own times, so replaying a history
emits nothing again: replayed events are not committed anew.

The run span's W3C traceparent is recorded in the run's ``WorkflowStarted``
(``trace``). A span lives in one process and is exported when it ends, so a run
that another process continues (after a crash, a restart, or a start made with
``worker=False``) gets a span of its own there, ``workflow <name>`` again with
``duralog.resumed`` true, whose parent is the recorded span: the whole run stays
one trace. The span of a process killed before the run ended is lost with it; the
spans that process had already ended (its finished step attempts) stay in the
trace under the recorded span id.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # the extra is not installed
    raise ImportError(
        "duralog's OpenTelemetry tracing needs the otel extra: pip install 'duralog[otel]'"
    ) from exc

from duralog.engine import hooks
from duralog.engine.api import StepInfo
from duralog.errors import ConfigurationError, ErrorDetails
from duralog.replay.definitions import Registry, Step
from duralog.replay.state import WorkflowState
from duralog.store import events as ev
from duralog.store.events import LogEntry

if TYPE_CHECKING:
    from duralog.engine.engine import Engine

__all__ = ["Tracing", "instrument"]

_propagator = TraceContextTextMapPropagator()
#: Spans begun for starts that found their id taken are never ended (so never
#: exported); this many are kept at most before the oldest are forgotten.
_MAX_PENDING = 10_000
#: How each event that is not a step attempt's appears on its run's span.
_SPAN_EVENTS: dict[type[ev.BaseEvent], str] = {
    ev.TimerStarted: "timer started",
    ev.TimerFired: "timer fired",
    ev.SignalReceived: "signal received",
    ev.StatePublished: "state published",
    ev.ChildStarted: "child started",
    ev.ChildCompleted: "child completed",
    ev.ChildFailed: "child failed",
    ev.CancelRequested: "cancel requested",
    ev.PauseRequested: "paused",
    ev.ResumeRequested: "resumed",
}
_OUTCOMES: dict[type[ev.BaseEvent], str] = {
    ev.WorkflowCompleted: "completed",
    ev.WorkflowFailed: "failed",
    ev.WorkflowCancelled: "cancelled",
    ev.ContinuedAsNew: "continued_as_new",
    ev.WorkflowTerminated: "terminated",
}


def instrument(engine: Engine, *, tracer_provider: TracerProvider | None = None) -> Tracing:
    """Trace ``engine``'s workflows with OpenTelemetry (see ``duralog.observe.otel``).

    Call it before the engine's worker starts (before ``with engine:``), so that the
    runs it recovers are traced from their first commit. Spans go to
    ``tracer_provider`` (default: the global one, ``trace.set_tracer_provider``).
    Tracing stays on until the engine closes; an engine is instrumented once.

    Example:
        ```python
        from duralog.observe.otel import instrument

        engine = duralog.Engine("shop.db")
        instrument(engine)
        with engine:
            engine.start(checkout, "o-1", 1999)
        ```
    """
    if engine.listeners.traces is not None:
        raise ConfigurationError(f"{engine!r} is traced already; instrument an engine once")
    tracing = Tracing(engine, trace.get_tracer("duralog", tracer_provider=tracer_provider))
    with _traced_lock:
        other = _traced.get(id(engine.store))
        if other is not None and other.active:
            raise ConfigurationError(
                "another engine on this store object is traced already; give each engine "
                "its own store"
            )
        _traced[id(engine.store)] = tracing
    engine.listeners.traces = tracing
    engine.listeners.add(tracing)
    return tracing


#: The tracer of each traced engine, by its store (what an attempt guard knows of it).
_traced: dict[int, Tracing] = {}
_traced_lock = threading.Lock()


class _AttemptSpan:
    """Makes an attempt's span the current one while the step's code runs."""

    order: ClassVar[int] = -10  # outermost: the span covers the other guards too

    async def run(
        self,
        host: hooks.AttemptHost,
        info: StepInfo,
        context: contextvars.Context,
        kwargs: dict[str, Any],
        proceed: hooks.Proceed,
    ) -> Any:
        tracing = _traced.get(id(host.store))
        span = tracing.attempt_began(info) if tracing is not None else None
        if span is not None:  # the attempt's own context: nothing to detach after it
            context.run(otel_context.attach, trace.set_span_in_context(span))
        return await proceed(kwargs)


_ATTEMPT_SPAN = _AttemptSpan()


def _attempt_span(step: Step[Any, Any], registry: Registry) -> _AttemptSpan | None:
    """The guard of every step a worker runs with the registry of a traced engine (an
    untraced engine sharing that registry pays a dictionary lookup per attempt); a
    worker asks once per step, so an engine is instrumented before its worker starts."""
    with _traced_lock:
        traced = any(tracing.registry is registry for tracing in _traced.values())
    return _ATTEMPT_SPAN if traced else None


hooks.add_guard_finder(_attempt_span)


class _Run:
    """The span of one run in this process, and its open step attempts."""

    __slots__ = ("name", "run_id", "span", "steps")

    def __init__(self, span: Span, name: str, run_id: str) -> None:
        self.span = span
        self.name = name
        self.run_id = run_id
        #: Open attempts: seq -> (attempt, span).
        self.steps: dict[int, tuple[int, Span]] = {}


class Tracing:
    """An engine's tracer: makes spans of the events it commits (``instrument``)."""

    def __init__(self, engine: Engine, tracer: Tracer) -> None:
        self._engine = engine
        self._tracer = tracer
        #: The engine's registry: its workers' steps get the attempt guard.
        self.registry = engine.registry
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._pending: dict[tuple[str, str], Span] = {}
        self._closed = False
        # Error messages and tracebacks are user data, sealed in the log under a codec:
        # then only the error's type leaves the process.
        self._redact = engine.payload_codec is not None

    @property
    def active(self) -> bool:
        """Told of commits until the engine closes."""
        return not self._closed

    # -- the start hook (engine/hooks.py ``Traces``) ------------------------------

    def begin(self, workflow_id: str, name: str, parent_id: str | None) -> str | None:
        """Begin the span of a run about to be created; its traceparent is recorded."""
        with self._lock:
            if self._closed:
                return None
            context = self._parent_of(workflow_id, parent_id)
        span = self._tracer.start_span(
            f"workflow {name}",
            context=context,
            kind=SpanKind.INTERNAL,
            attributes={"duralog.workflow_id": workflow_id, "duralog.workflow": name},
            start_time=_ns(self._engine.clock.now()),
        )
        traceparent = _traceparent(span)
        if traceparent is None:
            return None
        with self._lock:
            self._pending[(workflow_id, traceparent)] = span
            while len(self._pending) > _MAX_PENDING:
                del self._pending[next(iter(self._pending))]
        return traceparent

    def _parent_of(self, workflow_id: str, parent_id: str | None) -> Context | None:
        """Under the lock: the previous run's span (``continue_as_new``), else the parent
        workflow's, else None (the context current where the workflow is started)."""
        for owner in (workflow_id, parent_id):
            run = self._runs.get(owner) if owner is not None else None
            if run is not None:
                return trace.set_span_in_context(run.span)
        if parent_id is not None:
            return _context(self._recorded_trace(parent_id))
        return None

    # -- commit listener (engine/hooks.py ``CommitListener``) --------------------

    def created(self, workflow_id: str, name: str, started: LogEntry) -> None:
        """A run was created by this engine: its span (begun by ``begin``) is open."""
        event = started.event
        assert isinstance(event, ev.WorkflowStarted)
        with self._lock:
            if self._closed:
                return
            span = self._pending.pop((workflow_id, event.trace), None) if event.trace else None
            if span is None:  # created without ``begin`` (a schedule's tick)
                span = self._open_span(workflow_id, name, event.trace, started.at, resumed=False)
            span.set_attribute("duralog.run", event.run)
            if event.run_id:
                span.set_attribute("duralog.run_id", event.run_id)
            run = _Run(span, name, event.run_id)
            if self._engine.runs_worker:
                self._runs[workflow_id] = run
                return
        # No worker here: another process runs it, under a span of its own.
        span.set_attribute("duralog.outcome", "handed_over")
        span.end(end_time=_ns(started.at))

    def committed(
        self, state: WorkflowState, entries: Sequence[LogEntry], workflow_id: str | None = None
    ) -> None:
        """Events of ``state``'s run were committed: step spans open and end, span
        events are added, and a terminal event ends the run's span."""
        with self._lock:
            if self._closed or not entries:
                return
            run = self._run(state.workflow_id, state.name, entries[0].at, state.run_id)
            for entry in entries:
                self._apply(state.workflow_id, run, state, entry)

    def appended(self, workflow_id: str, name: str, entry: LogEntry) -> None:
        """An event appended outside a worker (a terminate, a queued run cancelled)."""
        with self._lock:
            if self._closed:
                return
            run = self._run(workflow_id, name, entry.at, "")
            self._apply(workflow_id, run, None, entry)

    def close(self) -> None:
        """The engine closed: spans still open end now (their runs go on elsewhere)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runs, self._runs = self._runs, {}
            self._pending.clear()
        with _traced_lock:
            if _traced.get(id(self._engine.store)) is self:
                del _traced[id(self._engine.store)]
        end = _ns(self._engine.clock.now())
        for run in runs.values():
            for _, span in run.steps.values():
                span.set_attribute("duralog.outcome", "interrupted")
                span.end(end_time=end)
            run.span.set_attribute("duralog.outcome", "open")
            run.span.end(end_time=end)

    def attempt_began(self, info: StepInfo) -> Span | None:
        """An attempt is about to run here (before its ``StepStarted`` is committed):
        its span, opened now, is the one the commit finds."""
        with self._lock:
            if self._closed:
                return None
            now = self._engine.clock.now()
            run = self._run(info.workflow_id, info.workflow_name, now, info.run_id)
            open_ = run.steps.get(info.seq)
            if open_ is not None and open_[0] == info.attempt:
                return open_[1]
            return self._open_step(info.workflow_id, run, info.step, info.seq, info.attempt, None)

    # -- under the lock ---------------------------------------------------------

    def _run(self, workflow_id: str, name: str, at: float, run_id: str) -> _Run:
        """The run's span in this process, opened (resumed) at its first commit here."""
        run = self._runs.get(workflow_id)
        if run is None:
            recorded = self._recorded_trace(workflow_id)
            span = self._open_span(workflow_id, name, recorded, at, resumed=True)
            if run_id:
                span.set_attribute("duralog.run_id", run_id)
            run = self._runs[workflow_id] = _Run(span, name, run_id)
        return run

    def _open_span(
        self, workflow_id: str, name: str, recorded: str | None, at: float, *, resumed: bool
    ) -> Span:
        attributes: dict[str, str | bool] = {
            "duralog.workflow_id": workflow_id,
            "duralog.workflow": name,
        }
        if resumed:
            attributes["duralog.resumed"] = True
        return self._tracer.start_span(
            f"workflow {name}",
            # No trace recorded (the run was started untraced): a trace of its own.
            context=_context(recorded) if recorded else Context(),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_ns(at),
        )

    def _recorded_trace(self, workflow_id: str) -> str | None:
        """The traceparent in the workflow's ``WorkflowStarted`` (read once per run and
        process: only for a run this process did not start)."""
        first = self._engine.store.read_events(workflow_id, 0, 1, verify=False)
        event = first[0].event if first else None
        return event.trace if isinstance(event, ev.WorkflowStarted) else None

    def _apply(
        self, workflow_id: str, run: _Run, state: WorkflowState | None, entry: LogEntry
    ) -> None:
        event = entry.event
        at = _ns(entry.at)
        if isinstance(event, ev.StepStarted):
            open_ = run.steps.get(event.step_seq)
            if open_ is not None and open_[0] == event.attempt:
                return  # opened as the attempt began (``attempt_began``)
            step = state.steps.get(event.step_seq) if state is not None else None
            name = step.name if step is not None else "?"
            self._open_step(workflow_id, run, name, event.step_seq, event.attempt, entry.at)
        elif isinstance(event, ev.StepCompleted | ev.StepRetrying | ev.StepFailed):
            open_ = run.steps.pop(event.step_seq, None)
            if open_ is None:  # its attempt began in another process
                return
            span = open_[1]
            if isinstance(event, ev.StepCompleted):
                span.set_attribute("duralog.outcome", "completed")
            else:
                retrying = isinstance(event, ev.StepRetrying)
                span.set_attribute("duralog.outcome", "retrying" if retrying else "failed")
                self._failed(span, event.error, at)
            span.end(end_time=at)
        elif type(event) in _SPAN_EVENTS:
            run.span.add_event(_SPAN_EVENTS[type(event)], _event_attributes(entry), at)
        elif type(event) in _OUTCOMES:
            self._end_run(workflow_id, run, entry)

    def _open_step(
        self, workflow_id: str, run: _Run, name: str, seq: int, attempt: int, at: float | None
    ) -> Span:
        old = run.steps.pop(seq, None)
        if old is not None:  # never told how it ended (cannot happen): end it all the same
            old[1].end()
        key = f"{workflow_id}:{run.run_id}:" if run.run_id else f"{workflow_id}:"
        span = self._tracer.start_span(
            f"step {name}",
            context=trace.set_span_in_context(run.span),
            kind=SpanKind.INTERNAL,
            attributes={
                "duralog.workflow_id": workflow_id,
                "duralog.step": name,
                "duralog.seq": seq,
                "duralog.attempt": attempt,
                "duralog.idempotency_key": f"{key}{seq}",
            },
            start_time=_ns(self._engine.clock.now() if at is None else at),
        )
        run.steps[seq] = (attempt, span)
        return span

    def _end_run(self, workflow_id: str, run: _Run, entry: LogEntry) -> None:
        event = entry.event
        at = _ns(entry.at)
        for _, span in run.steps.values():  # attempts the terminal event cut short
            span.set_attribute("duralog.outcome", "interrupted")
            span.end(end_time=at)
        run.span.set_attribute("duralog.outcome", _OUTCOMES[type(event)])
        if isinstance(event, ev.WorkflowFailed | ev.WorkflowTerminated):
            self._failed(run.span, event.error, at)
        elif isinstance(event, ev.WorkflowCancelled):
            run.span.set_status(Status(StatusCode.ERROR, "cancelled"))
        run.span.end(end_time=at)
        if self._runs.get(workflow_id) is run:
            del self._runs[workflow_id]

    def _failed(self, span: Span, error: ErrorDetails, at: int) -> None:
        """Error status and an ``exception`` event, as ``Span.record_exception`` makes."""
        message = "" if self._redact else error.message
        attributes = {"exception.type": error.type, "exception.message": message}
        if error.traceback and not self._redact:
            attributes["exception.stacktrace"] = error.traceback
        span.add_event("exception", attributes, at)
        span.set_status(Status(StatusCode.ERROR, f"{error.type}: {message}" if message else None))


def _event_attributes(entry: LogEntry) -> dict[str, str | int | float]:
    """What a span event says of ``entry`` (never a payload: those may be secret)."""
    event = entry.event
    attributes: dict[str, str | int | float] = {"duralog.seq": entry.seq}
    if isinstance(event, ev.TimerStarted):
        attributes["duralog.fire_at"] = event.fire_at
    elif isinstance(event, ev.TimerFired):
        attributes["duralog.timer_seq"] = event.timer_seq
    elif isinstance(event, ev.SignalReceived):
        attributes["duralog.signal"] = event.name
    elif isinstance(event, ev.StatePublished):
        attributes["duralog.key"] = event.key
    elif isinstance(event, ev.ChildStarted):
        attributes["duralog.child_id"] = event.child_id
        attributes["duralog.child_workflow"] = event.name
    elif isinstance(event, ev.ChildCompleted | ev.ChildFailed):
        attributes["duralog.child_seq"] = event.child_seq
    return attributes


def _traceparent(span: Span) -> str | None:
    """``span``'s W3C traceparent (None for an invalid context: no tracer provider)."""
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, trace.set_span_in_context(span))
    return carrier.get("traceparent")


def _context(traceparent: str | None) -> Context | None:
    """The context whose current span is the remote one ``traceparent`` names."""
    if not traceparent:
        return None
    return _propagator.extract({"traceparent": traceparent}, context=Context())


def _ns(at: float) -> int:
    return int(at * 1e9)
