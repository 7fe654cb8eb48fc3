"""Several worker processes on one log: a stalled worker loses its lease and cannot append.

A is stopped with SIGSTOP past its lease while it runs workflows; B takes them over;
A is continued with SIGCONT and the fencing check refuses everything it tries to write.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duralog

APP = str(Path(__file__).with_name("app_workers.py"))


def _load_app() -> None:
    # Register the workflow in this process too (tests run with --import-mode=importlib).
    spec = importlib.util.spec_from_file_location("duralog_app_workers", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_load_app()


def worker(db: str, ledger: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, APP, db, "1.0"],
        env={**os.environ, "WORKERS_LEDGER": str(ledger)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.02)


def test_a_stalled_worker_is_fenced_out(tmp_path: Path) -> None:
    db, ledger = str(tmp_path / "log.db"), tmp_path / "ledger"
    duralog.Engine(db, worker=False).close()
    a = worker(db, ledger)
    with duralog.Engine(db, worker=False) as client:
        flows = [client.start("many_workers_flow", 40, id=f"f-{i}") for i in range(6)]
        wait_for(lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 10)
        a.send_signal(signal.SIGSTOP)  # stalled: no heartbeat, no progress
        b = worker(db, ledger)
        try:
            for handle in flows:
                assert handle.result(timeout=60) == sum(range(40))
            a.send_signal(signal.SIGCONT)  # it wakes up believing it owns them
            time.sleep(1.0)  # it tries to append: the fence refuses every write
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
        finally:
            for process in (a, b):
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
                process.communicate(timeout=30)
    pids = Counter(line.split()[0] for line in ledger.read_text().splitlines())
    assert len(pids) == 2  # both workers ran steps
    assert a.returncode == 0 and b.returncode == 0
