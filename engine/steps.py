"""A step of one workflow, run to its end: attempts, retries, the events they leave.

Where a retry is decided is ``retry.py``; here the decision is recorded (``StepRetrying``),
waited out, and the next attempt started. Each attempt runs through the worker's
``StepAttempts`` (``attempts.py``), with an ``AttemptControl`` (``heartbeats.py``) whose
heartbeat details are stored here, at most every ``heartbeat_interval``, and passed on
to the step's next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from duralog.errors import (
    ErrorDetails,
    LeaseLost,
    PayloadError,
    StepCancelled,
    StoreError,
)
from duralog.replay.definitions import Step
from duralog.replay.failures import details_of
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.records import HeartbeatRecord

from .clock import sleep_until
from .heartbeats import AttemptControl
from .retry import next_attempt_at
from .streams import AttemptStream
from .tail import LogTail

log = logging.getLogger("duralog.engine")

#: ``_next_step`` while a step's task asks for the next step to run (seqs are >= 1).
_WANTED = -1


class StepLoop(LogTail):
    """The steps of an ``Execution``: each runs in a task of its own until it ends."""

    def activate(self) -> None:
        """Feed the instance what is new in the committed state (``Execution``)."""
        raise NotImplementedError

    async def _start_steps(self, seqs: list[int]) -> None:
        await self.flush()
        for seq in seqs:
            self.start_step(seq)

    def start_step(self, seq: int, attempt: int = 0, not_before: float | None = None) -> None:
        """Run the step the code called at ``seq`` (``attempt`` attempts already recorded)."""
        if seq in self.running or self.closed:
            return
        if self._next_step == _WANTED and not attempt and not_before is None:
            # Called as a step's task ends (``_activate_after_step``): it runs this one.
            task = asyncio.current_task()
            if task is not None:
                self._next_step = seq
                self.running[seq] = task
                return
        # A task of its own, not ``spawn``ed: it reports its own failure (``_run_step``),
        # which spares every step a done-callback; ``close`` cancels it.
        self.running[seq] = self.host.loop.create_task(self._run_step(seq, attempt, not_before))

    async def _run_step(self, seq: int, attempt: int, not_before: float | None) -> None:
        """A step's task: the step to its end, then, in the same task, the step the
        workflow called next if it can start at once (``start_step``), and so on: a
        sequence of steps costs one task, not one each. It reports its own failure
        (no done-callback per step)."""
        try:
            while True:
                await self._step(seq, attempt, not_before)
                following = self._activate_after_step()
                if following is None:
                    return
                seq, attempt, not_before = following, 0, None
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a lost lease, a damaged log: the worker decides
            self.host.failed(self, exc)

    def _activate_after_step(self) -> int | None:
        """``activate`` once a step ended; the new step it asked this task to run, if any."""
        self._next_step = _WANTED
        try:
            self.activate()
            following = self._next_step
        finally:
            self._next_step = None
        if following is None or following == _WANTED:
            return None
        if self.closed:  # ended meanwhile: close() spared the task it was called from
            self.running.pop(following, None)
            return None
        return following

    async def _step(self, seq: int, attempt: int, not_before: float | None) -> None:
        """Run step ``seq`` to its end: its attempts, its events committed."""
        step, scheduled = self.calls[seq]
        view = self.state.steps.get(seq)
        raw_args = scheduled.args if scheduled else view.args if view else ev.NULL
        raw_kwargs = scheduled.kwargs if scheduled else view.kwargs if view else ev.NULL
        policy = step.retry
        details: bytes | None = None  # the step's newest heartbeat details
        stored = False  # whether a heartbeats row may exist for the step
        try:
            if not_before is not None:
                self.retry_at[seq] = not_before
                await sleep_until(self.host.clock, not_before)
            args, kwargs = step.decode_args(raw_args, raw_kwargs, self.host.payload_codec)
            if scheduled is None or attempt:
                # An attempt may have run before this execution (on a worker that died):
                # the next one starts from the details it stored.
                details = await self._stored_details(seq)
                stored = details is not None
            while True:
                if not self._unpaused.is_set():
                    await self._unpaused.wait()  # a paused workflow starts no attempt
                if self._marker_seq > self.state.last_seq:
                    await self.flush()  # a recorded value must be on disk before any effect
                if not self.lease.holds():
                    await self.hold_lease()
                attempt += 1
                self.retry_at.pop(seq, None)
                started = self.add(ev.StepStarted(step_seq=seq, attempt=attempt))
                if not step.inline or step.is_async:  # an inline one ends before it
                    self._keep_visible()
                control = self._control(step, seq, attempt, details, started)
                failure: BaseException | None = None
                try:
                    attempts = self.host.attempts
                    if attempts.now_runs(step):
                        value = attempts.run_now(self, step, seq, attempt, args, kwargs, control)
                    else:
                        value = await attempts.run(self, step, seq, attempt, args, kwargs, control)
                    self.attempts.pop(seq, None)
                except asyncio.CancelledError as exc:
                    self.attempts.pop(seq, None)
                    current = asyncio.current_task()
                    if current is None or current.cancelling():
                        raise  # the worker stops or the workflow ended: record nothing
                    if not (isinstance(exc, StepCancelled) and exc.lease_lost):
                        # The attempt itself was cancelled: the workflow was cancelled.
                        stored = await self._attempt_over(control) or stored
                        error = ErrorDetails("Cancelled", "the workflow was cancelled while it ran")
                        self.add(ev.StepFailed(step_seq=seq, attempt=attempt, error=error))
                        break
                    # A sync step stopped at its heartbeat because the lease was unsure:
                    # LeaseLost if it is lost; if a renewal saves it, a failed attempt.
                    await self.hold_lease()
                    failure = exc
                except Exception as exc:
                    self.attempts.pop(seq, None)
                    failure = exc
                if failure is not None:
                    error = details_of(failure, with_traceback=True)
                    next_at = next_attempt_at(
                        policy, attempt, failure, self.host.random(), self.host.clock.now()
                    )
                    if next_at is not None:
                        self.retry_at[seq] = next_at
                        self.add(
                            ev.StepRetrying(
                                step_seq=seq,
                                attempt=attempt,
                                error=error,
                                next_attempt_at=next_at,
                            )
                        )
                        await self.flush()
                        # Stored before the wait, so that a crash during it keeps them.
                        stored = await self._attempt_over(control, keep=True) or stored
                        details = control.latest
                        await sleep_until(self.host.clock, next_at)
                        continue
                    stored = await self._attempt_over(control) or stored
                    self.add(ev.StepFailed(step_seq=seq, attempt=attempt, error=error))
                    break
                self._release(control)  # ``_attempt_over``, without a coroutine when it can
                if control.writer is not None:
                    await control.writer
                stored = control.stored or stored
                try:
                    result = codec.encode(value, self.host.payload_codec)
                    codec.check_size(
                        result,
                        self.host.options.max_payload_bytes,
                        f"the result of step {step.name!r}",
                    )
                except PayloadError as exc:
                    error = details_of(
                        PayloadError(
                            f"step {step.name!r} (seq {seq}) of workflow {self.workflow_id!r} "
                            f"returned a value of type {type(value).__qualname__} that cannot "
                            f"be recorded: {exc}"
                            + ("" if "over the limit" in str(exc) else f"; {codec.SUPPORTED_HINT}")
                        )
                    )
                    self.add(ev.StepFailed(step_seq=seq, attempt=attempt, error=error))
                    break
                self.add(ev.StepCompleted(step_seq=seq, result=result))
                break
        except PayloadError as exc:  # the recorded arguments no longer decode
            self.add(ev.StepFailed(step_seq=seq, attempt=max(attempt, 1), error=details_of(exc)))
        finally:
            self.running.pop(seq, None)
        await self.flush()
        if stored:  # the step ended: its details are of no use any more
            self.spawn(self._forget_details(seq))

    def attempt_stream(self, step: str, seq: int, attempt: int) -> AttemptStream:
        """Where attempt ``attempt`` of step ``seq`` writes to streams."""
        host = self.host
        return AttemptStream(
            self,
            host.loop,
            self.workflow_id,
            step,
            seq,
            attempt,
            host.payload_codec,
            host.options.max_payload_bytes,
        )

    def step_streamed(self, event: ev.StepStreamed) -> None:
        """Queue what a running step wrote to a stream (``engine/streams.py``) and commit
        it soon. Once the workflow has ended here (or no longer runs here), it is dropped:
        the attempt's outcome is not recorded either."""
        if self.closed or self.sealed:
            return
        self.add(event)
        if not self._stream_flush:
            self._stream_flush = True
            self.spawn(self._flush_streamed())

    async def _flush_streamed(self) -> None:
        self._stream_flush = False  # what is written from now on needs another round
        await self.flush()

    # -- heartbeats ----------------------------------------------------------

    def _control(
        self, step: Step[Any, Any], seq: int, attempt: int, details: bytes | None, started: int
    ) -> AttemptControl:
        """The control of a new attempt, starting from ``details``; when its details
        change, they are stored (once ``StepStarted``, at ``started``, is on disk)."""
        control = AttemptControl(
            self.workflow_id,
            step.name,
            seq,
            attempt,
            previous=details,
            lease=self.lease,
            payload_codec=self.host.payload_codec,
            max_bytes=self.host.options.max_payload_bytes,
        )
        # Called on the step's thread (or on the loop, for an async step).
        control.on_change = functools.partial(
            _tell_loop, self.host.loop, self._details_changed, control, started
        )
        control.streams = self
        self.controls[seq] = control
        return control

    def _details_changed(self, control: AttemptControl, started: int) -> None:
        if control.writer is None and not control.ended and not self.closed:
            if control.over is None:
                control.over = self.host.loop.create_future()
            control.writer = self.spawn(self._keep_details(control, started))

    async def _keep_details(self, control: AttemptControl, started: int) -> None:
        """Store the attempt's details as they change, at most every
        ``heartbeat_interval``; once the attempt is over, what is left at once."""
        try:
            while (details := control.take()) is not None:
                if self.state.last_seq < started:
                    # Details of a step whose start a crash could lose would never be
                    # read: the recovered run would take it for a new step.
                    await self.flush()
                await self._put_details(control, details)
                if control.over is not None:  # the interval, or less if the attempt ends
                    await asyncio.wait(
                        (control.over,), timeout=self.host.options.heartbeat_interval
                    )
        finally:
            control.writer = None  # no await since take(): a change now starts another

    async def _put_details(self, control: AttemptControl, details: bytes) -> None:
        record = HeartbeatRecord(
            self.workflow_id,
            control.seq,
            self.state.run_id,
            control.attempt,
            details,
            self.host.clock.now(),
        )
        try:
            held = await self.host.attempts.aside(self.host.store.put_heartbeat, record, self.fence)
        except StoreError as exc:  # progress notes: the step goes on without them
            log.warning(
                "could not store the heartbeat details of step %r (seq %d) of workflow %r: %s",
                control.step,
                control.seq,
                self.workflow_id,
                exc,
            )
            return
        if held:
            control.stored = True
        else:
            control.stop(
                "the store refused its heartbeat: another worker holds the workflow now, or "
                "it ended",
                lease_lost=True,
            )

    async def _attempt_over(self, control: AttemptControl, keep: bool = False) -> bool:
        """The attempt ended: with ``keep`` (another attempt follows), store its newest
        details first. True when a heartbeats row may exist for the step."""
        self._release(control)
        if control.writer is not None:
            await control.writer  # never cancelled: no write of it can land after ours
        if keep and (details := control.take()) is not None:
            await self._put_details(control, details)
        return control.stored

    def _release(self, control: AttemptControl) -> None:
        """The attempt ended: it is no longer this workflow's running attempt."""
        if self.controls.get(control.seq) is control:
            del self.controls[control.seq]
        control.end()
        # The callback holds the control: without it, the attempt's objects are freed
        # now rather than by the cyclic collector, whose passes grow with the garbage.
        control.on_change = None

    async def keep_heartbeats(self) -> None:
        """The worker stops: store each running attempt's newest details now, which
        would otherwise wait for the next ``heartbeat_interval`` and be lost (the next
        attempt, on any worker, starts from them)."""
        for control in list(self.controls.values()):
            control.end()  # no writer starts from now on: this is the last write
            if control.writer is not None:
                await control.writer  # it stores what is left at once, then ends
            if (details := control.take()) is not None:
                await self._put_details(control, details)

    async def _stored_details(self, seq: int) -> bytes | None:
        """The details an earlier attempt of step ``seq`` of this run stored, if any."""
        found = await self.host.attempts.aside(self.host.store.get_heartbeat, self.workflow_id, seq)
        if found is None or found.run_id != self.state.run_id:
            return None
        details: bytes = found.details
        return details

    async def _forget_details(self, seq: int) -> None:
        try:
            await self.host.attempts.aside(self.host.store.delete_heartbeats, self.workflow_id, seq)
        except StoreError as exc:  # a leftover row is read by no one
            log.warning(
                "could not delete the heartbeat details of seq %d of workflow %r: %s",
                seq,
                self.workflow_id,
                exc,
            )

    async def hold_lease(self) -> None:
        """Return only while this worker may be sure it still holds the workflow's lease:
        past what its own clocks vouch for, it renews first (and ``LeaseLost`` if the
        store gave the workflow to another worker meanwhile). Called before every step
        attempt, so that a worker frozen past its lease starts nothing on waking."""
        if self.lease.holds():
            return
        if not self.closed:
            self.host.renew()
        if self.closed or not self.lease.holds():
            raise LeaseLost(
                self.workflow_id,
                f"worker {self.host.worker_id} no longer holds workflow {self.workflow_id!r}"
                " (its lease lapsed while the worker was stalled, and another worker may run"
                " it now): it starts nothing more for it",
            )

    def _keep_visible(self) -> None:
        # Decisions ride along with the next commit; if the step runs long, commit
        # them anyway so `duralog show` sees the step running.
        if self._visibility is None:
            self._visibility = self.host.loop.call_later(
                self.host.options.visibility_delay, self._visibility_due
            )

    def _visibility_due(self) -> None:
        self._visibility = None
        if not self.pending or self.closed:
            return
        # Armed when an earlier step started: commits may have taken its events since,
        # and what is pending now may be younger than the delay. Committed now, the
        # decisions of a step that has just started (and will end soon) would cost a
        # commit of their own; wait until they are as old as the delay instead.
        wait = self._pending_since + self.host.options.visibility_delay - self.host.loop.time()
        if wait > 0:
            self._visibility = self.host.loop.call_later(wait, self._visibility_due)
        else:
            self.spawn(self.flush())


def _tell_loop(
    loop: asyncio.AbstractEventLoop,
    callback: Callable[[AttemptControl, int], None],
    control: AttemptControl,
    started: int,
) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: the worker stopped
        loop.call_soon_threadsafe(callback, control, started)
