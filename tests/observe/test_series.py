"""The numbers of ``duralog stats`` over time (``observe/series.py``): the buckets of a
window add up to what ``collect`` counts in it, whatever the logs."""

from __future__ import annotations

import math

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from duralog.errors import ErrorDetails
from duralog.observe.metrics import Stats, _Tally
from duralog.observe.series import MOST_BUCKETS, WIDTHS, bucket_width, points, series
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import WorkflowRecord, WorkflowStatus
from duralog.store.events import LogEntry

T0 = 1_800_000_000.0
ERR = ErrorDetails("ConnectionError", "down")
RAW = codec.encode(None)


def _event(kind: str, step_seq: int) -> ev.Event:
    """One event of ``kind``; step events are about the step scheduled at ``step_seq``."""
    made: dict[str, ev.Event] = {
        "scheduled": ev.StepScheduled(name=f"s{step_seq}", args=RAW),
        "started": ev.StepStarted(step_seq=step_seq, attempt=1),
        "retrying": ev.StepRetrying(step_seq=step_seq, attempt=1, error=ERR, next_attempt_at=T0),
        "completed": ev.StepCompleted(step_seq=step_seq, result=RAW),
        "failed": ev.StepFailed(step_seq=step_seq, attempt=1, error=ERR),
        "wf_completed": ev.WorkflowCompleted(result=RAW),
        "wf_failed": ev.WorkflowFailed(error=ERR),
        "wf_cancelled": ev.WorkflowCancelled(),
        "wf_terminated": ev.WorkflowTerminated(error=ERR),
        "continued": ev.ContinuedAsNew(args=RAW),
        "timer": ev.TimerStarted(fire_at=T0),
    }
    return made[kind]


@st.composite
def logs(draw: st.DrawFn) -> list[list[LogEntry]]:
    """Workflows whose logs hold any mix of step and ending events (collect and the
    series must agree on any log, not only on the ones a worker writes)."""
    found = []
    for _ in range(draw(st.integers(0, 5))):
        at = T0 + draw(st.floats(0, 3600))
        entries = [LogEntry(1, at, ev.WorkflowStarted(name="w", args=RAW))]
        kinds = st.sampled_from(
            ["scheduled", "started", "retrying", "completed", "failed", "timer"] * 3
            + ["wf_completed", "wf_failed", "wf_cancelled", "wf_terminated", "continued"]
        )
        for seq in range(2, 2 + draw(st.integers(0, 25))):
            at += draw(st.floats(0, 600))
            entries.append(LogEntry(seq, at, _event(draw(kinds), draw(st.integers(2, 6)))))
        found.append(entries)
    return found


def _stats(found: list[list[LogEntry]], since: float | None) -> Stats:
    tally = _Tally(since)
    for i, entries in enumerate(found):
        record = WorkflowRecord(f"w{i}", "w", WorkflowStatus.RUNNING, len(entries), T0, T0)
        tally.add(record, entries)
    return tally.stats()


@settings(max_examples=150, deadline=None)
@given(logs(), st.one_of(st.none(), st.floats(0, 7200).map(lambda s: T0 + s)))
def test_the_buckets_add_up_to_the_totals_of_collect(
    found: list[list[LogEntry]], since: float | None
) -> None:
    stats = _stats(found, since)
    end = T0 + 3600  # earlier than some events: those count in the last bucket
    made = series([p for entries in found for p in points(entries, since)], since, end)
    assert 1 <= len(made.buckets) <= MOST_BUCKETS
    assert [b.start for b in made.buckets] == [
        made.start + i * made.width for i in range(len(made.buckets))
    ]

    def total(field: str) -> int:
        return sum(getattr(b, field) for b in made.buckets)

    for outcome in ("completed", "failed", "cancelled", "continued"):
        assert total(outcome) == sum(getattr(w, outcome) for w in stats.workflows)
    assert total("steps") == sum(s.completed for s in stats.steps)
    assert total("steps_failed") == sum(s.failed for s in stats.steps)
    assert total("retries") == sum(s.retries for s in stats.steps)
    assert total("attempts") == sum(s.attempt_duration.count for s in stats.steps)
    for bucket in made.buckets:
        if bucket.attempts:
            assert bucket.p50 is not None and bucket.p95 is not None and bucket.p99 is not None
            assert 0 <= bucket.p50 <= bucket.p95 <= bucket.p99
        else:
            assert (bucket.p50, bucket.p95, bucket.p99) == (None, None, None)


@given(st.floats(0, 10 * 365 * 86400))
def test_a_window_is_cut_in_at_most_so_many_round_buckets(span: float) -> None:
    width = bucket_width(span)
    assert math.ceil(span / width) <= MOST_BUCKETS
    assert width in WIDTHS or width % WIDTHS[-1] == 0
    smaller = [w for w in WIDTHS if w < width]
    assert not smaller or span > smaller[-1] * MOST_BUCKETS  # the smallest that fits


def test_a_bucket_holds_what_happened_in_it() -> None:
    log = [
        LogEntry(1, T0, ev.WorkflowStarted(name="w", args=RAW)),
        LogEntry(2, T0, _event("scheduled", 2)),
        LogEntry(3, T0 + 1, _event("started", 2)),
        LogEntry(4, T0 + 3, _event("retrying", 2)),  # a 2 s attempt, in bucket 0
        LogEntry(5, T0 + 70, _event("started", 2)),
        LogEntry(6, T0 + 75, _event("completed", 2)),  # a 5 s attempt, in bucket 1
        LogEntry(7, T0 + 75, _event("wf_completed", 2)),
    ]
    made = series(points(log), T0, T0 + 180, width=60)
    assert [b.start for b in made.buckets] == [T0, T0 + 60, T0 + 120]
    first, second, third = (msgspec.structs.asdict(b) for b in made.buckets)
    assert (first["retries"], first["attempts"], first["p99"]) == (1, 1, 2.0)
    assert (second["steps"], second["completed"], second["p50"]) == (1, 1, 5.0)
    assert third == msgspec.structs.asdict(type(made.buckets[0])(start=T0 + 120))
    # From a later start, the first attempt's outcome is outside the window.
    later = series(points(log, T0 + 60), T0 + 60, T0 + 120)
    assert sum(b.retries for b in later.buckets) == 0
    assert sum(b.attempts for b in later.buckets) == 1
    # No start: from the first point.
    assert series(points(log), None, T0 + 180).start == T0 + 3
