"""Metrics derived from the log: counts, durations, retries and failures.

Nothing is counted on the side: ``collect`` reads the events themselves, so the
numbers are the same from any process, after any crash, and for workflows that
ran before anyone asked. Per workflow name: runs started and how they ended,
runs still going, and run durations. Per step name: calls, attempts, completions,
failures for good, retries, attempts failed fast by a circuit breaker, the error
types seen, attempt durations (``StepStarted`` to its outcome) and step durations
(``StepScheduled`` to the final outcome, retry waits included).

``prometheus_text`` renders the same numbers in Prometheus's text exposition
format (``duralog stats --prometheus``) with ``prometheus_client``: serve the
output, or write it where node_exporter's textfile collector reads it.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import msgspec

from duralog.engine.recoveries import RECOVERY_LIMIT
from duralog.store import events as ev
from duralog.store.base import EventStore, WorkflowRecord, WorkflowStatus
from duralog.store.events import LogEntry

if TYPE_CHECKING:
    from prometheus_client.core import HistogramMetricFamily, Metric

#: Upper bounds (seconds) of the duration histograms, as Prometheus buckets.
BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
    3600.0,
    21600.0,
    86400.0,
)

#: The outcome each event that ends a run counts as (``WorkflowMetrics`` fields).
OUTCOMES = {
    "WorkflowCompleted": "completed",
    "WorkflowFailed": "failed",
    "WorkflowCancelled": "cancelled",
    "WorkflowTerminated": "failed",
    "ContinuedAsNew": "continued",
}


_OPEN = (
    WorkflowStatus.PENDING,
    WorkflowStatus.RUNNING,
    WorkflowStatus.PAUSED,
    WorkflowStatus.SUSPENDED,
)


class Durations(msgspec.Struct, kw_only=True):
    """A distribution of durations in seconds.

    ``buckets[i]`` counts the samples at most ``BUCKETS[i]`` (cumulative, as
    Prometheus histograms do); ``count`` includes the ones above the last bound.
    """

    count: int = 0
    sum: float = 0.0
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    buckets: list[int] = msgspec.field(default_factory=lambda: [0] * len(BUCKETS))


class WorkflowMetrics(msgspec.Struct, kw_only=True):
    """One workflow name: its runs started, how they ended, and how long they took."""

    name: str
    started: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    continued: int = 0
    running: int = 0
    suspended: int = 0
    #: Runs ended by their recovery limit (``max_recovery_attempts``): among ``failed``.
    set_aside: int = 0
    #: Open runs taken over after a worker died while one of their steps ran, with no
    #: progress since (``recoveries`` in their index row).
    recovering: int = 0
    duration: Durations = msgspec.field(default_factory=Durations)


class StepMetrics(msgspec.Struct, kw_only=True):
    """One step name, over every workflow that calls it."""

    name: str
    calls: int = 0
    attempts: int = 0
    completed: int = 0
    failed: int = 0
    retries: int = 0
    circuit_open: int = 0
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    attempt_duration: Durations = msgspec.field(default_factory=Durations)
    duration: Durations = msgspec.field(default_factory=Durations)


class Stats(msgspec.Struct, kw_only=True):
    """What ``collect`` found: per workflow name and per step name, sorted by name.

    ``since`` is the start of the window (None: the whole log); every count is of
    events at or after it, and a duration counts when its run or attempt ended in
    it. ``running`` (pending, running or paused) and ``suspended`` count the runs
    in that state now, whenever they started.
    """

    since: float | None
    at: float
    workflows: list[WorkflowMetrics]
    steps: list[StepMetrics]

    def prometheus(self) -> str:
        """These numbers in Prometheus's text exposition format (``prometheus_text``)."""
        return prometheus_text(self)


def collect(
    store: EventStore,
    since: float | None = None,
    name: str | None = None,
    *,
    also: Callable[[list[LogEntry]], None] | None = None,
) -> Stats:
    """Read the log and count (see ``Stats``); ``name``: only workflows of that name.

    ``also`` is called with each workflow's log as it is read (every event of each
    workflow that changed in the window), so a second count (``observe/series.py``)
    needs no second read.
    """
    records: Iterable[WorkflowRecord] = (
        store.list_workflows(name=name) if since is None else store.changed_workflows(since)
    )
    tally = _Tally(since)
    for record in records:
        if name is not None and record.name != name:
            continue
        entries = store.read_events(record.id)
        tally.add(record, entries)
        if also is not None:
            also(entries)
        if since is None and record.status in _OPEN:
            tally.add_open(record)  # every workflow was read: the open ones among them
    if since is not None:  # the open runs that did not change lately count too
        for status in _OPEN:
            for record in store.list_workflows(status=status, name=name):
                tally.add_open(record)
    return tally.stats()


