"""What a run's code waits on, and the inputs that resolve it.

``Waits`` keeps, by seq, the steps, children and timers the code awaits and the
signals it waits for; ``deliver`` hands one input (a step result or failure, a
child's end, a fired timer, a signal) to whatever waits on it. ``PendingCalls``
keeps the step and child calls whose coroutines have not started yet: nothing is
recorded or run for them until they do.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import types
import typing
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from duralog.errors import ErrorDetails, PayloadError, StepFailed, WorkflowFailed
from duralog.store import codec
from duralog.store.envelope import PayloadCodec, unseal_error

from .definitions import Step, Workflow
from .loop import WorkflowLoop
from .state import WorkflowState


class Waits:
    """The futures, timers and signal queues of one run's code.

    Args:
        workflow_id: the run's id (named in the ``StepFailed`` the code sees).
        loop: the run's loop (futures are created on it, timers fired by it).
        payload_codec: opens the results and errors handed to the code (None: none).
    """

    def __init__(
        self, workflow_id: str, loop: WorkflowLoop, payload_codec: PayloadCodec | None = None
    ) -> None:
        self.workflow_id = workflow_id
        self.loop = loop
        self.payload_codec = payload_codec
        #: The steps the code awaits, by seq: each with its future.
        self.steps: dict[int, tuple[Step[Any, Any], asyncio.Future[Any]]] = {}
        self._children: dict[int, tuple[Workflow[Any, Any], asyncio.Future[Any]]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._timer_seqs: dict[int, int] = {}
        self._signals: dict[str, collections.deque[int]] = {}  # name -> indexes in state.signals
        self._signal_waiters: dict[str, collections.deque[asyncio.Future[Any]]] = {}

    # -- what the code waits on ----------------------------------------------

    def add_step(self, seq: int, step: Step[Any, Any]) -> asyncio.Future[Any]:
        """The future of the step scheduled at ``seq``."""
        future: asyncio.Future[Any] = asyncio.Future(loop=self.loop)  # loop.create_future()
        self.steps[seq] = (step, future)
        return future

    def add_child(self, seq: int, workflow: Workflow[Any, Any]) -> asyncio.Future[Any]:
        """The future of the child workflow started at ``seq``."""
        future = self.loop.create_future()
        self._children[seq] = (workflow, future)
        return future

    def add_timer(self, seq: int, handle: asyncio.TimerHandle) -> None:
        """The loop's timer ``handle``, recorded at ``seq``."""
        self._timers[seq] = handle
        self._timer_seqs[id(handle)] = seq

    def cancel_timer(self, handle: asyncio.TimerHandle) -> None:
        """The code cancelled ``handle``: it waits on it no more."""
        seq = self._timer_seqs.pop(id(handle), None)
        if seq is not None:
            self._timers.pop(seq, None)

    def step_of(self, seq: int) -> Step[Any, Any] | None:
        """The step definition the code called at ``seq``, while it is unresolved."""
        found = self.steps.get(seq)
        return found[0] if found else None

    def child_of(self, seq: int) -> Workflow[Any, Any] | None:
        """The child workflow the code started at ``seq``, while it is unresolved."""
        found = self._children.get(seq)
        return found[0] if found else None

    def live_timers(self) -> list[int]:
        """Seqs of timers the code still waits on (started, not fired, not cancelled)."""
        return list(self._timers)

    @property
    def has_children(self) -> bool:
        """Whether a child the code started has not ended yet."""
        return bool(self._children)

    # -- inputs -----------------------------------------------------------------

    def deliver(self, state: WorkflowState, kind: str, ref: int) -> bool:
        """Hand the input ``kind`` about ``ref`` to what waits on it.

        Returns False when it is the result of a step or a child the code never
        called (a divergence, if recorded decisions remain).
        """
        if kind == "StepCompleted":  # the common input first, resolved inline
            found = self.steps.pop(ref, None)
            if found is None:
                return False
            step, future = found
            if not future.done():
                try:
                    future.set_result(
                        step.decode_result(state.steps[ref].result, self.payload_codec)
                    )
                except PayloadError as exc:
                    future.set_exception(exc)
        elif kind == "StepFailed":
            found = self.steps.pop(ref, None)
            if found is None:
                return False
            step, future = found
            if not future.done():
                self._resolve_step(state, kind, ref, step, future)
        elif kind == "TimerFired":
            handle = self._timers.pop(ref, None)
            if handle is not None:
                self._timer_seqs.pop(id(handle), None)
                self.loop.fire(handle)
        elif kind in ("ChildCompleted", "ChildFailed"):
            found_child = self._children.pop(ref, None)
            if found_child is None:
                return False
            child, waiter = found_child
            if not waiter.done():
                _resolve_child(state, kind, ref, child, waiter, self.payload_codec)
        elif kind == "SignalReceived":
            signal = state.signals[ref]
            self._signals.setdefault(signal.name, collections.deque()).append(ref)
            self._hand_out_signals(state, signal.name)
        return True

    def _resolve_step(
        self,
        state: WorkflowState,
        kind: str,
        ref: int,
        step: Step[Any, Any],
        future: asyncio.Future[Any],
    ) -> None:
        view = state.steps[ref]
        if kind == "StepCompleted":
            try:
                future.set_result(step.decode_result(view.result, self.payload_codec))
            except PayloadError as exc:
                future.set_exception(exc)
            return
        error = view.error or ErrorDetails("Unknown", "no error recorded")
        try:  # the code sees the error as it was raised, decrypted
            failure: Exception = StepFailed(
                self.workflow_id,
                view.name,
                ref,
                view.attempt,
                unseal_error(error, self.payload_codec),
            )
        except PayloadError as exc:
            failure = exc
        future.set_exception(failure)

    # -- signals ----------------------------------------------------------------

    async def wait_signal(self, state: WorkflowState, name: str) -> msgspec.Raw:
        """The next signal ``name``: one already buffered, or the next to arrive."""
        queue = self._signals.get(name)
        if queue:
            return state.signals[queue.popleft()].payload
        waiter: asyncio.Future[Any] = self.loop.create_future()
        self._signal_waiters.setdefault(name, collections.deque()).append(waiter)
        received: msgspec.Raw = await waiter
        return received

    def _hand_out_signals(self, state: WorkflowState, name: str) -> None:
        queue, waiters = self._signals.get(name), self._signal_waiters.get(name)
        while queue and waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # a waiter whose timeout expired is skipped
                waiter.set_result(state.signals[queue.popleft()].payload)

    def unconsumed_signals(self, state: WorkflowState) -> list[tuple[str, msgspec.Raw]]:
        """Signals received but never waited for, in the order they arrived."""
        refs = sorted(ref for queue in self._signals.values() for ref in queue)
        return [(state.signals[ref].name, state.signals[ref].payload) for ref in refs]


