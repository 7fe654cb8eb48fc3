"""Commands that act on one existing workflow: ``signal``, ``cancel``, ``pause``,
``resume`` (requests its owner carries out), ``terminate`` and ``delete``.

Each confirms on stdout, with the workflow's status once the request is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

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
from duralog.engine.handle import WorkflowHandle


def _confirm(output: str, workflow_id: str, action: str, said: str, status: str) -> None:
    """``<said> (status RUNNING)``, or the same as one JSON object."""
    echo_one(
        output,
        {"workflow_id": workflow_id, "action": action, "status": status},
        lambda: [f"{said} (status {status})"],
    )


@click.command(cls=Command)
@click.argument("workflow_id")
@click.argument("name")
@click.option("--payload", default="null", show_default=True, help="The signal's JSON payload.")
@output_option
@pass_context
@friendly
def signal(ctx: Context, workflow_id: str, name: str, payload: str, output: str) -> None:
    """Send signal NAME to a workflow; its owner delivers it, whichever process that is.

    \b
    Example:
      duralog --db shop.db signal order-o-1 approval --payload '{"by": "ana"}'
    """
    value = parse_json(payload, "--payload")
    if value is not None:
        ctx.refuse_clear_text(workflow_id, "a signal payload")
    with ctx.handle(workflow_id) as handle:
        handle.signal(name, value)
        status = handle.status().value
    _confirm(output, workflow_id, "signal", f"sent signal {name} to {workflow_id}", status)


def _control(
    verb: str,
    act: Callable[[WorkflowHandle[Any], str], None],
    doc: str,
    reason_help: str | None,
) -> click.Command:
    """The template of the commands that ask a workflow to change course (``cancel``,
    ``pause``, ``resume``): ``act`` on the workflow's handle (with the ``--reason``
    the command takes when ``reason_help`` is given), then say "<verb> requested
    for ID (status S)" on stdout."""

    def command(ctx: Context, workflow_id: str, output: str, reason: str = "") -> None:
        if reason:
            ctx.refuse_clear_text(workflow_id, "a reason")
        with ctx.handle(workflow_id) as handle:
            act(handle, reason)
            status = handle.status().value
        _confirm(output, workflow_id, verb, f"{verb} requested for {workflow_id}", status)

    command.__doc__ = doc
    decorated = output_option(pass_context(friendly(command)))
    if reason_help is not None:
        decorated = click.option("--reason", default="", help=reason_help)(decorated)
    return click.command(name=verb, cls=Command)(click.argument("workflow_id")(decorated))


cancel = _control(
    "cancel",
    lambda handle, reason: handle.cancel(reason),
    """Ask a workflow to cancel (CancelledError at its current await).

    A workflow still waiting on its queue is CANCELLED at once; a running one when
    its owner takes the request (`duralog result ID` waits for that).

    \b
    Example:
      duralog --db shop.db cancel order-o-1 --reason "customer asked"
    """,
    reason_help="Recorded with the cancel request.",
)
pause = _control(
    "pause",
    lambda handle, reason: handle.pause(reason),
    """Pause a workflow: no new step starts and no timer fires until `resume`.

    \b
    Example:
      duralog --db shop.db pause order-o-1 --reason "payment provider outage"
    """,
    reason_help="Recorded with the pause.",
)
resume = _control(
    "resume",
    lambda handle, _: handle.resume(),
    """Resume a paused workflow.

    \b
    Example:
      duralog --db shop.db resume order-o-1
    """,
    reason_help=None,
)


@click.command(cls=Command)
@click.argument("workflow_id")
@click.option("--reason", default="", help="Recorded as the message of its Terminated cause.")
@output_option
@pass_context
@friendly
def terminate(ctx: Context, workflow_id: str, reason: str, output: str) -> None:
    """End a workflow at once, without running any more of its code (no cleanup).

    It ends FAILED, its cause of type Terminated, and its history ends with a
    WorkflowTerminated event. Its open children are terminated too. Unlike `cancel`,
    nothing more of its code runs: no cancellation handler, no cleanup step. A step
    running at that moment is not recorded; its worker stops it as soon as it hears.
    Running it again for a terminated workflow terminates the children it left open.

    \b
    Example:
      duralog --db shop.db terminate order-o-1 --reason "stuck on a retired API"
    """
    if reason:
        ctx.refuse_clear_text(workflow_id, "a reason")
    with ctx.handle(workflow_id) as handle:
        ended = handle.terminate(reason)
        status = handle.status().value
    if not ended:
        raise Problem(
            f"workflow {workflow_id!r} had already ended ({status}); nothing was terminated"
        )
    _confirm(output, workflow_id, "terminate", f"terminated {workflow_id}", status)


@click.command(cls=Command)
@click.argument("workflow_id")
@output_option
@pass_context
@friendly
def delete(ctx: Context, workflow_id: str, output: str) -> None:
    """Delete one finished workflow: its events, snapshots and inbox, at once.

    Only a COMPLETED, FAILED or CANCELLED workflow can go; a running one is refused
    (cancel or terminate it first). Its children and the archived runs of a continue-as-new
    (ID~runN) are workflows of their own and stay. To delete by age, see `prune`.

    \b
    Example:
      duralog --db shop.db delete order-o-1
    """
    store = ctx.store()
    try:
        record = store.delete_workflow(workflow_id)
    finally:
        store.close()
    if record is None:
        raise Problem(f"no workflow with id {workflow_id!r} in {ctx.where}")
    status = record.status.value
    if not record.status.is_terminal:
        raise Problem(
            f"workflow {workflow_id!r} is {status}: only a finished workflow (COMPLETED, "
            "FAILED or CANCELLED) can be deleted; cancel or terminate it first, or wait for it "
            "to end"
        )
    echo_one(
        output,
        {
            "workflow_id": workflow_id,
            "action": "delete",
            "status": status,
            "events": record.last_seq,
        },
        lambda: [f"deleted {workflow_id} ({status}, {record.last_seq} events)"],
    )
