"""Schema 10 turned three indexes of ``workflows`` into partial ones: a workflow outside
every queue, never dequeued and not a fork adds no entry to them. A log of an older
version gets the new forms on upgrade, in both stores, and the queries still use them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from duralog.store.open import open_store
from duralog.store.schema import MIGRATION_NAMES, SQLITE, migration

REBUILT = 10
PARTIAL = {
    "workflows_queue": "queue IS NOT NULL",
    "workflows_dequeued": "dequeued_at IS NOT NULL",
    "workflows_forked_from": "forked_from IS NOT NULL",
}
OLD_FORMS = {
    "workflows_queue": "(queue, status, priority, created_at)",
    "workflows_dequeued": "(queue, dequeued_at)",
    "workflows_forked_from": "(forked_from)",
}


def test_the_migration_drops_the_old_form_before_creating_the_new() -> None:
    statements = migration(REBUILT, SQLITE)
    for name, where in PARTIAL.items():
        drop = statements.index(f"DROP INDEX IF EXISTS {name}")
        (create,) = [s for s in statements if s.startswith("CREATE") and f" {name} " in s]
        assert statements.index(create) > drop
        assert create.endswith(f"WHERE {where}")


def _sqlite_indexes(db: str) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'workflows'"
        ).fetchall()
    conn.close()
    return {name: sql for name, sql in rows if sql}


def test_a_sqlite_log_of_version_9_gets_the_partial_indexes(tmp_path: Path) -> None:
    db = str(tmp_path / "old.db")
    open_store(db).close()
    with sqlite3.connect(db) as conn:  # as version 9 left it: the full indexes
        for name, columns in OLD_FORMS.items():
            conn.execute(f"DROP INDEX {name}")
            conn.execute(f"CREATE INDEX {name} ON workflows {columns}")
        later = [n for v, n in MIGRATION_NAMES.items() if v >= REBUILT]
        conn.executemany("DELETE FROM _sqlite_migrations WHERE name = ?", [(n,) for n in later])
        conn.execute(f"PRAGMA user_version = {REBUILT - 1}")
    conn.close()
    assert all("WHERE" not in _sqlite_indexes(db)[name] for name in PARTIAL)
    open_store(db).close()  # upgrades it
    indexes = _sqlite_indexes(db)
    for name, where in PARTIAL.items():
        assert indexes[name].endswith(f"WHERE {where}")
    with sqlite3.connect(db) as conn:
        plans = {
            "workflows_dequeued": "SELECT count(*) FROM workflows"
            " WHERE queue = ? AND dequeued_at > ?",
            "workflows_forked_from": "SELECT id FROM workflows WHERE forked_from = ?",
            "workflows_queue": "SELECT id FROM workflows WHERE queue = ? AND status = 'PENDING'"
            " ORDER BY priority DESC, created_at LIMIT 5",
        }
        for name, query in plans.items():
            plan = " ".join(
                str(row[-1])
                for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", [1, 2][: query.count("?")])
            )
            assert name in plan, plan
    conn.close()


def test_a_postgres_log_of_version_9_gets_the_partial_indexes(postgres_url: str) -> None:
    import psycopg

    from duralog.store.postgres import PostgresStore

    store = open_store(postgres_url)
    assert isinstance(store, PostgresStore)

    def indexes() -> dict[str, str]:
        with psycopg.connect(store.address.conninfo, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE schemaname = %s AND tablename = 'workflows'",
                (store.schema,),
            ).fetchall()
        return {name: definition for name, definition in rows}

    with psycopg.connect(store.address.conninfo, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{store.schema}"')
        for name, columns in OLD_FORMS.items():
            conn.execute(f"DROP INDEX {name}")
            conn.execute(f"CREATE INDEX {name} ON workflows {columns}")
        conn.execute("DELETE FROM duralog_migrations WHERE version >= %s", (REBUILT,))
    store.close()
    assert all("WHERE" not in indexes()[name] for name in PARTIAL)
    store = open_store(postgres_url)  # upgrades it
    store.close()
    found = indexes()
    for name in PARTIAL:
        assert "WHERE" in found[name] and "IS NOT NULL" in found[name], found[name]
