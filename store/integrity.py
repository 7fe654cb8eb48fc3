"""The log's integrity: each workflow's checksum chain, and the checks that find damage.

Every event row carries a checksum chained to the event before it in its
workflow's log (``GENESIS``, the empty string, before seq 1)::

    checksum(N) = hex(BLAKE2b-128(int64_be(seq) + float64_be(at)
                                  + utf8(checksum(N-1) + NUL + kind + NUL + body)))

The workflow id is left out: continue-as-new moves a run's events to
``<id>~run<N>`` and ``migrate-store`` copies them, and their chain stays valid.
Changing an event (its seq, kind, time or body), inserting one or removing one
breaks the chain or the seqs right there, so ``duralog verify`` names the seq. It
is evidence of accidents and of careless edits, not a signature: whoever can
write the database can also recompute the chain.

``EventCheck`` takes one workflow's rows as they are read, in seq order, and says
what is wrong with each: the store's ``read_events`` raises the first problem
(one hash per event read), and ``store/verify.py`` collects them all and compares
the index with the log. Everything here is pure.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Iterable, Sequence

import msgspec

from duralog.errors import CorruptEventError, LogDamaged

from .base import STATUS_AFTER, WorkflowRecord, WorkflowStatus
from .events import TERMINAL_KINDS, LogEntry, decode_event

#: The checksum before a workflow's first event.
GENESIS = ""

_HEAD = struct.Struct(">qd").pack
_EMPTY = hashlib.blake2b(digest_size=16)  # copied: cheaper than building one per event

#: An ``events`` row without its checksum (workflow_id, seq, kind, at, body), and with it.
UnchainedRow = tuple[str, int, str, float, str]
ChainedRow = tuple[str, int, str, float, str, str]


def link(previous: str, seq: int, kind: str, at: float, body: str) -> str:
    """The checksum of one event, chained on ``previous`` (the one of the event before)."""
    digest = _EMPTY.copy()
    digest.update(_HEAD(seq, at))
    digest.update(f"{previous}\0{kind}\0{body}".encode())
    return digest.hexdigest()


def chain(rows: Sequence[UnchainedRow], previous: str) -> list[ChainedRow]:
    """``rows`` (consecutive events of one workflow) with their checksums, the first
    one chained on ``previous``."""
    chained = []
    for row in rows:  # link(), inlined: this runs for every event appended
        digest = _EMPTY.copy()
        digest.update(_HEAD(row[1], row[3]) + f"{previous}\0{row[2]}\0{row[4]}".encode())
        previous = digest.hexdigest()
        chained.append((*row, previous))
    return chained


def log_end(
    last_seq: int, found: Sequence[Sequence[object]]
) -> tuple[str | None, tuple[int, str] | None]:
    """Where an append continues a log whose index says it ends at ``last_seq``:
    ``found`` holds the (seq, checksum) rows at and after ``last_seq``, in seq order
    (two are enough). Returns the checksum to chain on, or (None, (seq, what is
    wrong there))."""
    beyond = [row[0] for row in found if row[0] != last_seq]
    if beyond:
        seq = beyond[0] if isinstance(beyond[0], int) else last_seq + 1
        return None, (
            seq,
            f"event {beyond[0]!r} is in the log past its end in the index (seq {last_seq}): "
            "the index is behind the log",
        )
    if last_seq < 1:
        return GENESIS, None
    if not found:
        return None, (
            last_seq,
            f"event {last_seq} is missing: the index says the log ends there, and an append "
            "would leave a gap",
        )
    checksum = found[0][1]
    if not isinstance(checksum, str):
        return None, (last_seq, f"event {last_seq} has no checksum to chain the next one on")
    return checksum, None


class Finding(msgspec.Struct, frozen=True):
    """One problem ``verify`` found: the workflow, the seq (0 for the whole workflow),
    a short code (``gap``, ``chain``, ``kind``...) and what is wrong, in words."""

    workflow_id: str
    seq: int
    code: str
    problem: str

    def error(self) -> LogDamaged:
        """The problem as the error a read raises."""
        if self.code == "body":
            return CorruptEventError(self.workflow_id, self.seq, self.problem.split(": ", 1)[-1])
        return LogDamaged(self.workflow_id, self.seq, self.problem)


class EventCheck:
    """Checks one workflow's rows as they are read, in seq order.

    Rows are (seq, kind, at, body, checksum) as the database holds them. With
    ``after_seq`` the read starts at that event (the anchor): only its checksum and
    kind are used, to check the next one against it.
    """

    def __init__(self, workflow_id: str, after_seq: int = 0) -> None:
        self.workflow_id = workflow_id
        self.after_seq = after_seq
        self.expected = max(after_seq, 1)
        self._anchor = after_seq > 0
        self._previous: str | None = None if after_seq > 0 else GENESIS
        self.end: tuple[int, str] | None = None  # the terminal event read, if any
        self.last: tuple[int, str] | None = None  # the last event read: (seq, kind)
        self.rows = 0
        #: Why the body of the row just taken does not decode, if it does not.
        self.decode_error: Exception | None = None

    def take(self, row: Sequence[object]) -> tuple[LogEntry | None, list[Finding]]:
        """The entry of ``row`` (None if it cannot be one, or for the anchor) and its
        problems, first the one that matters most."""
        seq, kind, at, body, checksum = row
        if isinstance(seq, bool) or not isinstance(seq, int):
            return None, [self._finding(self.expected, "row", f"a row has seq {seq!r}")]
        problems: list[Finding] = []
        if self._anchor:
            self._anchor = False
            if seq == self.after_seq:
                self._previous = checksum if isinstance(checksum, str) else None
                self._note(seq, kind)
                self.expected = seq + 1
                return None, []
        self.rows += 1
        if seq != self.expected:
            problems.append(self._gap(seq))
            self._previous = None  # the event it was chained on is not here to check
        self.expected = seq + 1
        if self.end is not None:
            end_seq, end_kind = self.end
            problems.append(
                self._finding(
                    seq,
                    "after-end",
                    f"{kind} comes after the workflow's end ({end_kind} at seq {end_seq})",
                )
            )
        self.decode_error = None
        typed = _typed(kind, at, body, checksum)
        if isinstance(typed, str):
            self._previous = None
            if not isinstance(body, str):
                self.decode_error = TypeError(typed)
                return None, [
                    self._finding(seq, "body", f"its body does not decode: {typed}"),
                    *problems,
                ]
            return None, [*problems, self._finding(seq, "row", typed)]
        kind, at, body = typed
        event = None
        try:
            event = decode_event(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            self.decode_error = exc
            problems.insert(0, self._finding(seq, "body", f"its body does not decode: {exc}"))
        if event is not None and type(event).__name__ != kind:
            found = type(event).__name__
            problems.append(
                self._finding(
                    seq, "kind", f"its body is a {found} event but its kind column says {kind}"
                )
            )
        if self._previous is not None:
            if not isinstance(checksum, str):
                problems.append(self._finding(seq, "chain", "it has no checksum"))
            elif checksum != link(self._previous, seq, kind, at, body):
                problems.append(
                    self._finding(
                        seq,
                        "chain",
                        "its checksum does not match: the event (its kind, time or body) was "
                        "changed, or one before it was inserted, removed or changed",
                    )
                )
        self._previous = checksum if isinstance(checksum, str) else None
        if (seq == 1) != (kind == "WorkflowStarted"):
            problems.append(
                self._finding(
                    seq,
                    "start",
                    f"the first event is a {kind}, not WorkflowStarted"
                    if seq == 1
                    else "a second WorkflowStarted",
                )
            )
        self._note(seq, kind)
        return (LogEntry(seq, at, event) if event is not None else None), problems

    def _note(self, seq: int, kind: object) -> None:
        if isinstance(kind, str):
            self.last = (seq, kind)
            if kind in TERMINAL_KINDS and self.end is None:
                self.end = (seq, kind)

    def _gap(self, seq: int) -> Finding:
        if seq < self.expected:
            return self._finding(seq, "order", f"seq {seq} comes after seq {self.expected - 1}")
        missing = (
            f"event {self.expected} is missing"
            if seq == self.expected + 1
            else f"events {self.expected} to {seq - 1} are missing"
        )
        return self._finding(self.expected, "gap", missing)

    def _finding(self, seq: int, code: str, problem: str) -> Finding:
        return Finding(self.workflow_id, seq, code, problem)


def _typed(
    kind: object, at: object, body: object, checksum: object
) -> tuple[str, float, str] | str:
    """The row's values with the types an event needs, or what is wrong with them."""
    if not isinstance(kind, str):
        return f"its kind column holds {kind!r}, not an event type name"
    if isinstance(at, bool) or not isinstance(at, int | float):
        return f"its time (at) is {at!r:.60}, not a number"
    if not isinstance(body, str):
        return f"it is {type(body).__name__}, not JSON text"
    if checksum is not None and not isinstance(checksum, str):
        return f"its checksum is {checksum!r:.60}, not text"
    return kind, float(at), body


