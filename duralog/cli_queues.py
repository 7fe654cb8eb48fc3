"""``duralog queues``: each queue's limits and counts; ``set`` and ``clear`` its limits
at runtime (stored in the log, read by every worker)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

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
from duralog.engine.queues import KEEP, QUEUES, Keep, overrides
from duralog.errors import ConfigurationError
from duralog.replay.definitions import REGISTRY
from duralog.store.base import EventStore, QueueLimits, QueueOverrides, WorkflowStatus

_COUNTED = (
    WorkflowStatus.PENDING,
    WorkflowStatus.RUNNING,
    WorkflowStatus.PAUSED,
    WorkflowStatus.SUSPENDED,
    WorkflowStatus.COMPLETED,
    WorkflowStatus.FAILED,
    WorkflowStatus.CANCELLED,
)
_HEADERS = (
    "QUEUE",
    "CONCURRENCY",
    "PER WORKER",
    "RATE",
    "PARTITIONED",
    "SET AT RUNTIME",
    *(s.value for s in _COUNTED),
)
#: How ``set_fields`` names a limit, as the options of ``queues set`` do.
_OPTION = {
    "concurrency": "concurrency",
    "worker_concurrency": "worker-concurrency",
    "rate_limit": "rate-limit",
    "rate_period": "period",
}


@click.group(cls=Group, invoke_without_command=True)
@output_option
@click.pass_context
def queues(click_ctx: click.Context, output: str) -> None:
    """Each queue with its limits and how many of its workflows are in each status
    (or set its limits at runtime).

    Counts come from the log (every queue a workflow was put on). Limits are the
    duralog.Queue declarations of --app, overridden by the ones set at runtime
    (`duralog queues set`, engine.set_queue_limits), which every worker reads from
    the log; SET AT RUNTIME names those. Without --app, only those show. PENDING
    workflows wait for a worker that serves the queue; RUNNING and PAUSED ones hold
    its concurrency slots (on a partitioned queue, every limit is per partition).

    \b
    Example:
      duralog --db shop.db --app shop.workflows queues
      duralog --db shop.db queues -o json
      duralog --db shop.db queues set emails --concurrency 2 --rate-limit none
    """
    if click_ctx.invoked_subcommand is None:
        _list(click_ctx.find_object(Context), output)


@friendly
def _list(ctx: Context | None, output: str) -> None:
    assert ctx is not None
    ctx.load_app(required=False)
    store = ctx.store()
    try:
        rows = queue_rows(ctx, store)
    finally:
        store.close()
    if output == "table" and not rows:
        click.echo("no queues")
        return
    echo_items(output, rows, _HEADERS, _cells)
    if output == "table" and not ctx.apps:
        click.echo("(limits are declared in code: add --app MODULE to show them)")


def queue_rows(ctx: Context, store: EventStore) -> list[dict[str, Any]]:
    """What ``queues -o json`` prints (also the console's ``/queues``): each queue, its
    limits (as the loaded app declares them, overridden by those set at runtime), and
    its workflows counted by status."""
    counts = store.queue_counts()
    stored = store.queue_limits()
    declared = (
        {name: queue.limits for name, queue in REGISTRY.declared(QUEUES).items()}
        if ctx.apps
        else {}
    )
    rows = []
    for name in sorted(set(counts) | set(declared) | set(stored)):
        limits = declared.get(name, QueueLimits(name)).overridden(stored.get(name))
        found = counts.get(name, {})
        known = name in declared or name in stored
        rows.append(
            {
                "name": name,
                "declared": name in declared,
                "concurrency": limits.concurrency if known else None,
                "worker_concurrency": limits.worker_concurrency if known else None,
                "rate_limit": limits.rate_limit if known else None,
                "rate_period": limits.rate_period if known else None,
                "partitioned": limits.partitioned if name in declared else None,
                "stored": stored[name].set_fields() if name in stored else {},
                "counts": {s.value: found.get(s, 0) for s in _COUNTED},
            }
        )
    return rows


def _cells(row: dict[str, Any]) -> list[object]:
    rate = f"{row['rate_limit']}/{row['rate_period']:g}s" if row["rate_limit"] else None
    partitioned = {True: "yes", False: "no", None: None}[row["partitioned"]]
    return [
        row["name"],
        row["concurrency"],
        row["worker_concurrency"],
        rate,
        partitioned,
        ", ".join(_OPTION[field] for field in row["stored"]) or None,
        *row["counts"].values(),
    ]


def _limit(ctx: click.Context, param: click.Parameter, value: str | None) -> int | Keep | None:
    """A limit option: a whole number of at least 1, or ``none`` (no limit)."""
    if value is None:
        return KEEP
    if value.strip().lower() == "none":
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        option = param.opts[0] if param.opts else param.name
        raise Problem(f"{option}: give a whole number of at least 1, or none, not {value!r}", 2)
    return number


def _period(ctx: click.Context, param: click.Parameter, value: str | None) -> float | Keep:
    if value is None:
        return KEEP
    from duralog.cli_observe import parse_duration

    seconds = parse_duration(value, "--period")
    if seconds <= 0:
        raise Problem(f"--period must be above 0, not {value!r}", 2)
    return seconds


@queues.command(name="set")
@click.argument("name")
@click.option(
    "--concurrency",
    metavar="N|none",
    callback=_limit,
    help="At most N of the queue's workflows run at once, across all workers.",
)
@click.option(
    "--worker-concurrency",
    metavar="N|none",
    callback=_limit,
    help="At most N at once on any one worker.",
)
@click.option(
    "--rate-limit",
    metavar="N|none",
    callback=_limit,
    help="At most N taken off the queue per --period.",
)
@click.option(
    "--period",
    metavar="DURATION",
    callback=_period,
    help="The rate limit's window: seconds, or 30s, 10m, 1h.",
)
@output_option
@pass_context
@friendly
def set_(
    ctx: Context,
    name: str,
    concurrency: int | Keep | None,
    worker_concurrency: int | Keep | None,
    rate_limit: int | Keep | None,
    period: float | Keep,
    output: str,
) -> None:
    """Set a queue's limits at runtime, for every worker on the log.

    Each option given overrides the limit the queue's duralog.Queue declares (none:
    no limit), from every worker's next look at the queue, until `queues clear`;
    the others keep their stored or declared value. Running workflows go on.
    Prints the limits stored for the queue.

    \b
    Example:
      duralog --db shop.db queues set emails --concurrency 2
      duralog --db shop.db queues set emails --rate-limit 100 --period 1m
      duralog --db shop.db queues set emails --concurrency none
    """
    try:
        wanted = overrides(
            name,
            concurrency=concurrency,
            worker_concurrency=worker_concurrency,
            rate_limit=rate_limit,
            period=period,
        )
    except ConfigurationError as exc:
        raise Problem(str(exc).replace("set_queue_limits", "queues set"), 2) from None
    store = ctx.store()
    try:
        stored = store.put_queue_limits(name, wanted, dt.datetime.now(dt.UTC).timestamp())
    finally:
        store.close()
    _said(output, name, stored, "set")


@queues.command()
@click.argument("name")
@output_option
@pass_context
@friendly
def clear(ctx: Context, name: str, output: str) -> None:
    """Drop the limits set at runtime for a queue: its declared ones apply again.

    \b
    Example:
      duralog --db shop.db queues clear emails
    """
    store = ctx.store()
    try:
        if not store.clear_queue_limits(name):
            raise Problem(f"queue {name!r} has no limits set at runtime in {ctx.where}")
    finally:
        store.close()
    _said(output, name, QueueOverrides(), "cleared")


def _said(output: str, name: str, stored: QueueOverrides, done: str) -> None:
    fields = stored.set_fields()
    shown = ", ".join(
        f"{_OPTION[field]} {'none' if value is None else f'{value:g}'}"
        for field, value in fields.items()
    )
    echo_one(
        output,
        {"queue": name, "done": done, "stored": fields},
        lambda: [f"{name}: {done}" + (f" ({shown})" if shown else "")],
    )