def _resolve_child(
    state: WorkflowState,
    kind: str,
    ref: int,
    child: Workflow[Any, Any],
    waiter: asyncio.Future[Any],
    payload_codec: PayloadCodec | None,
) -> None:
    if kind == "ChildCompleted":
        try:
            result = state.child_results[ref]
            waiter.set_result(codec.decode(result, child.result_type, payload_codec=payload_codec))
        except PayloadError as exc:
            waiter.set_exception(exc)
        return
    try:
        waiter.set_exception(
            WorkflowFailed(
                state.children[ref], unseal_error(state.child_errors[ref], payload_codec)
            )
        )
    except PayloadError as exc:
        waiter.set_exception(exc)


class PendingCalls:
    """Step and child calls whose coroutines have not started yet.

    From event format 2 on, a call is scheduled when its coroutine first runs:
    nothing is recorded or run for a call never awaited, or whose task was
    cancelled before it started. Runs recorded in format 1 scheduled at the call,
    and replay that way.

    A call's coroutine takes itself out of ``waiting`` as it starts (no scan of
    them all after every loop turn); one closed before it ever started (its task
    was cancelled first) is dropped after the turn. ``WorkflowInstance.call_step``
    makes a lazy step call's coroutine itself, the same way (``_step_call``).
    """

    def __init__(self) -> None:
        #: The calls not started yet, by key, in call order (empty: nothing to forget).
        self.waiting: dict[int, Coroutine[Any, Any, Any]] = {}
        #: How many calls were made (each call's key).
        self.made = 0

    def call(
        self, schedule: Callable[[], asyncio.Future[Any]], name: str, lazy: bool
    ) -> Coroutine[Any, Any, Any]:
        """The coroutine of a call; ``schedule`` records it and returns its future,
        when the coroutine first runs (``lazy``) or now (format 1)."""
        self.made = key = self.made + 1
        if not lazy:
            awaitable = _await(schedule(), self.waiting, key)
        else:
            awaitable = _scheduled(schedule, self.waiting, key)
            # Python warns about a call never awaited: let it name the step, as it
            # would name a plain coroutine function.
            awaitable.__qualname__ = awaitable.__name__ = name  # type: ignore[attr-defined]
        # Kept until it starts, so a divergence can close it instead of leaving a
        # "never awaited" coroutine behind.
        self.waiting[key] = awaitable
        return awaitable

    def forget_started(self) -> None:
        """Drop the calls that will never start (closed unstarted), after a loop turn."""
        calls = self.waiting
        if calls:
            for key in [key for key, c in calls.items() if not _unstarted(c)]:
                del calls[key]

    def never_awaited(self) -> list[str]:
        """Names of the calls whose coroutines never started."""
        return [_name(c) for c in self.waiting.values() if _unstarted(c)]

    def close(self) -> None:
        """Close the calls never started, so that Python does not warn "coroutine was
        never awaited" (arguments of a gather that never ran, say), and forget them."""
        for coro in list(self.waiting.values()):
            if _unstarted(coro):
                coro.close()
        self.waiting.clear()

    def __bool__(self) -> bool:
        return bool(self.waiting)


def _name(coro: Coroutine[Any, Any, Any]) -> str:
    return typing.cast("types.CoroutineType[Any, Any, Any]", coro).__qualname__


def _unstarted(coro: Coroutine[Any, Any, Any]) -> bool:
    return inspect.getcoroutinestate(coro) == inspect.CORO_CREATED


async def _await(
    future: asyncio.Future[Any], calls: dict[int, Coroutine[Any, Any, Any]], key: int
) -> Any:
    del calls[key]  # started: no longer a call to close or to name
    return await future


async def _scheduled(
    schedule: Callable[[], asyncio.Future[Any]],
    calls: dict[int, Coroutine[Any, Any, Any]],
    key: int,
) -> Any:
    del calls[key]  # started: no longer a call to close or to name
    return await schedule()
