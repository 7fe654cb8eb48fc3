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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import sys
import types
import typing
import uuid
from asyncio import events as asyncio_events
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import msgspec

from duralog.errors import (
    ErrorDetails,
    NondeterminismError,
    PayloadError,
    StepFailed,
    WorkflowFailed,
    WorkflowTimeout,
    details_of,
)
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.envelope import unseal_error

from .context import WorkflowInfo, _current
from .definitions import Step, Workflow
from .loop import WorkflowLoop
from .state import Input, WorkflowState


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


class _Diverged(BaseException):
    """Unwinds workflow code after a divergence; ``except Exception`` cannot stop it."""


class _Ended(BaseException):
    """Unwinds workflow code still running after its run was ended without it (a cleanup
    cut short by its grace period): whatever it tries to do is not recorded."""


class ContinueAsNew(BaseException):
    """Raised by ``duralog.continue_as_new``: ends this run; a new one starts with ``args``."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__("continue as new")
        self.args_ = args
        self.kwargs_ = kwargs


class WorkflowInstance:
    """One workflow's code, running on its own deterministic loop.

    Args:
        workflow: the definition whose code runs.
        workflow_id: the id of the run (for errors and ``workflow_info()``).
        sources: new values for ``now``/``random``/``uuid4`` in record mode.
    """

    def __init__(
        self, workflow: Workflow[Any, Any], workflow_id: str, sources: Sources | None = None
    ) -> None:
        self.workflow = workflow
        self.workflow_id = workflow_id
        self.loop = WorkflowLoop(self)
        self.sources: Sources = sources or ReplaySources(self.loop)
        self.divergence: NondeterminismError | None = None
        self.finished = False
        #: Steps and children the code called but never awaited, once it has finished.
        self.never_awaited: list[str] = []
        self._state: WorkflowState | None = None
        self._task: asyncio.Task[Any] | None = None
        self._made = 0
        self._inputs_seen = 0
        self._next_seq = 0
        self._new: list[tuple[int, ev.Event]] = []
        self._steps: dict[int, tuple[Step[Any, Any], asyncio.Future[Any]]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._timer_seqs: dict[int, int] = {}
        self._awaitables: list[Coroutine[Any, Any, Any]] = []
        self._patches: dict[str, bool] = {}
        self._timed_out = False
        self._cancelled_at: float | None = None  # workflow time of the first cancel request
        #: The terminal decision of a run whose code ended while it was cancelled and
        #: children it started were still winding down: made when the last one ends.
        self._ending: Callable[[], None] | None = None
        #: True when the run was ended without letting its code (or children) finish.
        self.cut_short = False
        self._children: dict[int, tuple[Workflow[Any, Any], asyncio.Future[Any]]] = {}
        self._signals: dict[str, collections.deque[int]] = {}  # name -> indexes in state.signals
        self._signal_waiters: dict[str, collections.deque[asyncio.Future[Any]]] = {}
        #: Called with each input just before it is delivered (debuggers hook in here).
        self.on_input: Callable[[Input], None] | None = None

    # -- driving -----------------------------------------------------------

    def feed(self, state: WorkflowState, next_seq: int) -> list[tuple[int, ev.Event]]:
        """Consume what is new in ``state``; return the new decisions with their seqs.

        ``next_seq`` is the seq the first new decision gets (decisions are appended
        right after everything the caller has appended so far).
        Raises ``NondeterminismError`` when the code diverges from the history.
        """
        if self.divergence is not None:
            raise self.divergence
        self._state, self._next_seq, self._new = state, next_seq, []
        if self.finished:
            return self._new
        token = _current.set(self)
        outer_loop = asyncio_events._get_running_loop()
        asyncio_events._set_running_loop(self.loop)
        try:
            if self._task is None:
                self.loop.set_time(state.started_at)
                self._start(state)
            inputs = state.inputs
            while self._inputs_seen < len(inputs) and self.divergence is None and not self.finished:
                item = inputs[self._inputs_seen]
                self._inputs_seen += 1
                self.loop.set_time(item.at)
                if self.on_input is not None:
                    self.on_input(item)
                self._deliver(item.kind, item.ref)
                self._run()
            if (
                self.divergence is None
                and self._inputs_seen == len(inputs)
                and self._made < len(state.decisions)
            ):
                missing = state.decisions[self._made]
                self.divergence = NondeterminismError(
                    self.workflow_id, missing.seq, missing.describe(), None, self._waiting_at()
                )
        finally:
            asyncio_events._set_running_loop(outer_loop)
            _current.reset(token)
        if self.divergence is not None:
            self._close_unawaited()
            raise self.divergence
        if self.finished and self._awaitables:
            # Calls the code made and never awaited: nothing was recorded or run for
            # them. Name them (the engine tells the user), then let them go quietly.
            self.never_awaited = [c.__qualname__ for c in self._awaitables if _unstarted(c)]
            self._close_unawaited()
        return self._new

    @property
    def is_replaying(self) -> bool:
        """True while the code is catching up with decisions already in the log."""
        return self._state is not None and self._made < len(self._state.decisions)

    def info(self) -> WorkflowInfo:
        """What ``duralog.workflow_info()`` returns inside this workflow."""
        state = self._state
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
        found = self._steps.get(seq)
        return found[0] if found else None

    def live_timers(self) -> list[int]:
        """Seqs of timers the code still waits on (started, not fired, not cancelled)."""
        return list(self._timers)

    def _start(self, state: WorkflowState) -> None:
        try:
            args, kwargs = self.workflow.decode_args(state.args, state.kwargs)
        except PayloadError as exc:
            with contextlib.suppress(_Diverged):
                self._finish_failed(exc, with_traceback=False)
            return

        async def main() -> Any:
            return await self.workflow.fn(*args, **kwargs)

        self._task = self.loop.create_task(main(), name=f"workflow {self.workflow_id}")
        self._run()

    def _close_unawaited(self) -> None:
        # Step calls made before the divergence (say, arguments of a gather that
        # never ran) would otherwise warn "coroutine was never awaited".
        for coro in self._awaitables:
            if _unstarted(coro):
                coro.close()
        self._awaitables.clear()

    def _run(self) -> None:
        self.loop.run_until_idle()
        if self._awaitables:
            self._awaitables = [c for c in self._awaitables if _unstarted(c)]
        task = self._task
        if task is None or self.finished or self.divergence is not None:
            return
        try:
            if self._ending is not None:
                if not self._children:  # the last child wound down: the run ends now
                    ending, self._ending = self._ending, None
                    ending()
                return
            if not task.done():
                return
            ending = self._ending_of(task)
            if self._state_format() >= 2 and self._cancelled_at is not None and self._children:
                # Cancelled, with children still winding down (they were cancelled too):
                # their cleanup runs to its end before the run ends.
                self._ending = ending
                return
            ending()
        except _Diverged:
            return

    def _state_format(self) -> int:
        state = self._state
        assert state is not None
        return state.format

    def _ending_of(self, task: asyncio.Task[Any]) -> Callable[[], None]:
        """The terminal decision for the way the workflow's code ended."""
        if self._timed_out and (task.cancelled() or self._state_format() >= 2):
            # Past its deadline, a run fails with WorkflowTimeout however its code ended
            # (it may catch the cancellation to clean up first).
            return lambda: self._finish_failed(self._timeout_error(), with_traceback=False)
        if task.cancelled():
            return self._finish_cancelled
        exc = task.exception()
        if exc is None:
            result = task.result()
            return lambda: self._finish_completed(result)
        if isinstance(exc, ContinueAsNew):
            return lambda: self._finish_continued(exc)
        if isinstance(exc, _Diverged | _Ended):
            return lambda: None
        return lambda: self._finish_failed(exc)

    def _timeout_error(self, cut_short: bool = False) -> WorkflowTimeout:
        state = self._state
        assert state is not None
        limit = (state.deadline or 0.0) - state.started_at
        message = f"workflow {self.workflow_id!r} exceeded its timeout of {limit:g}s"
        if cut_short:
            message += ", and its cleanup did not finish within its grace period"
        return WorkflowTimeout(message)

    def _finish_cancelled(self) -> None:
        self._decide("WorkflowCancelled", "", lambda: ev.WorkflowCancelled())
        self.finished = True

    def _cut_short(self) -> None:
        """The cleanup grace period is over: end the run now, without what its code (or
        its children) still had to do."""
        if self.finished:
            return
        self.cut_short = True
        if self._timed_out:
            ending: Callable[[], None] = lambda: self._finish_failed(  # noqa: E731
                self._timeout_error(cut_short=True), with_traceback=False
            )
        elif self._ending is not None:
            ending = self._ending
        else:
            ending = self._finish_cancelled
        self._ending = None
        try:
            ending()
        except _Diverged:
            return
        task = self._task
        if task is not None and not task.done():
            task.cancel()  # unwind it: anything it still tries to do raises _Ended
            with contextlib.suppress(BaseException):
                self.loop.run_until_idle()

    def grace_from(self) -> float | None:
        """The workflow time from which a cleanup grace period counts, while one runs:
        the deadline of a run that timed out, or the first cancel request of a run
        whose code ended but whose children still wind down. None otherwise."""
        state = self._state
        if self.finished or state is None or state.format < 2:
            return None
        if self._timed_out:
            return state.deadline
        if self._ending is not None:
            return self._cancelled_at
        return None

    def _finish_completed(self, value: Any) -> None:
        try:
            result = codec.encode(value)
        except PayloadError as exc:
            self._finish_failed(
                PayloadError(
                    f"workflow {self.workflow.name!r} returned a value that cannot be "
                    f"recorded: {exc}; {codec.SUPPORTED_HINT}"
                ),
                with_traceback=False,
            )
            return
        self._decide("WorkflowCompleted", "", lambda: ev.WorkflowCompleted(result=result))
        self.finished = True

    def _finish_continued(self, request: ContinueAsNew) -> None:
        try:
            args, kwargs = codec.encode_call(request.args_, request.kwargs_)
        except PayloadError as exc:
            self._finish_failed(
                PayloadError(
                    f"workflow {self.workflow.name!r} continued as new with input that "
                    f"cannot be recorded: {exc}; {codec.SUPPORTED_HINT}"
                ),
                with_traceback=False,
            )
            return
        self._decide("ContinuedAsNew", "", lambda: ev.ContinuedAsNew(args=args, kwargs=kwargs))
        self.finished = True

    def _finish_failed(self, exc: BaseException, with_traceback: bool = True) -> None:
        details = details_of(exc, with_traceback)
        self._decide("WorkflowFailed", "", lambda: ev.WorkflowFailed(error=details))
        self.finished = True

    def _deliver(self, kind: str, ref: int) -> None:
        state = self._state
        assert state is not None
        if kind in ("StepCompleted", "StepFailed"):
            found = self._steps.pop(ref, None)
            if found is None:
                self._unexpected_input(kind, ref)
                return
            step, future = found
            if future.done():
                return
            view = state.steps[ref]
            if kind == "StepCompleted":
                try:
                    future.set_result(step.decode_result(view.result))
                except PayloadError as exc:
                    future.set_exception(exc)
            else:
                error = view.error or ErrorDetails("Unknown", "no error recorded")
                try:  # the code sees the error as it was raised, decrypted
                    failure: Exception = StepFailed(
                        self.workflow_id, view.name, ref, view.attempt, unseal_error(error)
                    )
                except PayloadError as exc:
                    failure = exc
                future.set_exception(failure)
        elif kind == "TimerFired":
            handle = self._timers.pop(ref, None)
            if handle is not None:
                self._timer_seqs.pop(id(handle), None)
                self.loop.fire(handle)
        elif kind in ("ChildCompleted", "ChildFailed"):
            found_child = self._children.pop(ref, None)
            if found_child is None:
                self._unexpected_input(kind, ref)
                return
            child, waiter = found_child
            child_id = state.children[ref]
            if waiter.done():
                return
            if kind == "ChildCompleted":
                try:
                    waiter.set_result(codec.decode(state.child_results[ref], child.result_type))
                except PayloadError as exc:
                    waiter.set_exception(exc)
            else:
                try:
                    waiter.set_exception(
                        WorkflowFailed(child_id, unseal_error(state.child_errors[ref]))
                    )
                except PayloadError as exc:
                    waiter.set_exception(exc)
        elif kind == "SignalReceived":
            signal = state.signals[ref]
            self._signals.setdefault(signal.name, collections.deque()).append(ref)
            self._hand_out_signals(signal.name)
        elif kind == "CancelRequested":
            self._cancel(state.cancel_reasons[ref])
        # Child results are inputs of a later primitive; nothing waits on them yet.

    def _cancel(self, reason: str) -> None:
        task = self._task
        if self._state_format() < 2:  # as format 1 recorded it: every request cancels
            if task is not None and not task.done():
                self._timed_out = reason == ev.TIMEOUT_REASON
                task.cancel()
            return
        if reason == ev.GRACE_REASON:
            self._cut_short()
            return
        if reason == ev.TIMEOUT_REASON:
            self._timed_out = True
        if self._cancelled_at is not None:
            return  # cancelled already: a cleanup under way is not interrupted again
        self._cancelled_at = self.loop.time()
        if task is not None and not task.done():
            task.cancel()

    def _hand_out_signals(self, name: str) -> None:
        queue, waiters = self._signals.get(name), self._signal_waiters.get(name)
        state = self._state
        assert state is not None
        while queue and waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # a waiter whose timeout expired is skipped
                waiter.set_result(state.signals[queue.popleft()].payload)

    def _unexpected_input(self, kind: str, ref: int) -> None:
        state = self._state
        assert state is not None
        if self._made < len(state.decisions):
            missing = state.decisions[self._made]
            self.divergence = NondeterminismError(
                self.workflow_id, missing.seq, missing.describe(), None, self._waiting_at()
            )

    # -- decisions ---------------------------------------------------------

    def _decide(self, kind: str, name: str, make: Callable[[], ev.Event]) -> tuple[int, bool]:
        """Match or make one decision; returns (seq, is_new)."""
        if self.divergence is not None:
            # Tasks of one loop turn (gather, a DAG, map) keep deciding after the
            # first mismatch: the report must name that first one.
            raise _Diverged
        if self.finished:
            raise _Ended
        state = self._state
        assert state is not None
        index = self._made
        if index < len(state.decisions):
            self._made += 1
            recorded = state.decisions[index]
            if recorded.kind != kind or recorded.name != name:
                self.divergence = NondeterminismError(
                    self.workflow_id,
                    recorded.seq,
                    recorded.describe(),
                    f"{kind} {name}".rstrip(),
                    (kind not in ev.TERMINAL_KINDS and _caller_location()) or self._defined_at(),
                )
                raise _Diverged
            return recorded.seq, False
        # make() may raise (an argument that cannot be encoded, a failing
        # side_effect): nothing is consumed unless the decision really exists.
        event = make()
        seq = self._next_seq
        self._next_seq += 1
        self._made += 1
        self._new.append((seq, event))
        return seq, True

    def call_step(
        self, step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """A step call: the coroutine records (or matches) ``StepScheduled`` when the
        awaiting task first runs it, then resolves with the step's result."""

        def schedule() -> asyncio.Future[Any]:
            def scheduled() -> ev.Event:
                encoded_args, encoded_kwargs = self._encode_call(
                    f"the arguments of step {step.name!r}",
                    args,
                    kwargs,
                    " (inject clients and connections into the step instead of passing them)",
                )
                return ev.StepScheduled(name=step.name, args=encoded_args, kwargs=encoded_kwargs)

            seq, _ = self._decide("StepScheduled", step.name, scheduled)
            future = self.loop.create_future()
            self._steps[seq] = (step, future)
            return future

        return self._call(schedule, step.name)

    def start_child(
        self, workflow: Workflow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """A child workflow call: the coroutine records (or matches) ``ChildStarted``
        when the awaiting task first runs it, then resolves with the child's result.

        The child's id is ``<parent id>/<seq>``: deterministic, so a replay or a
        recovery finds the same child instead of starting another.
        """

        def schedule() -> asyncio.Future[Any]:
            def started() -> ev.Event:
                encoded_args, encoded_kwargs = self._encode_call(
                    f"the input of child workflow {workflow.name!r}", args, kwargs
                )
                state = self._state
                assert state is not None
                run = "" if state.run == 1 else f"{state.run}."
                child_id = f"{self.workflow_id}/{run}{self._next_seq}"  # the seq it gets
                return ev.ChildStarted(
                    child_id=child_id, name=workflow.name, args=encoded_args, kwargs=encoded_kwargs
                )

            seq, _ = self._decide("ChildStarted", workflow.name, started)
            future = self.loop.create_future()
            self._children[seq] = (workflow, future)
            return future

        return self._call(schedule, workflow.name)

    def _call(
        self, schedule: Callable[[], asyncio.Future[Any]], name: str
    ) -> Coroutine[Any, Any, Any]:
        """The coroutine of a step or child call. From event format 2 on, ``schedule``
        runs when the coroutine first runs (nothing is recorded or run for a call
        never awaited, or whose task was cancelled before it started); runs recorded
        in format 1 scheduled at the call, and replay them that way."""
        state = self._state
        assert state is not None
        if state.format < 2:
            awaitable = _await(schedule())
        else:
            coroutine = typing.cast("types.CoroutineType[Any, Any, Any]", _scheduled(schedule))
            # Python warns about a call never awaited: let it name the step, as it
            # would name a plain coroutine function.
            coroutine.__qualname__ = coroutine.__name__ = name
            awaitable = coroutine
        # Kept until it starts, so a divergence can close it instead of leaving a
        # "never awaited" coroutine behind.
        self._awaitables.append(awaitable)
        return awaitable

    def _encode_call(
        self, what: str, args: tuple[Any, ...], kwargs: dict[str, Any], advice: str = ""
    ) -> tuple[msgspec.Raw, msgspec.Raw]:
        try:
            return codec.encode_call(args, kwargs)
        except PayloadError as exc:
            raise PayloadError(
                f"cannot record {what} in workflow {self.workflow_id!r}: {exc}; "
                f"{codec.SUPPORTED_HINT}{advice}"
            ) from None

    def child_of(self, seq: int) -> Workflow[Any, Any] | None:
        """The child workflow the code started at ``seq``, while it is unresolved."""
        found = self._children.get(seq)
        return found[0] if found else None

    def record_marker(self, marker: str, produce: Callable[[], Any], tp: Any = Any) -> Any:
        """Record (or read back) a non-deterministic value; returns it decoded."""
        state = self._state
        assert state is not None
        holder: list[msgspec.Raw] = []

        def make() -> ev.Event:
            holder.append(codec.encode(produce()))
            return ev.MarkerRecorded(marker=marker, value=holder[0])

        seq, new = self._decide("MarkerRecorded", marker, make)
        raw = holder[0] if new else state.markers[seq].value
        return codec.decode(raw, tp)

    async def wait_signal(self, name: str) -> msgspec.Raw:
        """The next signal ``name``: one already buffered, or the next to arrive."""
        queue = self._signals.get(name)
        if queue:
            state = self._state
            assert state is not None
            return state.signals[queue.popleft()].payload
        waiter: asyncio.Future[Any] = self.loop.create_future()
        self._signal_waiters.setdefault(name, collections.deque()).append(waiter)
        received: msgspec.Raw = await waiter
        return received

    def publish(self, key: str, value: Any) -> None:
        """Record ``value`` as the workflow's published state under ``key``."""
        try:
            raw = codec.encode(value)
        except PayloadError as exc:
            raise PayloadError(
                f"cannot publish {key!r} from workflow {self.workflow_id!r}: {exc}"
            ) from None
        self._decide("StatePublished", key, lambda: ev.StatePublished(key=key, value=raw))

    def unconsumed_signals(self) -> list[tuple[str, msgspec.Raw]]:
        """Signals received but never waited for, in the order they arrived."""
        state = self._state
        assert state is not None
        refs = sorted(ref for queue in self._signals.values() for ref in queue)
        return [(state.signals[ref].name, state.signals[ref].payload) for ref in refs]

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
        state = self._state
        assert state is not None
        if self._made < len(state.decisions):
            found = self._consume_patch_marker(patch_id)
            self._patches[patch_id] = found
            return found
        value = codec.encode(patch_id)
        self._decide(
            "MarkerRecorded", "patch", lambda: ev.MarkerRecorded(marker="patch", value=value)
        )
        self._patches[patch_id] = True
        return True

    def deprecate_patch(self, patch_id: str) -> None:
        """The new path of ``patch_id`` is the only one now: consume its marker if recorded."""
        self._consume_patch_marker(patch_id)

    def _consume_patch_marker(self, patch_id: str) -> bool:
        """Match the next recorded decision if it is the patch marker of ``patch_id``."""
        state = self._state
        assert state is not None
        if self._made >= len(state.decisions):
            return False
        recorded = state.decisions[self._made]
        found = (
            recorded.kind == "MarkerRecorded"
            and recorded.name == "patch"
            and codec.decode(state.markers[recorded.seq].value) == patch_id
        )
        if found:
            self._made += 1
        return found

    # -- timers (called by the loop) ---------------------------------------

    def timer_started(self, handle: asyncio.TimerHandle) -> None:
        when = handle.when()
        seq, _ = self._decide("TimerStarted", "", lambda: ev.TimerStarted(fire_at=when))
        self._timers[seq] = handle
        self._timer_seqs[id(handle)] = seq

    def timer_cancelled(self, handle: asyncio.TimerHandle) -> None:
        seq = self._timer_seqs.pop(id(handle), None)
        if seq is not None:
            self._timers.pop(seq, None)

    # -- locations for divergence reports ----------------------------------

    def _defined_at(self) -> str:
        code = getattr(self.workflow.fn, "__code__", None)
        return f"{code.co_filename}:{code.co_firstlineno}" if code else self.workflow.name

    def waiting_at(self) -> str | None:
        """``file:line`` where the workflow code waits now (its definition once it ended)."""
        return self._waiting_at()

    def _waiting_at(self) -> str | None:
        task = self._task
        if task is None or task.done():
            return self._defined_at()
        # Follow the chain of awaits down to the innermost frame of user code.
        found, awaited = None, typing.cast(Any, task.get_coro())
        while awaited is not None and getattr(awaited, "cr_frame", None) is not None:
            if not _is_internal(awaited.cr_frame):
                found = awaited.cr_frame
            awaited = getattr(awaited, "cr_await", None)
        return _location_of(found) if found is not None else None


def _unstarted(coro: Coroutine[Any, Any, Any]) -> bool:
    return inspect.getcoroutinestate(coro) == inspect.CORO_CREATED


async def _await(future: asyncio.Future[Any]) -> Any:
    return await future


async def _scheduled(schedule: Callable[[], asyncio.Future[Any]]) -> Any:
    return await schedule()


def _caller_location() -> str | None:
    """The user code that made the call, or None when it was duralog's own code
    (a task a DAG or ``map`` created): the walk stops at the event loop, beyond
    which is only whatever drives the loop (the worker, ``duralog replay``)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_run" and frame.f_globals.get("__name__") == "asyncio.events":
            return None
        if not _is_internal(frame):
            return _location_of(frame)
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _is_internal(frame: Any) -> bool:
    module: str = frame.f_globals.get("__name__", "")
    return module.partition(".")[0] in ("duralog", "asyncio")


def _location_of(frame: Any) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"
