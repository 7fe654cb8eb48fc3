"""The log followed live, from any process: ``follow(store)`` (what ``duralog tail``
prints) yields every event any worker appends to that database, a poll interval late,
described like the events ``engine.subscribe`` pushes (``subscribe.py``).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Collection, Iterator
from typing import NamedTuple

from duralog.errors import positive_seconds
from duralog.store import events as ev
from duralog.store.base import EventStore, WorkflowRecord
from duralog.store.events import LogEntry

from .subscribe import CommittedEvent, check_kinds, step_seq_of

#: Events a commit may carry whose ``at`` lies this far before the commit: a poll
#: looks this far back so that no event is missed (a locked database, a slow disk).
COMMIT_LAG = 30.0


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
    check_kinds(kinds)
    poll_interval = positive_seconds(poll_interval, "poll_interval")
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
            step_seq = step_seq_of(event)
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
