"""The schema of a duralog log, described once and rendered for SQLite and PostgreSQL.

Tables
------
events     The log itself and the only source of truth. One row per event:
           ``(workflow_id, seq)`` is the primary key, so two writers can never
           both append seq N (the optimistic concurrency guard); ``kind`` is the
           event's type name, ``at`` its commit time (UTC epoch seconds), ``body``
           the event as JSON text (payloads readable with ``json_extract``),
           ``checksum`` its link in the workflow's checksum chain (a hash of the
           event and of the checksum before it: ``store/integrity.py``).
workflows  An index over the log, one row per workflow: name, status, the
           owner's lease (``owner``, ``lease_until``) and its fencing token
           (``fence``, bumped by every claim and checked inside every append
           transaction), ``wake_at`` (next timer or retry), ``last_seq``, and
           ``forked_from``: the workflow a fork was copied from (so a workflow's
           forks are found without reading their logs). ``recoveries``: how many
           times in a row the workflow was taken over from a worker that vanished
           with one of its steps running, without progress in between
           (``engine/recoveries.py``); ``recovered_at``: the log's last seq when that
           was last counted; ``taken_from``: the owner the last claim took it from
           (NULL: nobody held it).
           Everything here except leases can be rebuilt from ``events``.
snapshots  Derived state of a workflow at ``seq`` (the fold of events 1..seq),
           with a checksum. A cache: deleting every row changes no result.
inbox      Signals and cancel requests sent from outside, waiting for the
           workflow's owner to move them into the log (so the log has one writer).
workers    Live worker processes (host, pid, heartbeat), so a fresh process can
           tell that the owner of a lease died without waiting for it to expire.
schedules  Cron schedules: what to start on each tick (on which queue, and in which
           ``partition_key`` of a partitioned one) and the last tick started
           (advanced in the same transaction that creates the tick's workflow).
breakers   Circuit breakers shared by every worker on the log: state, failure
           count, when it opened, and a version for compare-and-set updates.
heartbeats The last heartbeat details a running step stored (``duralog.heartbeat``),
           one row per ``(workflow_id, seq)``, with the run and the attempt that
           wrote it: what the step's next attempt starts from, even on another
           worker after a crash. Written at most every ``heartbeat_interval`` by
           the worker that holds the workflow (checked against ``fence`` in the
           same statement), deleted once the step ends. Not part of the log:
           heartbeats are progress notes, and the log would drown in them.
queue_limits  Limits set at runtime (``engine.set_queue_limits``, ``duralog queues
           set``), one row per queue: ``limits`` is a JSON object holding only the
           limits overridden (null: no limit); every worker reads it in its claim
           transaction, over the limits its code declares.

Queued workflows carry ``queue``, ``priority`` and ``dequeued_at`` (when a worker
took them off the queue) in ``workflows``: the queue limits are counted there;
``partition_key`` (on a partitioned queue, whose limits apply per partition),
``dedup_id`` (unique per queue among the workflows that have not ended: a partial
unique index) and ``start_at`` (a delayed start: not claimed before then) come
from the workflow's ``WorkflowStarted``.

``TABLES`` below is the one description both stores are built from: every
table, column and index carries the schema version that introduced it, and
``migration(version, dialect)`` renders the statements of one version for SQLite
or PostgreSQL. Versions mean the same in both: a log at version 2 has the same
tables and columns whichever database holds it.

SQLite applies the versions in order with sqlite-utils ``Migrations``
(``store/sqlite_schema.py``) (``PRAGMA
user_version`` mirrors the number applied, for tools that only read that);
PostgreSQL keeps them in ``duralog_migrations`` (``store/postgres_schema.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import msgspec

from duralog.errors import StoreDamaged, StoreError

from .envelope import PayloadCodec
from .events import LogEntry, encode_event
from .integrity import GENESIS, Backfill, ChainedRow, UnchainedRow, chain
from .records import BreakerRecord, HeartbeatRecord, ScheduleRecord, WorkflowRecord

ColumnType = Literal["text", "int", "real", "blob", "bool", "serial"]


class Column(msgspec.Struct, frozen=True):
    """A column: ``serial`` is an integer key the database assigns (never copied)."""

    name: str
    type: ColumnType
    null: bool = False
    default: int | bool | None = None
    since: int | None = None  # None: with its table


class Index(msgspec.Struct, frozen=True):
    """A secondary index; ``where``: a partial index (SQL both databases read alike).

    ``rebuilt``: the version that dropped an older form of the index and created the
    one described here (a new log gets this form at ``since`` and again then)."""

    name: str
    columns: tuple[str, ...]
    since: int = 1
    unique: bool = False
    where: str | None = None
    rebuilt: int | None = None


class Table(msgspec.Struct, frozen=True):
    """A table: ``key`` is its primary key, the order ``copy_store`` reads it in.

    ``compact``: no hidden row id in SQLite (``WITHOUT ROWID``). Which tables
    ``copy_store`` moves is its own list (``store/copy.py``).
    """

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    indexes: tuple[Index, ...] = ()
    since: int = 1
    compact: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """Every column name, in order."""
        return tuple(c.name for c in self.columns)

    @property
    def copied_names(self) -> tuple[str, ...]:
        """The columns ``copy_store`` carries (not the ones the database assigns)."""
        return tuple(c.name for c in self.columns if c.type != "serial")


def _c(name: str, type_: ColumnType, **options: Any) -> Column:
    return Column(name, type_, **options)


#: The statuses of a workflow that has not ended: it holds its dedup id.
LIVE = "('PENDING', 'RUNNING', 'PAUSED', 'SUSPENDED')"

TABLES: tuple[Table, ...] = (
    Table(
        "events",
        (
            _c("workflow_id", "text"),
            _c("seq", "int"),
            _c("kind", "text"),
            _c("at", "real"),
            _c("body", "text"),
            # Filled by the version's migration for the events written before it.
            _c("checksum", "text", null=True, since=4),
        ),
        key=("workflow_id", "seq"),
        compact=True,
    ),
    Table(
        "workflows",
        (
            _c("id", "text"),
            _c("name", "text"),
            _c("status", "text"),
            _c("parent_id", "text", null=True),
            _c("owner", "text", null=True),
            _c("lease_until", "real", null=True),
            _c("fence", "int", default=0),
            _c("wake_at", "real", null=True),
            _c("last_seq", "int"),
            _c("created_at", "real"),
            _c("updated_at", "real"),
            _c("reason", "text", null=True),
            _c("queue", "text", null=True, since=2),
            _c("priority", "int", default=0, since=2),
            _c("dequeued_at", "real", null=True, since=2),
            # The workflow this one was forked from (its WorkflowStarted says where).
            _c("forked_from", "text", null=True, since=5),
            # Dead letters: recoveries without progress, and whom the last claim took
            # the workflow from (the claim returns it: a recovery, or not).
            _c("recoveries", "int", default=0, since=9),
            _c("recovered_at", "int", default=0, since=9),
            _c("taken_from", "text", null=True, since=9),
            _c("dedup_id", "text", null=True, since=7),
            _c("partition_key", "text", null=True, since=7),
            _c("start_at", "real", null=True, since=7),
        ),
        key=("id",),
        indexes=(
            Index("workflows_status", ("status", "owner")),
            Index("workflows_name", ("name", "created_at")),
            Index("workflows_created", ("created_at",)),
            # Partial indexes hold only the rows they serve: a workflow outside every
            # queue, never dequeued or not a fork costs its insert and status changes
            # nothing in them (schema 10; in full, these three cost 20% of a start).
            Index(
                "workflows_queue",
                ("queue", "status", "priority", "created_at"),
                since=2,
                where="queue IS NOT NULL",
                rebuilt=10,
            ),
            # The rate limit counts a queue's recent dequeues without reading every
            # workflow the queue ever held. (No index on updated_at for `tail` and
            # `stats --since`: every append changes it, and it cost 5-7% per step.)
            Index(
                "workflows_dequeued",
                ("queue", "dequeued_at"),
                since=3,
                where="dequeued_at IS NOT NULL",
                rebuilt=10,
            ),
            # `show` lists a workflow's forks.
            Index(
                "workflows_forked_from",
                ("forked_from",),
                since=5,
                where="forked_from IS NOT NULL",
                rebuilt=10,
            ),
            # Two starts racing with one dedup id cannot both be committed: the
            # database refuses the second while the first has not ended.
            Index(
                "workflows_dedup",
                ("queue", "dedup_id"),
                since=7,
                unique=True,
                where=f"dedup_id IS NOT NULL AND status IN {LIVE}",
            ),
            # The next delayed start a worker wakes for (only the waiting ones).
            Index(
                "workflows_start_at",
                ("start_at",),
                since=7,
                where="start_at IS NOT NULL AND status = 'PENDING'",
            ),
            # A partitioned queue's claim ranks each partition's workflows.
            Index(
                "workflows_partition",
                ("queue", "status", "partition_key", "priority", "created_at"),
                since=7,
                where="partition_key IS NOT NULL",
            ),
        ),
    ),
    Table(
        "snapshots",
        (
            _c("workflow_id", "text"),
            _c("seq", "int"),
            _c("state", "blob"),
            _c("checksum", "text"),
        ),
        key=("workflow_id", "seq"),
        compact=True,
    ),
    Table(
        "inbox",
        (
            _c("id", "serial"),
            _c("workflow_id", "text"),
            _c("kind", "text"),
            _c("name", "text", null=True),
            _c("payload", "text", null=True),
            _c("at", "real"),
        ),
        key=("id",),
        indexes=(Index("inbox_workflow", ("workflow_id", "id")),),
    ),
    Table(
        "workers",
        (
            _c("id", "text"),
            _c("host", "text"),
            _c("pid", "int"),
            _c("started_at", "real"),
            _c("heartbeat_at", "real"),
            # JSON: {"workflows": [names], "queues": [names]} it runs (``show`` says
            # why a workflow waits). NULL for workers of older versions.
            _c("serves", "text", null=True, since=6),
        ),
        key=("id",),
    ),
    Table(
        "schedules",
        (
            _c("id", "text"),
            _c("cron", "text"),
            _c("workflow", "text"),
            _c("args", "text"),
            _c("queue", "text", null=True),
            _c("catch_up", "text"),
            _c("timezone", "text"),
            _c("paused", "bool", default=False),
            _c("last_tick", "real"),
            _c("created_at", "real"),
            _c("updated_at", "real"),
            # The partition of its tick workflows on a partitioned queue.
            _c("partition_key", "text", null=True, since=11),
        ),
        key=("id",),
        since=2,
    ),
    Table(
        "breakers",
        (
            _c("name", "text"),
            _c("state", "text"),
            _c("failures", "int"),
            _c("opened_at", "real", null=True),
            _c("version", "int"),
            _c("updated_at", "real"),
        ),
        key=("name",),
        since=2,
    ),
    Table(
        "heartbeats",
        (
            _c("workflow_id", "text"),
            _c("seq", "int"),
            _c("run_id", "text"),
            _c("attempt", "int"),
            _c("details", "text"),  # the encoded details, sealed by the payload codec
            _c("at", "real"),
        ),
        key=("workflow_id", "seq"),
        since=8,
        compact=True,
    ),
    Table(
        "queue_limits",
        (
            _c("name", "text"),
            _c("limits", "text"),
            _c("updated_at", "real"),
        ),
        key=("name",),
        since=7,
    ),
)
TABLE: dict[str, Table] = {t.name: t for t in TABLES}


def described(name: str) -> Table:
    """The description of table ``name``; ``StoreError`` for a table that is not a log's."""
    try:
        return TABLE[name]
    except KeyError:
        raise StoreError(
            f"{name!r} is not a table of a duralog log (tables: {', '.join(TABLE)})"
        ) from None


