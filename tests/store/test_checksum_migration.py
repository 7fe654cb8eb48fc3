"""A log written before events had checksums gets its chains on upgrade, in both stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import Append, NewWorkflow
from duralog.store.events import LogEntry
from duralog.store.open import open_store
from duralog.store.schema import CHAINED_VERSION, MIGRATION_NAMES
from duralog.store.verify import verify

T0 = 1_700_000_000.0


def write_log(target: str, workflows: int = 3, steps: int = 4) -> None:
    store = open_store(target)
    try:
        for w in range(workflows):
            wid = f"old-{w}"
            first = LogEntry(1, T0, ev.WorkflowStarted(name="job", args=codec.encode([w])))
            store.create_workflows([NewWorkflow(wid, "job", first, owner="w1", lease_seconds=30)])
            entries = [
                LogEntry(s, T0 + s, ev.StepScheduled(name="step", args=codec.encode([s])))
                for s in range(2, steps + 2)
            ]
            assert store.append([Append(wid, 1, entries)]) == [True]
    finally:
        store.close()


def test_a_sqlite_log_from_before_checksums(tmp_path: Path) -> None:
    db = str(tmp_path / "old.db")
    write_log(db)
    with sqlite3.connect(db) as conn:  # as the previous version left it
        conn.execute("ALTER TABLE events DROP COLUMN checksum")
        conn.execute(
            "DELETE FROM _sqlite_migrations WHERE name = ?", (MIGRATION_NAMES[CHAINED_VERSION],)
        )
        conn.execute(f"PRAGMA user_version = {CHAINED_VERSION - 1}")
    conn.close()
    store = open_store(db)  # upgrades it
    try:
        checks = list(verify(store))
        assert [(c.workflow_id, c.events, c.ok) for c in checks] == [
            (f"old-{w}", 5, True) for w in range(3)
        ]
    finally:
        store.close()


def test_a_postgres_log_from_before_checksums(postgres_url: str) -> None:
    import psycopg

    from duralog.store.postgres import PostgresStore

    write_log(postgres_url)
    store = open_store(postgres_url)
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store.address.conninfo, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{store.schema}"')
        # As a log of the version before: without what it and every later one added.
        conn.execute("ALTER TABLE events DROP COLUMN checksum")
        conn.execute("ALTER TABLE workflows DROP COLUMN forked_from")  # version 5's
        conn.execute("ALTER TABLE workers DROP COLUMN serves")  # version 6's
        conn.execute(  # version 9's
            "ALTER TABLE workflows DROP COLUMN recoveries, DROP COLUMN recovered_at,"
            " DROP COLUMN taken_from"
        )
        conn.execute(  # version 7's (their indexes go with them)
            "ALTER TABLE workflows DROP COLUMN dedup_id, DROP COLUMN partition_key,"
            " DROP COLUMN start_at"
        )
        conn.execute("DROP TABLE queue_limits")
        conn.execute("ALTER TABLE schedules DROP COLUMN partition_key")  # version 11's
        conn.execute("DELETE FROM duralog_migrations WHERE version >= %s", (CHAINED_VERSION,))
    store.close()
    store = open_store(postgres_url)
    try:
        assert [c.ok for c in verify(store)] == [True, True, True]
    finally:
        store.close()


def test_an_upgraded_log_keeps_its_damage_visible(tmp_path: Path) -> None:
    db = str(tmp_path / "old.db")
    write_log(db, workflows=1)
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE events DROP COLUMN checksum")
        conn.execute(
            "DELETE FROM _sqlite_migrations WHERE name = ?", (MIGRATION_NAMES[CHAINED_VERSION],)
        )
        conn.execute(f"PRAGMA user_version = {CHAINED_VERSION - 1}")
        conn.execute("DELETE FROM events WHERE seq = 3")  # damaged before the upgrade
    conn.close()
    store = open_store(db)
    try:
        (check,) = verify(store)
        assert [(f.seq, f.code) for f in check.findings] == [(3, "gap")]
    finally:
        store.close()
