"""Named queues: bounded concurrency, rate limits and priorities for started workflows.

A workflow started with ``engine.start(..., queue=...)`` waits ``PENDING`` until a
worker that declared the queue takes it off, which it does only while the queue's
limits allow. The limits are counted inside the store's claim transaction, so
they hold across every worker process on the same database, and limits set at
runtime (``engine.set_queue_limits``) are stored there and read by that transaction.

``Placement`` is where and when one start goes: its queue, priority, dedup id,
partition and delayed start, checked before anything is written.
"""

from __future__ import annotations

import datetime as dt
import enum
import re

import msgspec

from duralog.errors import ConfigurationError, positive_seconds, whole_number
from duralog.replay.definitions import REGISTRY, DeclarationKind, Registry
from duralog.store.base import QueueLimits, QueueOverrides

_NAME = r"[A-Za-z0-9_.:\-]{1,100}"  # compiled (and cached by ``re``) on first use


class Queue:
    """A named queue of workflows; declare it at module level, next to your workflows.

    Args:
        name: letters, digits and ``_ . : -``.
        concurrency: at most this many of the queue's workflows run at once, across
            all workers (a workflow holds its slot while RUNNING or PAUSED).
        worker_concurrency: at most this many at once on any one worker.
        rate_limit: at most this many taken off the queue per ``period``.
        period: the rate limit's window, in seconds or as a timedelta (default 1 s).
        partitioned: every workflow started on it names a partition
            (``engine.start(..., partition="tenant-42")``), and each of the limits
            above applies to each partition on its own: with ``concurrency=2``, two
            of every tenant's workflows may run at once, whatever the others wait.
        registry: where it is declared (default: the default registry, whose queues an
            ``Engine`` given no ``queues=`` nor ``registry=`` serves).

    Workers take a queue's workflows by ``priority`` (lower first; default 0), then
    oldest first. Only workers that declare the queue ever run its workflows, and
    never beyond its limits: one left RUNNING or PAUSED by a dead (or lease-expired)
    worker is taken over by such a worker within ``worker_concurrency`` (it already
    holds its slot of ``concurrency``), and a SUSPENDED one (its code diverged) is
    resumed when a worker starts, if ``concurrency`` and ``worker_concurrency`` leave
    room (a resumed workflow does not count against ``rate_limit``).

    The limits declared here hold until some are set at runtime with
    ``engine.set_queue_limits`` (or ``duralog queues set``): those are stored in the
    log and override these in every worker, until cleared. Example:

    ```python
    emails = duralog.Queue("emails", concurrency=10, rate_limit=100, period=60)
    engine.start(send_newsletter, user_id, queue=emails, priority=5)
    exports = duralog.Queue("exports", concurrency=2, partitioned=True)
    engine.start(export, tenant, queue=exports, partition=tenant, dedup_id=f"export-{tenant}")
    ```
    """

    def __init__(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        rate_limit: int | None = None,
        period: float | dt.timedelta = 1.0,
        partitioned: bool = False,
        registry: Registry | None = None,
    ) -> None:
        if not isinstance(name, str) or not re.fullmatch(_NAME, name):
            raise ConfigurationError(
                f"a queue name is 1-100 letters, digits or _ . : - characters, got {name!r}"
            )
        for label, value in (
            ("concurrency", concurrency),
            ("worker_concurrency", worker_concurrency),
            ("rate_limit", rate_limit),
        ):
            whole_number(value, f"queue {name!r}: {label}", minimum=1, optional=True)
        window = positive_seconds(period, f"queue {name!r}: period")
        if not isinstance(partitioned, bool):
            raise ConfigurationError(
                f"queue {name!r}: partitioned must be True or False, got {partitioned!r}"
            )
        self.name = name
        self.limits = QueueLimits(
            name,
            concurrency=concurrency,
            worker_concurrency=worker_concurrency,
            rate_limit=rate_limit,
            rate_period=window,
            partitioned=partitioned,
        )
        (REGISTRY if registry is None else registry).declared(QUEUES)[name] = self

    def __repr__(self) -> str:
        limits = self.limits
        parts = [
            f"{label}={value!r}"
            for label, value in (
                ("concurrency", limits.concurrency),
                ("worker_concurrency", limits.worker_concurrency),
                ("rate_limit", limits.rate_limit),
            )
            if value is not None
        ]
        if limits.rate_limit is not None:
            parts.append(f"period={limits.rate_period:g}")
        if limits.partitioned:
            parts.append("partitioned=True")
        return f"Queue({self.name!r}{''.join(', ' + p for p in parts)})"


#: The queues declared in a registry, by name (a later declaration replaces one).
QUEUES: DeclarationKind[str, Queue] = DeclarationKind("queues")


def resolve(queue: Queue | str, known: dict[str, Queue]) -> Queue:
    """The declared queue for ``queue``; a name nobody declared is a clear error."""
    if isinstance(queue, Queue):
        return queue
    if isinstance(queue, str) and queue in known:
        return known[queue]
    names = ", ".join(sorted(known)) or "none"
    raise ConfigurationError(
        f"no queue named {queue!r} is declared in this process (declared: {names}); declare "
        f"it with duralog.Queue({queue!r}, ...) in a module both the starter and the "
        "workers import"
    )


