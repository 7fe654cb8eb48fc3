"""One append inside the SQLite store's write transaction: the checks and the rows.

Most appends are a step's events: they change no status, so one guarded UPDATE
checks the fence, the last seq, that the workflow is alive and that the event the
append continues is in the log with the checksum the new events are chained on,
and moves the index row on; the events follow. That checksum is the one this
store wrote last for the workflow under the same fence (``Ends``), or else read
first. Anything else (a status change, a refusal to explain, a damaged log)
takes the checked path, which reads the index row and the end of the log.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from duralog.errors import LogDamaged

from .events import TERMINAL_KINDS
from .integrity import GENESIS, ChainedRow, chain, log_end
from .records import STATUS_AFTER, Append, Appended, WorkflowStatus, admit
from .schema import INSERT_EVENTS, LOG_END, EventRow
from .sql_base import append_extras

Row = EventRow
_PREVIOUS = "SELECT checksum FROM events WHERE workflow_id = ? AND seq = ?"


class Ends:
    """The last event this store wrote to each workflow, as (fence, seq, checksum):
    an append that continues it needs no read to know what to chain on (the guarded
    update still checks that the event is there, with that checksum). Only appends
    under the same fence trust it: another owner may have written since."""

    _MOST = 10_000  # a bound on memory: forgetting costs one read per workflow

    def __init__(self) -> None:
        self._ends: dict[str, tuple[int, int, str]] = {}

    def get(self, workflow_id: str, fence: int) -> tuple[int, str] | None:
        """(seq, checksum) of the last event written to ``workflow_id`` under ``fence``."""
        found = self._ends.get(workflow_id)
        return None if found is None or found[0] != fence else (found[1], found[2])

    def wrote(self, written: list[End]) -> None:
        """Note what a transaction that just committed wrote (see ``End``)."""
        if len(self._ends) > self._MOST:
            self._ends.clear()
        for workflow_id, fence, seq, checksum in written:
            if checksum is None:
                self._ends.pop(workflow_id, None)
            else:
                self._ends[workflow_id] = (fence, seq, checksum)


def append_one(
    conn: sqlite3.Connection, item: Append, rows: list[Row], ends: Ends, written: list[End]
) -> bool | LogDamaged:
    """Append ``rows`` for ``item`` in the open transaction; False if refused (stale
    fence, a gap), ``LogDamaged`` (nothing written) if the log under it is damaged;
    raises ``IllegalTransition`` for a forbidden status change. What it writes is
    noted in ``written``, for ``ends`` once the transaction commits."""
    if _plain(item, rows):
        previous: object = None
        known = ends.get(item.workflow_id, item.fence)
        if known is not None and known[0] == rows[0][1] - 1:
            previous = known[1]
        else:
            found = conn.execute(_PREVIOUS, (item.workflow_id, rows[0][1] - 1)).fetchone()
            previous = found[0] if found is not None else None
        if isinstance(previous, str) and _guarded_update(conn, item, rows, previous):
            chained = chain(rows, previous)
            conn.executemany(INSERT_EVENTS, chained)
            append_extras(conn, item, chained[-1][3] if chained else 0.0)
            written.append((item.workflow_id, item.fence, chained[-1][1], chained[-1][5]))
            return True
    return checked_append(conn, item, rows, ends, written)


class GroupRefused(Exception):
    """A check of the appends written together failed: roll back, append one by one."""


def append_group(
    conn: sqlite3.Connection,
    batch: Sequence[Append],
    rows: Sequence[list[Row]],
    ends: Ends,
    written: list[End],
) -> list[Appended]:
    """Append every item of ``batch`` in the transaction just begun, as ``append_one``
    would one by one, but the common items together: plain appends that continue what
    this store wrote last under the same fence (a step's events, in a busy worker)
    share one guarded UPDATE and one INSERT of all their events, written first. If any
    of their checks fails, ``GroupRefused`` is raised: the caller rolls the transaction
    back and appends the batch item by item (a savepoint would spare that, but costs
    every transaction a statement journal)."""
    together: list[Appended] = [False] * len(batch)  # True: appended with the group
    group: list[tuple[int, str]] = []  # (index, the checksum it continues)
    if len(batch) > 1 and len({item.workflow_id for item in batch}) == len(batch):
        for i, (item, r) in enumerate(zip(batch, rows, strict=True)):
            if item.notices or item.consumed or item.snapshot is not None or not _plain(item, r):
                continue
            known = ends.get(item.workflow_id, item.fence)
            if known is not None and known[0] == r[0][1] - 1:
                group.append((i, known[1]))
    if len(group) > 1:
        if not _append_together(conn, batch, rows, group, written):
            raise GroupRefused
        for i, _ in group:
            together[i] = True
    return [
        True if done else append_one(conn, item, r, ends, written)
        for done, item, r in zip(together, batch, rows, strict=True)
    ]


def _append_together(
    conn: sqlite3.Connection,
    batch: Sequence[Append],
    rows: Sequence[list[Row]],
    group: list[tuple[int, str]],
    written: list[End],
) -> bool:
    """The items at ``group`` (plain, with the checksum each continues) with one guarded
    UPDATE and one INSERT; False, the INSERT not made, if any check fails."""
    updates = []
    chained: list[ChainedRow] = []
    ended: list[End] = []
    for i, previous in group:
        item, r = batch[i], rows[i]
        updates.append(_guard(item, r, previous))
        linked = chain(r, previous)
        chained += linked
        ended.append((item.workflow_id, item.fence, linked[-1][1], linked[-1][5]))
    if conn.executemany(_GUARDED_UPDATE, updates).rowcount != len(updates):
        return False  # a stale fence, an ended workflow, a log changed under us
    conn.executemany(INSERT_EVENTS, chained)
    written += ended
    return True


#: What an append wrote last to one workflow, for ``Ends``: (workflow id, fence, seq,
#: checksum); a checksum of None: nobody continues it here (it ended, or moved).
End = tuple[str, int, int, str | None]


def checked_append(
    conn: sqlite3.Connection, item: Append, rows: list[Row], ends: Ends, written: list[End]
) -> bool | LogDamaged:
    """Any append: reads the index row and the end of the log, says why it refuses,
    changes the status."""
    wid = item.workflow_id
    found = conn.execute(
        "SELECT fence, status, last_seq FROM workflows WHERE id = ?", (wid,)
    ).fetchone()
    if found is None or found[0] != item.fence:
        return False
    fence, status_text, last_seq = found
    if isinstance(last_seq, bool) or not isinstance(last_seq, int):
        return LogDamaged(wid, 0, f"its index row says the log ends at seq {last_seq!r:.40}")
    if status_text not in _STATUSES:
        return LogDamaged(
            wid, last_seq, f"its index row has the unknown status {status_text!r:.40}"
        )
    previous: str | None = GENESIS
    if rows:
        previous, damage = log_end(last_seq, conn.execute(LOG_END, (wid, last_seq)).fetchall())
        if damage is not None:
            return LogDamaged(wid, *damage)
        known = ends.get(wid, fence)
        if known is not None and known[0] == last_seq and known[1] != previous:
            return LogDamaged(
                wid,
                last_seq,
                f"event {last_seq} changed after this process wrote it (its checksum is "
                "not the one written)",
            )
    admitted, status = admit(item, fence, WorkflowStatus(status_text), last_seq)
    if not admitted or previous is None:
        return False
    chained: list[ChainedRow] = []
    if rows:
        chained = chain(rows, previous)
        conn.executemany(INSERT_EVENTS, chained)
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
    if chained:
        written.append((wid, fence, chained[-1][1], chained[-1][5]))
    if status is not None and status.ends_lease:
        # Nobody advances it any more: its lease ends with the same commit.
        conn.execute(
            "UPDATE workflows SET owner = NULL, lease_until = NULL WHERE id = ?",
            (item.workflow_id,),
        )
        written.append((wid, fence, 0, None))
    append_extras(conn, item, chained[-1][3] if chained else 0.0)
    return True


_STATUSES = frozenset(s.value for s in WorkflowStatus)


def _plain(item: Append, rows: list[Row]) -> bool:
    """Whether an append only adds events (a step's, say) and changes no status."""
    if not rows or item.status is not None or item.reason is not None:
        return False
    if rows[-1][2] in STATUS_AFTER or any(r[2] in TERMINAL_KINDS for r in rows[:-1]):
        return False
    first = rows[0][1]
    return all(r[1] == first + i for i, r in enumerate(rows))


def _guarded_update(conn: sqlite3.Connection, item: Append, rows: list[Row], previous: str) -> bool:
    """Move the index row past ``rows`` if the fence, the last seq, a live status and
    the event the append continues (there, with checksum ``previous``) all agree:
    the checks and the update in one statement. Leaving status out of the SET also
    spares SQLite rewriting the two indexes that hold it."""
    return conn.execute(_GUARDED_UPDATE, _guard(item, rows, previous)).rowcount == 1


def _guard(item: Append, rows: list[Row], previous: str) -> tuple[object, ...]:
    """The parameters of ``_GUARDED_UPDATE`` for appending ``rows`` on ``previous``."""
    return (
        rows[-1][1],
        rows[-1][3],
        item.wake_at,
        item.workflow_id,
        item.fence,
        rows[0][1] - 1,
        *_TERMINAL_STATUSES,
        previous,
    )


_TERMINAL_STATUSES = tuple(s.value for s in WorkflowStatus if s.is_terminal)
_GUARDED_UPDATE = (
    "UPDATE workflows SET last_seq = ?1, updated_at = ?2, wake_at = ?3"
    " WHERE id = ?4 AND fence = ?5 AND last_seq = ?6"
    f" AND status NOT IN ({', '.join(f'?{7 + i}' for i in range(len(_TERMINAL_STATUSES)))})"
    " AND EXISTS (SELECT 1 FROM events WHERE workflow_id = ?4 AND seq = ?6"
    f" AND checksum = ?{7 + len(_TERMINAL_STATUSES)})"
)
