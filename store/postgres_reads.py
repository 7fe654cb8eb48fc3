"""Reads of the PostgreSQL store, and the row export/import that ``copy_store`` uses.

Each read is one statement on the thread's connection (autocommit), so it sees
everything committed before it started.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from duralog.errors import CorruptEventError

from .base import InboxItem, Snapshot, WorkflowRecord, WorkflowStatus, limit_value, read_range
from .events import LogEntry, decode_event
from .integrity import entries
from .postgres_connection import Connections
from .schema import WORKFLOW_COLUMNS, copy_values, described, workflow_record


class ReadsMixin:
    """The read half of ``PostgresStore`` (see the module docstring)."""

    _db: Connections

    def read_events(
        self,
        workflow_id: str,
        after_seq: int = 0,
        until_seq: int | None = None,
        *,
        verify: bool = True,
    ) -> list[LogEntry]:
        """Events of one workflow with ``after_seq < seq <= until_seq``, in order, checked
        against the event before them (``LogDamaged``; ``verify=False``: only a row that
        is no event at all is refused)."""
        after, until = read_range(after_seq, until_seq)
        with self._db.reading(f"reading the events of {workflow_id!r:.200}") as conn:
            rows = conn.execute(
                "SELECT seq, kind, at, body, checksum FROM events WHERE workflow_id = %s"
                " AND seq >= %s AND seq <= %s ORDER BY seq",
                (workflow_id, max(after, 1), until),
            ).fetchall()
        return entries(workflow_id, rows, after, verify)

    def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The index row of one workflow, or None."""
        with self._db.reading(f"reading workflow {workflow_id!r}") as conn:
            row = conn.execute(
                f"SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = %s", (workflow_id,)
            ).fetchone()
        return workflow_record(row) if row else None

    def list_workflows(
        self,
        status: WorkflowStatus | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> list[WorkflowRecord]:
        """Index rows matching ``status`` and ``name``, newest first."""
        where, params = [], []
        if status is not None:
            where.append("status = %s")
            params.append(WorkflowStatus(status).value)
        if name is not None:
            where.append("name = %s")
            params.append(name)
        query = f"SELECT {WORKFLOW_COLUMNS} FROM workflows"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created_at DESC, id"
        if limit is not None:
            query += f" LIMIT {limit_value(limit)}"
        with self._db.reading("listing workflows") as conn:
            rows = conn.execute(query, params).fetchall()
        return [workflow_record(row) for row in rows]

    def changed_workflows(self, since: float) -> list[WorkflowRecord]:
        """Workflows whose newest event is at or after ``since``, oldest change first."""
        with self._db.reading("listing changed workflows") as conn:
            rows = conn.execute(
                f"SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE updated_at >= %s"
                " ORDER BY updated_at, id",
                (since,),
            ).fetchall()
        return [workflow_record(row) for row in rows]

    def inbox(self, workflow_id: str) -> list[InboxItem]:
        """Waiting inbox items of one workflow, oldest first."""
        with self._db.reading(f"reading the inbox of {workflow_id!r}") as conn:
            rows = conn.execute(
                "SELECT id, workflow_id, kind, name, payload, at FROM inbox"
                " WHERE workflow_id = %s ORDER BY id",
                (workflow_id,),
            ).fetchall()
        return [
            InboxItem(r[0], r[1], r[2], r[3], r[4].encode() if r[4] is not None else None, r[5])
            for r in rows
        ]

    def owned_with_inbox(self, worker_id: str) -> list[str]:
        """Workflows of ``worker_id`` with inbox items waiting."""
        with self._db.reading("reading inboxes") as conn:
            rows = conn.execute(
                "SELECT DISTINCT i.workflow_id FROM inbox i JOIN workflows w"
                " ON w.id = i.workflow_id WHERE w.owner = %s",
                (worker_id,),
            ).fetchall()
        return [r[0] for r in rows]

    def published(self, workflow_id: str, key: str) -> bytes | None:
        """The latest value published under ``key``, read from the log itself."""
        # Bodies stay text (jsonb refuses the \u0000 a payload may hold), so the key is
        # matched as it is encoded in the body, and each candidate decoded to be sure.
        needle = '"key":' + msgspec.json.encode(key).decode()
        with self._db.reading(f"reading what {workflow_id!r} published") as conn:
            rows = conn.execute(
                "SELECT seq, body FROM events WHERE workflow_id = %s"
                " AND kind = 'StatePublished' AND strpos(body, %s) > 0 ORDER BY seq DESC",
                (workflow_id, needle),
            )
            for seq, body in rows:
                try:
                    event = decode_event(body)
                except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
                    raise CorruptEventError(workflow_id, seq, str(exc)) from exc
                if getattr(event, "key", None) == key:
                    return bytes(getattr(event, "value", b"null"))
        return None

    def load_snapshot(self, workflow_id: str) -> Snapshot | None:
        """The newest snapshot of one workflow (the caller verifies its checksum)."""
        with self._db.reading(f"reading the snapshot of {workflow_id!r}") as conn:
            row = conn.execute(
                "SELECT seq, state, checksum FROM snapshots WHERE workflow_id = %s"
                " ORDER BY seq DESC LIMIT 1",
                (workflow_id,),
            ).fetchone()
        return Snapshot(workflow_id, row[0], bytes(row[1]), row[2]) if row else None

    def workers(self) -> list[tuple[str, str, int]]:
        """Every registered worker as (id, host, pid)."""
        with self._db.reading("listing workers") as conn:
            rows = conn.execute("SELECT id, host, pid FROM workers").fetchall()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    # -- copying (copy_store) ----------------------------------------------

    def export_rows(
        self,
        table: str,
        after: Sequence[object] | None = None,
        limit: int = 1000,
        *,
        raw: bool = False,
    ) -> list[tuple[object, ...]]:
        """Up to ``limit`` rows of ``table`` with a primary key above ``after``, in key
        order, every column in the order ``store/schema.py`` gives (``raw``: unconverted)."""
        spec = described(table)
        key = ", ".join(spec.key)
        where, params = "", list(after or ())
        if after is not None:
            where = f" WHERE ({key}) > ({', '.join(['%s'] * len(spec.key))})"
        with self._db.reading(f"reading {table}") as conn:
            rows = conn.execute(
                f"SELECT {', '.join(spec.names)} FROM {table}{where} ORDER BY {key} LIMIT %s",
                [*params, limit_value(limit)],
            ).fetchall()
        return [tuple(row) if raw else copy_values(spec, row) for row in rows]

    def import_rows(self, table: str, rows: Sequence[Sequence[object]]) -> int:
        """Insert rows made by ``export_rows`` (of any store) in one transaction; a key the
        database assigns (the inbox id) is assigned anew. Returns how many."""
        spec = described(table)
        keep = [i for i, column in enumerate(spec.columns) if column.type != "serial"]
        if not rows:
            return 0
        with self._db.transaction(f"copying rows into {table}") as conn:
            cursor = conn.cursor()
            with cursor.copy(f"COPY {table} ({', '.join(spec.copied_names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[i] for i in keep])
        return len(rows)

    def count_rows(self, table: str) -> int:
        """How many rows ``table`` holds."""
        described(table)
        with self._db.reading(f"counting {table}") as conn:
            (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
        return int(count)
