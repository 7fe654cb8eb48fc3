"""Talking to a workflow from the command line: ``duralog query`` (read its state
through a handler its code registered) and ``duralog update`` (ask it to change,
and wait for its answer)."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import click

from duralog import _format
from duralog._cli_common import (
    Command,
    Context,
    Problem,
    echo_one,
    friendly,
    output_option,
    parse_json,
    pass_context,
)
from duralog.cli_results import _TIMEOUT, _seconds
from duralog.engine.handle import QUERY_TIMEOUT
from duralog.errors import (
    ConfigurationError,
    NondeterminismError,
    PayloadError,
    QueryFailed,
    QueryTimeout,
    RegistrationError,
    UpdateFailed,
    UpdateTimeout,
    WorkflowNotFound,
)


@click.command(cls=Command)
@click.argument("workflow_id")
@click.argument("name")
@click.argument("args", nargs=-1, metavar="[ARG]...")
@click.option(
    "--timeout",
    type=float,
    default=QUERY_TIMEOUT,
    show_default=True,
    callback=_seconds,
    help="Seconds to wait for the answer (inf: as long as it takes).",
)
@output_option
@pass_context
@friendly
def query(
    ctx: Context,
    workflow_id: str,
    name: str,
    args: tuple[str, ...],
    timeout: float | None,
    output: str,
) -> None:
    """Ask query NAME of a workflow (duralog.on_query) and print its answer as JSON.

    Each ARG is one argument of the handler, as JSON (a string in JSON quotes). The
    answer is read from the workflow's current state, running or ended, even while
    no worker runs it: its log is replayed here against the code of --app, and
    nothing is written. An encrypted log needs its keys in DURALOG_KEYS.

    Exit 1: the query failed (no such query, its handler raised or tried to act,
    the code diverged from the history), or there is no such workflow (with -o
    json, an object with the error on stdout). Exit 2: bad ARGS, no code for the
    workflow in --app, a log or keys it cannot read, or no answer within --timeout
    (a handler that never returns).

    \b
    Example:
      duralog --db shop.db --app shop.workflows query order-o-1 progress
      duralog --db shop.db --app shop.workflows query order-o-1 line '"sku-42"' 2 -o json
    """
    if not name:
        raise Problem("the query's NAME must not be empty", 2)
    ctx.load_app()  # a query or an update runs the workflow's code here
    values = [_argument(i, text) for i, text in enumerate(args, 1)]
    try:
        with ctx.handle(workflow_id) as handle:
            answer = handle.query(name, *values, timeout=timeout)
    except WorkflowNotFound as exc:
        raise Problem(f"no workflow with id {exc.workflow_id!r} in {ctx.where}") from None
    except QueryTimeout as exc:
        raise Problem(str(exc), 2) from None
    except (QueryFailed, NondeterminismError) as exc:
        _failed(output, {"workflow_id": workflow_id, "query": name}, exc)
    except (RegistrationError, PayloadError) as exc:  # it cannot be asked from here
        raise Problem(str(exc), 2) from None
    found = {"workflow_id": workflow_id, "query": name, "result": answer}
    echo_one(output, found, lambda: [json.dumps(answer, default=str)])


def _argument(position: int, text: str) -> Any:
    """One ARG, decoded; a ``Problem`` (exit 2) that shows how to quote a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        shown = text if len(text) <= 40 else f"{text[:40]}…"
        quoted = json.dumps(shown)
        raise Problem(
            f"argument {position} ({shown}) is not valid JSON; a string needs JSON quotes: "
            f"'{quoted}'",
            2,
        ) from None
    except RecursionError:
        raise Problem(f"argument {position} is nested too deeply to be sent", 2) from None


def _failed(output: str, found: dict[str, Any], exc: Exception) -> NoReturn:
    """Say why there is no answer (stdout with -o json|jsonl: ``found`` and the error;
    stderr otherwise), and exit 1."""
    if output == "table":
        raise Problem(str(exc), 1)
    click.echo(_format.json_text({**found, "error": str(exc)}))
    raise SystemExit(1)


@click.command(cls=Command)
@click.argument("workflow_id")
@click.argument("name")
@click.option("--payload", default="null", show_default=True, help="The update's JSON payload.")
@click.option(
    "--update-id",
    default=None,
    help="Make it safe to retry: an update with this id is carried out once, and sending "
    "it again prints the first answer.",
)
@_TIMEOUT
@output_option
@pass_context
@friendly
def update(
    ctx: Context,
    workflow_id: str,
    name: str,
    payload: str,
    update_id: str | None,
    timeout: float | None,
    output: str,
) -> None:
    """Send update NAME to a workflow (duralog.on_update) and print its answer as JSON.

    Its validator runs here first, on the workflow's current state (its log
    replayed against the code of --app): a rejected update is never sent. An
    accepted one is recorded in the workflow's log and carried out by the worker
    that runs the workflow, which answers once, even across a crash.

    Exit 1: the update was rejected, its handler raised, the workflow ended
    before answering, or there is no such workflow (with -o json, an object with
    the error on stdout). Exit 2: a bad --payload, no code for the workflow in
    --app, a log or keys it cannot read, or --timeout passed first (the update
    is still carried out: send it again with the same --update-id to get its
    answer without running it twice).

    \b
    Example:
      duralog --db shop.db --app shop.workflows update cart-7 add_item --payload '"sku-42"'
      duralog --db shop.db --app shop.workflows update cart-7 empty --timeout 30 -o json
      duralog --db shop.db --app shop.workflows update cart-7 empty --update-id empty-1
    """
    if not name:
        raise Problem("the update's NAME must not be empty", 2)
    ctx.load_app()  # a query or an update runs the workflow's code here
    value = parse_json(payload, "--payload")
    try:
        with ctx.handle(workflow_id) as handle:
            answer = handle.update(name, value, timeout=timeout, update_id=update_id)
    except WorkflowNotFound as exc:
        raise Problem(f"no workflow with id {exc.workflow_id!r} in {ctx.where}") from None
    except UpdateTimeout as exc:
        raise Problem(str(exc), 2) from None
    except (UpdateFailed, NondeterminismError) as exc:
        rejected = isinstance(exc, UpdateFailed) and exc.rejected
        _failed(output, {"workflow_id": workflow_id, "update": name, "rejected": rejected}, exc)
    except (RegistrationError, PayloadError, ConfigurationError) as exc:
        raise Problem(str(exc), 2) from None
    found = {"workflow_id": workflow_id, "update": name, "result": answer}
    echo_one(output, found, lambda: [json.dumps(answer, default=str)])
