"""What workflows give back: ``duralog result`` (wait for the end), ``duralog
get-event`` (what a workflow published with ``duralog.publish``) and ``duralog
read-stream`` (what it wrote to a stream with ``duralog.write_stream``)."""

from __future__ import annotations

import json
import math
import time
from typing import Any, NoReturn

import click
import msgspec

from duralog import _format
from duralog._cli_common import (
    Command,
    Context,
    Problem,
    echo_one,
    friendly,
    output_option,
    pass_context,
)
from duralog.errors import (
    ConfigurationError,
    StreamTimeout,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowSuspended,
)
from duralog.store.codec import reveal_payload


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is None or value == math.inf:
        return None
    if not value >= 0:  # NaN too
        raise Problem(f"--timeout must be a number of seconds, 0 or more, not {value}", 2)
    return value


_TIMEOUT = click.option(
    "--timeout",
    type=float,
    callback=_seconds,
    help="Seconds to wait (default: as long as it takes).",
)


@click.command(cls=Command)
@click.argument("workflow_id")
@_TIMEOUT
@output_option
@pass_context
@friendly
def result(ctx: Context, workflow_id: str, timeout: float | None, output: str) -> None:
    """Wait for a workflow to end and print its result (as JSON).

    Exit 0: it COMPLETED. Exit 1: it FAILED, was CANCELLED or is SUSPENDED (why on
    stderr; with -o json, an object with its status and error on stdout), or there
    is no such workflow. Exit 2: --timeout passed first (it goes on running).
    Waiting needs no --app, but a worker (any process) must be running it.

    \b
    Example:
      duralog --db shop.db result order-o-1 --timeout 60
      duralog --db shop.db result order-o-1 -o json | jq .result
    """
    value: Any = None
    ended: tuple[str, WorkflowFailed | WorkflowSuspended] | None = None
    try:
        with ctx.handle(workflow_id) as handle:
            try:
                value = handle.result(timeout=timeout)
            except (WorkflowFailed, WorkflowSuspended) as exc:
                ended = handle.status().value, exc
    except WorkflowNotFound as exc:
        raise Problem(f"no workflow with id {exc.workflow_id!r} in {ctx.where}") from None
    if ended is not None:
        _failed(output, workflow_id, *ended)
    found = {"workflow_id": workflow_id, "status": "COMPLETED", "result": value}
    echo_one(output, found, lambda: [json.dumps(value, default=str)])


def _failed(
    output: str, workflow_id: str, status: str, exc: WorkflowFailed | WorkflowSuspended
) -> NoReturn:
    """Say how the workflow ended (stdout with -o json|jsonl, stderr otherwise); exit 1."""
    if isinstance(exc, WorkflowFailed) and status == "CANCELLED":
        error, said = "cancelled", f"workflow {workflow_id!r} was cancelled"
    elif isinstance(exc, WorkflowFailed):
        error, said = str(exc.cause), str(exc)
    else:
        error, said = exc.reason, str(exc)
    if output == "table":
        raise Problem(said, 1)
    click.echo(_format.json_text({"workflow_id": workflow_id, "status": status, "error": error}))
    raise SystemExit(1)


@click.command(name="get-event", cls=Command)
@click.argument("workflow_id")
@click.argument("key")
@_TIMEOUT
@output_option
@pass_context
@friendly
def get_event(ctx: Context, workflow_id: str, key: str, timeout: float | None, output: str) -> None:
    """Print what a workflow last published under KEY (duralog.publish), as JSON.

    Without --timeout it reads what is there now; with it, it waits up to that
    many seconds for a first value. Exit 1 when there is none (the workflow
    never published KEY, or ended without it), 2 when the log cannot be read.
    Encrypted values are decrypted with the keys in DURALOG_KEYS.

    \b
    Example:
      duralog --db shop.db get-event order-o-1 progress
      duralog --db shop.db get-event order-o-1 progress --timeout 30 -o json
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.01
    store = ctx.store()
    try:
        while True:
            record = ctx.record(store, workflow_id)
            value = store.published(workflow_id, key)
            if value is not None:
                break
            ended = record.status.is_terminal
            if ended or deadline is None or time.monotonic() >= deadline:
                waited = f" within {timeout:g}s" if timeout is not None and not ended else ""
                raise Problem(
                    f"workflow {workflow_id!r} ({record.status.value}) has published nothing "
                    f"under {key!r}{waited}"
                )
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.5)
    finally:
        store.close()
    shown = reveal_payload(value, ctx.payload_codec)
    found = {"workflow_id": workflow_id, "key": key, "value": msgspec.Raw(shown)}
    echo_one(output, found, lambda: [shown.decode("utf-8", "replace")])


@click.command(name="read-stream", cls=Command)
@click.argument("workflow_id")
@click.argument("key")
@click.option("--follow", "-f", is_flag=True, help="Wait for new values until the stream ends.")
@click.option("--start", type=click.IntRange(min=0), default=0, help="Skip this many values first.")
@_TIMEOUT
@output_option
@pass_context
@friendly
def read_stream(
    ctx: Context,
    workflow_id: str,
    key: str,
    follow: bool,
    start: int,
    timeout: float | None,
    output: str,
) -> None:
    """Print the values a workflow wrote to stream KEY (duralog.write_stream), in order.

    One JSON value per line (-o jsonl: an object with its offset; -o json: one array
    at the end). Without --follow it prints what is written so far; with it, each
    value as it comes, until the stream is closed or the run ends, and --timeout is
    how long to wait for the next one (exit 2 when it passes). Exit 1 when there is
    no such workflow. Encrypted values are decrypted with the keys in DURALOG_KEYS.

    \b
    Example:
      duralog --db agents.db read-stream chat-7 tokens --follow
      duralog --db agents.db read-stream chat-7 tokens -o json
    """
    from duralog.engine.streams import read

    values: list[Any] = []
    offset = start
    store = ctx.store()
    try:
        ctx.record(store, workflow_id)
        for value in read(store, ctx.payload_codec, workflow_id, key, timeout, Any, start, follow):
            if output == "json":
                values.append(value)
            elif output == "jsonl":
                line = {"workflow_id": workflow_id, "key": key, "offset": offset, "value": value}
                click.echo(_format.json_text(line))
            else:
                click.echo(json.dumps(value, default=str, ensure_ascii=False))
            offset += 1
    except ConfigurationError as exc:  # a bad key
        raise Problem(str(exc), 2) from None
    except StreamTimeout as exc:
        raise Problem(
            f"stream {key!r} of workflow {workflow_id!r}: no new value within {exc.timeout:g}s "
            f"({exc.received} so far); it goes on: read on with --start {exc.received}",
            2,
        ) from None
    finally:
        store.close()
    if output == "json":
        click.echo(_format.json_text(values))
