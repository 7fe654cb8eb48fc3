"""Replay recorded histories against workflow code, without running any step.

This is how a code change is checked before it is deployed, and how a test
pins a golden history: the code must make exactly the recorded decisions, in
order, given the recorded inputs; otherwise the report says where it diverged.

    report = check(history, [checkout])     # or a Registry, or {"checkout": checkout}
    if not report.ok:
        print(report.error)                # workflow id, seq, recorded vs attempted, file:line
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from duralog.errors import NondeterminismError, RegistrationError
from duralog.store import codec
from duralog.store.envelope import PayloadCodec
from duralog.store.events import LogEntry

from .definitions import Registry, Workflow
from .history import History
from .instance import WorkflowInstance
from .queries import answer
from .state import Input, WorkflowState, fold_all


class ReplayReport(msgspec.Struct, frozen=True):
    """The outcome of replaying one history.

    ``ok`` is True when the code made every recorded decision. ``finished`` says
    whether the code reached its end; ``waiting_at`` is where it waits otherwise
    (``file:line``). ``replayed_to`` is the last seq replayed: on a divergence, the last
    one the code agreed with.
    """

    workflow_id: str
    workflow_name: str
    ok: bool
    replayed_to: int
    events: int
    finished: bool
    waiting_at: str | None = None
    error: str | None = None
    seq: int | None = None
    recorded: str | None = None
    attempted: str | None = None
    location: str | None = None


Workflows = Registry | Mapping[str, Workflow[Any, Any]] | Sequence[Workflow[Any, Any]]


def replay_history(
    workflow: Workflow[Any, Any],
    entries: Sequence[LogEntry],
    workflow_id: str = "replay",
    on_input: Callable[[Input], None] | None = None,
    payload_codec: PayloadCodec | None = None,
) -> tuple[WorkflowInstance, WorkflowState]:
    """Run ``workflow``'s code against ``entries``; raises ``NondeterminismError`` on divergence.

    Returns the instance (``finished`` tells whether the code reached its end) and
    the folded state of the history. ``payload_codec`` opens encrypted values.
    """
    state = fold_all(workflow_id, list(entries))
    instance = WorkflowInstance(workflow, workflow_id, payload_codec=payload_codec)
    # Outside a worker: the code stops where it would make its first new decision,
    # so nothing of it (a side_effect's function) runs here.
    instance.decisions.read_only = True
    instance.on_input = on_input
    instance.feed(state, state.last_seq + 1)
    return instance, state


def query_history(
    workflow: Workflow[Any, Any],
    entries: Sequence[LogEntry],
    query: str,
    args: msgspec.Raw,
    workflow_id: str = "replay",
    payload_codec: PayloadCodec | None = None,
) -> msgspec.Raw:
    """Answer ``query`` (its arguments ``args``, an encoded JSON array) from the state
    ``workflow``'s code reaches when replayed against ``entries``; the result, encoded.

    Nothing runs but the workflow's code and the handler. Raises ``PayloadError``
    (naming the missing key) before replaying values ``payload_codec`` cannot open,
    ``NondeterminismError`` when the code diverges from the history, and
    ``QueryFailed`` when the query cannot be answered (see ``queries.answer``).
    """
    codec.require_readable(workflow_id, entries, payload_codec)
    instance, _ = replay_history(workflow, entries, workflow_id, payload_codec=payload_codec)
    return answer(instance, query, args)


def find_workflow(workflows: Workflows, name: str) -> Workflow[Any, Any]:
    """The workflow called ``name`` among ``workflows``; ``RegistrationError`` if absent."""
    if isinstance(workflows, Registry):
        return workflows.get(name)
    if isinstance(workflows, Mapping):
        found = workflows.get(name)
    else:
        found = next((w for w in workflows if w.name == name), None)
    if found is None:
        raise RegistrationError(f"no workflow named {name!r} among the ones given to check()")
    return found


def state_at(history: History, seq: int | None = None) -> WorkflowState:
    """The state derived from the first ``seq`` events of ``history`` (all by default)."""
    return fold_all(history.workflow_id, [e for e in history.events if seq is None or e.seq <= seq])


def check(
    history: History,
    workflows: Workflows,
    until: int | None = None,
    on_input: Callable[[Input], None] | None = None,
    payload_codec: PayloadCodec | None = None,
) -> ReplayReport:
    """Replay ``history`` (up to seq ``until``) against the matching workflow's code.

    Raises ``PayloadError`` before replaying anything when the history holds
    values ``payload_codec`` cannot decrypt (naming the missing key): code fed
    values it cannot read would seem to diverge when it does not.
    """
    events = history.events
    entries = list(events) if until is None else [e for e in events if e.seq <= until]
    workflow = find_workflow(workflows, history.workflow_name)
    codec.require_readable(history.workflow_id, entries, payload_codec)
    replayed_to = entries[-1].seq if entries else 0
    base = {
        "workflow_id": history.workflow_id,
        "workflow_name": history.workflow_name,
        "events": len(history.events),
        "replayed_to": replayed_to,
    }
    try:
        instance, _ = replay_history(
            workflow, entries, history.workflow_id, on_input, payload_codec
        )
    except NondeterminismError as exc:
        # Replayed to the last seq the code agreed with, not to the end of the history.
        base["replayed_to"] = max(0, min(replayed_to, exc.seq - 1))
        return ReplayReport(
            ok=False,
            finished=False,
            error=str(exc),
            seq=exc.seq,
            recorded=exc.recorded,
            attempted=exc.attempted,
            location=exc.location,
            **base,  # type: ignore[arg-type]
        )
    return ReplayReport(
        ok=True,
        finished=instance.finished,
        waiting_at=None if instance.finished else instance.waiting_at(),
        **base,  # type: ignore[arg-type]
    )
