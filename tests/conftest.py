"""Shared fixtures and the hypothesis profiles (``HYPOTHESIS_PROFILE=dev`` runs longer).

PostgreSQL tests use ``postgres_url``: a fresh schema on the server named by
``DURALOG_TEST_POSTGRES`` (default the local one, trust auth), dropped after the
test. Without a reachable server (or with ``DURALOG_TEST_POSTGRES=""``) they are
skipped, and pytest's summary says why.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import duralog
from duralog.replay.definitions import Registry

settings.register_profile(
    "ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A path for a fresh SQLite log."""
    return str(tmp_path / "test.db")


@pytest.fixture
def engine(db: str) -> Iterator[duralog.Engine]:
    """An open engine with a running worker on a fresh file (durability=normal for speed)."""
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as e:
        yield e


@pytest.fixture
def registry() -> Registry:
    """A private registry, for tests that register two versions of one workflow."""
    return Registry()


POSTGRES_URL = os.environ.get("DURALOG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@functools.cache
def postgres_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can (asked once)."""
    if not POSTGRES_URL:
        return "PostgreSQL tests are off: DURALOG_TEST_POSTGRES is empty"
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc}); pip install 'duralog[postgres]'"
    from duralog.store.postgres_schema import parse_address

    where = parse_address(POSTGRES_URL).display  # without a password
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=5).close()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        return f"no PostgreSQL server reachable at {where} (DURALOG_TEST_POSTGRES): {reason}"
    return None


def drop_postgres_schema(schema: str) -> None:
    """Drop a test's schema and everything in it (never waiting long for its locks)."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL log (its own schema) for one test; skipped, with
    the reason, when no server is reachable."""
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"dltest_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"
    drop_postgres_schema(schema)