class _Samples:
    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, value: float) -> None:
        self.values.append(max(value, 0.0))

    def summary(self) -> Durations:
        values = sorted(self.values)
        if not values:
            return Durations()
        total = math.fsum(values)
        return Durations(
            count=len(values),
            sum=total,
            mean=total / len(values),
            p50=quantile(values, 0.50),
            p95=quantile(values, 0.95),
            p99=quantile(values, 0.99),
            max=values[-1],
            buckets=[bisect.bisect_right(values, bound) for bound in BUCKETS],
        )


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile ``q`` (0 < q <= 1) of sorted, non-empty ``values``."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


class _Tally:
    def __init__(self, since: float | None) -> None:
        self.since = since
        self.workflows: dict[str, WorkflowMetrics] = {}
        self.steps: dict[str, StepMetrics] = {}
        self.samples: dict[tuple[str, str, str], _Samples] = {}

    def _in(self, at: float) -> bool:
        return self.since is None or at >= self.since

    def _sample(self, kind: str, name: str, what: str, value: float) -> None:
        key = (kind, name, what)
        found = self.samples.get(key)
        if found is None:
            found = self.samples[key] = _Samples()
        found.add(value)

    def add(self, record: WorkflowRecord, entries: list[LogEntry]) -> None:
        wf = self.workflows.get(record.name)
        if wf is None:
            wf = self.workflows[record.name] = WorkflowMetrics(name=record.name)
        started_at: float | None = None
        names: dict[int, str] = {}
        scheduled: dict[int, float] = {}
        attempt_started: dict[int, float] = {}
        for entry in entries:
            event, at, inside = entry.event, entry.at, self._in(entry.at)
            kind = type(event).__name__
            if isinstance(event, ev.WorkflowStarted):
                started_at = at
                wf.started += int(inside)
            elif kind in OUTCOMES:
                if inside:
                    outcome = OUTCOMES[kind]
                    setattr(wf, outcome, getattr(wf, outcome) + 1)
                    if isinstance(event, ev.WorkflowTerminated):
                        wf.set_aside += event.error.type == RECOVERY_LIMIT
                    if started_at is not None:
                        self._sample("workflow", record.name, "duration", at - started_at)
            elif isinstance(event, ev.StepScheduled):
                names[entry.seq], scheduled[entry.seq] = event.name, at
                if inside:
                    self._step(event.name).calls += 1
            elif isinstance(event, ev.StepStarted):
                attempt_started[event.step_seq] = at
                if inside:
                    self._step(names.get(event.step_seq, "?")).attempts += 1
            elif isinstance(event, ev.StepCompleted | ev.StepRetrying | ev.StepFailed):
                self._step_outcome(event, at, inside, names, scheduled, attempt_started)

    def add_open(self, record: WorkflowRecord) -> None:
        """A run that has not ended, whenever it last changed."""
        wf = self.workflows.get(record.name)
        if wf is None:
            wf = self.workflows[record.name] = WorkflowMetrics(name=record.name)
        if record.status is WorkflowStatus.SUSPENDED:
            wf.suspended += 1
        else:
            wf.running += 1
        wf.recovering += record.recoveries > 0

    def _step(self, name: str) -> StepMetrics:
        found = self.steps.get(name)
        if found is None:
            found = self.steps[name] = StepMetrics(name=name)
        return found

    def _step_outcome(
        self,
        event: ev.StepCompleted | ev.StepRetrying | ev.StepFailed,
        at: float,
        inside: bool,
        names: dict[int, str],
        scheduled: dict[int, float],
        attempt_started: dict[int, float],
    ) -> None:
        seq = event.step_seq
        began = attempt_started.pop(seq, None)
        if not inside:
            return
        name = names.get(seq, "?")
        step = self._step(name)
        if began is not None:
            self._sample("step", name, "attempt", at - began)
        if isinstance(event, ev.StepRetrying | ev.StepFailed):
            error = event.error.type
            step.errors[error] = step.errors.get(error, 0) + 1
            if error.rsplit(".", 1)[-1] == "CircuitOpen":
                step.circuit_open += 1
        if isinstance(event, ev.StepRetrying):
            step.retries += 1
            return
        if isinstance(event, ev.StepCompleted):
            step.completed += 1
        else:
            step.failed += 1
        if seq in scheduled:
            self._sample("step", name, "duration", at - scheduled[seq])

    def stats(self) -> Stats:
        for (kind, name, what), samples in self.samples.items():
            summary = samples.summary()
            if kind == "workflow":
                self.workflows[name].duration = summary
            elif what == "attempt":
                self.steps[name].attempt_duration = summary
            else:
                self.steps[name].duration = summary
        for step in self.steps.values():
            step.errors = dict(sorted(step.errors.items()))
        return Stats(
            since=self.since,
            at=time.time(),
            workflows=sorted(self.workflows.values(), key=lambda w: w.name),
            steps=sorted(self.steps.values(), key=lambda s: s.name),
        )


