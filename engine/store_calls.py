"""Where a worker's own store calls run, and the reads that rebuild a claimed workflow.

For a local store (SQLite) a worker calls it from its event loop: a hop to another
thread and back would cost more than the call. For a store across the network
(``EventStore.remote``, PostgreSQL) every call is a round trip, and one that waits
would stall every workflow of the worker: ``StoreCalls`` runs those on threads of
their own, and the loop awaits them. (Appends have their own writers:
``committer.RemoteAppendCommitter``.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from duralog.errors import LogDamaged, StoreError
from duralog.replay.state import WorkflowState, fold, load_state, new_state
from duralog.store.base import Claim, LogStore, WorkflowRecord

log = logging.getLogger("duralog.engine")
T = TypeVar("T")

#: A claimed workflow's committed state and index row, or why they could not be read.
Read = tuple[WorkflowState, WorkflowRecord | None] | StoreError


class StoreCalls:
    """Runs a worker's store calls: inline for a local store, on two threads of their
    own for a remote one (see the module docstring)."""

    def __init__(self, remote: bool) -> None:
        self._threads = (
            concurrent.futures.ThreadPoolExecutor(2, "duralog-store") if remote else None
        )

    @property
    def inline(self) -> bool:
        """Whether calls run on the caller's thread (a local store)."""
        return self._threads is None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``: off the loop for a remote store, inline for a local one."""
        if self._threads is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    def close(self) -> None:
        """Let the calls under way end; start no more."""
        if self._threads is not None:
            self._threads.shutdown()


def read_state(store: LogStore, workflow_id: str) -> WorkflowState:
    """The committed state: newest valid snapshot plus the tail of the log, checked as
    it is read (``LogDamaged``, also for events that do not fold)."""
    state, after = None, 0
    snapshot = store.load_snapshot(workflow_id)
    if snapshot is not None:
        state = load_state(snapshot.state, snapshot.checksum)
        if state is None:
            log.warning("ignoring the corrupt snapshot of %s at seq %d", workflow_id, snapshot.seq)
        else:
            after = state.last_seq
    if state is None:
        state = new_state(workflow_id)
    for entry in store.read_events(workflow_id, after_seq=after):
        try:
            fold(state, entry)
        except ValueError as exc:
            raise LogDamaged(workflow_id, entry.seq, str(exc)) from None
    return state


def read_claimed(store: LogStore, claims: Sequence[Claim]) -> list[Read | None]:
    """The committed state and index row of each claimed workflow, or why it could not
    be read (``LogDamaged`` too: the loop judges it)."""
    read: list[Read | None] = []
    for claim in claims:
        try:
            state = read_state(store, claim.workflow_id)
            read.append((state, store.get_workflow(claim.workflow_id)))
        except StoreError as exc:
            read.append(exc)
    return read
