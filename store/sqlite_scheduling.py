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

from .base import BreakerRecord, Claim, NewWorkflow, QueueLimits, ScheduleRecord
from .events import WorkflowCancelled, encode_event
from .schema import SCHEDULE_COLUMNS

#: A queued workflow holds one of its queue's slots while it is in one of these.
_HOLDS_A_SLOT = "('RUNNING', 'PAUSED')"


class SchedulingMixin:
    """The queue, schedule and breaker half of ``SQLiteStore`` (see the module docstring)."""

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _connection(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
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
        lease_until: float,
        queue: QueueLimits,
        names: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Claim]:
        """Take as many PENDING workflows off ``queue`` as its limits allow right now."""
        with self._write() as conn:
            room = _room(conn, worker_id, now, queue)
            if limit is not None:  # the worker's own room (Engine(max_workflows=))
                room = min(room, limit)
            if room <= 0:
                return []
            only_names, params = "", [worker_id, lease_until, now, queue.name]
            if names is not None:
                only_names = f" AND name IN ({','.join('?' * len(names)) or 'NULL'})"
                params += names
            params.append(room)
            found = conn.execute(
                "UPDATE workflows SET owner = ?, lease_until = ?, fence = fence + 1,"
                " status = 'RUNNING', dequeued_at = ?"
                " WHERE id IN (SELECT id FROM workflows WHERE queue = ? AND status = 'PENDING'"
                f"  {only_names} ORDER BY priority, created_at, id LIMIT ?)"
                " RETURNING id, fence, priority, created_at",
                params,
            ).fetchall()
        # RETURNING comes in no promised order: hand them over by priority, then age.
        found.sort(key=lambda row: (row[2], row[3], row[0]))
        return [Claim(row[0], row[1]) for row in found]

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
            seq = int(row[0]) + 1
            body = encode_event(WorkflowCancelled(reason=reason)).decode()
            conn.execute(
                "INSERT INTO events (workflow_id, seq, kind, at, body) VALUES (?,?,?,?,?)",
                (workflow_id, seq, "WorkflowCancelled", at, body),
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


def _room(conn: sqlite3.Connection, worker_id: str, now: float, queue: QueueLimits) -> int:
    """How many more workflows ``worker_id`` may take off ``queue`` now."""
    room = 1_000
    if queue.concurrency is not None:
        (running,) = conn.execute(
            f"SELECT COUNT(*) FROM workflows WHERE queue = ? AND status IN {_HOLDS_A_SLOT}",
            (queue.name,),
        ).fetchone()
        room = min(room, queue.concurrency - running)
    if queue.worker_concurrency is not None:
        (mine,) = conn.execute(
            "SELECT COUNT(*) FROM workflows WHERE queue = ? AND owner = ?"
            f" AND status IN {_HOLDS_A_SLOT}",
            (queue.name, worker_id),
        ).fetchone()
        room = min(room, queue.worker_concurrency - mine)
    if queue.rate_limit is not None:
        (recent,) = conn.execute(
            "SELECT COUNT(*) FROM workflows WHERE queue = ? AND dequeued_at > ?",
            (queue.name, now - queue.rate_period),
        ).fetchone()
        room = min(room, queue.rate_limit - recent)
    return int(room)


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
