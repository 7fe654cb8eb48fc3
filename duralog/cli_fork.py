"""Fix forward: ``duralog fork`` and ``duralog restart``.

Both write a new workflow (``handle.fork`` / ``handle.restart``) that a worker then
runs with the code deployed now, and confirm on stdout with its id and status. A
fork the current code does not replay is refused with the divergence report (exit
1); a seq, an id or input the command cannot use is one error line (exit 2).
"""

from __future__ import annotations

import sys

import click

from duralog._cli_common import (
    Command,
    Context,
    Problem,
    echo_one,
    friendly,
    output_option,
    pass_context,
)
from duralog.errors import ConfigurationError, ForkDiverged, PayloadError, WorkflowIdInUse


@click.command(cls=Command)
@click.argument("workflow_id")
@click.option(
    "--from-seq",
    type=int,
    required=True,
    help="The first seq not copied: the fork starts there with the current code.",
)
@click.option("--id", "new_id", help="The fork's id (default: ID-fork-<random>).")
@output_option
@pass_context
@friendly
def fork(ctx: Context, workflow_id: str, from_seq: int, new_id: str | None, output: str) -> None:
    """Copy a workflow's events before --from-seq into a new workflow run by the current code.

    The steps recorded before that seq do not run again: the fork gets their
    results, and a worker runs the rest with the code --app loads now. The copy
    is replayed against that code first; if the code diverges from it, the fork
    is refused with the divergence report (exit 1) and nothing is written. A
    seq inside a step (after its StepScheduled, up to its end) is refused: fork
    from its StepScheduled to run it again, or after its end to keep its result.
    The original workflow is left as it is, even if it still runs (cancel it if
    only the fork should go on). `duralog show` links the two.

    \b
    Example:
      duralog --db shop.db --app shop.workflows show order-o-1    # step 'ship' failed, seq 9
      duralog --db shop.db --app shop.workflows fork order-o-1 --from-seq 9
    """
    _fork(ctx, workflow_id, from_seq, new_id, output)


@click.command(cls=Command)
@click.argument("workflow_id")
@click.option("--id", "new_id", help="The new workflow's id (default: ID-restart-<random>).")
@output_option
@pass_context
@friendly
def restart(ctx: Context, workflow_id: str, new_id: str | None, output: str) -> None:
    """Run a workflow again from the start, with the same input, as a new workflow.

    A fork that copies nothing but the start: every step runs again, with new
    idempotency keys. The original is left as it is.

    \b
    Example:
      duralog --db shop.db --app shop.workflows restart order-o-1 --id order-o-1-again
    """
    _fork(ctx, workflow_id, None, new_id, output)


def _fork(
    ctx: Context, workflow_id: str, from_seq: int | None, new_id: str | None, output: str
) -> None:
    ctx.load_app()
    action = "restart" if from_seq is None else "fork"
    try:
        with ctx.handle(workflow_id) as handle:
            created = handle.restart(new_id) if from_seq is None else handle.fork(from_seq, new_id)
            status = created.status().value
            copied = 0 if from_seq is None else from_seq - 2  # (its events 2 .. N-1)
    except ForkDiverged as exc:
        _refused(exc, action, output)
    except (ConfigurationError, WorkflowIdInUse, PayloadError) as exc:
        raise Problem(str(exc), 2) from None
    said = (
        f"restarted {workflow_id} as {created.id}"
        if from_seq is None
        else f"forked {workflow_id} at seq {from_seq} into {created.id} ({copied} events copied)"
    )
    echo_one(
        output,
        {
            "workflow_id": created.id,
            "action": action,
            "source": workflow_id,
            "from_seq": 2 if from_seq is None else from_seq,
            "copied": copied,
            "status": status,
        },
        lambda: [f"{said} (status {status}); a worker with this code runs it"],
    )


def _refused(exc: ForkDiverged, action: str, output: str) -> None:
    """The divergence report on stdout (exit 1): nothing was written."""
    report = {
        "workflow_id": exc.source_id,
        "action": action,
        "ok": False,
        "from_seq": exc.from_seq,
        "seq": exc.seq,
        "recorded": exc.recorded,
        "attempted": exc.attempted,
        "location": exc.location,
        "error": str(exc),
    }
    echo_one(
        output,
        report,
        lambda: [
            f"{exc.source_id}: {action} refused, the current code DIVERGES from the copy "
            f"at seq {exc.seq}",
            f"  recorded:  {exc.recorded or 'nothing'}",
            f"  attempted: {exc.attempted or 'no further decision'}",
            f"  code:      {exc.location or 'unknown'}",
            f"  nothing was written; fork from a seq before {exc.seq}, or make the code take "
            "the recorded path there",
        ],
    )
    sys.exit(1)
