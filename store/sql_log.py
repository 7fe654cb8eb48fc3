"""The log half of ``SQLStore``: reads, continue-as-new, pruning, snapshots, the inbox
and the row export ``copy_store`` uses, written once for both databases.

Each read is one statement, so it sees everything committed before it started.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from duralog.errors import CorruptEventError, IllegalTransition, LogDamaged

from .events import LogEntry, WorkflowStarted, decode_event
from .integrity import GENESIS, chain, entries
from .records import (
    Append,
    InboxItem,
    NewWorkflow,
    Snapshot,
    WorkflowRecord,
    WorkflowStatus,
    limit_value,
    read_range,
)
from .schema import (
    INSERT_EVENTS,
    WORKFLOW_COLUMNS,
    copy_values,
    described,
    event_row,
    first_row,
    workflow_record,
)
from .sql_base import FINISHED, Session, SQLBase


class SQLLog(SQLBase):
    """Reads and whole-log writes of ``SQLStore`` (see the module docstring)."""

    # -- writes ------------------------------------------------------------

    def create_workflows(self, items: Sequence[NewWorkflow]) -> list[int | None]:
        """Create workflows with their first event; None for ids that already exist,
        and for children whose parent no longer holds ``parent_fence``."""
        with self._write("creating workflows") as conn:
            # Checked in the transaction that creates the child, the parent's row
            # locked: a terminate (which moves the fence) is either before, and no
            # child is written, or waits for this commit.
            holding = self._parents_holding(conn, items)
            admitted = [
                item
                for item in items
                if item.parent_id is None
                or item.parent_fence is None
                or holding.get(item.parent_id) == item.parent_fence
            ]
            made = iter(self._insert_workflows(conn, admitted))
            kept = {id(item) for item in admitted}
            fences = [next(made) if id(item) in kept else None for item in items]
        self._created(items, fences)
        return fences

    def _parents_holding(self, conn: Session, items: Sequence[NewWorkflow]) -> dict[str, int]:
        """The fences of the parents creating children among ``items`` that have not
        ended, their rows locked in id order (as appends lock theirs: two transactions
        never wait for each other in a circle)."""
        parents = sorted(
            {item.parent_id for item in items if item.parent_id and item.parent_fence is not None}
        )
        holding: dict[str, int] = {}
        for parent_id in parents:
            row = conn.execute(
                f"SELECT fence FROM workflows WHERE id = ? AND status NOT IN {FINISHED}"
                + self.LOCK_ROWS,
                (parent_id,),
            ).fetchone()
            if row is not None:
                holding[parent_id] = int(row[0])
        return holding

    def fork_workflow(self, item: NewWorkflow, copied: Sequence[LogEntry]) -> bool:
        """Create a fork: its index row, its first event and the events ``copied`` from
        its source, chained afresh, in one transaction; False if the id is taken."""
        started = item.started.event
        origin = started.forked_from if isinstance(started, WorkflowStarted) else None
        # Its first event keeps the source's time: the fork is as new as its start.
        begun = started.start_time if isinstance(started, WorkflowStarted) else item.started.at
        rows = chain(
            [event_row(item.id, entry, self.payload_codec) for entry in (item.started, *copied)],
            GENESIS,
        )
        with self._write(f"forking into workflow {item.id!r:.200}") as conn:
            cur = conn.execute(
                "INSERT INTO workflows (id, name, status, fence, last_seq, created_at,"
                " updated_at, queue, priority, forked_from, partition_key)"
                " VALUES (?,?,?,0,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
                (
                    item.id,
                    item.name,
                    WorkflowStatus.PENDING.value,
                    rows[-1][1],
                    begun,
                    begun,
                    item.queue,
                    item.priority,
                    origin.workflow_id if origin is not None else None,
                    item.partition_key,
                ),
            )
            if cur.rowcount == 0:
                return False
            stray = conn.execute(
                "SELECT seq FROM events WHERE workflow_id = ? LIMIT 1", (item.id,)
            ).fetchone()
            if stray is not None:  # raised inside the transaction: the row goes too
                raise LogDamaged(
                    item.id,
                    stray[0],
                    "the log holds events under this id but no index row; nothing was "
                    "forked into it: run `duralog verify --all`, or fork under another id",
                )
            conn.executemany(INSERT_EVENTS, rows)
            self._notify(conn, [("created", item.id)])
        return True

    def _created(self, items: Sequence[NewWorkflow], fences: Sequence[int | None]) -> None:
        """Called once ``create_workflows`` committed (the SQLite store notes what its
        first appends continue)."""

    def continue_as_new(self, item: Append, archived_id: str, started: LogEntry) -> bool:
        """End a run and start the next under the same id, in one transaction."""
        rows = [event_row(item.workflow_id, e, self.payload_codec) for e in item.entries]
        wid = item.workflow_id
        refused: tuple[type[BaseException], ...] = (*self.CONFLICTS, IllegalTransition)
        try:
            with self._write("continuing a workflow as new", conflicts=True) as conn:
                appended = self._append_in(conn, item, rows)
                if isinstance(appended, LogDamaged):
                    raise appended
                if not appended:
                    return False
                conn.execute(
                    "INSERT INTO workflows (id, name, status, parent_id, fence, last_seq,"
                    " created_at, updated_at, reason) SELECT ?, name, 'COMPLETED', parent_id, 0,"
                    " last_seq, created_at, updated_at, ? FROM workflows WHERE id = ?",
                    (archived_id, f"continued as new: {wid}", wid),
                )
                conn.execute(
                    "UPDATE events SET workflow_id = ? WHERE workflow_id = ?", (archived_id, wid)
                )
                conn.execute("DELETE FROM snapshots WHERE workflow_id = ?", (wid,))
                # Seqs start again at 1: no step of the new run may find the old one's.
                conn.execute("DELETE FROM heartbeats WHERE workflow_id = ?", (wid,))
                conn.execute(INSERT_EVENTS, first_row(wid, started, self.payload_codec))
                conn.execute(
                    "UPDATE workflows SET last_seq = 1, status = 'RUNNING', wake_at = NULL,"
                    " reason = NULL, updated_at = ? WHERE id = ?",
                    (started.at, wid),
                )
        except refused:
            return False
        return True

    def prune(self, finished_before: float, dry_run: bool = True) -> list[WorkflowRecord]:
        """Finished workflows older than ``finished_before``; deleted unless ``dry_run``
        (one another transaction holds right now is left to the next prune)."""
        select = (
            f"SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE status IN {FINISHED}"
            " AND updated_at < ? ORDER BY updated_at, id"
        )
        if dry_run:
            with self._read("listing finished workflows") as conn:
                return [workflow_record(r) for r in conn.execute(select, (finished_before,))]
        with self._write("pruning finished workflows") as conn:
            # A late append may hold a finished workflow's row (appends lock theirs in id
            # order): waiting for it while holding others, locked oldest first, could
            # close a cycle with it. Prune skips the rows others hold (the next prune
            # takes them): it never waits on a row, so it is never part of a deadlock.
            found = [
                workflow_record(r)
                for r in conn.execute(select + self.SKIP_LOCKED, (finished_before,)).fetchall()
            ]
            ids = [(r.id,) for r in found]
            if ids:
                for table, column in (
                    ("events", "workflow_id"),
                    ("snapshots", "workflow_id"),
                    ("inbox", "workflow_id"),
                    ("heartbeats", "workflow_id"),
                    ("workflows", "id"),
                ):
                    conn.executemany(f"DELETE FROM {table} WHERE {column} = ?", ids)
        return found

    def delete_snapshots(self, workflow_id: str | None = None) -> int:
        """Delete the snapshots of one workflow (or of all); they are only a cache."""
        with self._write("deleting snapshots") as conn:
            if workflow_id is None:
                return conn.execute("DELETE FROM snapshots").rowcount
            return conn.execute(
                "DELETE FROM snapshots WHERE workflow_id = ?", (workflow_id,)
            ).rowcount

    # -- reads -------------------------------------------------------------

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
        with self._read(f"reading the events of workflow {workflow_id!r:.200}") as conn:
            rows = conn.execute(
                "SELECT seq, kind, at, body, checksum FROM events WHERE workflow_id = ?"
                " AND seq >= ? AND seq <= ? ORDER BY seq",
                (workflow_id, max(after, 1), until),
            ).fetchall()
        return entries(workflow_id, rows, after, verify)

    def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The index row of one workflow, or None."""
        with self._read(f"reading workflow {workflow_id!r:.200}") as conn:
            row = conn.execute(
                f"SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = ?", (workflow_id,)
            ).fetchone()
        return workflow_record(row) if row else None

    def list_workflows(
        self,
        status: WorkflowStatus | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> list[WorkflowRecord]:
        """Index rows matching ``status`` and ``name``, newest first; at most ``limit``
        (None: all; a negative limit is a ``ValueError``)."""
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(WorkflowStatus(status).value)
        if name is not None:
            where.append("name = ?")
            params.append(name)
        sql = f"SELECT {WORKFLOW_COLUMNS} FROM workflows"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id"
        if limit is not None:
            sql += f" LIMIT {limit_value(limit)}"
        with self._read("listing workflows") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [workflow_record(row) for row in rows]

    def changed_workflows(self, since: float) -> list[WorkflowRecord]:
        """Workflows whose newest event is at or after ``since``, oldest change first."""
        with self._read("listing changed workflows") as conn:
            rows = conn.execute(
                f"SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE updated_at >= ?"
                " ORDER BY updated_at, id",
                (since,),
            ).fetchall()
        return [workflow_record(row) for row in rows]

    def published(self, workflow_id: str, key: str) -> bytes | None:
        """The latest value published under ``key``, read from the log itself."""
        # The key is matched as it is encoded in the body (PostgreSQL's jsonb refuses
        # the \u0000 a payload may hold, so bodies stay text), and each candidate is
        # decoded to be sure.
        needle = '"key":' + msgspec.json.encode(key).decode()
        with self._read(f"reading what {workflow_id!r:.200} published") as conn:
            rows = conn.execute(
                "SELECT seq, body FROM events WHERE workflow_id = ?"
                f" AND kind = 'StatePublished' AND {self.FIND}(body, ?) > 0 ORDER BY seq DESC",
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
        with self._read(f"reading the snapshot of {workflow_id!r:.200}") as conn:
            row = conn.execute(
                "SELECT seq, state, checksum FROM snapshots WHERE workflow_id = ?"
                " ORDER BY seq DESC LIMIT 1",
                (workflow_id,),
            ).fetchone()
        return Snapshot(workflow_id, row[0], bytes(row[1]), row[2]) if row else None

    # -- the inbox ---------------------------------------------------------

    def send(
        self, workflow_id: str, kind: str, name: str | None, payload: bytes | None, at: float
    ) -> int:
        """Put a signal or cancel request in a workflow's inbox."""
        with self._write(f"a {kind} for workflow {workflow_id!r:.200}") as conn:
            (row,) = conn.execute(
                "INSERT INTO inbox (workflow_id, kind, name, payload, at)"
                " VALUES (?,?,?,?,?) RETURNING id",
                (workflow_id, kind, name, payload.decode() if payload is not None else None, at),
            ).fetchall()
            self._notify(conn, [("inbox", workflow_id)])
        return int(row[0])

    def inbox(self, workflow_id: str) -> list[InboxItem]:
        """Waiting inbox items of one workflow, oldest first."""
        with self._read(f"reading the inbox of {workflow_id!r:.200}") as conn:
            rows = conn.execute(
                "SELECT id, workflow_id, kind, name, payload, at FROM inbox"
                " WHERE workflow_id = ? ORDER BY id",
                (workflow_id,),
            ).fetchall()
        return [
            InboxItem(r[0], r[1], r[2], r[3], r[4].encode() if r[4] is not None else None, r[5])
            for r in rows
        ]

    def owned_with_inbox(self, worker_id: str) -> list[str]:
        """Workflows of ``worker_id`` with inbox items waiting."""
        with self._read("reading inboxes") as conn:
            rows = conn.execute(
                "SELECT DISTINCT i.workflow_id FROM inbox i JOIN workflows w"
                " ON w.id = i.workflow_id WHERE w.owner = ?",
                (worker_id,),
            ).fetchall()
        return [r[0] for r in rows]

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
        where = f" WHERE ({key}) > ({', '.join('?' * len(spec.key))})" if after else ""
        with self._read(f"reading {table}") as conn:
            rows = conn.execute(
                f"SELECT {', '.join(spec.names)} FROM {table}{where} ORDER BY {key} LIMIT ?",
                [*(after or ()), limit_value(limit)],
            ).fetchall()
        return [tuple(row) if raw else copy_values(spec, row) for row in rows]

    def count_rows(self, table: str) -> int:
        """How many rows ``table`` holds."""
        described(table)
        with self._read(f"counting {table}") as conn:
            (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
        return int(count)
