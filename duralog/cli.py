"""The ``duralog`` command line (also ``python -m duralog``).

Commands stay thin: parse, call the library, print. Errors are one line on
stderr and a non-zero exit code (2 for unusable input such as a malformed
history file), never a traceback.
"""

from __future__ import annotations

import json
import os
import pdb
import signal as os_signal
import sys
import sysconfig
import threading
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
from duralog.cli_observe import stats, tail
from duralog.cli_schedules import schedules
from duralog.cli_store import migrate_store, prune
from duralog.cli_verify import check_json, damage_lines, verify, verify_hint, where
from duralog.engine.engine import Engine
from duralog.engine.queues import QUEUES, resolve
from duralog.errors import DuralogError, HistoryFileError, PayloadError, StoreError
from duralog.replay.checker import ReplayReport, check
from duralog.replay.definitions import REGISTRY
from duralog.replay.history import History, dump_history, entries_json, load_history
from duralog.replay.state import Input, WorkflowState, fold_all
from duralog.store import codec
from duralog.store.base import WorkflowStatus
from duralog.store.codec import reveal_entries
from duralog.store.crypto import AesGcmCodec
from duralog.store.verify import WorkflowCheck
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
    ctx.obj = Context(db, app)
    if os.environ.get("DURALOG_KEYS"):  # encrypted payloads: read them with these keys
        try:
            codec.install(AesGcmCodec.from_env())
        except DuralogError as exc:
            raise Problem(str(exc), 2) from None


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
    queues = [resolve(name, QUEUES) for name in queue_names] or None
    stop = threading.Event()
    for sig in (os_signal.SIGINT, os_signal.SIGTERM):
        os_signal.signal(sig, lambda *_: stop.set())
    with Engine(
        ctx.db, max_threads=concurrency, queues=queues, max_workflows=max_workflows
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
    with Engine(ctx.db, worker=wait) as engine:
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
        record = store.get_workflow(workflow_id)
        if record is None:
            raise Problem(f"no workflow with id {workflow_id!r} in {ctx.where}")
        (found,) = verify_log(store, workflow_id)
        # A damaged log is shown too; encrypted values as `history` shows them.
        events = reveal_entries(store.read_events(workflow_id, verify=False))
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
@click.argument("workflow_id", required=False)
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(),
    help="A history file from `duralog export`, or a folder of them (repeatable).",
)
@click.option("--all", "all_", is_flag=True, help="Every workflow in --db.")
@click.option("--name", help="With --all: only workflows of this name.")
@click.option("--until", type=int, help="Stop after this seq and report where the code is.")
@click.option("--break-at", type=int, help="Drop into pdb in the workflow code at this seq.")
@click.option("--json", "as_json", is_flag=True, help="One JSON report per line.")
@pass_context
@friendly
def replay(
    ctx: Context,
    workflow_id: str | None,
    files: tuple[str, ...],
    all_: bool,
    name: str | None,
    until: int | None,
    break_at: int | None,
    as_json: bool,
) -> None:
    """Replay histories against the current code; exit 1 if any diverges.

    No step runs: recorded results are fed to the code, and every decision it
    makes is compared with the recorded one. An encrypted history needs its keys
    in DURALOG_KEYS; without them it exits 2 naming the missing key.

    \b
    Examples:
      duralog --db shop.db --app shop.workflows replay order-o-1
      duralog --app shop.workflows replay --file order-o-1.json
      duralog --db prod-copy.db --app shop.workflows replay --all   # before a deploy
    """
    ctx.load_app()
    if sum(bool(x) for x in (workflow_id, files, all_)) != 1:
        raise Problem("give exactly one of: a workflow ID, --file FILE, or --all", 2)
    histories = list(_histories(ctx, workflow_id, files, all_, name))
    hook = _breakpoint_at(break_at) if break_at is not None else None
    agree = diverge = damaged = 0
    show_progress = all_ and not as_json and len(histories) > 1
    for i, history in enumerate(histories, 1):
        if isinstance(history, WorkflowCheck):  # a damaged log: nothing to replay
            damaged += 1
            click.echo(check_json(history) if as_json else "\n".join(damage_lines(history)))
        else:
            try:
                report = check(history, REGISTRY, until=until, on_input=hook)
            except PayloadError as exc:  # values it cannot decrypt: it cannot be replayed
                raise Problem(str(exc), 2) from None
            agree, diverge = agree + report.ok, diverge + (not report.ok)
            if as_json:
                click.echo(msgspec.json.encode(report).decode())
            elif not report.ok or not show_progress:
                click.echo(_report_text(report))
        if show_progress:
            click.echo(
                f"\r[{i}/{len(histories)}] {agree} agree, {diverge} diverge", nl=False, err=True
            )
    if show_progress:
        click.echo("", err=True)
    if len(histories) > 1 and not as_json:
        click.echo(
            f"{agree} agree, {diverge} diverge" + (f", {damaged} damaged" if damaged else "")
        )
    sys.exit(1 if diverge or damaged else 0)


