"""One append of the PostgreSQL store: a batch under its index rows' locks.

An append locks its workflows' index rows (``FOR UPDATE``, in id order, so two
writers never deadlock), checks the fencing token, the seq and the status table
under that lock, and writes in the same transaction: one insert of every event
(``unnest``), one update of the index rows per round. The primary key ``(workflow_id,
seq)`` stays the last guard.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from duralog.errors import IllegalTransition, LogDamaged

from .integrity import GENESIS, ChainedRow, chain, log_end
from .postgres_connection import Conn, Connections, PgSession, to_psycopg
from .records import Append, Appended, WorkflowStatus, admit
from .schema import EVENT_COLUMNS, LOG_END, EventRow
from .sql_base import append_extras

_EVENT_INSERT = (
    f"INSERT INTO events ({EVENT_COLUMNS})"
    " SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::float8[], %b::text[],"
    " %b::text[])"
)
#: The index rows an append locks, each with the event its append continues (the one
#: at its last seq, if the log holds it) and that event's checksum.
_LOCK_INDEX = (
    "SELECT w.id, w.fence, w.status, w.last_seq, e.seq IS NOT NULL, e.checksum"
    " FROM workflows w LEFT JOIN events e ON e.workflow_id = w.id AND e.seq = w.last_seq"
    " WHERE w.id = ANY(%s) ORDER BY w.id FOR UPDATE OF w"
)
_LOG_END = to_psycopg(LOG_END)
_STATUSES = frozenset(s.value for s in WorkflowStatus)
#: The index row after an append. Without entries an append sets status, reason and
#: wake_at as given; a finished or suspended workflow's lease ends in the same commit.
_INDEX_UPDATE = (
    "UPDATE workflows w SET"
    " last_seq = CASE WHEN v.entries THEN v.last ELSE w.last_seq END,"
    " updated_at = CASE WHEN v.entries THEN v.at ELSE w.updated_at END,"
    " wake_at = v.wake, status = COALESCE(v.status, w.status),"
    " reason = CASE WHEN v.entries THEN COALESCE(v.reason, w.reason) ELSE v.reason END,"
    " owner = CASE WHEN v.ends THEN NULL ELSE w.owner END,"
    " lease_until = CASE WHEN v.ends THEN NULL ELSE w.lease_until END"
    " FROM unnest(%b::bool[], %b::bigint[], %b::float8[], %b::float8[], %b::text[],"
    "  %b::text[], %b::bool[], %b::text[]) AS v(entries, last, at, wake, status, reason,"
    "  ends, id)"
    " WHERE w.id = v.id"
)


def clash(db: Connections, item: Append) -> Appended:
    """Why an append clashed on a seq: False, or a log that is ahead of its index."""
    with db.reading(f"checking the log of {item.workflow_id!r}") as conn:
        found = conn.execute(
            "SELECT fence, last_seq FROM workflows WHERE id = %s", (item.workflow_id,)
        ).fetchone()
        if found is None or found[0] != item.fence:
            return False
        at_end = conn.execute(_LOG_END, (item.workflow_id, found[1])).fetchall()
    damage = log_end(found[1], at_end)[1]
    return False if damage is None else LogDamaged(item.workflow_id, *damage)


def append_all(
    db: Connections, conn: Conn, batch: Sequence[Append], rows: Sequence[list[EventRow]]
) -> list[Appended]:
    """Append ``batch`` in the open transaction: its index rows locked in id order,
    each item checked (``admit``) and chained on the event it continues, then one
    insert of every event and one index update per round."""
    ids = sorted({item.workflow_id for item in batch})
    index: dict[str, tuple[int, str, int, bool, str | None]] = {
        r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in conn.execute(_LOCK_INDEX, (ids,))
    }
    results: list[Appended] = []
    events: list[ChainedRow] = []
    updates: list[_Update] = []
    notes: list[tuple[str, str | None]] = []
    for item, unchained in zip(batch, rows, strict=True):
        found = index.get(item.workflow_id)
        if found is None or found[0] != item.fence:
            results.append(False)
            continue
        fence, status_text, last_seq, at_end, previous = found
        if status_text not in _STATUSES:
            results.append(
                LogDamaged(
                    item.workflow_id,
                    last_seq,
                    f"its index row has the unknown status {status_text!r:.40}",
                )
            )
            continue
        current = WorkflowStatus(status_text)
        if unchained and (not at_end or previous is None):
            # Read again, now that the row is locked: a join in a locking read
            # may see the log as it was before the lock was granted.
            found_end = conn.execute(_LOG_END, (item.workflow_id, last_seq)).fetchall()
            previous, damage = log_end(last_seq, found_end)
            if damage is not None:
                results.append(LogDamaged(item.workflow_id, *damage))
                continue
        admitted, status = _admit(item, (fence, current, last_seq))
        results.append(admitted)
        if not admitted:
            continue
        item_rows = chain(unchained, previous or GENESIS) if unchained else []
        if item_rows:
            last_seq, previous = item_rows[-1][1], item_rows[-1][5]
        index[item.workflow_id] = (fence, (status or current).value, last_seq, True, previous)
        if item_rows or item.status is not None:
            ends = status is not None and status.ends_lease
            updates.append(
                (
                    bool(item_rows),
                    last_seq,
                    item_rows[-1][3] if item_rows else None,
                    item.wake_at,
                    status.value if status else None,
                    item.reason,
                    ends,
                    item.workflow_id,
                )
            )
        events += item_rows
        append_extras(PgSession(conn), item, item_rows[-1][3] if item_rows else 0.0)
        notes += [("inbox", notice.workflow_id) for notice in item.notices]
    insert_events(conn, events)
    # One statement per round; a workflow appended to twice in the batch has its
    # second update in the next round, so each sees the one before.
    rounds: list[list[_Update]] = []
    seen: Counter[str] = Counter()
    for update in updates:
        if seen[update[-1]] == len(rounds):
            rounds.append([])
        rounds[seen[update[-1]]].append(update)
        seen[update[-1]] += 1
    for batch_updates in rounds:
        conn.execute(_INDEX_UPDATE, [list(c) for c in zip(*batch_updates, strict=True)])
    db.notify(conn, notes)
    return results


#: entries?, last seq, updated at, wake at, status, reason, ends the lease?, workflow id
_Update = tuple[bool, int, float | None, float | None, str | None, str | None, bool, str]


def insert_events(conn: Conn, rows: Sequence[ChainedRow]) -> None:
    """Insert ``rows`` in one statement (one array per column)."""
    if rows:
        conn.execute(_EVENT_INSERT, [list(column) for column in zip(*rows, strict=True)])


def _admit(
    item: Append, found: tuple[int, WorkflowStatus, int]
) -> tuple[bool, WorkflowStatus | None]:
    """``admit`` for a batch: every refusal, a forbidden transition too, refuses only
    this item."""
    try:
        return admit(item, *found)
    except IllegalTransition:
        return False, None
