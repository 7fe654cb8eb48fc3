"""One workflow in a worker's memory: its instance, its log tail, its running steps.

The cycle: an input (a step result, a fired timer) is appended and committed;
only then is it folded into the state and fed to the instance (write-ahead);
the decisions that come out are appended to ``pending`` and acted on.

Decisions are committed together with the next input rather than on their own:
they are deterministic outputs of inputs already on disk, so after a crash
replay makes them again, identically. This gives one commit per step in a
sequential workflow. Two cases flush before acting: a recorded marker (its
value is *not* reproducible, so nothing may depend on it before it is on disk)
and a workflow that waits on nothing but timers (the wake-up time must be on
disk). A step that runs long gets its decisions flushed after ``visibility_delay``
so the log shows it running.
"""

from __future__ import annotations

import logging

from duralog.errors import (
    LeaseLost,
    NondeterminismError,
)
from duralog.replay.state import STEP_RETRYING, WorkflowState
from duralog.store import events as ev
from duralog.store.base import (
    STATUS_AFTER,
    Append,
    NewWorkflow,
    Notice,
    WorkflowStatus,
)

from .inbox import notice_to_parent, translate
from .lease import Moment
from .steps import StepLoop

log = logging.getLogger("duralog.engine")


class Execution(StepLoop):
    """A claimed workflow being advanced by this worker."""

    #: Taken over from a worker that vanished: commit step decisions before the steps
    #: start, so that a crash in one of them is seen in the log (``recoveries.py``).
    careful = False

    # -- activation --------------------------------------------------------

    def activate(self) -> None:
        """Feed the instance what is new in the committed state, then act on its decisions."""
        if self.closed:
            return
        self.activated = True
        limit = self.host.options.max_history_events
        if limit is not None and self.state.last_seq > limit and not self.sealed:
            self.spawn(
                self.suspend(
                    f"its history reached {self.state.last_seq:,} events, over the limit of "
                    f"{limit:,} (Engine(max_history_events=...)); end each run with "
                    "duralog.continue_as_new(...) to keep the log bounded"
                )
            )
            return
        if self._bookkeeping:
            # A decision's seq must not depend on bookkeeping a crash could lose
            # (a step's StepStarted): commit that first, so replay assigns the same seq.
            self.spawn(self._commit_then_activate())
            return
        watchdog = self.host.watchdog
        watched = None if watchdog is None else watchdog.enter(self.workflow_id, self.instance.loop)
        try:
            decisions = self.instance.feed(self.state, self.next_seq)
        except NondeterminismError as exc:
            self.spawn(self.suspend(str(exc)))
            return
        finally:
            blocked = None if watched is None or watchdog is None else watchdog.leave(watched)
        if blocked is not None:  # what the blocking code decided is dropped
            self.spawn(self.suspend(blocked.reason()))
            return
        if not decisions and self.instance.finished and not self.sealed:
            # The terminal event was already in the log (replayed), but the index row
            # never heard of it: finish the bookkeeping now.
            self.sealed = True
            self.close()
            self.spawn(self.finish(None))
            return
        new_steps: list[int] = []
        new_children: list[tuple[int, ev.ChildStarted]] = []
        flush_first = finishing = False
        for seq, event in decisions:
            if self.add(event) != seq:
                raise RuntimeError(f"internal: decision seq {seq} of {self.workflow_id} drifted")
            if isinstance(event, ev.StepScheduled):
                step = self.instance.step_of(seq)
                if step is not None:
                    self.calls[seq] = (step, event)
                    new_steps.append(seq)
            elif isinstance(event, ev.TimerStarted):
                self.timers[seq] = event.fire_at
            elif isinstance(event, ev.ChildStarted):
                new_children.append((seq, event))
            elif isinstance(event, ev.MarkerRecorded | ev.StatePublished):
                flush_first = True
                self._marker_seq = seq
            elif isinstance(event, ev.StreamWritten | ev.StreamClosed):
                flush_first = True  # readers wait for it: commit it now, not with the next input
            elif isinstance(event, ev.TERMINAL):
                finishing = True
        if finishing:
            self.sealed = True
            self.close()  # running steps stop now: nothing may follow the terminal event
            self.spawn(self.finish(decisions[-1][1]))
            return
        if self.timers:
            live = set(self.instance.live_timers())
            self.timers = {seq: at for seq, at in self.timers.items() if seq in live}
        self._arm_grace()
        if new_children:
            self.spawn(self._start_children(new_children))
        if new_steps and (flush_first or self.careful):
            self.spawn(self._start_steps(new_steps))
        elif new_steps:
            for seq in new_steps:
                self.start_step(seq)
        elif self.pending and (flush_first or not self.running):
            self.spawn(self.flush())
        self._arm_wake()

    async def _start_children(self, children: list[tuple[int, ev.ChildStarted]]) -> None:
        # The decision is on disk before the child exists, so a crash in between
        # finds the decision and creates the child then (creation is idempotent by id).
        await self.flush()
        for seq, event in children:
            await self._create_child(seq, event)

    async def _create_child(self, seq: int, event: ev.ChildStarted) -> None:
        await self._unpaused.wait()  # a paused workflow starts no child until resumed
        if self.closed:
            return
        now = self.host.clock.now()
        started = ev.started_entry(
            now,
            name=event.name,
            args=event.args,
            kwargs=event.kwargs,
            parent_id=self.workflow_id,
            parent_seq=seq,
            trace=self.host.listeners.trace(event.child_id, event.name, self.workflow_id),
        )
        item = NewWorkflow(
            event.child_id,
            event.name,
            started,
            parent_id=self.workflow_id,
            owner=self.host.worker_id,
            lease_seconds=self.host.options.lease_seconds,
            parent_fence=self.fence,  # refused if the parent was terminated meanwhile
        )
        granted = Moment.now()
        fence = await self.host.starts.create_async(item)
        if fence is not None:
            if self.host.listeners.active:
                self.host.listeners.created(event.child_id, event.name, started)
            self.host.adopt_new(event.child_id, fence, started, granted)

    def _resume_children(self) -> None:
        for seq in self.state.open_children():
            if self.instance.child_of(seq) is None:
                continue
            found = self.host.store.read_events(self.workflow_id, seq - 1, seq)
            if found and isinstance(found[0].event, ev.ChildStarted):
                self.spawn(self._create_child(seq, found[0].event))

    def arm_deadline(self) -> None:
        """Cancel the workflow when its timeout (``engine.start(..., timeout=)``) expires."""
        deadline = self.state.deadline
        if deadline is None or self.closed or self.instance.finished:
            return
        if self.state.cancel_reasons.count(ev.TIMEOUT_REASON):
            return  # already recorded: replay delivers it
        self._deadline = self.host.clock.call_at(self.host.loop, deadline, self._deadline_due)

    def _deadline_due(self) -> None:
        self._deadline = None
        if not self.closed:
            if not self.state.cancel_requested:
                self._cancel_children("the parent workflow timed out")
            self.add(ev.CancelRequested(reason=ev.TIMEOUT_REASON))
            self.spawn(self._commit_then_activate())

    def _arm_grace(self) -> None:
        """End the run without its cleanup once a cleanup grace period is over (a
        timed-out run's, or a cancelled parent's wait for its children)."""
        start = self.instance.grace_from()
        if start is None or self._grace is not None or self.closed:
            return
        self._grace_at = start + self.host.options.cleanup_grace
        self._grace = self.host.clock.call_at(self.host.loop, self._grace_at, self._grace_due)

    def _grace_due(self) -> None:
        self._grace = None
        if not self.closed and not self.sealed:
            self.add(ev.CancelRequested(reason=ev.GRACE_REASON))
            self.spawn(self._commit_then_activate())

    async def start_after_inbox(self) -> None:
        """Start a workflow taken up from the log: its inbox first, then its code."""
        await self.read_inbox()  # when it moved anything, it committed and activated
        if not self.activated:
            self.activate()
        self.resume()
        self.arm_deadline()

    def resume(self) -> None:
        """After a rebuild: restart the steps the log shows unfinished, re-arm timers."""
        if self.closed:  # e.g. a cancel read from the inbox already ended it
            return
        for view in self.state.pending_steps():
            step = self.instance.step_of(view.seq)
            if step is None:
                continue
            self.calls[view.seq] = (step, None)
            not_before = view.next_attempt_at if view.status == STEP_RETRYING else None
            self.start_step(view.seq, view.attempt, not_before)
        self._resume_children()
        self._arm_wake()

    # -- the inbox ---------------------------------------------------------

    async def read_inbox(self) -> None:
        """Move waiting signals and cancel requests into the log (only the owner does)."""
        if self.closed:
            return
        if self._reading_inbox:
            self._read_again = True  # a poke during a read: read once more after it
            return
        self._reading_inbox = True
        self._read_again = False
        try:
            items = self.host.store.inbox(self.workflow_id)
            if not items:
                return
            cancelled_before = self.state.cancel_requested
            moved = translate(
                self.workflow_id,
                items,
                self.state.open_children(),
                paused=not self._unpaused.is_set(),
            )
            for event in moved.events:
                self.add(event)
            # Only the first cancel request cancels: a later one must not interrupt the
            # cleanup the first one started (in this run or in its children).
            first_cancel = bool(moved.cancel_reasons) and not cancelled_before
            if first_cancel:
                self._cancel_children(moved.cancel_reasons[0])
            if moved.paused:
                self._unpaused.clear()
            else:
                self._unpaused.set()
            # Pausing a parent pauses its running children, and resuming resumes them.
            if moved.status is WorkflowStatus.PAUSED:
                self._tell_children("pause", "the parent workflow was paused")
            elif moved.status is WorkflowStatus.RUNNING:
                self._tell_children("resume", "the parent workflow was resumed")
            self._consumed += moved.consumed
            await self.flush(status=moved.status)
            if first_cancel:
                for task in list(self.attempts.values()):
                    task.cancel()  # async steps stop at their current await
                for control in self.controls.values():  # sync ones at their next heartbeat
                    control.stop(f"workflow {self.workflow_id!r} was cancelled")
            self._arm_wake()
        finally:
            self._reading_inbox = False
            if self._read_again and not self.closed:
                self.spawn(self.read_inbox())
        self.activate()

    def _cancel_children(self, reason: str) -> None:
        self._tell_children("cancel", reason or "the parent was cancelled")

    def _tell_children(self, kind: str, reason: str) -> None:
        # Sent with the parent's next commit: a child hears of it only once the
        # parent's own cancellation, pause or end is on disk.
        for child_id in self.state.open_children().values():
            self._notices.append(Notice(child_id, kind, reason))

    # -- timers ------------------------------------------------------------

    def _arm_wake(self) -> None:
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        if self.timers and not self.closed:
            due = min(self.timers.values())
            self._wake = self.host.clock.call_at(self.host.loop, due, self._timers_due)

    def _timers_due(self) -> None:
        self._wake = None
        if not self._unpaused.is_set():
            return  # paused: timers fire after the resume re-arms them
        now = self.host.clock.now()
        due = sorted(seq for seq, at in self.timers.items() if at <= now)
        for seq in due:
            del self.timers[seq]
            self.add(ev.TimerFired(timer_seq=seq))
        if due:
            self.spawn(self._commit_then_activate())
        else:
            self._arm_wake()

    async def _commit_then_activate(self) -> None:
        await self.flush()
        self.activate()

    # -- endings -----------------------------------------------------------

    async def finish(self, terminal: ev.Event | None) -> None:
        """Commit the terminal decision with the status and the parent's notice, release
        waiters, and snapshot the final state (in the background: it is a cache).

        ``terminal`` is None when the terminal event is already in the log (replayed).
        Steps still running were cancelled when the decision was made.
        """
        self.close()
        self.timers.clear()
        if self.state.open_children():
            # A run cut short by its grace period ends its children the same way; any
            # other ending asks them to cancel (their own cleanup then runs).
            cut = self.instance.cut_short
            self._cancel_children(ev.GRACE_REASON if cut else "the parent workflow ended")
        if isinstance(terminal, ev.ContinuedAsNew):
            await self._continue_as_new(terminal)
            return
        if terminal is None:
            terminal = _recorded_terminal(self.state)
        elif self.instance.never_awaited:
            log.warning(
                "workflow %r ended with calls it never awaited, which were neither recorded "
                "nor run: %s (add the missing await)",
                self.workflow_id,
                ", ".join(self.instance.never_awaited),
            )
        await self.flush(
            status=STATUS_AFTER[type(terminal).__name__],
            notices=notice_to_parent(
                self.state, self.workflow_id, terminal, self.host.payload_codec
            ),
        )
        # No final snapshot: snapshots serve only to rebuild a workflow, and a
        # finished one is never rebuilt (show, inspect and handle.state fold its log).
        self.host.finished(self)

    async def _continue_as_new(self, terminal: ev.ContinuedAsNew) -> None:
        state = self.state
        archived = f"{self.workflow_id}~run{state.run}"
        now = self.host.clock.now()
        started = ev.started_entry(
            now,
            name=state.name,
            args=terminal.args,
            kwargs=terminal.kwargs,
            parent_id=state.parent_id,
            parent_seq=state.parent_seq,
            run=state.run + 1,
            previous_run=archived,
            trace=self.host.listeners.trace(self.workflow_id, state.name, state.parent_id),
        )
        entries, self.pending = self.pending, []
        consumed, self._consumed = self._consumed, []
        # Signals this run received but never waited for go back to the inbox, in
        # the same transaction: the next run receives them, none is lost.
        carried = tuple(
            Notice(self.workflow_id, "signal", name, bytes(payload))
            for name, payload in self.instance.unconsumed_signals()
        )
        item = Append(
            self.workflow_id,
            self.fence,
            entries,
            consumed=consumed,
            notices=(*self._notices, *carried),
        )
        self._notices = []
        # Through the same writer as every other append of this workflow, so it is
        # ordered after them.
        done = await self.host.appends.call(
            lambda store: store.continue_as_new(item, archived, started)
        )
        if not done:
            raise LeaseLost(self.workflow_id)
        observers = self.host.listeners
        if observers.active:  # the run's last events went to its archive, with it
            observers.committed(self.state, entries, archived)
            observers.created(self.workflow_id, state.name, started)
        self.host.restart(self, started)

    async def suspend(self, reason: str) -> None:
        """The code diverged: mark the workflow SUSPENDED, run nothing more for it."""
        log.error("suspending workflow %s: %s", self.workflow_id, reason)
        self.close()
        self.pending.clear()
        await self.flush(status=WorkflowStatus.SUSPENDED, reason=reason)
        self.host.finished(self)


def _recorded_terminal(state: WorkflowState) -> ev.Event:
    """The terminal event a folded state ended with (for a replayed ending)."""
    if state.status == "COMPLETED":
        return ev.WorkflowCompleted(result=state.result)
    if state.status == "FAILED" and state.error is not None:
        return ev.WorkflowFailed(error=state.error)
    return ev.WorkflowCancelled()
