"""Human-readable renderings of histories and states, for the CLI."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from duralog.replay.state import WorkflowState
from duralog.store import events as ev
from duralog.store.base import StepCounts, WorkflowRecord, WorkflowStatus
from duralog.store.events import LogEntry


def when(ts: float | None) -> str:
    """An epoch time as ``2026-11-25 20:41:07.123 UTC``."""
    if ts is None:
        return "-"
    stamp = dt.datetime.fromtimestamp(ts, dt.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def payload(raw: msgspec.Raw, limit: int = 120) -> str:
    """A payload as compact JSON, shortened to ``limit`` characters (a payload that
    could not be decrypted shows as its marker, ``<encrypted: key k1>``)."""
    text = bytes(raw).decode("utf-8", "replace")
    if text.startswith('"<encrypted') and text.endswith('>"'):
        text = text[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_arguments(args: msgspec.Raw, kwargs: msgspec.Raw, limit: int = 120) -> str:
    """``1, "a", key=2``: a call's recorded arguments, shortened to ``limit`` characters."""
    text = bytes(args).decode("utf-8", "replace")[1:-1]
    try:
        named = msgspec.json.decode(bytes(kwargs))
    except msgspec.DecodeError:
        named = None
    if isinstance(named, dict) and named:
        pairs = (f"{k}={msgspec.json.encode(v).decode()}" for k, v in named.items())
        text = ", ".join(filter(None, [text, *pairs]))
    elif named:  # not a mapping (an encrypted value): show it as recorded
        text = ", ".join(filter(None, [text, payload(kwargs, limit)]))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(entry: LogEntry, steps: dict[int, str]) -> str:
    """What one event says, in a line (without seq and time)."""
    e = entry.event
    match e:
        case ev.WorkflowStarted(name=name, args=args, run=run, previous_run=previous):
            linked = f" (run {run}, continued from {previous})" if previous else ""
            return f"{name}{payload(args)}{linked}"
        case ev.StepScheduled(name=name, args=args, kwargs=kwargs):
            return f"{name}({call_arguments(args, kwargs)})"
        case ev.StepStarted(step_seq=s, attempt=attempt):
            return f"{steps.get(s, s)} attempt {attempt}"
        case ev.StepRetrying(step_seq=s, attempt=attempt, error=error, next_attempt_at=nxt):
            return f"{steps.get(s, s)} attempt {attempt} failed: {error}; next at {when(nxt)}"
        case ev.StepCompleted(step_seq=s, result=result):
            return f"{steps.get(s, s)} -> {payload(result)}"
        case ev.StepFailed(step_seq=s, attempt=attempt, error=error):
            return f"{steps.get(s, s)} failed after {attempt} attempt(s): {error}"
        case ev.TimerStarted(fire_at=fire_at):
            return f"until {when(fire_at)} (+{fire_at - entry.at:.3f}s)"
        case ev.TimerFired(timer_seq=t):
            return f"timer {t}"
        case ev.MarkerRecorded(marker=marker, value=value):
            return f"{marker} = {payload(value)}"
        case ev.SignalReceived(name=name, payload=value):
            return f"{name} {payload(value)}"
        case ev.WorkflowCompleted(result=result):
            return f"-> {payload(result)}"
        case ev.WorkflowFailed(error=error) | ev.WorkflowTerminated(error=error):
            return str(error)
        case ev.ContinuedAsNew(args=args):
            return f"the next run starts with {payload(args)}"
        case ev.StatePublished(key=key, value=value):
            return f"{key} = {payload(value)}"
        case ev.StreamWritten(key=key, value=value):
            return f"{key} += {payload(value)}"
        case ev.StreamClosed(key=key):
            return f"{key} closed"
        case ev.StepStreamed(step_seq=s, attempt=attempt, key=key, value=value, closed=closed):
            wrote = "closed" if closed else f"+= {payload(value)}"
            return f"{steps.get(s, s)} attempt {attempt}: {key} {wrote}"
        case ev.ChildStarted(child_id=child_id, name=name, args=args):
            return f"{name}{payload(args)} as {child_id}"
        case ev.ChildCompleted(child_seq=c, result=result):
            return f"child {c} -> {payload(result)}"
        case ev.ChildFailed(child_seq=c, error=error):
            return f"child {c} failed: {error}"
        case ev.CancelRequested(reason=reason) | ev.PauseRequested(reason=reason):
            return reason
        case _:
            return ""