def entries(
    workflow_id: str, rows: Iterable[Sequence[object]], after_seq: int = 0, verify: bool = True
) -> list[LogEntry]:
    """The log entries of ``rows`` (see ``EventCheck``), from ``after_seq + 1`` on.

    Raises ``LogDamaged`` for the first problem (with ``verify``), or only for a row
    that cannot be read as an event at all (``CorruptEventError`` for a body that
    does not decode)."""
    rows = list(rows)
    if verify:
        intact = _intact(rows, after_seq)
        if intact is not None:
            return intact
    check = EventCheck(workflow_id, after_seq)
    found: list[LogEntry] = []
    for row in rows:
        entry, problems = check.take(row)
        if problems and (verify or entry is None):
            raise problems[0].error() from check.decode_error
        if entry is not None:
            found.append(entry)
    return found


def _intact(rows: list[Sequence[object]], after_seq: int) -> list[LogEntry] | None:
    """The entries of ``rows`` if nothing at all is wrong with them, else None (then
    ``EventCheck`` says what is). The same checks, written for speed: a worker runs
    them on every event it rebuilds a workflow from."""
    found: list[LogEntry] = []
    previous: object = GENESIS
    expected, ended, start = 1, False, 0
    if after_seq > 0 and rows:  # the event the read continues from
        seq, kind, _, _, previous = rows[0]
        if seq != after_seq:
            return None
        expected, ended, start = after_seq + 1, kind in TERMINAL_KINDS, 1
    copy, head, decode, append, terminal = (
        _EMPTY.copy,
        _HEAD,
        decode_event,
        found.append,
        TERMINAL_KINDS,
    )
    for seq, kind, at, body, checksum in itertools.islice(rows, start, None):
        if (
            ended
            or seq != expected
            or type(at) is not float
            or type(body) is not str
            or type(previous) is not str
        ):
            return None
        digest = copy()
        digest.update(head(seq, at))
        digest.update(f"{previous}\0{kind}\0{body}".encode())
        if checksum != digest.hexdigest():
            return None
        try:
            event = decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return None
        if type(event).__name__ != kind or (seq == 1) != (kind == "WorkflowStarted"):
            return None
        append(LogEntry(seq, at, event))
        previous, expected, ended = checksum, seq + 1, kind in terminal
    return found


