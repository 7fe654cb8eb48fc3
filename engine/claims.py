"""Where a worker claims a workflow: the claim itself, the queues' share, recovery on
start, and the rebuild of a claimed workflow from its log.

``Claims`` is the base of ``Worker`` (``worker.py``): it holds what the worker knows
about work it may take (its room, the workflows it skipped or set aside, the dead
workers of its host) and takes work up; the worker runs what it took.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from duralog.errors import ErrorDetails, LogDamaged, StoreError
from duralog.replay.definitions import Registry
from duralog.replay.state import WorkflowState
from duralog.store import events as ev
from duralog.store.base import Append, Claim, EventStore, Notice, WorkflowRecord, WorkflowStatus
from duralog.store.events import LogEntry

from . import recoveries
from .clock import Clock
from .committer import AppendCommitter
from .diagnose import Unserved
from .execution import Execution
from .hooks import Listeners
from .host import alive
from .inbox import notice_to_parent
from .lease import Lease, Moment
from .options import WorkerOptions
from .queues import Queue
from .store_calls import Read, StoreCalls, read_claimed, read_state

log = logging.getLogger("duralog.engine")
T = TypeVar("T")

ACTIVE = (WorkflowStatus.PENDING, WorkflowStatus.RUNNING, WorkflowStatus.PAUSED)
_ON_START = (*ACTIVE, WorkflowStatus.SUSPENDED)
#: Workflows taken per claim; a full batch is followed by another claim at once.
_CLAIM_BATCH = 100
_MAX_RECOVERY_BATCHES = 1_000


class Claims:
    """The claiming half of a ``Worker``; see the module docstring."""

    def __init__(
        self,
        store: EventStore,
        registry: Registry,
        options: WorkerOptions,
        *,
        worker_id: str,
        clock: Clock,
        queues: dict[str, Queue],
        listeners: Listeners,
        appends: AppendCommitter,
        on_finished: Callable[[str], None],
    ) -> None:
        self.store = store
        self.appends = appends  # the worker's group commit (sets a damaged log aside)
        self.registry = registry
        self.options = options
        self.worker_id = worker_id
        self.clock = clock
        self.queues = queues
        self.listeners = listeners
        self.executions: dict[str, Execution] = {}
        self._on_finished = on_finished
        self._stopped = False
        self._skipped: dict[str, float] = {}  # workflow id -> not claimed again before
        #: Workflows started here and not adopted yet, with how many starts reserved a
        #: place for each (two starts of one id may race): see ``reserve``.
        self._arriving: Counter[str] = Counter()
        self._unreleased: dict[str, int] = {}  # leases to give back (workflow id -> fence)
        self._room_lock = threading.RLock()  # reserve() holds it around room()
        self._queued: set[str] = set()  # workflows this worker took off a queue
        self._dequeue_requested = False
        self._claim_requested = False
        self._broken_schedules: dict[str, float] = {}  # schedule id -> not before
        self._dead: list[str] = []  # this host's dead workers (_find_dead_owners)
        #: Queues whose SUSPENDED workflows this worker's start has yet to resume.
        self._resume_pending: set[str] = set()
        self._unserved = Unserved(worker_id)  # what no running worker can run, said once
        self._unserved_at = 0.0  # when it was last looked at
        #: The wake-up for the next delayed start (``wake_for_start``), and its time.
        self._start_wake: asyncio.TimerHandle | None = None
        self._start_wake_at = math.inf
        #: Where the worker's own store calls run (``off_loop``).
        self.store_calls = StoreCalls(store.remote)
        self._claiming = 0  # places taken by a claim whose workflows are not adopted yet

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, a store call of the worker's own: on a thread for a remote
        store, so that the loop never waits on the network; inline for a local one."""
        return await self.store_calls.run(fn, *args)

    # -- what the worker provides --------------------------------------------

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the worker loop, from any thread."""
        raise NotImplementedError

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        raise NotImplementedError

    def _adopt(
        self,
        workflow_id: str,
        fence: int,
        state: WorkflowState,
        lease: Lease,
        rebuilt: bool = False,
    ) -> None:
        raise NotImplementedError

    def _poked(self, workflow_id: str) -> None:
        raise NotImplementedError

    def _halt(self, exc: StoreError) -> None:
        raise NotImplementedError

    # -- claiming --------------------------------------------------------------

    def unreserve(self, workflow_id: str) -> None:
        """Give back the place ``reserve`` took (the workflow was adopted, or not created)."""
        with self._room_lock:
            self._arriving[workflow_id] -= 1
            if self._arriving[workflow_id] <= 0:
                del self._arriving[workflow_id]

    def request_claim(self) -> None:
        """Look for claimable and queued work soon, once (from any thread)."""
        if not self._claim_requested:
            self._claim_requested = True
            # The coroutine is made on the loop, when the call runs: one made here
            # would never be awaited if the worker stopped first.
            self.call(self._claim_soon)

    def _claim_soon(self) -> None:
        if self._stopped:
            self._claim_requested = False
            return
        self._background(self._claim_now())

    async def _claim_now(self) -> None:
        self._claim_requested = False
        if self._stopped:
            return
        try:
            await self._claim(ACTIVE)
            await self._dequeue()
            await self._look_for_starts()  # a delayed start another process just created
        except Exception as exc:
            log.warning("worker %s could not claim work: %s", self.worker_id, exc)

    def _skip(self, workflow_id: str, fence: int, reason: str, backoff: float = 60.0) -> None:
        """Release a workflow this worker cannot advance, and leave it for ``backoff`` s."""
        self._queued.discard(workflow_id)
        if workflow_id not in self._skipped:
            log.error("worker %s cannot run workflow %s: %s", self.worker_id, workflow_id, reason)
        self._skipped[workflow_id] = time.time() + backoff
        self._unreleased[workflow_id] = fence
        self._release_pending()

    def _release_pending(self) -> None:
        # A release that failed (the database was locked, say) is tried again on the
        # next poll: this worker's heartbeat would otherwise keep the lease alive.
        for workflow_id, fence in list(self._unreleased.items()):
            try:
                self.store.release(self.worker_id, workflow_id, fence)
            except Exception:
                continue
            del self._unreleased[workflow_id]

    async def _find_dead_owners(self) -> None:
        """Note the workers of this host whose process is gone (read once per poll:
        claims and every look at the queues take their workflows over)."""
        host = socket.gethostname()
        self._dead = [
            worker_id
            for worker_id, worker_host, pid in await self.off_loop(self.store.workers)
            if worker_host == host and worker_id != self.worker_id and not alive(pid)
        ]

    async def _recover(self) -> None:
        await self._find_dead_owners()
        # Until a batch comes back short: the follow-up claims of the poll do not
        # look at SUSPENDED workflows, which only a (re)start resumes.
        for _ in range(_MAX_RECOVERY_BATCHES):  # bounded: skipped ones come back
            if not await self._claim(_ON_START, again=False):
                break
        # Queued ones, SUSPENDED ones too, within the queues' limits.
        self._resume_pending = set(self.queues)
        await self._dequeue()
        await self._look_for_starts()
        await self._fire_schedules()

    def room(self) -> int:
        """How many more workflows this worker may take up now (``max_workflows``)."""
        if self.options.max_workflows is None:
            return _CLAIM_BATCH
        with self._room_lock:  # other threads reserve places meanwhile
            busy = len(self.executions) + self._arriving.total() + self._claiming
        return max(0, min(_CLAIM_BATCH, self.options.max_workflows - busy))

    def reserve(self, workflow_id: str) -> bool:
        """Take one place for a workflow about to be started here (from any thread);
        False if full. Until it is adopted, an inbox hint for it is kept, not dropped."""
        with self._room_lock:
            if self.options.max_workflows is not None and not self.room():
                return False
            self._arriving[workflow_id] += 1
            return True

    def request_dequeue(self) -> None:
        """A queue may have room or work (from any thread): look soon, once."""
        if not self._dequeue_requested:
            self._dequeue_requested = True
            self.call(self._dequeue_soon)

    def _dequeue_soon(self) -> None:
        self._background(self._dequeue_now())

    async def _dequeue_now(self) -> None:
        try:
            await self._dequeue()
        except Exception as exc:
            log.warning("worker %s could not take up queued work: %s", self.worker_id, exc)

    async def _dequeue(self) -> None:
        """Take up the declared queues' work, within their limits: workflows of theirs
        that a dead or expired worker left RUNNING or PAUSED, SUSPENDED ones once after
        this worker started, then waiting ones (see ``EventStore.claim_queued``)."""
        self._dequeue_requested = False
        if self._stopped or not self.queues:
            return
        names = self.registry.names()
        now = time.time()
        # Not even taken over: each would hold one of its queue's worker slots until
        # given back, and a workflow that fails to rebuild would do so on every look.
        skipped = [workflow_id for workflow_id, until in self._skipped.items() if until > now]
        for queue in list(self.queues.values()):
            room = self.room()
            if room <= 0:
                return
            resume = queue.name in self._resume_pending
            granted = Moment.now()
            claim = functools.partial(
                self.store.claim_queued,
                self.worker_id,
                granted.wall,
                self.options.lease_seconds,
                queue.limits,
                names,
                limit=room,
                dead_owners=self._dead,
                resume_suspended=resume,
                exclude=skipped,
            )
            try:
                claims, read = await self._claim_off_loop(room, claim)
            except StoreError as exc:
                if not resume:
                    raise
                log.warning(
                    "worker %s could not resume the suspended workflows of queue %s yet"
                    " (it tries again on its next look): %s",
                    self.worker_id,
                    queue.name,
                    exc,
                )
                continue
            self._resume_pending.discard(queue.name)
            for one, state in zip(claims, read, strict=True):  # each holds a queue slot
                self._take_up(one, granted, queued=True, read=state)  # until it ends here

    def wake_for_start(self, at: float) -> None:
        """A delayed start is due at ``at`` (epoch seconds; from any thread): look for
        work then, once, rather than poll for it."""
        self.call(self._arm_start_wake, at)

    def _arm_start_wake(self, at: float) -> None:
        if self._stopped or at >= self._start_wake_at:
            return  # an earlier wake-up is armed: it looks for the next one when due
        if self._start_wake is not None:
            self._start_wake.cancel()
        self._start_wake_at = at
        # A hair late rather than early: a claim a moment early would find it not due.
        delay = max(0.0, at - time.time()) + 0.005
        self._start_wake = asyncio.get_running_loop().call_later(delay, self._start_due)

    def _start_due(self) -> None:
        self._start_wake, self._start_wake_at = None, math.inf
        self.request_claim()  # claims, then looks at the queues
        self._background(self._look_for_next_start())

    async def _look_for_next_start(self) -> None:
        try:
            await self._look_for_starts()
        except Exception as exc:
            log.warning("worker %s could not look for delayed starts: %s", self.worker_id, exc)

    async def _look_for_starts(self) -> None:
        """Arm a wake-up for the next delayed start this worker may run (one started
        by another process, say): one indexed read per poll."""
        at = await self.off_loop(self.store.next_start, time.time(), list(self.queues))
        if at is not None:
            self._arm_start_wake(at)

    def _store_schedules(self) -> None:
        """Store the schedules declared in code for workflows this worker runs."""
        schedules = sys.modules.get("duralog.engine.schedules")
        if schedules is None:  # only that module declares schedules: none was declared
            return
        schedules.store_declared(self.store, self.registry, self.queues, self.clock.now())

    async def _fire_schedules(self) -> None:
        """Start every due tick of every schedule whose workflow this worker runs."""
        records = await self.off_loop(self.store.schedules)
        if not records:  # the usual case: no need to load the cron code
            return
        from .schedules import fire_due

        now = self.clock.now()
        created = await self.off_loop(
            fire_due, self.store, self.registry, now, self._broken_schedules, records
        )
        for item in created:
            log.info("workflow %s started by its schedule", item.id)
            if self.listeners.active:
                self.listeners.created(item.id, item.name, item.started)
        if created:
            self.request_claim()  # takes them up (unqueued ones, then the queues)

    async def _claim(self, statuses: tuple[WorkflowStatus, ...], again: bool = True) -> bool:
        """Take up claimable workflows; True when the batch was full (more may wait),
        in which case, with ``again``, another claim follows at once."""
        room = self.room()
        if room <= 0:
            return False  # at max_workflows: a finishing workflow asks for more
        granted = Moment.now()
        claim = functools.partial(
            self.store.claim,
            self.worker_id,
            granted.wall,
            self.options.lease_seconds,
            statuses,
            dead_owners=self._dead,
            limit=room,
            names=self.registry.names(),
        )
        claims, read = await self._claim_off_loop(room, claim)
        full = len(claims) == room
        if full and again:
            # More may be waiting: come back for them after this batch is adopted,
            # which leaves other workers a chance to take some in between.
            self.request_claim()
        for one, state in zip(claims, read, strict=True):
            self._take_up(one, granted, read=state)
        return full

    async def _claim_off_loop(
        self, room: int, claim: Callable[[], list[Claim]]
    ) -> tuple[list[Claim], list[Read | None]]:
        """``claim()``, and the state of each workflow it claimed: for a local store on
        the loop, each read as it is taken up; for a remote one, all off the loop (the
        places they take held meanwhile)."""
        if self.store_calls.inline:
            claims = claim()
            return claims, [None] * len(claims)
        with self._room_lock:
            self._claiming += room
        try:
            claims = await self.off_loop(claim)
            return claims, await self.off_loop(read_claimed, self.store, claims)
        finally:
            with self._room_lock:
                self._claiming -= room

    def _take_up(
        self, claim: Claim, granted: Moment, queued: bool = False, read: Read | None = None
    ) -> None:
        """Run a workflow just claimed by a call that began ``granted`` (``queued``: off
        a queue), unless this worker skipped it lately: then give it back. ``read``:
        its state and index row, if already read."""
        stale = self.executions.pop(claim.workflow_id, None)
        if stale is not None:  # it lost its lease and we took it back: start afresh
            stale.lease.lose()
            stale.close()
        if self._skipped.get(claim.workflow_id, 0) > granted.wall:
            self._queued.discard(claim.workflow_id)
            self.store.release(self.worker_id, claim.workflow_id, claim.fence)
            return
        if queued:
            self._queued.add(claim.workflow_id)  # (a skip while rebuilding drops it)
        self._rebuild(claim, self.new_lease(granted), read)

    def _rebuild(self, claim: Claim, lease: Lease, read: Read | None = None) -> None:
        try:
            if read is None:
                state = self.load_state(claim.workflow_id)
                record = self.store.get_workflow(claim.workflow_id)
            elif isinstance(read, StoreError):
                raise read
            else:
                state, record = read
            if record is not None and record.last_seq != state.last_seq:
                raise LogDamaged(
                    claim.workflow_id,
                    min(record.last_seq, state.last_seq) + 1,
                    f"the index says the log ends at seq {record.last_seq}, but it ends at "
                    f"seq {state.last_seq}",
                )
        except LogDamaged as exc:  # never run code, nor append, on a damaged log
            self._set_aside(claim.workflow_id, claim.fence, exc)
            return
        except StoreError as exc:  # unreadable for now: leave it, try again later
            self._skip(claim.workflow_id, claim.fence, str(exc), self.options.error_backoff)
            return
        if claim.taken_from is not None and record is not None:
            try:
                if not self._count_recovery(claim, state, record):
                    return
            except StoreError as exc:
                self._skip(claim.workflow_id, claim.fence, str(exc), self.options.error_backoff)
                return
        self._adopt(claim.workflow_id, claim.fence, state, lease, rebuilt=True)
        execution = self.executions.get(claim.workflow_id)
        if claim.taken_from is not None and execution is not None:
            execution.careful = True

    def _count_recovery(self, claim: Claim, state: WorkflowState, record: WorkflowRecord) -> bool:
        """Count a recovery of a workflow taken over from a worker that did not let it go,
        before any of its code runs (``recoveries.py``); False when it must not run: set
        aside past its ``max_recovery_attempts``, or no longer this worker's."""
        workflow_id = claim.workflow_id
        steps = recoveries.running_steps(state)
        moved_on = False
        if record.recoveries > 0:
            after = record.recovered_at
            entries = self.store.read_events(workflow_id, after) if state.last_seq >= after else []
            moved_on = recoveries.progressed(entries, after, state.last_seq)
        count = recoveries.next_count(record.recoveries, moved_on, bool(steps))
        written = count or record.recoveries  # (0 and 0: nothing to write)
        if written and not self.store.count_recovery(
            self.worker_id, workflow_id, claim.fence, count, state.last_seq
        ):
            self._queued.discard(workflow_id)  # ended or taken meanwhile: not ours
            return False
        if not steps:
            return True
        known = state.name in self.registry
        limit = self.registry.get(state.name).max_recovery_attempts if known else None
        log.warning(
            "worker %s took workflow %r over from worker %s, which died or stalled while "
            "its step %s ran: recovery %d in a row without progress (max_recovery_attempts=%s)",
            self.worker_id,
            workflow_id,
            claim.taken_from,
            ", ".join(dict.fromkeys(steps)),
            count,
            limit,
        )
        if limit is None or not recoveries.over_limit(count, limit):
            return True
        self._dead_letter(
            workflow_id, state, *recoveries.set_aside(workflow_id, count, limit, steps)
        )
        return False

    def _dead_letter(
        self, workflow_id: str, state: WorkflowState, error: ErrorDetails, reason: str
    ) -> None:
        """End a workflow that keeps killing its workers, without running its code:
        ``FAILED`` by a ``WorkflowTerminated`` event with ``error`` (``RecoveryLimit``),
        ``reason`` in its index row."""
        log.error("worker %s: %s", self.worker_id, error.message)
        terminal = ev.WorkflowTerminated(error=error)
        notices = [
            *notice_to_parent(state, workflow_id, terminal, self.store.payload_codec),
            *(
                Notice(child_id, "cancel", "the parent workflow was set aside")
                for child_id in state.open_children().values()
            ),
        ]
        at = self.clock.now()
        seq = self.store.terminate(workflow_id, at, error, notices, reason=reason)
        queued = workflow_id in self._queued
        self._queued.discard(workflow_id)
        if seq is not None and self.listeners.active:
            self.listeners.appended(workflow_id, state.name, LogEntry(seq, at, terminal))
        for notice in notices:
            self._poked(notice.workflow_id)
        if queued:
            self.request_dequeue()  # its slot is free
        self._on_finished(workflow_id)

    def _set_aside(self, workflow_id: str, fence: int, damage: LogDamaged) -> None:
        """Nothing more is appended to a workflow whose log is damaged: it becomes
        SUSPENDED with the damage as its reason (``duralog show``/``list``), and the same
        commit ends its lease. A worker that starts later checks it again."""
        log.error("worker %s set workflow %s aside: %s", self.worker_id, workflow_id, damage)
        queued = workflow_id in self._queued
        self._queued.discard(workflow_id)
        item = Append(workflow_id, fence, [], status=WorkflowStatus.SUSPENDED, reason=damage.reason)
        self._background(self._mark_aside(item, queued))

    async def _mark_aside(self, item: Append, queued: bool) -> None:
        try:
            marked = await self.appends.append(item)
        except Exception as exc:
            marked, why = False, str(exc)
        else:
            why = "the store refused the status change"
        if marked is not True:
            self._skip(
                item.workflow_id, item.fence, f"{item.reason} ({why})", self.options.error_backoff
            )
            return
        if queued:
            self.request_dequeue()  # its slot is free
        self._on_finished(item.workflow_id)

    def load_state(self, workflow_id: str) -> WorkflowState:
        """The committed state (``store_calls.read_state``)."""
        return read_state(self.store, workflow_id)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.options.poll_interval)
            try:
                self.store.check()
            except StoreError as exc:  # the log is gone (its file deleted or replaced)
                self._halt(exc)
                return
            # Each duty on its own: one that fails must not starve the others.
            duties: tuple[Callable[[], Coroutine[Any, Any, None] | None], ...] = (
                self._find_dead_owners,
                self._release_pending,
                self._read_inboxes,
                self._dequeue,
                self._look_for_starts,
                self._look_for_unserved,
            )
            for duty in duties:
                try:
                    done = duty()
                    if done is not None:
                        await done
                except Exception as exc:
                    log.warning("worker %s could not poll for work: %s", self.worker_id, exc)
            try:
                await self._claim(ACTIVE)
            except Exception as exc:
                log.warning("worker %s could not claim work: %s", self.worker_id, exc)
            try:
                await self._fire_schedules()
            except Exception as exc:
                log.warning("worker %s could not read its schedules: %s", self.worker_id, exc)

    async def _look_for_unserved(self) -> None:
        """Warn (once each) about waiting workflows no running worker can run: their
        code is registered nowhere, or their queue is taken from by none. Every 30 s."""
        now = time.time()
        if now - self._unserved_at < _UNSERVED_EVERY:
            return
        self._unserved_at = now
        waiting = await self.off_loop(self.store.waiting_by_name)
        self._unserved.note(waiting, await self.off_loop(self.store.worker_records), now)

    async def _read_inboxes(self) -> None:
        """Signals and cancels other processes left for workflows running here."""
        for workflow_id in await self.off_loop(self.store.owned_with_inbox, self.worker_id):
            self._poked(workflow_id)

    def new_lease(self, granted: Moment) -> Lease:
        """This worker's view of a lease the store granted by a call that began ``granted``."""
        return Lease(self.options.lease_seconds, granted)


#: Seconds between two looks for waiting workflows no running worker can run.
_UNSERVED_EVERY = 30.0
