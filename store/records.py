"""The records a store reads and writes, and the rules every store enforces.

``WorkflowStatus`` and ``TRANSITIONS`` (the state machine), the rows of the index
(``WorkflowRecord``, ``ScheduleRecord``, ``BreakerRecord``) and of the steps'
heartbeats (``HeartbeatRecord``), what the engine hands a store (``NewWorkflow``,
``Append``, ``Notice``) and gets back (``Claim``, ``InboxItem``, ``Snapshot``), and
``admit``: whether an append may go in. Both dialects use these alike; the protocols
are in ``store/base.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Literal, get_args

import msgspec

from duralog.errors import ConfigurationError, IllegalTransition, LogDamaged

from .events import TERMINAL_KINDS, LogEntry

#: ``"full"``: an acknowledged commit survives power loss; ``"normal"``: it survives a
#: crash of the process (the database may lose its last commits to a power loss).
Durability = Literal["full", "normal"]


def check_durability(durability: object) -> None:
    """Refuse a durability level that is not one of ``Durability``."""
    if durability not in get_args(Durability):
        raise ConfigurationError(f"durability must be 'full' or 'normal', not {durability!r}")


class WorkflowStatus(str, Enum):  # noqa: UP042 - keeps str() == value on 3.11
    """Where a workflow is in its life. ``SUSPENDED``: its code diverged from its history."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SUSPENDED = "SUSPENDED"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True for COMPLETED, FAILED and CANCELLED: nothing will ever be appended."""
        return self in _TERMINAL

    @property
    def ends_lease(self) -> bool:
        """True when nobody advances the workflow any more (terminal or SUSPENDED): the
        commit that sets it also ends its lease."""
        return self in _TERMINAL or self is WorkflowStatus.SUSPENDED


_TERMINAL = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED})

#: The status a run is left in by its terminal event (ContinuedAsNew starts a new run).
STATUS_AFTER: dict[str, WorkflowStatus] = {
    "WorkflowCompleted": WorkflowStatus.COMPLETED,
    "WorkflowFailed": WorkflowStatus.FAILED,
    "WorkflowCancelled": WorkflowStatus.CANCELLED,
    "WorkflowTerminated": WorkflowStatus.FAILED,
}

