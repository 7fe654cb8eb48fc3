"""Whole-table rows in and out of the SQLite store, for ``copy_store`` (``migrate-store``)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence

from duralog.errors import StoreError

from .base import limit_value
from .schema import copy_values, described


class CopyingMixin:
    """The ``export_rows`` / ``import_rows`` / ``count_rows`` part of ``SQLiteStore``."""

    path: str

    def _write(self, what: str = "") -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _connection(self, what: str = "") -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def export_rows(
        self,
        table: str,
        after: Sequence[object] | None = None,
        limit: int = 1000,
        *,
        raw: bool = False,
    ) -> list[tuple[object, ...]]:
        """Up to ``limit`` rows of ``table`` with a primary key above ``after``, in key
        order, every column in the order ``store/schema.py`` gives (``raw``: unconverted)."""
        spec = described(table)
        key = ", ".join(spec.key)
        where = f" WHERE ({key}) > ({', '.join('?' * len(spec.key))})" if after else ""
        with self._connection(f"reading {table}") as conn:
            rows = conn.execute(
                f"SELECT {', '.join(spec.names)} FROM {table}{where} ORDER BY {key} LIMIT ?",
                [*(after or ()), limit_value(limit)],
            ).fetchall()
        return [tuple(row) if raw else copy_values(spec, row) for row in rows]

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

    def count_rows(self, table: str) -> int:
        """How many rows ``table`` holds."""
        described(table)
        with self._connection(f"counting {table}") as conn:
            (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(count)
