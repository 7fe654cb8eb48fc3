"""``duralog verify``: check a whole log, or one workflow's, through the store protocol.

The checks are ``store/integrity.py``'s; this module reads the rows as the
database holds them (``export_rows(..., raw=True)``, so a damaged value is seen,
not refused) and compares every workflow's index row with its log.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import msgspec

from duralog.errors import StoreError, WorkflowNotFound

from .base import EventStore, WorkflowRecord
from .events import TERMINAL_KINDS, LogEntry
from .integrity import EventCheck, Finding, index_findings
from .schema import TABLE

__all__ = ["Finding", "WorkflowCheck", "verify", "verify_read"]


class WorkflowCheck(msgspec.Struct, frozen=True):
    """What ``verify`` found for one workflow: ``findings`` is empty when it is intact."""

    workflow_id: str
    events: int
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.findings


def verify(
    store: EventStore, workflow_id: str | None = None, batch_size: int = 1000
) -> Iterator[WorkflowCheck]:
    """Check the log of one workflow, or of every workflow (``None``), in id order:
    the checksum chain, gapless seqs from 1, nothing after a terminal event, each
    body against its kind, and the index row (status, last seq) against the log.

    Reads through the store, in batches; a read the database refuses raises
    ``StoreError``, an id that is neither in the index nor in the log
    ``WorkflowNotFound``. Example: ``[c for c in verify(store) if not c.ok]``.
    """
    if workflow_id is not None:
        yield _verify_one(store, workflow_id, batch_size)
        return
    index = _index_rows(store, batch_size)
    pending = next(index, None)
    for wid, rows in itertools.groupby(_event_rows(store, None, batch_size), key=lambda r: r[0]):
        while pending is not None and pending[0] < wid:
            yield _check(pending[0], pending[1], [], [])
            pending = next(index, None)
        if pending is not None and pending[0] == wid:
            yield _check(str(wid), pending[1], list(rows), pending[2])
            pending = next(index, None)
        else:
            yield _check(str(wid), None, list(rows), [])
    while pending is not None:
        yield _check(pending[0], pending[1], [], pending[2])
        pending = next(index, None)


def _verify_one(store: EventStore, workflow_id: str, batch_size: int) -> WorkflowCheck:
    damaged: list[Finding] = []
    try:
        record = store.get_workflow(workflow_id)
    except StoreError as exc:
        record = None
        damaged.append(Finding(workflow_id, 0, "index", str(exc)))
    rows = list(_event_rows(store, workflow_id, batch_size))
    if record is None and not rows and not damaged:
        raise WorkflowNotFound(workflow_id)
    return _check(workflow_id, record, rows, damaged)


def verify_read(
    store: EventStore, workflow_id: str, batch_size: int = 1000
) -> tuple[WorkflowCheck, list[LogEntry]]:
    """``verify`` of one workflow, and its events when nothing is wrong with it (else
    none): what ``duralog replay`` reads, each event read and decoded once.

    An intact log (the usual case) is checked as ``read_events`` reads it (its own
    checks of the chain, the seqs and the bodies), and two one-row reads make sure
    no row of the workflow lies outside what it read (a seq below 1, or past the
    last one, or not a number): those are the rows ``verify`` reads. Only a damaged
    log is read again, with ``EventCheck``, for every problem ``verify`` lists.
    """
    try:
        record = store.get_workflow(workflow_id)
        found: list[LogEntry] | None = store.read_events(workflow_id)
    except StoreError:  # (LogDamaged among them)
        found = None
    if found is None or not _read_whole(store, workflow_id, found):
        return _verify_one(store, workflow_id, batch_size), []
    if record is None and not found:
        raise WorkflowNotFound(workflow_id)
    check = _intact_check(workflow_id, found)
    findings = index_findings(workflow_id, record, check)
    return WorkflowCheck(workflow_id, check.rows, findings), [] if findings else found


def _read_whole(store: EventStore, workflow_id: str, found: list[LogEntry]) -> bool:
    """Whether ``found`` (seqs 1..N, as read) holds every row of the workflow's log:
    its first row in key order is seq 1, and none comes after seq N."""
    first = store.export_rows("events", (workflow_id, -(2**62)), 1, raw=True)
    if not found:
        return not first or first[0][0] != workflow_id
    if not first or first[0][0] != workflow_id or first[0][1] != found[0].seq:
        return False
    after = store.export_rows("events", (workflow_id, found[-1].seq), 1, raw=True)
    return not after or after[0][0] != workflow_id


def _intact_check(workflow_id: str, found: list[LogEntry]) -> EventCheck:
    """The ``EventCheck`` that would have taken the rows of ``found``, an intact log
    (gapless from seq 1, nothing after its terminal event): what the index is
    compared with."""
    check = EventCheck(workflow_id)
    check.rows = len(found)
    if found:
        last = found[-1]
        check.last = (last.seq, last.kind)
        check.expected = last.seq + 1
        if last.kind in TERMINAL_KINDS:
            check.end = check.last
    return check


def _check(
    workflow_id: str,
    record: WorkflowRecord | None,
    rows: Sequence[Sequence[object]],
    damaged: list[Finding],
) -> WorkflowCheck:
    check = EventCheck(workflow_id)
    findings = list(damaged)
    for row in rows:
        findings += check.take(row[1:6])[1]
    if not damaged:
        findings += index_findings(workflow_id, record, check)
    return WorkflowCheck(workflow_id, check.rows, findings)


def _event_rows(
    store: EventStore, workflow_id: str | None, batch_size: int
) -> Iterator[tuple[object, ...]]:
    """The ``events`` rows (as stored) of one workflow or of all, in key order."""
    after: tuple[object, ...] | None = None if workflow_id is None else (workflow_id, -(2**62))
    while True:
        rows = store.export_rows("events", after, batch_size, raw=True)
        for row in rows:
            if workflow_id is not None and row[0] != workflow_id:
                return
            yield row
        if len(rows) < batch_size:
            return
        after = (rows[-1][0], rows[-1][1])


def _index_rows(
    store: EventStore, batch_size: int
) -> Iterator[tuple[str, WorkflowRecord | None, list[Finding]]]:
    """Every index row as (id, record or None if damaged, findings), in id order."""
    names = [f.name for f in msgspec.structs.fields(WorkflowRecord)]
    after: tuple[object, ...] | None = None
    while True:
        rows = store.export_rows("workflows", after, batch_size, raw=True)
        for row in rows:
            wid = str(row[0])
            values = dict(zip(TABLE["workflows"].names, row, strict=True))
            try:
                record = msgspec.convert({n: values[n] for n in names}, WorkflowRecord)
            except msgspec.ValidationError as exc:
                yield wid, None, [Finding(wid, 0, "index", f"its index row is damaged: {exc}")]
                continue
            yield wid, record, []
        if len(rows) < batch_size:
            return
        after = (rows[-1][0],)
