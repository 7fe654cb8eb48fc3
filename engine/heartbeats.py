"""Heartbeats of running steps: what one attempt and its worker share.

A step calls ``duralog.heartbeat(details)`` from its thread (or, async, from the
worker's loop). That only notes the moment and the details in the attempt's
``AttemptControl``: no I/O happens in the step's path. The worker does the rest:

- it watches the moment: an attempt of a step with ``heartbeat_timeout`` that has
  not beaten for that long is given up as hung (``attempts.py``);
- it stores the details, at most every ``heartbeat_interval``, fenced like an
  append (``steps.py``), so that the step's next attempt starts from them even on
  another worker after a crash; a crash loses only what changed since the last write,
  and a worker that stops gracefully stores the newest details first (``keep_heartbeats``);
- it tells the attempt to stop (``stop``): its workflow was cancelled or no longer
  runs here, the attempt was given up, or the store refused a write (the lease is
  gone). From then on ``heartbeat()`` raises ``StepCancelled`` in the step.

Heartbeats are not events: a step beating every second would drown its history.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from duralog.errors import DuralogError, PayloadError, StepCancelled
from duralog.store import codec
from duralog.store.envelope import PayloadCodec

from .lease import Lease

if TYPE_CHECKING:
    from .streams import AttemptStream


class StreamMaker(Protocol):
    """Who makes an attempt's stream when it first writes (the workflow's execution)."""

    def attempt_stream(self, step: str, seq: int, attempt: int) -> AttemptStream:
        """Where attempt ``attempt`` of step ``seq`` writes to its workflow's streams."""
        ...