_S = WorkflowStatus
#: The workflow state machine: every status change any store makes is one of these.
TRANSITIONS: dict[WorkflowStatus, frozenset[WorkflowStatus]] = {
    # FAILED from PENDING or SUSPENDED: ``terminate`` ends a workflow in any live status.
    _S.PENDING: frozenset({_S.RUNNING, _S.CANCELLED, _S.FAILED}),
    _S.RUNNING: frozenset({_S.PAUSED, _S.COMPLETED, _S.FAILED, _S.CANCELLED, _S.SUSPENDED}),
    # A paused workflow starts nothing new, but steps already running may finish it.
    _S.PAUSED: frozenset({_S.RUNNING, _S.COMPLETED, _S.FAILED, _S.CANCELLED, _S.SUSPENDED}),
    _S.SUSPENDED: frozenset({_S.RUNNING, _S.CANCELLED, _S.FAILED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def check_transition(workflow_id: str, current: WorkflowStatus, new: WorkflowStatus) -> None:
    """Raise ``IllegalTransition`` unless ``current -> new`` is in ``TRANSITIONS``."""
    if new is not current and new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "nothing"
        raise IllegalTransition(
            f"workflow {workflow_id!r} cannot go from {current.value} to {new.value} "
            f"(from {current.value} it may go to: {allowed})"
        )


class WorkflowRecord(msgspec.Struct, frozen=True):
    """A row of the ``workflows`` index: derivable from the log, kept for listing and claims."""

    id: str
    name: str
    status: WorkflowStatus
    last_seq: int
    created_at: float
    updated_at: float
    parent_id: str | None = None
    owner: str | None = None
    lease_until: float | None = None
    fence: int = 0
    wake_at: float | None = None
    reason: str | None = None
    queue: str | None = None
    priority: int = 0
    #: Recoveries in a row without progress (see ``max_recovery_attempts``).
    recoveries: int = 0
    #: The log's last seq when ``recoveries`` was last counted.
    recovered_at: int = 0
    #: Unique on its queue among the workflows that have not ended (``start(dedup_id=)``).
    dedup_id: str | None = None
    #: The partition of a partitioned queue its limits are counted in.
    partition_key: str | None = None
    #: A delayed start: not claimed (nor taken off its queue) before this time.
    start_at: float | None = None


class WorkflowQuery(msgspec.Struct, frozen=True):
    """Which index rows ``find_workflows`` and ``count_workflows`` take: each field that
    is set narrows the match (a tuple: any of its values).

    ``started_since`` / ``started_until``: ``since <= created_at < until``.
    ``ended_since`` / ``ended_until``: the same for the time a workflow ended (only
    finished ones match). ``id_prefix``: ids that start with it (exactly: case
    matters). ``after``: the ``(created_at, id)`` of the last row of the page before
    (rows come newest first, then by id), for paging that new workflows do not shift.
    """

    statuses: tuple[WorkflowStatus, ...] = ()
    names: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    #: The workflows whose forks to take (``handle.fork``).
    forked_from: tuple[str, ...] = ()
    dedup_ids: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()
    started_since: float | None = None
    started_until: float | None = None
    ended_since: float | None = None
    ended_until: float | None = None
    id_prefix: str | None = None
    after: tuple[float, str] | None = None


class NewWorkflow(msgspec.Struct, frozen=True):
    """A workflow to create together with its first event (``WorkflowStarted``, seq 1).

    With ``owner``, it is created under that worker's lease for ``lease_seconds``,
    counted by the store's clock. ``dedup_id``, ``partition_key`` and ``start_at``
    are as in ``WorkflowRecord``: a ``dedup_id`` that a live workflow of the queue
    holds is not created (as an id that exists). ``parent_fence``: a child is created
    only while its parent's index row still holds this fencing token (the one its
    ``ChildStarted`` was appended under) and the parent has not ended, so a worker
    that lost its parent (terminated, or claimed by another) cannot add a child."""

    id: str
    name: str
    started: LogEntry
    parent_id: str | None = None
    owner: str | None = None
    lease_seconds: float | None = None
    queue: str | None = None
    priority: int = 0
    dedup_id: str | None = None
    partition_key: str | None = None
    start_at: float | None = None
    parent_fence: int | None = None


class QueueLimits(msgspec.Struct, frozen=True):
    """What a worker may take off one queue: counted in the claim's own transaction.

    ``concurrency``: workflows of the queue running at once, across all workers;
    ``worker_concurrency``: the same, per worker; ``rate_limit`` per ``rate_period``
    seconds: workflows taken off the queue. None means no limit. ``partitioned``:
    each limit applies to each partition (``partition_key``) on its own.
    """

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period: float = 1.0
    partitioned: bool = False

    def overridden(self, stored: QueueOverrides | None) -> QueueLimits:
        """These limits with the ones set at runtime (``stored``) in their place."""
        if stored is None:
            return self
        return msgspec.structs.replace(self, **stored.set_fields())


class QueueOverrides(msgspec.Struct, frozen=True, omit_defaults=True):
    """The limits of one queue set at runtime (``engine.set_queue_limits``): only the
    fields set are overridden (None: no limit); the others keep their declared value.
    Stored as JSON in the ``queue_limits`` table."""

    concurrency: int | msgspec.UnsetType | None = msgspec.UNSET
    worker_concurrency: int | msgspec.UnsetType | None = msgspec.UNSET
    rate_limit: int | msgspec.UnsetType | None = msgspec.UNSET
    rate_period: float | msgspec.UnsetType = msgspec.UNSET

    def merged(self, newer: QueueOverrides) -> QueueOverrides:
        """These overrides with ``newer``'s in their place (the fields it sets)."""
        return msgspec.structs.replace(self, **newer.set_fields())

    def set_fields(self) -> dict[str, int | float | None]:
        """The overridden limits, by field name."""
        return {
            field.name: value
            for field in msgspec.structs.fields(QueueOverrides)
            if (value := getattr(self, field.name)) is not msgspec.UNSET
        }


class ScheduleRecord(msgspec.Struct, frozen=True):
    """A cron schedule: on each tick, start ``workflow(tick, *args)`` (``args``: encoded),
    on ``queue`` (in partition ``partition_key``) when it has one."""

    id: str
    cron: str
    workflow: str
    args: bytes
    last_tick: float
    created_at: float
    updated_at: float
    queue: str | None = None
    catch_up: str = "latest"
    timezone: str = "UTC"
    paused: bool = False
    #: The partition its tick workflows get on a partitioned ``queue``.
    partition_key: str | None = None


class BreakerRecord(msgspec.Struct, frozen=True):
    """A circuit breaker's shared state; ``version`` guards compare-and-set updates."""

    name: str
    state: str
    failures: int
    opened_at: float | None
    version: int
    updated_at: float


class HeartbeatRecord(msgspec.Struct, frozen=True):
    """The last heartbeat details a step stored: by which run and attempt, when
    (``details`` encoded, sealed by the payload codec if there is one)."""

    workflow_id: str
    seq: int
    run_id: str
    attempt: int
    details: bytes
    at: float


class Snapshot(msgspec.Struct, frozen=True):
    """Derived state of a workflow after ``seq`` events: a cache, never a source of truth."""

    workflow_id: str
    seq: int
    state: bytes
    checksum: str


class Append(msgspec.Struct):
    """Events to append to one workflow's log, guarded by the writer's fencing token.

    ``status``/``wake_at``/``reason`` update the workflow's index row in the same
    transaction (``status=None`` keeps the current one).
    """

    workflow_id: str
    fence: int
    entries: Sequence[LogEntry]
    status: WorkflowStatus | None = None
    wake_at: float | None = None
    reason: str | None = None
    snapshot: Snapshot | None = None
    consumed: Sequence[int] = ()
    notices: Sequence[Notice] = ()


#: What ``EventStore.append`` says of each item: True (appended), False (refused: a
#: stale fence, seqs that do not continue the log, a forbidden transition), or the
#: ``LogDamaged`` error of a log it would have damaged further (nothing written).
Appended = bool | LogDamaged

#: The largest seq or row count a store is asked for (beyond it, SQL integers overflow).
MAX_ROWS = 2**62


def read_range(after_seq: int, until_seq: int | None) -> tuple[int, int]:
    """``after_seq`` and ``until_seq`` of a read, within what SQL integers hold. The read
    selects ``max(after, 1) <= seq <= until``: the event at ``after_seq`` too, which the
    first one is checked against."""
    high = MAX_ROWS if until_seq is None else until_seq
    return max(0, min(after_seq, MAX_ROWS)), max(0, min(high, MAX_ROWS))


def limit_value(limit: int | None) -> int:
    """A row limit as SQL takes it, the one rule of every store: None is every row
    (``MAX_ROWS``), 0 none, a larger one is cut to ``MAX_ROWS``; a negative limit is
    a ``ValueError`` (SQLite would read it as "no limit", PostgreSQL refuse it)."""
    if limit is None:
        return MAX_ROWS
    value = int(limit)
    if value < 0:
        raise ValueError(f"a row limit must be 0 or more (None: no limit), not {limit!r}")
    return min(value, MAX_ROWS)


def admit(
    item: Append, fence: int, current: WorkflowStatus, last_seq: int
) -> tuple[bool, WorkflowStatus | None]:
    """Whether ``item`` may be appended to a workflow whose index row holds ``fence``,
    ``current`` and ``last_seq``, and the status it leaves it in (None: unchanged).

    The rules every store enforces: a stale fence or a gap in the seqs is refused
    (False); an event after a terminal one, or a status change outside
    ``TRANSITIONS``, raises ``IllegalTransition``. The index follows the log: a
    terminal event sets the terminal status.
    """
    if fence != item.fence:
        return False, None
    seqs = [entry.seq for entry in item.entries]
    if seqs != list(range(last_seq + 1, last_seq + 1 + len(seqs))):
        return False, None  # the log stays gapless: an earlier append of this run was lost
    kinds = [entry.kind for entry in item.entries]
    if kinds and (current.is_terminal or any(k in TERMINAL_KINDS for k in kinds[:-1])):
        raise IllegalTransition(
            f"workflow {item.workflow_id!r}: nothing may be appended after its terminal event"
        )
    status = STATUS_AFTER.get(kinds[-1], item.status) if kinds else item.status
    if status is not None:
        check_transition(item.workflow_id, current, status)
    return True, status


class Notice(msgspec.Struct, frozen=True):
    """An inbox item for another workflow, written in the same transaction as an append.

    A child's terminal event and the notice to its parent commit together, so the
    parent always hears how its child ended.
    """

    workflow_id: str
    kind: str
    name: str | None = None
    payload: bytes | None = None


class InboxItem(msgspec.Struct, frozen=True):
    """A signal or cancel request waiting for the workflow's owner (``kind``: signal, cancel)."""

    id: int
    workflow_id: str
    kind: str
    name: str | None
    payload: bytes | None
    at: float


class WorkerRecord(msgspec.Struct, frozen=True):
    """A registered worker process: where it runs, when it last renewed its leases
    (``heartbeat_at``: the time its leases then ran to), and what it serves (the
    workflow names it has code for and the queues it takes from; None when a worker
    of an older duralog did not say)."""

    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    workflows: tuple[str, ...] | None = None
    queues: tuple[str, ...] | None = None


class Claim(msgspec.Struct, frozen=True):
    """A workflow this worker now owns, with the fencing token every append must carry.

    ``taken_from``: the worker that held it and had not let it go (its lease expired,
    or its process died): this claim is a recovery. None when nobody held it."""

    workflow_id: str
    fence: int
    taken_from: str | None = None
