"""A worker frozen past its lease starts nothing when it wakes up.

Worker A runs a step whose first attempt fails, and is frozen (SIGSTOP) while it
waits out the retry delay. Its lease expires; worker B takes the workflow over and
completes the step. A is then continued (SIGCONT): it must drop the workflow it lost
without starting another attempt, although its retry timer is long overdue. The
witness that A got past that point is its own log line letting the workflow go.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import load_app, wait_for

import duralog

APP = str(Path(__file__).with_name("app_stale.py"))
load_app(Path(APP))  # registers the workflow in this process, as in the workers
LEASE = "1.0"


class Worker:
    """A worker process of ``app_stale.py``, its stderr collected line by line."""

    def __init__(self, address: str, ledger: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, APP, address, LEASE],
            env={**os.environ, "STALE_LEDGER": str(ledger), "STALE_RETRY_DELAY": "4"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.errors: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        assert self.process.stdout.readline().strip() == "ready", "".join(self.errors)

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.errors.append(line)

    @property
    def pid(self) -> str:
        return str(self.process.pid)

    def said(self, text: str) -> bool:
        return any(text in line for line in self.errors)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def freeze(worker: Worker, address: str) -> None:
    """SIGSTOP the worker at a moment it holds no write lock on a SQLite log (a worker
    frozen inside a write transaction would stop every other writer too: another story)."""
    while True:
        worker.process.send_signal(signal.SIGSTOP)
        if address.startswith("postgresql://"):
            return  # (the server ends a session frozen in a transaction by itself)
        probe = sqlite3.connect(address, timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            return
        except sqlite3.OperationalError:
            worker.process.send_signal(signal.SIGCONT)
        finally:
            probe.close()


@pytest.fixture(params=["sqlite", "postgres"])
def address(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres":
        yield str(request.getfixturevalue("postgres_url"))
    else:
        yield str(tmp_path / "log.db")


def attempts(ledger: Path) -> list[tuple[str, int]]:
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    return [(pid, int(attempt)) for pid, attempt in (line.split() for line in lines)]


def test_a_worker_frozen_past_its_lease_starts_no_attempt_on_waking(
    address: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    duralog.Engine(address, worker=False).close()  # create the log
    a = Worker(address, ledger)
    b: Worker | None = None
    try:
        with duralog.Engine(address, worker=False) as client:
            handle = client.start("stale_worker_flow", "o-1", id="order-1")
            # A ran the first attempt, and the retry is scheduled 4 s later.
            wait_for(lambda: "StepRetrying" in [e.kind for e in handle.history()])
            freeze(a, address)
            assert attempts(ledger) == [(a.pid, 1)]
            b = Worker(address, ledger)  # takes the workflow over once A's lease expires
            assert handle.result(timeout=60) == "charged o-1"
            assert attempts(ledger) == [(a.pid, 1), (b.pid, 2)]
            a.process.send_signal(signal.SIGCONT)  # A wakes, its retry long overdue
            # The witness: A says it let the workflow go (its lease was lost, or the
            # store fenced its write out); either way it got past the overdue retry.
            wait_for(lambda: a.said("'order-1'"), timeout=60)
            # Nothing started after B's completion was committed: no third line.
            assert attempts(ledger) == [(a.pid, 1), (b.pid, 2)]
            history = handle.history()
            assert [e.seq for e in history] == list(range(1, len(history) + 1))
            assert [e.kind for e in history].count("StepCompleted") == 1
    finally:
        a.stop()
        if b is not None:
            b.stop()
