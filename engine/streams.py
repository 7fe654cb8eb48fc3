"""Streams from the engine's side: what a running step writes, and how a reader follows.

A step writes through the ``AttemptStream`` of its attempt (``duralog.write_stream``
in a step finds it in its context). Each value becomes a ``StepStreamed`` event
queued in its workflow's log tail on the worker's loop (at once on the loop; from a
step thread, in the order the thread wrote), and committed in the next group-commit
round; the step does not wait for it. Since the step's own outcome is queued after
them, a step whose completion is in the log has every value it wrote in the log
before it.

A reader (``read``) follows the run's log from any process: it reads the events
after the last one it saw, keeps those of its key (``replay/streams.py``) and
stops at the stream's end. When ``continue_as_new`` moves the run's log to its
archive (``<id>~run<N>``) while a reader follows it, the reader finishes from the
archive: a stream belongs to one run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from duralog.errors import (
    ConfigurationError,
    DuralogError,
    PayloadError,
    StreamTimeout,
    WorkflowNotFound,
)
from duralog.replay.streams import StreamItem, check_key, entries_of
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import EventStore
from duralog.store.envelope import PayloadCodec
from duralog.store.events import LogEntry

#: How long a reader waits between two reads of the log at most (it starts lower).
MAX_PAUSE = 0.1
_FIRST_PAUSE = 0.005


class StreamOwner(Protocol):
    """What a step's stream needs of its workflow's execution (in ``steps.py``)."""

    def step_streamed(self, event: ev.StepStreamed) -> None:
        """Queue ``event`` for the next commit (on the worker's loop)."""


#: Orders the writes of every attempt and their ends (writes are rare and short: one
#: lock for all of them costs an attempt that never writes nothing).
_LOCK = threading.Lock()


class AttemptStream:
    """The streams of one step attempt: where ``duralog.write_stream`` in it writes.

    Args:
        owner: the execution of the step's workflow.
        loop: the worker's loop, where the events are queued.
        workflow_id: the step's workflow, step name, seq and attempt (for events and errors).
        payload_codec: the engine's payload codec (values are sealed with it).
        max_bytes: the engine's ``max_payload_bytes`` (None: no limit).
    """

    def __init__(
        self,
        owner: StreamOwner,
        loop: asyncio.AbstractEventLoop,
        workflow_id: str,
        step: str,
        seq: int,
        attempt: int,
        payload_codec: PayloadCodec | None,
        max_bytes: int | None,
    ) -> None:
        # Every step attempt gets one, and most never write: nothing here is made
        # before a write needs it.
        self._owner = owner
        self._loop = loop
        self._workflow_id = workflow_id
        self._step = step
        self._seq = seq
        self._attempt = attempt
        self._codec = payload_codec
        self._max_bytes = max_bytes
        self._closed: set[str] | None = None
        #: Set once the attempt is over: what it writes later is refused.
        self.ended = False

    @property
    def _where(self) -> str:
        return f"step {self._step!r} (seq {self._seq}) of workflow {self._workflow_id!r}"

    def succeeded(self) -> None:
        """The attempt returned (on the worker's loop, before its outcome is recorded):
        the streams it closed are closed now, after everything it wrote."""
        with _LOCK:
            closed = sorted(self._closed or ())
        for key in closed:
            self._owner.step_streamed(
                ev.StepStreamed(step_seq=self._seq, attempt=self._attempt, key=key, closed=True)
            )

    def end(self) -> None:
        """The attempt is over: refuse what it writes from now on."""
        with _LOCK:
            self.ended = True

    def write(self, key: str, value: Any) -> None:
        """Append ``value`` to stream ``key`` of the step's workflow."""
        key = check_key(key, self._where)
        try:
            raw = codec.encode(value, self._codec)
            codec.check_size(raw, self._max_bytes, f"a value of stream {key!r}")
        except PayloadError as exc:
            raise PayloadError(
                f"cannot write to stream {key!r} from {self._where}: {exc}"
            ) from None
        self._queue(
            key, ev.StepStreamed(step_seq=self._seq, attempt=self._attempt, key=key, value=raw)
        )

    def close(self, key: str) -> None:
        """Close stream ``key`` of the step's workflow (again: nothing)."""
        key = check_key(key, self._where)
        event = ev.StepStreamed(step_seq=self._seq, attempt=self._attempt, key=key, closed=True)
        self._queue(key, event)

    def _queue(self, key: str, event: ev.StepStreamed) -> None:
        with _LOCK:  # one order per attempt, whichever of its threads writes
            if self.ended:
                raise DuralogError(
                    f"{self._where}: attempt {self._attempt} is over (it returned, failed, or was "
                    f"given up), so it can no longer write to stream {key!r}"
                )
            if self._closed is not None and key in self._closed:
                if event.closed:
                    return
                raise ConfigurationError(
                    f"stream {key!r} was closed by {self._where}; a closed stream takes no "
                    "more values (write to another key)"
                )
            if event.closed:
                # Written only once the attempt succeeds (``succeeded``): a close by an
                # attempt that then fails would end the stream before the values of the
                # retry that does complete.
                self._closed = {*(self._closed or ()), key}
                return
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:  # an async or inline step: queued before it returns
                self._owner.step_streamed(event)
            else:  # a step thread: queued before its outcome, which follows the same way
                try:
                    self._loop.call_soon_threadsafe(self._owner.step_streamed, event)
                except RuntimeError:  # the worker's loop is closed: nor is the outcome kept
                    self.ended = True


def read(
    store: EventStore,
    payload_codec: PayloadCodec | None,
    workflow_id: str,
    key: str,
    timeout: float | None,
    result_type: Any,
    start: int = 0,
    wait: bool = True,
) -> Iterator[Any]:
    """The values of stream ``key`` of the run of workflow ``workflow_id`` that is
    current now, from offset ``start``, decoded as ``result_type``, live (see
    ``WorkflowHandle.read_stream``); with ``wait=False``, only those written so far.
    Raises ``WorkflowNotFound`` at once for an unknown workflow."""
    check_key(key, f"reading workflow {workflow_id!r}")
    follower = Follower(store, workflow_id, key, run_start(store, workflow_id))

    def values() -> Iterator[Any]:
        patience = Patience(workflow_id, key, timeout, start)
        while True:
            yield from patience.take(follower.poll(), result_type, payload_codec)
            if patience.ended or not wait:
                return
            time.sleep(patience.pause())

    return values()


def read_async(
    store: EventStore,
    payload_codec: PayloadCodec | None,
    workflow_id: str,
    key: str,
    timeout: float | None,
    result_type: Any,
    start: int = 0,
) -> AsyncIterator[Any]:
    """``read`` for an event loop: the log is read on a thread, the waits are awaited."""
    check_key(key, f"reading workflow {workflow_id!r}")
    follower = Follower(store, workflow_id, key, run_start(store, workflow_id))

    async def values() -> AsyncIterator[Any]:
        patience = Patience(workflow_id, key, timeout, start)
        while True:
            items = await asyncio.to_thread(follower.poll)
            for value in patience.take(items, result_type, payload_codec):
                yield value
            if patience.ended:
                return
            await asyncio.sleep(patience.pause())

    return values()


def run_start(store: EventStore, workflow_id: str) -> LogEntry:
    """The first event of the workflow's current run (which pins the run a reader reads)."""
    found = store.read_events(workflow_id, until_seq=1)
    if not found:
        raise WorkflowNotFound(workflow_id)
    return found[0]


class Follower:
    """Reads one stream of one run, a batch of new items at a time (``poll``).

    Args:
        store: the log.
        workflow_id: the workflow; key: the stream's key.
        first: the ``WorkflowStarted`` of the run to read (``run_start``).
    """

    def __init__(self, store: EventStore, workflow_id: str, key: str, first: LogEntry) -> None:
        self._store = store
        self._workflow_id = workflow_id
        self._key = key
        self._source = workflow_id
        self._last = first
        run = first.event.run if isinstance(first.event, ev.WorkflowStarted) else 1
        self._archive = f"{workflow_id}~run{run}"

    def poll(self) -> list[StreamItem]:
        """The stream's items appended since the last poll (ending with its end, once
        that is reached)."""
        # Read from the last event seen: if it is not there any more, the run's log was
        # moved to its archive (continue-as-new) and the rest of it is there.
        last = self._last
        entries = self._store.read_events(self._source, after_seq=last.seq - 1)
        if not entries or entries[0] != last:
            self._source = self._archive
            entries = self._store.read_events(self._source, after_seq=last.seq - 1)
            if not entries or entries[0] != last:
                raise DuralogError(
                    f"the log of workflow {self._workflow_id!r} changed while its stream "
                    f"{self._key!r} was read (the workflow was deleted, or its log "
                    "replaced); read the stream again"
                )
        self._last = entries[-1]
        return entries_of(self._key, entries[1:])


class Patience:
    """How long a reader waits: ``StreamTimeout`` once no value came for ``timeout``
    seconds (the values before offset ``start`` do not count), and the pause before the
    next read of the log (short after a value, growing to ``MAX_PAUSE``)."""

    def __init__(self, workflow_id: str, key: str, timeout: float | None, start: int = 0) -> None:
        self._workflow_id = workflow_id
        self._key = key
        self._timeout = timeout
        self._start = start
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._pause = _FIRST_PAUSE
        #: How many values of the stream were seen (from its first).
        self.received = 0
        #: Whether the stream's end was seen.
        self.ended = False

    def items(self, items: list[StreamItem]) -> Iterator[StreamItem]:
        """``items`` up to the stream's end, counted; the clock restarts after a value."""
        before = self.received
        for item in items:
            if item.ended:
                self.ended = True
                yield item
                return
            self.received += 1
            yield item
        if self.received > max(before, self._start):
            self._pause = _FIRST_PAUSE
            self._deadline = None if self._timeout is None else time.monotonic() + self._timeout

    def take(
        self, items: list[StreamItem], result_type: Any, payload_codec: PayloadCodec | None
    ) -> Iterator[Any]:
        """The values among ``items`` from offset ``start``, decoded."""
        for item in self.items(items):
            if item.raw is not None and self.received > self._start:
                yield codec.decode(item.raw, result_type, payload_codec=payload_codec)

    def pause(self) -> float:
        """Seconds to wait before the next read; ``StreamTimeout`` when time is up."""
        remaining = None if self._deadline is None else self._deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise StreamTimeout(self._workflow_id, self._key, self._timeout or 0.0, self.received)
        pause = self._pause if remaining is None else min(self._pause, remaining)
        self._pause = min(self._pause * 2, MAX_PAUSE)
        return pause


def follow(
    store: EventStore,
    workflow_id: str,
    key: str,
    timeout: float | None,
    first: LogEntry,
    start: int = 0,
    wait: bool = True,
) -> Iterator[StreamItem]:
    """The items of stream ``key`` (values still encoded) of the run that ``first``
    (its ``WorkflowStarted``) began, ending with its end; ``StreamTimeout`` when none
    comes within ``timeout`` seconds of the last (the values before offset ``start``
    do not count as coming). With ``wait=False`` it returns at the end of what the log
    holds now."""
    follower = Follower(store, workflow_id, key, first)
    patience = Patience(workflow_id, key, timeout, start)
    while True:
        yield from patience.items(follower.poll())
        if patience.ended or not wait:
            return
        time.sleep(patience.pause())
