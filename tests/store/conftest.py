"""The stores every conformance test runs against: a SQLite file, SQLite in memory, PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from duralog.store.base import EventStore
from duralog.store.open import is_postgres, open_store

Opener = Callable[[], EventStore]
RunSQL = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def address(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the test's log lives: a file, ``:memory:`` or a fresh PostgreSQL schema."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "log.db") if request.param == "sqlite" else ":memory:"


@pytest.fixture
def opener(address: str) -> Iterator[Opener]:
    """Opens a store on the test's log (another one at each call), closed after the test."""
    opened: list[EventStore] = []

    def open_one() -> EventStore:
        if address == ":memory:" and opened:
            pytest.skip("an in-memory log cannot be opened twice")
        store = open_store(address, durability="normal")
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> EventStore:
    """The log under test."""
    return opener()


@pytest.fixture
def run_sql(address: str, store: EventStore) -> RunSQL:
    """Runs one raw SQL statement on the test's log, bypassing the store (to damage it).

    Placeholders are ``?`` for both databases; returns the rows, if any."""

    def run(statement: str, *params: object) -> list[tuple[Any, ...]]:
        if address == ":memory:":
            pytest.skip("an in-memory log cannot be reached from outside its store")
        if is_postgres(address):
            import psycopg

            from duralog.store.postgres import PostgresStore

            assert isinstance(store, PostgresStore)
            with psycopg.connect(store.address.conninfo, autocommit=True) as conn:
                conn.execute(f'SET search_path TO "{store.schema}"')
                cur = conn.execute(statement.replace("?", "%s"), params)
                return cur.fetchall() if cur.description else []
        with sqlite3.connect(address) as conn:
            rows = conn.execute(statement, params).fetchall()
        conn.close()
        return rows

    return run


Lapse = Callable[..., None]


@pytest.fixture
def lapse(run_sql: RunSQL) -> Lapse:
    """Makes leases expire, as if an hour passed by any clock: every lease, or those of
    one ``owner``. (PostgreSQL judges leases by its own clock, which tests cannot move.)"""

    def expire(owner: str | None = None) -> None:
        where = "lease_until IS NOT NULL" + (" AND owner = ?" if owner is not None else "")
        params = () if owner is None else (owner,)
        run_sql(f"UPDATE workflows SET lease_until = lease_until - 3600 WHERE {where}", *params)

    return expire
