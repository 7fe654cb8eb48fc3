"""The SQLite store: one file in WAL mode (or ``:memory:``), the embedded default.

Every thread gets its own connection to a file (WAL lets readers run beside the
one writer); an in-memory database has a single connection behind a lock. Writes
take the write lock up front (``BEGIN IMMEDIATE``) so a transaction never has to
be retried half-way, and ``busy_timeout`` waits out other processes' writers.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from duralog.errors import (
    ConfigurationError,
    IllegalTransition,
    StoreDamaged,
    StoreError,
)

from .envelope import PayloadCodec
from .records import (
    Append,
    Appended,
    Durability,
    NewWorkflow,
    WorkflowStatus,
    check_durability,
)
from .schema import INSERT_EVENTS, EventRow, described, event_row, first_row
from .sql_base import Session
from .sql_store import SQLStore
from .sqlite_append import End, Ends, GroupRefused, append_group, append_one, checked_append
from .sqlite_schema import migrate

__all__ = ["Durability", "SQLiteStore"]  # Durability: imported from here by older code

_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


#: Page cache of each connection, in KiB (SQLite's default is 2,000).
_CACHE_KIB = 20_000


class SQLiteStore(SQLStore):
    """The log in one SQLite file (the SQLite dialect of ``SQLStore``).

    Args:
        path: a file path, or ``":memory:"`` for a private in-memory log.
        durability: ``"full"`` (default) fsyncs every commit, so a power loss
            loses nothing that was acknowledged; ``"normal"`` fsyncs only at WAL
            checkpoints (a crash of the process still loses nothing; a power
            loss may lose the last commits).
        busy_timeout: seconds to wait for another process's write lock.
        payload_codec: the codec of the engine that owns the log (``payload_codec``).
    """

    # Leases are judged by the ``now`` a claim passes (one machine, one clock); the
    # write lock serialises writers, so nothing is skipped or locked row by row.
    CONFLICTS = (sqlite3.IntegrityError,)

    def __init__(
        self,
        path: str | Path,
        *,
        durability: Durability = "full",
        busy_timeout: float = 10.0,
        payload_codec: PayloadCodec | None = None,
    ) -> None:
        check_durability(durability)
        self.payload_codec = payload_codec
        self.path = str(path)
        self.durability = durability
        self._busy_ms = int(busy_timeout * 1000)
        self._memory = self.path == ":memory:"
        self._local = threading.local()
        #: Every connection opened, with the thread it serves (None: the shared one
        #: of an in-memory log). A thread's connection is closed after it ends.
        self._connections: list[tuple[threading.Thread | None, sqlite3.Connection]] = []
        self._registry_lock = threading.Lock()
        self._users: Counter[int] = Counter()  # calls under way, by thread (_connection)
        self._idle = threading.Condition(self._registry_lock)
        self._memory_lock = threading.RLock()
        self._closed = False
        #: Why the log cannot be used any more (its file was deleted or replaced).
        self._gone: str | None = None
        self._identity: tuple[int, int] | None = None  # the file's (device, inode)
        self._checked_at = time.monotonic()
        self._ends = Ends()  # what appends chain on, without a read (sqlite_append.py)
        if not self._memory:
            _refuse_unusable_path(Path(self.path))
            _refuse_foreign_file(Path(self.path))
            _create_private(Path(self.path))
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise
        if not self._memory:
            self._identity = _identity(self.path)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, durability={self.durability!r})"

    def _prepare(self) -> None:
        """Create or migrate the log's tables (refusing another application's database)."""
        with self._connection("opening the log") as conn:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if tables and "events" not in tables:
                raise StoreError(
                    f"{self.path} is a SQLite database of something else (tables: "
                    f"{', '.join(sorted(tables)[:5])}); refusing to turn it into a duralog log"
                )
            try:
                migrate(conn)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot prepare {self.path} as a duralog log: {exc}") from exc

    # -- connections -------------------------------------------------------

    def _open(self, shared: bool = False) -> sqlite3.Connection:
        conn = None
        try:
            # Each connection is used by one thread (or under the memory lock);
            # check_same_thread=False only lets close() run from any thread.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            if not self._memory:
                _use_wal(conn, self._busy_ms / 1000)
            conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self.durability]}")
            # A busy worker's commit touches a page or two of every workflow in it:
            # SQLite's default 2 MB cache spills them to the WAL before the commit and
            # reads them back in the next one (W2: a seventh fewer writes, half the
            # reads). Pages are cached as they are used, up to this much per connection.
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if "malformed" in str(exc):  # a log whose schema pages are damaged
                raise _damaged(self.path, exc, "opening it") from exc
            raise StoreError(f"cannot open {self.path} as a duralog log: {exc}") from exc
        with self._registry_lock:
            # Threads come and go (a thread per request calling engine.start): the
            # connections of those that ended are closed here, not kept until close().
            alive = []
            main = threading.main_thread()  # not alive any more while atexit runs
            for thread, other in self._connections:
                if thread is None or thread is main or thread.is_alive():
                    alive.append((thread, other))
                else:
                    with contextlib.suppress(sqlite3.Error):
                        other.close()
            alive.append((None if shared else threading.current_thread(), conn))
            self._connections = alive
        return conn

    @contextlib.contextmanager
    def _connection(self, what: str = "") -> Iterator[sqlite3.Connection]:
        """This thread's connection; a database error (a damaged file, an I/O error)
        becomes a ``StoreError`` saying ``what`` was being done. A key clash stays an
        ``IntegrityError``: the caller refuses the item that caused it."""
        me = threading.get_ident()
        with self._registry_lock:
            if self._closed:
                raise StoreError(f"the store {self.path} is closed")
            if self._gone is not None:
                raise StoreError(self._gone)
            self._users[me] += 1  # close() waits for the uses of other threads to end
        try:
            if self._memory:
                with self._memory_lock:
                    conn = getattr(self, "_shared", None)
                    if conn is None:
                        conn = self._shared = self._open(shared=True)
                    yield conn
                return
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._open()
            yield conn
        except sqlite3.IntegrityError:
            raise  # a key clash: the caller refuses the item that caused it
        except sqlite3.OperationalError as exc:  # locked, unreadable, ...
            raise StoreError(
                f"the log at {self.path} failed while {what or 'reading it'}: {exc}"
            ) from exc
        except sqlite3.Error as exc:  # SQLite's "malformed", "not a database"...
            raise _damaged(self.path, exc, what or "reading it") from exc
        finally:
            with self._registry_lock:
                self._users[me] -= 1
                if not self._users[me]:
                    del self._users[me]
                    self._idle.notify_all()

    @contextlib.contextmanager
    def _write(self, what: str = "", conflicts: bool = False) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction (a key clash stays an ``IntegrityError``)."""
        now = time.monotonic()
        if now - self._checked_at > _FILE_CHECK_SECONDS:  # never write to a replaced file
            self._checked_at = now
            self.check()
        with self._connection(what or "writing to the log") as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # never leave a transaction open here
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:  # locked, disk full, read-only...
                raise StoreError(f"the log at {self.path} refused a write: {exc}") from exc

    def listen(self, callback: Callable[[str, str | None], None]) -> None:
        """SQLite has no notifications across processes: workers poll (see ``poll_interval``)."""

    def check(self) -> None:
        """Raise ``StoreError`` if the file at ``path`` is no longer the one this store
        opened (deleted, or replaced by another file): writing on would go to a file
        nobody reads. From then on every call raises it."""
        if self._gone is None and self._identity is not None:
            now = _identity(self.path)
            if now != self._identity:
                change = "deleted" if now is None else "replaced by another file"
                self._gone = (
                    f"the log file {self.path} was {change} after this process opened it; "
                    "nothing more is written to the old file: stop this process, check which "
                    "file is the log (restore it if it was removed by mistake) and start again"
                )
        if self._gone is not None:
            raise StoreError(self._gone)

    def close(self) -> None:
        """Close every connection this store opened (from any thread), once the calls
        under way have ended: closing a connection another thread is using crashes
        the process. Calls that come later raise ``StoreError``."""
        me = threading.get_ident()
        with self._registry_lock:
            self._closed = True
            # Not for this thread's own calls (close() from inside one, say a signal
            # handler): they could never end. Bounded: a call waits at most the busy
            # timeout for another process.
            self._idle.wait_for(
                lambda: not any(n for t, n in self._users.items() if t != me),
                timeout=self._busy_ms / 1000 + 5,
            )
            for _, conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()

    # -- the dialect's own writes --------------------------------------------

    def _read(self, what: str) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self._connection(what)

    def _insert_workflows(self, conn: Session, items: Sequence[NewWorkflow]) -> list[int | None]:
        """Insert workflows with their first event inside the caller's transaction.

        A queued workflow is always created PENDING and unowned: a worker takes it
        off its queue when the queue's limits allow (so is a delayed one)."""
        fences: list[int | None] = []
        firsts: dict[str, str] = {}  # the checksums of the first events, for ``_created``
        self._local.firsts = firsts
        for item in items:
            started = item.started
            owner = item.owner if item.queue is None else None
            status = WorkflowStatus.RUNNING if owner else WorkflowStatus.PENDING
            fence = 1 if owner else 0
            # No conflict target: an id that exists, or a dedup id a live workflow of
            # the queue holds (a partial unique index), leaves nothing written.
            cur = conn.execute(
                "INSERT INTO workflows (id, name, status, parent_id, owner, lease_until, fence,"
                " last_seq, created_at, updated_at, queue, priority, dedup_id, partition_key,"
                " start_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (
                    item.id,
                    item.name,
                    status.value,
                    item.parent_id,
                    owner,
                    time.time() + item.lease_seconds if owner and item.lease_seconds else None,
                    fence,
                    started.seq,
                    started.at,
                    started.at,
                    item.queue,
                    item.priority,
                    item.dedup_id,
                    item.partition_key,
                    item.start_at,
                ),
            )
            if cur.rowcount == 0:
                fences.append(None)
                continue
            row = first_row(item.id, started, self.payload_codec)
            conn.execute(INSERT_EVENTS, row)
            firsts[item.id] = row[5]
            fences.append(fence)
        return fences

    def _created(self, items: Sequence[NewWorkflow], fences: Sequence[int | None]) -> None:
        # The first append of a workflow started here continues its first event, whose
        # checksum ``_insert_workflows`` (on this thread) noted.
        firsts: dict[str, str] = getattr(self._local, "firsts", {})
        self._local.firsts = {}
        self._ends.wrote(
            [
                (item.id, fence, 1, firsts[item.id])
                for item, fence in zip(items, fences, strict=True)
                if fence and item.id in firsts
            ]
        )

    def append(self, batch: Sequence[Append]) -> list[Appended]:
        """Append every item in one transaction; a refused item (stale fence, seq
        collision, forbidden transition) is skipped and reported False, one on a
        damaged log reported with its ``LogDamaged``."""
        rows = [
            [event_row(item.workflow_id, e, self.payload_codec) for e in item.entries]
            for item in batch
        ]
        ends, written = self._ends, list[End]()
        try:
            try:
                with self._write("appending events") as conn:
                    results = append_group(conn, batch, rows, ends, written)
            except GroupRefused:  # one of the group is refused: each on its own, at once
                written.clear()
                with self._write("appending events") as conn:
                    results = [
                        append_one(conn, item, r, ends, written)
                        for item, r in zip(batch, rows, strict=True)
                    ]
            ends.wrote(written)
            return results
        except (sqlite3.IntegrityError, IllegalTransition):
            pass
        # A refusal inside a group: append one by one, so only the culprit is refused;
        # each with every check (a seq clash may be a log that is ahead of its index).
        results = []
        for item, r in zip(batch, rows, strict=True):
            written = list[End]()
            try:
                with self._write("appending events") as conn:
                    results.append(checked_append(conn, item, r, ends, written))
                ends.wrote(written)
            except (sqlite3.IntegrityError, IllegalTransition):
                results.append(False)
        return results

    def _append_in(self, conn: Session, item: Append, rows: list[EventRow]) -> Appended:
        assert isinstance(conn, sqlite3.Connection)
        self._ends.wrote([(item.workflow_id, item.fence, 0, None)])  # it may restart: forget it
        return append_one(conn, item, rows, self._ends, [])

    def import_rows(self, table: str, rows: Sequence[Sequence[object]]) -> int:
        """Insert rows made by ``export_rows`` (of any store) in one transaction; a key the
        database assigns (the inbox id) is assigned anew. Returns how many."""
        spec = described(table)
        keep = [i for i, column in enumerate(spec.columns) if column.type != "serial"]
        insert = (
            f"INSERT INTO {table} ({', '.join(spec.copied_names)})"
            f" VALUES ({', '.join('?' * len(keep))})"
        )
        try:
            with self._write(f"copying rows into {table}") as conn:
                conn.executemany(insert, ([row[i] for i in keep] for row in rows))
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"cannot copy rows into {table} of {self.path}: {exc}") from exc
        return len(rows)


