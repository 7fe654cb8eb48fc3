"""``duralog tail`` and ``duralog stats``: the log followed live, and metrics read from it."""

from __future__ import annotations

import datetime as dt
import re
import sys
import threading
import time

import click
import msgspec

from duralog import _format
from duralog._cli_common import (
    Command,
    Context,
    JsonOut,
    Problem,
    friendly,
    lines_output_option,
    output_option,
    pass_context,
)
from duralog.observe.follow import follow
from duralog.observe.metrics import Durations, Stats, collect, prometheus_text
from duralog.observe.subscribe import CommittedEvent
from duralog.replay.history import entry_json
from duralog.store import events as ev
from duralog.store.codec import reveal
from duralog.store.events import Event, LogEntry

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_KINDS = sorted(ev.EVENT_KINDS)
#: The earliest time printed dates can show (1 January of the year 1, UTC).
_EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.UTC).timestamp()


def parse_since(text: str, now: float | None = None, option: str = "--since") -> float:
    """``10m``, ``2h``, ``1d``, ``30s``, ``1w`` (ago), or an ISO date or time (UTC unless
    it says otherwise), as epoch seconds; a ``Problem`` naming ``option`` otherwise."""
    now = time.time() if now is None else now
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if found:
        return _printable(now - float(found.group(1)) * _UNITS[found.group(2)], text, option)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Problem(
            f"{option}: {text!r} is neither a duration (30s, 10m, 2h, 1d, 1w) nor an ISO "
            "date or time (2026-11-25, 2026-11-25T14:00)",
            2,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return _printable(moment.timestamp(), text, option)


def parse_duration(text: str, option: str) -> float:
    """``90`` (seconds), ``30s``, ``10m``, ``2h``, ``1d`` or ``1w`` as seconds; a
    ``Problem`` naming ``option`` otherwise."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not found:
        raise Problem(
            f"{option}: {text!r} is not a duration: seconds, or a number with s, m, h, d "
            "or w (90, 30s, 10m, 2h, 1d)",
            2,
        )
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def _printable(moment: float, text: str, option: str) -> float:
    """``moment``, if a date can show it (the year 1 or later)."""
    if moment < _EARLIEST:
        raise Problem(f"{option}: {text!r} reaches back before the year 1; give a later time", 2)
    return moment


@click.command(cls=Command)
@click.option("--workflow", "workflow_id", help="Only this workflow's events.")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(_KINDS),
    help="Only events of this kind (repeatable), e.g. --kind StepFailed.",
)
@click.option(
    "--since",
    help="Also print the events already in the log from then on: 30s, 10m, 2h, 1d, or an "
    "ISO date or time. Default: only new events.",
)
@lines_output_option
@click.option("--no-follow", is_flag=True, help="Print what is there (see --since) and exit.")
@click.option("--count", type=click.IntRange(min=1), help="Exit after printing this many events.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=0.5,
    show_default=True,
    help="Seconds between two looks at the log.",
)
@pass_context
@friendly
def tail(
    ctx: Context,
    workflow_id: str | None,
    kinds: tuple[str, ...],
    since: str | None,
    output: str,
    no_follow: bool,
    count: int | None,
    interval: float,
) -> None:
    """Follow the log live: every event any process appends, as it is committed.

    Reads the database (any process, any worker on it); polls every --interval
    seconds. Ctrl-C stops it. Encrypted values are decrypted with the keys in
    DURALOG_KEYS; without the key they show as <encrypted: key ID>. --json (-o
    jsonl) prints one JSON object per event as it comes; -o json one array at the
    end, so it needs --no-follow or --count.

    \b
    Example:
      duralog --db shop.db tail
      duralog --db shop.db tail --kind StepFailed --kind StepRetrying
      duralog --db shop.db tail --workflow order-o-1 --since 1h --json | jq .kind
    """
    if output == "json" and not (no_follow or count):
        raise Problem(
            "-o json prints one array when tail ends: add --no-follow or --count N, or "
            "use -o jsonl (one event per line, as they come)",
            2,
        )
    start = parse_since(since) if since is not None else None
    out = JsonOut(output)
    store = ctx.store()
    stop = threading.Event()
    if no_follow:
        stop.set()  # one look at the log, then out
    printed = 0
    try:
        events = follow(
            store,
            since=start,
            workflow_id=workflow_id,
            kinds=kinds or None,
            poll_interval=interval,
            stop=stop,
        )
        for event in events:
            shown = reveal(event.event, ctx.payload_codec)
            if output == "table":
                click.echo(_text_line(event, shown))
            else:
                out.add(_json_line(event, shown))
            sys.stdout.flush()
            printed += 1
            if count is not None and printed >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        store.close()
    out.close()


def _text_line(event: CommittedEvent, shown: Event) -> str:
    entry = LogEntry(event.seq, event.at, shown)
    step_seq = getattr(event.event, "step_seq", None)
    steps = {step_seq: event.step} if step_seq is not None and event.step else {}
    what = _format.describe(entry, steps)
    return (
        f"{_format.when(event.at)}  {event.workflow_id} ({event.workflow_name})  "
        f"#{event.seq:<4} {event.kind:<17} {what}"
    ).rstrip()


def _json_line(event: CommittedEvent, shown: Event) -> str:
    head = msgspec.json.encode(
        {"workflow_id": event.workflow_id, "workflow_name": event.workflow_name, "step": event.step}
    )
    body = entry_json(LogEntry(event.seq, event.at, shown))
    return (head[:-1] + b"," + body[1:]).decode()


@click.command(cls=Command)
@click.option(
    "--since",
    help="Count only what happened from then on: 30s, 10m, 2h, 1d, or an ISO date or time.",
)
@click.option("--name", help="Only workflows of this name (and the steps they call).")
@output_option
@click.option(
    "--prometheus",
    is_flag=True,
    help="Prometheus text exposition format (serve it, or write it for node_exporter's "
    "textfile collector).",
)
@pass_context
@friendly
def stats(ctx: Context, since: str | None, name: str | None, output: str, prometheus: bool) -> None:
    """Counts, durations, retries and failures per workflow and per step, from the log.

    Reads every event in the window (the whole log without --since), so the numbers
    hold for any process and survive crashes.

    \b
    Example:
      duralog --db shop.db stats
      duralog --db shop.db stats --since 1h --json
      duralog --db shop.db stats --prometheus > /var/lib/node_exporter/duralog.prom
    """
    if output != "table" and prometheus:
        raise Problem(f"choose one of -o {output} and --prometheus", 2)
    start = parse_since(since) if since is not None else None
    store = ctx.store()
    try:
        found = collect(store, since=start, name=name)
    finally:
        store.close()
    if prometheus:
        click.echo(prometheus_text(found), nl=False)
    elif output != "table":  # one object: json and jsonl alike
        click.echo(msgspec.json.encode(found).decode())
    else:
        for line in stats_lines(found):
            click.echo(line)


def stats_lines(found: Stats) -> list[str]:
    """The human-readable tables of ``duralog stats``."""
    window = f"since {_format.when(found.since)}" if found.since is not None else "whole log"
    lines = [f"duralog stats ({window}, at {_format.when(found.at)})", ""]
    if not found.workflows:
        return [*lines, "no workflows"]
    lines.append(
        f"{'workflow':<28} {'started':>7} {'done':>6} {'failed':>6} {'cancel':>6} "
        f"{'cont.':>5} {'running':>7} {'susp.':>5} {'recov.':>6} {'aside':>5}  "
        f"{'p50':>8} {'p95':>8} {'max':>8}"
    )
    for wf in found.workflows:
        lines.append(
            f"{wf.name:<28} {wf.started:>7} {wf.completed:>6} {wf.failed:>6} "
            f"{wf.cancelled:>6} {wf.continued:>5} {wf.running:>7} {wf.suspended:>5} "
            f"{wf.recovering:>6} {wf.set_aside:>5}  {_durations(wf.duration)}"
        )
    if any(wf.recovering or wf.set_aside for wf in found.workflows):
        lines.append(
            "(recov.: running again after their worker died in one of their steps; "
            "aside: set aside FAILED by max_recovery_attempts)"
        )
    if found.steps:
        lines += [
            "",
            f"{'step':<28} {'calls':>7} {'tries':>6} {'done':>6} {'failed':>6} {'retry':>6} "
            f"{'open':>5}  {'p50':>8} {'p95':>8} {'max':>8}  (per attempt)",
        ]
        for step in found.steps:
            lines.append(
                f"{step.name:<28} {step.calls:>7} {step.attempts:>6} {step.completed:>6} "
                f"{step.failed:>6} {step.retries:>6} {step.circuit_open:>5}  "
                f"{_durations(step.attempt_duration)}"
            )
        errors = [(s.name, e, n) for s in found.steps for e, n in s.errors.items()]
        if errors:
            lines += ["", "errors (failed attempts by type)"]
            for step_name, error, n in sorted(errors, key=lambda x: -x[2]):
                lines.append(f"  {n:>6}  {step_name}: {error}")
    return lines


def _durations(d: Durations) -> str:
    return f"{_seconds(d.p50):>8} {_seconds(d.p95):>8} {_seconds(d.max):>8}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.1f}ms"
    if value < 120:
        return f"{value:.2f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"
