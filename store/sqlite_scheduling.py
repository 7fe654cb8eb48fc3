"""Queues, cron schedules and circuit breakers in the SQLite store.

Each decision that must hold across processes (how many workflows a queue may
start now, whether a tick was already started, whether a breaker changed under
us) is made inside one ``BEGIN IMMEDIATE`` transaction, so SQLite's write lock
serialises it against every other worker on the same file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence

from duralog.errors import LogDamaged

from . import queue_room
from .base import BreakerRecord, Claim, NewWorkflow, QueueLimits, ScheduleRecord
from .events import WorkflowCancelled, encode_event
from .integrity import GENESIS, chain, log_end
from .queue_room import HOLDS_A_SLOT, MOST
from .schema import SCHEDULE_COLUMNS
from .sqlite_append import INSERT_EVENTS, LOG_END


class SchedulingMixin:
    """The queue, schedule and breaker half of ``SQLiteStore`` (see the module docstring)."""

    def _write(self, what: str = "") -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _connection(self, what: str = "") -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    @staticmethod
    def _insert_workflows(
        conn: sqlite3.Connection, items: Sequence[NewWorkflow]
    ) -> list[int | None]:
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
        # The queue's rows this worker may take, and the ones nobody alive holds.
        scope, scope_params = "queue = ?", [queue.name]
        if names is not None:
            scope += f" AND name IN ({','.join('?' * len(names)) or 'NULL'})"
            scope_params += names
        if exclude:
            scope += f" AND id NOT IN ({','.join('?' * len(exclude))})"
            scope_params += exclude
        unheld, unheld_params = held_by_nobody(worker_id, now, dead_owners)
        lease_until = now + lease_seconds
        with self._write() as conn:
            # a. Orphans already hold a slot of the queue: only this worker's share
            # (worker_concurrency) limits taking them over. They keep their status.
            room = left
            if queue.worker_concurrency is not None:
                room = min(
                    room,
                    queue.worker_concurrency - queue_room.mine(conn.execute, "?", worker_id, queue),
                )
            taken = _take(
                conn,
                room,
                update="owner = ?, lease_until = ?, fence = fence + 1",
                where=f"{scope} AND status IN {HOLDS_A_SLOT} AND {unheld}",
                order="created_at, id",
                params=[worker_id, lease_until, *scope_params, *unheld_params],
            )
            left -= len(taken)
            # b. A resumed workflow takes a slot again, but it left the queue long
            # ago: the rate limit, which counts departures, does not apply to it.
            resumed: list[Claim] = []
            if resume_suspended and left > 0:
                resumed = _take(
                    conn,
                    min(
                        left, queue_room.room(conn.execute, "?", worker_id, now, queue, rate=False)
                    ),
                    update="owner = ?, lease_until = ?, fence = fence + 1,"
                    " status = 'RUNNING', reason = NULL",
                    where=f"{scope} AND status = 'SUSPENDED' AND {unheld}",
                    order="created_at, id",
                    params=[worker_id, lease_until, *scope_params, *unheld_params],
                )
                left -= len(resumed)
            # c. Waiting ones, within every limit (counted again: a. and b. took slots).
            waiting: list[Claim] = []
            if left > 0:
                waiting = _take(
                    conn,
                    min(left, queue_room.room(conn.execute, "?", worker_id, now, queue)),
                    update="owner = ?, lease_until = ?, fence = fence + 1,"
                    " status = 'RUNNING', dequeued_at = ?",
                    where=f"{scope} AND status = 'PENDING'",
                    order="priority, created_at, id",
                    params=[worker_id, lease_until, now, *scope_params],
                )
        return taken + resumed + waiting

    def cancel_queued(self, workflow_id: str, at: float, reason: str = "") -> bool:
        """End a workflow still waiting on its queue as CANCELLED, in one transaction."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT last_seq FROM workflows WHERE id = ? AND status = 'PENDING'"
                " AND owner IS NULL AND queue IS NOT NULL",
                (workflow_id,),
            ).fetchone()
            if row is None:
                return False
            last = int(row[0])
            previous, damage = log_end(last, conn.execute(LOG_END, (workflow_id, last)).fetchall())
            if damage is not None:
                raise LogDamaged(workflow_id, *damage)
            seq = last + 1
            body = encode_event(WorkflowCancelled(reason=reason)).decode()
            conn.execute(
                INSERT_EVENTS,
                chain([(workflow_id, seq, "WorkflowCancelled", at, body)], previous or GENESIS)[0],
            )
            conn.execute(
                "UPDATE workflows SET status = 'CANCELLED', last_seq = ?, updated_at = ?,"
                " fence = fence + 1, wake_at = NULL WHERE id = ?",
                (seq, at, workflow_id),
            )
            conn.execute("DELETE FROM inbox WHERE workflow_id = ?", (workflow_id,))
        return True

    # -- schedules ---------------------------------------------------------

    def put_schedule(self, record: ScheduleRecord) -> None:
        """Create a schedule, or update its definition (its last tick and pause stay)."""
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (id) DO UPDATE SET cron = excluded.cron,"
                " workflow = excluded.workflow, args = excluded.args, queue = excluded.queue,"
                " catch_up = excluded.catch_up, timezone = excluded.timezone,"
                " updated_at = excluded.updated_at",
                _schedule_row(record),
            )

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by id."""
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY id")
            return [_schedule(row) for row in rows.fetchall()]

    def pause_schedule(self, schedule_id: str, paused: bool, now: float) -> bool:
        """Pause or resume a schedule; False if there is none with that id. Ticks that
        fell while it was paused are skipped (resuming moves its last tick to ``now``)."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE schedules SET paused = ?, updated_at = ?,"
                " last_tick = CASE WHEN ? THEN last_tick ELSE MAX(last_tick, ?) END WHERE id = ?",
                (int(paused), now, int(paused), now, schedule_id),
            )
            return cur.rowcount > 0

    def delete_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule (the workflows it started stay); False if there was none."""
        with self._write() as conn:
            return conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount > 0

    def fire_schedule(
        self, schedule_id: str, last_tick: float, new_last_tick: float, items: Sequence[NewWorkflow]
    ) -> bool:
        """Create the tick workflows and move the last tick, if nobody else did first."""
        with self._write() as conn:
            moved = conn.execute(
                "UPDATE schedules SET last_tick = ? WHERE id = ? AND last_tick = ? AND paused = 0",
                (new_last_tick, schedule_id, last_tick),
            ).rowcount
            if not moved:
                return False
            self._insert_workflows(conn, items)
        return True

    # -- circuit breakers --------------------------------------------------

    def get_breaker(self, name: str) -> BreakerRecord | None:
        """A circuit breaker's state, or None if it never changed."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT name, state, failures, opened_at, version, updated_at FROM breakers"
                " WHERE name = ?",
                (name,),
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
        with self._write() as conn:
            if record.version == 1:
                cur = conn.execute(
                    "INSERT INTO breakers (state, failures, opened_at, version, updated_at, name)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT (name) DO NOTHING",
                    values,
                )
            else:
                cur = conn.execute(
                    "UPDATE breakers SET state = ?, failures = ?, opened_at = ?, version = ?,"
                    " updated_at = ? WHERE name = ? AND version = ?",
                    (*values, record.version - 1),
                )
            return cur.rowcount > 0


