"""Dead letters: a workflow that keeps killing its worker is set aside.

A step that crashes the process (a segfault in a native library, an OOM kill) is
run again by the worker that recovers its workflow, which crashes too, and so on.
So each claim says whom it took the workflow from (``Claim.taken_from``), and the
claiming worker counts, before it runs any of the workflow's code:

* a **recovery** is a claim of a workflow from a worker that had not let it go
  (its lease expired, or its process died) while one of the workflow's steps was
  running: the log shows the step scheduled or started, without an outcome. A
  workflow that was only waiting (a timer, a signal, a step's retry backoff) is not
  charged when its worker dies of something else;
* it counts **in a row** while the workflow makes no **progress**: an outcome in
  its log since the last counted recovery (a step's result, failure or retry, a
  timer that fired, a signal, a child's end, a cancel request) starts the count
  again at this recovery;
* past ``max_recovery_attempts`` recoveries in a row (the workflow definition's,
  default 10; None: no limit) the workflow is set aside instead of being run:
  ``FAILED``, its log ending with a ``WorkflowTerminated`` event whose error has
  type ``RecoveryLimit``, and the reason in its index row (``duralog list``/``show``).

The count lives in the workflow's index row (``recoveries``, ``recovered_at``), so
it survives the crashes it counts. A workflow taken over this way has its step
decisions committed before its steps start (``Execution.careful``), so that the
next crash, if it comes, finds the step in the log.
"""

from __future__ import annotations

from duralog.errors import ErrorDetails
from duralog.replay.state import STEP_RUNNING, STEP_SCHEDULED, WorkflowState
from duralog.store import events as ev
from duralog.store.events import LogEntry

#: The error type of a workflow set aside after too many recoveries.
RECOVERY_LIMIT = "RecoveryLimit"

#: Events that show a workflow moved on: an outcome, not a decision or bookkeeping.
PROGRESS_KINDS = frozenset(
    cls.__name__
    for cls in (
        ev.StepCompleted,
        ev.StepFailed,
        ev.StepRetrying,
        ev.TimerFired,
        ev.SignalReceived,
        ev.CancelRequested,
        ev.ChildCompleted,
        ev.ChildFailed,
    )
)


def running_steps(state: WorkflowState) -> list[str]:
    """The names of the steps the log shows running (scheduled or started, no outcome
    yet, not waiting out a retry backoff), in seq order."""
    return [
        step.name for step in state.pending_steps() if step.status in (STEP_SCHEDULED, STEP_RUNNING)
    ]


def progressed(entries: list[LogEntry], after_seq: int, last_seq: int) -> bool:
    """Whether the log moved on after seq ``after_seq``: ``entries`` are its events from
    there on; a log now shorter than that began a new run (continue-as-new)."""
    if last_seq < after_seq:
        return True
    return any(entry.seq > after_seq and entry.kind in PROGRESS_KINDS for entry in entries)


def next_count(previous: int, moved_on: bool, running: bool) -> int:
    """The recoveries in a row after this claim: ``previous`` ones, none if the
    workflow ``moved_on`` since, plus this one if a step of it was ``running``."""
    return (0 if moved_on else previous) + (1 if running else 0)


def over_limit(count: int, limit: int | None) -> bool:
    """Whether ``count`` recoveries in a row exceed ``max_recovery_attempts``."""
    return limit is not None and count > limit


def set_aside(
    workflow_id: str, count: int, limit: int, steps: list[str]
) -> tuple[ErrorDetails, str]:
    """The cause a workflow set aside after ``count`` recoveries ends ``FAILED`` with,
    and the short reason its index row shows (``duralog list``)."""
    running = ", ".join(dict.fromkeys(steps)) or "?"
    reason = (
        f"set aside after {count} recoveries in a row without progress "
        f"(max_recovery_attempts={limit}); its step {running} ran each time"
    )
    message = (
        f"workflow {workflow_id!r} was {reason}, and its worker died or stalled. Fix the "
        f"step, then run it again with `duralog fork {workflow_id} --from-seq N` or "
        f"`duralog restart {workflow_id}`"
    )
    return ErrorDetails(RECOVERY_LIMIT, message), reason