# -- Prometheus -------------------------------------------------------------------


def prometheus_text(stats: Stats) -> str:
    """``stats`` in Prometheus's text exposition format (version 0.0.4).

    Rendered by ``prometheus_client`` (imported here, not with duralog) from a
    collector over ``stats`` on a registry of its own, never the process's global
    one. Counters are totals over the window (use no ``since`` for counters that
    only grow, as Prometheus expects); ``duralog_workflows_running`` is a gauge.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatsCollector(stats))
    return generate_latest(registry).decode("utf-8")


class _StatsCollector:
    """A ``prometheus_client`` collector: the metric families of one ``Stats``."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        """Every family, in a fixed order (the library adds the ``_total`` suffixes)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        wfs, steps = self.stats.workflows, self.stats.steps
        started = CounterMetricFamily(
            "duralog_workflows_started", "Workflow runs started.", labels=["workflow"]
        )
        for wf in wfs:
            started.add_metric([wf.name], wf.started)
        yield started
        finished = CounterMetricFamily(
            "duralog_workflows_finished",
            "Workflow runs ended, by outcome.",
            labels=["workflow", "outcome"],
        )
        for wf in wfs:
            for outcome in ("completed", "failed", "cancelled", "continued"):
                finished.add_metric([wf.name, outcome], getattr(wf, outcome))
        yield finished
        running = GaugeMetricFamily(
            "duralog_workflows_running",
            "Workflow runs not ended, by status.",
            labels=["workflow", "status"],
        )
        for wf in wfs:
            for status in ("running", "suspended"):
                running.add_metric([wf.name, status], getattr(wf, status))
        yield running
        set_aside = CounterMetricFamily(
            "duralog_workflows_set_aside",
            "Workflow runs ended FAILED by their recovery limit (max_recovery_attempts).",
            labels=["workflow"],
        )
        for wf in wfs:
            set_aside.add_metric([wf.name], wf.set_aside)
        yield set_aside
        recovering = GaugeMetricFamily(
            "duralog_workflows_recovering",
            "Open workflow runs recovered after their worker died in one of their steps.",
            labels=["workflow"],
        )
        for wf in wfs:
            recovering.add_metric([wf.name], wf.recovering)
        yield recovering
        yield _histogram(
            HistogramMetricFamily(
                "duralog_workflow_duration_seconds",
                "Duration of ended workflow runs.",
                labels=["workflow"],
            ),
            [(wf.name, wf.duration) for wf in wfs],
        )
        for field, help_text in (
            ("calls", "Step calls made by workflow code."),
            ("attempts", "Step attempts started."),
            ("completed", "Steps that returned."),
            ("failed", "Steps that failed for good."),
            ("retries", "Step attempts that failed and were retried."),
            ("circuit_open", "Step attempts failed fast by an open circuit breaker."),
        ):
            counter = CounterMetricFamily(f"duralog_step_{field}", help_text, labels=["step"])
            for step in steps:
                counter.add_metric([step.name], getattr(step, field))
            yield counter
        errors = CounterMetricFamily(
            "duralog_step_errors",
            "Failed step attempts, by error type.",
            labels=["step", "error"],
        )
        for step in steps:
            for error, count in step.errors.items():
                errors.add_metric([step.name, error], count)
        yield errors
        yield _histogram(
            HistogramMetricFamily(
                "duralog_step_attempt_duration_seconds",
                "Duration of step attempts, from start to outcome.",
                labels=["step"],
            ),
            [(s.name, s.attempt_duration) for s in steps],
        )
        yield _histogram(
            HistogramMetricFamily(
                "duralog_step_duration_seconds",
                "Duration of steps, from the call to the final outcome (retries included).",
                labels=["step"],
            ),
            [(s.name, s.duration) for s in steps],
        )


def _histogram(family: HistogramMetricFamily, series: list[tuple[str, Durations]]) -> Metric:
    """``family`` with one histogram per ``(label, durations)`` of ``series``."""
    for label, durations in series:
        counts = durations.buckets or [0] * len(BUCKETS)
        # ``le`` as prometheus_client's own histograms write it: 0.005, 1.0, 86400.0
        buckets = [(repr(b), c) for b, c in zip(BUCKETS, counts, strict=True)]
        buckets.append(("+Inf", durations.count))
        family.add_metric([label], buckets, durations.sum)
    return family
