"""What the SQL written once (``store/sql_*.py``) needs from a dialect.

The shared queries are written with ``?`` marks, or ``:name`` marks and a dict
(never both in one statement): SQLite takes them as they are, the PostgreSQL
store translates them for psycopg (``store/postgres_connection.py``). A dialect
provides a connection for reads and a transaction for writes (``Session``), and
the few spellings that differ, as class attributes:

- ``CLOCK``: now, as SQL, for leases: SQLite's is the ``:now`` a call passes (one
  machine), PostgreSQL's the server's clock.
- ``SKIP_LOCKED`` / ``LOCK_ROWS``: how a claim skips, and an update locks, rows
  other transactions hold (nothing on SQLite, whose writers take turns).
- ``GREATEST`` and ``FIND``: the names of ``max(a, b)`` and of ``strpos``.
- ``CONFLICTS``: the errors a refused item raises (a key clash).
- ``PICKED_UPDATE``: how an update of the rows a sub-select picks is spelled
  (SQLite: ``WHERE id IN (...)``, its fastest plan; PostgreSQL: a CTE, so the
  pick runs once, whatever rows ``SKIP LOCKED`` skips).

The hooks below (``_read``, ``_write``, ``_notify``, ``_lock_queue``,
``_insert_workflows``, ``_append_in``) are the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, Protocol

from .envelope import PayloadCodec
from .records import Append, Appended, NewWorkflow, Notice
from .schema import EventRow


class Cursor(Protocol):
    """What a statement returns, in either database."""

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Every row left."""
        ...

    def __iter__(self) -> Iterator[Any]:
        """The rows, one at a time."""
        ...


class Session(Protocol):
    """A connection inside a read or a transaction of the store (``?``/``:name`` marks)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor:
        """Run one statement."""
        ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        """Run one statement for each set of parameters."""
        ...


#: A note for other processes: (kind, workflow id), see ``EventStore.listen``.
Note = tuple[str, str | None]

#: The finished statuses, as an SQL list (``status IN FINISHED``).
FINISHED = "('COMPLETED', 'FAILED', 'CANCELLED')"


class SQLBase:
    """The dialect hooks every part of ``SQLStore`` uses (see the module docstring)."""

    CLOCK: ClassVar[str] = ":now"
    SKIP_LOCKED: ClassVar[str] = ""
    LOCK_ROWS: ClassVar[str] = ""
    GREATEST: ClassVar[str] = "MAX"
    FIND: ClassVar[str] = "instr"
    CONFLICTS: ClassVar[tuple[type[BaseException], ...]] = ()
    PICKED_UPDATE: ClassVar[str] = "UPDATE workflows SET {update} WHERE id IN ({pick}){returning}"

    #: The codec the texts of the events this store writes are sealed with (None: no
    #: codec); set by the dialect's constructor, or by the engine that owns the store.
    payload_codec: PayloadCodec | None = None

    def _picked_update(
        self,
        update: str,
        where: str,
        order: str,
        *,
        limit: str = "",
        lock: str = "",
        returning: str = "",
    ) -> str:
        """``UPDATE workflows SET <update>`` on the rows ``SELECT ... WHERE <where> ORDER BY
        <order><limit><lock>`` picks, ``<returning>`` (e.g. `` RETURNING id``)."""
        pick = f"SELECT id AS pick FROM workflows WHERE {where} ORDER BY {order}{limit}{lock}"
        return self.PICKED_UPDATE.format(update=update, pick=pick, returning=returning)

    def _read(self, what: str) -> contextlib.AbstractContextManager[Session]:
        """A connection for reads; database errors become ``StoreError``s naming ``what``."""
        raise NotImplementedError

    def _write(
        self, what: str, conflicts: bool = False
    ) -> contextlib.AbstractContextManager[Session]:
        """A transaction, committed when the block ends; with ``conflicts``, a
        ``CONFLICTS`` error reaches the caller (which refuses the item)."""
        raise NotImplementedError

    def _notify(self, conn: Session, notes: Sequence[Note]) -> None:
        """Tell other processes about ``notes`` when ``conn``'s transaction commits."""

    def _lock_queue(self, conn: Session, queue: str, wait: bool) -> bool:
        """Serialise claims from ``queue`` for the transaction; False: another worker
        is taking from it now (only when not ``wait``)."""
        return True

    def _insert_workflows(self, conn: Session, items: Sequence[NewWorkflow]) -> list[int | None]:
        """Insert workflows with their first event inside the caller's transaction;
        the fencing token of each created, None for an id that exists already."""
        raise NotImplementedError

    def _append_in(self, conn: Session, item: Append, rows: list[EventRow]) -> Appended:
        """Append one item inside the caller's transaction (``EventStore.append``'s
        checks); may raise ``IllegalTransition`` or a ``CONFLICTS`` error."""
        raise NotImplementedError


def marks(params: dict[str, object], prefix: str, values: Iterable[object]) -> str:
    """``(:prefix0, :prefix1, ...)`` for an ``IN``, the values added to ``params``
    (``(NULL)`` for none: matches nothing)."""
    names = []
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
        names.append(f":{prefix}{i}")
    return f"({', '.join(names) or 'NULL'})"


def insert_notices(conn: Session, notices: Sequence[Notice], at: float) -> None:
    """Leave ``notices`` in other workflows' inboxes, at ``at``, in ``conn``'s transaction."""
    if notices:
        conn.executemany(
            "INSERT INTO inbox (workflow_id, kind, name, payload, at) VALUES (?,?,?,?,?)",
            [
                (
                    n.workflow_id,
                    n.kind,
                    n.name,
                    n.payload.decode() if n.payload is not None else None,
                    at,
                )
                for n in notices
            ],
        )


def append_extras(conn: Session, item: Append, at: float) -> None:
    """What rides along with an append, in its transaction: notices to other workflows'
    inboxes (at ``at``, the append's last event's time), the inbox items it consumed,
    and its snapshot (which replaces the workflow's older one)."""
    insert_notices(conn, item.notices, at)
    if item.consumed:
        conn.executemany(
            "DELETE FROM inbox WHERE id = ? AND workflow_id = ?",
            [(i, item.workflow_id) for i in item.consumed],
        )
    if item.snapshot is not None:
        snap = item.snapshot
        conn.execute("DELETE FROM snapshots WHERE workflow_id = ?", (snap.workflow_id,))
        conn.execute(
            "INSERT INTO snapshots (workflow_id, seq, state, checksum) VALUES (?,?,?,?)",
            (snap.workflow_id, snap.seq, snap.state, snap.checksum),
        )