def check_priority(priority: object) -> int:
    """A queue priority is a whole number (lower runs first)."""
    priority = whole_number(priority, "a priority (lower runs first)")
    if not -(2**31) <= priority < 2**31:
        raise ConfigurationError(f"a priority must fit in 32 bits, got {priority}")
    return priority


#: The longest dedup id or partition key.
MAX_KEY_LENGTH = 200


class Placement(msgspec.Struct, frozen=True):
    """Where and when a start goes: ``queue`` (None: no queue) with its ``priority``,
    ``dedup_id`` and ``partition``, and ``start_at`` (None: at once)."""

    queue: Queue | None = None
    priority: int = 0
    dedup_id: str | None = None
    partition: str | None = None
    start_at: float | None = None


def place(
    queue: Queue | None,
    *,
    priority: object = 0,
    dedup_id: object = None,
    partition: object = None,
    delay: object = None,
    start_at: object = None,
    now: float,
) -> Placement:
    """Check a start's queue options (``ConfigurationError`` for a refused one) and
    say where and when it goes; a start time that has passed is no delay."""
    if dedup_id is not None:
        if queue is None:
            raise ConfigurationError(
                f"dedup_id {dedup_id!r} needs a queue: a dedup id is unique on its queue; "
                "pass queue=..., or give the workflow an id (a start with an id that "
                "exists returns that workflow)"
            )
        dedup_id = _key(dedup_id, f"queue {queue.name!r}: a dedup id")
    if partition is not None:
        if queue is None or not queue.limits.partitioned:
            where = "no queue" if queue is None else f"queue {queue.name!r}, which is not"
            raise ConfigurationError(
                f"partition {partition!r} was given with {where}"
                f"{'' if queue is None else ' partitioned'}; a partition is for a queue "
                "declared with Queue(..., partitioned=True): leave it out, or declare one"
            )
        partition = _key(partition, f"queue {queue.name!r}: a partition")
    elif queue is not None and queue.limits.partitioned:
        raise ConfigurationError(
            f"queue {queue.name!r} is partitioned: start its workflows with "
            "partition=KEY (e.g. the tenant), the key its limits are counted per"
        )
    return Placement(
        queue,
        check_priority(priority),
        dedup_id,
        partition,
        start_time(delay, start_at, now),
    )


def start_time(delay: object, start_at: object, now: float) -> float | None:
    """When a start with ``delay`` (seconds or a timedelta) or ``start_at`` (an aware
    datetime) may run, as epoch seconds; None: at once."""
    if delay is not None and start_at is not None:
        raise ConfigurationError("give delay or start_at, not both")
    if start_at is not None:
        if not isinstance(start_at, dt.datetime):
            raise ConfigurationError(
                f"start_at must be a datetime with a time zone, got {start_at!r}"
            )
        if start_at.tzinfo is None or start_at.utcoffset() is None:
            raise ConfigurationError(
                f"start_at {start_at.isoformat()} has no time zone, so it names no moment; "
                "give an aware datetime, e.g. datetime(..., tzinfo=datetime.UTC)"
            )
        at = start_at.timestamp()
    elif delay is not None:
        at = now + positive_seconds(delay, "a start delay", or_zero=True)
    else:
        return None
    return at if at > now else None


def _key(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_LENGTH:
        raise ConfigurationError(
            f"{what} must be a non-empty string of at most {MAX_KEY_LENGTH} characters, "
            f"got {value!r:.80}"
        )
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ConfigurationError(f"{what} must be valid text (UTF-8), got {value!r:.80}") from None
    return value


class Keep(enum.Enum):
    """The default of ``set_queue_limits``' arguments: the limit is left as it is."""

    KEEP = "keep"


#: Leave this limit as it is (``set_queue_limits``).
KEEP = Keep.KEEP


def overrides(
    name: str,
    *,
    concurrency: int | Keep | None = KEEP,
    worker_concurrency: int | Keep | None = KEEP,
    rate_limit: int | Keep | None = KEEP,
    period: float | dt.timedelta | Keep = KEEP,
) -> QueueOverrides:
    """The limits of queue ``name`` to store, checked like ``Queue``'s."""
    if not isinstance(name, str) or not re.fullmatch(_NAME, name):
        raise ConfigurationError(
            f"a queue name is 1-100 letters, digits or _ . : - characters, got {name!r}"
        )
    fields: dict[str, int | float | None] = {}
    for label, value in (
        ("concurrency", concurrency),
        ("worker_concurrency", worker_concurrency),
        ("rate_limit", rate_limit),
    ):
        if value is not KEEP:
            fields[label] = whole_number(
                value, f"queue {name!r}: {label}", minimum=1, optional=True
            )
    if period is not KEEP:
        fields["rate_period"] = positive_seconds(period, f"queue {name!r}: period")
    if not fields:
        raise ConfigurationError(
            f"set_queue_limits({name!r}) was given no limit to set; give concurrency, "
            "worker_concurrency, rate_limit or period (None: no limit), or clear the "
            "stored ones with clear_queue_limits"
        )
    return QueueOverrides(**fields)  # type: ignore[arg-type]
