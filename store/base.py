"""The store protocols: what the engine needs from a log, whatever the database.

``EventStore`` is the union of seven roles, each a protocol of its own: ``LogStore``
(the log), ``ListingStore`` (the index as operators read it), ``LeaseStore`` (claims
and leases), ``InboxStore`` (signals), ``SchedulingStore`` (schedules and breakers),
``HeartbeatStore`` (running steps' heartbeat details) and ``CopyingStore`` (whole
tables).
Code that needs one role may ask for just that one.

One implementation per dialect (``store/sqlite.py``, ``store/postgres.py``). All
dialect details (PRAGMAs, ``BEGIN IMMEDIATE``, advisory locks) stay inside the
implementation. Every method is safe to call from any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from duralog.errors import ErrorDetails

from .envelope import PayloadCodec
from .events import LogEntry
from .records import (
    MAX_ROWS,
    STATUS_AFTER,
    TRANSITIONS,
    Append,
    Appended,
    BreakerRecord,
    Claim,
    Durability,
    HeartbeatRecord,
    InboxItem,
    NewWorkflow,
    Notice,
    QueueLimits,
    QueueOverrides,
    ScheduleRecord,
    Snapshot,
    StepCounts,
    WorkerRecord,
    WorkflowQuery,
    WorkflowRecord,
    WorkflowStatus,
    admit,
    check_durability,
    check_transition,
    limit_value,
    read_range,
)

__all__ = [
    "CopyingStore",
    "HeartbeatStore",
    "InboxStore",
    "LeaseStore",
    "ListingStore",
    "LogStore",
    "SchedulingStore",
    "Append",
    "Appended",
    "BreakerRecord",
    "Claim",
    "Durability",
    "EventStore",
    "HeartbeatRecord",
    "InboxItem",
    "MAX_ROWS",
    "NewWorkflow",
    "Notice",
    "WorkerRecord",
    "QueueLimits",
    "QueueOverrides",
    "STATUS_AFTER",
    "ScheduleRecord",
    "Snapshot",
    "StepCounts",
    "TRANSITIONS",
    "WorkflowRecord",
    "WorkflowQuery",
    "WorkflowStatus",
    "admit",
    "check_durability",
    "check_transition",
    "limit_value",
    "read_range",
]


class LogStore(Protocol):
    """The log itself: creating workflows, appending, reading, ending runs, pruning,
    snapshots; and the store's own life (``check``, ``close``)."""

    #: The payload codec of the engine that owns the store (None: no codec). The texts
    #: of the events it writes (errors, reasons) are sealed with it; the engine, its
    #: workflows and its handles encode and decode payloads with it.
    payload_codec: PayloadCodec | None

    #: Whether every call is a round trip across the network (PostgreSQL): a worker
    #: then makes its calls off its event loop, so that a slow one stalls no other
    #: workflow. False for a local file (SQLite), written from the loop itself.
    remote: bool

    def create_workflows(self, items: Sequence[NewWorkflow]) -> list[int | None]:
        """Create each workflow with its first event, in one transaction.

        Returns, per item, the fencing token when it was created, or None when a
        workflow with that id already existed, or when the item has a ``dedup_id``
        that a workflow of its queue holds and has not ended (PENDING, RUNNING,
        PAUSED, SUSPENDED): nothing is written for it. The dedup id is unique in the
        database itself, so two processes racing cannot both create one.
        """
        ...

    def append(self, batch: Sequence[Append]) -> list[Appended]:
        """Append every item in one transaction; False for an item whose fence is stale
        (see ``Appended``). A damaged log refuses only its own item: the event its
        append continues (the index's last seq) must be in the log, and nothing past
        it; the new events are chained on its checksum.

        The inbox items listed in ``consumed`` are deleted in the same transaction, so
        a signal moves from the inbox into the log exactly once."""
        ...

    def read_events(
        self,
        workflow_id: str,
        after_seq: int = 0,
        until_seq: int | None = None,
        *,
        verify: bool = True,
    ) -> list[LogEntry]:
        """Events with ``after_seq < seq <= until_seq``, in seq order, each checked
        against the one before it (the event at ``after_seq`` is read for that): no
        gap, an intact checksum chain, a body that matches its kind, nothing after a
        terminal event (``store/integrity.py``).

        Raises ``LogDamaged`` for the first problem, ``CorruptEventError`` (one of
        them) for a body that does not decode. With ``verify=False`` only a row that
        cannot be read as an event is refused (for showing a damaged log)."""
        ...

    def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The index row of one workflow, or None."""
        ...

    def list_workflows(
        self,
        status: WorkflowStatus | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> list[WorkflowRecord]:
        """Index rows, newest first: at most ``limit`` (None: all, 0: none; a negative
        limit is a ``ValueError``, as in every call that takes one: ``limit_value``)."""
        ...

    def changed_workflows(self, since: float) -> list[WorkflowRecord]:
        """Index rows of the workflows whose log grew at or after ``since``
        (``updated_at >= since``: the time of their newest event), oldest change
        first, then by id. ``duralog tail`` and ``duralog stats --since`` read the
        log across workflows through this."""
        ...

    def fork_workflow(self, item: NewWorkflow, copied: Sequence[LogEntry]) -> bool:
        """Create a fork, in one transaction: ``item``'s index row (PENDING, unowned, on
        ``item.queue``; ``forked_from`` taken from its ``WorkflowStarted``), its first
        event, then ``copied`` (seq 2 on, events of its source), all chained afresh
        under the new id. False, with nothing written, when the id exists already.
        """
        ...

    def continue_as_new(self, item: Append, archived_id: str, started: LogEntry) -> bool:
        """End a run and start the next under the same id, in one transaction.

        ``item`` (ending with ``ContinuedAsNew``) is appended; the run's events and
        index row move to ``archived_id`` (status COMPLETED); the workflow's log
        restarts with ``started`` at seq 1. False when the fence is stale.
        """
        ...

    def published(self, workflow_id: str, key: str) -> bytes | None:
        """The latest value the workflow published under ``key`` (encoded), or None."""
        ...

    def prune(self, finished_before: float, dry_run: bool = True) -> list[WorkflowRecord]:
        """Workflows that ended (COMPLETED, FAILED, CANCELLED) before ``finished_before``;
        unless ``dry_run``, delete them with their events, snapshots and inbox."""
        ...

    def load_snapshot(self, workflow_id: str) -> Snapshot | None:
        """The newest snapshot of the workflow, unverified."""
        ...

    def delete_snapshots(self, workflow_id: str | None = None) -> int:
        """Delete the snapshots of one workflow, or all; returns how many."""
        ...

    def check(self) -> None:
        """Raise ``StoreError`` if the log can no longer be used as it was opened (a
        SQLite file deleted or replaced since); from then on every call raises it.
        Cheap: a worker calls it on every poll."""
        ...

    def close(self) -> None:
        """Close every connection."""
        ...


class LeaseStore(Protocol):
    """Who advances which workflow: claims (queued or not), leases, workers, and the
    wake-ups of ``listen``."""

    def claim(
        self,
        worker_id: str,
        now: float,
        lease_seconds: float,
        statuses: Sequence[WorkflowStatus],
        dead_owners: Sequence[str] = (),
        limit: int = 100,
        workflow_id: str | None = None,
        names: Sequence[str] | None = None,
    ) -> list[Claim]:
        """Take the lease (for ``lease_seconds``) of claimable workflows: unowned, or
        another worker's lease has expired or that worker is dead. A worker never
        re-claims its own workflows (that would bump the fence under its own feet).
        Never a queued workflow, in any status: those go through ``claim_queued``,
        which keeps the queue's limits; never a PENDING one whose ``start_at`` is
        after ``now`` (a delayed start)."""
        ...

    def next_start(self, now: float, queues: Sequence[str]) -> float | None:
        """The earliest ``start_at`` after ``now`` of a PENDING unowned workflow, queued
        on one of ``queues`` or not queued: when a worker serving those should look
        for work again. None when no delayed start waits."""
        ...

    def claim_queued(
        self,
        worker_id: str,
        now: float,
        lease_seconds: float,
        queue: QueueLimits,
        names: Sequence[str] | None = None,
        limit: int | None = None,
        *,
        dead_owners: Sequence[str] = (),
        resume_suspended: bool = False,
        exclude: Sequence[str] = (),
    ) -> list[Claim]:
        """Take up ``queue``'s workflows as far as its limits allow, counted in the same
        transaction (so they hold across processes); at most ``limit`` in all, with
        ``names`` only workflows whose code this worker has, and never one in
        ``exclude`` (a worker's recently skipped workflows: taking one over only to give
        it back would use up its ``worker_concurrency`` for nothing). Queued workflows
        are never taken by ``claim``: only workers that declare the queue take them,
        through here.

        In this order:

        1. Take over the queue's RUNNING or PAUSED workflows that nobody alive holds
           (unowned, or another worker's lease expired or that worker is in
           ``dead_owners``), oldest first. They already hold a slot of the queue, so
           only ``worker_concurrency`` limits them; they keep their status and their
           ``dequeued_at``.
        2. With ``resume_suspended`` (a worker starting up): the queue's SUSPENDED
           workflows, oldest first, back to RUNNING (``reason`` cleared), within
           ``concurrency`` and ``worker_concurrency``; not counted against the rate
           limit (they left the queue when they first ran).
        3. PENDING workflows whose ``start_at`` (if any) is not after ``now``, by
           priority (lower first) then age, within every limit; each gets
           ``dequeued_at = now``.

        The limits are ``queue``'s overridden by those stored for it
        (``put_queue_limits``), read in the same transaction. With
        ``queue.partitioned`` every limit is counted per partition
        (``partition_key``; workflows without one form a partition of their own).

        Returns the claims in that order."""
        ...

    def cancel_queued(self, workflow_id: str, at: float, reason: str = "") -> bool:
        """End a workflow still waiting on its queue or for its delayed start (PENDING,
        unowned) as CANCELLED, appending its ``WorkflowCancelled`` event, in one
        transaction; False if it is not (or no longer) waiting, e.g. a worker took it
        off the queue first."""
        ...

    def terminate(
        self,
        workflow_id: str,
        at: float,
        error: ErrorDetails,
        notices: Sequence[Notice] = (),
        reason: str | None = None,
    ) -> int | None:
        """End a workflow that has not ended, whatever its status and whoever holds it,
        in one transaction: append ``WorkflowTerminated(error)``, set it FAILED with
        ``reason`` (the index's note, shown by ``list``), end its lease (bumping the
        fence, so its owner's next write is refused), drop what waits in its inbox, and
        leave ``notices`` (to its parent). Returns the event's seq; None if the workflow
        had ended (or does not exist)."""
        ...

    def count_recovery(
        self, worker_id: str, workflow_id: str, fence: int, recoveries: int, at_seq: int
    ) -> bool:
        """Set a workflow's ``recoveries`` (in a row, without progress) and
        ``recovered_at`` (the seq its log ended at then), if ``worker_id`` still holds
        it under ``fence``; False otherwise."""
        ...

    def renew_leases(self, worker_id: str, lease_seconds: float) -> list[str]:
        """Extend every lease this worker holds on an unfinished workflow by
        ``lease_seconds`` from now; returns the ids of those workflows (any other it
        believes it holds, it has lost)."""
        ...

    def release(self, worker_id: str, workflow_id: str, fence: int) -> None:
        """Give up one lease (the workflow stays as it is, claimable by anyone)."""
        ...

    def register_worker(
        self,
        worker_id: str,
        host: str,
        pid: int,
        now: float,
        serves: tuple[Sequence[str], Sequence[str]] | None = None,
        lease_seconds: float = 0.0,
    ) -> None:
        """Record a live worker process (used to notice dead owners on this host), with
        what it ``serves`` (the workflow names it has code for, and its queues) and a
        heartbeat good for ``lease_seconds`` from ``now``."""
        ...

    def workers(self) -> list[tuple[str, str, int]]:
        """Every registered worker as (id, host, pid)."""
        ...

    def worker_records(self) -> list[WorkerRecord]:
        """Every registered worker, with what it serves, oldest first."""
        ...

    def waiting_by_name(self) -> list[tuple[str, str | None, int]]:
        """How many workflows wait unclaimed (PENDING, no owner), by (name, queue)."""
        ...

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly, releasing its leases."""
        ...

    def listen(self, callback: Callable[[str, str | None], None]) -> None:
        """Call ``callback(kind, workflow_id)`` from any thread when another process
        leaves work: ``("created", id)`` a workflow to claim or dequeue, ``("inbox",
        id)`` a signal or cancel request, ``("released", id)`` a lease given up.

        A hint only (a store may drop or never send them: SQLite sends none);
        workers poll as well."""
        ...


class InboxStore(Protocol):
    """Signals and cancel requests waiting for a workflow's owner."""

    def send(
        self, workflow_id: str, kind: str, name: str | None, payload: bytes | None, at: float
    ) -> int:
        """Put a signal or cancel request in a workflow's inbox; returns its id."""
        ...

    def inbox(self, workflow_id: str) -> list[InboxItem]:
        """The workflow's waiting inbox items, oldest first."""
        ...

    def owned_with_inbox(self, worker_id: str) -> list[str]:
        """Ids of workflows owned by ``worker_id`` that have inbox items waiting."""
        ...


class SchedulingStore(Protocol):
    """Cron schedules, queue limits set at runtime and circuit breakers shared by
    every worker."""

    def put_schedule(self, record: ScheduleRecord) -> None:
        """Create a schedule, or update its definition (its last tick and pause stay)."""
        ...

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by id."""
        ...

    def pause_schedule(self, schedule_id: str, paused: bool, now: float) -> bool:
        """Pause or resume a schedule; False if there is none with that id. Resuming
        moves its last tick to ``now``: ticks that fell while paused are skipped."""
        ...

    def delete_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule (workflows it started stay); False if there was none."""
        ...

    def fire_schedule(
        self, schedule_id: str, last_tick: float, new_last_tick: float, items: Sequence[NewWorkflow]
    ) -> bool:
        """Create the tick workflows and move the schedule's last tick, in one transaction,
        only if its last tick is still ``last_tick`` (else another worker fired it: False)."""
        ...

    def put_queue_limits(self, name: str, limits: QueueOverrides, now: float) -> QueueOverrides:
        """Override queue ``name``'s limits with the fields ``limits`` sets (the ones
        stored before and not set stay); returns what is stored now."""
        ...

    def clear_queue_limits(self, name: str) -> bool:
        """Drop every limit stored for queue ``name``; False if none was."""
        ...

    def queue_limits(self) -> dict[str, QueueOverrides]:
        """The limits stored for each queue that has some, by name."""
        ...

    def get_breaker(self, name: str) -> BreakerRecord | None:
        """A circuit breaker's state, or None if it never changed."""
        ...

    def put_breaker(self, record: BreakerRecord) -> bool:
        """Store ``record`` if the stored version is ``record.version - 1`` (0: none yet)."""
        ...


class HeartbeatStore(Protocol):
    """The last heartbeat details of running steps (``duralog.heartbeat``): progress
    notes outside the log, so that a step's next attempt resumes where it was."""

    def put_heartbeat(self, record: HeartbeatRecord, fence: int) -> bool:
        """Store ``record`` (replacing the step's earlier details) if the workflow's fence
        is still ``fence``; False, with nothing written, when it is not (another worker
        took the workflow, or it ended)."""
        ...

    def get_heartbeat(self, workflow_id: str, seq: int) -> HeartbeatRecord | None:
        """The details step ``seq`` of the workflow stored last, or None."""
        ...

    def delete_heartbeats(self, workflow_id: str, seq: int | None = None) -> int:
        """Forget the stored details of one step of the workflow (None: of all its
        steps); returns how many rows went."""
        ...


class CopyingStore(Protocol):
    """Whole tables in and out, for ``copy_store`` and ``verify``."""

    def export_rows(
        self,
        table: str,
        after: Sequence[object] | None = None,
        limit: int = 1000,
        *,
        raw: bool = False,
    ) -> list[tuple[object, ...]]:
        """Up to ``limit`` rows of ``table`` whose primary key is above ``after`` (None:
        from the start), in key order: every column of ``store/schema.py``'s
        description, in its order, as plain Python values (for ``copy_store``).
        ``raw``: the values as the database returns them, unconverted (``verify``
        must see a damaged value, not fail on it)."""
        ...

    def import_rows(self, table: str, rows: Sequence[Sequence[object]]) -> int:
        """Insert rows made by any store's ``export_rows``, in one transaction; keys the
        database assigns (the inbox id) are assigned anew, in row order. A row whose key
        exists already is a ``StoreError`` and nothing is inserted. Returns how many."""
        ...

    def count_rows(self, table: str) -> int:
        """How many rows ``table`` holds."""
        ...


class ListingStore(Protocol):
    """The index read as operators ask: filtered pages, counts, queues; and the
    removal of one finished workflow."""

    def find_workflows(
        self, query: WorkflowQuery, limit: int | None = None
    ) -> list[WorkflowRecord]:
        """Index rows matching ``query``, newest first (then by id): at most ``limit``
        (None: all; a negative limit is a ``ValueError``: ``limit_value``)."""
        ...

    def count_workflows(self, query: WorkflowQuery) -> int:
        """How many index rows match ``query``."""
        ...

    def queue_counts(self) -> dict[str, dict[WorkflowStatus, int]]:
        """For every queue any workflow was put on: how many of its workflows are in
        each status."""
        ...

    def step_counts(self, workflow_ids: Sequence[str]) -> dict[str, StepCounts]:
        """The ``StepCounts`` of each of ``workflow_ids`` (a page of a listing), read
        from their own events only (the ``(workflow_id, seq)`` key), never the whole
        log; a workflow with no step is left out."""
        ...

    def delete_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """Delete a finished (COMPLETED, FAILED, CANCELLED) workflow with its events,
        snapshots, inbox and heartbeats, in one transaction. Returns its index row as it was
        (read in that transaction: its status says whether it was deleted), or None
        when there is no such workflow."""
        ...


class EventStore(
    LogStore,
    ListingStore,
    LeaseStore,
    InboxStore,
    SchedulingStore,
    HeartbeatStore,
    CopyingStore,
    Protocol,
):
    """The log and its indexes. Implementations: ``SQLiteStore``, ``PostgresStore``.

    Leases are granted for a number of seconds and judged by the store's clock, so
    that workers whose clocks disagree never disagree on who holds a workflow:
    PostgreSQL's is the server's ``clock_timestamp()``; SQLite's (one machine) is
    the ``now`` a claim passes, and the machine's wall clock elsewhere.

    The union of the role protocols above: a function that needs one role only
    may ask for that one (a ``LogStore`` to read a history, say)."""
