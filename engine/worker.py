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
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from duralog.errors import (
    LeaseLost,
    LogDamaged,
    RegistrationError,
    StoreError,
)
from duralog.replay.definitions import Registry
from duralog.replay.instance import WorkflowInstance
from duralog.replay.state import WorkflowState, fold_all
from duralog.store import events as ev
from duralog.store.base import EventStore
from duralog.store.envelope import PayloadCodec
from duralog.store.events import LogEntry

from .attempts import StepAttempts
from .claims import Claims
from .clock import Clock, SystemClock
from .committer import StartCommitter, append_committer
from .execution import Execution
from .hooks import Listeners
from .host import RealSources, RunningWorkflow
from .lease import Lease, Moment
from .options import WorkerOptions
from .queues import Queue
from .threads import StepThreads
from .watchdog import LoopWatchdog

log = logging.getLogger("duralog.engine")
T = TypeVar("T")

_MAX_POKES = 10_000


class Worker(Claims):
    """Advances workflows on a private event loop; see the module docstring."""

    def __init__(
        self,
        store: EventStore,
        starts: StartCommitter,
        registry: Registry,
        options: WorkerOptions,
        *,
        worker_id: str,
        on_finished: Callable[[str], None],
        clock: Clock | None = None,
        queues: dict[str, Queue] | None = None,
        resources: dict[str, Any] | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        loop = asyncio.new_event_loop()
        super().__init__(
            store,
            registry,
            options,
            worker_id=worker_id,
            clock=clock or SystemClock(),
            queues=queues if queues is not None else {},
            listeners=listeners if listeners is not None else Listeners(),
            appends=append_committer(store, loop),
            on_finished=on_finished,
        )
        self.starts = starts
        self.sources = RealSources(self.clock)
        self.loop = loop
        self.threads = StepThreads(self.loop, options.max_threads)
        #: Attempt guards' store calls (a circuit breaker's): on threads of their own, so
        #: that a long sync step never delays admitting or recording another attempt.
        self.guard_threads = StepThreads(self.loop, 2)
        self.attempts = StepAttempts(self.loop, self.threads, self)
        #: The engine's resources (``provide`` replaces the mapping, never changes it).
        self.resources: dict[str, Any] = resources if resources is not None else {}
        self._extensions: dict[object, Any] = {}  # the guards' own objects (``extension``)
        self._thread = threading.Thread(target=self._run_loop, name="duralog-worker", daemon=True)
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pokes: set[str] = set()
        threshold = options.blocked_threshold
        #: The engine's payload codec (its store's, set before the worker is made):
        #: workflows record and read with it.
        self.payload_codec: PayloadCodec | None = store.payload_codec
        self.watchdog = None if threshold is None else LoopWatchdog(threshold, worker_id)

    def random(self) -> float:
        """A random draw in [0, 1) for retry jitter."""
        return self.sources.random()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Register, recover what this host's dead workers left, and start polling."""
        self._store_schedules()  # a schedule that cannot be stored stops us here
        now = time.time()
        self.store.register_worker(
            self.worker_id,
            socket.gethostname(),
            os.getpid(),
            now,
            serves=(self.registry.names(), list(self.queues)),
            lease_seconds=self.options.lease_seconds,
        )
        self._thread.start()
        self._ready.wait()
        if self.watchdog is not None:
            self.watchdog.start()
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
            self.appends.close()
            self.store_calls.close()
            self.loop.close()
            self.threads.close()
            self.guard_threads.close()
            return
        self._stopped = True
        if self.watchdog is not None:
            self.watchdog.stop()
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.appends.close()
        self.store_calls.close()
        self.loop.close()
        self.threads.close()
        self.guard_threads.close()

    async def _shutdown(self) -> None:
        executions = list(self.executions.values())
        for execution in executions:  # before their writers are cancelled with the rest
            try:
                await execution.keep_heartbeats()
            except Exception as exc:  # progress notes: the stop goes on without them
                log.warning("could not store the heartbeats of %s: %s", execution.workflow_id, exc)
        for task in list(self._tasks):
            task.cancel()
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
        # A claim cancelled above may still run on a store thread: let it end, so that
        # unregistering (below) releases what it took.
        self.store_calls.close()
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

    # -- adopting ---------------------------------------------------------

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

    def _adopt_reserved(
        self, workflow_id: str, fence: int, state: WorkflowState, lease: Lease
    ) -> None:
        self.unreserve(workflow_id)  # from now on it counts among the executions
        self._adopt(workflow_id, fence, state, lease)

    def restart(self, execution: RunningWorkflow, started: LogEntry) -> None:
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
            elif kind == "ended" and workflow_id is not None:
                self.call(self.ended, workflow_id)
            elif kind in ("created", "released"):
                self.request_claim()
        except RuntimeError:  # the loop closed while the worker stopped
            pass

    def _poke_if_running(self, workflow_id: str) -> None:
        if workflow_id in self.executions or workflow_id in self._arriving:
            self._poked(workflow_id)  # (an arriving one reads its inbox when adopted)

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
        instance = WorkflowInstance(workflow, workflow_id, self.sources, self.payload_codec)
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

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.options.lease_seconds / 3)
            try:
                await self._renew_off_loop()
            except Exception as exc:
                log.warning("worker %s could not renew its leases: %s", self.worker_id, exc)

    def renew(self) -> None:
        """Extend every lease this worker holds, and drop the workflows whose lease it
        lost (another worker may have taken them over while this one was frozen).

        Called by the heartbeat, and by an execution about to start a step attempt when
        it can no longer be sure of its lease."""
        at = Moment.now()
        held = set(self.store.renew_leases(self.worker_id, self.options.lease_seconds))
        self._renewed(at, held, list(self.executions.items()))

    async def _renew_off_loop(self) -> None:
        """``renew``, its store call off the loop for a remote store."""
        at = Moment.now()
        running = list(self.executions.items())  # (one adopted meanwhile: a newer lease)
        renew = self.store.renew_leases
        held = set(await self.off_loop(renew, self.worker_id, self.options.lease_seconds))
        self._renewed(at, held, running)

    def _renewed(self, at: Moment, held: set[str], running: list[tuple[str, Execution]]) -> None:
        for workflow_id, execution in running:
            if self.executions.get(workflow_id) is not execution:
                continue  # gone while the store renewed
            if workflow_id in held:
                execution.lease.renewed(at)
            elif not (execution.closed or execution.sealed):
                self.lost(execution)

    def ended(self, workflow_id: str) -> None:
        """The workflow was ended outside this worker (``terminate``; the store moved
        its fence): if it runs here, stop it now, as if it had finished."""
        execution = self.executions.get(workflow_id)
        if execution is not None and not (execution.closed or execution.sealed):
            log.info(
                "worker %s: workflow %r was terminated; stopping it", self.worker_id, workflow_id
            )
            execution.lease.lose()
            execution.close()
            self.finished(execution)

    def lost(self, execution: Execution) -> None:
        """Drop a workflow whose lease this worker lost: nothing more is started or
        written for it here (its running async steps are cancelled, and sync ones see
        ``step_info().lease_lost``)."""
        self._say_lost(execution.workflow_id, "")
        self._drop(execution)

    def _say_lost(self, workflow_id: str, why: str) -> None:
        """Warn about a lost lease, unless ``terminate`` ended the workflow meanwhile
        (then it is no anomaly): read only on this rare path."""
        if self._terminated(workflow_id):
            log.info(
                "worker %s: workflow %r was terminated; dropping it", self.worker_id, workflow_id
            )
            return
        log.warning(
            "%s",
            why
            or f"worker {self.worker_id} lost its lease on workflow {workflow_id!r} (it may "
            "be running elsewhere now): dropping it",
        )

    def _terminated(self, workflow_id: str) -> bool:
        try:
            record = self.store.get_workflow(workflow_id)
            if record is None or not record.status.is_terminal:
                return False
            last = self.store.read_events(workflow_id, after_seq=record.last_seq - 1)
        except Exception:
            return False
        return bool(last) and isinstance(last[-1].event, ev.WorkflowTerminated)

    def _drop(self, execution: Execution) -> None:
        execution.lease.lose()
        execution.close()
        self._queued.discard(execution.workflow_id)
        if self.executions.get(execution.workflow_id) is execution:
            del self.executions[execution.workflow_id]

    # -- serving executions ------------------------------------------------

    def idle(self) -> bool:
        """Whether nothing runs nor waits to be written (from any thread: a changing
        dict reads as busy)."""
        try:
            executions = list(self.executions.values())
        except RuntimeError:
            return False
        if self.appends.busy:
            return False
        return not any(e.busy for e in executions)

    def spawn(
        self, execution: RunningWorkflow, coro: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        """Run one coroutine of an execution; an error drops the execution, never the worker."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._task_done, execution))
        return task

    def _task_done(self, execution: RunningWorkflow, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.failed(execution, exc)

    def failed(self, execution: RunningWorkflow, exc: BaseException) -> None:
        """A coroutine of ``execution`` raised ``exc``: set the workflow aside (a damaged
        log), let it go (a lost lease), or drop it to be recovered (anything else)."""
        if isinstance(exc, LogDamaged):  # the store refused to append to a damaged log
            execution.close()
            execution.lease.lose()  # nothing more is started for it here
            if self.executions.get(execution.workflow_id) is execution:
                del self.executions[execution.workflow_id]
                self._set_aside(execution.workflow_id, execution.fence, exc)
            return
        if isinstance(exc, LeaseLost):
            execution.lease.lose()
            self._say_lost(execution.workflow_id, str(exc))
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
                self._skip(
                    execution.workflow_id, execution.fence, repr(exc), self.options.error_backoff
                )

    def finished(self, execution: RunningWorkflow) -> None:
        """An execution reached a terminal or suspended state (the commit that said so
        also ended its lease)."""
        if self.executions.get(execution.workflow_id) is execution:
            del self.executions[execution.workflow_id]
        if execution.workflow_id in self._queued:
            self._queued.discard(execution.workflow_id)
            self.request_dequeue()  # its slot is free
        if (
            self.options.max_workflows is not None
            and len(self.executions) < self.options.max_workflows
        ):
            self.request_claim()  # room for work left waiting while this worker was full
        self._on_finished(execution.workflow_id)
