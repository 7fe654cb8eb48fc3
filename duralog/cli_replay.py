"""``duralog replay``: check histories against the current code, or debug one with pdb.

The command reads the histories (the log, files, folders) and prints; what a replay
decides, the breakpoint and the report texts are ``duralog.replay.debug``'s.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import click
import msgspec

from duralog._cli_common import (
    Command,
    Context,
    JsonOut,
    Problem,
    friendly,
    lines_output_option,
    pass_context,
)
from duralog.cli_verify import check_json, damage_lines
from duralog.errors import HistoryFileError, PayloadError, RegistrationError
from duralog.replay.checker import check
from duralog.replay.debug import (
    ReplayTally,
    WorkflowPdb,
    breakpoint_at,
    report_text,
    stop_banner,
)
from duralog.replay.definitions import REGISTRY
from duralog.replay.history import History, load_history
from duralog.replay.state import Input
from duralog.store.base import WorkflowQuery
from duralog.store.verify import WorkflowCheck, verify_read


@click.command(cls=Command)
@click.argument("workflow_id", required=False)
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(),
    help="A history file from `duralog export`, or a folder of them (repeatable).",
)
@click.option("--all", "all_", is_flag=True, help="Every workflow in --db.")
@click.option(
    "--name", "names", multiple=True, help="With --all: only workflows of this name (repeatable)."
)
@click.option("--until", type=int, help="Stop after this seq and report where the code is.")
@click.option("--break-at", type=int, help="Drop into pdb in the workflow code at this seq.")
@lines_output_option
@pass_context
@friendly
def replay(
    ctx: Context,
    workflow_id: str | None,
    files: tuple[str, ...],
    all_: bool,
    names: tuple[str, ...],
    until: int | None,
    break_at: int | None,
    output: str,
) -> None:
    """Replay histories against the current code; exit 1 if any diverges.

    No step runs: recorded results are fed to the code, and every decision it
    makes is compared with the recorded one. A workflow whose code no --app
    registers is skipped, and counted in the last line (one given by ID is an
    error). An encrypted history needs its keys
    in DURALOG_KEYS; without them it exits 2 naming the missing key. --json (-o
    jsonl) prints one JSON report per history as it goes; -o json one array.

    \b
    Examples:
      duralog --db shop.db --app shop.workflows replay order-o-1
      duralog --app shop.workflows replay --file order-o-1.json
      duralog --db prod-copy.db --app shop.workflows replay --all   # before a deploy
    """
    ctx.load_app()
    if sum(bool(x) for x in (workflow_id, files, all_)) != 1:
        raise Problem("give exactly one of: a workflow ID, --file FILE, or --all", 2)
    if names and not all_:
        raise Problem("--name goes with --all (it picks the workflows --all replays)", 2)
    histories = list(_histories(ctx, workflow_id, files, all_, names))
    debuggers: list[WorkflowPdb] = []
    hook = (
        breakpoint_at(break_at, lambda item: debuggers.append(_debug(item)))
        if break_at is not None
        else None
    )
    tally = ReplayTally()
    as_json, out = output != "table", JsonOut(output)
    # Many histories: print only what diverges, then the counts; the running count goes
    # to stderr only when it is a terminal (a log file gets no \r fragments).
    only_failures = all_ and not as_json and len(histories) > 1
    show_progress = only_failures and sys.stderr.isatty()
    for i, history in enumerate(histories, 1):
        if isinstance(history, WorkflowCheck):  # a damaged log: nothing to replay
            tally.add_damaged()
            if as_json:
                out.add(check_json(history))
            else:
                click.echo("\n".join(damage_lines(history)))
        else:
            try:
                report = check(
                    history, REGISTRY, until=until, on_input=hook, payload_codec=ctx.payload_codec
                )
            except PayloadError as exc:  # values it cannot decrypt: it cannot be replayed
                raise Problem(str(exc), 2) from None
            except RegistrationError as exc:  # no code for it in this process
                if len(histories) == 1:
                    raise
                tally.add_skipped(history.workflow_name)
                if as_json:
                    out.add(_skipped_json(history, str(exc)))
                continue
            if debuggers and debuggers[-1].quit_by_user:  # q, or the end of pdb's input
                _stopped_by_the_user(history, out, as_json)
            tally.add(report)
            if as_json:
                out.add(msgspec.json.encode(report).decode())
            elif not report.ok or not only_failures:
                click.echo(report_text(report))
        if show_progress:
            click.echo(f"\r[{i}/{len(histories)}] {tally.progress()}", nl=False, err=True)
    if show_progress:
        click.echo("", err=True)
    if hook is not None and not hook.fired:
        last = max(
            (h.events[-1].seq for h in histories if isinstance(h, History) and h.events), default=0
        )
        click.echo(
            f"warning: --break-at {break_at} is past the end of what was replayed (its last "
            f"seq is {last}): nothing stopped",
            err=True,
        )
    out.close()
    if len(histories) > 1 and not as_json:
        click.echo(tally.summary())
    sys.exit(tally.exit_code)


def _skipped_json(history: History, reason: str) -> str:
    found = {"workflow_id": history.workflow_id, "workflow_name": history.workflow_name}
    return msgspec.json.encode({**found, "skipped": reason}).decode()


def _debug(item: Input) -> WorkflowPdb:
    """``--break-at``: say where replay is, then hand the terminal to pdb."""
    click.echo(stop_banner(item), err=True)
    paths = sysconfig.get_paths()
    library = (paths["stdlib"], paths["purelib"])
    debugger = WorkflowPdb(library)
    debugger.set_trace(sys._getframe(2))  # pdb's own stdin: readline works
    return debugger


def _stopped_by_the_user(history: History, out: JsonOut, as_json: bool) -> NoReturn:
    """The user quit pdb: the replay ends there, and says nothing about the code."""
    found = {"workflow_id": history.workflow_id, "workflow_name": history.workflow_name}
    if as_json:
        out.add(msgspec.json.encode({**found, "stopped": "by the user"}).decode())
        out.close()
    else:
        click.echo(f"{history.workflow_id} ({history.workflow_name}): replay stopped by the user")
    sys.exit(0)


def _histories(
    ctx: Context,
    workflow_id: str | None,
    files: tuple[str, ...],
    all_: bool,
    names: tuple[str, ...],
) -> Iterator[History | WorkflowCheck]:
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
            ids = [r.id for r in store.find_workflows(WorkflowQuery(names=names))]
        finally:
            store.close()
        for found_id in ids:
            yield _checked_history(ctx, found_id)


def _checked_history(ctx: Context, workflow_id: str) -> History | WorkflowCheck:
    """One workflow's history from the log, or what ``verify`` finds wrong with it."""
    store = ctx.store()
    try:
        record = ctx.record(store, workflow_id)
        found, events = verify_read(store, workflow_id)  # each row read and checked once
        if not found.ok:
            return found
        return History(workflow_id, record.name, events)
    finally:
        store.close()