class AttemptControl:
    """One running attempt as its step and its worker both see it: the latest heartbeat
    (moment and details) and whether the attempt should stop. Safe from any thread."""

    __slots__ = (
        "__weakref__",
        "_codec",
        "_details",
        "_ended",
        "_lease",
        "_lock",
        "_max_bytes",
        "_stop",
        "_stream",
        "_streams_over",
        "_told",
        "_unstored",
        "attempt",
        "beats",
        "last_beat",
        "on_change",
        "over",
        "previous",
        "seq",
        "step",
        "stored",
        "streams",
        "workflow_id",
        "writer",
    )

    def __init__(
        self,
        workflow_id: str,
        step: str,
        seq: int,
        attempt: int,
        *,
        previous: bytes | None = None,
        lease: Lease | None = None,
        payload_codec: PayloadCodec | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.workflow_id = workflow_id
        self.step = step
        self.seq = seq
        self.attempt = attempt
        #: The details the attempt starts from (encoded): the last an earlier attempt gave.
        self.previous = previous
        self._lease = lease
        self._codec = payload_codec
        self._max_bytes = max_bytes
        #: Called (from any thread) when the details change while the worker has not
        #: been told of an earlier change yet: the worker then stores them.
        self.on_change: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._details = previous  # the newest details (encoded)
        self._unstored = False  # they changed since the worker last took them
        self._told = False  # on_change was called and the worker has not taken them yet
        #: ``time.monotonic()`` of the last heartbeat (or of the attempt's start).
        self.last_beat = time.monotonic()
        self.beats = 0
        self._stop: StepCancelled | None = None
        # The worker's bookkeeping (on its loop): the task storing the details, whether
        # the attempt is over (store what is left at once), whether a row was written.
        self.writer: asyncio.Task[None] | None = None
        self.over: asyncio.Future[None] | None = None  # the writer's: done at ``end``
        self.stored = False
        self._ended = False
        #: Makes the attempt's stream (``stream``); most attempts never write to one.
        self.streams: StreamMaker | None = None
        self._stream: AttemptStream | None = None
        self._streams_over = False

    def __repr__(self) -> str:
        return f"<AttemptControl {self.workflow_id}:{self.seq} attempt {self.attempt}>"

    # -- the step's side ---------------------------------------------------

    def beat(self, details: Any = None) -> None:
        """A heartbeat: note the moment and (unless None) the new details; raise
        ``StepCancelled`` if the attempt should stop."""
        self.check()
        encoded = None if details is None else self._encode(details)
        tell = False
        with self._lock:
            self.last_beat = time.monotonic()
            self.beats += 1
            if encoded is not None and encoded != self._details:
                self._details = encoded
                self._unstored = True
                tell = not self._told
                self._told = True
        on_change = self.on_change  # read once: the attempt's end may clear it meanwhile
        if tell and on_change is not None:
            on_change()

    def check(self) -> None:
        """Raise ``StepCancelled`` if the attempt was told to stop or lost its lease."""
        stop = self._stop
        if stop is not None:
            raise StepCancelled(
                stop.workflow_id, stop.seq, stop.attempt, stop.reason, lease_lost=stop.lease_lost
            )
        if self._lease is not None and not self._lease.holds():
            raise StepCancelled(
                self.workflow_id,
                self.seq,
                self.attempt,
                "this worker no longer holds the workflow's lease (it may run on another "
                "worker now): whatever this attempt does will not be recorded",
                lease_lost=True,
            )

    def _encode(self, details: Any) -> bytes:
        where = (
            f"the heartbeat details of step {self.step!r} (seq {self.seq}) of workflow "
            f"{self.workflow_id!r}"
        )
        try:
            encoded = codec.encode(details, self._codec)
        except PayloadError as exc:
            raise PayloadError(f"{where} cannot be stored: {exc}") from None
        codec.check_size(encoded, self._max_bytes, where)
        return bytes(encoded)

    def stream(self) -> AttemptStream:
        """Where the attempt writes to its workflow's streams, made on first use."""
        with self._lock:
            stream = self._stream
            if stream is None:
                if self.streams is None:
                    raise DuralogError(
                        f"step {self.step!r} (seq {self.seq}) of workflow {self.workflow_id!r} "
                        "runs without an engine's worker, so it has no streams to write to"
                    )
                stream = self._stream = self.streams.attempt_stream(
                    self.step, self.seq, self.attempt
                )
                if self._streams_over:
                    stream.end()  # asked for after the attempt ended: it refuses the write
            return stream

    def end_streams(self) -> AttemptStream | None:
        """The attempt is over (on the worker's loop): its stream, if it wrote to one,
        refuses what it writes from now on. Returns that stream."""
        with self._lock:
            self._streams_over = True
            stream = self._stream
        if stream is not None:
            stream.end()
        return stream

    @property
    def stopped(self) -> StepCancelled | None:
        """Why the attempt was told to stop (None: it was not)."""
        return self._stop

    # -- the worker's side -------------------------------------------------

    def started(self) -> None:
        """The step's code starts now (a sync step may have waited for a free thread):
        its heartbeat timeout counts from here."""
        self.last_beat = time.monotonic()

    def stop(self, reason: str, *, lease_lost: bool = False) -> None:
        """Tell the attempt to stop: ``heartbeat()`` raises ``StepCancelled`` from now on
        (the first reason given stays)."""
        if self._stop is None:
            self._stop = StepCancelled(
                self.workflow_id, self.seq, self.attempt, reason, lease_lost=lease_lost
            )

    def end(self) -> None:
        """The attempt ended (on the worker's loop): its writer stores what is left."""
        self._ended = True
        if self.over is not None and not self.over.done():
            self.over.set_result(None)

    @property
    def ended(self) -> bool:
        """Whether ``end`` was called."""
        return self._ended

    def take(self) -> bytes | None:
        """The details to store, if they changed since the last ``take`` (None: they did
        not, and the next change calls ``on_change`` again)."""
        with self._lock:
            if not self._unstored:
                self._told = False
                return None
            self._unstored = False
            return self._details

    @property
    def latest(self) -> bytes | None:
        """The newest details (encoded): what the next attempt starts from."""
        return self._details

    def decoded_previous(self) -> Any:
        """``previous``, decoded as plain JSON (None when there is none)."""
        if self.previous is None:
            return None
        return codec.decode(msgspec.Raw(self.previous), Any, payload_codec=self._codec)
