"""The SQLite schema of a duralog log, and its ordered migrations.

Tables
------
events     The log itself and the only source of truth. One row per event:
           ``(workflow_id, seq)`` is the primary key, so two writers can never
           both append seq N (the optimistic concurrency guard); ``kind`` is the
           event's type name, ``at`` its commit time (UTC epoch seconds), ``body``
           the event as JSON text (payloads readable with ``json_extract``).
workflows  An index over the log, one row per workflow: name, status, the
           owner's lease (``owner``, ``lease_until``) and its fencing token
           (``fence``, bumped by every claim and checked inside every append
           transaction), ``wake_at`` (next timer or retry), ``last_seq``.
           Everything here except leases can be rebuilt from ``events``.
snapshots  Derived state of a workflow at ``seq`` (the fold of events 1..seq),
           with a checksum. A cache: deleting every row changes no result.
inbox      Signals and cancel requests sent from outside, waiting for the
           workflow's owner to move them into the log (so the log has one writer).
workers    Live worker processes (host, pid, heartbeat), so a fresh process can
           tell that the owner of a lease died without waiting for it to expire.
schedules  Cron schedules: what to start on each tick and the last tick started
           (advanced in the same transaction that creates the tick's workflow).
breakers   Circuit breakers shared by every worker on the log: state, failure
           count, when it opened, and a version for compare-and-set updates.

Queued workflows carry ``queue``, ``priority`` and ``dequeued_at`` (when a worker
took them off the queue) in ``workflows``: the queue limits are counted there.

Migrations are applied in order with sqlite-utils ``Migrations``; ``PRAGMA
user_version`` mirrors the number applied, for tools that only read that.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database, Migrations

migrations = Migrations("duralog")


@migrations()
def m001_initial(db: Any) -> None:
    _run(
        db,
        """
        CREATE TABLE IF NOT EXISTS events (
            workflow_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            at REAL NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (workflow_id, seq)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS workflows (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            parent_id TEXT,
            owner TEXT,
            lease_until REAL,
            fence INTEGER NOT NULL DEFAULT 0,
            wake_at REAL,
            last_seq INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            reason TEXT
        );
        CREATE INDEX IF NOT EXISTS workflows_status ON workflows (status, owner);
        CREATE INDEX IF NOT EXISTS workflows_name ON workflows (name, created_at);
        CREATE INDEX IF NOT EXISTS workflows_created ON workflows (created_at);

        CREATE TABLE IF NOT EXISTS snapshots (
            workflow_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            state BLOB NOT NULL,
            checksum TEXT NOT NULL,
            PRIMARY KEY (workflow_id, seq)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS inbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            workflow_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT,
            payload TEXT,
            at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS inbox_workflow ON inbox (workflow_id, id);

        CREATE TABLE IF NOT EXISTS workers (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL
        );
        """,
    )


@migrations()
def m002_queues_schedules_breakers(db: Any) -> None:
    _run(
        db,
        """
        ALTER TABLE workflows ADD COLUMN queue TEXT;
        ALTER TABLE workflows ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE workflows ADD COLUMN dequeued_at REAL;
        CREATE INDEX IF NOT EXISTS workflows_queue
            ON workflows (queue, status, priority, created_at);

        CREATE TABLE IF NOT EXISTS schedules (
            id TEXT PRIMARY KEY,
            cron TEXT NOT NULL,
            workflow TEXT NOT NULL,
            args TEXT NOT NULL,
            queue TEXT,
            catch_up TEXT NOT NULL,
            timezone TEXT NOT NULL,
            paused INTEGER NOT NULL DEFAULT 0,
            last_tick REAL NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );

        CREATE TABLE IF NOT EXISTS breakers (
            name TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            failures INTEGER NOT NULL,
            opened_at REAL,
            version INTEGER NOT NULL,
            updated_at REAL NOT NULL
        );
        """,
    )


def _run(db: Any, script: str) -> None:
    # executescript() would commit the surrounding transaction: run one by one.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


SCHEMA_VERSION = len(migrations._migrations)


def migrate(db: Database) -> None:
    """Bring ``db`` to the current schema (idempotent, safe with concurrent openers)."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    # One opener migrates at a time: the write lock is taken before looking at
    # what is pending, so two processes opening a new file never both apply a step.
    db.execute("BEGIN IMMEDIATE")
    try:
        migrations.apply(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