# -- the index against the log -------------------------------------------------

_ENDS_AS: dict[str, WorkflowStatus] = {**STATUS_AFTER, "ContinuedAsNew": WorkflowStatus.COMPLETED}


def index_findings(
    workflow_id: str, record: WorkflowRecord | None, check: EventCheck
) -> list[Finding]:
    """What the index row says that the log contradicts (status, last seq)."""
    if record is None:
        if check.rows:
            return [Finding(workflow_id, 0, "index", "the log has events but no index row")]
        return []
    if check.last is None:
        return [
            Finding(
                workflow_id,
                0,
                "index",
                f"the index has a row (last seq {record.last_seq}) but the log has no events",
            )
        ]
    last_seq, last_kind = check.last
    end_seq, end_kind = check.end or check.last
    problems = []
    if record.last_seq != last_seq:
        problems.append(
            Finding(
                workflow_id,
                min(record.last_seq, last_seq) + 1,
                "index",
                f"the index says the log ends at seq {record.last_seq}, but it ends at "
                f"seq {last_seq}",
            )
        )
    ends_as = _ENDS_AS.get(end_kind)
    if ends_as is not None and record.status is not ends_as:
        problems.append(
            Finding(
                workflow_id,
                end_seq,
                "index",
                f"the log ends with {end_kind} but the index says {record.status.value}",
            )
        )
    elif ends_as is None and record.status.is_terminal:
        problems.append(
            Finding(
                workflow_id,
                last_seq + 1,
                "index",
                f"the index says {record.status.value} but the log has no terminal event "
                f"(it ends with {last_kind} at seq {last_seq})",
            )
        )
    return problems


# -- existing logs -----------------------------------------------------------------


class Backfill:
    """Computes the chain of a log written before checksums existed (a migration):
    fed every event row in (workflow_id, seq) order, in batches of any size."""

    def __init__(self) -> None:
        self._workflow: object = None
        self._previous = GENESIS

    def checksums(self, rows: Iterable[Sequence[object]]) -> list[tuple[str, object, object]]:
        """(checksum, workflow_id, seq) of each (workflow_id, seq, kind, at, body) row;
        a row whose values are not an event's gets none (``verify`` reports it)."""
        found: list[tuple[str, object, object]] = []
        for workflow_id, seq, kind, at, body in rows:
            if workflow_id != self._workflow:
                self._workflow, self._previous = workflow_id, GENESIS
            typed = _typed(kind, at, body, None)
            if isinstance(seq, bool) or not isinstance(seq, int) or isinstance(typed, str):
                continue
            self._previous = link(self._previous, seq, *typed)
            found.append((self._previous, workflow_id, seq))
        return found
