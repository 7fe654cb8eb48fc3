"""A step of one workflow, run to its end: attempts, retries, the events they leave.

Where a retry is decided is ``retry.py``; here the decision is recorded (``StepRetrying``),
waited out, and the next attempt started. Each attempt runs through the worker's
``StepAttempts`` (``attempts.py``).
"""

from __future__ import annotations

import asyncio
import logging

from duralog.errors import (
    ErrorDetails,
    LeaseLost,
    PayloadError,
)
from duralog.replay.failures import details_of
from duralog.store import codec
from duralog.store import events as ev

from .clock import sleep_until
from .retry import next_attempt_at
from .tail import LogTail

log = logging.getLogger("duralog.engine")


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
        self.running[seq] = self.spawn(self._run_step(seq, attempt, not_before))

    async def _run_step(self, seq: int, attempt: int, not_before: float | None) -> None:
        step, scheduled = self.calls[seq]
        view = self.state.steps.get(seq)
        raw_args = scheduled.args if scheduled else view.args if view else ev.NULL
        raw_kwargs = scheduled.kwargs if scheduled else view.kwargs if view else ev.NULL
        policy = step.retry
        try:
            if not_before is not None:
                self.retry_at[seq] = not_before
                await sleep_until(self.host.clock, not_before)
            args, kwargs = step.decode_args(raw_args, raw_kwargs, self.host.payload_codec)
            while True:
                await self._unpaused.wait()  # a paused workflow starts no attempt
                if self._marker_seq > self.state.last_seq:
                    await self.flush()  # a recorded value must be on disk before any effect
                await self.hold_lease()
                attempt += 1
                self.retry_at.pop(seq, None)
                self.add(ev.StepStarted(step_seq=seq, attempt=attempt))
                self._keep_visible()
                try:
                    value = await self.host.attempts.run(self, step, seq, attempt, args, kwargs)
                    self.attempts.pop(seq, None)
                except asyncio.CancelledError:
                    self.attempts.pop(seq, None)
                    current = asyncio.current_task()
                    if current is None or current.cancelling():
                        raise  # the worker stops or the workflow ended: record nothing
                    # The attempt itself was cancelled: the workflow was cancelled.
                    error = ErrorDetails("Cancelled", "the workflow was cancelled while it ran")
                    self.add(ev.StepFailed(step_seq=seq, attempt=attempt, error=error))
                    break
                except Exception as exc:
                    self.attempts.pop(seq, None)
                    error = details_of(exc, with_traceback=True)
                    next_at = next_attempt_at(
                        policy, attempt, exc, self.host.random(), self.host.clock.now()
                    )
                    if next_at is not None:
                        self.retry_at[seq] = next_at
                        self.add(
                            ev.StepRetrying(
                                step_seq=seq, attempt=attempt, error=error, next_attempt_at=next_at
                            )
                        )
                        await self.flush()
                        await sleep_until(self.host.clock, next_at)
                        continue
                    self.add(ev.StepFailed(step_seq=seq, attempt=attempt, error=error))
                    break
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
        self.activate()

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
