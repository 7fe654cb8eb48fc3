"""Cron schedules, queue limits set at runtime and circuit breakers of ``SQLStore``,
written once for both databases.

A schedule's tick moves by compare-and-set on its last tick (in the transaction
that creates the tick's workflows), a breaker by compare-and-set on its version:
whichever worker gets there first wins, the others see nothing moved. Queue limits
are merged with the ones stored in the same transaction (``put_queue_limits``).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from . import queue_room
from .records import BreakerRecord, NewWorkflow, QueueOverrides, ScheduleRecord
from .schema import BREAKER_COLUMNS, SCHEDULE_COLUMNS
from .sql_base import SQLBase


class SQLScheduling(SQLBase):
    """Schedules and breakers of ``SQLStore`` (see the module docstring)."""

    def put_schedule(self, record: ScheduleRecord) -> None:
        """Create a schedule, or update its definition (its last tick and pause stay)."""
        with self._write(f"storing schedule {record.id!r:.200}") as conn:
            conn.execute(
                f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (id) DO UPDATE SET cron = excluded.cron,"
                " workflow = excluded.workflow, args = excluded.args, queue = excluded.queue,"
                " partition_key = excluded.partition_key,"
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
                    bool(record.paused),
                    record.partition_key,
                ),
            )

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by id."""
        with self._read("listing schedules") as conn:
            rows = conn.execute(f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY id").fetchall()
        return [_schedule(row) for row in rows]

    def pause_schedule(self, schedule_id: str, paused: bool, now: float) -> bool:
        """Pause or resume a schedule; False if there is none with that id. Resuming
        moves its last tick to ``now``: ticks that fell while paused are skipped."""
        with self._write(f"pausing schedule {schedule_id!r:.200}") as conn:
            cur = conn.execute(
                "UPDATE schedules SET paused = ?, updated_at = ?, last_tick = CASE WHEN ?"
                f" THEN last_tick ELSE {self.GREATEST}(last_tick, ?) END WHERE id = ?",
                (bool(paused), now, bool(paused), now, schedule_id),
            )
            return cur.rowcount > 0

    def delete_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule (the workflows it started stay); False if there was none."""
        with self._write(f"deleting schedule {schedule_id!r:.200}") as conn:
            return conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount > 0

    def fire_schedule(
        self, schedule_id: str, last_tick: float, new_last_tick: float, items: Sequence[NewWorkflow]
    ) -> bool:
        """Create the tick workflows and move the last tick, if nobody else did first."""
        with self._write(f"firing schedule {schedule_id!r:.200}") as conn:
            # A concurrent firer holds the row; once it commits, last_tick no longer
            # matches and this update moves nothing.
            moved = conn.execute(
                "UPDATE schedules SET last_tick = ? WHERE id = ? AND last_tick = ? AND NOT paused",
                (new_last_tick, schedule_id, last_tick),
            ).rowcount
            if not moved:
                return False
            self._insert_workflows(conn, items)
        return True

    # -- circuit breakers --------------------------------------------------

    def put_queue_limits(self, name: str, limits: QueueOverrides, now: float) -> QueueOverrides:
        """Store the limits ``limits`` sets for queue ``name`` over the ones stored."""
        with self._write(f"storing the limits of queue {name!r:.200}") as conn:
            # The queue's claim lock: no claim counts with half-stored limits.
            self._lock_queue(conn, name, wait=True)
            before = queue_room.stored(conn, name) or QueueOverrides()
            merged = before.merged(limits)
            conn.execute(
                "INSERT INTO queue_limits (name, limits, updated_at) VALUES (?,?,?)"
                " ON CONFLICT (name) DO UPDATE SET limits = excluded.limits,"
                " updated_at = excluded.updated_at",
                (name, msgspec.json.encode(merged).decode(), now),
            )
        return merged

    def clear_queue_limits(self, name: str) -> bool:
        """Drop the limits stored for queue ``name``; False if there were none."""
        with self._write(f"clearing the limits of queue {name!r:.200}") as conn:
            return conn.execute("DELETE FROM queue_limits WHERE name = ?", (name,)).rowcount > 0

    def queue_limits(self) -> dict[str, QueueOverrides]:
        """The limits stored per queue (a row no duralog wrote is left out)."""
        with self._read("reading queue limits") as conn:
            rows = conn.execute("SELECT name, limits FROM queue_limits ORDER BY name").fetchall()
        found = {str(name): queue_room.decode_overrides(text) for name, text in rows}
        return {name: limits for name, limits in found.items() if limits is not None}

    def get_breaker(self, name: str) -> BreakerRecord | None:
        """A circuit breaker's state, or None if it never changed."""
        with self._read(f"reading breaker {name!r:.200}") as conn:
            row = conn.execute(
                f"SELECT {BREAKER_COLUMNS} FROM breakers WHERE name = ?", (name,)
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
        with self._write(f"storing breaker {record.name!r:.200}") as conn:
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


def _schedule(row: Sequence[object]) -> ScheduleRecord:
    (id_, cron, workflow, args, last_tick, created, updated, queue, catch_up, tz, paused, part) = (
        row
    )
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
        partition_key=None if part is None else str(part),
    )
