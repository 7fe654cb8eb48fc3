"""Talking to a workflow from the command line: ``duralog query`` (read its state
through a handler its code registered)."""

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
    pass_context,
)
from duralog.errors import (
    NondeterminismError,
    PayloadError,
    QueryFailed,
    RegistrationError,
    WorkflowNotFound,
)


@click.command(cls=Command)
@click.argument("workflow_id")
@click.argument("name")
@click.argument("args", nargs=-1, metavar="[ARG]...")
@output_option
@pass_context
@friendly
def query(ctx: Context, workflow_id: str, name: str, args: tuple[str, ...], output: str) -> None:
    """Ask query NAME of a workflow (duralog.on_query) and print its answer as JSON.

    Each ARG is one argument of the handler, as JSON (a string in JSON quotes). The
    answer is read from the workflow's current state, running or ended, even while
    no worker runs it: its log is replayed here against the code of --app, and
    nothing is written. An encrypted log needs its keys in DURALOG_KEYS.

    Exit 1: the query failed (no such query, its handler raised or tried to act,
    the code diverged from the history), or there is no such workflow (with -o
    json, an object with the error on stdout). Exit 2: bad ARGS, no code for the
    workflow in --app, a log or keys it cannot read.

    \b
    Example:
      duralog --db shop.db --app shop.workflows query order-o-1 progress
      duralog --db shop.db --app shop.workflows query order-o-1 line '"sku-42"' 2 -o json
    """
    try:
        ctx.load_app()
    except Problem as exc:  # no code to replay: it cannot be asked from here
        raise Problem(exc.message, 2) from None
    values = [_argument(i, text) for i, text in enumerate(args, 1)]
    try:
        with ctx.handle(workflow_id) as handle:
            answer = handle.query(name, *values)
    except WorkflowNotFound as exc:
        raise Problem(f"no workflow with id {exc.workflow_id!r} in {ctx.where}") from None
    except (QueryFailed, NondeterminismError) as exc:
        _failed(output, workflow_id, name, exc)
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


def _failed(
    output: str, workflow_id: str, name: str, exc: QueryFailed | NondeterminismError
) -> NoReturn:
    """Say why the query was not answered (stdout with -o json|jsonl, stderr otherwise)."""
    if output == "table":
        raise Problem(str(exc), 1)
    found = {"workflow_id": workflow_id, "query": name, "error": str(exc)}
    click.echo(_format.json_text(found))
    raise SystemExit(1)