#: How often a write checks that the file is still the one opened (``check``).
_FILE_CHECK_SECONDS = 0.05


def _use_wal(conn: sqlite3.Connection, patience: float) -> None:
    """Put the log in WAL mode (once per file; a no-op after that). Two processes that
    open a new log at once both ask: the second may be refused "database is locked"
    without SQLite's busy handler waiting, so it asks again, for up to ``patience``
    seconds."""
    deadline = time.monotonic() + patience
    pause = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _identity(path: str) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``, or None if there is none."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _refuse_unusable_path(path: Path) -> None:
    """A path whose folder is missing, or that the system refuses (too long...)."""
    shown = _shorten(str(path))
    try:
        folder = path.parent.is_dir()
        path.exists()
    except OSError as exc:
        raise ConfigurationError(f"cannot open {shown}: {exc.strerror}") from None
    if not folder:
        raise ConfigurationError(
            f"cannot open {shown}: the folder {_shorten(str(path.parent))} does not exist"
        )


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit // 2] + "…" + text[-limit // 2 :]


def _damaged(path: str, exc: sqlite3.Error, what: str) -> StoreDamaged:
    return StoreDamaged(
        f"the log file {path} is damaged ({exc}, while {what}); restore it from a backup "
        f"(`sqlite3 {path} 'PRAGMA integrity_check'` shows what is left)"
    )


def _create_private(path: Path) -> None:
    """Create the log's file readable by its owner only (0600, whatever the umask),
    before SQLite creates it with the umask's mode. SQLite gives its -wal, -shm and
    -journal files the database file's mode, so they follow. An existing file is
    left as it is (an empty file is an empty SQLite database)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return  # it exists, or SQLite will say why it cannot be created
    os.close(fd)


def _refuse_foreign_file(path: Path) -> None:
    """A non-empty file that is not SQLite is someone else's: never turn it into a log."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot open {path}: {exc.strerror}") from None
    if head and head != b"SQLite format 3\x00":
        raise StoreError(f"{path} is not a SQLite database; refusing to use it as a duralog log")
