"""``duralog verify``: is the log intact? Checksum chains, seqs, ends, and the index."""

from __future__ import annotations

import shlex
import sys

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
from duralog.errors import WorkflowNotFound
from duralog.store.base import EventStore
from duralog.store.verify import Finding, WorkflowCheck
from duralog.store.verify import verify as verify_log


@click.command(cls=Command)
@click.argument("workflow_id", required=False)
@click.option("--all", "all_", is_flag=True, help="Every workflow in --db.")
@lines_output_option
@pass_context
@friendly
def verify(ctx: Context, workflow_id: str | None, all_: bool, output: str) -> None:
    """Check that the log is intact: exit 0 intact, 1 damaged, 2 cannot read it.

    For each workflow: its checksum chain (an event changed, inserted or removed),
    gapless seqs from 1, nothing after its terminal event, each event's body
    against its kind, and its index row (status, last seq) against its log. Every
    problem is printed with the workflow id and the seq. --json (-o jsonl) prints
    one JSON object per workflow as it goes; -o json one array.

    \b
    Example:
      duralog --db shop.db verify --all
      duralog --db shop.db verify order-o-1 --json
    """
    if bool(workflow_id) == all_:
        raise Problem("give a workflow ID or --all", 2)
    try:
        store = ctx.store()
    except Problem as exc:  # no log there: it cannot be read
        raise Problem(exc.message, 2) from None
    try:
        intact, damaged = _report(store, workflow_id, output)
    except WorkflowNotFound as exc:
        raise Problem(str(exc), 2) from None
    finally:
        store.close()
    if all_ and output == "table":
        click.echo(f"{intact + damaged} workflows: {intact} intact, {damaged} damaged")
    sys.exit(1 if damaged else 0)


def _report(store: EventStore, workflow_id: str | None, output: str) -> tuple[int, int]:
    intact = damaged = 0
    as_json, out = output != "table", JsonOut(output)
    progress = workflow_id is None and not as_json and sys.stderr.isatty()
    for check in verify_log(store, workflow_id):
        intact, damaged = intact + check.ok, damaged + (not check.ok)
        if as_json:
            out.add(check_json(check))
        elif not check.ok:
            for line in damage_lines(check):
                click.echo(line)
        elif workflow_id is not None:
            click.echo(f"{check.workflow_id}: intact ({check.events} events)")
        if progress and (intact + damaged) % 100 == 0:
            click.echo(f"\r{intact} intact, {damaged} damaged", nl=False, err=True)
    out.close()
    if progress:
        click.echo("\r", nl=False, err=True)
    return intact, damaged


def check_json(check: WorkflowCheck) -> str:
    """One workflow's check as a JSON line: workflow_id, events, ok, findings."""
    return msgspec.json.encode(
        {
            "workflow_id": check.workflow_id,
            "events": check.events,
            "ok": check.ok,
            "findings": check.findings,
        }
    ).decode()


def damage_lines(check: WorkflowCheck) -> list[str]:
    """A damaged workflow's problems, one per line, under a heading."""
    count = len(check.findings)
    head = f"{check.workflow_id}: DAMAGED ({count} problem{'s' if count != 1 else ''})"
    return [head, *(f"  {where(f)}: {f.problem}" for f in check.findings)]


def where(finding: Finding) -> str:
    """``seq 12``, or ``index`` for a problem of the whole workflow."""
    return f"seq {finding.seq}" if finding.seq else "index"


def verify_hint(workflow_id: str) -> str:
    """The command that lists every problem of one workflow."""
    return f"duralog verify {shlex.quote(workflow_id)}"
