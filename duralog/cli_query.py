"""``duralog list`` and ``duralog count``: the workflows that match a set of filters."""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable
from typing import Any, TypeVar

import click
import msgspec

from duralog import _format
from duralog._cli_common import (
    Command,
    Context,
    Problem,
    echo_items,
    friendly,
    output_option,
    pass_context,
)
from duralog.cli_observe import parse_since
from duralog.store.base import EventStore, WorkflowQuery, WorkflowStatus

F = TypeVar("F", bound=Callable[..., Any])

_TIMES = "30s, 10m, 2h, 1d, 1w (ago) or an ISO date or time (UTC unless it says)"


def filter_options(fn: F) -> F:
    """The filters ``list`` and ``count`` share; the command gets ``query_args``."""

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        statuses: tuple[str, ...],
        names: tuple[str, ...],
        queues: tuple[str, ...],
        parents: tuple[str, ...],
        since: str | None,
        until: str | None,
        ended_since: str | None,
        ended_until: str | None,
        id_prefix: str | None,
        **kwargs: Any,
    ) -> Any:
        query = WorkflowQuery(
            statuses=tuple(WorkflowStatus(s.upper()) for s in statuses),
            names=names,
            queues=queues,
            parents=parents,
            started_since=_time(since, "--since"),
            started_until=_time(until, "--until"),
            ended_since=_time(ended_since, "--ended-since"),
            ended_until=_time(ended_until, "--ended-until"),
            id_prefix=id_prefix or None,
        )
        return fn(*args, query=query, **kwargs)

    options = [
        click.option(
            "--status",
            "statuses",
            multiple=True,
            type=click.Choice([s.value for s in WorkflowStatus], case_sensitive=False),
            metavar="STATUS",
            help="Only workflows in this status: "
            + ", ".join(s.value for s in WorkflowStatus)
            + ", in any case (repeatable: any of them).",
        ),
        click.option(
            "--name", "names", multiple=True, help="Only workflows of this name (repeatable)."
        ),
        click.option(
            "--queue",
            "queues",
            multiple=True,
            help="Only workflows put on this queue (repeatable).",
        ),
        click.option(
            "--parent",
            "parents",
            multiple=True,
            help="Only the child workflows of this workflow id (repeatable).",
        ),
        click.option(
            "--id-prefix", help="Only workflows whose id starts with this (case matters)."
        ),
        click.option("--since", help=f"Only workflows started then or later: {_TIMES}."),
        click.option("--until", help=f"Only workflows started before then: {_TIMES}."),
        click.option("--ended-since", help=f"Only workflows that ended then or later: {_TIMES}."),
        click.option("--ended-until", help=f"Only workflows that ended before then: {_TIMES}."),
    ]
    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


def _time(text: str | None, option: str) -> float | None:
    return None if text is None else parse_since(text, option=option)


def _limit(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value < 0:
        raise Problem(f"--limit must be 0 (no limit) or more, not {value}", 2)
    return value


@click.command(name="list", cls=Command)
@filter_options
@click.option(
    "--limit",
    type=int,
    default=100,
    show_default=True,
    callback=_limit,
    help="Print at most this many (0: no limit); says so when more match.",
)
@click.option(
    "--after",
    "after_id",
    metavar="ID",
    help="Paging: start after workflow ID, the last one of the page before.",
)
@output_option
@pass_context
@friendly
def list_(
    ctx: Context, query: WorkflowQuery, limit: int, after_id: str | None, output: str
) -> None:
    """List workflows, newest first (then by id).

    The filters combine (a workflow must pass each); a repeated filter matches any
    of its values. --since and --until compare the time a workflow started,
    --ended-since and --ended-until the time it ended (finished ones only). When
    more workflows match than --limit, the last line says how to see the next page
    (--after the last id shown): stdout in table mode, stderr with -o json|jsonl.
    With -o json|jsonl each row also has steps (called) and retries (attempts
    beyond the first), read from the events of the workflows listed.

    \b
    Example:
      duralog --db shop.db list --status running --status paused
      duralog --db shop.db list --queue emails --since 1h -o jsonl
      duralog --db shop.db list --limit 50 --after order-o-77
    """
    store = ctx.store()
    try:
        if after_id is not None:
            query = _after(ctx, store, query, after_id)
        records = store.find_workflows(query, limit=limit + 1 if limit else None)
        more = bool(limit) and len(records) > limit
        records = records[:limit] if limit else records
        # JSON rows carry their steps and retries: read from these workflows' events only.
        counts = store.step_counts([r.id for r in records]) if output != "table" else {}
    finally:
        store.close()
    cells = {id(r): _format.record_cells(r) for r in records}
    notes = any(row[-1] is not None for row in cells.values())
    headers = _format.RECORD_HEADERS if notes else _format.RECORD_HEADERS[:-1]
    echo_items(
        output,
        records,
        headers,
        lambda r: cells[id(r)][: len(headers)],
        lambda r: _format.listed(r, counts),
    )
    if more:
        footer = (
            f"({limit} shown; more match: add --after {shlex.quote(records[-1].id)} "
            "for the next page, or --limit 0 for all)"
        )
        click.echo(footer, err=output != "table")


def _after(ctx: Context, store: EventStore, query: WorkflowQuery, after_id: str) -> WorkflowQuery:
    record = store.get_workflow(after_id)
    if record is None:
        raise Problem(f"--after: no workflow with id {after_id!r} in {ctx.where}")
    return msgspec.structs.replace(query, after=(record.created_at, record.id))


@click.command(cls=Command)
@filter_options
@output_option
@pass_context
@friendly
def count(ctx: Context, query: WorkflowQuery, output: str) -> None:
    """Count the workflows that match the filters of `duralog list`.

    Prints the number alone (-o json: {"count": N}).

    \b
    Example:
      duralog --db shop.db count --status failed --since 1d
    """
    store = ctx.store()
    try:
        found = store.count_workflows(query)
    finally:
        store.close()
    click.echo(str(found) if output == "table" else _format.json_text({"count": found}))
