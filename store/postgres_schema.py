"""Where a PostgreSQL log lives (URL and schema) and how its schema is brought up to date.

The tables are the ones ``store/schema.py`` describes, rendered for PostgreSQL.
Each log lives in one PostgreSQL schema (``?schema=NAME`` in the URL, or the
``schema=`` argument; default the connection's current schema, usually
``public``), so several logs can share a database. Applied versions are rows of
``duralog_migrations``; they are applied under a transaction-scoped advisory lock
keyed on the schema, so processes opening a new log at once migrate it once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
import urllib.parse
from typing import Any

import psycopg
from psycopg import sql

from duralog.errors import ConfigurationError, StoreError

from .redaction import redact
from .schema import (
    CHAINED_VERSION,
    MIGRATION_NAMES,
    POSTGRES,
    TABLES,
    backfill_checksums,
    migration,
)

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclasses.dataclass(frozen=True)
class Address:
    """A parsed PostgreSQL log address.

    ``conninfo`` goes to libpq (the URL without duralog's own parameters:
    ``schema``, ``pool_size``, ``pool_timeout``); ``display`` names the database in
    messages, never with a password.
    """

    conninfo: str = dataclasses.field(repr=False)  # it may hold the password
    schema: str | None
    display: str
    pool_size: int | None = None
    pool_timeout: float | None = None


def parse_address(url: str, schema: str | None = None) -> Address:
    """Split ``url`` into what libpq reads and the schema; ``ConfigurationError`` if bad.

    ``schema`` (the argument) wins over a ``?schema=`` query parameter.
    """
    base, _, query = url.partition("?")
    authority = base.split("://", 1)[-1].split("/", 1)[0]
    if authority.count("@") > 1:  # libpq would take part of the password for the host
        raise ConfigurationError(
            f"{redact(url)}: the user or password holds an unencoded @; percent-encode "
            "it (@ is %40), e.g. postgresql://app:se%40cret@db.internal/prod"
        )
    named, rest = [], []
    ours: dict[str, str] = {}
    for part in query.split("&") if query else []:
        key, _, value = part.partition("=")
        key = urllib.parse.unquote(key)
        if key == "schema":
            named.append(urllib.parse.unquote(value))
        elif key in _POOL_PARAMETERS:
            ours[key] = urllib.parse.unquote(value)
        else:
            rest.append(part)  # as written: libpq decodes it
    conninfo = base + ("?" + "&".join(rest) if rest else "")
    try:
        fields = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error:
        # libpq's own message quotes the URL, password included: never repeat it.
        hint = (
            "; percent-encode special characters in the password (@ is %40)"
            if url.count("@") > 1 or "%" in url
            else ""
        )
        raise ConfigurationError(
            f"{redact(url)} is not a valid PostgreSQL URL; the form is "
            f"postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME]{hint}"
        ) from None
    chosen = schema if schema is not None else (named[-1] if named else None)
    if chosen is not None and not _SCHEMA_NAME.fullmatch(chosen):
        raise ConfigurationError(
            f"schema {chosen!r}: a duralog schema name is 1-63 letters, digits and "
            "underscores, not starting with a digit"
        )
    host = fields.get("host") or "localhost"
    port = f":{fields['port']}" if fields.get("port") else ""
    user = f"{fields['user']}@" if fields.get("user") else ""
    display = f"postgresql://{user}{host}{port}/{fields.get('dbname') or ''}"
    if chosen is not None:
        display += f"?schema={chosen}"
    return Address(
        conninfo,
        chosen,
        display,
        _pool_parameter(ours, "pool_size", int, display),
        _pool_parameter(ours, "pool_timeout", float, display),
    )


#: The URL parameters that size the store's connection pool (``store/postgres_connection.py``).
_POOL_PARAMETERS = {
    "pool_size": "a whole number of connections, at least 1 (e.g. pool_size=10)",
    "pool_timeout": "a number of seconds above 0 (e.g. pool_timeout=30)",
}


def _pool_parameter(
    given: dict[str, str], key: str, kind: type[int] | type[float], display: str
) -> Any:
    """``given[key]`` as a positive ``kind``; None if absent, ``ConfigurationError`` if bad."""
    if key not in given:
        return None
    try:
        value = kind(given[key])
    except ValueError:
        value = 0
    if not 0 < value < float("inf"):
        raise ConfigurationError(
            f"{display}: ?{key}={given[key][:40]!r} is not valid; {key} is {_POOL_PARAMETERS[key]}"
        )
    return value


def channel_name(schema: str) -> str:
    """The NOTIFY channel of the log in ``schema`` (an identifier that needs no quoting)."""
    return "duralog_" + hashlib.sha1(schema.encode()).hexdigest()[:20]


def lock_key(schema: str, purpose: str) -> int:
    """A 64-bit advisory lock key for ``purpose`` in ``schema``."""
    digest = hashlib.sha1(f"duralog:{schema}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def migrate(conn: psycopg.Connection[tuple[Any, ...]], schema: str, display: str) -> None:
    """Bring the log in ``schema`` to the current version; ``conn`` is in autocommit mode."""
    latest = max(MIGRATION_NAMES)
    if applied_version(conn, schema) == latest:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema, "migrate"),))
        # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
        # exists: a role that only owns its schema could never open (or upgrade) it.
        if not conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        name = sql.Identifier(schema, "duralog_migrations")
        if applied_version(conn, schema) < 0:
            _refuse_foreign_tables(conn, schema, display)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (version INTEGER PRIMARY KEY,"
                    " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
                ).format(name)
            )
        done = applied_version(conn, schema)
        for version in sorted(MIGRATION_NAMES):
            if version <= done:
                continue
            for statement in migration(version, POSTGRES):
                conn.execute(statement)
            if version == CHAINED_VERSION:
                _backfill(conn, schema)
            conn.execute(
                sql.SQL("INSERT INTO {} (version, name, applied_at) VALUES (%s, %s, %s)").format(
                    name
                ),
                (version, MIGRATION_NAMES[version], time.time()),
            )
    applied = applied_version(conn, schema)
    if applied > latest:
        raise StoreError(
            f"the log at {display} has schema version {applied}, newer than this duralog "
            f"knows ({latest}); upgrade duralog to open it"
        )


def _backfill(conn: psycopg.Connection[tuple[Any, ...]], schema: str) -> None:
    """Chain the events written before checksums existed (in the migration's transaction)."""
    events = sql.Identifier(schema, "events")
    first = sql.SQL(
        "SELECT workflow_id, seq, kind, at, body FROM {} ORDER BY workflow_id, seq LIMIT 5000"
    )
    more = sql.SQL(
        "SELECT workflow_id, seq, kind, at, body FROM {} WHERE (workflow_id, seq) > (%s, %s)"
        " ORDER BY workflow_id, seq LIMIT 5000"
    )
    update = sql.SQL("UPDATE {} SET checksum = %s WHERE workflow_id = %s AND seq = %s")
    backfill_checksums(
        lambda after: conn.execute(
            (more if after else first).format(events), list(after or ())
        ).fetchall(),
        lambda updates: conn.cursor().executemany(update.format(events), updates),
    )


def applied_version(conn: psycopg.Connection[tuple[Any, ...]], schema: str) -> int:
    """The newest version applied in ``schema``; -1 if it has no migrations table (no
    duralog log is there)."""
    (table,) = conn.execute(
        "SELECT to_regclass(%s)", (f'"{schema}".duralog_migrations',)
    ).fetchone() or (None,)
    if table is None:
        return -1
    (version,) = conn.execute(
        sql.SQL("SELECT COALESCE(max(version), 0) FROM {}").format(
            sql.Identifier(schema, "duralog_migrations")
        )
    ).fetchone() or (0,)
    return int(version)


def _refuse_foreign_tables(
    conn: psycopg.Connection[tuple[Any, ...]], schema: str, display: str
) -> None:
    """A table of ours that duralog did not create belongs to someone else."""
    taken = [
        row[0]
        for row in conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name = ANY(%s)",
            (schema, [t.name for t in TABLES]),
        )
    ]
    if taken:
        raise StoreError(
            f"schema {schema!r} of {display} already has tables named "
            f"{', '.join(sorted(map(str, taken)))} that duralog did not create; refusing to "
            "use them as a duralog log: give the log a schema of its own (?schema=duralog)"
        )
