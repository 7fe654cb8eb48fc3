"""Step heartbeats of ``SQLStore``, written once for both databases.

A running step's last heartbeat details live in ``heartbeats`` (one row per step of a
workflow), not in the log: a step that reports progress every second would drown its
history. The worker that holds the workflow writes them, at most every
``heartbeat_interval``, and the write is fenced like an append: a worker that lost the
workflow writes nothing (and so learns that it lost it).
"""

from __future__ import annotations

from .records import HeartbeatRecord
from .schema import HEARTBEAT_COLUMNS
from .sql_base import SQLBase


class SQLHeartbeats(SQLBase):
    """Heartbeat details of ``SQLStore`` (see the module docstring)."""

    def put_heartbeat(self, record: HeartbeatRecord, fence: int) -> bool:
        """Store ``record`` (replacing the step's earlier details) if the workflow's fence
        is still ``fence``; False, with nothing written, when it is not (another worker
        took the workflow, or it ended)."""
        with self._write(f"storing a heartbeat of workflow {record.workflow_id!r:.200}") as conn:
            cur = conn.execute(
                f"INSERT INTO heartbeats ({HEARTBEAT_COLUMNS})"
                " SELECT ?, ?, ?, ?, ?, ? FROM workflows WHERE id = ? AND fence = ?"
                " ON CONFLICT (workflow_id, seq) DO UPDATE SET run_id = excluded.run_id,"
                " attempt = excluded.attempt, details = excluded.details, at = excluded.at",
                (
                    record.workflow_id,
                    record.seq,
                    record.run_id,
                    record.attempt,
                    record.details.decode(),
                    record.at,
                    record.workflow_id,
                    fence,
                ),
            )
            return cur.rowcount > 0

    def get_heartbeat(self, workflow_id: str, seq: int) -> HeartbeatRecord | None:
        """The details step ``seq`` of the workflow stored last, or None."""
        with self._read(f"reading a heartbeat of workflow {workflow_id!r:.200}") as conn:
            row = conn.execute(
                f"SELECT {HEARTBEAT_COLUMNS} FROM heartbeats WHERE workflow_id = ? AND seq = ?",
                (workflow_id, seq),
            ).fetchone()
        if row is None:
            return None
        wid, step_seq, run_id, attempt, details, at = row
        return HeartbeatRecord(
            str(wid), int(step_seq), str(run_id), int(attempt), str(details).encode(), float(at)
        )

    def delete_heartbeats(self, workflow_id: str, seq: int | None = None) -> int:
        """Forget the stored details of one step of the workflow (None: of all its
        steps); returns how many rows went."""
        with self._write(f"deleting heartbeats of workflow {workflow_id!r:.200}") as conn:
            if seq is None:
                cur = conn.execute("DELETE FROM heartbeats WHERE workflow_id = ?", (workflow_id,))
            else:
                cur = conn.execute(
                    "DELETE FROM heartbeats WHERE workflow_id = ? AND seq = ?", (workflow_id, seq)
                )
            return cur.rowcount
