"""One attempt of a step: its context, its guard, where it runs, and its timeout.

``StepAttempts`` runs a worker's attempts: async steps on the worker's loop, sync
ones on a step thread, inline ones right on the loop. A circuit breaker or injected
resources wrap an attempt as its guards (``hooks.py``). It knows the workflow only
through ``AttemptOwner``.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from duralog.replay.definitions import Step
from duralog.replay.state import WorkflowState

from . import hooks
from .api import StepInfo, _step_info, step_resources
from .heartbeats import AttemptControl
from .lease import Lease
from .threads import StepThreads


class AttemptOwner(Protocol):
    """What an attempt needs of the workflow it belongs to (an ``Execution``)."""

    @property
    def workflow_id(self) -> str: ...
    @property
    def state(self) -> WorkflowState: ...
    @property
    def lease(self) -> Lease: ...
    @property
    def attempts(self) -> dict[int, asyncio.Task[Any]]:
        """The running attempts of its async steps, by seq (a cancel stops them)."""
        ...

    async def hold_lease(self) -> None:
        """Return only while the workflow's lease is sure (``LeaseLost`` otherwise)."""


class StepAttempts:
    """Runs the step attempts of one worker: async steps on its loop, sync ones on its
    step threads, inline ones right on the loop; each within its guards."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, threads: StepThreads, host: hooks.AttemptHost
    ) -> None:
        self.loop = loop
        self.threads = threads
        self._host = host
        self._guards: dict[Step[Any, Any], tuple[hooks.AttemptGuard, ...]] = {}

    async def run(
        self,
        execution: AttemptOwner,
        step: Step[Any, Any],
        seq: int,
        attempt: int,
        args: list[Any],
        kwargs: dict[str, Any],
        control: AttemptControl,
    ) -> Any:
        """One attempt of a step, bounded by its timeout and its heartbeat timeout; raises
        what the step raised. ``control`` is what the attempt shares with the worker
        (its heartbeats, whether it should stop, its stream).

        The step's guards (``hooks.py``: injected resources, a circuit breaker) run
        around the attempt; most steps have none."""
        context, info = self._context(execution, step, seq, attempt, control)
        guards = self._guards_of(step)
        try:
            if guards:
                value = await self._guarded(guards, execution, step, info, context, args, kwargs)
            elif step.timeout is None and step.heartbeat_timeout is None:
                while True:  # ``attempt``, the common case: no timeout to watch
                    try:
                        value = await self.begin(execution, step, info, context, args, kwargs)
                        break
                    except _NotStarted:
                        await execution.hold_lease()
            else:
                value = await self.attempt(execution, step, info, context, args, kwargs)
        finally:
            stream = control.end_streams()  # what the attempt writes after this is refused
        if stream is not None:
            stream.succeeded()  # its closes, which a failed attempt never makes
        return value

    def run_now(
        self,
        execution: AttemptOwner,
        step: Step[Any, Any],
        seq: int,
        attempt: int,
        args: list[Any],
        kwargs: dict[str, Any],
        control: AttemptControl,
    ) -> Any:
        """``run`` for an inline sync step with no guard and no timeout (``now_runs``):
        the attempt, right here, without a coroutine or a future."""
        context, _ = self._context(execution, step, seq, attempt, control)
        try:
            value = context.run(step.fn, *args, **kwargs)
        finally:
            stream = control.end_streams()  # what the attempt writes after this is refused
        if stream is not None:
            stream.succeeded()
        return value

    def _context(
        self,
        execution: AttemptOwner,
        step: Step[Any, Any],
        seq: int,
        attempt: int,
        control: AttemptControl,
    ) -> tuple[contextvars.Context, StepInfo]:
        """The attempt's own context, holding what ``duralog.step_info()`` returns."""
        context = contextvars.copy_context()
        state = execution.state
        info = StepInfo(
            execution.workflow_id,
            step.name,
            seq,
            attempt,
            state.name,
            state.run_id,
            execution.lease,
            control,
        )
        context.run(_enter, info, self._host.resources)
        return context, info

    def now_runs(self, step: Step[Any, Any]) -> bool:
        """Whether an attempt of ``step`` can be ``run_now``: inline, sync, unguarded and
        untimed."""
        if not step.inline or step.is_async or step.timeout is not None:
            return False
        if step.heartbeat_timeout is not None:
            return False
        return not self._guards_of(step)

    def _guards_of(self, step: Step[Any, Any]) -> tuple[hooks.AttemptGuard, ...]:
        """The step's guards, looked up once per step definition."""
        guards = self._guards.get(step)
        if guards is None:
            guards = self._guards[step] = hooks.guards_of(step, self._host.registry)
        return guards

    async def _guarded(
        self,
        guards: tuple[hooks.AttemptGuard, ...],
        execution: AttemptOwner,
        step: Step[Any, Any],
        info: StepInfo,
        context: contextvars.Context,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> Any:
        """The attempt inside its guards, the first one outermost. (Not in ``run``: the
        closures here turn every local they use into a cell, allocated on each call and
        kept for the whole attempt, which an unguarded attempt should not pay for.)"""

        async def call(at: int, kwargs: dict[str, Any]) -> Any:
            if at == len(guards):
                return await self.attempt(execution, step, info, context, args, kwargs)

            async def proceed(inner: dict[str, Any]) -> Any:
                return await call(at + 1, inner)

            return await guards[at].run(self._host, info, context, kwargs, proceed)

        return await call(0, kwargs)

    def aside(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run a blocking store call ``fn(*args)`` off the loop, on the guards' threads
        (never behind long sync steps): how heartbeat details are stored."""
        return asyncio.ensure_future(self._host.run_aside(contextvars.Context(), fn, *args))

    async def attempt(
        self,
        execution: AttemptOwner,
        step: Step[Any, Any],
        info: StepInfo,
        context: contextvars.Context,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> Any:
        """Call the step once in ``context``, bounded by its timeout."""
        while True:
            awaitable = self.begin(execution, step, info, context, args, kwargs)
            try:
                if step.timeout is None and step.heartbeat_timeout is None:
                    return await awaitable
                return await self.bounded(execution, step, info, awaitable)
            except _NotStarted:
                # It waited for a step thread longer than this worker may vouch for its
                # lease: renew (LeaseLost if the workflow went elsewhere), then go again.
                await execution.hold_lease()

    def begin(
        self,
        execution: AttemptOwner,
        step: Step[Any, Any],
        info: StepInfo,
        context: contextvars.Context,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> asyncio.Future[Any]:
        """Start one attempt: async steps on this loop, sync ones on a step thread
        (or, for an inline step, right here)."""
        if step.is_async:
            task = self.loop.create_task(step.fn(*args, **kwargs), context=context)
            execution.attempts[info.seq] = task
            return task
        if step.inline:
            done: asyncio.Future[Any] = self.loop.create_future()
            try:
                done.set_result(context.run(step.fn, *args, **kwargs))
            except Exception as exc:  # the step's error, handed over like a thread's
                done.set_exception(exc)
            return done
        if info.control is not None:
            info.control.last_beat = math.inf  # no silence while it waits for a thread
        return self.threads.run(
            context, _if_held, execution.lease, info.control, step.fn, args, kwargs
        )

    async def bounded(
        self,
        execution: AttemptOwner,
        step: Step[Any, Any],
        info: StepInfo,
        awaitable: asyncio.Future[Any],
    ) -> Any:
        """Wait for an attempt no longer than the step's timeout, nor past a silence
        longer than its heartbeat timeout (no ``duralog.heartbeat()`` for that long: the
        attempt is taken for hung). Past either, the attempt fails with ``TimeoutError``
        whatever its code does: it is cancelled (a sync step is told so at its next
        heartbeat), and not waited for (an async step that swallows the cancellation and
        returns, or keeps going, changes nothing; its outcome is dropped)."""
        control, silence = info.control, step.heartbeat_timeout
        started = time.monotonic()
        while True:
            now = time.monotonic()
            waits = []
            if step.timeout is not None:
                waits.append(started + step.timeout - now)
            if silence is not None and control is not None:  # (once a silence long)
                waits.append(min(control.last_beat + silence - now, silence))
            if not waits:  # a heartbeat timeout, but no control to watch (run without one)
                return await awaitable
            try:
                done, _ = await asyncio.wait((awaitable,), timeout=max(min(waits), 0.0))
            except asyncio.CancelledError:
                awaitable.cancel()  # the workflow or the worker stopped waiting: so does it
                raise
            if done:
                return awaitable.result()
            now = time.monotonic()
            if step.timeout is not None and now >= started + step.timeout:
                why = f"did not finish within its timeout of {step.timeout:g}s"
            elif silence is not None and control is not None and now >= control.last_beat + silence:
                why = (
                    f"had no heartbeat for {silence:g} s (its heartbeat_timeout), so it was "
                    "given up as hung"
                )
            else:
                continue  # it beat meanwhile: wait on
            awaitable.cancel()
            awaitable.add_done_callback(_drop_outcome)
            if control is not None:
                control.stop(f"the attempt was given up: it {why}")
            raise TimeoutError(
                f"step {step.name!r} (seq {info.seq}, attempt {info.attempt}) of workflow "
                f"{execution.workflow_id!r} {why}"
            )


def _drop_outcome(attempt: asyncio.Future[Any]) -> None:
    # An attempt abandoned at its timeout: retrieve its outcome so asyncio does not
    # report an exception nobody retrieved.
    if not attempt.cancelled():
        attempt.exception()


def _enter(info: StepInfo, resources: Any) -> None:
    # In the attempt's context: what ``duralog.step_info()`` and the resources read.
    _step_info.set(info)
    if resources:
        step_resources.set(resources)


class _NotStarted(BaseException):
    """A sync step's thread found the lease unsure and did not call the step."""


def _if_held(
    lease: Lease,
    control: AttemptControl | None,
    fn: Callable[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
) -> Any:
    # The last check before the step's side effects: on the step's own thread, after
    # any wait for a free thread (its heartbeat timeout counts from here).
    if not lease.holds():
        raise _NotStarted
    if control is not None:
        control.started()
    return fn(*args, **kwargs)
