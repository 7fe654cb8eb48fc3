"""Why a workflow waits: which running worker could take it, and why none does.

Workers record what they serve (the workflow names they have code for, the queues
they take from) when they register, and renew a heartbeat with their leases. From
that, ``why_waiting`` tells ``duralog show`` why a workflow nobody holds is still
waiting, and ``Unserved`` lets a worker log, once, the workflows no running worker
can run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from duralog.store.base import WorkerRecord, WorkflowRecord, WorkflowStatus

log = logging.getLogger("duralog.engine")

#: A workflow nobody holds is worth explaining in these statuses.
_WAITING = (WorkflowStatus.PENDING, WorkflowStatus.RUNNING)


def running(workers: Sequence[WorkerRecord], now: float) -> list[WorkerRecord]:
    """The workers whose heartbeat has not run out (``heartbeat_at`` is the time their
    leases were last renewed to)."""
    return [w for w in workers if w.heartbeat_at >= now]


def unserved(
    name: str, queue: str | None, workers: Sequence[WorkerRecord], now: float
) -> str | None:
    """Why no running worker can take a workflow ``name`` (on ``queue``); None when
    one can (or may: a worker of an older duralog does not say what it serves)."""
    alive = running(workers, now)
    if not alive:
        last = max((w.heartbeat_at for w in workers), default=None)
        since = "" if last is None else f" (the last one stopped renewing {now - last:.0f} s ago)"
        return f"no worker is running on this log{since}; start one (`duralog worker --app ...`)"
    if any(w.workflows is None for w in alive):
        return None
    with_code = [w for w in alive if name in (w.workflows or ())]
    if not with_code:
        served = sorted({n for w in alive for n in w.workflows or ()})
        listed = ", ".join(served[:10]) + (", ..." if len(served) > 10 else "")
        return (
            f"no running worker has workflow {name!r} registered ({len(alive)} running, "
            f"registering: {listed or 'nothing'}); start a worker with the module that "
            "defines it (--app)"
        )
    if queue is not None and not any(queue in (w.queues or ()) for w in with_code):
        return (
            f"no running worker with workflow {name!r} takes from queue {queue!r}; "
            "declare the queue in a worker (Engine(queues=...) or a Queue in its --app module)"
        )
    return None


def why_waiting(record: WorkflowRecord, workers: Sequence[WorkerRecord], now: float) -> str | None:
    """Why ``record``'s workflow waits for a worker, for ``show``; None when it does not
    wait (it has ended, or a live lease holds it)."""
    if record.status not in _WAITING:
        return None
    if record.owner is not None and (record.lease_until or 0) >= now:
        return None
    if record.status is WorkflowStatus.PENDING and (record.start_at or 0) > now:
        due = dt.datetime.fromtimestamp(record.start_at or 0, dt.UTC).isoformat(timespec="seconds")
        return f"delayed: no worker takes it up before {due}"
    reason = unserved(record.name, record.queue, workers, now)
    if reason is not None:
        return reason
    if record.queue is not None and record.status is WorkflowStatus.PENDING:
        return f"waiting its turn on queue {record.queue!r} (its limits: `duralog queues`)"
    return "waiting for a running worker to take it up (workers poll for work every second)"


class Unserved:
    """What a worker has said about workflows no running worker can run: each (name,
    queue) once, until it is served or gone."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._said: set[tuple[str, str | None]] = set()

    def note(
        self,
        waiting: Sequence[tuple[str, str | None, int]],
        workers: Sequence[WorkerRecord],
        now: float,
    ) -> list[str]:
        """Log a warning for each group of ``waiting`` workflows (name, queue, count)
        that no running worker can run and that was not said before; return them."""
        said = []
        current = set()
        for name, queue, count in waiting:
            reason = unserved(name, queue, workers, now)
            if reason is None:
                continue
            current.add((name, queue))
            if (name, queue) in self._said:
                continue
            on = "" if queue is None else f" on queue {queue!r}"
            message = (
                f"worker {self.worker_id}: {count} workflow(s) named {name!r}{on} cannot "
                f"run: {reason}"
            )
            log.warning("%s", message)
            said.append(message)
        self._said = current
        return said
