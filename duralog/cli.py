"""The ``duralog`` command line (also ``python -m duralog``).

Commands stay thin: parse, call the library, print. Errors are one line on
stderr and a non-zero exit code (2 for unusable input such as a malformed
history file), never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import msgspec

from duralog import _format
from duralog._cli_common import (
    Context,
    Problem,
    friendly,
    log_to_stderr,
    parse_json,
    pass_context,
    write_private,
)
from duralog._signals import StopSignals
from duralog.cli_observe import stats, tail
from duralog.cli_replay import replay
from duralog.cli_schedules import schedules
from duralog.cli_store import migrate_store, prune
from duralog.cli_verify import verify, verify_hint, where
from duralog.engine.engine import Engine
from duralog.engine.handle import WorkflowHandle
from duralog.engine.queues import QUEUES, resolve
from duralog.errors import DuralogError, StoreError
from duralog.replay.definitions import REGISTRY
from duralog.replay.history import dump_history, entries_json
from duralog.replay.state import WorkflowState, fold_all
from duralog.store.base import WorkflowStatus
from duralog.store.codec import reveal_entries
from duralog.store.crypto import AesGcmCodec
from duralog.store.verify import verify as verify_log


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    envvar="DURALOG_DB",
    default="duralog.db",
    show_default=True,
    help="The log: a SQLite path or a postgresql:// URL (env DURALOG_DB).",
)
@click.option("--app", envvar="DURALOG_APP", help="Module that registers your workflows.")
@click.version_option(package_name="duralog")
@click.pass_context
def main(ctx: click.Context, db: str, app: str | None) -> None:
    """duralog: durable workflows on an embedded log.

    A log written with a payload codec (Engine(payload_codec=AesGcmCodec...)) keeps
    payloads, errors and reasons encrypted: commands decrypt them with the keys in
    DURALOG_KEYS ("k2:<base64>,k1:<base64>") and show <encrypted: key ID> where
    no key is given. Passwords in --db never show in any output.

    \b
    Example:
      duralog --db shop.db list
      duralog --db shop.db --app shop.workflows replay --all
      DURALOG_KEYS="k1:$KEY" duralog --db shop.db show order-o-1
    """
    payload_codec = None
    if os.environ.get("DURALOG_KEYS"):  # encrypted payloads: read them with these keys
        try:
            payload_codec = AesGcmCodec.from_env()
        except DuralogError as exc:
            raise Problem(str(exc), 2) from None
    ctx.obj = Context(db, app, payload_codec)


@main.command()
@click.option(
    "--concurrency",
    type=int,
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


@main.command()
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
) -> None:
    """Start workflow NAME; without --wait a running worker picks it up.

    \b
    Example:
      duralog --app shop.workflows start checkout --input '["o-1", 1999]' --id order-o-1 --wait
    """
    ctx.load_app()
    args = parse_json(input_json, "--input")
    if not isinstance(args, list):
        raise Problem("--input must be a JSON array of positional arguments, e.g. '[1, \"a\"]'", 2)
    REGISTRY.get(name)
    with Engine(ctx.db, worker=wait, payload_codec=ctx.payload_codec) as engine:
        handle = engine.start(name, *args, id=workflow_id, queue=queue, priority=priority)
        click.echo(handle.id)
        if wait:
            click.echo(json.dumps(handle.result(timeout=timeout), default=str))


@main.command(name="list")
@click.option("--status", type=click.Choice([s.value for s in WorkflowStatus]), help="Filter.")
@click.option("--name", help="Only workflows of this name.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@pass_context
@friendly
def list_(ctx: Context, status: str | None, name: str | None, limit: int, as_json: bool) -> None:
    """List workflows, newest first.

    \b
    Example:
      duralog --db shop.db list --status RUNNING
    """
    store = ctx.store()
    try:
        records = store.list_workflows(
            WorkflowStatus(status) if status else None, name, limit=limit
        )
    finally:
        store.close()
    if as_json:
        click.echo(msgspec.json.encode(records).decode())
        return
    for record in records:
        click.echo(_format.record_row(record))


@main.command()
@click.argument("workflow_id")
@pass_context
@friendly
def show(ctx: Context, workflow_id: str) -> None:
    """Status, input, result or error, and a readable timeline of one workflow.

    Encrypted values are decrypted with the keys in DURALOG_KEYS; without the
    key they show as <encrypted: key ID>.

    \b
    Example:
      duralog --db shop.db show order-o-1
    """
    store = ctx.store()
    try:
        record = ctx.record(store, workflow_id)
        (found,) = verify_log(store, workflow_id)
        # A damaged log is shown too; encrypted values as `history` shows them.
        events = reveal_entries(store.read_events(workflow_id, verify=False), ctx.payload_codec)
    finally:
        store.close()
    click.echo(f"workflow  {workflow_id} ({record.name})")
    click.echo(f"status    {record.status.value}" + (f": {record.reason}" if record.reason else ""))
    if not found.ok:
        first, more = found.findings[0], len(found.findings) - 1
        also = f" (and {more} more)" if more else ""
        hint = verify_hint(workflow_id)
        click.echo(f"damaged   {where(first)}: {first.problem}{also}; see `{hint}`")
    try:
        state = fold_all(workflow_id, events)
    except ValueError:  # a gap, or an event that refers to nothing: the timeline shows it
        state = None
    if state is not None:
        _show_state(state, record.reason)
    click.echo(f"events    {len(events)}\n")
    for line in _format.timeline(events):
        click.echo(line)
    if not found.ok:
        sys.exit(1)


def _show_state(state: WorkflowState, reason: str | None) -> None:
    click.echo(f"input     {_format.payload(state.args, 200)}")
    if state.status == "COMPLETED":
        click.echo(f"result    {_format.payload(state.result, 200)}")
    if state.error is not None:
        click.echo(f"error     {state.error}")
    click.echo(f"started   {_format.when(state.started_at)}")
    if state.previous_run:
        click.echo(f"run       {state.run}, continued from {state.previous_run}")
    if state.status == "CONTINUED" or (reason or "").startswith("continued as new"):
        click.echo(f"next run  {reason.split(': ', 1)[-1] if reason else '-'}")


@main.command()
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of events (seq, at, kind...).")
@pass_context
@friendly
def history(ctx: Context, workflow_id: str, as_json: bool) -> None:
    """Print a workflow's events.

    Encrypted values are decrypted with the keys in DURALOG_KEYS; without the
    key they show as <encrypted: key ID>.

    \b
    Example:
      duralog --db shop.db history order-o-1 --json | jq '.[].kind'
    """
    entries = ctx.readable_history(workflow_id).events
    if as_json:
        click.echo(entries_json(entries).decode())
        return
    for line in _format.timeline(entries):
        click.echo(line)


@main.command()
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


@main.command()
@click.argument("workflow_id")
@click.option("--at", "at", type=int, help="Derive the state from the first AT events.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
@friendly
def inspect(ctx: Context, workflow_id: str, at: int | None, as_json: bool) -> None:
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
    if as_json:
        click.echo(json.dumps(_format.state_json(state)))
        return
    for line in _format.state_lines(state):
        click.echo(line)


@main.command()
@click.argument("workflow_id")
@click.argument("name")
@click.option("--payload", default="null", show_default=True, help="The signal's JSON payload.")
@pass_context
@friendly
def signal(ctx: Context, workflow_id: str, name: str, payload: str) -> None:
    """Send signal NAME to a workflow; its owner delivers it, whichever process that is.

    \b
    Example:
      duralog --db shop.db signal order-o-1 approval --payload '{"by": "ana"}'
    """
    value = parse_json(payload, "--payload")
    if value is not None:
        ctx.refuse_clear_text(workflow_id, "a signal payload")
    with ctx.handle(workflow_id) as handle:
        handle.signal(name, value)
    click.echo(f"sent {name} to {workflow_id}", err=True)


def _control(
    verb: str,
    act: Callable[[WorkflowHandle[Any], str], None],
    doc: str,
    reason_help: str | None,
) -> click.Command:
    """The template of the commands that ask a workflow to change course (``cancel``,
    ``pause``, ``resume``): ``act`` on the workflow's handle (with the ``--reason``
    the command takes when ``reason_help`` is given), then say "<verb> requested
    for ID" on stderr."""

    def command(ctx: Context, workflow_id: str, reason: str = "") -> None:
        if reason:
            ctx.refuse_clear_text(workflow_id, "a reason")
        with ctx.handle(workflow_id) as handle:
            act(handle, reason)
        click.echo(f"{verb} requested for {workflow_id}", err=True)

    command.__doc__ = doc
    decorated = pass_context(friendly(command))
    if reason_help is not None:
        decorated = click.option("--reason", default="", help=reason_help)(decorated)
    return click.command(name=verb)(click.argument("workflow_id")(decorated))


main.add_command(
    _control(
        "cancel",
        lambda handle, reason: handle.cancel(reason),
        """Ask a workflow to cancel (CancelledError at its current await).

    \b
    Example:
      duralog --db shop.db cancel order-o-1 --reason "customer asked"
    """,
        reason_help="Recorded with the cancel request.",
    )
)
main.add_command(
    _control(
        "pause",
        lambda handle, reason: handle.pause(reason),
        """Pause a workflow: no new step starts and no timer fires until `resume`.

    \b
    Example:
      duralog --db shop.db pause order-o-1 --reason "payment provider outage"
    """,
        reason_help="Recorded with the pause.",
    )
)
main.add_command(
    _control(
        "resume",
        lambda handle, _: handle.resume(),
        """Resume a paused workflow.

    \b
    Example:
      duralog --db shop.db resume order-o-1
    """,
        reason_help=None,
    )
)
main.add_command(schedules)
main.add_command(prune)
main.add_command(migrate_store)
main.add_command(tail)
main.add_command(stats)
main.add_command(verify)
main.add_command(replay)
