"""The lease half of ``SQLStore``: claims, queue claims, renewals, workers, written
once for both databases.

A claim picks its rows and takes them in one statement (``_picked_update``); on
PostgreSQL the pick skips rows another transaction holds (``SKIP LOCKED``), so
workers never wait on each other's candidates. Leases are granted and judged by
the dialect's ``CLOCK``. A queue claim is serialised per queue (``_lock_queue``:
SQLite's write lock already is, PostgreSQL takes an advisory lock), so the
queue's limits are counted while nobody else claims from it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

from duralog.errors import ErrorDetails, LogDamaged

from . import queue_room
from .events import WorkflowCancelled, WorkflowTerminated, encode_event
from .integrity import GENESIS, chain, log_end
from .queue_room import HOLDS_A_SLOT, MOST
from .records import Claim, Notice, QueueLimits, WorkerRecord, WorkflowStatus, limit_value
from .schema import INSERT_EVENTS, LOG_END
from .sql_base import FINISHED, Session, SQLBase, insert_notices, marks

_ENDED = "('COMPLETED', 'FAILED', 'CANCELLED', 'SUSPENDED')"
#: A PENDING workflow whose start is due: not delayed, or its ``start_at`` has come.
_DUE = "(start_at IS NULL OR start_at <= :now)"
#: Who takes a lease: ``:worker``, for ``:lease`` seconds, with a new fencing token.
#: (``taken_from``: who held it before, read back by the claim: a recovery, or not.)
_TAKE = "taken_from = owner, owner = :worker, lease_until = {clock} + :lease, fence = fence + 1"


class SQLLeases(SQLBase):
    """Claims, leases and workers of ``SQLStore`` (see the module docstring)."""

    def _held_by_nobody(self, params: dict[str, object], dead_owners: Sequence[str]) -> str:
        """A workflow nobody alive holds: no owner, or another worker (``:worker``)
        whose lease expired or who died on this host."""
        dead = marks(params, "dead", dead_owners)
        return (
            f"(owner IS NULL OR (owner <> :worker AND (lease_until < {self.CLOCK}"
            f" OR owner IN {dead})))"
        )

    def _take(
        self,
        conn: Session,
        room: int,
        params: dict[str, object],
        *,
        update: str,
        where: str,
        order: tuple[str, ...],
    ) -> list[Claim]:
        """``UPDATE workflows SET <update>`` on up to ``room`` rows ``where`` (skipping
        rows another transaction holds), picked in ``order``; their claims in that order."""
        if room <= 0:
            return []
        columns = ", ".join(order)
        found = conn.execute(
            self._picked_update(
                update.format(clock=self.CLOCK),
                where,
                columns,
                limit=" LIMIT :room",
                lock=self.SKIP_LOCKED,
                returning=f" RETURNING id, fence, taken_from, {columns}",
            ),
            {**params, "room": room},
        ).fetchall()
        found.sort(key=lambda row: tuple(row[3:]))  # RETURNING comes in no promised order
        return [Claim(row[0], row[1], row[2]) for row in found]

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
        """Take the lease of up to ``limit`` claimable workflows in the given statuses
        (and, with ``names``, only workflows whose code this worker has), oldest first;
        never a queued one, which only ``claim_queued`` takes."""
        params: dict[str, object] = {"worker": worker_id, "lease": lease_seconds, "now": now}
        where = f"status IN {marks(params, 's', [WorkflowStatus(s).value for s in statuses])}"
        where += f" AND {self._held_by_nobody(params, dead_owners)} AND queue IS NULL"
        where += f" AND (status <> 'PENDING' OR {_DUE})"
        if workflow_id is not None:
            where += " AND id = :id"
            params["id"] = workflow_id
        if names is not None:
            where += f" AND name IN {marks(params, 'name', names)}"
        with self._write("claiming workflows") as conn:
            return self._take(
                conn,
                limit_value(limit),
                params,
                update=_TAKE + ", reason = CASE WHEN status = 'SUSPENDED' THEN NULL"
                " ELSE reason END, status = CASE WHEN status IN ('PENDING', 'SUSPENDED')"
                " THEN 'RUNNING' ELSE status END",
                where=where,
                order=("created_at", "id"),
            )

    def renew_leases(self, worker_id: str, lease_seconds: float) -> list[str]:
        """Extend every lease ``worker_id`` holds on an unfinished workflow, by the
        store's clock; their ids."""
        params = {"worker": worker_id, "lease": lease_seconds, "now": time.time()}
        with self._write("renewing leases") as conn:
            # Rows are locked in id order, as appends lock them: no deadlock between the two.
            held = conn.execute(
                self._picked_update(
                    f"lease_until = {self.CLOCK} + :lease",
                    f"owner = :worker AND status NOT IN {_ENDED}",
                    "id",
                    lock=self.LOCK_ROWS,
                    returning=" RETURNING id",
                ),
                params,
            ).fetchall()
            conn.execute(
                f"UPDATE workers SET heartbeat_at = {self.CLOCK} + :lease WHERE id = :worker",
                params,
            )
        return [row[0] for row in held]

    def count_recovery(
        self, worker_id: str, workflow_id: str, fence: int, recoveries: int, at_seq: int
    ) -> bool:
        """Record a workflow's recoveries in a row (``EventStore.count_recovery``)."""
        with self._write(f"counting a recovery of workflow {workflow_id!r:.200}") as conn:
            return bool(
                conn.execute(
                    "UPDATE workflows SET recoveries = ?, recovered_at = ?"
                    " WHERE id = ? AND owner = ? AND fence = ?",
                    (recoveries, at_seq, workflow_id, worker_id, fence),
                ).rowcount
            )

    def release(self, worker_id: str, workflow_id: str, fence: int) -> None:
        """Drop one lease, if this worker still holds it under ``fence``."""
        with self._write("releasing a lease") as conn:
            cur = conn.execute(
                "UPDATE workflows SET owner = NULL, lease_until = NULL"
                " WHERE id = ? AND owner = ? AND fence = ?",
                (workflow_id, worker_id, fence),
            )
            if cur.rowcount:
                self._notify(conn, [("released", workflow_id)])

    def next_start(self, now: float, queues: Sequence[str]) -> float | None:
        """The earliest delayed start after ``now`` a worker serving ``queues`` waits for."""
        params: dict[str, object] = {"now": now}
        served = marks(params, "q", queues)
        with self._read("looking for delayed starts") as conn:
            row = conn.execute(
                "SELECT min(start_at) FROM workflows WHERE status = 'PENDING'"
                " AND start_at IS NOT NULL AND start_at > :now AND owner IS NULL"
                f" AND (queue IS NULL OR queue IN {served})",
                params,
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- workers -----------------------------------------------------------

    def register_worker(
        self,
        worker_id: str,
        host: str,
        pid: int,
        now: float,
        serves: tuple[Sequence[str], Sequence[str]] | None = None,
        lease_seconds: float = 0.0,
    ) -> None:
        """Record a live worker process, with what it serves."""
        said = None
        if serves is not None:
            said = msgspec.json.encode(
                {"workflows": sorted(serves[0]), "queues": sorted(serves[1])}
            ).decode()
        with self._write("registering a worker") as conn:
            conn.execute(
                "INSERT INTO workers (id, host, pid, started_at, heartbeat_at, serves)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET host = excluded.host,"
                " pid = excluded.pid, started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at, serves = excluded.serves",
                (worker_id, host, pid, now, now + lease_seconds, said),
            )

    def workers(self) -> list[tuple[str, str, int]]:
        """Every registered worker as (id, host, pid)."""
        with self._read("listing workers") as conn:
            rows = conn.execute("SELECT id, host, pid FROM workers").fetchall()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def worker_records(self) -> list[WorkerRecord]:
        """Every registered worker, with what it serves, oldest first."""
        with self._read("listing workers") as conn:
            rows = conn.execute(
                "SELECT id, host, pid, started_at, heartbeat_at, serves FROM workers"
                " ORDER BY started_at, id"
            ).fetchall()
        return [_worker_record(row) for row in rows]

    def waiting_by_name(self) -> list[tuple[str, str | None, int]]:
        """How many workflows wait unclaimed, by (name, queue)."""
        with self._read("counting waiting workflows") as conn:
            rows = conn.execute(
                "SELECT name, queue, COUNT(*) FROM workflows"
                " WHERE status = 'PENDING' AND owner IS NULL GROUP BY name, queue"
                " ORDER BY name, queue"
            ).fetchall()
        return [(str(r[0]), None if r[1] is None else str(r[1]), int(r[2])) for r in rows]

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker that stops cleanly and release its leases."""
        with self._write("unregistering a worker") as conn:
            conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))
            released = conn.execute(
                self._picked_update(
                    "owner = NULL, lease_until = NULL", "owner = ?", "id", lock=self.LOCK_ROWS
                ),
                (worker_id,),
            ).rowcount
            if released:
                self._notify(conn, [("released", None)])

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
        left = min(limit_value(limit), MOST)
        if left <= 0:
            return []
        params: dict[str, object] = {
            "worker": worker_id,
            "lease": lease_seconds,
            "now": now,
            "queue": queue.name,
        }
        # The queue's rows this worker may take, and the ones nobody alive holds.
        scope = "queue = :queue"
        if names is not None:
            scope += f" AND name IN {marks(params, 'name', names)}"
        if exclude:
            scope += f" AND id NOT IN {marks(params, 'not', exclude)}"
        unheld = self._held_by_nobody(params, dead_owners)
        with self._write(f"taking workflows off queue {queue.name!r}") as conn:
            if not self._lock_queue(conn, queue.name, wait=resume_suspended):
                return []  # another worker is taking from it: come back on the next look
            # Limits set at runtime, read under the queue's lock: every worker sees them.
            queue = queue.overridden(queue_room.stored(conn, queue.name))
            split = queue.partitioned

            def within(where: str, limits: tuple[queue_room.Limit, ...]) -> str:
                # A partitioned queue counts each limit per partition, in the pick itself.
                if not split:
                    return where
                return f"{where} AND {queue_room.partition_pick(params, queue, where, limits)}"

            # a. Orphans already hold a slot of the queue: only this worker's share
            # (worker_concurrency) limits taking them over. They keep their status.
            room = left
            if queue.worker_concurrency is not None and not split:
                room = min(room, queue.worker_concurrency - queue_room.mine(conn, worker_id, queue))
            taken = self._take(
                conn,
                room,
                params,
                update=_TAKE,
                where=within(
                    f"{scope} AND status IN {HOLDS_A_SLOT} AND {unheld}", ("worker_concurrency",)
                ),
                order=("created_at", "id"),
            )
            left -= len(taken)
            # b. A resumed workflow takes a slot again, but it left the queue long
            # ago: the rate limit, which counts departures, does not apply to it.
            resumed: list[Claim] = []
            if resume_suspended and left > 0:
                resumed = self._take(
                    conn,
                    left
                    if split
                    else min(left, queue_room.room(conn, worker_id, now, queue, False)),
                    params,
                    update=_TAKE + ", status = 'RUNNING', reason = NULL",
                    where=within(
                        f"{scope} AND status = 'SUSPENDED' AND {unheld}",
                        ("concurrency", "worker_concurrency"),
                    ),
                    order=("created_at", "id"),
                )
                left -= len(resumed)
            # c. Waiting ones whose start is due, within every limit (counted again:
            # a. and b. took slots).
            waiting: list[Claim] = []
            if left > 0:
                free = left if split else queue_room.room(conn, worker_id, now, queue)
                waiting = self._take(
                    conn,
                    min(left, free),
                    params,
                    update=_TAKE + ", status = 'RUNNING', dequeued_at = :now",
                    where=within(
                        f"{scope} AND status = 'PENDING' AND {_DUE}",
                        ("concurrency", "worker_concurrency", "rate_limit"),
                    ),
                    order=("priority", "created_at", "id"),
                )
        return taken + resumed + waiting

    def cancel_queued(self, workflow_id: str, at: float, reason: str = "") -> bool:
        """End a workflow still waiting on its queue (or for its delayed start) as
        CANCELLED, in one transaction."""
        body = encode_event(WorkflowCancelled(reason=reason), self.payload_codec).decode()
        with self._write(f"cancelling queued workflow {workflow_id!r:.200}") as conn:
            row = conn.execute(
                "SELECT last_seq FROM workflows WHERE id = ? AND status = 'PENDING'"
                " AND owner IS NULL AND (queue IS NOT NULL OR start_at IS NOT NULL)"
                + self.SKIP_LOCKED,
                (workflow_id,),
            ).fetchone()
            if row is None:  # not waiting, or a worker is taking it right now
                return False
            seq = _end_log(conn, workflow_id, int(row[0]), "WorkflowCancelled", at, body)
            conn.execute(
                "UPDATE workflows SET status = 'CANCELLED', last_seq = ?, updated_at = ?,"
                " fence = fence + 1, wake_at = NULL WHERE id = ?",
                (seq, at, workflow_id),
            )
            conn.execute("DELETE FROM inbox WHERE workflow_id = ?", (workflow_id,))
        return True

    def terminate(
        self,
        workflow_id: str,
        at: float,
        error: ErrorDetails,
        notices: Sequence[Notice] = (),
        reason: str | None = None,
    ) -> int | None:
        """End a workflow that has not ended, at once (``EventStore.terminate``)."""
        body = encode_event(WorkflowTerminated(error=error), self.payload_codec).decode()
        with self._write(f"terminating workflow {workflow_id!r:.200}") as conn:
            # Waits for an append of its owner in flight (a short transaction): the
            # event goes after it, and the owner's next append finds the fence moved.
            row = conn.execute(
                f"SELECT last_seq FROM workflows WHERE id = ? AND status NOT IN {FINISHED}"
                + self.LOCK_ROWS,
                (workflow_id,),
            ).fetchone()
            if row is None:  # ended already (or deleted)
                return None
            seq = _end_log(conn, workflow_id, int(row[0]), "WorkflowTerminated", at, body)
            conn.execute(
                "UPDATE workflows SET status = 'FAILED', last_seq = ?, updated_at = ?,"
                " fence = fence + 1, owner = NULL, lease_until = NULL, wake_at = NULL,"
                " reason = ? WHERE id = ?",
                (seq, at, reason, workflow_id),
            )
            conn.execute("DELETE FROM inbox WHERE workflow_id = ?", (workflow_id,))
            insert_notices(conn, notices, at)
            self._notify(
                conn, [("ended", workflow_id), *(("inbox", n.workflow_id) for n in notices)]
            )
        return seq


class _Serves(msgspec.Struct):
    workflows: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()


def _worker_record(row: Sequence[object]) -> WorkerRecord:
    serves = None
    if isinstance(row[5], str):
        try:
            serves = msgspec.json.decode(row[5], type=_Serves)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            serves = None  # damaged: said nothing
    return WorkerRecord(
        str(row[0]),
        str(row[1]),
        int(row[2]),  # type: ignore[call-overload]
        float(row[3]),  # type: ignore[arg-type]
        float(row[4]),  # type: ignore[arg-type]
        None if serves is None else serves.workflows,
        None if serves is None else serves.queues,
    )


def _end_log(conn: Session, workflow_id: str, last: int, kind: str, at: float, body: str) -> int:
    """Append the terminal event ``kind`` after seq ``last``, chained to the event there
    (``LogDamaged`` if that is not the log's end); its seq."""
    previous, damage = log_end(last, conn.execute(LOG_END, (workflow_id, last)).fetchall())
    if damage is not None:
        raise LogDamaged(workflow_id, *damage)
    seq = last + 1
    conn.execute(INSERT_EVENTS, chain([(workflow_id, seq, kind, at, body)], previous or GENESIS)[0])
    return seq
