"""Observable state: committed events pushed to subscribers, and the log followed live.

Two ways to watch workflows move:

- ``engine.subscribe(callback)`` (or ``for event in engine.subscribe(): ...``) hands
  over every event *this engine* commits, as a ``CommittedEvent``, right after its
  commit. The worker only appends to a bounded queue per subscriber; callbacks run
  on the subscriber's own thread, so a slow or failing callback can neither slow
  nor break the worker. A subscriber that lags past its queue loses the newest
  events, counted in ``Subscription.dropped`` and logged as a warning (the log
  itself still has them all).
- ``follow(store)`` polls the log from any process (what ``duralog tail`` prints):
  every event appended by any worker on that database, a poll interval late.

Both describe an event the same way, with the workflow's name and, for step
events, the step's name. Payloads stay encoded in ``event``; nothing here decodes
or logs them.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from types import TracebackType
from typing import NamedTuple

import msgspec

from duralog.errors import ConfigurationError
from duralog.replay.state import WorkflowState
from duralog.store import events as ev
from duralog.store.base import EventStore, WorkflowRecord
from duralog.store.events import LogEntry

log = logging.getLogger("duralog.observe")

#: Events a commit may carry whose ``at`` lies this far before the commit: a poll
#: looks this far back so that no event is missed (a locked database, a slow disk).
COMMIT_LAG = 30.0

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


def _step_seq(event: ev.Event) -> int | None:
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
        if max_pending < 1:
            raise ConfigurationError(f"max_pending must be at least 1, got {max_pending!r}")
        _check_kinds(kinds)
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
                step_seq = _step_seq(event)
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


def follow(
    store: EventStore,
    *,
    since: float | None = None,
    workflow_id: str | None = None,
    kinds: Collection[str] | None = None,
    poll_interval: float = 0.5,
    stop: threading.Event | None = None,
    lag: float = COMMIT_LAG,
) -> Iterator[CommittedEvent]:
    """Yield events as any process appends them to ``store``'s log (what ``duralog
    tail`` prints), polling every ``poll_interval`` seconds until ``stop`` is set.

    Args:
        since: also yield the events already in the log from this time on (epoch
            seconds); None: only what is appended after this call.
        workflow_id: only this workflow's events (its earlier runs' included, when
            it continues as new).
        kinds: only events of these kinds (``"StepFailed"``...).
        lag: how far back each poll looks for late commits (an event's time is set
            before its commit; a commit held up longer than this may be missed).

    Within one workflow events come in seq order; across workflows, by time within
    each poll. When a workflow continues as new, the end of the finished run is
    yielded under the id it is archived as (``<id>~run<N>``), then the new run
    under the workflow's id, from seq 1.
    """
    _check_kinds(kinds)
    # The starting point is taken now, not at the first ``next()``.
    tail = _Tail(store, since=since, lag=lag, workflow_id=workflow_id)
    wanted = frozenset(kinds) if kinds is not None else None
    return _follow(tail, wanted, poll_interval, stop)


def _follow(
    tail: _Tail,
    wanted: frozenset[str] | None,
    poll_interval: float,
    stop: threading.Event | None,
) -> Iterator[CommittedEvent]:
    while True:
        for event in tail.poll():
            if wanted is None or event.kind in wanted:
                yield event
        if stop is None:
            time.sleep(poll_interval)
        elif stop.wait(poll_interval):
            return


class _Mark(NamedTuple):
    """The last event seen of a workflow (its seq and time tell one run from the next)."""

    seq: int
    at: float


class _Tail:
    """The state of one ``follow``: the last event seen of each workflow it watches."""

    def __init__(
        self, store: EventStore, *, since: float | None, lag: float, workflow_id: str | None
    ) -> None:
        self.store = store
        self.lag = lag
        self.workflow_id = workflow_id
        self.known: dict[str, _Mark] = {}
        self.names: dict[tuple[str, int], str] = {}  # (workflow id, step seq) -> step name
        self._tidied = time.monotonic()
        if since is None:
            # Start from what is there now: everything already in the log is old.
            self.floor = time.time() - lag
            for record in self._changed(self.floor):
                self.known[record.id] = _Mark(record.last_seq, record.updated_at)
        else:
            self.floor = since
        self.cursor = self.floor

    def _changed(self, since: float) -> list[WorkflowRecord]:
        if self.workflow_id is None:
            return self.store.changed_workflows(since)
        record = self.store.get_workflow(self.workflow_id)
        return [record] if record is not None else []

    def poll(self) -> list[CommittedEvent]:
        """The events appended since the last poll, ordered by time (and by seq within
        each workflow, whatever the clocks say)."""
        chains: list[list[CommittedEvent]] = []
        newest = self.cursor
        for record in self._changed(max(self.floor, self.cursor - self.lag)):
            newest = max(newest, record.updated_at)
            mark = self.known.get(record.id)
            if mark == (record.last_seq, record.updated_at):
                continue
            if mark is not None:
                runs = self._since(record.id, mark)
            else:
                live, _, _ = record.id.partition("~run")
                if live != record.id and live in self.known:
                    continue  # an archived run of a workflow followed here: see _since
                runs = self._first_sight(record.id)
            if runs[0][1]:
                last = runs[0][1][-1]
                self.known[record.id] = _Mark(last.seq, last.at)
            chains.append(
                [
                    self._describe(workflow_id, record.name, entry)
                    for workflow_id, entries in reversed(runs)
                    for entry in entries
                ]
            )
        self.cursor = newest
        self._forget_finished()
        return list(heapq.merge(*chains, key=lambda e: e.at))

    def _first_sight(self, workflow_id: str) -> list[tuple[str, list[LogEntry]]]:
        """A workflow not seen before: its events from ``floor`` on, newest run first
        (when following one workflow, its earlier runs in the window too)."""
        runs = []
        run_id: str | None = workflow_id
        while run_id is not None:
            entries = self.store.read_events(run_id)
            recent = [e for e in entries if e.at >= self.floor]
            runs.append((run_id, recent))
            if self.workflow_id is None or len(recent) < len(entries) or not entries:
                break
            run_id = getattr(entries[0].event, "previous_run", None)
        return runs

    def _since(self, workflow_id: str, mark: _Mark) -> list[tuple[str, list[LogEntry]]]:
        """What the workflow appended after ``mark``: [(id, entries)], newest run first
        (runs it finished since are read back from their archived ids)."""
        entries = self.store.read_events(workflow_id, after_seq=mark.seq - 1)
        if entries and entries[0].seq == mark.seq and entries[0].at == mark.at:
            return [(workflow_id, entries[1:])] if len(entries) > 1 else [(workflow_id, [])]
        # The log under this id restarted: it continued as new since the last poll.
        runs = [(workflow_id, self.store.read_events(workflow_id))]
        for _ in range(1000):
            first = runs[-1][1][0].event if runs[-1][1] else None
            previous = getattr(first, "previous_run", None)
            if previous is None:
                break
            archived = self.store.read_events(previous)
            here = next(
                (i for i, e in enumerate(archived) if e.seq == mark.seq and e.at == mark.at),
                None,
            )
            if here is not None:
                runs.append((previous, archived[here + 1 :]))
                break
            runs.append((previous, archived))
        return runs

    def _describe(self, workflow_id: str, name: str, entry: LogEntry) -> CommittedEvent:
        event, step = entry.event, None
        if isinstance(event, ev.StepScheduled):
            step = self.names[(workflow_id, entry.seq)] = event.name
        else:
            step_seq = _step_seq(event)
            if step_seq is not None:
                step = self._step_name(workflow_id, step_seq)
        return CommittedEvent(
            workflow_id, name, entry.seq, type(event).__name__, entry.at, step, None, event
        )

    def _step_name(self, workflow_id: str, step_seq: int) -> str | None:
        key = (workflow_id, step_seq)
        if key not in self.names:
            found = self.store.read_events(workflow_id, step_seq - 1, step_seq)
            scheduled = found[0].event if found else None
            if not isinstance(scheduled, ev.StepScheduled):
                return None
            self.names[key] = scheduled.name
        return self.names[key]

    def _forget_finished(self) -> None:
        # Bounded memory: a workflow not touched for a while whose last event ended it
        # will append nothing more under this run. (Its step names go with it.)
        if len(self.known) < 10_000 or time.monotonic() - self._tidied < 60:
            return
        self._tidied = time.monotonic()
        recent = {r.id for r in self._changed(self.cursor - self.lag)}
        stale = [wid for wid in self.known if wid not in recent]
        for wid in stale:
            record = self.store.get_workflow(wid)
            if record is None or record.status.is_terminal:
                del self.known[wid]
        if stale:
            gone = set(stale) - set(self.known)
            self.names = {k: v for k, v in self.names.items() if k[0] not in gone}


def _check_kinds(kinds: Collection[str] | None) -> None:
    """Refuse event kinds the log does not have (a typo would silently match nothing)."""
    unknown = sorted(set(kinds or ()) - ev.EVENT_KINDS)
    if unknown:
        raise ConfigurationError(
            f"unknown event kinds {unknown}; known: {', '.join(sorted(ev.EVENT_KINDS))}"
        )
