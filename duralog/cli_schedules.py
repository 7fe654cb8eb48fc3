"""``duralog schedules``: list, pause, resume and delete cron schedules."""

from __future__ import annotations

import datetime as dt

import click
import msgspec

from duralog import _format
from duralog._cli_common import Context, Problem, friendly, pass_context
from duralog.engine.schedules import next_tick
from duralog.store.base import ScheduleRecord
from duralog.store.codec import reveal_payload


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@click.pass_context
def schedules(click_ctx: click.Context, as_json: bool) -> None:
    """List cron schedules (or pause, resume, delete one).

    \b
    Example:
      duralog --db shop.db schedules
      duralog --db shop.db schedules pause nightly-report
    """
    if click_ctx.invoked_subcommand is None:
        _list(click_ctx.find_object(Context), as_json)


@friendly
def _list(ctx: Context | None, as_json: bool) -> None:
    assert ctx is not None
    store = ctx.store()
    try:
        records = store.schedules()
    finally:
        store.close()
    if as_json:
        click.echo(
            msgspec.json.encode(
                [
                    {
                        **msgspec.structs.asdict(r),
                        "args": msgspec.Raw(reveal_payload(r.args, ctx.payload_codec)),
                    }
                    for r in records
                ]
            ).decode()
        )
        return
    if not records:
        click.echo("no schedules")
        return
    for record in records:
        click.echo(_row(record))


def _row(record: ScheduleRecord) -> str:
    state = "paused" if record.paused else f"next {_format.when(next_tick(record))}"
    where = f" queue={record.queue}" if record.queue else ""
    return (
        f"{record.id}  {record.cron!r} {record.timezone}  -> {record.workflow}"
        f"  catch_up={record.catch_up}{where}  last {_format.when(record.last_tick)}  {state}"
    )


def _set_paused(ctx: Context, schedule_id: str, paused: bool) -> None:
    store = ctx.store()
    try:
        if not store.pause_schedule(schedule_id, paused, dt.datetime.now(dt.UTC).timestamp()):
            raise Problem(f"no schedule with id {schedule_id!r} in {ctx.where}")
    finally:
        store.close()
    click.echo(f"{schedule_id}: {'paused' if paused else 'resumed'}")


@schedules.command()
@click.argument("schedule_id")
@pass_context
@friendly
def pause(ctx: Context, schedule_id: str) -> None:
    """Stop starting workflows for a schedule (its ticks are skipped while paused)."""
    _set_paused(ctx, schedule_id, True)


@schedules.command()
@click.argument("schedule_id")
@pass_context
@friendly
def resume(ctx: Context, schedule_id: str) -> None:
    """Start workflows for a paused schedule again, from its next tick on."""
    _set_paused(ctx, schedule_id, False)


@schedules.command()
@click.argument("schedule_id")
@pass_context
@friendly
def delete(ctx: Context, schedule_id: str) -> None:
    """Delete a schedule; the workflows it started stay. A schedule declared in code
    with ``@duralog.schedule`` comes back when a worker with that code starts."""
    store = ctx.store()
    try:
        if not store.delete_schedule(schedule_id):
            raise Problem(f"no schedule with id {schedule_id!r} in {ctx.where}")
    finally:
        store.close()
    click.echo(f"{schedule_id}: deleted")
