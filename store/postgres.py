"""The PostgreSQL store: one log shared by workers on many machines.

Same tables and guarantees as the SQLite store (``store/schema.py`` describes
both), the same queries (``SQLStore``, ``store/sql_store.py``), with PostgreSQL's
own means:

- Calls borrow connections from a bounded pool (``store/postgres_connection.py``);
  writes are explicit transactions at READ COMMITTED.
- An append locks its workflows' index rows and writes them in one batch
  (``store/postgres_append.py``).
- Claims take rows with ``FOR UPDATE SKIP LOCKED``: workers never wait on each
  other's candidates. Queue claims are serialised per queue with an advisory
  lock; at READ COMMITTED every later statement sees what the previous holder
  committed.
- Leases are granted and judged by the server's clock (``SERVER_NOW``), never by
  the workers' wall clocks (which may disagree).
- Writes that leave work for other processes (a new unowned workflow, an inbox
  item, a released lease) ``pg_notify`` in their own transaction; ``listen``
  delivers them (``store/postgres_listen.py``).
- ``durability="full"`` commits with ``synchronous_commit = on``; ``"normal"``
  with ``off`` (a server crash may lose the last commits, never corrupt the log).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import psycopg

from duralog.errors import ConfigurationError, StoreError, positive_seconds, whole_number

from .envelope import PayloadCodec
from .postgres_append import append_all, clash, insert_events
from .postgres_connection import (
    CONFLICTS,
    DEFAULT_POOL_SIZE,
    DEFAULT_POOL_TIMEOUT,
    Conn,
    Connections,
    PgSession,
)
from .postgres_listen import one_line
from .postgres_schema import applied_version, lock_key, migrate, parse_address
from .records import Append, Appended, Durability, NewWorkflow, WorkflowStatus, check_durability
from .schema import EventRow, described, event_row, first_row
from .sql_base import Note, Session
from .sql_store import SQLStore

#: Now, by the server's clock: leases are granted and judged by it alone.
SERVER_NOW = "extract(epoch from clock_timestamp())"


class PostgresStore(SQLStore):
    """The log in a PostgreSQL database (``pip install 'duralog[postgres]'``): the
    PostgreSQL dialect of ``SQLStore``.

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
        payload_codec: the codec of the engine that owns the log (``payload_codec``).

    Raises ``ConfigurationError`` for a bad URL or a server that cannot be reached.

    Example:
        ```python
        engine = duralog.Engine("postgresql://app@db.internal/prod?schema=duralog")
        ```
    """

    CLOCK = SERVER_NOW
    remote = True  # every call is a round trip: workers make theirs off their loop
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    LOCK_ROWS = " FOR UPDATE"
    GREATEST = "GREATEST"
    FIND = "strpos"
    CONFLICTS = CONFLICTS
    PICKED_UPDATE = (
        "WITH picked AS ({pick}) UPDATE workflows SET {update}"
        " FROM picked WHERE id = pick{returning}"
    )

    def __init__(
        self,
        url: str,
        *,
        durability: Durability = "full",
        schema: str | None = None,
        connect_timeout: float = 10.0,
        pool_size: int | None = None,
        pool_timeout: float | None = None,
        payload_codec: PayloadCodec | None = None,
        create: bool = True,
    ) -> None:
        check_durability(durability)
        self.payload_codec = payload_codec
        self.durability = durability
        self.address = parse_address(url, schema)
        whole_number(pool_size, "pool_size (connections)", minimum=1, optional=True)
        pool_timeout = positive_seconds(
            pool_timeout, "pool_timeout (the wait for a connection)", optional=True
        )
        size = pool_size if pool_size is not None else self.address.pool_size
        timeout = pool_timeout if pool_timeout is not None else self.address.pool_timeout
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
                if not create and applied_version(conn, str(schema)) < 0:
                    raise StoreError(
                        f"no duralog log at {self.address.display} (schema {schema!r}); "
                        "check --db and its ?schema= (nothing was created)"
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

    # -- the dialect's hooks ---------------------------------------------------

    @contextlib.contextmanager
    def _read(self, what: str) -> Iterator[PgSession]:
        with self._db.reading(what) as conn:
            yield PgSession(conn)

    @contextlib.contextmanager
    def _write(self, what: str, conflicts: bool = False) -> Iterator[PgSession]:
        with self._db.transaction(what, conflicts) as conn:
            yield PgSession(conn)

    def _notify(self, conn: Session, notes: Sequence[Note]) -> None:
        self._db.notify(_raw(conn), notes)

    def _lock_queue(self, conn: Session, queue: str, wait: bool) -> bool:
        raw = _raw(conn)
        key = lock_key(self._db.schema, "queue:" + queue)
        if not wait:
            # Another worker is taking from this queue: come back on the next look
            # rather than block this worker's event loop behind it.
            (locked,) = raw.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone() or (
                False,
            )
            return bool(locked)
        # Resuming happens once, at a worker's start: wait for the worker taking from
        # this queue now (a short transaction) rather than skip it, but not forever,
        # whatever lock_timeout the server sets.
        raw.execute("SET LOCAL lock_timeout = '30s'")
        try:
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        except psycopg.errors.LockNotAvailable:
            raise StoreError(f"queue {queue!r} stayed locked by another worker for 30 s") from None
        return True

    # -- the dialect's own writes ----------------------------------------------

    def _insert_workflows(self, conn: Session, items: Sequence[NewWorkflow]) -> list[int | None]:
        """Insert workflows with their first event inside the caller's transaction.

        A queued workflow is always created PENDING and unowned: a worker takes it
        off its queue when the queue's limits allow."""
        raw = _raw(conn)
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            first.setdefault(item.id, i)
        # In id order: two transactions creating the same ids never wait on each other
        # in a cycle.
        chosen = sorted((items[i] for i in first.values()), key=lambda item: item.id)
        if not chosen:
            return []
        owners = [item.owner if item.queue is None else None for item in chosen]
        # No conflict target: an id that exists, or a dedup id a live workflow of the
        # queue holds (a partial unique index), leaves nothing written.
        created = {
            row[0]
            for row in raw.execute(
                "INSERT INTO workflows (id, name, status, parent_id, owner, lease_until, fence,"
                " last_seq, created_at, updated_at, queue, priority, dedup_id, partition_key,"
                " start_at)"
                " SELECT id, name, status, parent_id, owner,"
                f"  {SERVER_NOW} + lease, fence, last_seq, created_at, updated_at, queue,"
                "  priority, dedup_id, partition_key, start_at"
                " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[],"
                " %b::text[], %b::float8[], %b::bigint[], %b::bigint[], %b::float8[],"
                " %b::float8[], %b::text[], %b::bigint[], %b::text[], %b::text[],"
                " %b::float8[]) AS u(id, name, status, parent_id, owner, lease, fence,"
                " last_seq, created_at, updated_at, queue, priority, dedup_id, partition_key,"
                " start_at) ON CONFLICT DO NOTHING RETURNING id",
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
                    [item.dedup_id for item in chosen],
                    [item.partition_key for item in chosen],
                    [item.start_at for item in chosen],
                ),
            )
        }
        new = [item for item in chosen if item.id in created]
        insert_events(raw, [first_row(item.id, item.started, self.payload_codec) for item in new])
        self._db.notify(
            raw,
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
        rows = [
            [event_row(item.workflow_id, e, self.payload_codec) for e in item.entries]
            for item in batch
        ]
        try:
            with self._db.transaction("appending events", conflicts=True) as conn:
                return append_all(self._db, conn, batch, rows)
        except CONFLICTS:
            pass
        # A clash inside a group: append one by one, so only the culprit is refused.
        results: list[Appended] = []
        for item, item_rows in zip(batch, rows, strict=True):
            try:
                with self._db.transaction("appending events", conflicts=True) as conn:
                    results += append_all(self._db, conn, [item], [item_rows])
            except CONFLICTS:
                results.append(clash(self._db, item))
        return results

    def _append_in(self, conn: Session, item: Append, rows: list[EventRow]) -> Appended:
        (appended,) = append_all(self._db, _raw(conn), [item], [rows])
        return appended

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


def _raw(conn: Session) -> Conn:
    """The psycopg connection under a session of this store."""
    assert isinstance(conn, PgSession)
    return conn.conn
