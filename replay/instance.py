"""``WorkflowInstance``: workflow code + its folded history -> the next decisions.

Live execution and recovery are the same code path. The instance is fed a
``WorkflowState`` (the fold of the committed log) and consumes what it has not
seen yet:

1. Inputs (step results, fired timers, ...) are delivered **one at a time, in
   log order**; after each one the loop runs until nothing is ready. Workflow
   time during that activation is the input's recorded timestamp.
2. Every decision the code makes (call a step, start a timer, record a marker,
   finish) is matched, in order, against the recorded decisions not matched yet.
   A mismatch is a ``NondeterminismError``. Past the recorded ones, the decision
   is new: it gets the next seq and is returned to the caller to append.
3. When every input has been delivered, a recorded decision the code did not
   make is a divergence too.

This makes replay independent of how the engine batched its commits. Nothing
here does I/O or reads a clock: new non-deterministic values come from the
``Sources`` the caller injects.

The rooms: ``decisions.py`` matches decisions against the log (2, 3),
``waits.py`` hands inputs to what the code waits on (1), ``endings.py`` makes the
terminal decision, ``locations.py`` finds the user's ``file:line`` for reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import types
import uuid
from asyncio import events as asyncio_events
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, cast

import msgspec

from duralog.errors import NondeterminismError, PayloadError
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.envelope import PayloadCodec

from .context import WorkflowInfo, _current
from .decisions import ContinueAsNew, Decisions, Diverged
from .definitions import Step, Workflow
from .endings import RunEnding
from .locations import defined_at, waiting_at
from .loop import WorkflowLoop
from .queries import QueryHandlers
from .state import Input, WorkflowState
from .streams import RunStreams
from .updates import SIGNAL_PREFIX, UpdateHandlers
from .updates import deliver as deliver_update
from .waits import PendingCalls, Waits

__all__ = ["ContinueAsNew", "ReplaySources", "Sources", "WorkflowInstance"]


class Sources(Protocol):
    """Where new non-deterministic values come from (the engine gives real ones)."""

    def now(self) -> float: ...

    def random(self) -> float: ...

    def uuid4(self) -> uuid.UUID: ...


class ReplaySources:
    """Sources for pure replay: derived from workflow time, never from the machine."""

    def __init__(self, loop: WorkflowLoop) -> None:
        self._loop = loop
        self._n = 0

    def now(self) -> float:
        return self._loop.time()

    def random(self) -> float:
        self._n += 1
        return (self._n * 0.6180339887498949) % 1.0

    def uuid4(self) -> uuid.UUID:
        self._n += 1
        return uuid.UUID(int=self._n, version=4)


class WorkflowInstance:
    """One workflow's code, running on its own deterministic loop.

    The instance drives the activations (``feed``) and decides how the run ends;
    ``Decisions`` matches what the code decides against the log, and ``Waits``
    hands each input to what the code waits on.

    Args:
        workflow: the definition whose code runs.
        workflow_id: the id of the run (for errors and ``workflow_info()``).
        sources: new values for ``now``/``random``/``uuid4`` in record mode.
        payload_codec: the engine's payload codec (None: none): the values the code
            records are sealed with it, and the recorded ones opened with it.
    """

    def __init__(
        self,
        workflow: Workflow[Any, Any],
        workflow_id: str,
        sources: Sources | None = None,
        payload_codec: PayloadCodec | None = None,
    ) -> None:
        self.workflow = workflow
        self.workflow_id = workflow_id
        self.payload_codec = payload_codec
        self.loop = WorkflowLoop(self)
        self.sources: Sources = sources or ReplaySources(self.loop)
        self.decisions = Decisions(workflow_id, self._defined_at, payload_codec)
        self.waits = Waits(workflow_id, self.loop, payload_codec)
        #: Steps and children the code called but never awaited, once it has finished.
        self.never_awaited: list[str] = []
        self.ending = RunEnding(workflow, self.decisions, self.waits, self.loop, payload_codec)
        self._task: asyncio.Task[Any] | None = None
        self._inputs_seen = 0
        self._calls = PendingCalls()
        self._patches: dict[str, bool] = {}
        #: Calls are scheduled when their coroutine first runs (event format 2 on).
        self._lazy_calls = True
        #: The query handlers the code registered (``duralog.on_query``).
        self.queries = QueryHandlers(workflow_id)
        #: The update handlers the code registered (``duralog.on_update``).
        self.updates = UpdateHandlers(workflow_id)
        self.streams = RunStreams(workflow_id)
        #: Called with each input just before it is delivered (debuggers hook in here).
        self.on_input: Callable[[Input], None] | None = None

    @property
    def finished(self) -> bool:
        """True once the run's terminal decision is made."""
        return self.decisions.finished

    @property
    def divergence(self) -> NondeterminismError | None:
        """The first divergence of the code from the history, once found."""
        return self.decisions.divergence

    @property
    def cut_short(self) -> bool:
        """True when the run was ended without letting its code (or children) finish."""
        return self.ending.cut_short

    def grace_from(self) -> float | None:
        """The workflow time from which a cleanup grace period counts, while one runs
        (``RunEnding.grace_from``); None otherwise."""
        return self.ending.grace_from()

    @property
    def _state(self) -> WorkflowState:
        return self.decisions.state

    # -- driving -----------------------------------------------------------

    def feed(self, state: WorkflowState, next_seq: int) -> list[tuple[int, ev.Event]]:
        """Consume what is new in ``state``; return the new decisions with their seqs.

        ``next_seq`` is the seq the first new decision gets (decisions are appended
        right after everything the caller has appended so far).
        Raises ``NondeterminismError`` when the code diverges from the history.
        """
        decisions = self.decisions  # (read directly: this runs for every activation)
        if decisions.divergence is not None:
            raise decisions.divergence
        new = decisions.begin(state, next_seq)
        if decisions.finished:
            return new
        token = _current.set(self)
        loop = self.loop
        outer_loop = asyncio_events._get_running_loop()
        asyncio_events._set_running_loop(loop)
        try:
            if self._task is None:
                loop.set_time(state.started_at)
                self._start(state)
            inputs, seen, on_input = state.inputs, self._inputs_seen, self.on_input
            deliver, count = self.waits.deliver, len(inputs)
            while seen < count and decisions.divergence is None and not decisions.finished:
                item = inputs[seen]
                self._inputs_seen = seen = seen + 1
                if item.at > loop._time:  # loop.set_time(item.at), inlined
                    loop._time = item.at
                if on_input is not None:
                    on_input(item)
                kind = item.kind
                if kind == "StepCompleted":  # the common input: straight to its step
                    if not deliver(state, kind, item.ref):
                        decisions.report_unmatched(self._waiting_at)
                else:
                    self._deliver(kind, item.ref)
                self._run()
            if seen == count and decisions.made < len(state.decisions):
                decisions.report_unmatched(self._waiting_at)
        finally:
            asyncio_events._set_running_loop(outer_loop)
            _current.reset(token)
        if decisions.divergence is not None:
            self._calls.close()
            raise decisions.divergence
        if decisions.finished and self._calls:
            # Calls the code made and never awaited: nothing was recorded or run for
            # them. Name them (the engine tells the user), then let them go quietly.
            self.never_awaited = self._calls.never_awaited()
            self._calls.close()
        return new

    @property
    def is_replaying(self) -> bool:
        """True while the code is catching up with decisions already in the log."""
        return self.decisions.is_replaying

    def info(self) -> WorkflowInfo:
        """What ``duralog.workflow_info()`` returns inside this workflow."""
        state = self._state if self.decisions.started else None
        return WorkflowInfo(
            workflow_id=self.workflow_id,
            name=self.workflow.name,
            started_at=state.started_at if state else 0.0,
            is_replaying=self.is_replaying,
            run=state.run if state else 1,
            run_id=state.run_id if state else "",
        )

    def step_of(self, seq: int) -> Step[Any, Any] | None:
        """The step definition the code called at ``seq``, while it is unresolved."""
        return self.waits.step_of(seq)

    def child_of(self, seq: int) -> Workflow[Any, Any] | None:
        """The child workflow the code started at ``seq``, while it is unresolved."""
        return self.waits.child_of(seq)

    def live_timers(self) -> list[int]:
        """Seqs of timers the code still waits on (started, not fired, not cancelled)."""
        return self.waits.live_timers()

    def unconsumed_signals(self) -> list[tuple[str, msgspec.Raw]]:
        """Signals received but never waited for, in the order they arrived."""
        return self.waits.unconsumed_signals(self._state)

    def _start(self, state: WorkflowState) -> None:
        if state.never_ran:  # cancelled on its queue: none of its code ran, none replays
            with contextlib.suppress(Diverged):
                self.ending.cancelled()
            return
        try:
            args, kwargs = self.workflow.decode_args(state.args, state.kwargs, self.payload_codec)
        except PayloadError as exc:
            with contextlib.suppress(Diverged):
                self.ending.failed(exc, with_traceback=False)
            return

        fn = self.workflow.fn
        code: Coroutine[Any, Any, Any] | None = None
        if type(fn) is types.FunctionType and fn.__code__.co_flags & inspect.CO_COROUTINE:
            # A plain ``async def``: calling it binds the arguments and runs none of its
            # code, so the task runs the coroutine itself (no frame around it to resume
            # at every step). Arguments it cannot take fail the run, as below.
            with contextlib.suppress(TypeError):
                code = fn(*args, **kwargs)
        if code is None:

            async def main() -> Any:
                return await fn(*args, **kwargs)

            code = main()
        self._lazy_calls = state.format >= 2  # (see PendingCalls)
        self._task = self.loop.create_task(code, name=f"workflow {self.workflow_id}")
        self.ending.task = self._task
        self._run()

    def _run(self) -> None:
        self.loop.run_until_idle()
        self._calls.forget_started()
        self.ending.after_turn()

    def _deliver(self, kind: str, ref: int) -> None:
        state = self._state
        if kind == "CancelRequested":
            self.ending.cancel(state.cancel_reasons[ref])
        elif kind == "SignalReceived" and state.signals[ref].name.startswith(SIGNAL_PREFIX):
            signal = state.signals[ref]  # an update: never queued for wait_signal
            deliver_update(self, signal.name, signal.payload)
        elif not self.waits.deliver(state, kind, ref):
            # The result of a call the code did not make.
            self.decisions.report_unmatched(self._waiting_at)

    # -- decisions the code makes --------------------------------------------

    def call_step(
        self, step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """A step call: the coroutine records (or matches) ``StepScheduled`` when the
        awaiting task first runs it, then resolves with the step's result."""
        if self.queries.answering is not None:
            self.queries.refuse(f"call step {step.name!r}")
        calls = self._calls
        if self._lazy_calls:  # PendingCalls.call(...), inlined for the usual calls
            calls.made = key = calls.made + 1
            waiting = calls.waiting
            coroutine = _step_call(self, step, args, kwargs, waiting, key)
            # Python warns about a call never awaited: let it name the step, as it
            # would name a plain coroutine function.
            coroutine.__qualname__ = coroutine.__name__ = step.name  # type: ignore[attr-defined]
            waiting[key] = coroutine
            return coroutine
        # Partials, not closures: the call's coroutine keeps ``schedule`` until the step
        # ends, and closures would keep a cell per variable they use, for every step.
        schedule = functools.partial(self._schedule_step, step, args, kwargs)
        return calls.call(schedule, step.name, lazy=False)

    def _schedule_step(
        self, step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any]:
        scheduled = functools.partial(self._step_scheduled, step, args, kwargs)
        seq, _ = self.decisions.decide("StepScheduled", step.name, scheduled)
        return self.waits.add_step(seq, step)

    def _step_scheduled(
        self, step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> ev.Event:
        try:  # self._encode_call(...), without making its message for every step
            encoded_args, encoded_kwargs = codec.encode_call(args, kwargs, self.payload_codec)
        except PayloadError as exc:
            raise self._unrecordable(
                f"the arguments of step {step.name!r}",
                exc,
                " (inject clients and connections into the step instead of passing them)",
            ) from None
        return ev.StepScheduled(name=step.name, args=encoded_args, kwargs=encoded_kwargs)

    def start_child(
        self, workflow: Workflow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """A child workflow call: the coroutine records (or matches) ``ChildStarted``
        when the awaiting task first runs it, then resolves with the child's result.

        The child's id is ``<parent id>/<seq>``: deterministic, so a replay or a
        recovery finds the same child instead of starting another.
        """
        self.queries.refuse(f"start child workflow {workflow.name!r}")

        def schedule() -> asyncio.Future[Any]:
            def started() -> ev.Event:
                encoded_args, encoded_kwargs = self._encode_call(
                    f"the input of child workflow {workflow.name!r}", args, kwargs
                )
                run = "" if self._state.run == 1 else f"{self._state.run}."
                child_id = f"{self.workflow_id}/{run}{self.decisions.next_seq}"  # its seq
                return ev.ChildStarted(
                    child_id=child_id, name=workflow.name, args=encoded_args, kwargs=encoded_kwargs
                )

            seq, _ = self.decisions.decide("ChildStarted", workflow.name, started)
            return self.waits.add_child(seq, workflow)

        return self._calls.call(schedule, workflow.name, lazy=self._lazy_calls)

    def _encode_call(
        self, what: str, args: tuple[Any, ...], kwargs: dict[str, Any], advice: str = ""
    ) -> tuple[msgspec.Raw, msgspec.Raw]:
        try:
            return codec.encode_call(args, kwargs, self.payload_codec)
        except PayloadError as exc:
            raise self._unrecordable(what, exc, advice) from None

    def _unrecordable(self, what: str, exc: PayloadError, advice: str = "") -> PayloadError:
        return PayloadError(
            f"cannot record {what} in workflow {self.workflow_id!r}: {exc}; "
            f"{codec.SUPPORTED_HINT}{advice}"
        )

    def record_marker(self, marker: str, produce: Callable[[], Any], tp: Any = Any) -> Any:
        """Record (or read back) a non-deterministic value; returns it decoded."""
        self.queries.refuse(f"record a value ({marker})")
        holder: list[msgspec.Raw] = []

        def make() -> ev.Event:
            holder.append(codec.encode(produce(), self.payload_codec))
            return ev.MarkerRecorded(marker=marker, value=holder[0])

        seq, new = self.decisions.decide("MarkerRecorded", marker, make)
        raw = holder[0] if new else self._state.markers[seq].value
        return codec.decode(raw, tp, payload_codec=self.payload_codec)

    def publish(self, key: str, value: Any) -> None:
        """Record ``value`` as the workflow's published state under ``key``."""
        self.queries.refuse(f"publish {key!r}")
        try:
            raw = codec.encode(value, self.payload_codec)
        except PayloadError as exc:
            raise PayloadError(
                f"cannot publish {key!r} from workflow {self.workflow_id!r}: {exc}"
            ) from None
        self.decisions.decide("StatePublished", key, lambda: ev.StatePublished(key=key, value=raw))

    def write_stream(self, key: str, value: Any) -> None:
        """Append ``value`` to the run's stream ``key`` (a ``StreamWritten`` decision)."""
        self.queries.refuse(f"write to stream {key!r:.80}")
        key = self.streams.check_write(key)
        try:
            raw = codec.encode(value, self.payload_codec)
        except PayloadError as exc:
            raise PayloadError(
                f"cannot write to stream {key!r} of workflow {self.workflow_id!r}: {exc}"
            ) from None
        self.decisions.decide("StreamWritten", key, lambda: ev.StreamWritten(key=key, value=raw))

    def close_stream(self, key: str) -> None:
        """Close the run's stream ``key`` (a ``StreamClosed`` decision; again: nothing)."""
        self.queries.refuse(f"close stream {key!r:.80}")
        closed = self.streams.close(key)
        if closed is not None:
            self.decisions.decide("StreamClosed", closed, lambda: ev.StreamClosed(key=closed))

    def patched(self, patch_id: str) -> bool:
        """Whether this run takes the new code path of ``patch_id`` (Temporal's semantics).

        A run that reaches the call in record mode records a ``patch`` marker and
        takes the new path. A replayed run takes it only if its history has that
        marker here; a history from before the patch replays the old path, and the
        call consumes nothing. The answer is memoized per run.
        """
        known = self._patches.get(patch_id)
        if known is not None:
            return known
        self.queries.refuse(f"ask whether it is patched ({patch_id!r}) for the first time")
        if self.decisions.is_replaying:
            found = self.decisions.consume_patch_marker(patch_id)
            self._patches[patch_id] = found
            return found
        value = codec.encode(patch_id, self.payload_codec)
        self.decisions.decide(
            "MarkerRecorded", "patch", lambda: ev.MarkerRecorded(marker="patch", value=value)
        )
        self._patches[patch_id] = True
        return True

    def deprecate_patch(self, patch_id: str) -> None:
        """The new path of ``patch_id`` is the only one now: consume its marker if recorded."""
        self.queries.refuse(f"deprecate patch {patch_id!r}")
        self.decisions.consume_patch_marker(patch_id)

    async def wait_signal(self, name: str) -> msgspec.Raw:
        """The next signal ``name``: one already buffered, or the next to arrive."""
        self.queries.refuse(f"wait for signal {name!r}")
        return await self.waits.wait_signal(self._state, name)

    # -- timers (called by the loop) ---------------------------------------

    def timer_started(self, handle: asyncio.TimerHandle) -> None:
        self.queries.refuse("sleep or start a timer")
        when = handle.when()
        seq, _ = self.decisions.decide("TimerStarted", "", lambda: ev.TimerStarted(fire_at=when))
        self.waits.add_timer(seq, handle)

    def timer_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self.waits.cancel_timer(handle)

    # -- locations for divergence reports ----------------------------------

    def _defined_at(self) -> str:
        return defined_at(self.workflow.fn, self.workflow.name)

    def waiting_at(self) -> str | None:
        """``file:line`` where the workflow code waits now (its definition once it ended)."""
        return self._waiting_at()

    def _waiting_at(self) -> str | None:
        if self.decisions.halted_at is not None:  # a read-only replay stopped it there
            return self.decisions.halted_at
        task = self._task
        if task is None or task.done():
            return self._defined_at()
        return waiting_at(task)


def current_instance() -> WorkflowInstance | None:
    """The instance whose code is running in this context, or None (only a
    ``WorkflowInstance`` ever sets it: see ``run``)."""
    return cast("WorkflowInstance | None", _current.get())


async def _step_call(
    instance: WorkflowInstance,
    step: Step[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    waiting: dict[int, Coroutine[Any, Any, Any]],
    key: int,
) -> Any:
    """A lazy step call's coroutine (``PendingCalls``' ``_scheduled`` for steps)."""
    del waiting[key]  # started: no longer a call to close or to name
    return await instance._schedule_step(step, args, kwargs)
