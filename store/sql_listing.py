"""The index as operators read it (``duralog list``, ``count``, ``queues``, ``delete``),
written once for both databases: ``ListingStore`` in ``store/base.py``."""

from __future__ import annotations

from collections.abc import Sequence

from .records import StepCounts, WorkflowQuery, WorkflowRecord, WorkflowStatus, limit_value
from .schema import WORKFLOW_COLUMNS, workflow_record
from .sql_base import FINISHED, SQLBase, marks

#: The most workflow ids one ``step_counts`` statement asks about.
_IDS_PER_STATEMENT = 500

# One grouped read over the events of the ids given: each id is a range of the
# (workflow_id, seq) key, so the cost is the events of those workflows alone.
_STEP_COUNTS = (
    "SELECT workflow_id,"
    " SUM(CASE WHEN kind = 'StepScheduled' THEN 1 ELSE 0 END),"
    " SUM(CASE WHEN kind = 'StepRetrying' THEN 1 ELSE 0 END)"
    " FROM events WHERE workflow_id IN {ids}"
    " AND kind IN ('StepScheduled', 'StepRetrying') GROUP BY workflow_id"
)


def _where(query: WorkflowQuery) -> tuple[str, dict[str, object]]:
    """The ``WHERE`` clause (empty for every row) of ``query``, with its parameters."""
    parts: list[str] = []
    params: dict[str, object] = {}
    for column, prefix, values in (
        ("status", "s", [WorkflowStatus(s).value for s in query.statuses]),
        ("name", "n", list(query.names)),
        ("queue", "q", list(query.queues)),
        ("parent_id", "p", list(query.parents)),
        ("forked_from", "f", list(query.forked_from)),
        ("dedup_id", "d", list(query.dedup_ids)),
        ("partition_key", "k", list(query.partitions)),
    ):
        if values:
            parts.append(f"{column} IN {marks(params, prefix, values)}")
    if query.started_since is not None:
        parts.append("created_at >= :since")
        params["since"] = query.started_since
    if query.started_until is not None:
        parts.append("created_at < :until")
        params["until"] = query.started_until
    if query.ended_since is not None or query.ended_until is not None:
        # A finished workflow's last change is its terminal event (nothing follows it).
        parts.append(f"status IN {FINISHED}")
        if query.ended_since is not None:
            parts.append("updated_at >= :ended_since")
            params["ended_since"] = query.ended_since
        if query.ended_until is not None:
            parts.append("updated_at < :ended_until")
            params["ended_until"] = query.ended_until
    if query.id_prefix:
        # Not LIKE: SQLite's ignores case, and _ and % would need escaping.
        parts.append("substr(id, 1, :prefix_length) = :prefix")
        params["prefix"], params["prefix_length"] = query.id_prefix, len(query.id_prefix)
    if query.after is not None:  # the rows after (created_at, id) in the listing's order
        parts.append("(created_at < :after_at OR (created_at = :after_at AND id > :after_id))")
        params["after_at"], params["after_id"] = query.after
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


class SQLListing(SQLBase):
    """``ListingStore`` for ``SQLStore`` (see the module docstring)."""

    def find_workflows(
        self, query: WorkflowQuery, limit: int | None = None
    ) -> list[WorkflowRecord]:
        """Index rows matching ``query``, newest first, then by id; at most ``limit``."""
        where, params = _where(query)
        params["limit"] = limit_value(limit)
        sql = (
            f"SELECT {WORKFLOW_COLUMNS} FROM workflows{where}"
            " ORDER BY created_at DESC, id LIMIT :limit"
        )
        with self._read("listing workflows") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [workflow_record(row) for row in rows]

    def count_workflows(self, query: WorkflowQuery) -> int:
        """How many index rows match ``query``."""
        where, params = _where(query)
        with self._read("counting workflows") as conn:
            (count,) = conn.execute(
                f"SELECT count(*) FROM workflows{where}", params
            ).fetchone() or (0,)
        return int(count)

    def queue_counts(self) -> dict[str, dict[WorkflowStatus, int]]:
        """Per queue, how many of its workflows are in each status."""
        with self._read("counting queued workflows") as conn:
            rows = conn.execute(
                "SELECT queue, status, count(*) FROM workflows WHERE queue IS NOT NULL"
                " GROUP BY queue, status ORDER BY queue"
            ).fetchall()
        counts: dict[str, dict[WorkflowStatus, int]] = {}
        for queue, status, count in rows:
            counts.setdefault(queue, {})[WorkflowStatus(status)] = int(count)
        return counts

    def step_counts(self, workflow_ids: Sequence[str]) -> dict[str, StepCounts]:
        """The steps and retries of each of ``workflow_ids`` (none: left out), from
        their events alone: one grouped read per 500 ids."""
        ids = list(dict.fromkeys(workflow_ids))
        found: dict[str, StepCounts] = {}
        with self._read("counting the steps of workflows") as conn:
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                params: dict[str, object] = {}
                chunk = ids[start : start + _IDS_PER_STATEMENT]
                sql = _STEP_COUNTS.format(ids=marks(params, "w", chunk))
                for workflow_id, steps, retries in conn.execute(sql, params):
                    found[workflow_id] = StepCounts(int(steps), int(retries))
        return found

    def delete_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """Delete one finished workflow and everything of it; its row as it was."""
        with self._write(f"deleting workflow {workflow_id!r:.200}") as conn:
            row = conn.execute(
                f"SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = ?{self.LOCK_ROWS}",
                (workflow_id,),
            ).fetchone()
            if row is None:
                return None
            record = workflow_record(row)
            if record.status.is_terminal:
                for table, column in (
                    ("events", "workflow_id"),
                    ("snapshots", "workflow_id"),
                    ("inbox", "workflow_id"),
                    ("heartbeats", "workflow_id"),
                    ("workflows", "id"),
                ):
                    conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (workflow_id,))
        return record
