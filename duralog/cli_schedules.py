"""``duralog schedules``: list, pause, resume and delete cron schedules."""

from __future__ import annotations

import datetime as dt

import click
import msgspec

from duralog import _format
from duralog._cli_common import (
    Context,
    Group,
    Problem,
    echo_items,
    echo_one,
    friendly,
    output_option,
    pass_context,
)
from duralog.engine.schedules import SCHEDULES, next_tick
from duralog.replay.definitions import REGISTRY
from duralog.store.base import ScheduleRecord
from duralog.store.codec import reveal_payload
from duralog.store.envelope import PayloadCodec


@click.group(cls=Group, invoke_without_command=True)
@output_option
@click.pass_context
def schedules(click_ctx: click.Context, output: str) -> None:
    """List cron schedules (or pause, resume, delete one).

    \b
    Example:
      duralog --db shop.db schedules
      duralog --db shop.db schedules -o json
      duralog --db shop.db schedules pause nightly-report
    """
    if click_ctx.invoked_subcommand is None:
        _list(click_ctx.find_object(Context), output)


_HEADERS = ("ID", "CRON", "TIMEZONE", "WORKFLOW", "QUEUE", "CATCH UP", "LAST TICK", "NEXT TICK")


@friendly
def _list(ctx: Context | None, output: str) -> None:
    assert ctx is not None
    store = ctx.store()
    try:
        records = store.schedules()
    finally:
        store.close()
    if output == "table" and not records:
        click.echo("no schedules")
        return
    echo_items(output, records, _HEADERS, _cells, lambda r: _data(r, ctx.payload_codec))


def _data(record: ScheduleRecord, payload_codec: PayloadCodec | None) -> dict[str, object]:
    args = reveal_payload(record.args, payload_codec)
    return {**msgspec.structs.asdict(record), "args": msgspec.Raw(args)}


def _cells(record: ScheduleRecord) -> list[object]:
    return [
        record.id,
        record.cron,
        record.timezone,
        record.workflow,
        record.queue
        if record.partition_key is None
        else f"{record.queue} (partition {record.partition_key})",
        record.catch_up,
        _format.when(record.last_tick),
        "paused" if record.paused else _format.when(next_tick(record)),
    ]


def _set_paused(ctx: Context, schedule_id: str, paused: bool, output: str) -> None:
    store = ctx.store()
    try:
        if not store.pause_schedule(schedule_id, paused, dt.datetime.now(dt.UTC).timestamp()):
            raise Problem(f"no schedule with id {schedule_id!r} in {ctx.where}")
    finally:
        store.close()
    _confirm(output, schedule_id, "paused" if paused else "resumed")


def _confirm(output: str, schedule_id: str, done: str) -> None:
    echo_one(output, {"schedule_id": schedule_id, "done": done}, lambda: [f"{schedule_id}: {done}"])


@schedules.command()
@click.argument("schedule_id")
@output_option
@pass_context
@friendly
def pause(ctx: Context, schedule_id: str, output: str) -> None:
    """Stop starting workflows for a schedule (its ticks are skipped while paused).

    \b
    Example:
      duralog --db shop.db schedules pause nightly-report
    """
    _set_paused(ctx, schedule_id, True, output)


@schedules.command()
@click.argument("schedule_id")
@output_option
@pass_context
@friendly
def resume(ctx: Context, schedule_id: str, output: str) -> None:
    """Start workflows for a paused schedule again, from its next tick on.

    \b
    Example:
      duralog --db shop.db schedules resume nightly-report
    """
    _set_paused(ctx, schedule_id, False, output)


@schedules.command()
@click.argument("schedule_id")
@output_option
@pass_context
@friendly
def delete(ctx: Context, schedule_id: str, output: str) -> None:
    """Delete a schedule; the workflows it started stay. A schedule declared in code
    with ``@duralog.schedule`` comes back when a worker with that code starts.

    \b
    Example:
      duralog --db shop.db schedules delete nightly-report
    """
    ctx.load_app(required=False)
    store = ctx.store()
    try:
        if not store.delete_schedule(schedule_id):
            raise Problem(f"no schedule with id {schedule_id!r} in {ctx.where}")
    finally:
        store.close()
    _confirm(output, schedule_id, "deleted")
    if schedule_id in REGISTRY.declared(SCHEDULES):
        note = (
            f"note: {schedule_id!r} is declared in code (@duralog.schedule in --app): the "
            "next worker start re-creates it; remove the declaration to delete it for good"
        )
    elif not ctx.apps:
        note = (
            f"note: if {schedule_id!r} is declared in code (@duralog.schedule), the next "
            "worker start re-creates it; remove the declaration to delete it for good"
        )
    else:
        return
    click.echo(note, err=True)