def _take(
    conn: sqlite3.Connection,
    room: int,
    *,
    update: str,
    where: str,
    order: str,
    params: list[object],
) -> list[Claim]:
    """``UPDATE workflows SET <update>`` on up to ``room`` rows ``where``, picked in
    ``order``; their claims in that order."""
    if room <= 0:
        return []
    found = conn.execute(
        f"UPDATE workflows SET {update} WHERE id IN (SELECT id FROM workflows WHERE {where}"
        f" ORDER BY {order} LIMIT ?) RETURNING id, fence, {order}",
        [*params, room],
    ).fetchall()
    # RETURNING comes in no promised order.
    found.sort(key=lambda row: tuple(row[2:]))
    return [Claim(row[0], row[1]) for row in found]


def held_by_nobody(
    worker_id: str, now: float, dead_owners: Sequence[str]
) -> tuple[str, list[object]]:
    """The condition (and its parameters) for a workflow nobody alive holds: no owner,
    or another worker whose lease expired or who died on this host."""
    dead = ",".join("?" * len(dead_owners)) or "NULL"
    return (
        f"(owner IS NULL OR (owner != ? AND (lease_until < ? OR owner IN ({dead}))))",
        [worker_id, now, *dead_owners],
    )


def _schedule_row(r: ScheduleRecord) -> tuple[object, ...]:
    return (
        r.id,
        r.cron,
        r.workflow,
        r.args.decode(),
        r.last_tick,
        r.created_at,
        r.updated_at,
        r.queue,
        r.catch_up,
        r.timezone,
        int(r.paused),
    )


def _schedule(row: Sequence[object]) -> ScheduleRecord:
    (id_, cron, workflow, args, last_tick, created, updated, queue, catch_up, tz, paused) = row
    return ScheduleRecord(
        id=str(id_),
        cron=str(cron),
        workflow=str(workflow),
        args=str(args).encode(),
        last_tick=float(last_tick),  # type: ignore[arg-type]
        created_at=float(created),  # type: ignore[arg-type]
        updated_at=float(updated),  # type: ignore[arg-type]
        queue=None if queue is None else str(queue),
        catch_up=str(catch_up),
        timezone=str(tz),
        paused=bool(paused),
    )