def _histories(
    ctx: Context, workflow_id: str | None, files: tuple[str, ...], all_: bool, name: str | None
) -> Any:
    if workflow_id:
        yield _checked_history(ctx, workflow_id)
    paths: list[Path] = []
    for file in files:  # a folder stands for the .json files in it
        path = Path(file)
        if not path.is_dir():
            paths.append(path)
        elif in_folder := sorted(path.glob("*.json")):
            paths += in_folder
        else:
            raise Problem(f"{file} is a directory with no .json history files in it", 2)
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise Problem(f"cannot read {path}: {exc.strerror}", 2) from None
        try:
            yield load_history(data)
        except HistoryFileError as exc:
            raise Problem(f"{path}: {exc}", 2) from None
    if all_:
        store = ctx.store()
        try:
            ids = [r.id for r in store.list_workflows(name=name)]
        finally:
            store.close()
        for found_id in ids:
            yield _checked_history(ctx, found_id)


def _checked_history(ctx: Context, workflow_id: str) -> History | WorkflowCheck:
    """One workflow's history from the log, or what ``verify`` finds wrong with it."""
    store = ctx.store()
    try:
        record = store.get_workflow(workflow_id)
        if record is None:
            raise Problem(f"no workflow with id {workflow_id!r} in {ctx.where}")
        (found,) = verify_log(store, workflow_id)
        if not found.ok:
            return found
        return History(workflow_id, record.name, store.read_events(workflow_id))
    finally:
        store.close()


def _report_text(report: ReplayReport) -> str:
    head = f"{report.workflow_id} ({report.workflow_name}): "
    if not report.ok:
        return (
            f"{head}DIVERGES at seq {report.seq}\n"
            f"  recorded:  {report.recorded or 'nothing'}\n"
            f"  attempted: {report.attempted or 'no further decision'}\n"
            f"  code:      {report.location or 'unknown'}\n"
            "  hint: keep the old path for running workflows behind "
            '`if duralog.patched("my-change")`, or let them finish on the old code'
        )
    where = "finished" if report.finished else f"waiting at {report.waiting_at}"
    return f"{head}agrees (replayed {report.replayed_to} of {report.events} events, {where})"


def _breakpoint_at(seq: int) -> Callable[[Input], None]:
    fired = False

    def hook(item: Input) -> None:
        nonlocal fired
        if fired or item.seq < seq:
            return
        fired = True
        click.echo(
            f"-- replay reached seq {item.seq} ({item.kind}); pdb stops at the line of workflow "
            "code that receives it: `n` steps, `p name` prints, `c` continues --",
            err=True,
        )
        _WorkflowPdb().set_trace(sys._getframe(1))

    return hook


class _WorkflowPdb(pdb.Pdb):
    """pdb that only stops in user code: the first line it shows is the workflow
    code resuming with the recorded value, not duralog's or the stdlib's frames."""

    _library = tuple(
        p for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]} if p
    )

    def stop_here(self, frame: Any) -> bool:
        module = frame.f_globals.get("__name__", "")
        filename = frame.f_code.co_filename
        # Generated code (annotations evaluated by typing, dataclass methods) says
        # "<string>": not the user's workflow either.
        if module.partition(".")[0] in ("duralog", "click") or filename.startswith(
            (*self._library, "<")
        ):
            return False
        return bool(super().stop_here(frame))


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


@main.command()
@click.argument("workflow_id")
@click.option("--reason", default="", help="Recorded with the cancel request.")
@pass_context
@friendly
def cancel(ctx: Context, workflow_id: str, reason: str) -> None:
    """Ask a workflow to cancel (CancelledError at its current await).

    \b
    Example:
      duralog --db shop.db cancel order-o-1 --reason "customer asked"
    """
    if reason:
        ctx.refuse_clear_text(workflow_id, "a reason")
    with ctx.handle(workflow_id) as handle:
        handle.cancel(reason)
    click.echo(f"cancel requested for {workflow_id}", err=True)


@main.command()
@click.argument("workflow_id")
@click.option("--reason", default="", help="Recorded with the pause.")
@pass_context
@friendly
def pause(ctx: Context, workflow_id: str, reason: str) -> None:
    """Pause a workflow: no new step starts and no timer fires until `resume`.

    \b
    Example:
      duralog --db shop.db pause order-o-1 --reason "payment provider outage"
    """
    if reason:
        ctx.refuse_clear_text(workflow_id, "a reason")
    with ctx.handle(workflow_id) as handle:
        handle.pause(reason)
    click.echo(f"pause requested for {workflow_id}", err=True)


@main.command()
@click.argument("workflow_id")
@pass_context
@friendly
def resume(ctx: Context, workflow_id: str) -> None:
    """Resume a paused workflow.

    \b
    Example:
      duralog --db shop.db resume order-o-1
    """
    with ctx.handle(workflow_id) as handle:
        handle.resume()
    click.echo(f"resume requested for {workflow_id}", err=True)


main.add_command(schedules)
main.add_command(prune)
main.add_command(migrate_store)
main.add_command(tail)
main.add_command(stats)
main.add_command(verify)
