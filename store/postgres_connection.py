"""Connections of the PostgreSQL store: one per thread, transactions, errors, wake-ups.

Every thread gets its own autocommit connection (psycopg connections are not for
concurrent use); writes run in explicit transactions at READ COMMITTED. A
connection that broke (the server restarted, the network dropped) is replaced
on the thread's next call, so the store outlives a server restart. Driver errors
never leave the store raw: they become ``StoreError`` naming the database and
what was being done.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from duralog.errors import StoreError

from .postgres_listen import Listener, one_line, payload
from .postgres_schema import Address, channel_name

Conn = psycopg.Connection[tuple[Any, ...]]
#: Errors a caller may turn into a refused item: a key clash, a deadlock.
CONFLICTS = (psycopg.errors.IntegrityError, psycopg.errors.TransactionRollback)
_COMMIT = {"full": "on", "normal": "off"}
#: No transaction of the store waits between its statements; one that does has stalled.
STALLED_TRANSACTION_MS = 10_000


#: TCP keepalives and a send timeout, unless the URL sets its own.
_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}
#: A connection unused for this long is checked (``SELECT 1``) before it is used again.
IDLE_CHECK_SECONDS = 10.0


class Connections:
    """The connections of one ``PostgresStore``; see the module docstring."""

    def __init__(self, address: Address, durability: str, connect_timeout: float) -> None:
        self.address = address
        self.schema = address.schema or ""
        self.channel = ""
        self._synchronous = _COMMIT[durability]
        self._connect_timeout = max(1, round(connect_timeout))
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, Conn]] = []
        self._lock = threading.Lock()
        self._listener: Listener | None = None
        #: Server processes of this store's connections: their notifications are its own.
        self.backend_pids: set[int] = set()
        self.closed = False
        self._closing = False

    def use_schema(self, schema: str) -> None:
        """The schema the log lives in (known once the first connection is open)."""
        self.schema = schema
        self.channel = channel_name(schema)

    def connect(self) -> Conn:
        """A new connection with the store's settings (raises the driver's errors)."""
        options: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self.address.conninfo:
            options["connect_timeout"] = self._connect_timeout
        # A connection a proxy or a network drops silently would otherwise hang a
        # statement until TCP gives up (hours): probe it, and give up within a minute.
        for key, value in _KEEPALIVE.items():
            if key not in self.address.conninfo:
                options[key] = value
        conn: Conn = psycopg.connect(self.address.conninfo, **options)
        settings: list[sql.Composable] = [sql.SQL(f"SET synchronous_commit TO {self._synchronous}")]
        if "idle_in_transaction_session_timeout" not in self.address.conninfo:
            # A process frozen inside a transaction (SIGSTOP, a suspended VM) would keep
            # its rows locked, and claims skip locked rows: the server ends such a session
            # after STALLED_TRANSACTION_MS, and its workflows go to other workers.
            settings.append(
                sql.SQL(f"SET idle_in_transaction_session_timeout TO {STALLED_TRANSACTION_MS}")
            )
        if self.address.schema is not None:
            settings.append(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(self.address.schema))
            )
        try:
            conn.execute(sql.SQL("; ").join(settings))
        except BaseException:
            conn.close()
            raise
        return conn

    def adopt(self, conn: Conn) -> None:
        """Use ``conn`` as this thread's connection (and close it with the store)."""
        with self._lock:
            # Connections of threads that ended are closed here, not kept until close().
            alive = []
            for thread, other in self._connections:
                if thread.is_alive() and not other.closed:
                    alive.append((thread, other))
                else:
                    other.close()
            alive.append((threading.current_thread(), conn))
            self._connections = alive
            self.backend_pids = {c.info.backend_pid for _, c in alive}
        self._local.conn = conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[Conn]:
        """This thread's connection, opened (again) if needed."""
        if self.closed:
            raise StoreError(f"the store {self.address.display} is closed")
        conn: Conn | None = getattr(self._local, "conn", None)
        now = time.monotonic()
        idle = now - getattr(self._local, "used", now) > IDLE_CHECK_SECONDS
        if conn is not None and idle and not (conn.closed or conn.broken):
            # Idle a while: the server may have restarted or a proxy dropped it.
            # One cheap round trip now beats failing the caller's real statement.
            try:
                conn.execute("SELECT 1")
            except psycopg.Error:
                conn.close()
        if conn is None or conn.closed or conn.broken:
            with self.guard("connecting"):
                conn = self.connect()
            self.adopt(conn)
        self._local.used = now
        yield conn

    @contextlib.contextmanager
    def guard(self, what: str, conflicts: bool = False) -> Iterator[None]:
        """Turn driver errors into ``StoreError``; with ``conflicts``, let a key clash or
        a deadlock through to the caller, which refuses the item instead."""
        where = self.address.display
        try:
            yield
        except CONFLICTS as exc:
            if conflicts:
                raise
            raise StoreError(
                f"the PostgreSQL log at {where} refused {what}: {one_line(exc)}"
            ) from exc
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"the PostgreSQL log at {where} failed while {what}: {one_line(exc)}; "
                "check that the server is running (a write in flight may not be committed)"
            ) from exc
        except psycopg.DataError as exc:
            raise StoreError(
                f"the PostgreSQL log at {where} refused {what}: {one_line(exc)}; "
                "PostgreSQL cannot store that value as it is: change it"
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(
                f"the PostgreSQL log at {where} refused {what}: {one_line(exc)}; check that "
                "its schema holds a duralog log that nothing else changes"
            ) from exc

    @contextlib.contextmanager
    def transaction(self, what: str, conflicts: bool = False) -> Iterator[Conn]:
        """A transaction on this thread's connection, committed when the block ends."""
        with self.connection() as conn, self.guard(what, conflicts), conn.transaction():
            yield conn

    @contextlib.contextmanager
    def reading(self, what: str) -> Iterator[Conn]:
        """This thread's connection for reads (each statement sees committed data)."""
        with self.connection() as conn, self.guard(what):
            yield conn

    def notify(self, conn: Conn, notes: Sequence[tuple[str, str | None]]) -> None:
        """Announce ``(kind, workflow_id)`` to listeners when ``conn``'s transaction commits."""
        if notes:
            conn.execute(
                "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
                (self.channel, sorted({payload(kind, wid) for kind, wid in notes})),
            )

    def listen(self, callback: Callable[[str, str | None], None]) -> None:
        """Deliver this log's notifications to ``callback`` from a listener thread."""
        with self._lock:  # close() marks itself under the same lock: no listener leaks
            if self.closed or self._closing:
                raise StoreError(f"the store {self.address.display} is closed")
            if self._listener is None:
                self._listener = Listener(
                    self.connect, self.channel, self.address.display, lambda: self.backend_pids
                )
            listener = self._listener
        listener.add(callback)

    def close(self) -> None:
        """Stop the listener and close every connection (from any thread)."""
        with self._lock:
            if self.closed or self._closing:
                return
            self._closing = True  # no listener may start from now on
            listener = self._listener
        if listener is not None:  # wakes it through a connection: before `closed`
            listener.stop(wake=self._wake)
        with self._lock:
            self.closed = True
            for _, conn in self._connections:
                conn.close()
            self._connections.clear()

    def _wake(self, channel: str) -> None:
        with self.connection() as conn:
            conn.execute(f"NOTIFY {channel}")
