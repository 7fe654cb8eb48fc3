"""Group commit: writes are batched, and each caller is released only after its commit.

Where a step's events are committed: ``AppendCommitter`` writes the appends of the
worker's workflows from the worker's own event loop: everything that became ready
in one round of the loop goes into one transaction (for a store across the network,
``EventStore.remote``, PostgreSQL: ``RemoteAppendCommitter`` hands each such batch to
writer threads instead, so that no round trip stalls the loop). ``StartCommitter``
writes the workflows being created: ``engine.start`` from user code is written by the calling
threads themselves, taking turns (whoever gets the turn writes every start queued
so far), and the creates of child workflows by a writer thread, so that the loop
never waits for them. Either way a commit is shared by as many workflows as are
ready, and write-ahead holds: nobody proceeds on an event that is not on disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from duralog.errors import LogDamaged, StoreError
from duralog.store.base import Append, EventStore, NewWorkflow

Outcome = Callable[[Any, BaseException | None], None]
log = logging.getLogger("duralog.engine")
_CLOSED = "the engine is closed; no more writes are accepted"


class StartCommitter:
    """Creates the workflows an engine starts (and its workers' children); see the
    module docstring."""

    def __init__(self, store: EventStore, name: str = "duralog-committer") -> None:
        self._store = store
        self._cond = threading.Condition()
        self._creates: list[tuple[NewWorkflow, Outcome]] = []
        self._stopping = False
        #: Creates written by their callers (see ``create``), and the turn to write them.
        self._direct: list[tuple[NewWorkflow, concurrent.futures.Future[int | None]]] = []
        self._direct_writer = threading.Lock()
        self._holder: int | None = None  # the thread writing them now
        self._refusing = False  # engine.close() began: starts are refused
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- submitting --------------------------------------------------------

    def create(self, items: Sequence[NewWorkflow]) -> list[int | None]:
        """Create workflows from any thread, blocking until committed.

        The caller writes them itself, with no hand-off to the writer thread and
        back: callers that arrive while another one writes wait behind it, and the
        first of them to get its turn writes for all of them, so concurrent starts
        still share one commit.
        """
        requests = [(item, concurrent.futures.Future[int | None]()) for item in items]
        if not requests:
            return []
        with self._cond:
            if self._refusing:
                raise StoreError(_CLOSED)
            self._direct.extend(requests)
        with self._direct_writer:
            self._holder = threading.get_ident()
            try:
                if not requests[0][1].done():  # no earlier caller wrote ours: write them
                    self._write_direct()
            finally:
                self._holder = None
        return [future.result() for _, future in requests]

    def refuse_starts(self) -> None:
        """Refuse ``create`` from now on; return once the caller writing (if any) is done
        and the callers queued behind it have heard that the engine is closed."""
        with self._cond:
            self._refusing = True
        if self._holder == threading.get_ident():
            return  # called from inside that very write (a signal handler): it cannot end first
        with self._direct_writer:
            self._write_direct()

    def _write_direct(self) -> None:
        """Write every create queued by callers (the caller holds ``_direct_writer``)."""
        batch: list[tuple[NewWorkflow, concurrent.futures.Future[int | None]]] = []
        try:
            with self._cond:
                batch, self._direct = self._direct, []
                refused = self._refusing
            if refused:  # close() came first: the store may be closed under us
                _fail(batch, StoreError(_CLOSED))
                return
            self._write(
                self._store.create_workflows,
                [(item, _thread_outcome(future)) for item, future in batch],
            )
        except BaseException:  # Ctrl-C: nobody may wait forever
            _fail(batch, StoreError("the start was interrupted; it may not be written"))
            raise

    async def create_async(self, item: NewWorkflow) -> int | None:
        """Create one workflow from the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        self._submit(item, _loop_outcome(loop, future))
        return await future

    def _submit(self, item: NewWorkflow, outcome: Outcome) -> None:
        # Under the lock: the writer swaps the list, and an item added to a list it
        # already took would never be written.
        with self._cond:
            if self._stopping:
                outcome(None, StoreError(_CLOSED))
                return
            if not self._thread.is_alive():
                outcome(None, StoreError("the engine's writer thread stopped; see the log"))
                return
            self._creates.append((item, outcome))
            self._cond.notify()

    # -- the thread --------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._creates or self._stopping):
                    self._cond.wait()
                creates, self._creates = self._creates, []
                if self._stopping and not creates:
                    return
            self._write(self._store.create_workflows, creates)

    @staticmethod
    def _write(
        write: Callable[[Sequence[Any]], list[Any]], requests: list[tuple[Any, Outcome]]
    ) -> None:
        try:
            results = write([item for item, _ in requests])
            if len(results) != len(requests):
                raise StoreError(f"the store answered {len(results)} of {len(requests)} writes")
        except Exception as exc:  # the whole transaction failed: every caller hears why
            for _, outcome in requests:
                _tell(outcome, None, exc)
            return
        for (_, outcome), result in zip(requests, results, strict=True):
            if isinstance(result, LogDamaged):  # that workflow's log refused it, no other
                _tell(outcome, None, result)
            else:
                _tell(outcome, result, None)

    def close(self) -> None:
        """Refuse starts, write what the thread has queued, then stop the thread (the
        store may be closed once this returns)."""
        self.refuse_starts()  # a caller still writing finishes first
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()


def _fail(
    requests: list[tuple[NewWorkflow, concurrent.futures.Future[int | None]]], error: StoreError
) -> None:
    for _, future in requests:
        if not future.done():
            future.set_exception(error)


def _tell(outcome: Outcome, result: Any, error: BaseException | None) -> None:
    """Release one caller; a caller that cannot be told must not stop the writer."""
    try:
        outcome(result, error)
    except Exception:
        log.exception("duralog could not hand a commit outcome to its caller")


def _loop_outcome(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> Outcome:
    def resolve(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def outcome(result: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(resolve, result, error)

    return outcome


def _thread_outcome(future: concurrent.futures.Future[Any]) -> Outcome:
    def outcome(result: Any, error: BaseException | None) -> None:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    return outcome


class AppendCommitter:
    """Group commit on the worker's own event loop, for the appends of its workflows.

    Every append made while the loop runs one round of callbacks lands in one
    batch, written by a single callback queued behind them: one transaction for
    everything that became ready together, and no hand-off to another thread and
    back on the way (the thread hops cost more than the commit at
    ``durability="normal"``). SQLite releases the GIL while it writes, so step
    threads keep running meanwhile.
    """

    def __init__(self, store: EventStore, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop
        self._batch: list[tuple[Append | Callable[[EventStore], Any], asyncio.Future[Any]]] = []
        self._writing = False

    def append(self, item: Append) -> asyncio.Future[bool]:
        """Queue one append; the future resolves once its transaction committed (it
        raises ``LogDamaged`` when the workflow's log is damaged: nothing was written)."""
        return self._queue(item)

    @property
    def busy(self) -> bool:
        """Whether writes are queued or being written."""
        return bool(self._batch) or self._writing

    def call(self, fn: Callable[[EventStore], Any]) -> asyncio.Future[Any]:
        """Run ``fn(store)`` in order with the appends queued before and after it."""
        return self._queue(fn)

    def _queue(self, item: Append | Callable[[EventStore], Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        if not self._batch:
            self._loop.call_soon(self._commit)
        self._batch.append((item, future))
        return future

    def close(self) -> None:
        """Nothing to stop: the loop wrote everything."""

    def _commit(self) -> None:
        self._writing = True
        try:
            self._commit_batch()
        finally:
            self._writing = False

    def _commit_batch(self) -> None:
        batch, self._batch = self._batch, []
        for future, result, error in _written(self._store, batch):
            _settle(future, result, error)


def append_committer(store: EventStore, loop: asyncio.AbstractEventLoop) -> AppendCommitter:
    """The group commit for a worker's appends: on its loop for a local store, on a
    writer thread for a remote one (``EventStore.remote``)."""
    if store.remote:
        return RemoteAppendCommitter(store, loop)
    return AppendCommitter(store, loop)


_Item = Append | Callable[[EventStore], Any]
#: Writer threads of a remote store's appends: commits of different workflows that
#: overlap (each holds one of the store's connections while it runs).
_WRITERS = 4
#: Seconds a write may take before a spare writer writes what queued behind it.
_STALLED = 0.005
_Settled = tuple[asyncio.Future[Any], Any, BaseException | None]


class RemoteAppendCommitter(AppendCommitter):
    """``AppendCommitter`` for a store across the network: the loop never waits on it.

    Batches form on the loop exactly as on the local path (everything queued in one
    round of the loop), but the callback behind them hands the batch to writer
    threads and returns. A writer takes every item handed over so far (the appends
    between two ``call``s in one transaction) except those of a workflow another
    writer is writing: a workflow's appends commit one after the other, in the
    order queued. While one write runs, what queues behind it waits for it (one
    large commit rather than many small ones) unless it takes longer than
    ``_STALLED``: then a spare writer writes it, so that a commit waiting on the
    network delays its own workflows and no other. A ``call`` runs alone, once
    everything queued before it is written, and before anything queued after it.
    Each writer gives the loop all outcomes of its write in one callback: every
    caller is released only after its commit.
    """

    def __init__(
        self, store: EventStore, loop: asyncio.AbstractEventLoop, writers: int | None = None
    ) -> None:
        super().__init__(store, loop)
        self._cond = threading.Condition()
        self._handed: list[tuple[_Item, asyncio.Future[Any]]] = []  # under _cond, in order
        self._writing_ids: Counter[str] = Counter()  # workflows being written (under _cond)
        self._active = 0  # writers writing (under _cond)
        self._last_began = 0.0  # when the newest of their writes began (under _cond)
        self._in_flight = 0  # items handed over and not settled yet (loop thread)
        self._closing = False
        self._threads = [
            threading.Thread(target=self._run, name=f"duralog-appender-{n}", daemon=True)
            for n in range(writers or _WRITERS)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def busy(self) -> bool:
        """Whether writes are queued or being written."""
        return bool(self._batch) or self._in_flight > 0

    def _commit(self) -> None:
        batch, self._batch = self._batch, []
        with self._cond:
            if self._closing or not any(t.is_alive() for t in self._threads):
                error = StoreError(_CLOSED if self._closing else "the appender threads stopped")
                for _, future in batch:
                    _settle(future, None, error)
                return
            self._handed.extend(batch)
            self._cond.notify()
        self._in_flight += len(batch)

    def _take(self) -> list[tuple[_Item, asyncio.Future[Any]]]:
        """The items a free writer may write now, in order (under ``_cond``)."""
        taken: list[tuple[_Item, asyncio.Future[Any]]] = []
        kept: list[tuple[_Item, asyncio.Future[Any]]] = []
        held = set(self._writing_ids)  # workflows whose earlier appends are being written
        for n, entry in enumerate(self._handed):
            item = entry[0]
            if not isinstance(item, Append):  # a call: alone, after all before it
                if not taken and not kept and self._active == 0:
                    taken.append(entry)
                    kept.extend(self._handed[n + 1 :])
                else:
                    kept.extend(self._handed[n:])
                break
            if item.workflow_id in held:
                kept.append(entry)
            else:
                taken.append(entry)
        self._handed = kept
        return taken

    def _wait_for_work(self) -> list[tuple[_Item, asyncio.Future[Any]]]:
        """The next items this writer writes; [] once closing with nothing left (under
        ``_cond``). While others write, a spare writer joins in only once the newest of
        their writes has taken ``_STALLED`` seconds: quick commits stay few and large
        (one writer, group commit), and a write that waits on the network holds up
        the workflows it writes, not the ones queued behind it."""
        while True:
            wait: float | None = None
            if self._handed:
                if self._active:
                    wait = self._last_began + _STALLED - time.monotonic()
                if wait is None or wait <= 0:
                    batch = self._take()
                    if batch:
                        return batch
                    wait = None  # all held back: a write that ends says so
            elif self._closing and self._active == 0:
                return []
            self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._wait_for_work()
                if not batch:
                    self._cond.notify_all()  # the other writers stop too
                    return
                ids = [item.workflow_id for item, _ in batch if isinstance(item, Append)]
                self._writing_ids.update(ids)
                self._active += 1
                self._last_began = time.monotonic()
            try:
                settled = _written(self._store, batch)
            except BaseException:  # Ctrl-C in the thread: nobody may wait forever
                error = StoreError("the write was interrupted; it may not be written")
                settled = [(future, None, error) for _, future in batch]
                raise
            finally:
                with self._cond:
                    self._writing_ids.subtract(ids)
                    for workflow_id in ids:
                        if self._writing_ids[workflow_id] <= 0:
                            del self._writing_ids[workflow_id]
                    self._active -= 1
                    self._cond.notify_all()  # items held back for these may go now
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    self._loop.call_soon_threadsafe(self._release, settled)

    def _release(self, settled: list[_Settled]) -> None:
        """Release the callers of a write (on the loop)."""
        self._in_flight -= len(settled)
        for future, result, error in settled:
            _settle(future, result, error)

    def close(self) -> None:
        """Write what was handed over, then stop the writer threads."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()


def _written(
    store: EventStore, batch: list[tuple[Append | Callable[[EventStore], Any], asyncio.Future[Any]]]
) -> list[_Settled]:
    """Write ``batch`` in order: the appends between two calls in one transaction, each
    call ``fn(store)`` on its own; the outcome of each item, for its future."""
    settled: list[_Settled] = []
    appends: list[tuple[Append, asyncio.Future[Any]]] = []
    for item, future in batch:
        if isinstance(item, Append):
            appends.append((item, future))
            continue
        settled += _appended(store, appends)
        appends = []
        try:
            settled.append((future, item(store), None))
        except Exception as exc:
            settled.append((future, None, exc))
    return settled + _appended(store, appends)


def _appended(
    store: EventStore, appends: list[tuple[Append, asyncio.Future[Any]]]
) -> list[_Settled]:
    """Append the batch in one transaction: each caller's future with its outcome (a
    failed transaction fails them all; a damaged log fails its own item only)."""
    if not appends:
        return []
    try:
        results = store.append([item for item, _ in appends])
        if len(results) != len(appends):
            raise StoreError(f"the store answered {len(results)} of {len(appends)} writes")
    except Exception as exc:  # the transaction failed: every caller hears why
        return [(future, None, exc) for _, future in appends]
    return [
        (future, None, result) if isinstance(result, LogDamaged) else (future, result, None)
        for (_, future), result in zip(appends, results, strict=True)
    ]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
