"""Group commit: writes are batched, and each caller is released only after its commit.

Where a step's events are committed: ``AppendCommitter`` writes the appends of the
worker's workflows from the worker's own event loop: everything that became ready
in one round of the loop goes into one transaction. ``StartCommitter`` writes the
workflows being created: ``engine.start`` from user code is written by the calling
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

    def _commit(self) -> None:
        self._writing = True
        try:
            self._commit_batch()
        finally:
            self._writing = False

    def _commit_batch(self) -> None:
        batch, self._batch = self._batch, []
        appends: list[tuple[Append, asyncio.Future[Any]]] = []
        for item, future in batch:
            if isinstance(item, Append):
                appends.append((item, future))
                continue
            self._write(appends)
            appends = []
            try:
                _settle(future, item(self._store), None)
            except Exception as exc:
                _settle(future, None, exc)
        self._write(appends)

    def _write(self, appends: list[tuple[Append, asyncio.Future[Any]]]) -> None:
        if not appends:
            return
        try:
            results = self._store.append([item for item, _ in appends])
            if len(results) != len(appends):
                raise StoreError(f"the store answered {len(results)} of {len(appends)} writes")
        except Exception as exc:  # the transaction failed: every caller hears why
            for _, future in appends:
                _settle(future, None, exc)
            return
        for (_, future), result in zip(appends, results, strict=True):
            if isinstance(result, LogDamaged):  # that workflow's log refused it, no other
                _settle(future, None, result)
            else:
                _settle(future, result, None)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
