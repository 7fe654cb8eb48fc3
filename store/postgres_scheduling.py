"""Queues, cron schedules and circuit breakers in the PostgreSQL store.

Each decision that must hold across processes is made inside one transaction:
a queue claim first takes an advisory lock on the queue (so its limits are
counted while nobody else claims from it; at READ COMMITTED every later
statement sees what the previous holder committed), a schedule's tick moves by
compare-and-set on its last tick, a breaker by compare-and-set on its version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from duralog.errors import LogDamaged, StoreError

from . import queue_room
from .base import BreakerRecord, Claim, NewWorkflow, QueueLimits, ScheduleRecord
from .events import WorkflowCancelled, encode_event
from .integrity import GENESIS, chain, log_end
from .postgres_connection import Conn, Connections
from .postgres_schema import lock_key
from .queue_room import HOLDS_A_SLOT, MOST
from .schema import BREAKER_COLUMNS, EVENT_COLUMNS, SCHEDULE_COLUMNS

#: Now, by the server's clock: leases are granted and judged by it alone, never by the
#: workers' wall clocks (which may disagree).
SERVER_NOW = "extract(epoch from clock_timestamp())"
#: The end of a lease granted now for ``%(lease)s`` seconds.
LEASE_UNTIL = f"{SERVER_NOW} + %(lease)s"

#: A workflow nobody alive holds: no owner, or another worker whose lease expired (by
#: the server's clock) or who died on this host (parameters ``worker`` and ``dead``).
HELD_BY_NOBODY = (
    f"(owner IS NULL OR (owner <> %(worker)s AND (lease_until < {SERVER_NOW}"
    " OR owner = ANY(%(dead)s::text[]))))"
)


class SchedulingMixin:
    """The queue, schedule and breaker half of ``PostgresStore``."""

    _db: Connections

    def _insert_workflows(self, conn: Conn, items: Sequence[NewWorkflow]) -> list[int | None]:
        raise NotImplementedError

    # -- queues ------------------------------------------------------------

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
        """Take over, resume, then take off ``queue`` what its limits allow right now
        (see ``EventStore.claim_queued``), all in one transaction."""
        left = MOST if limit is None else min(limit, MOST)
        if left <= 0:
            return []
        params: dict[str, Any] = {
            "worker": worker_id,
            "lease": lease_seconds,
            "now": now,
            "queue": queue.name,
            "dead": list(dead_owners),
        }
        # The queue's rows this worker may take, and the ones nobody alive holds.
        scope = "queue = %(queue)s"
        if names is not None:
            scope += " AND name = ANY(%(names)s::text[])"
            params["names"] = list(names)
        if exclude:
            scope += " AND id <> ALL(%(exclude)s::text[])"
            params["exclude"] = list(exclude)
        with self._db.transaction(f"taking workflows off queue {queue.name!r}") as conn:
            key = lock_key(self._db.schema, "queue:" + queue.name)
            if resume_suspended:
                # Resuming happens once, at a worker's start: wait for the worker
                # taking from this queue now (a short transaction) rather than skip it,
                # but not forever, whatever lock_timeout the server sets.
                conn.execute("SET LOCAL lock_timeout = '30s'")
                try:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
                except psycopg.errors.LockNotAvailable:
                    raise StoreError(
                        f"queue {queue.name!r} stayed locked by another worker for 30 s"
                    ) from None
            else:
                # Another worker is taking from this queue: come back on the next look
                # rather than block this worker's event loop behind it.
                (locked,) = conn.execute(
                    "SELECT pg_try_advisory_xact_lock(%s)", (key,)
                ).fetchone() or (False,)
                if not locked:
                    return []
            # a. Orphans already hold a slot of the queue: only this worker's share
            # (worker_concurrency) limits taking them over. They keep their status.
            room = left
            if queue.worker_concurrency is not None:
                room = min(
                    room,
                    queue.worker_concurrency
                    - queue_room.mine(conn.execute, "%s", worker_id, queue),
                )
            taken = _take(
                conn,
                room,
                params,
                update=f"owner = %(worker)s, lease_until = {LEASE_UNTIL}, fence = w.fence + 1",
                where=f"{scope} AND status IN {HOLDS_A_SLOT} AND {HELD_BY_NOBODY}",
                order=("created_at", "id"),
            )
            left -= len(taken)
            # b. A resumed workflow takes a slot again, but it left the queue long
            # ago: the rate limit, which counts departures, does not apply to it.
            resumed: list[Claim] = []
            if resume_suspended and left > 0:
                resumed = _take(
                    conn,
                    min(
                        left, queue_room.room(conn.execute, "%s", worker_id, now, queue, rate=False)
                    ),
                    params,
                    update=f"owner = %(worker)s, lease_until = {LEASE_UNTIL}, fence = w.fence + 1,"
                    " status = 'RUNNING', reason = NULL",
                    where=f"{scope} AND status = 'SUSPENDED' AND {HELD_BY_NOBODY}",
                    order=("created_at", "id"),
                )
                left -= len(resumed)
            # c. Waiting ones, within every limit (counted again: a. and b. took slots).
            waiting: list[Claim] = []
            if left > 0:
                waiting = _take(
                    conn,
                    min(left, queue_room.room(conn.execute, "%s", worker_id, now, queue)),
                    params,
                    update=f"owner = %(worker)s, lease_until = {LEASE_UNTIL}, fence = w.fence + 1,"
                    " status = 'RUNNING', dequeued_at = %(now)s",
                    where=f"{scope} AND status = 'PENDING'",
                    order=("priority", "created_at", "id"),
                )
        return taken + resumed + waiting

    def cancel_queued(self, workflow_id: str, at: float, reason: str = "") -> bool:
        """End a workflow still waiting on its queue as CANCELLED, in one transaction."""
        body = encode_event(WorkflowCancelled(reason=reason)).decode()
        with self._db.transaction(f"cancelling queued workflow {workflow_id!r}") as conn:
            row = conn.execute(
                "SELECT last_seq FROM workflows WHERE id = %s AND status = 'PENDING'"
                " AND owner IS NULL AND queue IS NOT NULL FOR UPDATE SKIP LOCKED",
                (workflow_id,),
            ).fetchone()
            if row is None:  # not waiting, or a worker is taking it right now
                return False
            last = int(row[0])
            previous, damage = log_end(
                last,
                conn.execute(
                    "SELECT seq, checksum FROM events WHERE workflow_id = %s AND seq >= %s"
                    " ORDER BY seq LIMIT 2",
                    (workflow_id, last),
                ).fetchall(),
            )
            if damage is not None:
                raise LogDamaged(workflow_id, *damage)
            seq = last + 1
            conn.execute(
                f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s)",
                chain([(workflow_id, seq, "WorkflowCancelled", at, body)], previous or GENESIS)[0],
            )
            conn.execute(
                "UPDATE workflows SET status = 'CANCELLED', last_seq = %s, updated_at = %s,"
                " fence = fence + 1, wake_at = NULL WHERE id = %s",
                (seq, at, workflow_id),
            )
            conn.execute("DELETE FROM inbox WHERE workflow_id = %s", (workflow_id,))
        return True

    # -- schedules ---------------------------------------------------------

    def put_schedule(self, record: ScheduleRecord) -> None:
        """Create a schedule, or update its definition (its last tick and pause stay)."""
        with self._db.transaction(f"storing schedule {record.id!r}") as conn:
            conn.execute(
                f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES"
                " (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (id) DO UPDATE SET cron = excluded.cron,"
                " workflow = excluded.workflow, args = excluded.args, queue = excluded.queue,"
                " catch_up = excluded.catch_up, timezone = excluded.timezone,"
                " updated_at = excluded.updated_at",
                (
                    record.id,
                    record.cron,
                    record.workflow,
                    record.args.decode(),
                    record.last_tick,
                    record.created_at,
                    record.updated_at,
                    record.queue,
                    record.catch_up,
                    record.timezone,
                    record.paused,
                ),
            )

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by id."""
        with self._db.reading("listing schedules") as conn:
            rows = conn.execute(f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY id").fetchall()
        return [_schedule(row) for row in rows]

    def pause_schedule(self, schedule_id: str, paused: bool, now: float) -> bool:
        """Pause or resume a schedule; False if there is none with that id. Resuming
        moves its last tick to ``now``: ticks that fell while paused are skipped."""
        with self._db.transaction(f"pausing schedule {schedule_id!r}") as conn:
            cur = conn.execute(
                "UPDATE schedules SET paused = %s, updated_at = %s,"
                " last_tick = CASE WHEN %s THEN last_tick ELSE GREATEST(last_tick, %s) END"
                " WHERE id = %s",
                (bool(paused), now, bool(paused), now, schedule_id),
            )
            return cur.rowcount > 0

    def delete_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule (the workflows it started stay); False if there was none."""
        with self._db.transaction(f"deleting schedule {schedule_id!r}") as conn:
            cur = conn.execute("DELETE FROM schedules WHERE id = %s", (schedule_id,))
            return cur.rowcount > 0

    def fire_schedule(
        self, schedule_id: str, last_tick: float, new_last_tick: float, items: Sequence[NewWorkflow]
    ) -> bool:
        """Create the tick workflows and move the last tick, if nobody else did first."""
        with self._db.transaction(f"firing schedule {schedule_id!r}") as conn:
            # A concurrent firer holds the row lock; once it commits, last_tick no longer
            # matches and this update moves nothing.
            moved = conn.execute(
                "UPDATE schedules SET last_tick = %s WHERE id = %s AND last_tick = %s"
                " AND NOT paused",
                (new_last_tick, schedule_id, last_tick),
            ).rowcount
            if not moved:
                return False
            self._insert_workflows(conn, items)
        return True

    # -- circuit breakers --------------------------------------------------

    def get_breaker(self, name: str) -> BreakerRecord | None:
        """A circuit breaker's state, or None if it never changed."""
        with self._db.reading(f"reading breaker {name!r}") as conn:
            row = conn.execute(
                f"SELECT {BREAKER_COLUMNS} FROM breakers WHERE name = %s", (name,)
            ).fetchone()
        return BreakerRecord(*row) if row else None

    def put_breaker(self, record: BreakerRecord) -> bool:
        """Store ``record`` if the stored version is ``record.version - 1``."""
        values = (
            record.state,
            record.failures,
            record.opened_at,
            record.version,
            record.updated_at,
            record.name,
        )
        with self._db.transaction(f"storing breaker {record.name!r}") as conn:
            if record.version == 1:
                cur = conn.execute(
                    "INSERT INTO breakers (state, failures, opened_at, version, updated_at, name)"
                    " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (name) DO NOTHING",
                    values,
                )
            else:
                cur = conn.execute(
                    "UPDATE breakers SET state = %s, failures = %s, opened_at = %s,"
                    " version = %s, updated_at = %s WHERE name = %s AND version = %s",
                    (*values, record.version - 1),
                )
            return cur.rowcount > 0


def _take(
    conn: Conn,
    room: int,
    params: dict[str, Any],
    *,
    update: str,
    where: str,
    order: tuple[str, ...],
) -> list[Claim]:
    """``UPDATE workflows w SET <update>`` on up to ``room`` rows ``where`` (skipping
    rows another transaction holds), picked in ``order``; their claims in that order."""
    if room <= 0:
        return []
    columns = ", ".join(order)
    found = conn.execute(
        f"WITH picked AS (SELECT id FROM workflows WHERE {where}"
        f"  ORDER BY {columns} LIMIT %(room)s FOR UPDATE SKIP LOCKED)"
        f" UPDATE workflows w SET {update} FROM picked WHERE w.id = picked.id"
        f" RETURNING w.id, w.fence, {', '.join('w.' + column for column in order)}",
        {**params, "room": room},
    ).fetchall()
    found.sort(key=lambda row: tuple(row[2:]))
    return [Claim(row[0], row[1]) for row in found]


def _schedule(row: Sequence[object]) -> ScheduleRecord:
    fields = dict(zip(SCHEDULE_COLUMNS.split(", "), row, strict=True))
    fields["args"] = str(fields["args"]).encode()
    fields["paused"] = bool(fields["paused"])
    return ScheduleRecord(**fields)  # type: ignore[arg-type]
