"""Keeping a log: ``duralog prune`` (retention) and ``duralog migrate-store`` (copy a log)."""

from __future__ import annotations

import datetime as dt

import click

from duralog import _format
from duralog._cli_common import (
    Command,
    Context,
    Problem,
    echo_items,
    echo_one,
    friendly,
    output_option,
    pass_context,
    path_exists,
)
from duralog.store.copy import copy_store
from duralog.store.open import is_postgres, open_store, redact


@click.command(cls=Command)
@click.option(
    "--completed-before",
    "before",
    required=True,
    help="A date or time (ISO 8601; UTC unless it says otherwise), e.g. 2026-11-01.",
)
@click.option("--yes", is_flag=True, help="Delete. Without it, only show what would go.")
@output_option
@pass_context
@friendly
def prune(ctx: Context, before: str, yes: bool, output: str) -> None:
    """Remove finished workflows (and their events) that ended before a date.

    Only COMPLETED, FAILED and CANCELLED workflows go; running ones are never
    touched. A dry run by default.

    \b
    Example:
      duralog --db shop.db prune --completed-before 2026-10-01          # what would go
      duralog --db shop.db prune --completed-before 2026-10-01 --yes    # delete it
    """
    try:
        moment = dt.datetime.fromisoformat(before)
    except ValueError:
        raise Problem(f"--completed-before: {before!r} is not an ISO date or time", 2) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    store = ctx.store()
    try:
        found = store.prune(moment.timestamp(), dry_run=not yes)
    finally:
        store.close()
    if output != "table":  # the workflows concerned
        echo_items(output, found, (), lambda r: ())
        return
    verb = "removed" if yes else "would remove"
    events = sum(r.last_seq for r in found)
    click.echo(f"{verb} {len(found)} workflows ({events} events) finished before {moment}")
    if found:
        headers = _format.RECORD_HEADERS[:-1]
        cells = (_format.record_cells(r)[: len(headers)] for r in found[:20])
        click.echo(_format.table(headers, cells))
    if len(found) > 20:
        click.echo(f"... and {len(found) - 20} more")
    if found and not yes:
        click.echo("run again with --yes to delete them")


@click.command(name="migrate-store", cls=Command)
@click.option("--from", "source", required=True, help="The log to copy: a SQLite path or URL.")
@click.option("--to", "target", required=True, help="Where to copy it: a SQLite path or URL.")
@click.option("--batch-size", type=int, default=1000, show_default=True, help="Rows per batch.")
@output_option
@friendly
def migrate_store(source: str, target: str, batch_size: int, output: str) -> None:
    """Copy a whole log into another store (e.g. SQLite into PostgreSQL).

    Stop every worker first. Every workflow (events, snapshots, inbox), schedule
    and circuit breaker is copied and the row counts are checked; a target that
    already holds any of the workflow ids is refused before anything is written.
    Copied workflows arrive unowned: any worker of the new log picks them up.
    The source is left as it was.

    \b
    Example:
      duralog migrate-store --from shop.db --to "postgresql://app@db/prod?schema=duralog"
    """
    if batch_size < 1:
        raise Problem("--batch-size must be at least 1", 2)
    if not is_postgres(source) and not path_exists(source, "--from"):
        raise Problem(f"no duralog database at {redact(source)} (--from)")
    if source == target:
        raise Problem("--from and --to are the same log")
    src = open_store(source)
    try:
        dst = open_store(target)
        try:
            counts = copy_store(
                src,
                dst,
                batch_size=batch_size,
                progress=lambda table, n: click.echo(f"  {table}: {n} rows", err=True),
            )
        finally:
            dst.close()
    finally:
        src.close()
    copied = ", ".join(f"{n} {table}" for table, n in counts.items())
    said = f"copied {copied} from {redact(source)} to {redact(target)}"
    data = {"from": redact(source), "to": redact(target), "copied": counts}
    echo_one(output, data, lambda: [said])
