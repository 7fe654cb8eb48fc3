"""How much room a queue has, counted inside a claim's transaction (both stores).

An unpartitioned queue's room is one number (``room``). A partitioned queue's limits
apply to each partition on its own, so its room is a condition on each waiting row
(``partition_pick``): its rank within its partition must stay within what that
partition has left, all counted in one statement.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from .records import QueueLimits, QueueOverrides
from .sql_base import Session

#: A queued workflow holds one of its queue's slots while it is in one of these.
HOLDS_A_SLOT = "('RUNNING', 'PAUSED')"
#: The most one queue claim takes.
MOST = 1_000
#: The partition of a row: workflows without a key (put on the queue before it was
#: partitioned) share the partition '' (a partition key is never empty).
_PART = "COALESCE(partition_key, '')"
#: Which limits a step of ``claim_queued`` keeps (see ``partition_pick``).
Limit = str  # "concurrency", "worker_concurrency" or "rate_limit"


def _count(conn: Session, sql: str, params: tuple[object, ...]) -> int:
    (found,) = conn.execute(sql, params).fetchone() or (0,)
    return int(found)


def stored(conn: Session, name: str) -> QueueOverrides | None:
    """The limits stored for queue ``name`` (``put_queue_limits``), read in ``conn``'s
    transaction; None when none are, or the row is unreadable (the declared ones hold)."""
    row = conn.execute("SELECT limits FROM queue_limits WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    return decode_overrides(row[0])


def decode_overrides(text: object) -> QueueOverrides | None:
    """A ``queue_limits.limits`` value; None for one no duralog wrote."""
    try:
        return msgspec.json.decode(str(text), type=QueueOverrides)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def mine(conn: Session, worker_id: str, queue: QueueLimits) -> int:
    """How many of ``queue``'s slots ``worker_id`` holds."""
    return _count(
        conn,
        "SELECT count(*) FROM workflows WHERE queue = ? AND owner = ?"
        f" AND status IN {HOLDS_A_SLOT}",
        (queue.name, worker_id),
    )


def room(conn: Session, worker_id: str, now: float, queue: QueueLimits, rate: bool = True) -> int:
    """How many more workflows ``worker_id`` may take a slot of ``queue`` for now
    (``rate``: counting the rate limit too, as taking one off the queue does)."""
    left = MOST
    if queue.concurrency is not None:
        running = _count(
            conn,
            f"SELECT count(*) FROM workflows WHERE queue = ? AND status IN {HOLDS_A_SLOT}",
            (queue.name,),
        )
        left = min(left, queue.concurrency - running)
    if queue.worker_concurrency is not None:
        left = min(left, queue.worker_concurrency - mine(conn, worker_id, queue))
    if rate and queue.rate_limit is not None:
        recent = _count(
            conn,
            "SELECT count(*) FROM workflows WHERE queue = ? AND dequeued_at > ?",
            (queue.name, now - queue.rate_period),
        )
        left = min(left, queue.rate_limit - recent)
    return left


def partition_pick(
    params: dict[str, object], queue: QueueLimits, where: str, limits: Sequence[Limit]
) -> str:
    """A condition on ``workflows`` rows: the rows ``where`` picks that their partition
    still has room for, under the given ``limits`` of ``queue`` (each counted per
    partition). A row's rank in its partition (by priority, then age) must not pass
    what its partition has left. ``params`` must hold ``:queue``, ``:worker`` and
    ``:now``; the limits' values are added to it."""
    joins, checks = [], []
    counted = {
        "concurrency": (queue.concurrency, f"status IN {HOLDS_A_SLOT}"),
        "worker_concurrency": (
            queue.worker_concurrency,
            f"status IN {HOLDS_A_SLOT} AND owner = :worker",
        ),
        "rate_limit": (queue.rate_limit, "dequeued_at > :rate_since"),
    }
    for i, name in enumerate(limits):
        value, condition = counted[name]
        if value is None:
            continue
        params[f"limit_{name}"] = value
        joins.append(
            f" LEFT JOIN (SELECT {_PART} AS part, count(*) AS n FROM workflows"
            f" WHERE queue = :queue AND {condition} GROUP BY {_PART}) c{i}"
            f" ON c{i}.part = ranked.part"
        )
        checks.append(f"ranked.r <= :limit_{name} - COALESCE(c{i}.n, 0)")
    params["rate_since"] = float(params["now"]) - queue.rate_period  # type: ignore[arg-type]
    if not checks:
        return "1 = 1"
    return (
        "id IN (SELECT ranked.id FROM (SELECT id, "
        f"{_PART} AS part, row_number() OVER (PARTITION BY {_PART}"
        f" ORDER BY priority, created_at, id) AS r FROM workflows WHERE {where}) ranked"
        + "".join(joins)
        + " WHERE "
        + " AND ".join(checks)
        + ")"
    )
