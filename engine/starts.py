"""Where workflows are created from outside a worker: ``engine.start``, ``start_many``.

``Starts`` turns a call into the first event and index row of a new workflow, writes
it through the engine's ``StartCommitter``, and hands what was created to the engine's
own worker (it takes a place for it first, so that a start needs no claim).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from duralog.errors import DuplicateWorkflow, PayloadError, WorkflowIdInUse, positive_seconds
from duralog.replay.definitions import Workflow
from duralog.store import codec, envelope
from duralog.store import events as ev
from duralog.store.base import EventStore, NewWorkflow, WorkflowQuery, WorkflowStatus

from .clock import Clock
from .committer import StartCommitter
from .handle import check_id
from .hooks import Listeners
from .lease import Moment
from .queues import Placement
from .worker import Worker


class Starts:
    """Creates the workflows an engine starts; see the module docstring."""

    def __init__(
        self,
        store: EventStore,
        committer: StartCommitter,
        clock: Clock,
        listeners: Listeners,
        *,
        worker_id: str,
        lease_seconds: float,
        max_payload_bytes: int | None,
    ) -> None:
        self.store = store
        self._committer = committer
        self.clock = clock
        self.listeners = listeners
        self.worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._max_payload_bytes = max_payload_bytes
        #: The engine's worker, once started: it runs what is started here.
        self.worker: Worker | None = None

    def new_item(
        self,
        definition: Workflow[Any, Any],
        args: Sequence[Any],
        workflow_id: str | None,
        timeout: float | dt.timedelta | None,
        placed: Placement,
    ) -> NewWorkflow:
        """The row and first event of a workflow to create (nothing is written here)."""
        queued = placed.queue
        limit = positive_seconds(timeout, "a workflow timeout", optional=True)
        workflow_id = check_id(workflow_id) if workflow_id is not None else uuid.uuid4().hex
        try:
            plain_args, kwargs_raw = codec.encode_call(args, {})
            args_raw = msgspec.Raw(envelope.wrap(bytes(plain_args), self.store.payload_codec))
            codec.check_size(
                args_raw, self._max_payload_bytes, f"the input of workflow {definition.name!r}"
            )
        except PayloadError as exc:
            raise PayloadError(
                f"cannot record the input of workflow {definition.name!r}: {exc}; "
                f"{codec.SUPPORTED_HINT}"
            ) from None
        # A call the workflow cannot take is refused now, not when a worker runs it
        # (checked on the plain JSON: nothing to decrypt).
        definition.check_call(plain_args, kwargs_raw, None)
        started = ev.started_entry(
            self.clock.now(),
            name=definition.name,
            args=args_raw,
            kwargs=kwargs_raw,
            timeout=limit,
            trace=self.listeners.trace(workflow_id, definition.name),
            queue=queued.name if queued else None,
            priority=placed.priority,
            dedup_id=placed.dedup_id,
            partition=placed.partition,
            start_at=placed.start_at,
        )
        worker = self.worker
        owner = (
            self.worker_id
            if worker is not None
            and queued is None
            and placed.start_at is None
            and worker.reserve(workflow_id)
            else None
        )
        return NewWorkflow(
            workflow_id,
            definition.name,
            started,
            owner=owner,
            lease_seconds=self._lease_seconds if owner else None,
            queue=queued.name if queued else None,
            priority=placed.priority,
            dedup_id=placed.dedup_id,
            partition_key=placed.partition,
            start_at=placed.start_at,
        )

    def create(self, items: list[NewWorkflow]) -> list[int | None]:
        """Commit new workflows; a place reserved for one that was not created is freed."""
        try:
            fences = self._committer.create(items)
        except BaseException:
            self.unreserve(items)
            raise
        self.unreserve([item for item, fence in zip(items, fences, strict=True) if fence is None])
        return fences

    def unreserve(self, items: list[NewWorkflow]) -> None:
        """Give back the worker places taken for ``items`` (not created after all)."""
        if self.worker is not None:
            for item in items:
                if item.owner is not None:
                    self.worker.unreserve(item.id)

    def started(
        self,
        definition: Workflow[Any, Any],
        item: NewWorkflow,
        fence: int | None,
        granted: Moment,
    ) -> None:
        """After the commit (which began ``granted``): hand a new workflow to the worker.
        An id that existed already (``fence`` None) is checked by ``check_existing``,
        once every workflow of the commit has been handed over."""
        worker = self.worker
        if fence is not None and self.listeners.active:
            self.listeners.created(item.id, definition.name, item.started)
        if fence is None:
            return
        if worker is not None and item.start_at is not None:
            worker.wake_for_start(item.start_at)  # claimed (or dequeued) when due
        elif worker is not None and item.queue is not None:
            worker.request_dequeue()
        elif worker is not None and item.owner is not None:
            worker.adopt_new(item.id, fence, item.started, granted, reserved=True)
        elif worker is not None:
            worker.request_claim()  # created unowned (the worker was full): taken when room

    def check_duplicate(self, item: NewWorkflow) -> None:
        """Refuse a start that was not created because a live workflow of its queue holds
        its dedup id (``DuplicateWorkflow``); one whose id exists is left to
        ``check_existing``."""
        if item.dedup_id is None or item.queue is None or self.store.get_workflow(item.id):
            return
        holders = self.store.find_workflows(
            WorkflowQuery(
                queues=(item.queue,),
                dedup_ids=(item.dedup_id,),
                statuses=tuple(s for s in WorkflowStatus if not s.is_terminal),
            ),
            limit=1,
        )
        raise DuplicateWorkflow(item.queue, item.dedup_id, holders[0].id if holders else None)

    def check_existing(self, definition: Workflow[Any, Any], item: NewWorkflow) -> None:
        """Refuse a start whose id exists with another workflow name, or with other input
        (the recorded input is kept; a run continued as new is not compared, its input
        being the last run's). Nothing is compared that cannot be read (no key)."""
        existing = self.store.get_workflow(item.id)
        if existing is None:
            return
        if existing.name != definition.name:
            raise WorkflowIdInUse(
                f"workflow id {item.id!r} already belongs to a {existing.name!r} "
                f"workflow, not {definition.name!r}; choose another id"
            )
        first = self.store.read_events(item.id, 0, 1, verify=False)
        recorded = first[0].event if first else None
        if not isinstance(recorded, ev.WorkflowStarted) or recorded.run != 1:
            return
        given = item.started.event
        assert isinstance(given, ev.WorkflowStarted)
        if bytes(recorded.args) == bytes(given.args) and bytes(recorded.kwargs) == bytes(
            given.kwargs
        ):
            return  # the same plain input (sealed values differ by their nonce)
        used = self.store.payload_codec
        try:
            same = all(
                codec.decode(old, payload_codec=used) == codec.decode(new, payload_codec=used)
                for old, new in ((recorded.args, given.args), (recorded.kwargs, given.kwargs))
            )
        except PayloadError:
            return
        if not same:
            raise WorkflowIdInUse(
                f"workflow {item.id!r} ({definition.name}) already exists, started with other "
                "input; its recorded input is kept. Start it with the same input to get its "
                "handle, or choose another id"
            )
