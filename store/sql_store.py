"""One SQL base for both stores: the queries and algorithms, written once.

``SQLStore`` is the log (``store/sql_log.py``), the index as operators read it
(``store/sql_listing.py``), the leases and queues (``store/sql_leases.py``), the
schedules and breakers (``store/sql_scheduling.py``) and the steps' heartbeats
(``store/sql_heartbeats.py``), over the hooks of ``store/sql_base.py``. A dialect
(``SQLiteStore``, ``PostgresStore``) adds its connections, its placeholder style,
its transactions, queue lock and ``SKIP LOCKED``, and the two writes whose algorithm
differs with the database: ``append`` (SQLite: one guarded update per item;
PostgreSQL: a batch under row locks) and the bulk insert of new workflows and copied
rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .records import Append, Appended
from .sql_heartbeats import SQLHeartbeats
from .sql_leases import SQLLeases
from .sql_listing import SQLListing
from .sql_log import SQLLog
from .sql_scheduling import SQLScheduling


class SQLStore(SQLLog, SQLListing, SQLLeases, SQLScheduling, SQLHeartbeats):
    """An ``EventStore`` on a SQL database; subclass it per dialect (see the module
    docstring and ``store/sql_base.py``)."""

    #: See ``EventStore.remote`` (a dialect across the network says True).
    remote: bool = False

    def append(self, batch: Sequence[Append]) -> list[Appended]:
        """See ``EventStore.append``."""
        raise NotImplementedError

    def import_rows(self, table: str, rows: Sequence[Sequence[object]]) -> int:
        """See ``EventStore.import_rows``."""
        raise NotImplementedError

    def listen(self, callback: Callable[[str, str | None], None]) -> None:
        """See ``EventStore.listen`` (by default: no notifications; workers poll)."""

    def check(self) -> None:
        """See ``EventStore.check``."""

    def close(self) -> None:
        """See ``EventStore.close``."""
        raise NotImplementedError