def timeline(entries: Sequence[LogEntry]) -> list[str]:
    """One line per event: seq, offset from the start, kind, what it says, step duration."""
    if not entries:
        return []
    start = entries[0].at
    steps: dict[int, str] = {}
    began: dict[int, float] = {}
    lines = []
    for entry in entries:
        e = entry.event
        if isinstance(e, ev.StepScheduled):
            steps[entry.seq] = e.name
        took = ""
        if isinstance(e, ev.StepStarted):
            began[e.step_seq] = entry.at
        elif isinstance(e, ev.StepCompleted | ev.StepFailed | ev.StepRetrying) and (
            e.step_seq in began
        ):
            took = f"  ({(entry.at - began[e.step_seq]) * 1000:.1f} ms)"
        lines.append(
            f"{entry.seq:>5}  +{entry.at - start:9.3f}s  {entry.kind:<18} "
            f"{describe(entry, steps)}{took}".rstrip()
        )
    return lines


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Aligned columns under a header row (tabulate's ``plain`` format); None shows as
    ``-`` and values as they are (an id like ``007`` is no number)."""
    from tabulate import tabulate  # type: ignore[import-untyped,unused-ignore]  # lazy: --help

    cells = [["-" if value is None else str(value) for value in row] for row in rows]
    return str(tabulate(cells, headers=list(headers), tablefmt="plain", disable_numparse=True))


def json_text(value: Any) -> str:
    """``value`` as compact JSON (msgspec: structs, enums and ``Raw`` payloads too)."""
    return msgspec.json.encode(value).decode()


def listed(record: WorkflowRecord, counts: dict[str, StepCounts]) -> dict[str, Any]:
    """One row of ``duralog list -o json`` (and of ``GET /api/workflows``): the index
    row with its ``steps`` (called) and ``retries`` (attempts beyond the first), from
    ``counts`` (``ListingStore.step_counts`` of the rows listed)."""
    found = counts.get(record.id) or StepCounts()
    return {**msgspec.structs.asdict(record), "steps": found.steps, "retries": found.retries}


#: The columns of ``duralog list``.
RECORD_HEADERS = ("ID", "NAME", "STATUS", "QUEUE", "EVENTS", "STARTED", "UPDATED", "NOTE")


def record_cells(record: WorkflowRecord) -> list[object]:
    """One ``duralog list`` row under ``RECORD_HEADERS`` (NOTE: why it is SUSPENDED, or
    set aside FAILED by its recovery limit; how often a running one was recovered;
    when a delayed start is due; QUEUE: with its partition)."""
    note = None
    if record.recoveries and not record.status.is_terminal:
        note = f"recovered {record.recoveries}x in a row (its worker died in a step)"
    if record.status in (WorkflowStatus.SUSPENDED, WorkflowStatus.FAILED) and record.reason:
        note = record.reason if len(record.reason) <= 100 else record.reason[:99] + "…"
    elif record.status is WorkflowStatus.PENDING and record.start_at is not None:
        note = f"starts {when(record.start_at)}"
    queue = record.queue
    if queue is not None and record.partition_key is not None:
        queue = f"{queue} [{record.partition_key}]"
    return [
        record.id,
        record.name,
        record.status.value,
        queue,
        record.last_seq,
        when(record.created_at),
        when(record.updated_at),
        note,
    ]


def queue_place(record: WorkflowRecord) -> str:
    """Where a queued workflow is: its queue, partition, dedup id and priority."""
    said = [
        f"{label} {value}"
        for label, value in (
            ("partition", record.partition_key),
            ("dedup id", record.dedup_id),
            ("priority", record.priority or None),
        )
        if value is not None
    ]
    return f"{record.queue}" + (f" ({', '.join(said)})" if said else "")


def state_lines(state: WorkflowState) -> list[str]:
    """The derived state, for ``duralog inspect``."""
    lines = [
        f"workflow  {state.workflow_id} ({state.name})",
        f"at seq    {state.last_seq} ({when(state.last_at)})",
        f"status    {state.status}",
        f"input     {payload(state.args)}",
    ]
    if state.status == "COMPLETED":
        lines.append(f"result    {payload(state.result)}")
    if state.error is not None:
        lines.append(f"error     {state.error}")
    done = [s for s in state.steps.values() if s.done]
    pending = state.pending_steps()
    lines.append(f"steps     {len(done)} finished, {len(pending)} pending")
    for step in done:
        outcome = (
            payload(step.result, 80)
            if step.error is None or step.status == "completed"
            else str(step.error)
        )
        lines.append(
            f"  {step.seq:>5} {step.name:<20} {step.status:<9} attempt {step.attempt}  {outcome}"
        )
    for step in pending:
        extra = f"  next attempt {when(step.next_attempt_at)}" if step.next_attempt_at else ""
        lines.append(
            f"  {step.seq:>5} {step.name:<20} {step.status:<9} attempt {step.attempt}{extra}"
        )
    timers = state.pending_timers()
    if state.timers:
        lines.append(f"timers    {len(state.timers) - len(timers)} fired, {len(timers)} pending")
        for timer in timers:
            lines.append(f"  {timer.seq:>5} fires at {when(timer.fire_at)}")
    if state.markers:
        lines.append("markers")
        for marker in state.markers.values():
            lines.append(f"  {marker.seq:>5} {marker.marker:<12} {payload(marker.value, 80)}")
    return lines


def state_json(state: WorkflowState) -> Any:
    """The derived state as plain JSON-able data."""
    return msgspec.json.decode(msgspec.json.encode(state))