_PYTHON: dict[str, type] = {
    "text": str,
    "int": int,
    "serial": int,
    "real": float,
    "blob": bytes,
    "bool": bool,
}


def copy_values(table: Table, row: Sequence[object]) -> tuple[object, ...]:
    """A row as plain Python values of its columns' types, whatever database it came
    from (SQLite gives 0/1 for a bool, PostgreSQL a memoryview for some bytes);
    ``StoreError`` for a value that is not of its column's type (a damaged row)."""
    values = []
    for column, value in zip(table.columns, row, strict=True):
        try:
            values.append(None if value is None else _PYTHON[column.type](value))
        except (TypeError, ValueError):
            key = tuple(row[table.names.index(k)] for k in table.key)
            raise StoreDamaged(
                f"the {table.name} row {key!r:.200} is damaged: its {column.name} holds "
                f"{value!r:.60}, not a {column.type} value; run `duralog verify --all`"
            ) from None
    return tuple(values)


#: Migration names, by version (SQLite records them by name).
MIGRATION_NAMES: dict[int, str] = {
    1: "m001_initial",
    2: "m002_queues_schedules_breakers",
    3: "m003_rate_limit_index",
    4: "m004_event_checksums",
    5: "m005_forks",
    6: "m006_worker_serves",
    7: "m007_queue_dedup_delay_partitions",
    8: "m008_heartbeats",
    9: "m009_recoveries",
    10: "m010_partial_indexes",
    11: "m011_schedule_partitions",
}
#: Versions that compute something for the rows already there, after their statements.
CHAINED_VERSION = 4
SCHEMA_VERSION = max(MIGRATION_NAMES)


