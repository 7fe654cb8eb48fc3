"""``Engine`` and ``WorkflowHandle``: the outside of duralog.

An engine opens a store (a SQLite file by default), starts workflows, and, used
as a context manager, runs a worker in the background that recovers pending work
and advances workflows until the ``with`` block ends.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from duralog.errors import (
    ConfigurationError,
    WorkflowNotFound,
    positive_seconds,
    whole_number,
)
from duralog.replay.definitions import REGISTRY, Registry, Workflow
from duralog.store import codec
from duralog.store.base import (
    Durability,
    EventStore,
    NewWorkflow,
    QueueLimits,
    ScheduleRecord,
    WorkflowRecord,
    WorkflowStatus,
)
from duralog.store.open import open_store

from .api import check_name, check_resources
from .clock import Clock, SystemClock
from .committer import StartCommitter
from .handle import WorkflowHandle, require_utf8
from .hooks import Listeners
from .host import default_worker_id
from .lease import Moment
from .options import WorkerOptions
from .queues import KEEP, QUEUES, Keep, Queue, overrides, place, resolve
from .starts import Starts
from .worker import Worker

if TYPE_CHECKING:
    from .schedules import CatchUp

R = TypeVar("R")
T = TypeVar("T")


class Engine:
    """The runtime's engine: opens a log, starts workflows, runs a worker.

    ``duralog.Engine`` (``duralog/_engine.py``) is this class with the observability
    methods added; its docstring describes every argument.
    """

    def __init__(
        self,
        store: str | Path | EventStore = "duralog.db",
        *,
        worker: bool = True,
        durability: Durability = "full",
        snapshot_every: int = 500,
        worker_id: str | None = None,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        max_threads: int = 32,
        max_payload_bytes: int | None = 2_000_000,
        max_history_events: int | None = 50_000,
        error_backoff: float = 10.0,
        cleanup_grace: float = 60.0,
        registry: Registry | None = None,
        clock: Clock | None = None,
        payload_codec: codec.PayloadCodec | None = None,
        queues: list[Queue] | None = None,
        max_workflows: int | None = None,
        resources: Mapping[str, Any] | None = None,
        heartbeat_interval: float = 5.0,
        blocked_threshold: float | None = 2.0,
    ) -> None:
        whole_number(snapshot_every, "snapshot_every", minimum=1)
        heartbeat_interval = positive_seconds(heartbeat_interval, "heartbeat_interval")
        lease_seconds = positive_seconds(lease_seconds, "lease_seconds")
        poll_interval = positive_seconds(poll_interval, "poll_interval")
        cleanup_grace = positive_seconds(cleanup_grace, "cleanup_grace", or_zero=True)
        if isinstance(store, str | Path):
            store = open_store(store, durability=durability, payload_codec=payload_codec)
        elif payload_codec is not None:
            if store.payload_codec is not None and store.payload_codec is not payload_codec:
                raise ConfigurationError(
                    "this store object already seals with another payload codec (another "
                    "engine's?); give each engine its own store, or the same codec"
                )
            store.payload_codec = payload_codec  # the events it writes are sealed with it
        self.store: EventStore = store
        #: The workflows, queues, schedules and circuits this engine runs with.
        self.registry = REGISTRY if registry is None else registry
        self.worker_id = worker_id or default_worker_id()
        self.clock: Clock = clock or SystemClock()
        self.max_payload_bytes = max_payload_bytes
        self._committer = StartCommitter(self.store)
        self._run_worker = worker
        #: The queues this engine knows (by name); its worker serves all of them.
        self.queues: dict[str, Queue] = (
            self.registry.declared(QUEUES)
            if queues is None
            else {queue.name: queue for queue in queues}
        )
        #: Resources for steps, by name (see ``provide``).
        self.resources: dict[str, Any] = check_resources(resources)
        #: Told of every commit (``duralog.observe`` subscribes here).
        self.listeners = Listeners()
        self._options = WorkerOptions(
            snapshot_every=snapshot_every,
            lease_seconds=lease_seconds,
            poll_interval=poll_interval,
            max_threads=max_threads,
            max_payload_bytes=max_payload_bytes,
            max_history_events=max_history_events,
            error_backoff=error_backoff,
            cleanup_grace=cleanup_grace,
            max_workflows=whole_number(max_workflows, "max_workflows", minimum=1, optional=True),
            heartbeat_interval=heartbeat_interval,
            blocked_threshold=positive_seconds(
                blocked_threshold, "blocked_threshold", optional=True
            ),
        )
        self._starts = Starts(
            self.store,
            self._committer,
            self.clock,
            self.listeners,
            worker_id=self.worker_id,
            lease_seconds=lease_seconds,
            max_payload_bytes=max_payload_bytes,
        )
        self._worker: Worker | None = None
        self._lock = threading.Lock()
        self._done: dict[str, threading.Event] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"Engine({self.store!r}, worker_id={self.worker_id!r})"

    @property
    def payload_codec(self) -> codec.PayloadCodec | None:
        """This engine's payload codec (None: none), which travels with its store: its
        workflows, handles and store seal and open payloads with it, and no other
        engine's."""
        return self.store.payload_codec

    @property
    def runs_worker(self) -> bool:
        """Whether this engine runs a worker now (``start_worker``, or ``with`` an engine
        made with ``worker=True``): the workflows it starts run here."""
        return self._worker is not None

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> Self:
        if self._run_worker:
            try:
                self.start_worker()
            except BaseException:
                self.close()  # stops whatever of the worker did start
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start_worker(self) -> None:
        """Start the background worker (``with Engine(...)`` does this for you)."""
        if self._worker is not None:
            return
        worker = Worker(
            self.store,
            self._committer,
            self.registry,
            self._options,
            worker_id=self.worker_id,
            on_finished=self.workflow_finished,
            clock=self.clock,
            queues=self.queues,
            resources=self.resources,
            listeners=self.listeners,
        )
        self._worker = self._starts.worker = worker
        worker.start()

    def close(self) -> None:
        """Stop the worker (in-flight steps re-run on recovery), flush, close the store."""
        if self._closed:
            return
        self._closed = True
        # Starts first: one written after the worker stopped would wait for its lease
        # to expire. Child workflows' creates still go through until the worker stops.
        self._committer.refuse_starts()
        if self._worker is not None:
            self._worker.stop()
        self._committer.close()
        self.listeners.close()  # after the last commit: subscribers get every event
        self.store.close()
        for event in self._done.values():
            event.set()

    # -- starting ----------------------------------------------------------

    @overload
    def start(
        self,
        workflow: Workflow[Any, R],
        *args: Any,
        id: str | None = None,
        timeout: float | dt.timedelta | None = None,
        queue: Queue | str | None = None,
        priority: int = 0,
        dedup_id: str | None = None,
        partition: str | None = None,
        delay: float | dt.timedelta | None = None,
        start_at: dt.datetime | None = None,
    ) -> WorkflowHandle[R]: ...
    @overload
    def start(
        self,
        workflow: str,
        *args: Any,
        id: str | None = None,
        timeout: float | dt.timedelta | None = None,
        queue: Queue | str | None = None,
        priority: int = 0,
        dedup_id: str | None = None,
        partition: str | None = None,
        delay: float | dt.timedelta | None = None,
        start_at: dt.datetime | None = None,
    ) -> WorkflowHandle[Any]: ...
    def start(
        self,
        workflow: Workflow[Any, Any] | str,
        *args: Any,
        id: str | None = None,
        timeout: float | dt.timedelta | None = None,
        queue: Queue | str | None = None,
        priority: int = 0,
        dedup_id: str | None = None,
        partition: str | None = None,
        delay: float | dt.timedelta | None = None,
        start_at: dt.datetime | None = None,
    ) -> WorkflowHandle[Any]:
        """Start ``workflow(*args)`` durably and return its handle at once.

        Starting an ``id`` that already exists with the same input returns the
        existing workflow's handle and runs nothing again (idempotent starts); with
        other input it raises ``WorkflowIdInUse`` and keeps the recorded input. A
        call the workflow's signature refuses (the count of arguments, or a value
        its annotation refuses) raises ``ConfigurationError`` at once. Without ``id`` a random
        one is chosen. With ``timeout`` (seconds or a timedelta, from the start) a
        workflow still running at its deadline is cancelled at its current await
        and ends ``FAILED`` with a ``WorkflowTimeout`` cause; it may catch
        ``CancelledError`` to run cleanup steps first.

        With ``queue`` (a ``duralog.Queue`` or its name) the workflow waits
        ``PENDING`` until a worker serving that queue takes it off, within the
        queue's limits, by ``priority`` (lower first) and then age. On a queue:

        - ``dedup_id``: while a workflow of the queue started with the same dedup id
          has not ended (PENDING, RUNNING, PAUSED or SUSPENDED), the start raises
          ``DuplicateWorkflow`` (naming it) and writes nothing; once it ends, the
          dedup id is free. The database enforces it, so two processes racing to
          start it cannot both succeed.
        - ``partition``: required on a ``Queue(..., partitioned=True)`` and refused on
          any other; the queue's limits are counted per partition.

        ``delay`` (seconds or a timedelta) or ``start_at`` (an aware datetime; a naive
        one is refused) records the workflow now, ``PENDING``, and no worker runs it
        before then, queued or not; a worker wakes for it when it is due. Its
        ``timeout`` counts from then. Cancelling it before then ends it at once.

        Example:
            ``engine.start(send_reminder, user, queue=mail, dedup_id=user, delay=3600)``
        """
        definition = self._definition(workflow)
        placed = place(
            None if queue is None else resolve(queue, self.queues),
            priority=priority,
            dedup_id=dedup_id,
            partition=partition,
            delay=delay,
            start_at=start_at,
            now=self.clock.now(),
        )
        item = self._starts.new_item(definition, args, id, timeout, placed)
        granted = Moment.now()
        (fence,) = self._starts.create([item])
        self._starts.started(definition, item, fence, granted)
        if fence is None:
            self._starts.check_duplicate(item)
            self._starts.check_existing(definition, item)
        return WorkflowHandle(self, item.id, definition)

    def start_many(
        self,
        workflow: Workflow[Any, R] | str,
        calls: Iterable[Sequence[Any]],
        *,
        ids: Sequence[str] | None = None,
        timeout: float | dt.timedelta | None = None,
        queue: Queue | str | None = None,
        priority: int = 0,
        partition: str | None = None,
        delay: float | dt.timedelta | None = None,
        start_at: dt.datetime | None = None,
    ) -> list[WorkflowHandle[R]]:
        """Start ``workflow(*call)`` for every call in ``calls``, in one commit.

        The batch form of ``start`` (same options, applied to every workflow): one
        transaction for all of them, so enqueueing ten thousand jobs costs one
        commit. ``ids``, if given, has one id per call; an id that already exists
        returns that workflow's handle and starts nothing again (``WorkflowIdInUse``
        if it was started with other input, after the others are started). A dedup
        id is for one start: ``start`` takes it.

        Example:
            ``engine.start_many(resize, [(url, 256) for url in urls], queue=images)``
        """
        definition = self._definition(workflow)
        placed = place(
            None if queue is None else resolve(queue, self.queues),
            priority=priority,
            partition=partition,
            delay=delay,
            start_at=start_at,
            now=self.clock.now(),
        )
        arguments = [tuple(call) for call in calls]
        if ids is not None and len(ids) != len(arguments):
            raise ConfigurationError(
                f"start_many() got {len(arguments)} calls but {len(ids)} ids; give one id "
                "per call, or none"
            )
        items: list[NewWorkflow] = []
        try:
            for i, args in enumerate(arguments):
                workflow_id = None if ids is None else ids[i]
                items.append(self._starts.new_item(definition, args, workflow_id, timeout, placed))
        except BaseException:
            self._starts.unreserve(items)
            raise
        granted = Moment.now()
        fences = self._starts.create(items) if items else []
        handles: list[WorkflowHandle[R]] = []
        for item, fence in zip(items, fences, strict=True):
            self._starts.started(definition, item, fence, granted)
            handles.append(WorkflowHandle(self, item.id, definition))
        for item, fence in zip(items, fences, strict=True):  # once all are handed over
            if fence is None:
                self._starts.check_existing(definition, item)
        return handles

    def run(
        self,
        workflow: Workflow[Any, R],
        *args: Any,
        id: str | None = None,
        timeout: float | None = None,
    ) -> R:
        """Start ``workflow(*args)`` and wait for its result (``timeout``: how long to wait)."""
        return self.start(workflow, *args, id=id).result(timeout=timeout)

    def _definition(self, workflow: Workflow[Any, Any] | str) -> Workflow[Any, Any]:
        if isinstance(workflow, Workflow):
            return workflow
        if isinstance(workflow, str):
            return self.registry.get(workflow)
        raise ConfigurationError(
            f"engine.start() needs a @duralog.workflow function or its name, got {workflow!r}"
        )

    # -- resources ---------------------------------------------------------

    def provide(self, name: str, value: Any) -> None:
        """Register (or replace) the resource ``name`` for steps, from any thread.

        Steps get it through a ``duralog.inject()`` parameter or
        ``duralog.resource(name)``; it never enters the log. Attempts that start
        after the call see the new value.

        Example:
            ``engine.provide("payments", PaymentsClient(api_key=os.environ["PAY_KEY"]))``
        """
        # Copy on write: a step thread may be iterating the current mapping.
        self.resources = {**self.resources, check_name(name): value}
        if self._worker is not None:
            self._worker.resources = self.resources

    # -- schedules ---------------------------------------------------------

    def schedule(
        self,
        schedule_id: str,
        cron: str,
        workflow: Workflow[Any, Any] | str,
        *args: Any,
        catch_up: CatchUp = "latest",
        queue: Queue | str | None = None,
        timezone: str = "UTC",
        partition: str | None = None,
    ) -> ScheduleRecord:
        """Start ``workflow(tick, *args)`` on every tick of ``cron``, on any worker.

        The schedule is stored in the log's database, so it outlives this process
        and every worker serving ``workflow`` fires it (each tick once: its workflow
        id is ``<schedule_id>@<tick, UTC ISO 8601>``). Calling it again with the
        same id updates the definition and keeps the last tick. See
        ``duralog.schedule`` for ``catch_up``, ``timezone`` and ``partition`` (the
        partition of the tick workflows on a partitioned ``queue``).
        """
        from .schedules import check_placement, make_schedule  # (cron code: on first use)

        definition = self._definition(workflow)
        queued = None if queue is None else resolve(queue, self.queues)
        spec = make_schedule(
            schedule_id,
            cron,
            definition.name,
            args,
            catch_up=catch_up,
            queue=None if queued is None else queued.name,
            timezone=timezone,
            partition=check_placement(schedule_id, queued, partition),
        )
        record = spec.record(self.clock.now(), self.payload_codec)
        self.store.put_schedule(record)
        return next(r for r in self.store.schedules() if r.id == schedule_id)

    def unschedule(self, schedule_id: str) -> bool:
        """Delete a schedule (workflows it started stay); False if there was none."""
        return self.store.delete_schedule(schedule_id)

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule in the log's database, by id."""
        return self.store.schedules()

    # -- queue limits ------------------------------------------------------

    def set_queue_limits(
        self,
        queue: Queue | str,
        *,
        concurrency: int | Keep | None = KEEP,
        worker_concurrency: int | Keep | None = KEEP,
        rate_limit: int | Keep | None = KEEP,
        period: float | dt.timedelta | Keep = KEEP,
    ) -> QueueLimits:
        """Change a queue's limits at runtime, for every worker on this log.

        Each limit given (None: no limit) is stored in the log and overrides the one
        the queue's ``duralog.Queue`` declares, in every worker, from its next look
        at the queue (workers read the stored limits in the transaction that takes
        workflows off the queue), until ``clear_queue_limits``. Limits not given keep
        their stored or declared value. Workflows already running go on; a lower
        ``concurrency`` lets no new one start until enough have ended. Returns the
        limits that now apply (with this process's declaration of the queue).

        Example:
            ``engine.set_queue_limits("emails", concurrency=2, rate_limit=None)``
        """
        name = queue.name if isinstance(queue, Queue) else queue
        stored = self.store.put_queue_limits(
            name,
            overrides(
                name,
                concurrency=concurrency,
                worker_concurrency=worker_concurrency,
                rate_limit=rate_limit,
                period=period,
            ),
            self.clock.now(),
        )
        if self._worker is not None:
            self._worker.request_dequeue()  # more room, maybe: look now
        return self._declared_limits(name).overridden(stored)

    def clear_queue_limits(self, queue: Queue | str) -> bool:
        """Drop the limits set at runtime for a queue: its declared ones apply again in
        every worker. False if none were set."""
        name = queue.name if isinstance(queue, Queue) else queue
        cleared = self.store.clear_queue_limits(name)
        if cleared and self._worker is not None:
            self._worker.request_dequeue()
        return cleared

    def queue_limits(self, queue: Queue | str) -> QueueLimits:
        """The limits that apply to a queue now: its declaration in this process (none
        if it declares no such queue), overridden by those set at runtime."""
        name = queue.name if isinstance(queue, Queue) else queue
        return self._declared_limits(name).overridden(self.store.queue_limits().get(name))

    def _declared_limits(self, name: str) -> QueueLimits:
        declared = self.queues.get(name) or self.registry.declared(QUEUES).get(name)
        return declared.limits if declared is not None else QueueLimits(name)

    # -- looking up --------------------------------------------------------

    def get(self, workflow_id: str) -> WorkflowHandle[Any]:
        """The handle of an existing workflow; ``WorkflowNotFound`` if there is none."""
        require_utf8(workflow_id, "a workflow id")
        record = self.store.get_workflow(workflow_id)
        if record is None:
            raise WorkflowNotFound(workflow_id)
        definition = self.registry.get(record.name) if record.name in self.registry else None
        return WorkflowHandle(self, workflow_id, definition)

    def list(
        self,
        status: WorkflowStatus | str | Iterable[WorkflowStatus | str] | None = None,
        name: str | Iterable[str] | None = None,
        *,
        queue: str | Iterable[str] | None = None,
        parent: str | Iterable[str] | None = None,
        id_prefix: str | None = None,
        started_since: dt.datetime | float | None = None,
        started_until: dt.datetime | float | None = None,
        ended_since: dt.datetime | float | None = None,
        ended_until: dt.datetime | float | None = None,
        limit: int | None = None,
        after: WorkflowRecord | None = None,
    ) -> list[WorkflowRecord]:
        """Workflows in the store, newest first, then by id (a stable order).

        Each filter that is given narrows the match; ``status``, ``name``, ``queue`` and
        ``parent`` take one value or several (any of them). ``id_prefix``: ids that
        start with it. ``started_*`` / ``ended_*``: ``since <= time < until``, as aware
        datetimes or epoch seconds (``ended_*`` match finished workflows only).

        Paging: at most ``limit`` (None: all); pass the last record of a page as
        ``after`` to get the next one. Workflows started meanwhile do not shift the
        pages (the cursor is the record's start time and id, not an offset)::

            page = engine.list(status="FAILED", limit=100)
            while page:
                ...
                page = engine.list(status="FAILED", limit=100, after=page[-1])
        """
        from .listing import page_size, workflow_query

        query = workflow_query(
            status=status,
            name=name,
            queue=queue,
            parent=parent,
            id_prefix=id_prefix,
            started_since=started_since,
            started_until=started_until,
            ended_since=ended_since,
            ended_until=ended_until,
            after=after,
        )
        return self.store.find_workflows(query, page_size(limit))

    # -- waiting -----------------------------------------------------------

    # -- what handles use (``handle.HandleHost``) ----------------------------

    def poke(self, workflow_id: str) -> None:
        """Something was sent to ``workflow_id``'s inbox: if it runs here, read it now."""
        if self._worker is not None:
            self._worker.poke(workflow_id)

    def terminated(self, workflow_id: str) -> None:
        """``workflow_id`` was terminated: stop it if this engine's worker runs it, and
        wake whoever waits for it here."""
        if self._worker is not None:
            self._worker.call(self._worker.ended, workflow_id)
        self.workflow_finished(workflow_id)

    def fork_workflow(self, workflow_id: str, from_seq: int | None, new_id: str | None) -> str:
        """Create a fork of ``workflow_id`` from ``from_seq`` (None: restart it) and hand
        it to this engine's worker; its id. ``handle.fork`` and ``handle.restart`` call
        this (see there, and ``engine/forks.py``)."""
        from . import forks  # and the replay checker: loaded by the first fork, not by recovery

        item, definition = forks.fork(
            self.store, self.registry, workflow_id, from_seq, new_id, now=self.clock.now()
        )
        self._starts.started(definition, item, 0, Moment.now())
        return item.id

    def idle(self) -> bool:
        """Whether this engine's worker has nothing running nor waiting to be written
        (workflows waiting on timers only); True without a worker. For the test kit."""
        return self._worker is None or self._worker.idle()

    def workflow_finished(self, workflow_id: str) -> None:
        """A workflow ended (here, or a queued one was cancelled): wake its waiters."""
        with self._lock:
            event = self._done.pop(workflow_id, None)
        if event is not None:
            event.set()

    def done_event(self, workflow_id: str) -> threading.Event:
        """Set when this process sees ``workflow_id`` end (or the engine close)."""
        with self._lock:
            event = self._done.get(workflow_id)
            if event is None:
                event = self._done[workflow_id] = threading.Event()
            return event
