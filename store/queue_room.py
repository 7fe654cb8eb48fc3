"""How much room a queue has, counted inside a claim's transaction (both stores)."""

from __future__ import annotations

from .records import QueueLimits
from .sql_base import Session

#: A queued workflow holds one of its queue's slots while it is in one of these.
HOLDS_A_SLOT = "('RUNNING', 'PAUSED')"
#: The most one queue claim takes.
MOST = 1_000


def _count(conn: Session, sql: str, params: tuple[object, ...]) -> int:
    (found,) = conn.execute(sql, params).fetchone() or (0,)
    return int(found)


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
