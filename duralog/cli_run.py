"""The commands that run workflow code or read one workflow: ``worker``, ``start``,
``show``, ``history``, ``export`` and ``inspect`` (registered in ``cli.py``)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import click
import msgspec

from duralog import _format
from duralog._cli_common import (
    Command,
    Context,
    Problem,
    echo_one,
    friendly,
    log_to_stderr,
    output_option,
    parse_json,
    pass_context,
    write_private,
)
from duralog._signals import StopSignals
from duralog.cli_observe import parse_duration
from duralog.cli_verify import verify_hint, where
from duralog.engine.diagnose import why_waiting
from duralog.engine.engine import Engine
from duralog.engine.queues import QUEUES, resolve
from duralog.errors import ConfigurationError, ErrorDetails, StoreError
from duralog.replay.definitions import REGISTRY
from duralog.replay.history import dump_history, entries_json, entry_json
from duralog.replay.state import WorkflowState, fold_all
from duralog.store import events as ev
from duralog.store.base import EventStore, InboxItem, WorkflowQuery, WorkflowRecord
from duralog.store.codec import encode_call, reveal_entries, reveal_payload
from duralog.store.envelope import PayloadCodec
from duralog.store.events import LogEntry
from duralog.store.verify import WorkflowCheck
from duralog.store.verify import verify as verify_log


@click.command(cls=Command)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Threads for sync steps: how many run at once.",
)
@click.option(
    "--queue",
    "queue_names",
    multiple=True,
    help="Serve only this queue (repeatable; default every queue the app declares).",
)
@click.option(
    "--max-workflows",
    type=click.IntRange(min=1),
    help="At most this many workflows in flight on this worker (default: no bound).",
)
@pass_context
@friendly
def worker(
    ctx: Context, concurrency: int, queue_names: tuple[str, ...], max_workflows: int | None
) -> None:
    """Run a worker until interrupted: recover, then advance workflows.

    \b
    Example:
      duralog --db shop.db --app shop.workflows worker
      duralog --db shop.db --app shop.workflows worker --queue emails
    """
    log_to_stderr()
    ctx.load_app()
    queues = [resolve(name, REGISTRY.declared(QUEUES)) for name in queue_names] or None
    stop = StopSignals()
    with Engine(
        ctx.db,
        max_threads=concurrency,
        queues=queues,
        max_workflows=max_workflows,
        payload_codec=ctx.payload_codec,
    ) as engine:
        click.echo(f"worker {engine.worker_id} serving {ctx.where} (Ctrl-C to stop)", err=True)
        while not stop.wait(1.0):
            try:
                engine.store.check()
            except StoreError as exc:  # its file was deleted or replaced: stop, say why
                raise Problem(str(exc), 2) from None
    click.echo("worker stopped", err=True)


@click.command(cls=Command)
@click.argument("name")
@click.option(
    "--input",
    "input_json",
    default="[]",
    show_default=True,
    help="JSON array of the workflow's positional arguments.",
)
@click.option("--id", "workflow_id", help="Workflow id (starting an existing id is a no-op).")
@click.option("--wait", is_flag=True, help="Run it here and print the result.")
@click.option("--timeout", type=float, help="With --wait: seconds to wait.")
@click.option("--queue", help="Put it on this queue (declared by the app).")
@click.option(
    "--priority", type=int, default=0, show_default=True, help="With --queue: lower first."
)
@click.option(
    "--dedup-id",
    help="With --queue: refused (exit 1) while a workflow of the queue started with this "
    "dedup id has not ended.",
)
@click.option(
    "--partition",
    help="With a partitioned --queue (required there): the partition its limits count in.",
)
@click.option(
    "--delay",
    metavar="DURATION",
    help="Run it no sooner than this from now: seconds, or 30s, 10m, 2h, 1d.",
)
@output_option
@pass_context
@friendly
def start(
    ctx: Context,
    name: str,
    input_json: str,
    workflow_id: str | None,
    wait: bool,
    timeout: float | None,
    queue: str | None,
    priority: int,
    dedup_id: str | None,
    partition: str | None,
    delay: str | None,
    output: str,
) -> None:
    """Start workflow NAME; without --wait a running worker picks it up.

    Prints the workflow's id and status (and with --wait, its result as JSON on
    the next line); -o json prints one object with id, name, status (and result).
    With --delay it waits PENDING until then (queued or not).

    \b
    Example:
      duralog --app shop.workflows start checkout --input '["o-1", 1999]' --id order-o-1 --wait
      duralog --app shop.workflows start export --input '["acme"]' --queue exports \
        --partition acme --dedup-id export-acme --delay 10m
    """
    ctx.load_app()
    args = parse_json(input_json, "--input")
    if not isinstance(args, list):
        raise Problem("--input must be a JSON array of positional arguments, e.g. '[1, \"a\"]'", 2)
    try:  # a call the workflow cannot take is bad input: refused before the log is opened
        REGISTRY.get(name).check_call(*encode_call(args, {}), None)
    except ConfigurationError as exc:
        raise Problem(str(exc), 2) from None
    seconds = None if delay is None else parse_duration(delay, "--delay")
    with Engine(ctx.db, worker=wait, payload_codec=ctx.payload_codec) as engine:
        try:
            handle = engine.start(
                name,
                *args,
                id=workflow_id,
                queue=queue,
                priority=priority,
                dedup_id=dedup_id,
                partition=partition,
                delay=seconds,
            )
        except ConfigurationError as exc:  # a queue option the queue refuses: bad input
            raise Problem(str(exc), 2) from None
        found: dict[str, Any] = {"id": handle.id, "name": name}
        if wait:
            found["result"] = handle.result(timeout=timeout)
        found["status"] = handle.status().value
    lines = [f"{found['id']}  {found['status']}"]
    if wait:
        lines.append(json.dumps(found["result"], default=str))
    echo_one(output, found, lambda: lines)


#: How many of a workflow's forks ``show`` lists (the newest first).
_MOST_FORKS = 20


@click.command(cls=Command)
@click.argument("workflow_id")
@output_option
@pass_context
@friendly
def show(ctx: Context, workflow_id: str, output: str) -> None:
    """Status, input, result or error, and a readable timeline of one workflow.

    Encrypted values are decrypted with the keys in DURALOG_KEYS; without the
    key they show as <encrypted: key ID>. Exit 1 when its log is damaged.
    -o json: its index row, "state" (as `inspect`), "findings" (as `verify`) and
    "events" (as `history`) in one object.

    \b
    Example:
      duralog --db shop.db show order-o-1
      duralog --db shop.db show order-o-1 -o json | jq .status
    """
    store = ctx.store()
    try:
        report = show_report(ctx, store, workflow_id)
    finally:
        store.close()
    echo_one(output, report.data, report.lines)
    if not report.ok:
        sys.exit(1)


class ShowReport(NamedTuple):
    """What ``show`` prints of one workflow: ``data`` (-o json), ``lines`` (the table
    form, made on demand) and whether its log is intact (``ok``)."""

    data: dict[str, Any]
    lines: Callable[[], list[str]]
    ok: bool


def show_report(ctx: Context, store: EventStore, workflow_id: str) -> ShowReport:
    """Read what ``show`` prints of ``workflow_id`` from ``store`` (also the console's
    ``/api/workflows/{id}``); a ``Problem`` when the log holds no such workflow."""
    record = ctx.record(store, workflow_id)
    (found,) = verify_log(store, workflow_id)
    # A damaged log is shown too; encrypted values as `history` shows them.
    events = reveal_entries(store.read_events(workflow_id, verify=False), ctx.payload_codec)
    waiting = why_waiting(record, store.worker_records(), time.time())
    requests = _requests(store.inbox(workflow_id), ctx.payload_codec)
    forks = store.find_workflows(WorkflowQuery(forked_from=(workflow_id,)), _MOST_FORKS + 1)
    try:
        state = fold_all(workflow_id, events)
    except ValueError:  # a gap, or an event that refers to nothing: the timeline shows it
        state = None
    beats = [] if state is None else _heartbeats(store, state, ctx.payload_codec)
    data = {
        **msgspec.structs.asdict(record),
        "waiting": waiting,
        "heartbeats": beats,
        "inbox": [_request_json(r) for r in requests],
        "state": None if state is None else _format.state_json(state),
        "findings": found.findings,
        "forks": [{"workflow_id": f.id, "status": f.status.value} for f in forks],
        "events": msgspec.Raw(entries_json(events)),
    }
    return ShowReport(
        data,
        lambda: _show_lines(record, found, state, events, forks, waiting, requests, beats),
        found.ok,
    )


def _heartbeats(
    store: EventStore, state: WorkflowState, payload_codec: PayloadCodec | None
) -> list[dict[str, Any]]:
    """The last heartbeat details each step of this run that has not ended stored
    (running, or waiting to retry): step, seq, attempt, when they were stored and the
    details (an encrypted value shows as its marker unless the codec has its key)."""
    found = []
    for step in state.pending_steps():
        beat = store.get_heartbeat(state.workflow_id, step.seq)
        if beat is None or beat.run_id != state.run_id:
            continue  # none, or left by an earlier run under this id
        shown = reveal_payload(beat.details, payload_codec)
        found.append(
            {
                "step": step.name,
                "seq": step.seq,
                "attempt": beat.attempt,
                "at": beat.at,
                "details": msgspec.Raw(shown),
            }
        )
    return found


def _requests(items: list[InboxItem], payload_codec: PayloadCodec | None) -> list[LogEntry]:
    """What waits in a workflow's inbox, as the events its owner will make of it (seq
    0: not in the log yet), encrypted values as `history` shows them."""
    requests = []
    for item in items:
        payload = msgspec.Raw(item.payload) if item.payload is not None else ev.NULL
        event: ev.Event
        if item.kind == "signal":
            event = ev.SignalReceived(name=item.name or "", payload=payload)
        elif item.kind == "cancel":
            event = ev.CancelRequested(reason=item.name or "")
        elif item.kind == "pause":
            event = ev.PauseRequested(reason=item.name or "")
        elif item.kind == "resume":
            event = ev.ResumeRequested()
        elif item.kind in ("child_completed", "child_failed"):
            seq_text = (item.name or "").partition(":")[0]
            child = int(seq_text) if seq_text.isdigit() else 0
            try:
                event = (
                    ev.ChildCompleted(child_seq=child, result=payload)
                    if item.kind == "child_completed"
                    else ev.ChildFailed(
                        child_seq=child, error=msgspec.json.decode(payload, type=ErrorDetails)
                    )
                )
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                continue  # garbage: its owner drops it too
        else:
            continue
        requests.append(LogEntry(0, item.at, event))
    return reveal_entries(requests, payload_codec)


def _request_json(request: LogEntry) -> dict[str, Any]:
    """A waiting request as JSON: the event it will become, without a seq."""
    found: dict[str, Any] = json.loads(entry_json(request))
    del found["seq"]
    return found


def _show_lines(
    record: WorkflowRecord,
    found: WorkflowCheck,
    state: WorkflowState | None,
    events: list[LogEntry],
    forks: list[WorkflowRecord],
    waiting: str | None,
    requests: list[LogEntry],
    beats: list[dict[str, Any]],
) -> list[str]:
    lines = [f"workflow  {record.id} ({record.name})"]
    lines.append(
        f"status    {record.status.value}" + (f": {record.reason}" if record.reason else "")
    )
    if record.queue is not None:
        lines.append(f"queue     {_format.queue_place(record)}")
    if record.start_at is not None:
        lines.append(f"starts    {_format.when(record.start_at)} (a delayed start)")
    if waiting is not None:
        lines.append(f"waiting   {waiting}")
    if record.recoveries and not record.status.is_terminal:
        lines.append(
            f"recovered {record.recoveries} times in a row without progress: its worker "
            "died or stalled while one of its steps ran (max_recovery_attempts)"
        )
    for beat in beats:
        lines.append(
            f"heartbeat {beat['step']} (seq {beat['seq']}, attempt {beat['attempt']}): "
            f"{_format.payload(beat['details'], 200)} (stored {_format.when(beat['at'])})"
        )
    for request in requests:
        said = _format.describe(request, {})
        lines.append(
            f"inbox     {request.kind}{' ' + said if said else ''}"
            f" (sent {_format.when(request.at)}, not yet taken)"
        )
    if not found.ok:
        first, more = found.findings[0], len(found.findings) - 1
        also = f" (and {more} more)" if more else ""
        hint = verify_hint(record.id)
        lines.append(f"damaged   {where(first)}: {first.problem}{also}; see `{hint}`")
    if state is not None:
        lines += _state_lines(state, record.reason)
    if forks:
        shown = ", ".join(f"{f.id} ({f.status.value})" for f in forks[:_MOST_FORKS])
        beyond = f" (the newest {_MOST_FORKS})" if len(forks) > _MOST_FORKS else ""
        lines.append(f"forks     {shown}{beyond}")
    lines.append(f"events    {len(events)}\n")
    return lines + _format.timeline(events)


def _state_lines(state: WorkflowState, reason: str | None) -> list[str]:
    lines = [f"input     {_format.payload(state.args, 200)}"]
    if state.status == "COMPLETED":
        lines.append(f"result    {_format.payload(state.result, 200)}")
    if state.error is not None:
        lines.append(f"error     {state.error}")
    lines.append(f"started   {_format.when(state.started_at)}")
    origin = state.forked_from
    if origin is not None:
        lines.append(
            f"forked    from {origin.workflow_id} (run {origin.run}) at seq {origin.seq}: "
            f"events 2-{origin.seq - 1} are its copies"
            if origin.seq > 2
            else f"forked    from {origin.workflow_id} (run {origin.run}): a restart"
        )
    if state.previous_run:
        lines.append(f"run       {state.run}, continued from {state.previous_run}")
    if state.status == "CONTINUED" or (reason or "").startswith("continued as new"):
        lines.append(f"next run  {reason.split(': ', 1)[-1] if reason else '-'}")
    return lines


@click.command(cls=Command)
@click.argument("workflow_id")
@output_option
@pass_context
@friendly
def history(ctx: Context, workflow_id: str, output: str) -> None:
    """Print a workflow's events: a timeline, or JSON (-o json: one array; -o jsonl: one
    event per line), each event an object with seq, at, kind and its fields.

    Encrypted values are decrypted with the keys in DURALOG_KEYS; without the
    key they show as <encrypted: key ID>.

    \b
    Example:
      duralog --db shop.db history order-o-1 --json | jq '.[].kind'
    """
    entries = ctx.readable_history(workflow_id).events
    if output == "json":
        click.echo(entries_json(entries).decode())
    elif output == "jsonl":
        for entry in entries:
            click.echo(entry_json(entry).decode())
    else:
        for line in _format.timeline(entries):
            click.echo(line)


@click.command(cls=Command)
@click.argument("workflow_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    required=True,
    help="File to write ('-' for stdout).",
)
@pass_context
@friendly
def export(ctx: Context, workflow_id: str, output: str) -> None:
    """Write a workflow's history as a self-describing JSON file.

    The file is a copy of the log: what the log keeps encrypted stays encrypted
    (replaying it needs the same DURALOG_KEYS). A new file is readable by its
    owner only (mode 0600).

    \b
    Example:
      duralog --db prod.db export order-o-1 -o order-o-1.json
    """
    data = dump_history(ctx.history(workflow_id))
    if output == "-":
        click.echo(data.decode(), nl=False)
        return
    try:
        write_private(Path(output), data)
    except OSError as exc:
        raise Problem(f"cannot write {output}: {exc.strerror}", 2) from None
    click.echo(f"wrote {output}", err=True)


@click.command(cls=Command)
@click.argument("workflow_id")
@click.option("--at", "at", type=int, help="Derive the state from the first AT events.")
@output_option
@pass_context
@friendly
def inspect(ctx: Context, workflow_id: str, at: int | None, output: str) -> None:
    """The state derived from the log at any event: time travel.

    Encrypted values are decrypted with the keys in DURALOG_KEYS; without the
    key they show as <encrypted: key ID>.

    \b
    Example:
      duralog --db shop.db inspect order-o-1 --at 7
    """
    history = ctx.readable_history(workflow_id)
    if at is not None and not 1 <= at <= len(history.events):
        raise Problem(f"--at must be between 1 and {len(history.events)} for {workflow_id}", 2)
    state = fold_all(workflow_id, [e for e in history.events if at is None or e.seq <= at])
    echo_one(output, _format.state_json(state), lambda: _format.state_lines(state))
