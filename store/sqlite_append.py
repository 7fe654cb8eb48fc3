"""One append inside the SQLite store's write transaction: the checks and the rows.

Most appends are a step's events: they change no status, so one guarded UPDATE
checks the fence, the last seq and that the workflow is alive, and moves the
index row on, and the events follow. Anything else (a status change, a refusal
to explain) takes the checked path, which reads the index row first.
"""

from __future__ import annotations

import sqlite3

from .base import STATUS_AFTER, Append, WorkflowStatus, admit
from .events import TERMINAL_KINDS
from .schema import EventRow

Row = EventRow


def append_one(conn: sqlite3.Connection, item: Append, rows: list[Row]) -> bool:
    """Append ``rows`` for ``item`` in the open transaction; False if refused (stale
    fence, a gap); raises ``IllegalTransition`` for a forbidden status change."""
    if not (_plain(item, rows) and _guarded_update(conn, item, rows)):
        return checked_append(conn, item, rows)
    conn.executemany(
        "INSERT INTO events (workflow_id, seq, kind, at, body) VALUES (?,?,?,?,?)", rows
    )
    _append_extras(conn, item, rows)
    return True


def checked_append(conn: sqlite3.Connection, item: Append, rows: list[Row]) -> bool:
    """Any append: reads the index row, says why it refuses, changes the status."""
    found = conn.execute(
        "SELECT fence, status, last_seq FROM workflows WHERE id = ?", (item.workflow_id,)
    ).fetchone()
    if found is None:
        return False
    admitted, status = admit(item, found[0], WorkflowStatus(found[1]), found[2])
    if not admitted:
        return False
    if rows:
        conn.executemany(
            "INSERT INTO events (workflow_id, seq, kind, at, body) VALUES (?,?,?,?,?)", rows
        )
        conn.execute(
            "UPDATE workflows SET last_seq = ?, updated_at = ?, wake_at = ?,"
            " status = COALESCE(?, status), reason = COALESCE(?, reason) WHERE id = ?",
            (
                rows[-1][1],
                rows[-1][3],
                item.wake_at,
                status.value if status else None,
                item.reason,
                item.workflow_id,
            ),
        )
    elif item.status is not None:
        conn.execute(
            "UPDATE workflows SET status = ?, reason = ?, wake_at = ? WHERE id = ?",
            (item.status.value, item.reason, item.wake_at, item.workflow_id),
        )
    if status is not None and status.ends_lease:
        # Nobody advances it any more: its lease ends with the same commit.
        conn.execute(
            "UPDATE workflows SET owner = NULL, lease_until = NULL WHERE id = ?",
            (item.workflow_id,),
        )
    _append_extras(conn, item, rows)
    return True


def _plain(item: Append, rows: list[Row]) -> bool:
    """Whether an append only adds events (a step's, say) and changes no status."""
    if not rows or item.status is not None or item.reason is not None:
        return False
    if rows[-1][2] in STATUS_AFTER or any(r[2] in TERMINAL_KINDS for r in rows[:-1]):
        return False
    first = rows[0][1]
    return all(r[1] == first + i for i, r in enumerate(rows))


def _guarded_update(conn: sqlite3.Connection, item: Append, rows: list[Row]) -> bool:
    """Move the index row past ``rows`` if the fence, the last seq and a live status
    all agree: the fence check and the update in one statement. Leaving status out
    of the SET also spares SQLite rewriting the two indexes that hold it."""
    cursor = conn.execute(
        _GUARDED_UPDATE,
        (
            rows[-1][1],
            rows[-1][3],
            item.wake_at,
            item.workflow_id,
            item.fence,
            rows[0][1] - 1,
            *_TERMINAL_STATUSES,
        ),
    )
    return cursor.rowcount == 1


_TERMINAL_STATUSES = tuple(s.value for s in WorkflowStatus if s.is_terminal)
_GUARDED_UPDATE = (
    "UPDATE workflows SET last_seq = ?, updated_at = ?, wake_at = ?"
    " WHERE id = ? AND fence = ? AND last_seq = ?"
    f" AND status NOT IN ({', '.join('?' * len(_TERMINAL_STATUSES))})"
)


def _append_extras(conn: sqlite3.Connection, item: Append, rows: list[Row]) -> None:
    """What rides along with an append: notices to others, consumed inbox items, a snapshot."""
    for notice in item.notices:
        conn.execute(
            "INSERT INTO inbox (workflow_id, kind, name, payload, at) VALUES (?,?,?,?,?)",
            (
                notice.workflow_id,
                notice.kind,
                notice.name,
                notice.payload.decode() if notice.payload is not None else None,
                rows[-1][3] if rows else 0.0,
            ),
        )
    if item.consumed:
        conn.executemany(
            "DELETE FROM inbox WHERE id = ? AND workflow_id = ?",
            [(i, item.workflow_id) for i in item.consumed],
        )
    if item.snapshot is not None:
        snap = item.snapshot
        conn.execute("DELETE FROM snapshots WHERE workflow_id = ?", (snap.workflow_id,))
        conn.execute(
            "INSERT INTO snapshots (workflow_id, seq, state, checksum) VALUES (?,?,?,?)",
            (snap.workflow_id, snap.seq, snap.state, snap.checksum),
        )
