"""Open a log by its address: a SQLite path (the default) or a PostgreSQL URL."""

from __future__ import annotations

import re
from pathlib import Path

from duralog.errors import ConfigurationError

from .base import Durability, EventStore
from .sqlite import SQLiteStore

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_SECRET_KEYS = ("password", "passfile", "sslpassword")


def is_postgres(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(_POSTGRES_SCHEMES)


def open_store(target: str | Path, *, durability: Durability = "full") -> EventStore:
    """The store at ``target``: ``postgresql://...`` opens PostgreSQL (the ``postgres``
    extra), anything else is a SQLite file path or ``":memory:"``."""
    if is_postgres(target):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise ConfigurationError(
                f"a PostgreSQL log needs the psycopg driver ({exc}); "
                "install it with: pip install 'duralog[postgres]'"
            ) from None
        return PostgresStore(str(target), durability=durability)
    return SQLiteStore(target, durability=durability)


def redact(url: str) -> str:
    """``url`` (a log's address) as it may be printed: any password masked."""
    # Up to the last @ of the authority: a password may hold an unencoded @.
    redacted = re.sub(r"(://[^:/@]*):[^/]*@", r"\1:***@", url)
    keys = "|".join(_SECRET_KEYS)
    return re.sub(rf"(({keys})\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)", r"\1***", redacted)
