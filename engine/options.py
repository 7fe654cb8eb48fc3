"""``WorkerOptions``: how a worker runs, set from the ``Engine`` arguments of the same names."""

from __future__ import annotations

import msgspec


class WorkerOptions(msgspec.Struct, frozen=True, kw_only=True):
    """A worker's settings (see ``Engine`` for each).

    Attributes:
        snapshot_every: snapshot a workflow's state every N events (at least).
        lease_seconds: how long a claim lasts without a heartbeat.
        poll_interval: how often the worker looks for work other processes left.
        max_threads: threads for sync steps.
        max_payload_bytes: the largest result recorded (None: no limit).
        max_history_events: a longer log suspends its workflow (None: no limit).
        visibility_delay: a step running this long gets its decisions committed, so
            that the log shows it running.
        error_backoff: seconds before a workflow dropped after an error is taken again.
        cleanup_grace: seconds a workflow past its timeout may spend on its cleanup.
        max_workflows: at most this many workflows in flight (None: no bound).
        heartbeat_interval: a running step's heartbeat details are stored at most this
            often (seconds).
        blocked_threshold: seconds workflow code may run without awaiting before the
            worker reports it and suspends its workflow (None: not watched).
    """

    snapshot_every: int = 500
    lease_seconds: float = 30.0
    poll_interval: float = 1.0
    max_threads: int = 32
    max_payload_bytes: int | None = None
    max_history_events: int | None = None
    visibility_delay: float = 0.2
    error_backoff: float = 10.0
    cleanup_grace: float = 60.0
    max_workflows: int | None = None
    heartbeat_interval: float = 5.0
    blocked_threshold: float | None = 2.0
