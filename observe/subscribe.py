"""Observable state: committed events pushed to subscribers, and the log followed live.

Two ways to watch workflows move:

- ``engine.subscribe(callback)`` (or ``for event in engine.subscribe(): ...``) hands
  over every event *this engine* commits, as a ``CommittedEvent``, right after its
  commit. The worker only appends to a bounded queue per subscriber; callbacks run
  on the subscriber's own thread, so a slow or failing callback can neither slow
  nor break the worker. A subscriber that lags past its queue loses the newest
  events, counted in ``Subscription.dropped`` and logged as a warning (the log
  itself still has them all).
- ``follow(store)`` (``follow.py``) polls the log from any process (what ``duralog
  tail`` prints): every event appended by any worker on that database, a poll
  interval late.

Both describe an event the same way, with the workflow's name and, for step
events, the step's name. Payloads stay encoded in ``event``; nothing here decodes
or logs them.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from types import TracebackType

import msgspec

from duralog.errors import ConfigurationError, whole_number
from duralog.replay.state import WorkflowState
from duralog.store import events as ev
from duralog.store.events import LogEntry

log = logging.getLogger("duralog.observe")

_subscriber_numbers = itertools.count(1)


class CommittedEvent(msgspec.Struct, frozen=True):
    """One event of the log, as subscribers and ``duralog tail`` see it.

    Attributes:
        workflow_id: the workflow the event belongs to.
        workflow_name: its registered name.
        seq: the event's place in the workflow's log (1, 2, 3...).
        kind: the event type, e.g. ``"StepCompleted"``.
        at: the event's time (the engine's clock, UTC epoch seconds).
        step: the step's name, for step events (``StepScheduled`` ... ``StepFailed``).
        committed_at: when this engine's commit of it returned (wall clock); None
            for events read back from the log by ``follow``.
        event: the event itself; payloads in it stay encoded (``msgspec.Raw``).
    """

    workflow_id: str
    workflow_name: str
    seq: int
    kind: str
    at: float
    step: str | None
    committed_at: float | None
    event: ev.Event


def step_seq_of(event: ev.Event) -> int | None:
    """The seq of the step a step event is about (None for other events)."""
    return getattr(event, "step_seq", None)


class Subscription:
    """Events committed by one engine, for one subscriber (``engine.subscribe``).

    With a callback, a thread of its own calls it once per event, in commit order.
    Without one, iterate: ``for event in subscription`` blocks for the next event
    and ends once the subscription (or its engine) is closed and drained.

    Attributes:
        dropped: events this subscriber lost because its queue was full.
        errors: exceptions its callback raised (each logged, none propagated).
    """

    def __init__(
        self,
        hub: Observers,
        callback: Callable[[CommittedEvent], object] | None,
        *,
        kinds: Collection[str] | None,
        workflow_id: str | None,
        max_pending: int,
        name: str | None,
    ) -> None:
        if callback is not None and not callable(callback):
            raise ConfigurationError(f"subscribe() takes a callable, not {callback!r}")
        whole_number(max_pending, "max_pending", minimum=1)
        check_kinds(kinds)
        self._hub = hub
        self.callback = callback
        self.kinds = frozenset(kinds) if kinds is not None else None
        self.workflow_id = workflow_id
        self.max_pending = max_pending
        self.name = name or (
            getattr(callback, "__qualname__", None) or f"subscriber-{next(_subscriber_numbers)}"
        )
        self.dropped = 0
        self.errors = 0
        self._reported = 0  # drops already warned about
        self._lagging = False
        self._queue: collections.deque[CommittedEvent] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        if callback is not None:
            self._thread = threading.Thread(
                target=self._serve, name=f"duralog-subscriber {self.name}", daemon=True
            )
            self._thread.start()

    def __repr__(self) -> str:
        return f"<Subscription {self.name!r} dropped={self.dropped}>"

    # -- the worker's side (never blocks for long, never raises) ------------

    def _offer(self, events: Sequence[CommittedEvent]) -> None:
        kinds, only = self.kinds, self.workflow_id
        if kinds is not None or only is not None:
            events = [
                e
                for e in events
                if (kinds is None or e.kind in kinds) and (only is None or e.workflow_id == only)
            ]
            if not events:
                return
        with self._cond:
            if self._closed:
                return
            room = self.max_pending - len(self._queue)
            if room >= len(events):
                self._queue.extend(events)
            else:
                self._queue.extend(events[: max(room, 0)])
                self.dropped += len(events) - max(room, 0)
                self._lagging = True
            self._cond.notify()

    # -- the subscriber's side ------------------------------------------------

    def get(self, timeout: float | None = None) -> CommittedEvent | None:
        """The next event, waiting up to ``timeout`` seconds; None if none came (or
        the subscription is closed and drained)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            event = self._queue.popleft()
            report = self._lagging and len(self._queue) <= self.max_pending // 2
            if report:
                self._lagging = False
                lost, self._reported = self.dropped - self._reported, self.dropped
        if report:
            log.warning(
                "subscriber %s lagged behind the engine and lost %d events (%d in all; "
                "queue of %d). The log has every event: read it back with "
                "handle.history() or `duralog tail --since`",
                self.name,
                lost,
                self.dropped,
                self.max_pending,
            )
        return event

    def __iter__(self) -> Iterator[CommittedEvent]:
        if self.callback is not None:
            raise ConfigurationError(
                "this subscription delivers to its callback; subscribe without one to iterate"
            )
        return self._events()

    def _events(self) -> Iterator[CommittedEvent]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def _serve(self) -> None:
        callback = self.callback
        assert callback is not None
        while True:
            event = self.get()
            if event is None:
                return
            try:
                callback(event)
            except Exception:
                self.errors += 1
                if self.errors == 1 or self.errors % 1000 == 0:
                    log.exception(
                        "subscriber %s raised on %s #%d of %s (%d errors so far); "
                        "the engine goes on",
                        self.name,
                        event.kind,
                        event.seq,
                        event.workflow_id,
                        self.errors,
                    )

    def close(self, timeout: float = 5.0) -> None:
        """Stop receiving; a callback gets the events already queued first (up to
        ``timeout`` seconds), an iterator ends after them."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._hub._remove(self)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self.dropped > self._reported:
            log.warning(
                "subscriber %s lost %d events in all (queue of %d)",
                self.name,
                self.dropped,
                self.max_pending,
            )

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Observers:
    """An engine's subscribers; the worker calls in after each commit.

    ``active`` is read on every commit: with no subscriber it is the only cost.
    """

    def __init__(self) -> None:
        self.active = False
        self._subscriptions: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()

    def subscribe(
        self,
        callback: Callable[[CommittedEvent], object] | None = None,
        *,
        kinds: Collection[str] | None = None,
        workflow_id: str | None = None,
        max_pending: int = 10_000,
        name: str | None = None,
    ) -> Subscription:
        """Add a subscriber (see ``Engine.subscribe``)."""
        subscription = Subscription(
            self,
            callback,
            kinds=kinds,
            workflow_id=workflow_id,
            max_pending=max_pending,
            name=name,
        )
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)
            self.active = True
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)
            self.active = bool(self._subscriptions)

    def close(self) -> None:
        """Close every subscription (each drains what it has first)."""
        for subscription in self._subscriptions:
            subscription.close()

    # -- what the engine calls ---------------------------------------------

    def committed(
        self, state: WorkflowState, entries: Sequence[LogEntry], workflow_id: str | None = None
    ) -> None:
        """``entries`` of ``state``'s workflow were committed (``state`` names the steps);
        ``workflow_id``: where they went, if not under the workflow's id (an archived run)."""
        steps = state.steps
        name, now = state.name, time.time()
        workflow_id = workflow_id or state.workflow_id
        batch = []
        scheduled: dict[int, str] = {}  # steps called in this very batch
        for entry in entries:
            event = entry.event
            step = None
            if isinstance(event, ev.StepScheduled):
                step = scheduled[entry.seq] = event.name
            else:
                step_seq = step_seq_of(event)
                if step_seq is not None:
                    view = steps.get(step_seq)
                    step = view.name if view is not None else scheduled.get(step_seq)
            batch.append(
                CommittedEvent(
                    workflow_id, name, entry.seq, type(event).__name__, entry.at, step, now, event
                )
            )
        self._offer(batch)

    def created(self, workflow_id: str, name: str, started: LogEntry) -> None:
        """A workflow was created with its first event."""
        self.appended(workflow_id, name, started)

    def appended(self, workflow_id: str, name: str, entry: LogEntry) -> None:
        """One event outside any step was committed (a start, a cancel while queued)."""
        event = entry.event
        self._offer(
            [
                CommittedEvent(
                    workflow_id,
                    name,
                    entry.seq,
                    type(event).__name__,
                    entry.at,
                    None,
                    time.time(),
                    event,
                )
            ]
        )

    def _offer(self, batch: Sequence[CommittedEvent]) -> None:
        for subscription in self._subscriptions:
            subscription._offer(batch)


# -- following the log from any process ------------------------------------------


def check_kinds(kinds: Collection[str] | None) -> None:
    """Refuse event kinds the log does not have (a typo would silently match nothing)."""
    unknown = sorted(set(kinds or ()) - ev.EVENT_KINDS)
    if unknown:
        raise ConfigurationError(
            f"unknown event kinds {unknown}; known: {', '.join(sorted(ev.EVENT_KINDS))}"
        )
