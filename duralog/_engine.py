"""``duralog.Engine``: the runtime's engine with the observability room attached.

The runtime (``duralog.engine``) never imports ``duralog.observe``; this class, in
the public face, adds what watching an engine needs: ``subscribe`` (the engine's
commits, pushed), ``follow`` (any process's, polled) and ``stats``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING

from duralog.engine import engine as runtime

# Observability is a plug-in: it loads with an engine's first subscribe, follow or
# stats, not with every engine (``engine/hooks.py``).
if TYPE_CHECKING:
    from duralog.observe.metrics import Stats
    from duralog.observe.subscribe import CommittedEvent, Observers, Subscription

_lock = threading.Lock()  # makes one engine's Observers once


class Engine(runtime.Engine):
    """Opens a log and runs workflows; use it as a context manager.

    Args:
        store: a SQLite path (default ``duralog.db``), ``":memory:"``, a PostgreSQL URL
            (``postgresql://...``, with ``pip install 'duralog[postgres]'``), or an
            ``EventStore``.
        worker: run a worker in this process while the engine is open (default True);
            False only writes (start workflows for other processes' workers to run).
        durability: ``"full"`` (default: an acknowledged event survives power loss)
            or ``"normal"`` (survives a process crash; faster).
        snapshot_every: snapshot a workflow's derived state every N events (and never
            more often than its history doubles, so a long history costs linear time).
        worker_id: the lease owner name (default ``host:pid:random``).
        lease_seconds: how long a claim lasts without a heartbeat.
        poll_interval: how often the worker looks for work other processes left.
        max_threads: threads for sync steps.
        max_payload_bytes: the largest input, result or signal payload recorded
            (None: no limit); a larger one is refused with a clear error.
        max_history_events: a workflow whose log grows past this is suspended with a
            clear reason (use ``duralog.continue_as_new`` to keep logs bounded).
        payload_codec: encrypts (or otherwise transforms) every payload, e.g.
            ``AesGcmCodec.from_env()``. It is this engine's (and its store's): engines
            with different keys can share a process.
        error_backoff: seconds before this worker takes up again a workflow it dropped
            after an error (a failed commit, a locked database); it is rebuilt from its log.
        cleanup_grace: seconds a workflow past its timeout may spend on its cleanup, and a
            cancelled parent on waiting for its children's cleanup, before it is ended
            without them (default 60).
        clock: the source of workflow time (default the wall clock; tests use a
            ``VirtualClock`` through ``duralog.testing``).
        registry: the workflows, queues, schedules and circuit breakers this engine
            runs with (default: the default registry, which the decorators fill); see
            ``duralog.Registry``.
        queues: the queues this engine's worker takes workflows from (default every
            ``duralog.Queue`` declared in its registry).
        max_workflows: at most this many workflows in flight on this worker (None: no
            bound). Past it, workflows started here wait ``PENDING`` like those of
            other processes, and are taken up as running ones end.
        resources: clients, connections and other objects for steps, by name
            (``duralog.inject()`` parameters, ``duralog.resource(name)``). They are
            never recorded in the log; the engine does not close them.
        heartbeat_interval: seconds between two writes of a running step's heartbeat
            details (``duralog.heartbeat``) to the store, at most (default 5): what a
            crash may lose of them.
        blocked_threshold: seconds workflow code may run without awaiting (a CPU loop,
            ``time.sleep``, a synchronous call) before the worker logs a warning with
            the workflow id and the blocking code's stack (default 2; None: not
            watched). Nothing can interrupt it: once it returns, what it decided is
            dropped and its workflow is ``SUSPENDED`` with the place as the reason.

    ``subscribe``, ``follow`` and ``stats`` watch it (``duralog.observe``).

    Example:
        ```python
        with duralog.Engine("shop.db") as engine:
            handle = engine.start(checkout, "o-1", 1999, id="order-o-1")
            print(handle.result(timeout=60))
        ```
    """

    _subscribers: Observers | None = None

    def _observers(self) -> Observers:
        """This engine's subscribers, told of its commits from the first subscribe on."""
        from duralog.observe.subscribe import Observers

        with _lock:
            if self._subscribers is None:
                self._subscribers = Observers()
                self.listeners.add(self._subscribers)
            return self._subscribers

    def subscribe(
        self,
        callback: Callable[[CommittedEvent], object] | None = None,
        *,
        kinds: Collection[str] | None = None,
        workflow_id: str | None = None,
        max_pending: int = 10_000,
        name: str | None = None,
    ) -> Subscription:
        """Receive every event this engine commits, as a ``CommittedEvent``.

        With ``callback``, it is called once per event, in commit order, on a thread
        of its own: a slow or failing callback never holds up the worker. Without
        one, iterate over the returned ``Subscription`` (it ends when closed). At most
        ``max_pending`` events wait for a subscriber; past that the newest are
        dropped, counted in ``subscription.dropped`` and logged as a warning.
        ``kinds`` (e.g. ``{"StepFailed"}``) and ``workflow_id`` filter the events.
        Close it with ``subscription.close()`` (or a ``with`` block); the engine's
        ``close`` closes it after the last commit.

        Only this engine's commits are seen; ``duralog tail`` follows the log of
        every process.

        Example:
            ```python
            engine.subscribe(lambda e: print(e.workflow_id, e.seq, e.kind, e.step))
            ```
        """
        return self._observers().subscribe(
            callback, kinds=kinds, workflow_id=workflow_id, max_pending=max_pending, name=name
        )

    def follow(
        self,
        *,
        since: float | dt.datetime | None = None,
        workflow_id: str | None = None,
        kinds: Collection[str] | None = None,
        poll_interval: float = 0.5,
        stop: threading.Event | None = None,
    ) -> Iterator[CommittedEvent]:
        """Every event any process appends to this log, read back as it lands (what
        ``duralog tail`` prints); works with ``Engine(..., worker=False)``.

        Polls every ``poll_interval`` seconds until ``stop`` is set. ``since`` also
        yields the events already logged from then on; ``workflow_id`` and ``kinds``
        filter. Unlike ``subscribe``, it sees other processes' commits, a poll late.

        Example:
            ```python
            for event in duralog.Engine("shop.db", worker=False).follow(kinds={"StepFailed"}):
                alert(event.workflow_id, event.step)
            ```
        """
        from duralog.observe.follow import follow

        start = since.timestamp() if isinstance(since, dt.datetime) else since
        return follow(
            self.store,
            since=start,
            workflow_id=workflow_id,
            kinds=kinds,
            poll_interval=poll_interval,
            stop=stop,
        )

    def stats(self, since: float | dt.datetime | None = None, name: str | None = None) -> Stats:
        """Counts, durations, retries and failures per workflow and per step, read
        from the log (from ``since`` on; only workflows called ``name``).

        ``engine.stats().prometheus()`` renders them in Prometheus's text format.
        """
        from duralog.observe.metrics import collect

        start = since.timestamp() if isinstance(since, dt.datetime) else since
        return collect(self.store, since=start, name=name)
