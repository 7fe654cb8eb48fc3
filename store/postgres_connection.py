"""Connections of the PostgreSQL store: a bounded pool, transactions, errors, wake-ups.

A store's calls borrow autocommit connections from a pool (psycopg_pool) of at
most ``pool_size`` connections (``?pool_size=N`` in the URL; default
``DEFAULT_POOL_SIZE``), opened as calls need them and closed again after ten idle
minutes; writes run in explicit transactions at READ COMMITTED. A call that finds
every connection busy waits for one, up to ``pool_timeout`` seconds
(``?pool_timeout=S``; default ``DEFAULT_POOL_TIMEOUT``), then fails with a
``StoreError`` that says so. Waiting cannot deadlock: a call holds its connection
only while its own statements run, never waits on anything while it holds it, and
never asks the pool for a second one (a nested call on the same thread uses the
connection the thread holds). A connection that broke (the server restarted, the
network dropped) fails the call that was using it; the pool drops it and the idle
ones the server dropped with it, so the next call gets a working one and the
store outlives a server restart. The listener holds one more connection of its
own (``store/postgres_listen.py``). Driver errors never leave the store raw: they
become ``StoreError`` naming the database and what was being done.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from duralog.errors import StoreError

from .postgres_listen import Listener, one_line, payload
from .postgres_schema import Address, channel_name

Conn = psycopg.Connection[tuple[Any, ...]]
#: Errors a caller may turn into a refused item: a key clash, a serialization failure.
#: (A deadlock, ``DeadlockDetected``, is an ``OperationalError`` in psycopg: not one.)
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
#: Connections a store may hold at once (besides its listener's), unless told otherwise.
DEFAULT_POOL_SIZE = 10
#: Seconds a call waits for a connection when all of them are busy, unless told otherwise.
DEFAULT_POOL_TIMEOUT = 30.0


#: A ``:name`` mark of the shared SQL (not a ``::type`` cast).
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=1024)
def to_psycopg(statement: str) -> str:
    """A statement written with ``?`` or ``:name`` marks (``store/sql_base.py``), as
    psycopg takes it (``%s``, ``%(name)s``)."""
    return _NAMED.sub(r"%(\1)s", statement.replace("%", "%%").replace("?", "%s"))


class PgSession:
    """A connection in a read or a transaction, taking the shared SQL's marks (a
    ``store.sql_base.Session``); ``conn`` is the connection itself."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def execute(self, statement: str, parameters: Any = None, /) -> psycopg.Cursor[Any]:
        """Run one statement."""
        return self.conn.execute(to_psycopg(statement), parameters)

    def executemany(self, statement: str, parameters: Any, /) -> psycopg.Cursor[Any]:
        """Run one statement for each set of parameters."""
        cursor = self.conn.cursor()
        cursor.executemany(to_psycopg(statement), parameters)
        return cursor


