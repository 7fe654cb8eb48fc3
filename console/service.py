"""What the console shows and does, as plain data, over one open store.

Each method computes what a ``duralog`` command prints with ``-o json`` (``list``,
``show``, ``history``, ``inspect --at``, ``queues``, ``schedules``, ``stats``) or does
what it does (``start``, ``signal``, ``cancel``, ``pause``, ``resume``), through the
same functions, so the JSON API, the pages and the command line agree. Errors are
``Refused``: an HTTP status and one line that says what to do.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

from duralog import _format
from duralog._cli_common import Context, Problem
from duralog.cli_observe import _json_line, parse_since
from duralog.cli_queues import queue_rows
from duralog.cli_run import show_report
from duralog.engine.engine import Engine
from duralog.engine.schedules import next_tick
from duralog.errors import (
    ConfigurationError,
    DuralogError,
    PayloadError,
    RegistrationError,
    StoreError,
    WorkflowNotFound,
)
from duralog.observe.follow import follow
from duralog.observe.metrics import Stats, collect
from duralog.observe.series import Point, Series, points, series
from duralog.observe.subscribe import CommittedEvent
from duralog.replay.checker import ReplayReport, check
from duralog.replay.definitions import REGISTRY
from duralog.replay.history import History, entries_json
from duralog.replay.state import fold_all
from duralog.store import events as ev
from duralog.store.base import StepCounts, WorkflowQuery, WorkflowRecord, WorkflowStatus
from duralog.store.codec import encode_call, reveal, reveal_entries, reveal_payload
from duralog.store.events import LogEntry

#: The statuses counted at the top of ``/``, in this order.
STATUSES = tuple(WorkflowStatus)
#: The most rows one page of ``/api/workflows`` gives.
MOST_ROWS = 1000
#: The actions on one workflow (``POST .../{action}``).
ACTIONS = ("cancel", "pause", "resume")


class Refused(Exception):
    """A request the console cannot carry out: its HTTP ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Page(NamedTuple):
    """One page of workflows, newest first; ``next_after`` is the id to page on from
    (``?after=``), None on the last page; ``counts``: the steps and retries of the
    page's workflows (``ListingStore.step_counts``)."""

    records: list[WorkflowRecord]
    next_after: str | None
    counts: dict[str, StepCounts]

    def rows(self) -> list[dict[str, Any]]:
        """The page as ``duralog list -o json`` prints it (steps and retries too)."""
        return [_format.listed(r, self.counts) for r in self.records]


class StatsView(NamedTuple):
    """What ``/stats`` shows: ``duralog stats``'s numbers and their ``series``."""

    stats: Stats
    series: Series

    def data(self) -> dict[str, Any]:
        """``duralog stats -o json`` with a ``series`` key (``GET /api/stats``)."""
        return {**msgspec.structs.asdict(self.stats), "series": self.series}


def refused(exc: Exception) -> Refused:
    """The ``Refused`` an error of the CLI's functions or of the engine stands for: 404
    for an unknown workflow, 400 for bad input, 503 for an unusable log, else 409."""
    if isinstance(exc, Refused):
        return exc
    if isinstance(exc, WorkflowNotFound):
        return Refused(404, str(exc))
    if isinstance(exc, Problem):
        text = exc.format_message()
        return Refused(404 if text.startswith("no workflow with id") else 400, text)
    if isinstance(exc, ConfigurationError | RegistrationError | PayloadError):
        return Refused(400, str(exc))
    if isinstance(exc, StoreError):  # the log cannot be read or written now
        return Refused(503, str(exc))
    return Refused(409, str(exc))  # a workflow in use, ended, suspended...