def _columns_of(record: type[msgspec.Struct], table: str) -> str:
    names = [f.name for f in msgspec.structs.fields(record)]
    missing = set(names) - set(TABLE[table].names)
    assert not missing, f"{record.__name__} fields {missing} are not columns of {table}"
    return ", ".join(names)


#: The columns a ``WorkflowRecord`` / ``ScheduleRecord`` / ``BreakerRecord`` /
#: ``HeartbeatRecord`` is read
#: from, in field order (both stores select exactly these).
WORKFLOW_COLUMNS = _columns_of(WorkflowRecord, "workflows")
SCHEDULE_COLUMNS = _columns_of(ScheduleRecord, "schedules")
BREAKER_COLUMNS = _columns_of(BreakerRecord, "breakers")
HEARTBEAT_COLUMNS = _columns_of(HeartbeatRecord, "heartbeats")
_WORKFLOW_FIELDS = tuple(WORKFLOW_COLUMNS.split(", "))

#: One ``events`` row before its checksum: workflow_id, seq, kind, at, body.
EventRow = UnchainedRow
#: The columns an ``events`` row is inserted with, in the order of ``ChainedRow``.
EVENT_COLUMNS = "workflow_id, seq, kind, at, body, checksum"
#: Inserts one ``ChainedRow`` (``?`` marks: the PostgreSQL store translates them).
INSERT_EVENTS = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?)"
#: The event a log ends at (seq >= the index's last seq): what ``log_end`` checks.
LOG_END = "SELECT seq, checksum FROM events WHERE workflow_id = ? AND seq >= ? ORDER BY seq LIMIT 2"


