"""Wake-ups across processes for the PostgreSQL store: LISTEN/NOTIFY on one connection.

Writers call ``pg_notify`` in the same transaction as the write it announces, so
a notification is delivered only for work that is committed. A listener thread
holds its own connection, LISTENs on the log's channel and hands the
notifications of other stores (other processes, or other engines of this one) to
the callbacks as ``(kind, workflow_id)``: a store's own writes are its engine's
own work, which it knows of already. Notifications are hints: when the
connection is lost the thread reconnects with backoff and, once back, announces
``("created", None)`` so workers look for what they missed (their polling covers
the gap as well).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Collection
from typing import Any

import psycopg

log = logging.getLogger("duralog.store")

Callback = Callable[[str, str | None], None]
#: NOTIFY payloads are limited to 8000 bytes; a longer id is left out (a hint only).
_MAX_PAYLOAD = 7900


def one_line(exc: BaseException) -> str:
    """A driver error's message on one line (libpq's span several, indented)."""
    return " ".join(str(exc).split())


def payload(kind: str, workflow_id: str | None) -> str:
    """The NOTIFY payload for ``kind`` about ``workflow_id``."""
    if workflow_id is None or len(workflow_id.encode()) + len(kind) + 1 > _MAX_PAYLOAD:
        return kind
    return f"{kind}:{workflow_id}"


def parse_payload(text: str) -> tuple[str, str | None]:
    """``(kind, workflow_id)`` from a payload made by ``payload``."""
    kind, sep, workflow_id = text.partition(":")
    return kind, workflow_id if sep else None


class Listener:
    """A daemon thread delivering the notifications of one channel; see the module docstring.

    Args:
        connect: opens a new autocommit connection to the log's database.
        channel: the channel writers notify on.
        display: the database, for log messages.
        own: the server process ids of the store's own connections: what they notify
            is this process's own work, which it knows of already (and may be
            closing its worker as it arrives), so it is not delivered.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[tuple[Any, ...]]],
        channel: str,
        display: str,
        own: Callable[[], Collection[int]] = frozenset,
    ) -> None:
        self._connect = connect
        self._own = own
        self.channel = channel
        #: close() notifies this private channel to wake the thread at once.
        self.wake_channel = f"{channel}_stop_{uuid.uuid4().hex[:12]}"
        self._display = display
        self._callbacks: list[Callback] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, callback: Callback, wait: float = 5.0) -> None:
        """Deliver notifications to ``callback`` too; the first call starts the thread
        and waits (up to ``wait`` seconds) until it listens."""
        with self._lock:
            self._callbacks.append(callback)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="duralog-pg-listener", daemon=True
                )
                self._thread.start()
        self._listening.wait(wait)

    def stop(self, wake: Callable[[str], None] | None = None, timeout: float = 5.0) -> None:
        """Stop the thread; ``wake(channel)`` sends the wake-up notification if it can."""
        self._stop.set()
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        if wake is not None:
            try:
                wake(self.wake_channel)
            except Exception:  # it wakes up on its own timeout instead
                log.debug("could not wake the listener of %s", self._display, exc_info=True)
        thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.1
        first = True
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                conn.execute(f"LISTEN {self.channel}")
                conn.execute(f"LISTEN {self.wake_channel}")
                self._listening.set()
                if not first:
                    log.info("listening to %s again", self._display)
                    self._deliver("created", None)  # look for what came meanwhile
                first, backoff = False, 0.1
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=2.0):
                        if self._stop.is_set():
                            break
                        if note.channel == self.channel and note.pid not in self._own():
                            self._deliver(*parse_payload(note.payload))
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning(
                        "lost the notification connection to %s (%s); reconnecting in %.1fs "
                        "(workers poll meanwhile)",
                        self._display,
                        one_line(exc),
                        backoff,
                    )
            finally:
                self._listening.set()  # add() waits no longer, connected or not
                if conn is not None:
                    conn.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _deliver(self, kind: str, workflow_id: str | None) -> None:
        for callback in list(self._callbacks):
            try:
                callback(kind, workflow_id)
            except Exception:  # one bad callback must not stop the others, or the thread
                log.exception("a duralog store listener raised on %r %r", kind, workflow_id)
