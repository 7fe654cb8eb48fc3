"""The SQLite log's migrations: ``store/schema.py``'s versions, applied in order.

sqlite-utils ``Migrations`` records each version it applied by name; ``PRAGMA
user_version`` mirrors the number applied. sqlite-utils is imported only when a
file needs a migration (a new or an older log), not by ``import duralog``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .schema import (
    CHAINED_VERSION,
    MIGRATION_NAMES,
    SCHEMA_VERSION,
    SQLITE,
    backfill_checksums,
    migration,
)

_BACKFILL_BATCH = 5000


def _migrations() -> Any:
    from sqlite_utils import Migrations

    migrations = Migrations("duralog")
    for version in sorted(MIGRATION_NAMES):
        migrations(name=MIGRATION_NAMES[version])(_step(version))
    return migrations


def _step(version: int) -> Any:
    def apply(db: Any) -> None:
        # executescript() would commit the surrounding transaction: run one by one.
        for statement in migration(version, SQLITE):
            db.execute(statement)
        if version == CHAINED_VERSION:
            backfill_checksums(
                lambda after: db.execute(
                    "SELECT workflow_id, seq, kind, at, body FROM events"
                    + (" WHERE (workflow_id, seq) > (?, ?)" if after else "")
                    + " ORDER BY workflow_id, seq LIMIT ?",
                    [*(after or ()), _BACKFILL_BATCH],
                ).fetchall(),
                lambda updates: db.conn.executemany(
                    "UPDATE events SET checksum = ? WHERE workflow_id = ? AND seq = ?", updates
                ),
            )

    return apply


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the SQLite log on ``conn`` to the current schema (idempotent, safe with
    concurrent openers)."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    from sqlite_utils import Database

    db = Database(conn)
    # One opener migrates at a time: the write lock is taken before looking at
    # what is pending, so two processes opening a new file never both apply a step.
    db.execute("BEGIN IMMEDIATE")
    try:
        _migrations().apply(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
