"""Fix forward: ``handle.fork`` and ``handle.restart`` write a new workflow whose log
starts as a copy of another's.

In this order, and nothing is written before the last step: read the source's
history; choose what to copy (``replay/forks.py`` refuses a seq that cuts a step
in two); replay the fork's would-be history against the code registered now (the
checker ``duralog replay`` uses), refusing the fork with the divergence report
(``ForkDiverged``) if the code no longer makes the recorded decisions; then create
the fork, its first event and the copies in one transaction
(``EventStore.fork_workflow``), so a crash leaves either nothing or all of it.

The source is left alone, whatever its status: a running source goes on running
(as DBOS's ``fork_workflow``, unlike Temporal's reset, which terminates it);
cancel it if only the fork should go on.
"""

from __future__ import annotations

import secrets
from typing import Any

from duralog.errors import (
    ForkDiverged,
    PayloadError,
    RegistrationError,
    WorkflowIdInUse,
    WorkflowNotFound,
)
from duralog.replay.checker import check
from duralog.replay.definitions import Registry, Workflow
from duralog.replay.forks import fork_history
from duralog.replay.history import History
from duralog.store import codec
from duralog.store.base import EventStore, NewWorkflow
from duralog.store.events import new_run_id

from .handle import MAX_ID_LENGTH, check_id


def fork(
    store: EventStore,
    registry: Registry,
    source_id: str,
    from_seq: int | None,
    new_id: str | None,
    *,
    now: float,
) -> tuple[NewWorkflow, Workflow[Any, Any]]:
    """Create a fork of ``source_id`` from ``from_seq`` (None: a restart, which copies
    nothing but the start) under ``new_id`` (None: ``<source>-fork-<random>``, or
    ``-restart-`` for a restart). Returns what was created and its definition.

    Raises ``WorkflowNotFound``, ``ConfigurationError`` (a refused seq or id),
    ``RegistrationError`` (the workflow's code is not registered here),
    ``PayloadError`` (the copied values cannot be read with this engine's keys),
    ``ForkDiverged`` (the current code does not replay the copy) or
    ``WorkflowIdInUse``; in every case nothing was written.
    """
    record = store.get_workflow(source_id)
    if record is None:
        raise WorkflowNotFound(source_id)
    seq = 2 if from_seq is None else from_seq
    fork_id = check_id(new_id) if new_id is not None else _new_id(source_id, from_seq is None)
    entries = store.read_events(source_id)
    first = fork_history(source_id, entries, seq, at=now, run_id=new_run_id())
    definition = _definition(registry, source_id, record.name)
    _replay(store, definition, source_id, seq, History(fork_id, record.name, first))
    item = NewWorkflow(
        fork_id,
        record.name,
        first[0],
        queue=record.queue,
        priority=record.priority,
        partition_key=record.partition_key,  # (no dedup id, no delay: it runs now)
    )
    if not store.fork_workflow(item, first[1:]):
        raise WorkflowIdInUse(
            f"cannot fork {source_id!r} into {fork_id!r}: a workflow with that id exists "
            "already; choose another id (or leave it out for a new one)"
        )
    return item, definition


def _new_id(source_id: str, restart: bool) -> str:
    # '~' is reserved for archived runs (a source may be one: <id>~run<N>).
    base = source_id.replace("~", "-")[: MAX_ID_LENGTH - 20]
    return f"{base}-{'restart' if restart else 'fork'}-{secrets.token_hex(3)}"


def _definition(registry: Registry, source_id: str, name: str) -> Workflow[Any, Any]:
    if name not in registry:
        raise RegistrationError(
            f"cannot fork {source_id!r}: its workflow {name!r} is not registered in this "
            "process, so the copy cannot be checked against its code; import the module "
            "that defines it (the CLI's --app MODULE)"
        )
    return registry.get(name)


def _replay(
    store: EventStore,
    definition: Workflow[Any, Any],
    source_id: str,
    from_seq: int,
    history: History,
) -> None:
    """Replay the fork's first events against ``definition``; ``ForkDiverged`` when the
    code does not make the recorded decisions."""
    try:  # named after the source: the fork's id means nothing to the user yet
        codec.require_readable(source_id, history.events, store.payload_codec)
    except PayloadError as exc:
        raise PayloadError(f"cannot fork {source_id!r}: {exc}") from None
    report = check(history, [definition], payload_codec=store.payload_codec)
    if not report.ok:
        raise ForkDiverged(
            source_id,
            from_seq,
            report.seq or 0,
            report.recorded,
            report.attempted,
            report.location,
        )
