"""The PostgreSQL store: one log shared by workers on many machines.

Same tables and guarantees as the SQLite store (``store/schema.py`` describes
both), with PostgreSQL's own means:

- Calls borrow connections from a bounded pool (``store/postgres_connection.py``);
  writes are explicit transactions at READ COMMITTED.
- An append locks its workflows' index rows (``FOR UPDATE``, in id order, so two
  writers never deadlock), checks the fencing token, the seq and the status
  table under that lock, and writes in the same transaction; the primary key
  ``(workflow_id, seq)`` stays the last guard.
- Claims take rows with ``FOR UPDATE SKIP LOCKED``: workers never wait on each
  other's candidates. Queue claims are serialised per queue with an advisory
  lock (``store/postgres_scheduling.py``).
- Writes that leave work for other processes (a new unowned workflow, an inbox
  item, a released lease) ``pg_notify`` in their own transaction; ``listen``
  delivers them (``store/postgres_listen.py``).
- ``durability="full"`` commits with ``synchronous_commit = on``; ``"normal"``
  with ``off`` (a server crash may lose the last commits, never corrupt the log).

Reads and the bulk copy live in ``store/postgres_reads.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from duralog.errors import ConfigurationError, IllegalTransition, LogDamaged, StoreError

from .base import (
    Append,
    Appended,
    Claim,
    Durability,
    NewWorkflow,
    WorkflowRecord,
    WorkflowStatus,
    admit,
    check_durability,
)
from .events import LogEntry
from .integrity import GENESIS, ChainedRow, chain, log_end
from .postgres_connection import (
    CONFLICTS,
    DEFAULT_POOL_SIZE,
    DEFAULT_POOL_TIMEOUT,
    Conn,
    Connections,
)
from .postgres_listen import one_line
from .postgres_reads import ReadsMixin
from .postgres_scheduling import HELD_BY_NOBODY, LEASE_UNTIL, SERVER_NOW, SchedulingMixin
from .postgres_schema import migrate, parse_address
from .schema import (
    EVENT_COLUMNS,
    WORKFLOW_COLUMNS,
    EventRow,
    event_row,
    first_row,
    workflow_record,
)

_EVENT_INSERT = (
    f"INSERT INTO events ({EVENT_COLUMNS})"
    " SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::float8[], %b::text[],"
    " %b::text[])"
)
#: The index rows an append locks, each with the event its append continues (the one
#: at its last seq, if the log holds it) and that event's checksum.
_LOCK_INDEX = (
    "SELECT w.id, w.fence, w.status, w.last_seq, e.seq IS NOT NULL, e.checksum"
    " FROM workflows w LEFT JOIN events e ON e.workflow_id = w.id AND e.seq = w.last_seq"
    " WHERE w.id = ANY(%s) ORDER BY w.id FOR UPDATE OF w"
)
_LOG_END = (
    "SELECT seq, checksum FROM events WHERE workflow_id = %s AND seq >= %s ORDER BY seq LIMIT 2"
)
_STATUSES = frozenset(s.value for s in WorkflowStatus)
#: The index row after an append. Without entries an append sets status, reason and
#: wake_at as given; a finished or suspended workflow's lease ends in the same commit.
_INDEX_UPDATE = (
    "UPDATE workflows w SET"
    " last_seq = CASE WHEN v.entries THEN v.last ELSE w.last_seq END,"
    " updated_at = CASE WHEN v.entries THEN v.at ELSE w.updated_at END,"
    " wake_at = v.wake, status = COALESCE(v.status, w.status),"
    " reason = CASE WHEN v.entries THEN COALESCE(v.reason, w.reason) ELSE v.reason END,"
    " owner = CASE WHEN v.ends THEN NULL ELSE w.owner END,"
    " lease_until = CASE WHEN v.ends THEN NULL ELSE w.lease_until END"
    " FROM unnest(%b::bool[], %b::bigint[], %b::float8[], %b::float8[], %b::text[],"
    "  %b::text[], %b::bool[], %b::text[]) AS v(entries, last, at, wake, status, reason,"
    "  ends, id)"
    " WHERE w.id = v.id"
)
_FINISHED = "('COMPLETED', 'FAILED', 'CANCELLED')"
_ENDED = "('COMPLETED', 'FAILED', 'CANCELLED', 'SUSPENDED')"


class PostgresStore(ReadsMixin, SchedulingMixin):
    """The log in a PostgreSQL database (``pip install 'duralog[postgres]'``).

    Args:
        url: ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE``; a ``?schema=NAME``
            parameter keeps the log in a schema of its own (created if missing), so
            several logs can share a database.
        durability: ``"full"`` (default): a commit returns once the server has
            flushed it (``synchronous_commit = on``); ``"normal"``: the server
            flushes it a moment later (``off``): a crash of the server may lose the
            last commits, a crash of the process loses nothing.
        schema: the schema, instead of ``?schema=`` in the URL.
        connect_timeout: seconds to wait for the server when connecting.
        pool_size: how many connections the store may hold at once, besides the
            one its listener keeps (default 10; ``?pool_size=N`` in the URL). A call
            that finds them all busy waits for one.
        pool_timeout: how many seconds such a call waits before it fails with a
            ``StoreError`` (default 30; ``?pool_timeout=S`` in the URL).

    Raises ``ConfigurationError`` for a bad URL or a server that cannot be reached.

    Example:
        ```python
        engine = duralog.Engine("postgresql://app@db.internal/prod?schema=duralog")
        ```
    """

    def __init__(
        self,
        url: str,
        *,
        durability: Durability = "full",
        schema: str | None = None,
        connect_timeout: float = 10.0,
        pool_size: int | None = None,
        pool_timeout: float | None = None,
    ) -> None:
        check_durability(durability)
        self.durability = durability
        self.address = parse_address(url, schema)
        size = pool_size if pool_size is not None else self.address.pool_size
        timeout = pool_timeout if pool_timeout is not None else self.address.pool_timeout
        if (pool_size is not None and pool_size < 1) or (
            pool_timeout is not None and not pool_timeout > 0
        ):
            raise ConfigurationError(
                f"pool_size={pool_size!r}, pool_timeout={pool_timeout!r}: a store needs "
                "at least one connection and a wait for it above 0 seconds"
            )
        self._db = Connections(
            self.address,
            durability,
            connect_timeout,
            size or DEFAULT_POOL_SIZE,
            timeout or DEFAULT_POOL_TIMEOUT,
        )
        try:
            conn = self._db.connect()
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"cannot connect to the PostgreSQL log at {self.address.display}: "
                f"{one_line(exc)}; check the URL and that the server is running"
            ) from None
        try:
            with conn, self._db.guard("preparing the log's tables"):
                (current,) = conn.execute("SELECT current_schema()").fetchone() or (None,)
                schema = self.address.schema or current
                if schema is None:
                    raise StoreError(
                        f"{self.address.display} has no current schema (check its "
                        "search_path); name one with ?schema=NAME in the URL"
                    )
                migrate(conn, str(schema), self.address.display)
        except BaseException:
            self._db.close()
            raise
        self._db.use_schema(str(schema))
        self._db.open_pool()

    @property
    def path(self) -> str:
        """The log's address without its password (what messages show)."""
        return self.address.display

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding the log's tables."""
        return self._db.schema

    def __repr__(self) -> str:
        return f"PostgresStore({self.address.display!r}, durability={self.durability!r})"

    def listen(self, callback: Callable[[str, str | None], None]) -> None:
        """Call ``callback(kind, workflow_id)`` (from a listener thread) when a process
        creates an unowned workflow (``"created"``), writes an inbox item (``"inbox"``)
        or releases a lease (``"released"``). Stops on ``close()``."""
        self._db.listen(callback)

    def check(self) -> None:
        """Nothing to check: a server's database cannot be swapped under a connection."""
        if self._db.closed:
            raise StoreError(f"the store {self.address.display} is closed")

    def close(self) -> None:
        """Stop the listener and close the store's connections (one in use closes
        when its call ends)."""
        self._db.close()

    # -- writes ------------------------------------------------------------

    def create_workflows(self, items: Sequence[NewWorkflow]) -> list[int | None]:
        """Create workflows with their first event; None for ids that already exist."""
        with self._db.transaction("creating workflows") as conn:
            return self._insert_workflows(conn, items)

    def _insert_workflows(self, conn: Conn, items: Sequence[NewWorkflow]) -> list[int | None]:
        """Insert workflows with their first event inside the caller's transaction.

        A queued workflow is always created PENDING and unowned: a worker takes it
        off its queue when the queue's limits allow."""
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            first.setdefault(item.id, i)
        # In id order: two transactions creating the same ids never wait on each other
        # in a cycle.
        chosen = sorted((items[i] for i in first.values()), key=lambda item: item.id)
        if not chosen:
            return []
        owners = [item.owner if item.queue is None else None for item in chosen]
        created = {
            row[0]
            for row in conn.execute(
                "INSERT INTO workflows (id, name, status, parent_id, owner, lease_until, fence,"
                " last_seq, created_at, updated_at, queue, priority)"
                " SELECT id, name, status, parent_id, owner,"
                f"  {SERVER_NOW} + lease, fence, last_seq, created_at, updated_at, queue,"
                "  priority"
                " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[],"
                " %b::text[], %b::float8[], %b::bigint[], %b::bigint[], %b::float8[],"
                " %b::float8[], %b::text[], %b::bigint[]) AS u(id, name, status, parent_id,"
                " owner, lease, fence, last_seq, created_at, updated_at, queue, priority)"
                " ON CONFLICT (id) DO NOTHING RETURNING id",
                (
                    [item.id for item in chosen],
                    [item.name for item in chosen],
                    [
                        (WorkflowStatus.RUNNING if owner else WorkflowStatus.PENDING).value
                        for owner in owners
                    ],
                    [item.parent_id for item in chosen],
                    owners,
                    [
                        item.lease_seconds if owner else None
                        for item, owner in zip(chosen, owners, strict=True)
                    ],
                    [1 if owner else 0 for owner in owners],
                    [item.started.seq for item in chosen],
                    [item.started.at for item in chosen],
                    [item.started.at for item in chosen],
                    [item.queue for item in chosen],
                    [item.priority for item in chosen],
                ),
            )
        }
        new = [item for item in chosen if item.id in created]
        _insert_events(conn, [first_row(item.id, item.started) for item in new])
        self._db.notify(
            conn,
            [
                ("created", item.id)
                for item, owner in zip(chosen, owners, strict=True)
                if item.id in created and not owner
            ],
        )
        fences: list[int | None] = []
        for i, item in enumerate(items):
            if first[item.id] != i or item.id not in created:
                fences.append(None)
            else:
                fences.append(1 if item.owner and item.queue is None else 0)
        return fences

    def append(self, batch: Sequence[Append]) -> list[Appended]:
        """Append every item in one transaction; a refused item (stale fence, seq
        gap or collision, forbidden transition) is skipped and reported False, one on
        a damaged log reported with its ``LogDamaged``."""
        rows = [[event_row(item.workflow_id, e) for e in item.entries] for item in batch]
        try:
            with self._db.transaction("appending events", conflicts=True) as conn:
                return self._append_all(conn, batch, rows)
        except CONFLICTS:
            pass
        # A clash inside a group: append one by one, so only the culprit is refused.
        results: list[Appended] = []
        for item, item_rows in zip(batch, rows, strict=True):
            try:
                with self._db.transaction("appending events", conflicts=True) as conn:
                    results += self._append_all(conn, [item], [item_rows])
            except CONFLICTS:
                results.append(self._clash(item))
        return results

    def _clash(self, item: Append) -> Appended:
        """Why an append clashed on a seq: False, or a log that is ahead of its index."""
        with self._db.reading(f"checking the log of {item.workflow_id!r}") as conn:
            found = conn.execute(
                "SELECT fence, last_seq FROM workflows WHERE id = %s", (item.workflow_id,)
            ).fetchone()
            if found is None or found[0] != item.fence:
                return False
            at_end = conn.execute(_LOG_END, (item.workflow_id, found[1])).fetchall()
        damage = log_end(found[1], at_end)[1]
        return False if damage is None else LogDamaged(item.workflow_id, *damage)

    def _append_all(
        self, conn: Conn, batch: Sequence[Append], rows: Sequence[list[EventRow]]
    ) -> list[Appended]:
        ids = sorted({item.workflow_id for item in batch})
        index: dict[str, tuple[int, str, int, bool, str | None]] = {
            r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in conn.execute(_LOCK_INDEX, (ids,))
        }
        results: list[Appended] = []
        events: list[ChainedRow] = []
        updates: list[_Update] = []
        notes: list[tuple[str, str | None]] = []
        for item, unchained in zip(batch, rows, strict=True):
            found = index.get(item.workflow_id)
            if found is None or found[0] != item.fence:
                results.append(False)
                continue
            fence, status_text, last_seq, at_end, previous = found
            if status_text not in _STATUSES:
                results.append(
                    LogDamaged(
                        item.workflow_id,
                        last_seq,
                        f"its index row has the unknown status {status_text!r:.40}",
                    )
                )
                continue
            current = WorkflowStatus(status_text)
            if unchained and (not at_end or previous is None):
                # Read again, now that the row is locked: a join in a locking read
                # may see the log as it was before the lock was granted.
                found_end = conn.execute(_LOG_END, (item.workflow_id, last_seq)).fetchall()
                previous, damage = log_end(last_seq, found_end)
                if damage is not None:
                    results.append(LogDamaged(item.workflow_id, *damage))
                    continue
            admitted, status = _admit(item, (fence, current, last_seq))
            results.append(admitted)
            if not admitted:
                continue
            item_rows = chain(unchained, previous or GENESIS) if unchained else []
            if item_rows:
                last_seq, previous = item_rows[-1][1], item_rows[-1][5]
            index[item.workflow_id] = (fence, (status or current).value, last_seq, True, previous)
            if item_rows or item.status is not None:
                ends = status is not None and status.ends_lease
                updates.append(
                    (
                        bool(item_rows),
                        last_seq,
                        item_rows[-1][3] if item_rows else None,
                        item.wake_at,
                        status.value if status else None,
                        item.reason,
                        ends,
                        item.workflow_id,
                    )
                )
            events += item_rows
            self._write_extras(conn, item, item_rows, notes)
        _insert_events(conn, events)
        # One statement per round; a workflow appended to twice in the batch has its
        # second update in the next round, so each sees the one before.
        rounds: list[list[_Update]] = []
        seen: Counter[str] = Counter()
        for update in updates:
            if seen[update[-1]] == len(rounds):
                rounds.append([])
            rounds[seen[update[-1]]].append(update)
            seen[update[-1]] += 1
        for batch_updates in rounds:
            conn.execute(_INDEX_UPDATE, [list(c) for c in zip(*batch_updates, strict=True)])
        self._db.notify(conn, notes)
        return results

    def _write_extras(
        self, conn: Conn, item: Append, rows: list[ChainedRow], notes: list[tuple[str, str | None]]
    ) -> None:
        """An append's inbox notices, consumed inbox items and snapshot."""
        if item.notices:
            conn.cursor().executemany(
                "INSERT INTO inbox (workflow_id, kind, name, payload, at) VALUES (%s,%s,%s,%s,%s)",
                [
                    (
                        n.workflow_id,
                        n.kind,
                        n.name,
                        n.payload.decode() if n.payload is not None else None,
                        rows[-1][3] if rows else 0.0,
                    )
                    for n in item.notices
                ],
            )
            notes += [("inbox", n.workflow_id) for n in item.notices]
        if item.consumed:
            conn.execute(
                "DELETE FROM inbox WHERE workflow_id = %s AND id = ANY(%s)",
                (item.workflow_id, list(item.consumed)),
            )
        if item.snapshot is not None:
            snap = item.snapshot
            conn.execute("DELETE FROM snapshots WHERE workflow_id = %s", (snap.workflow_id,))
            conn.execute(
                "INSERT INTO snapshots (workflow_id, seq, state, checksum) VALUES (%s,%s,%s,%s)",
                (snap.workflow_id, snap.seq, snap.state, snap.checksum),
            )

    def continue_as_new(self, item: Append, archived_id: str, started: LogEntry) -> bool:
        """End a run and start the next under the same id, in one transaction."""
        rows = [event_row(item.workflow_id, e) for e in item.entries]
        wid = item.workflow_id
        try:
            with self._db.transaction("continuing a workflow as new", conflicts=True) as conn:
                (appended,) = self._append_all(conn, [item], [rows])
                if isinstance(appended, LogDamaged):
                    raise appended
                if not appended:
                    return False
                conn.execute(
                    "INSERT INTO workflows (id, name, status, parent_id, fence, last_seq,"
                    " created_at, updated_at, reason) SELECT %s, name, 'COMPLETED', parent_id, 0,"
                    " last_seq, created_at, updated_at, %s FROM workflows WHERE id = %s",
                    (archived_id, f"continued as new: {wid}", wid),
                )
                conn.execute(
                    "UPDATE events SET workflow_id = %s WHERE workflow_id = %s", (archived_id, wid)
                )
                conn.execute("DELETE FROM snapshots WHERE workflow_id = %s", (wid,))
                _insert_events(conn, [first_row(wid, started)])
                conn.execute(
                    "UPDATE workflows SET last_seq = 1, status = 'RUNNING', wake_at = NULL,"
                    " reason = NULL, updated_at = %s WHERE id = %s",
                    (started.at, wid),
                )
        except CONFLICTS:
            return False
        return True

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
        only = ""
        params: dict[str, Any] = {
            "worker": worker_id,
            "lease": lease_seconds,
            "statuses": [WorkflowStatus(s).value for s in statuses],
            "dead": list(dead_owners),
            "limit": limit,
        }
        if workflow_id is not None:
            only += " AND id = %(id)s"
            params["id"] = workflow_id
        if names is not None:
            only += " AND name = ANY(%(names)s)"
            params["names"] = list(names)
        with self._db.transaction("claiming workflows") as conn:
            found = conn.execute(
                "WITH picked AS (SELECT id FROM workflows"
                f"  WHERE status = ANY(%(statuses)s::text[]) AND {HELD_BY_NOBODY}"
                f"   AND queue IS NULL {only}"
                "  ORDER BY created_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
                f" UPDATE workflows w SET owner = %(worker)s, lease_until = {LEASE_UNTIL},"
                "  fence = w.fence + 1,"
                "  reason = CASE WHEN w.status = 'SUSPENDED' THEN NULL ELSE w.reason END,"
                "  status = CASE WHEN w.status IN ('PENDING', 'SUSPENDED') THEN 'RUNNING'"
                "   ELSE w.status END"
                " FROM picked WHERE w.id = picked.id RETURNING w.id, w.fence, w.created_at",
                params,
            ).fetchall()
        return [Claim(row[0], row[1]) for row in sorted(found, key=lambda r: (r[2], r[0]))]

    def renew_leases(self, worker_id: str, lease_seconds: float) -> list[str]:
        """Extend every lease ``worker_id`` holds on an unfinished workflow, by the
        server's clock; their ids."""
        params = {"worker": worker_id, "lease": lease_seconds}
        with self._db.transaction("renewing leases") as conn:
            # Rows are locked in id order, as appends lock them: no deadlock between the two.
            held = conn.execute(
                "WITH mine AS (SELECT id FROM workflows WHERE owner = %(worker)s"
                f"  AND status NOT IN {_ENDED} ORDER BY id FOR UPDATE)"
                f" UPDATE workflows w SET lease_until = {LEASE_UNTIL} FROM mine"
                " WHERE w.id = mine.id RETURNING w.id",
                params,
            ).fetchall()
            conn.execute(
                f"UPDATE workers SET heartbeat_at = {LEASE_UNTIL} WHERE id = %(worker)s", params
            )
            return [row[0] for row in held]

    def release(self, worker_id: str, workflow_id: str, fence: int) -> None:
        """Drop one lease, if this worker still holds it under ``fence``."""
        with self._db.transaction("releasing a lease") as conn:
            cur = conn.execute(
                "UPDATE workflows SET owner = NULL, lease_until = NULL"
                " WHERE id = %s AND owner = %s AND fence = %s",
                (workflow_id, worker_id, fence),
            )
            if cur.rowcount:
                self._db.notify(conn, [("released", workflow_id)])

    def send(
        self, workflow_id: str, kind: str, name: str | None, payload: bytes | None, at: float
    ) -> int:
        """Put a signal or cancel request in a workflow's inbox."""
        with self._db.transaction(f"a {kind} for workflow {workflow_id!r}") as conn:
            row = conn.execute(
                "INSERT INTO inbox (workflow_id, kind, name, payload, at)"
                " VALUES (%s,%s,%s,%s,%s) RETURNING id",
                (workflow_id, kind, name, payload.decode() if payload is not None else None, at),
            ).fetchone()
            self._db.notify(conn, [("inbox", workflow_id)])
        return int(row[0]) if row else 0

    def prune(self, finished_before: float, dry_run: bool = True) -> list[WorkflowRecord]:
        """Finished workflows older than ``finished_before``; deleted unless ``dry_run``
        (one another transaction holds right now is left to the next prune)."""
        select = (
            f"SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE status IN {_FINISHED}"
            " AND updated_at < %s ORDER BY updated_at, id"
        )
        if dry_run:
            with self._db.reading("listing finished workflows") as conn:
                return [workflow_record(r) for r in conn.execute(select, (finished_before,))]
        with self._db.transaction("pruning finished workflows") as conn:
            # A late append may hold a finished workflow's row (appends lock theirs in id
            # order): waiting for it while holding others, locked oldest first, could
            # close a cycle with it. Prune skips the rows others hold (the next prune
            # takes them): it never waits on a row, so it is never part of a deadlock.
            found = [
                workflow_record(r)
                for r in conn.execute(select + " FOR UPDATE SKIP LOCKED", (finished_before,))
            ]
            ids = [r.id for r in found]
            for table, column in (
                ("events", "workflow_id"),
                ("snapshots", "workflow_id"),
                ("inbox", "workflow_id"),
                ("workflows", "id"),
            ):
                conn.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s)", (ids,))
        return found

    def delete_snapshots(self, workflow_id: str | None = None) -> int:
        """Delete the snapshots of one workflow (or of all); they are only a cache."""
        with self._db.transaction("deleting snapshots") as conn:
            if workflow_id is None:
                return conn.execute("DELETE FROM snapshots").rowcount
            return conn.execute(
                "DELETE FROM snapshots WHERE workflow_id = %s", (workflow_id,)
            ).rowcount

    def register_worker(self, worker_id: str, host: str, pid: int, now: float) -> None:
        """Record a live worker process."""
        with self._db.transaction("registering a worker") as conn:
            conn.execute(
                "INSERT INTO workers (id, host, pid, started_at, heartbeat_at)"
                " VALUES (%s,%s,%s,%s,%s) ON CONFLICT (id) DO UPDATE SET host = excluded.host,"
                " pid = excluded.pid, started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at",
                (worker_id, host, pid, now, now),
            )

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker that stops cleanly and release its leases."""
        with self._db.transaction("unregistering a worker") as conn:
            conn.execute("DELETE FROM workers WHERE id = %s", (worker_id,))
            released = conn.execute(
                "WITH mine AS (SELECT id FROM workflows WHERE owner = %s ORDER BY id FOR UPDATE)"
                " UPDATE workflows w SET owner = NULL, lease_until = NULL FROM mine"
                " WHERE w.id = mine.id",
                (worker_id,),
            ).rowcount
            if released:
                self._db.notify(conn, [("released", None)])


#: entries?, last seq, updated at, wake at, status, reason, ends the lease?, workflow id
_Update = tuple[bool, int, float | None, float | None, str | None, str | None, bool, str]


def _insert_events(conn: Conn, rows: Sequence[ChainedRow]) -> None:
    if rows:
        conn.execute(_EVENT_INSERT, [list(column) for column in zip(*rows, strict=True)])


def _admit(
    item: Append, found: tuple[int, WorkflowStatus, int]
) -> tuple[bool, WorkflowStatus | None]:
    """``admit`` for a batch: every refusal, a forbidden transition too, refuses only
    this item."""
    try:
        return admit(item, *found)
    except IllegalTransition:
        return False, None