class Console:
    """The console's view of one log: an open store and an engine that runs no worker
    (a worker elsewhere runs what it starts). Close it when the server stops.

    Args:
        ctx: the command line's context (``--db``, ``--app``, ``DURALOG_KEYS``).
        read_only: refuse every action.
        token: required with every request when given.
    """

    def __init__(self, ctx: Context, *, read_only: bool = False, token: str | None = None):
        self.ctx = ctx
        self.read_only = read_only
        self.token = token
        #: Put in every form; a POST from a page must carry it back (CSRF).
        self.csrf = secrets.token_urlsafe(32)
        ctx.load_app(required=False)
        self.engine = Engine(ctx.store(), worker=False, payload_codec=ctx.payload_codec)
        self.store = self.engine.store
        self._stops: set[threading.Event] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        """End every event stream, then close the engine and its store."""
        with self._lock:
            for stop in self._stops:
                stop.set()
        self.engine.close()

    # -- reading ---------------------------------------------------------------------

    def query(self, params: Mapping[str, Sequence[str]]) -> WorkflowQuery:
        """The ``WorkflowQuery`` of ``list``'s filters given as query parameters:
        ``status``, ``name``, ``queue``, ``parent`` (each repeatable), ``id_prefix``,
        ``since``, ``until``, ``ended_since``, ``ended_until`` and ``after``."""

        def many(key: str) -> tuple[str, ...]:
            return tuple(v for v in params.get(key, ()) if v)

        def one(key: str) -> str | None:
            found = many(key)
            return found[-1] if found else None

        def moment(key: str) -> float | None:
            text = one(key)
            return None if text is None else parse_since(text, option=key)

        try:
            statuses = tuple(WorkflowStatus(s.upper()) for s in many("status"))
        except ValueError:
            known = ", ".join(s.value for s in WorkflowStatus)
            raise Refused(400, f"status must be one of {known}") from None
        after = None
        after_id = one("after")
        if after_id is not None:
            record = self.store.get_workflow(after_id)
            if record is None:
                raise Refused(404, f"after: no workflow with id {after_id!r} in {self.ctx.where}")
            after = (record.created_at, record.id)
        try:
            return WorkflowQuery(
                statuses=statuses,
                names=many("name"),
                queues=many("queue"),
                parents=many("parent"),
                id_prefix=one("id_prefix"),
                started_since=moment("since"),
                started_until=moment("until"),
                ended_since=moment("ended_since"),
                ended_until=moment("ended_until"),
                after=after,
            )
        except Problem as exc:
            raise refused(exc) from None

    def find(self, query: WorkflowQuery, limit: int = 100) -> Page:
        """One page of the workflows ``query`` matches (``duralog list``), keyset-paged
        on the index, with the steps and retries of its rows (from their events only)."""
        if not 1 <= limit <= MOST_ROWS:
            raise Refused(400, f"limit must be between 1 and {MOST_ROWS}, not {limit}")
        records = self.store.find_workflows(query, limit=limit + 1)
        more = len(records) > limit
        records = records[:limit]
        counts = self.store.step_counts([r.id for r in records])
        return Page(records, records[-1].id if more and records else None, counts)

    def counts(self) -> dict[str, int]:
        """How many workflows are in each status (``duralog count --status S``)."""
        return {s.value: self.store.count_workflows(WorkflowQuery(statuses=(s,))) for s in STATUSES}

    def record(self, workflow_id: str) -> WorkflowRecord:
        """The index row of ``workflow_id``; ``Refused`` (404) when there is none."""
        try:
            return self.ctx.record(self.store, workflow_id)
        except Problem as exc:
            raise refused(exc) from None

    def children(self, events: Sequence[LogEntry]) -> list[WorkflowRecord]:
        """The child workflows a history started (from its ``ChildStarted`` events:
        no scan of the index)."""
        found = []
        for entry in events:
            if isinstance(entry.event, ev.ChildStarted):
                record = self.store.get_workflow(entry.event.child_id)
                if record is not None:
                    found.append(record)
        return found

    def runs(self, workflow_id: str, events: Sequence[LogEntry]) -> list[str]:
        """The ids of the runs of the continue-as-new chain ``workflow_id`` belongs to,
        oldest first, the newest 50 at most: the earlier runs are archived as
        ``<id>~run<N>``, the current one keeps the id. Empty for a single run."""
        started = events[0].event if events else None
        run = started.run if isinstance(started, ev.WorkflowStarted) else 1
        base, archived, _ = workflow_id.partition("~run")
        if run <= 1 and not archived:
            return []
        ids = [f"{base}~run{n}" for n in range(max(1, run - 50), run)]
        if archived:
            ids.append(workflow_id)
        ids.append(base)
        return [i for i in ids if i == workflow_id or self.store.get_workflow(i) is not None]

    def show(self, workflow_id: str) -> dict[str, Any]:
        """What ``duralog show ID -o json`` prints."""
        try:
            return show_report(self.ctx, self.store, workflow_id).data
        except (Problem, DuralogError) as exc:
            raise refused(exc) from None

    def history(self, workflow_id: str) -> list[LogEntry]:
        """The workflow's events as ``duralog history`` prints them: decrypted with the
        keys of ``DURALOG_KEYS``, ``<encrypted: key ID>`` without them."""
        self.record(workflow_id)
        return reveal_entries(self.store.read_events(workflow_id), self.ctx.payload_codec)

    def history_json(self, workflow_id: str) -> bytes:
        """``duralog history ID -o json``."""
        return entries_json(self.history(workflow_id))

    def state(
        self, workflow_id: str, at: int | None = None, events: list[LogEntry] | None = None
    ) -> dict[str, Any]:
        """``duralog inspect ID --at N -o json``: the state folded from the first ``at``
        events (all of them without ``at``) of ``events`` (default: its history)."""
        events = self.history(workflow_id) if events is None else events
        if at is not None and not 1 <= at <= len(events):
            raise Refused(400, f"at must be between 1 and {len(events)} for {workflow_id}")
        state = fold_all(workflow_id, [e for e in events if at is None or e.seq <= at])
        found: dict[str, Any] = _format.state_json(state)
        return found

    def replay_check(self, workflow_id: str) -> ReplayReport:
        """``duralog replay ID``: this history against the code loaded with ``--app``."""
        record = self.record(workflow_id)
        history = History(workflow_id, record.name, self.store.read_events(workflow_id))
        if not self.ctx.apps:
            raise Refused(400, "no code to replay against: start the console with --app MODULE")
        try:
            return check(history, REGISTRY, payload_codec=self.ctx.payload_codec)
        except (DuralogError, Problem) as exc:
            raise refused(exc) from None

    def queues(self) -> list[dict[str, Any]]:
        """``duralog queues -o json``."""
        return queue_rows(self.ctx, self.store)

    def schedules(self) -> list[dict[str, Any]]:
        """``duralog schedules -o json``, each with its ``next_tick`` (None: paused)."""
        found = []
        for record in self.store.schedules():
            args = reveal_payload(record.args, self.ctx.payload_codec)
            found.append(
                {
                    **msgspec.structs.asdict(record),
                    "args": msgspec.Raw(args),
                    "next_tick": None if record.paused else next_tick(record),
                }
            )
        return found

    def stats(self, since: str | None = None) -> StatsView:
        """``duralog stats -o json`` (from ``since`` on: 1h, 1d, an ISO time...), and
        the same numbers over time, counted in the same read of the log."""
        try:
            start = None if since is None else parse_since(since)
        except Problem as exc:
            raise refused(exc) from None
        found: list[Point] = []
        stats = collect(self.store, since=start, also=lambda log: found.extend(points(log, start)))
        return StatsView(stats, series(found, start, stats.at))

    def events(self, stop: threading.Event, poll_interval: float = 0.5) -> Iterator[str]:
        """Every event any process appends from this call on, each one JSON text as
        ``duralog tail -o jsonl`` prints it, until ``stop`` is set (or ``close``)."""
        found = follow(self.store, poll_interval=poll_interval, stop=stop)  # from now on
        with self._lock:
            self._stops.add(stop)
        return self._lines(found, stop)

    def _lines(self, found: Iterator[CommittedEvent], stop: threading.Event) -> Iterator[str]:
        try:
            for event in found:
                yield _json_line(event, reveal(event.event, self.ctx.payload_codec))
        finally:
            with self._lock:
                self._stops.discard(stop)

    # -- acting ----------------------------------------------------------------------

    def start(
        self, name: str, args: list[Any], workflow_id: str | None, queue: str | None = None
    ) -> dict[str, Any]:
        """``duralog start NAME --input ARGS [--id ID] -o json``."""
        self._writable()
        try:  # a call the workflow cannot take is refused before anything is written
            REGISTRY.get(name).check_call(*encode_call(args, {}), None)
            handle = self.engine.start(name, *args, id=workflow_id, queue=queue)
            return {"id": handle.id, "name": name, "status": handle.status().value}
        except RegistrationError as exc:
            hint = "" if self.ctx.apps else " (start the console with --app MODULE)"
            raise Refused(400, f"{exc}{hint}") from None
        except DuralogError as exc:
            raise refused(exc) from None

    def signal(self, workflow_id: str, name: str, payload: Any) -> dict[str, Any]:
        """``duralog signal ID NAME --payload JSON -o json``."""
        self._writable()
        if not name:
            raise Refused(400, f"a signal to {workflow_id!r} needs a name")
        return self._act(workflow_id, "signal", payload, lambda h: h.signal(name, payload))

    def act(self, workflow_id: str, action: str, reason: str = "") -> dict[str, Any]:
        """``duralog cancel|pause|resume ID -o json``."""
        self._writable()
        if action == "cancel":
            return self._act(workflow_id, action, reason or None, lambda h: h.cancel(reason))
        if action == "pause":
            return self._act(workflow_id, action, reason or None, lambda h: h.pause(reason))
        if action == "resume":
            return self._act(workflow_id, action, None, lambda h: h.resume())
        raise Refused(404, f"no action {action!r}: one of signal, {', '.join(ACTIONS)}")

    def _act(self, workflow_id: str, action: str, sent: Any, act: Any) -> dict[str, Any]:
        try:
            self.record(workflow_id)
            if sent is not None:
                what = "a signal payload" if action == "signal" else "a reason"
                self.ctx.refuse_clear_text(workflow_id, what)
            handle = self.engine.get(workflow_id)
            act(handle)
            status = handle.status().value
        except (DuralogError, Problem) as exc:
            raise refused(exc) from None
        return {"workflow_id": workflow_id, "action": action, "status": status}

    def set_schedule(self, schedule_id: str, action: str) -> dict[str, Any]:
        """``duralog schedules pause|resume|delete ID -o json``."""
        self._writable()
        if action == "delete":
            done = self.store.delete_schedule(schedule_id)
        elif action in ("pause", "resume"):
            now = dt.datetime.now(dt.UTC).timestamp()
            done = self.store.pause_schedule(schedule_id, action == "pause", now)
        else:
            raise Refused(404, f"no schedule action {action!r}: one of pause, resume, delete")
        if not done:
            raise Refused(404, f"no schedule with id {schedule_id!r} in {self.ctx.where}")
        said = {"pause": "paused", "resume": "resumed", "delete": "deleted"}[action]
        return {"schedule_id": schedule_id, "done": said}

    def _writable(self) -> None:
        if self.read_only:
            raise Refused(403, "this console is read-only (started with --read-only)")
