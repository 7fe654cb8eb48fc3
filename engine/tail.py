"""The log tail of one workflow in a worker's memory: the events not committed yet,
how they are committed (one group-commit round) and folded, snapshots, wake-up time.

``LogTail`` is the base of ``Execution`` (``execution.py``); ``StepLoop`` (``steps.py``)
sits between them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from duralog.errors import (
    LeaseLost,
)
from duralog.replay.definitions import Step
from duralog.replay.instance import WorkflowInstance
from duralog.replay.state import WorkflowState, dump_state, fold
from duralog.store import events as ev
from duralog.store.base import (
    Append,
    Notice,
    Snapshot,
    WorkflowStatus,
)
from duralog.store.events import LogEntry

from .clock import Alarm
from .heartbeats import AttemptControl
from .host import ExecutionHost
from .lease import Lease

log = logging.getLogger("duralog.engine")


class LogTail:
    """One workflow's state, its uncommitted events, and what it has scheduled."""

    def __init__(
        self,
        host: ExecutionHost,
        instance: WorkflowInstance,
        state: WorkflowState,
        fence: int,
        lease: Lease,
    ) -> None:
        self.host = host
        self.instance = instance
        self.state = state
        self.fence = fence
        self.lease = lease
        self.workflow_id = state.workflow_id
        self.pending: list[LogEntry] = []
        self._pending_since = 0.0  # loop time the oldest of them was added
        self.next_seq = state.last_seq + 1
        self.running: dict[int, asyncio.Task[None]] = {}
        self.attempts: dict[int, asyncio.Task[Any]] = {}  # running attempts of async steps
        self.controls: dict[int, AttemptControl] = {}  # running attempts, by step seq
        self.calls: dict[int, tuple[Step[Any, Any], ev.StepScheduled | None]] = {}
        self.timers: dict[int, float] = {t.seq: t.fire_at for t in state.pending_timers()}
        self.retry_at: dict[int, float] = {}
        self.closed = False
        self.activated = False  # the instance has been fed at least once
        self._wake: Alarm | None = None
        self._deadline: Alarm | None = None
        self._grace: Alarm | None = None
        self._grace_at: float | None = None
        self._visibility: asyncio.TimerHandle | None = None
        self._snapshot_seq = state.last_seq
        self._snapshot: Snapshot | None = None
        self._consumed: list[int] = []
        self._notices: list[Notice] = []
        self._now = host.clock.now  # (looked up once: it is read for every event)
        self._reading_inbox = False
        self._read_again = False
        self.sealed = False  # the terminal decision is made: nothing may follow it
        self._bookkeeping = 0  # uncommitted events that are not decisions
        self._marker_seq = 0  # seq of the newest marker or published value
        self._stream_flush = False  # a commit of what steps wrote to streams is due
        self._next_step: int | None = None  # see ``StepLoop._activate_after_step``
        self._unpaused = asyncio.Event()  # set while steps and timers may go ahead
        if not state.paused:
            self._unpaused.set()

    @property
    def busy(self) -> bool:
        """Whether something runs or waits to be written (a step waiting out its retry
        delay, like a timer, does not count)."""
        return bool(self.pending) or any(seq not in self.retry_at for seq in self.running)

    # -- the log tail ------------------------------------------------------

    def add(self, event: ev.Event, at: float | None = None) -> int:
        """Queue one event for the next commit; returns its seq."""
        if self.sealed:
            raise RuntimeError(
                f"internal: {type(event).__name__} after the end of {self.workflow_id}"
            )
        seq = self.next_seq
        self.next_seq += 1
        if not self.pending:  # the oldest uncommitted event (see ``_visibility_due``)
            self._pending_since = self.host.loop.time()
        self.pending.append(LogEntry(seq, self._now() if at is None else at, event))
        if not isinstance(event, ev.DECISIONS):
            self._bookkeeping += 1
        return seq

    async def flush(
        self,
        status: WorkflowStatus | None = None,
        reason: str | None = None,
        notices: tuple[Notice, ...] = (),
    ) -> None:
        """Commit everything pending (one group-commit round) and fold it into the state."""
        if self._notices:
            notices = (*self._notices, *notices)
            self._notices = []
        if not self.pending and status is None and self._snapshot is None and not notices:
            return
        entries, self.pending = self.pending, []
        self._bookkeeping = 0
        snapshot, self._snapshot = self._snapshot, None
        consumed: list[int] | tuple[()] = ()
        if self._consumed:  # (no new empty lists on every commit)
            consumed, self._consumed = self._consumed, []
        item = Append(
            self.workflow_id,
            self.fence,
            entries,
            status=status,
            wake_at=self.wake_at(),
            reason=reason,
            snapshot=snapshot,
            consumed=consumed,
            notices=notices,
        )
        if not await self.host.appends.append(item):
            raise LeaseLost(self.workflow_id)
        state = self.state
        for entry in entries:
            fold(state, entry)
        observers = self.host.listeners
        if observers.active and entries:
            observers.committed(state, entries)
        for notice in notices:  # wake the receivers that live in this process at once
            self.host.poke(notice.workflow_id)
        if self.sealed or self.closed:
            return  # no commit follows that could carry a snapshot
        # A snapshot encodes the whole state, which grows with the history: spacing
        # them at least as far apart as the state is long keeps the total cost linear.
        if state.last_seq - self._snapshot_seq >= max(
            self.host.options.snapshot_every, self._snapshot_seq
        ):
            self.take_snapshot()

    def take_snapshot(self) -> None:
        """Snapshot the committed state; it is written with the next commit."""
        data, checksum = dump_state(self.state, self.host.payload_codec)
        self._snapshot = Snapshot(self.workflow_id, self.state.last_seq, data, checksum)
        self._snapshot_seq = self.state.last_seq

    def wake_at(self) -> float | None:
        """When this workflow next needs a worker on its own (a timer or a retry)."""
        if not (self.timers or self.retry_at or self._deadline or self._grace_at is not None):
            return None
        times = list(self.timers.values()) + list(self.retry_at.values())
        if self._deadline is not None and self.state.deadline is not None:
            times.append(self.state.deadline)
        if self._grace_at is not None:
            times.append(self._grace_at)
        return min(times) if times else None

    def close(self) -> None:
        """Stop everything this execution scheduled."""
        self.closed = True
        for handle in (self._wake, self._visibility, self._deadline, self._grace):
            if handle is not None:
                handle.cancel()
        for task in list(self.running.values()):
            if task is not asyncio.current_task():
                task.cancel()
        for control in self.controls.values():  # sync steps hear of it at their heartbeat
            if control.writer is not None:
                control.writer.cancel()
            if self.lease.lost:
                control.stop(
                    f"this worker lost workflow {self.workflow_id!r} (another worker may run "
                    "it now, or it was terminated): the attempt's outcome will not be recorded",
                    lease_lost=True,
                )
            else:
                control.stop(
                    f"workflow {self.workflow_id!r} no longer runs on this worker (it ended, was "
                    "suspended, or the worker stopped): the attempt's outcome will not be recorded"
                )

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        """Run a coroutine of this execution on the worker loop, reporting its failure."""
        return self.host.spawn(self, coro)