def event_row(workflow_id: str, entry: LogEntry, payload_codec: PayloadCodec | None) -> EventRow:
    """The ``events`` row of one log entry, as both stores insert it (its texts sealed by
    the store's ``payload_codec``; the store adds the checksum, which depends on the
    event before it)."""
    body = encode_event(entry.event, payload_codec).decode()
    return (workflow_id, entry.seq, entry.kind, entry.at, body)


def first_row(workflow_id: str, entry: LogEntry, payload_codec: PayloadCodec | None) -> ChainedRow:
    """The ``events`` row of a run's first event (seq 1), with its checksum."""
    return chain([event_row(workflow_id, entry, payload_codec)], GENESIS)[0]


def workflow_record(row: Sequence[object]) -> WorkflowRecord:
    """A ``WorkflowRecord`` from a row of ``WORKFLOW_COLUMNS``; ``StoreError`` naming the
    workflow when the row holds what no duralog wrote (an unknown status, a time as text)."""
    try:
        return msgspec.convert(dict(zip(_WORKFLOW_FIELDS, row, strict=True)), WorkflowRecord)
    except msgspec.ValidationError as exc:
        raise StoreDamaged(
            f"the index row of workflow {row[0]!r:.200} is damaged ({exc}); run "
            "`duralog verify --all` to see the damage, then repair or restore the log"
        ) from None


