"""Named queues: bounded concurrency, rate limits and priorities for started workflows.

A workflow started with ``engine.start(..., queue=...)`` waits ``PENDING`` until a
worker that declared the queue takes it off, which it does only while the queue's
limits allow. The limits are counted inside the store's claim transaction, so
they hold across every worker process on the same database.
"""

from __future__ import annotations

import datetime as dt
import re

from duralog.errors import ConfigurationError, positive_seconds, whole_number
from duralog.replay.definitions import REGISTRY, DeclarationKind, Registry
from duralog.store.base import QueueLimits

_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")


class Queue:
    """A named queue of workflows; declare it at module level, next to your workflows.

    Args:
        name: letters, digits and ``_ . : -``.
        concurrency: at most this many of the queue's workflows run at once, across
            all workers (a workflow holds its slot while RUNNING or PAUSED).
        worker_concurrency: at most this many at once on any one worker.
        rate_limit: at most this many taken off the queue per ``period``.
        period: the rate limit's window, in seconds or as a timedelta (default 1 s).
        registry: where it is declared (default: the default registry, whose queues an
            ``Engine`` given no ``queues=`` nor ``registry=`` serves).

    Workers take a queue's workflows by ``priority`` (lower first; default 0), then
    oldest first. Only workers that declare the queue ever run its workflows, and
    never beyond its limits: one left RUNNING or PAUSED by a dead (or lease-expired)
    worker is taken over by such a worker within ``worker_concurrency`` (it already
    holds its slot of ``concurrency``), and a SUSPENDED one (its code diverged) is
    resumed when a worker starts, if ``concurrency`` and ``worker_concurrency`` leave
    room (a resumed workflow does not count against ``rate_limit``). Example:

    ```python
    emails = duralog.Queue("emails", concurrency=10, rate_limit=100, period=60)
    engine.start(send_newsletter, user_id, queue=emails, priority=5)
    ```
    """

    def __init__(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        rate_limit: int | None = None,
        period: float | dt.timedelta = 1.0,
        registry: Registry | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigurationError(
                f"a queue name is 1-100 letters, digits or _ . : - characters, got {name!r}"
            )
        for label, value in (
            ("concurrency", concurrency),
            ("worker_concurrency", worker_concurrency),
            ("rate_limit", rate_limit),
        ):
            whole_number(value, f"queue {name!r}: {label}", minimum=1, optional=True)
        window = positive_seconds(period, f"queue {name!r}: period")
        self.name = name
        self.limits = QueueLimits(
            name,
            concurrency=concurrency,
            worker_concurrency=worker_concurrency,
            rate_limit=rate_limit,
            rate_period=window,
        )
        (REGISTRY if registry is None else registry).declared(QUEUES)[name] = self

    def __repr__(self) -> str:
        limits = self.limits
        parts = [
            f"{label}={value!r}"
            for label, value in (
                ("concurrency", limits.concurrency),
                ("worker_concurrency", limits.worker_concurrency),
                ("rate_limit", limits.rate_limit),
            )
            if value is not None
        ]
        if limits.rate_limit is not None:
            parts.append(f"period={limits.rate_period:g}")
        return f"Queue({self.name!r}{''.join(', ' + p for p in parts)})"


#: The queues declared in a registry, by name (a later declaration replaces one).
QUEUES: DeclarationKind[str, Queue] = DeclarationKind("queues")


def resolve(queue: Queue | str, known: dict[str, Queue]) -> Queue:
    """The declared queue for ``queue``; a name nobody declared is a clear error."""
    if isinstance(queue, Queue):
        return queue
    if isinstance(queue, str) and queue in known:
        return known[queue]
    names = ", ".join(sorted(known)) or "none"
    raise ConfigurationError(
        f"no queue named {queue!r} is declared in this process (declared: {names}); declare "
        f"it with duralog.Queue({queue!r}, ...) in a module both the starter and the "
        "workers import"
    )


def check_priority(priority: object) -> int:
    """A queue priority is a whole number (lower runs first)."""
    priority = whole_number(priority, "a priority (lower runs first)")
    if not -(2**31) <= priority < 2**31:
        raise ConfigurationError(f"a priority must fit in 32 bits, got {priority}")
    return priority
