"""Copy a whole log from one store to another (e.g. a SQLite file into PostgreSQL).

``copy_store`` moves every workflow's index row, events, snapshots, inbox and its
running steps' heartbeat details, and every schedule, circuit breaker and queue limit
set at runtime, table by table in primary-key order and in batches (a long history is
never held in memory at once). Event bodies and payloads are copied as they are
stored, byte for byte. Leases do not move: a lease belongs to a worker of the source,
so copied workflows arrive unowned and any worker of the target may claim them. The
``workers`` table is not copied.

Stop every worker of both logs first: the copy is not a live replication.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from duralog.errors import StoreError

from .base import CopyingStore
from .schema import TABLE, Table

#: Tables in the order they are copied. Index rows go first, so that a copy that
#: fails half-way is refused clearly when it is run again (the ids are taken).
COPIED = (
    "workflows",
    "events",
    "snapshots",
    "inbox",
    "schedules",
    "breakers",
    "heartbeats",
    "queue_limits",
)
#: Tables whose keys name things a user chose (workflow ids, schedule ids, breaker and
#: queue names).
_NAMED = ("workflows", "schedules", "breakers", "queue_limits")
_LEASE = ("owner", "lease_until")


def copy_store(
    source: CopyingStore,
    target: CopyingStore,
    *,
    batch_size: int = 1000,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Copy every row of ``source``'s log into ``target``; returns rows copied per table.

    Refuses, before writing anything, a target that already holds any of the
    source's workflow ids, schedule ids or breaker names. Afterwards the rows the
    target gained are counted against the rows read, table by table; a difference
    is a ``StoreError``. ``progress(table, rows_so_far)`` is called after each batch.

    Example:
        ```python
        source = open_store("shop.db")
        target = open_store("postgresql://app@db/prod?schema=duralog")
        copy_store(source, target)   # {"workflows": 1200, "events": 48000, ...}
        ```
    """
    if batch_size < 1:
        raise StoreError(f"batch_size must be at least 1, got {batch_size}")
    for name in _NAMED:
        _refuse_taken(source, target, TABLE[name], batch_size)
    before = {name: target.count_rows(name) for name in COPIED}
    copied: dict[str, int] = {}
    for name in COPIED:
        table = TABLE[name]
        copied[name] = 0
        for rows in _batches(source, table, batch_size):
            if name == "workflows":
                rows = [_unleased(table, row) for row in rows]
            try:
                copied[name] += target.import_rows(name, rows)
            except StoreError as exc:
                done = ", ".join(f"{n} {t}" for t, n in copied.items() if n)
                state = (
                    f"the target now holds part of the log ({done}): drop it (or its "
                    "schema), fix the cause and copy again into an empty log"
                    if done
                    else "nothing was written: fix the cause and copy again"
                )
                raise StoreError(
                    f"copying {name} failed after {copied[name]} rows ({exc}); {state}"
                ) from exc
            if progress is not None:
                progress(name, copied[name])
    for name in COPIED:
        gained = target.count_rows(name) - before[name]
        if gained != copied[name] or copied[name] != source.count_rows(name):
            raise StoreError(
                f"copying {name} did not add up: read {copied[name]} rows, the source holds "
                f"{source.count_rows(name)}, the target gained {gained}; were workers running "
                "on either log? Stop them, drop the target's copy and run the copy again"
            )
    return copied


def _batches(store: CopyingStore, table: Table, size: int) -> Iterator[list[tuple[object, ...]]]:
    """Every row of ``table``, ``size`` at a time, in key order."""
    key = [table.names.index(column) for column in table.key]
    after: tuple[object, ...] | None = None
    while rows := store.export_rows(table.name, after, size):
        yield rows
        after = tuple(rows[-1][i] for i in key)
        if len(rows) < size:
            return


def _refuse_taken(source: CopyingStore, target: CopyingStore, table: Table, size: int) -> None:
    if target.count_rows(table.name) == 0:
        return
    (column,) = table.key
    at = table.names.index(column)
    taken = {row[at] for rows in _batches(target, table, size) for row in rows}
    for rows in _batches(source, table, size):
        clash = sorted(str(row[at]) for row in rows if row[at] in taken)
        if clash:
            raise StoreError(
                f"the target log already holds {table.name} with the {column} "
                f"{', '.join(map(repr, clash[:5]))}{' ...' if len(clash) > 5 else ''}; "
                "nothing was copied. Copy into an empty log (a new database or "
                "?schema=NAME), or prune or rename those first"
            )


def _unleased(table: Table, row: tuple[object, ...]) -> tuple[object, ...]:
    return tuple(
        None if name in _LEASE else value for name, value in zip(table.names, row, strict=True)
    )
