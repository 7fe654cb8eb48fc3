"""History files: a workflow's log as a self-describing, versioned JSON document.

    {
      "format": "duralog-history",
      "version": 1,
      "event_format": 1,
      "workflow_id": "order-1001",
      "workflow_name": "checkout",
      "events": [{"seq": 1, "at": 1795640244.16, "kind": "WorkflowStarted", ...}, ...]
    }

Each event is its log body (``kind`` and its fields) with ``seq`` and ``at``
added, the same objects ``duralog history --json`` prints. A file is a copy of
the log: what the log holds encrypted (``Engine(payload_codec=...)``) stays
encrypted in it, and replaying it needs the same keys. Reading is strict: a
file that is not such a document, or whose events are not a gapless, foldable
history, is rejected whole with the reason; it is never half-replayed.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from duralog.errors import HistoryFileError
from duralog.store.envelope import is_sealed_payload
from duralog.store.events import FORMAT_VERSION, LogEntry, decode_event, encode_event

from .state import fold_all

FORMAT = "duralog-history"
VERSION = 1


class History(msgspec.Struct, frozen=True):
    """A workflow's history, as exported."""

    workflow_id: str
    workflow_name: str
    events: list[LogEntry]


class _Document(msgspec.Struct, forbid_unknown_fields=False):
    format: str
    version: int
    workflow_id: str
    workflow_name: str
    events: list[msgspec.Raw]
    event_format: int = 1


class _Position(msgspec.Struct):
    seq: int
    at: float


def entry_json(entry: LogEntry) -> bytes:
    """One event as a JSON object: ``seq``, ``at``, ``kind`` and the event's fields,
    exactly as they are in ``entry`` (nothing is encrypted or decrypted here)."""
    body = encode_event(entry.event, payload_codec=None)
    head = msgspec.json.encode({"seq": entry.seq, "at": entry.at})
    return head[:-1] + b"," + body[1:]


def entries_json(entries: Sequence[LogEntry]) -> bytes:
    """A JSON array of events (what ``duralog history --json`` prints)."""
    return b"[" + b",".join(entry_json(e) for e in entries) + b"]"


def dump_history(history: History) -> bytes:
    """Encode a history file."""
    head = msgspec.json.encode(
        {
            "format": FORMAT,
            "version": VERSION,
            "event_format": FORMAT_VERSION,
            "workflow_id": history.workflow_id,
            "workflow_name": history.workflow_name,
        }
    )
    return head[:-1] + b',"events":' + entries_json(history.events) + b"}\n"


def _call_shaped(event: object) -> bool:
    """Whether recorded call arguments are an array (or null) and an object (or null),
    or encrypted (their shape is checked when they are decrypted)."""
    args = bytes(getattr(event, "args", b"null")).lstrip()
    kwargs = bytes(getattr(event, "kwargs", b"null")).lstrip()
    return (args[:1] in (b"[", b"n") or is_sealed_payload(args)) and (
        kwargs[:1] in (b"{", b"n") or is_sealed_payload(kwargs)
    )


def load_history(data: bytes | str) -> History:
    """Decode and validate a history file; ``HistoryFileError`` says what is wrong."""
    try:
        doc = msgspec.json.decode(data, type=_Document)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise HistoryFileError(f"not a duralog history file: {exc}") from None
    except RecursionError:
        raise HistoryFileError("not a duralog history file: JSON nested too deeply") from None
    if doc.format != FORMAT:
        raise HistoryFileError(f"not a duralog history file: format is {doc.format!r}")
    if doc.version > VERSION or doc.event_format > FORMAT_VERSION:
        raise HistoryFileError(
            f"history file version {doc.version} (events {doc.event_format}) is newer than "
            f"this duralog reads ({VERSION}, events {FORMAT_VERSION}); upgrade duralog"
        )
    if not doc.events:
        raise HistoryFileError("the history file holds no events")
    entries = []
    for index, raw in enumerate(doc.events):
        try:
            position = msgspec.json.decode(raw, type=_Position)
            event = decode_event(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise HistoryFileError(f"event #{index + 1} is malformed: {exc}") from None
        except RecursionError:
            raise HistoryFileError(f"event #{index + 1} is nested too deeply") from None
        entries.append(LogEntry(position.seq, position.at, event))
    first = entries[0].event
    if type(first).__name__ != "WorkflowStarted":
        raise HistoryFileError("the first event must be WorkflowStarted")
    if not _call_shaped(first):
        raise HistoryFileError(
            "WorkflowStarted must carry args as a JSON array and kwargs as an object"
        )
    if getattr(first, "name", None) != doc.workflow_name:
        raise HistoryFileError(
            f"workflow_name {doc.workflow_name!r} does not match the WorkflowStarted event"
        )
    try:
        fold_all(doc.workflow_id, entries)
    except ValueError as exc:
        raise HistoryFileError(f"the events do not form a valid history: {exc}") from None
    return History(doc.workflow_id, doc.workflow_name, entries)
