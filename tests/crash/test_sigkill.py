"""Real crashes: a worker process killed with SIGKILL, then a fresh process resumes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from support import PATIENCE, popen, wait_for

import duralog
from duralog.store.sqlite import SQLiteStore

APP = str(Path(__file__).with_name("app.py"))


def spawn(db: str, ledger: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return popen(
        [sys.executable, APP, db, *args],
        env={**os.environ, "CRASH_LEDGER": str(ledger), **env},
        stdout=subprocess.PIPE,
        text=True,
    )


def ledger_counts(ledger: Path) -> Counter[str]:
    """``"<step> <workflow id>:<seq>"`` -> how many times it ran (each workflow here has
    one run, so its run id, the middle of each idempotency key, is left out)."""
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    return Counter(re.sub(r":[0-9a-f]{16}:", ":", line) for line in lines)


def history(db: str, workflow_id: str) -> list[Any]:
    store = SQLiteStore(db)
    try:
        if store.get_workflow(workflow_id) is None:
            return []
        return store.read_events(workflow_id)
    finally:
        store.close()


def resume(db: str, ledger: Path, *args: str, **env: str) -> str:
    done = spawn(db, ledger, *args, **env)
    out, _ = done.communicate(timeout=PATIENCE)
    assert done.returncode == 0
    return out.strip()


def test_killed_inside_a_step(tmp_path: Path) -> None:
    db, ledger = str(tmp_path / "log.db"), tmp_path / "ledger"
    first = spawn(db, ledger, "steps", "w1", "5", CRASH_AT="b")
    first.communicate(timeout=PATIENCE)
    assert first.returncode == -signal.SIGKILL

    assert resume(db, ledger, "steps", "w1", "5") == str((5 + 1) * 2 - 3)
    counts = ledger_counts(ledger)
    assert counts["a w1:2"] == 1  # completed before the crash: never again
    assert counts["b w1:5"] == 2  # in flight: at most twice, same idempotency key
    assert counts["c w1:8"] == 1


def test_killed_between_steps(tmp_path: Path) -> None:
    db, ledger, gate = str(tmp_path / "log.db"), tmp_path / "ledger", tmp_path / "gate"
    first = spawn(db, ledger, "steps", "w2", "5", GATE=str(gate))
    wait_for(lambda: sum(e.kind == "StepCompleted" for e in history(db, "w2")) == 2)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=PATIENCE)

    gate.touch()
    assert resume(db, ledger, "steps", "w2", "5") == "9"
    assert ledger_counts(ledger) == Counter({"a w2:2": 1, "b w2:5": 1, "c w2:8": 1})


def test_killed_during_a_durable_sleep_keeps_the_deadline(tmp_path: Path) -> None:
    db, ledger = str(tmp_path / "log.db"), tmp_path / "ledger"
    first = spawn(db, ledger, "sleeper", "w3", "5", "3600.0")  # an hour-long sleep
    started = wait_for(lambda: [e for e in history(db, "w3") if e.kind == "TimerStarted"])[0]
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=PATIENCE)

    # The machine comes back an hour and a minute later: the sleep's deadline has
    # passed, so it ends at once (a sleep that restarted would last another hour).
    assert resume(db, ledger, "sleeper", "w3", "5", "3600.0", CLOCK_AHEAD="3660") == "3"
    fired = next(e for e in history(db, "w3") if e.kind == "TimerFired")
    assert fired.at >= started.event.fire_at  # never early
    assert ledger_counts(ledger) == Counter({"a w3:2": 1, "c w3:7": 1})
    store = SQLiteStore(db)
    record = store.get_workflow("w3")
    store.close()
    assert record is not None and record.status is duralog.WorkflowStatus.COMPLETED
