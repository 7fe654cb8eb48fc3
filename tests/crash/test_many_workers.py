"""Several worker processes on one log: a stalled worker loses its lease and cannot append.

A is stopped with SIGSTOP past its lease while it runs workflows; B takes them over;
A is continued with SIGCONT and the fencing check refuses everything it tries to write.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from support import PATIENCE, load_app, popen, read_line, wait_for

import duralog

APP = str(Path(__file__).with_name("app_workers.py"))
load_app(Path(APP), "duralog_app_workers")  # its workflow, registered here too


def worker(db: str, ledger: Path, log: Path) -> subprocess.Popen[str]:
    with open(log, "w") as stderr:  # its warnings, LeaseLost among them
        process = popen(
            [sys.executable, APP, db, "1.0"],
            env={**os.environ, "WORKERS_LEDGER": str(ledger)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert read_line(process.stdout) == "ready"
    return process


def stall_between_writes(process: subprocess.Popen[str], db: str, ledger: Path) -> None:
    """SIGSTOP ``process`` at a moment it holds no SQLite write lock.

    Stopped inside a write transaction, it would keep the log's one write lock, and no
    other worker could write until it is continued (the test is about a lost lease, not
    a held lock): then it is continued, and stopped again once it has run another step.
    """
    deadline = time.monotonic() + PATIENCE
    while True:
        process.send_signal(signal.SIGSTOP)
        probe = sqlite3.connect(db, timeout=0.5)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            return
        except sqlite3.OperationalError:  # "database is locked": it was stopped mid-write
            pass
        finally:
            probe.close()
        steps = len(ledger.read_text().splitlines())
        process.send_signal(signal.SIGCONT)
        assert time.monotonic() < deadline, "the worker never paused between two writes"
        wait_for(lambda n=steps: len(ledger.read_text().splitlines()) > n, what="another step")


def test_a_stalled_worker_is_fenced_out(tmp_path: Path) -> None:
    db, ledger, a_log = str(tmp_path / "log.db"), tmp_path / "ledger", tmp_path / "a.log"
    duralog.Engine(db, worker=False).close()
    a = worker(db, ledger, a_log)
    with duralog.Engine(db, worker=False) as client:
        flows = [client.start("many_workers_flow", 40, id=f"f-{i}") for i in range(6)]
        wait_for(lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 10)
        stall_between_writes(a, db, ledger)  # stalled: no heartbeat, no progress
        b = worker(db, ledger, tmp_path / "b.log")
        for handle in flows:
            assert handle.result(timeout=PATIENCE) == sum(range(40))
        a.send_signal(signal.SIGCONT)  # it wakes up believing it owns them
        # It lets each workflow go, having found its lease lost (its heartbeat, or the
        # check before a step) or its append refused by the fence; and once it has
        # exited, it can write nothing more.
        wait_for(lambda: all(f"workflow '{h.id}'" in a_log.read_text() for h in flows))
        for process in (a, b):
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=PATIENCE)
        for handle in flows:
            history = handle.history()
            assert [e.seq for e in history] == list(range(1, len(history) + 1))
            assert history[-1].kind == "WorkflowCompleted"
            done = Counter(
                e.event.step_seq
                for e in history
                if e.kind == "StepCompleted"  # type: ignore[union-attr]
            )
            assert len(done) == 40 and set(done.values()) == {1}
            owners = {r.owner for r in [handle.record()]}
            assert owners == {None}
    pids = Counter(line.split()[0] for line in ledger.read_text().splitlines())
    assert len(pids) == 2  # both workers ran steps
    assert a.returncode == 0 and b.returncode == 0
