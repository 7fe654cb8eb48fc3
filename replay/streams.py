"""Streams: values a workflow (or its steps) appends under a key, for readers outside.

A stream is a part of the log. Workflow code writes it with decisions
(``StreamWritten``, ``StreamClosed``), which replay matches like any other, so a
value the code wrote is in the log exactly once however often the run is replayed.
A step writes it with ``StepStreamed`` events, bookkeeping of the attempt that wrote
them, never made again by replay. A reader reads the run's log in seq order and
keeps the events of its key (``entries_of``): that order is the stream's order.

The key rules (``check_key``) are the same for writers and readers.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

import msgspec

from duralog.errors import ConfigurationError
from duralog.store import events as ev
from duralog.store.events import LogEntry

#: The longest stream key, in characters.
MAX_KEY_LENGTH = 256


def check_key(key: object, where: str) -> str:
    """``key`` if it can name a stream: a non-empty text of at most ``MAX_KEY_LENGTH``
    characters, without control characters; ``ConfigurationError`` naming ``where``
    (e.g. ``"workflow 'w-1'"``) otherwise."""
    if not isinstance(key, str) or not key:
        raise ConfigurationError(
            f"a stream key must be a non-empty string, got {key!r:.80} ({where})"
        )
    if len(key) > MAX_KEY_LENGTH:
        raise ConfigurationError(
            f"stream key {key[:40]!r}... is {len(key):,} characters long, over the limit of "
            f"{MAX_KEY_LENGTH} ({where}); use a short name"
        )
    for at, char in enumerate(key):
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ConfigurationError(
                f"stream key {key[:80]!r} holds a control character or a lone surrogate at "
                f"character {at + 1} ({where}); use printable text"
            )
    return key


class StreamItem(msgspec.Struct, frozen=True):
    """One event of a stream as a reader sees it: a value (``raw``, still encoded), or
    its end (``ended``: the stream was closed, or the run ended)."""

    seq: int
    raw: msgspec.Raw | None = None
    ended: bool = False
    #: The step that wrote the value (its seq and attempt); 0 for the workflow code.
    step_seq: int = 0
    attempt: int = 0


def entries_of(key: str, entries: Iterable[LogEntry]) -> list[StreamItem]:
    """The items of stream ``key`` among ``entries`` (in seq order), up to and including
    its end: the first close of the key, or the run's terminal event."""
    items: list[StreamItem] = []
    for entry in entries:
        event = entry.event
        if isinstance(event, ev.StreamWritten):
            if event.key == key:
                items.append(StreamItem(entry.seq, event.value))
        elif isinstance(event, ev.StepStreamed):
            if event.key == key:
                raw = None if event.closed else event.value
                items.append(
                    StreamItem(entry.seq, raw, event.closed, event.step_seq, event.attempt)
                )
                if event.closed:
                    break
        elif isinstance(event, ev.StreamClosed):
            if event.key == key:
                items.append(StreamItem(entry.seq, ended=True))
                break
        elif isinstance(event, ev.TERMINAL):
            items.append(StreamItem(entry.seq, ended=True))
            break
    return items


class RunStreams:
    """The streams the code of one run has closed (to refuse writing to them again).

    Only what the code itself did counts, so the answer is the same in a live run and
    in its replay; a stream closed by a step is not known here."""

    def __init__(self, workflow_id: str) -> None:
        self._workflow_id = workflow_id
        self._closed: set[str] = set()

    def check_write(self, key: object) -> str:
        """``key``, checked, if the code may write to it."""
        where = f"workflow {self._workflow_id!r}"
        checked = check_key(key, where)
        if checked in self._closed:
            raise ConfigurationError(
                f"stream {checked!r} of {where} is closed; a closed stream takes no more "
                "values (write to another key)"
            )
        return checked

    def close(self, key: object) -> str | None:
        """``key``, checked, if it was open (it is closed now); None if already closed."""
        checked = check_key(key, f"workflow {self._workflow_id!r}")
        if checked in self._closed:
            return None
        self._closed.add(checked)
        return checked
