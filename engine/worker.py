"""The worker: an event loop in a background thread that advances claimed workflows.

It claims work (workflows started here, workflows left RUNNING by a dead or
expired owner, new ones started by other processes), rebuilds each from its
latest snapshot plus the tail of its log, runs steps (sync ones in a thread
pool, async ones on its loop), fires timers, and keeps its leases alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from duralog.errors import (
    LeaseLost,
    LogDamaged,
    RegistrationError,
    StoreError,
)
from duralog.replay.definitions import Registry, Step
from duralog.replay.instance import WorkflowInstance
from duralog.replay.state import WorkflowState, fold, fold_all, load_state, new_state
from duralog.store.base import Append, Claim, EventStore, WorkflowStatus
from duralog.store.events import LogEntry

from .attempts import StepAttempts
from .clock import Clock, SystemClock
from .committer import Committer, LoopCommitter
from .execution import Execution
from .hooks import AttemptGuard, Listeners
from .host import RealSources, alive
from .lease import Lease, Moment
from .queues import Queue
from .schedules import fire_due, store_declared
from .threads import StepThreads

log = logging.getLogger("duralog.engine")
T = TypeVar("T")

_ACTIVE = (WorkflowStatus.PENDING, WorkflowStatus.RUNNING, WorkflowStatus.PAUSED)
_ON_START = (*_ACTIVE, WorkflowStatus.SUSPENDED)
#: Workflows taken per claim; a full batch is followed by another claim at once.
_CLAIM_BATCH = 100
_MAX_POKES = 10_000
_MAX_RECOVERY_BATCHES = 1_000


class Worker(StepAttempts):
    """Advances workflows on a private event loop; see the module docstring."""

    def __init__(
        self,
        store: EventStore,
        committer: Committer,
        registry: Registry,
        *,
        worker_id: str,
        on_finished: Callable[[str], None],
        snapshot_every: int = 500,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        max_threads: int = 32,
        max_payload_bytes: int | None = None,
        max_history_events: int | None = None,
        visibility_delay: float = 0.2,
        error_backoff: float = 10.0,
        cleanup_grace: float = 60.0,
        clock: Clock | None = None,
        queues: dict[str, Queue] | None = None,
        resources: dict[str, Any] | None = None,
        observers: Listeners | None = None,
        max_workflows: int | None = None,
    ) -> None:
        self.store = store
        self.committer = committer
        self.registry = registry
        self.worker_id = worker_id
        self.snapshot_every = snapshot_every
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.visibility_delay = visibility_delay
        self.error_backoff = error_backoff
        self.cleanup_grace = cleanup_grace
        self.max_payload_bytes = max_payload_bytes
        self.max_history_events = max_history_events
        self.clock: Clock = clock or SystemClock()
        self.sources = RealSources(self.clock)
        self.executions: dict[str, Execution] = {}
        self._on_finished = on_finished
        self._skipped: dict[str, float] = {}  # workflow id -> not claimed again before
        self.loop = asyncio.new_event_loop()
        self.appends = LoopCommitter(store, self.loop)
        self.threads = StepThreads(self.loop, max_threads)
        #: Attempt guards' store calls (a circuit breaker's): on threads of their own, so
        #: that a long sync step never delays admitting or recording another attempt.
        self.guard_threads = StepThreads(self.loop, 2)
        #: The engine's resources (``provide`` replaces the mapping, never changes it).
        self.resources: dict[str, Any] = resources if resources is not None else {}
        self.observers = observers if observers is not None else Listeners()
        self._guards: dict[Step[Any, Any], tuple[AttemptGuard, ...]] = {}
        self._extensions: dict[object, Any] = {}  # the guards' own objects (``extension``)
        self._thread = threading.Thread(target=self._run_loop, name="duralog-worker", daemon=True)
        self._ready = threading.Event()
        self._stopped = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pokes: set[str] = set()
        #: Workflows started here and not adopted yet, with how many starts reserved a
        #: place for each (two starts of one id may race): see ``reserve``.
        self._arriving: Counter[str] = Counter()
        self._unreleased: dict[str, int] = {}  # leases to give back (workflow id -> fence)
        self.queues: dict[str, Queue] = queues if queues is not None else {}
        self.max_workflows = max_workflows
        self._room_lock = threading.RLock()  # reserve() holds it around room()
        self._queued: set[str] = set()  # workflows this worker took off a queue
        self._dequeue_requested = False
        self._claim_requested = False
        self._broken_schedules: dict[str, float] = {}  # schedule id -> not before
        self._dead: list[str] = []  # this host's dead workers (_find_dead_owners)
        #: Queues whose SUSPENDED workflows this worker's start has yet to resume.
        self._resume_pending: set[str] = set()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Register, recover what this host's dead workers left, and start polling."""
        self._store_schedules()  # a schedule that cannot be stored stops us here
        now = time.time()
        self.store.register_worker(self.worker_id, socket.gethostname(), os.getpid(), now)
        self._thread.start()
        self._ready.wait()
        self.store.listen(self._heard)
        future = asyncio.run_coroutine_threadsafe(self._recover(), self.loop)
        future.result()
        self.call(self._background, self._heartbeat())
        self.call(self._background, self._poll())

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the worker loop, from any thread (nothing once it closed)."""
        with contextlib.suppress(RuntimeError):  # the loop closed: the worker stopped
            self.loop.call_soon_threadsafe(fn, *args)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        """Stop advancing workflows: cancel running attempts, commit what is pending."""
        if self._stopped:
            return
        if not self._thread.is_alive():  # it never started (or its loop died)
            self._stopped = True
            self.loop.close()
            self.threads.close()
            self.guard_threads.close()
            return
        self._stopped = True
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
        self.threads.close()
        self.guard_threads.close()

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        executions = list(self.executions.values())
        for execution in executions:
            execution.close()
        for execution in executions:
            # A terminal decision goes to disk only with its status and notices (in
            # finish()); a stopping worker leaves it to replay, which makes it again.
            if execution.pending and not execution.sealed:
                try:
                    await execution.flush()
                except Exception as exc:
                    log.warning("could not commit the tail of %s: %s", execution.workflow_id, exc)
        self.executions.clear()
        await asyncio.sleep(0)
        try:
            self.store.check()
        except StoreError:
            return  # its file is gone (said where it was noticed): nothing to unregister
        try:
            self.store.unregister_worker(self.worker_id)
        except Exception as exc:  # the leases then expire by themselves
            log.warning("worker %s could not unregister: %s", self.worker_id, exc)

    # -- what attempt guards use (``hooks.AttemptHost``) ----------------------

    def run_aside(
        self, context: contextvars.Context, fn: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """Run a guard's blocking ``fn(*args)`` on the guard threads."""
        return self.guard_threads.run(context, fn, *args)

    def extension(self, key: object, make: Callable[[], T]) -> T:
        """This worker's object for ``key`` (made once, on the loop)."""
        found = self._extensions.get(key)
        if found is None:
            found = self._extensions[key] = make()
        return cast(T, found)

    # -- claiming ----------------------------------------------------------

    def unreserve(self, workflow_id: str) -> None:
        """Give back the place ``reserve`` took (the workflow was adopted, or not created)."""
        with self._room_lock:
            self._arriving[workflow_id] -= 1
            if self._arriving[workflow_id] <= 0:
                del self._arriving[workflow_id]

    def adopt_new(
        self,
        workflow_id: str,
        fence: int,
        started: LogEntry,
        granted: Moment,
        reserved: bool = False,
    ) -> None:
        """Run a workflow just created under this worker's lease, from any thread.

        Its whole log is ``started``, already in memory: nothing is read back.
        ``granted``: when the write that created it (and its lease) began.
        ``reserved``: the caller took its place with ``reserve``."""
        if self._stopped:  # started while the engine closed: free it for the next worker
            with contextlib.suppress(Exception):
                self.store.release(self.worker_id, workflow_id, fence)
            return
        state = fold_all(workflow_id, [started])
        lease = self.new_lease(granted)
        if reserved:
            self.call(self._adopt_reserved, workflow_id, fence, state, lease)
        else:
            self.call(self._adopt, workflow_id, fence, state, lease)

    def new_lease(self, granted: Moment) -> Lease:
        """This worker's view of a lease the store granted by a call that began ``granted``."""
        return Lease(self.lease_seconds, granted)

    def _adopt_reserved(
        self, workflow_id: str, fence: int, state: WorkflowState, lease: Lease
    ) -> None:
        self.unreserve(workflow_id)  # from now on it counts among the executions
        self._adopt(workflow_id, fence, state, lease)

    def restart(self, execution: Execution, started: LogEntry) -> None:
        """A workflow continued as new: run its next run in place of the old one."""
        workflow_id = execution.workflow_id
        if self.executions.get(workflow_id) is execution:
            del self.executions[workflow_id]
        state = fold_all(workflow_id, [started])
        self._adopt(workflow_id, execution.fence, state, execution.lease, rebuilt=True)

    def poke(self, workflow_id: str) -> None:
        """Something arrived in a workflow's inbox (from any thread)."""
        self.call(self._poked, workflow_id)

    def _heard(self, kind: str, workflow_id: str | None) -> None:
        """Another process left work (from the store's listener thread)."""
        if self._stopped:
            return
        try:
            if kind == "inbox" and workflow_id is not None:
                # Only for a workflow running here: every worker hears every hint.
                self.call(self._poke_if_running, workflow_id)
            elif kind in ("created", "released"):
                self.request_claim()
        except RuntimeError:  # the loop closed while the worker stopped
            pass

    def _poke_if_running(self, workflow_id: str) -> None:
        if workflow_id in self.executions or workflow_id in self._arriving:
            self._poked(workflow_id)  # (an arriving one reads its inbox when adopted)

    def request_claim(self) -> None:
        """Look for claimable and queued work soon, once (from any thread)."""
        if not self._claim_requested:
            self._claim_requested = True
            self.call(self._background, self._claim_now())

    async def _claim_now(self) -> None:
        self._claim_requested = False
        if self._stopped:
            return
        try:
            await self._claim(_ACTIVE)
            self._dequeue()
        except Exception as exc:
            log.warning("worker %s could not claim work: %s", self.worker_id, exc)

    def _poked(self, workflow_id: str) -> None:
        execution = self.executions.get(workflow_id)
        if execution is None:
            if len(self._pokes) >= _MAX_POKES:  # hints for workflows never adopted here
                self._pokes.clear()  # (the poll reads owned inboxes anyway)
            self._pokes.add(workflow_id)  # not adopted yet: read the inbox when it is
        else:
            execution.spawn(execution.read_inbox())

    def _adopt(
        self,
        workflow_id: str,
        fence: int,
        state: WorkflowState,
        lease: Lease,
        rebuilt: bool = False,
    ) -> None:
        if self._stopped:  # started or claimed while stopping: free it for the next worker
            self._unreleased[workflow_id] = fence
            self._release_pending()
            return
        if workflow_id in self.executions:
            return
        try:
            workflow = self.registry.get(state.name)
        except RegistrationError as exc:
            self._skip(workflow_id, fence, str(exc))
            return
        instance = WorkflowInstance(workflow, workflow_id, self.sources)
        execution = Execution(self, instance, state, fence, lease)
        self.executions[workflow_id] = execution
        if rebuilt or workflow_id in self._pokes:
            # Taken up from the log: what waits in its inbox (a cancel, a signal sent
            # before any worker ran it) goes into the log before its code runs.
            self._pokes.discard(workflow_id)
            execution.spawn(execution.start_after_inbox())
            return
        execution.activate()
        execution.resume()
        execution.arm_deadline()

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

    def _find_dead_owners(self) -> None:
        """Note the workers of this host whose process is gone (read once per poll:
        claims and every look at the queues take their workflows over)."""
        host = socket.gethostname()
        self._dead = [
            worker_id
            for worker_id, worker_host, pid in self.store.workers()
            if worker_host == host and worker_id != self.worker_id and not alive(pid)
        ]

    async def _recover(self) -> None:
        self._find_dead_owners()
        # Until a batch comes back short: the follow-up claims of the poll do not
        # look at SUSPENDED workflows, which only a (re)start resumes.
        for _ in range(_MAX_RECOVERY_BATCHES):  # bounded: skipped ones come back
            if not await self._claim(_ON_START, again=False):
                break
        # Queued ones, SUSPENDED ones too, within the queues' limits.
        self._resume_pending = set(self.queues)
        self._dequeue()
        self._fire_schedules()

    # -- queues and schedules ----------------------------------------------

    def room(self) -> int:
        """How many more workflows this worker may take up now (``max_workflows``)."""
        if self.max_workflows is None:
            return _CLAIM_BATCH
        with self._room_lock:  # other threads reserve places meanwhile
            busy = len(self.executions) + self._arriving.total()
        return max(0, min(_CLAIM_BATCH, self.max_workflows - busy))

    def reserve(self, workflow_id: str) -> bool:
        """Take one place for a workflow about to be started here (from any thread);
        False if full. Until it is adopted, an inbox hint for it is kept, not dropped."""
        with self._room_lock:
            if self.max_workflows is not None and not self.room():
                return False
            self._arriving[workflow_id] += 1
            return True

    def request_dequeue(self) -> None:
        """A queue may have room or work (from any thread): look soon, once."""
        if not self._dequeue_requested:
            self._dequeue_requested = True
            self.call(self._dequeue)

    def _dequeue(self) -> None:
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
            try:
                claims = self.store.claim_queued(
                    self.worker_id,
                    granted.wall,
                    self.lease_seconds,
                    queue.limits,
                    names,
                    limit=room,
                    dead_owners=self._dead,
                    resume_suspended=resume,
                    exclude=skipped,
                )
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
            for claim in claims:  # each holds a slot of the queue until it ends here
                self._take_up(claim, granted, queued=True)

    def _store_schedules(self) -> None:
        """Store the schedules declared in code for workflows this worker runs."""
        store_declared(self.store, self.registry, self.queues, self.clock.now())

    def _fire_schedules(self) -> None:
        """Start every due tick of every schedule whose workflow this worker runs."""
        created = fire_due(self.store, self.registry, self.clock.now(), self._broken_schedules)
        for item in created:
            log.info("workflow %s started by its schedule", item.id)
            if self.observers.active:
                self.observers.created(item.id, item.name, item.started)
        if created:
            self.request_claim()  # takes them up (unqueued ones, then the queues)

    async def _claim(self, statuses: tuple[WorkflowStatus, ...], again: bool = True) -> bool:
        """Take up claimable workflows; True when the batch was full (more may wait),
        in which case, with ``again``, another claim follows at once."""
        room = self.room()
        if room <= 0:
            return False  # at max_workflows: a finishing workflow asks for more
        granted = Moment.now()
        claims = self.store.claim(
            self.worker_id,
            granted.wall,
            self.lease_seconds,
            statuses,
            dead_owners=self._dead,
            limit=room,
            names=self.registry.names(),
        )
        full = len(claims) == room
        if full and again:
            # More may be waiting: come back for them after this batch is adopted,
            # which leaves other workers a chance to take some in between.
            self.request_claim()
        for claim in claims:
            self._take_up(claim, granted)
        return full

    def _take_up(self, claim: Claim, granted: Moment, queued: bool = False) -> None:
        """Run a workflow just claimed by a call that began ``granted`` (``queued``: off
        a queue), unless this worker skipped it lately: then give it back."""
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
        self._rebuild(claim, self.new_lease(granted))

    def _rebuild(self, claim: Claim, lease: Lease) -> None:
        try:
            state = self.load_state(claim.workflow_id)
            record = self.store.get_workflow(claim.workflow_id)
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
            self._skip(claim.workflow_id, claim.fence, str(exc), self.error_backoff)
            return
        self._adopt(claim.workflow_id, claim.fence, state, lease, rebuilt=True)

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
            self._skip(item.workflow_id, item.fence, f"{item.reason} ({why})", self.error_backoff)
            return
        if queued:
            self.request_dequeue()  # its slot is free
        self._on_finished(item.workflow_id)

    def load_state(self, workflow_id: str) -> WorkflowState:
        """The committed state: newest valid snapshot plus the tail of the log, checked
        as it is read (``LogDamaged``, also for events that do not fold)."""
        state, after = None, 0
        snapshot = self.store.load_snapshot(workflow_id)
        if snapshot is not None:
            state = load_state(snapshot.state, snapshot.checksum)
            if state is None:
                log.warning(
                    "ignoring the corrupt snapshot of %s at seq %d", workflow_id, snapshot.seq
                )
            else:
                after = state.last_seq
        if state is None:
            state = new_state(workflow_id)
        for entry in self.store.read_events(workflow_id, after_seq=after):
            try:
                fold(state, entry)
            except ValueError as exc:
                raise LogDamaged(workflow_id, entry.seq, str(exc)) from None
        return state

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                self.store.check()
            except StoreError as exc:  # the log is gone (its file deleted or replaced)
                self._halt(exc)
                return
            # Each duty on its own: one that fails must not starve the others.
            duties = (
                self._find_dead_owners,
                self._release_pending,
                self._read_inboxes,
                self._dequeue,
            )
            for duty in duties:
                try:
                    duty()
                except Exception as exc:
                    log.warning("worker %s could not poll for work: %s", self.worker_id, exc)
            try:
                await self._claim(_ACTIVE)
            except Exception as exc:
                log.warning("worker %s could not claim work: %s", self.worker_id, exc)
            try:
                self._fire_schedules()
            except Exception as exc:
                log.warning("worker %s could not read its schedules: %s", self.worker_id, exc)

    def _halt(self, exc: StoreError) -> None:
        """Stop advancing anything: the store can no longer be written (``check``)."""
        log.error("worker %s stopped: %s", self.worker_id, exc)
        for execution in list(self.executions.values()):
            execution.close()
        self.executions.clear()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    def _read_inboxes(self) -> None:
        """Signals and cancels other processes left for workflows running here."""
        for workflow_id in self.store.owned_with_inbox(self.worker_id):
            self._poked(workflow_id)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                self.renew()
            except Exception as exc:
                log.warning("worker %s could not renew its leases: %s", self.worker_id, exc)

    def renew(self) -> None:
        """Extend every lease this worker holds, and drop the workflows whose lease it
        lost (another worker may have taken them over while this one was frozen).

        Called by the heartbeat, and by an execution about to start a step attempt when
        it can no longer be sure of its lease."""
        at = Moment.now()
        held = set(self.store.renew_leases(self.worker_id, self.lease_seconds))
        for workflow_id, execution in list(self.executions.items()):
            if workflow_id in held:
                execution.lease.renewed(at)
            elif not (execution.closed or execution.sealed):
                self.lost(execution)

    def lost(self, execution: Execution) -> None:
        """Drop a workflow whose lease this worker lost: nothing more is started or
        written for it here (its running async steps are cancelled, and sync ones see
        ``step_info().lease_lost``)."""
        log.warning(
            "worker %s lost its lease on workflow %r (it may be running elsewhere now): "
            "dropping it",
            self.worker_id,
            execution.workflow_id,
        )
        execution.lease.lose()
        execution.close()
        self._queued.discard(execution.workflow_id)
        if self.executions.get(execution.workflow_id) is execution:
            del self.executions[execution.workflow_id]

    # -- serving executions ------------------------------------------------

    def spawn(self, execution: Execution, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run one coroutine of an execution; an error drops the execution, never the worker."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._task_done(execution, t))
        return task

    def _task_done(self, execution: Execution, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, LogDamaged):  # the store refused to append to a damaged log
            execution.close()
            execution.lease.lose()  # nothing more is started for it here
            if self.executions.get(execution.workflow_id) is execution:
                del self.executions[execution.workflow_id]
                self._set_aside(execution.workflow_id, execution.fence, exc)
            return
        if isinstance(exc, LeaseLost):
            execution.lease.lose()
            log.warning("%s", exc)
        else:
            log.error(
                "worker %s dropped workflow %s after an internal error: %r (it will be "
                "recovered from its log)",
                self.worker_id,
                execution.workflow_id,
                exc,
                exc_info=exc,
            )
        execution.close()
        self._queued.discard(execution.workflow_id)  # its slot is counted in the store
        if self.executions.get(execution.workflow_id) is execution:
            del self.executions[execution.workflow_id]
            if not isinstance(exc, LeaseLost):
                # Back off before trying again: an error that repeats must not re-run
                # the same step in a tight loop.
                self._skip(execution.workflow_id, execution.fence, repr(exc), self.error_backoff)

    def finished(self, execution: Execution) -> None:
        """An execution reached a terminal or suspended state (the commit that said so
        also ended its lease)."""
        if self.executions.get(execution.workflow_id) is execution:
            del self.executions[execution.workflow_id]
        if execution.workflow_id in self._queued:
            self._queued.discard(execution.workflow_id)
            self.request_dequeue()  # its slot is free
        if self.max_workflows is not None and len(self.executions) < self.max_workflows:
            self.request_claim()  # room for work left waiting while this worker was full
        self._on_finished(execution.workflow_id)
