"""Open a log by its address: a SQLite path (the default) or a PostgreSQL URL."""

from __future__ import annotations

from pathlib import Path

from duralog.errors import ConfigurationError

from .base import Durability, EventStore
from .envelope import PayloadCodec
from .redaction import redact as redact
from .redaction import secrets_of as secrets_of
from .sqlite import SQLiteStore

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(_POSTGRES_SCHEMES)


def open_store(
    target: str | Path,
    *,
    durability: Durability = "full",
    payload_codec: PayloadCodec | None = None,
    create: bool = True,
) -> EventStore:
    """The store at ``target``: ``postgresql://...`` opens PostgreSQL (the ``postgres``
    extra), anything else is a SQLite file path or ``":memory:"``. ``payload_codec``
    seals the texts of the events it writes (the engine's codec). With ``create``
    False a PostgreSQL schema without a log is a ``StoreError``, not a new log (a
    SQLite caller checks that the file exists)."""
    if is_postgres(target):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise ConfigurationError(
                f"a PostgreSQL log needs the psycopg driver ({exc}); "
                "install it with: pip install 'duralog[postgres]'"
            ) from None
        return PostgresStore(
            str(target), durability=durability, payload_codec=payload_codec, create=create
        )
    return SQLiteStore(target, durability=durability, payload_codec=payload_codec)