def backfill_checksums(
    read: Callable[[Sequence[object] | None], Sequence[Sequence[object]]],
    write: Callable[[list[tuple[str, object, object]]], None],
) -> None:
    """Compute the checksum chain of the events already in a log (``CHAINED_VERSION``'s
    migration): ``read(after)`` returns the next batch of (workflow_id, seq, kind, at,
    body) rows after the key ``after`` (None: from the start), in key order;
    ``write`` stores (checksum, workflow_id, seq) updates."""
    backfill = Backfill()
    after: Sequence[object] | None = None
    while rows := read(after):
        write(backfill.checksums(rows))
        after = (rows[-1][0], rows[-1][1])


# -- rendering ---------------------------------------------------------------


class Dialect(msgspec.Struct, frozen=True):
    """How one database spells the description's types and keys."""

    name: str
    types: dict[str, str]
    serial_key: str  # the spelling of a ``serial`` primary key column
    text_suffix: str = ""  # e.g. a collation
    compact_suffix: str = ""  # for ``Table.compact``
    #: How a migration adds a column (PostgreSQL's form can be run again harmlessly).
    add_column: str = "ADD COLUMN"

    def literal(self, value: int | bool) -> str:
        """A default value as SQL."""
        if isinstance(value, bool) and self.name == "postgres":
            return "true" if value else "false"
        return str(int(value))


SQLITE = Dialect(
    "sqlite",
    {"text": "TEXT", "int": "INTEGER", "real": "REAL", "blob": "BLOB", "bool": "INTEGER"},
    serial_key="INTEGER PRIMARY KEY AUTOINCREMENT",
    compact_suffix=" WITHOUT ROWID",
)
# Text compares byte by byte ("C"), as in SQLite: ids sort the same in both stores,
# and key ranges read by copy_store mean the same thing.
POSTGRES = Dialect(
    "postgres",
    {
        "text": "TEXT",
        "int": "BIGINT",
        "real": "DOUBLE PRECISION",
        "blob": "BYTEA",
        "bool": "BOOLEAN",
    },
    serial_key="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    text_suffix=' COLLATE "C"',
    add_column="ADD COLUMN IF NOT EXISTS",
)


def _column_sql(column: Column, table: Table, dialect: Dialect) -> str:
    if column.type == "serial":
        return f"{column.name} {dialect.serial_key}"
    sql = f"{column.name} {dialect.types[column.type]}"
    if column.type == "text":
        sql += dialect.text_suffix
    if table.key == (column.name,):
        return sql + " PRIMARY KEY"
    if not column.null:
        sql += " NOT NULL"
    if column.default is not None:
        sql += f" DEFAULT {dialect.literal(column.default)}"
    return sql


def migration(version: int, dialect: Dialect) -> list[str]:
    """The statements that take a log from ``version - 1`` to ``version``."""
    statements = []
    for table in TABLES:
        if table.since == version:
            lines = [
                _column_sql(c, table, dialect)
                for c in table.columns
                if (c.since or table.since) == version
            ]
            if len(table.key) > 1:
                lines.append(f"PRIMARY KEY ({', '.join(table.key)})")
            suffix = dialect.compact_suffix if table.compact else ""
            body = ",\n    ".join(lines)
            statements.append(f"CREATE TABLE IF NOT EXISTS {table.name} (\n    {body}\n){suffix}")
        elif table.since < version:
            statements += [
                f"ALTER TABLE {table.name} {dialect.add_column} {_column_sql(c, table, dialect)}"
                for c in table.columns
                if c.since == version
            ]
        for index in table.indexes:
            if index.rebuilt == version:
                statements.append(f"DROP INDEX IF EXISTS {index.name}")
            if version in (index.since, index.rebuilt):
                statements.append(
                    f"CREATE {'UNIQUE ' if index.unique else ''}INDEX IF NOT EXISTS {index.name}"
                    f" ON {table.name} ({', '.join(index.columns)})"
                    + (f" WHERE {index.where}" if index.where else "")
                )
    return statements