class Connections:
    """The connections of one ``PostgresStore``; see the module docstring."""

    def __init__(
        self,
        address: Address,
        durability: str,
        connect_timeout: float,
        pool_size: int = DEFAULT_POOL_SIZE,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> None:
        self.address = address
        self.schema = address.schema or ""
        self.channel = ""
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self._synchronous = _COMMIT[durability]
        self._connect_timeout = max(1, round(connect_timeout))
        self._pool: ConnectionPool[Conn] | None = None
        #: The connection this thread has borrowed, while it holds it.
        self._held = threading.local()
        #: When each pooled connection was opened or last given back (idle since then).
        self._used: weakref.WeakKeyDictionary[Conn, float] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._listener: Listener | None = None
        self._pooled: dict[int, Conn] = {}  # server process id -> connection
        self.closed = False
        self._closing = False

    def use_schema(self, schema: str) -> None:
        """The schema the log lives in (known once the first connection is open)."""
        self.schema = schema
        self.channel = channel_name(schema)

    def connect(self) -> Conn:
        """A new connection, outside the pool, with the store's settings (raises the
        driver's errors): for the migration at open, and for the listener."""
        conn: Conn = psycopg.connect(self.address.conninfo, **self._options())
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self.address.conninfo:
            options["connect_timeout"] = self._connect_timeout
        # A connection a proxy or a network drops silently would otherwise hang a
        # statement until TCP gives up (hours): probe it, and give up within a minute.
        for key, value in _KEEPALIVE.items():
            if key not in self.address.conninfo:
                options[key] = value
        return options

    def _configure(self, conn: Conn) -> None:
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
        conn.execute(sql.SQL("; ").join(settings))

    def _configure_pooled(self, conn: Conn) -> None:
        """Set up a connection the pool opened (on a thread of the pool)."""
        self._configure(conn)
        self._used[conn] = time.monotonic()
        with self._lock:
            self._pooled = {pid: c for pid, c in self._pooled.items() if not c.closed}
            self._pooled[conn.info.backend_pid] = conn

    @property
    def backend_pids(self) -> frozenset[int]:
        """Server processes of this store's connections: their notifications are its own."""
        with self._lock:
            return frozenset(pid for pid, conn in self._pooled.items() if not conn.closed)

    def open_pool(self) -> None:
        """Start lending connections (the first one opens in the background)."""
        self._pool = ConnectionPool(
            self.address.conninfo,
            kwargs=self._options(),
            min_size=1,
            max_size=self.pool_size,
            open=False,
            configure=self._configure_pooled,
            timeout=self.pool_timeout,
            name="duralog-pg-pool",  # its threads: duralog-pg-pool-worker-0, ...
        )
        self._pool.open()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Conn]:
        """A connection of the pool for the block: the one this thread holds already,
        in a nested call (a thread never waits for a second one while it holds one)."""
        held: Conn | None = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        pool = self._pool
        if self.closed or pool is None:
            raise StoreError(f"the store {self.address.display} is closed")
        conn = self._borrow(pool)
        self._held.conn = conn
        try:
            yield conn
        finally:
            self._held.conn = None
            self._give_back(pool, conn)

    def _borrow(self, pool: ConnectionPool[Conn]) -> Conn:
        conn = self._get(pool)
        used = self._used.get(conn)
        if used is not None and time.monotonic() - used > IDLE_CHECK_SECONDS:
            # Idle a while: the server may have restarted or a proxy dropped it.
            # One cheap round trip now beats failing the caller's real statement.
            try:
                conn.execute("SELECT 1")
            except psycopg.Error:
                conn.close()
                self._give_back(pool, conn)  # the pool replaces it, and checks the others
                conn = self._get(pool)
            except BaseException:  # interrupted: the connection goes back all the same
                self._give_back(pool, conn)
                raise
        return conn

    def _get(self, pool: ConnectionPool[Conn]) -> Conn:
        try:
            return pool.getconn()
        except PoolClosed:
            raise StoreError(f"the store {self.address.display} is closed") from None
        except PoolTimeout:
            raise self._no_connection() from None

    def _give_back(self, pool: ConnectionPool[Conn], conn: Conn) -> None:
        lost = conn.broken or conn.closed
        self._used[conn] = time.monotonic()
        pool.putconn(conn)  # a lost one is dropped and replaced by the pool
        if lost and not self.closed:
            # The server restarted or the network dropped: the idle connections are
            # likely gone too. Drop those now, not one failed call at a time.
            pool.check()

    def _no_connection(self) -> StoreError:
        """Why no connection came within ``pool_timeout``: the server, or a busy pool."""
        where = self.address.display
        try:
            self.connect().close()
        except psycopg.Error as exc:
            return StoreError(
                f"the PostgreSQL log at {where} failed while connecting: {one_line(exc)}; "
                "check that the server is running and accepts connections"
            )
        return StoreError(
            f"no connection to the PostgreSQL log at {where} came free within "
            f"{self.pool_timeout:g} s: all of the store's connections (pool_size="
            f"{self.pool_size}) stayed in use; allow more (?pool_size=N in the URL) or a "
            "longer wait (?pool_timeout=S), or make fewer threads call the store at once"
        )

    @contextlib.contextmanager
    def guard(self, what: str, conflicts: bool = False) -> Iterator[None]:
        """Turn driver errors into ``StoreError``; with ``conflicts``, let ``CONFLICTS``
        (a key clash, a serialization failure) through to the caller, which refuses
        the item instead."""
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
        """A transaction on a connection of the pool, committed when the block ends."""
        with self.connection() as conn, self.guard(what, conflicts), conn.transaction():
            yield conn

    @contextlib.contextmanager
    def reading(self, what: str) -> Iterator[Conn]:
        """A connection of the pool for reads (each statement sees committed data)."""
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
        """Stop the listener and the pool (from any thread): calls waiting for a
        connection fail, a connection in use is closed when its call ends."""
        with self._lock:
            if self.closed or self._closing:
                return
            self._closing = True  # no listener may start from now on
            listener = self._listener
        if listener is not None:  # wakes it through a connection: before `closed`
            listener.stop(wake=self._wake)
        with self._lock:
            self.closed = True
            pool = self._pool
        if pool is not None:
            pool.close()

    def _wake(self, channel: str) -> None:
        with self.connection() as conn:
            conn.execute(f"NOTIFY {channel}")
