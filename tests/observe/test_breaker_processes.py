"""Circuit breakers across real processes: the state outlives a SIGKILL, and one trial wins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support import PATIENCE, load_app, popen, read_line

from duralog.engine.clock import VirtualClock
from duralog.store.sqlite import SQLiteStore

APP = Path(__file__).with_name("app_breaker.py")


app = load_app(APP, "duralog_app_breaker")


def run(mode: str, db: str, arg: str, ledger: Path) -> subprocess.Popen[str]:
    return popen(
        [sys.executable, str(APP), mode, db, arg],
        env={**os.environ, "BREAKER_LEDGER": str(ledger)},
        stdout=subprocess.PIPE,
        text=True,
    )


def test_an_open_circuit_survives_a_sigkill_and_holds_for_a_fresh_process(tmp_path: Path) -> None:
    db, ledger = str(tmp_path / "log.db"), tmp_path / "ledger"
    first = run("open", db, "-", ledger)
    first.communicate(timeout=PATIENCE)
    assert first.returncode == -signal.SIGKILL
    calls = ledger.read_text().splitlines()
    assert len(calls) == 3  # three failures in a row opened it; nothing called after

    second = run("check", db, "-", ledger)
    out, _ = second.communicate(timeout=PATIENCE)
    assert second.returncode == 0
    assert "circuit breaker 'proc-payments' is open (3 failures in a row" in out
    assert "'proc_probe' (seq 2, attempt 1)" in out
    assert ledger.read_text().splitlines() == calls  # the fresh process called nothing


def test_one_trial_among_racing_processes(tmp_path: Path) -> None:
    db, ledger, go = str(tmp_path / "log.db"), tmp_path / "ledger", tmp_path / "go"
    store = SQLiteStore(db)
    try:
        # Opened long ago: its reset timeout has passed, so the next attempt is the trial.
        past = VirtualClock(time.time() - 7200)
        breakers = app.Breakers(store, past)  # type: ignore[attr-defined]
        info = app.StepInfo("setup", "proc_probe", 2, 1, "setup")  # type: ignore[attr-defined]
        for _ in range(3):
            breakers.failed(breakers.admit(app.payments, info), ConnectionError("down"))  # type: ignore[attr-defined]
        assert app.payments.state(store).state == "open"  # type: ignore[attr-defined]
        racers = [run("trial", db, str(go), ledger) for _ in range(4)]
        for racer in racers:  # each has opened the database and waits for `go`
            assert read_line(racer.stdout) == "ready"
        go.touch()
        outs = sorted(p.communicate(timeout=PATIENCE)[0].strip() for p in racers)
        assert outs == ["fast", "fast", "fast", "trial"]
        assert app.payments.state(store).state == "half_open"  # type: ignore[attr-defined]
    finally:
        store.close()
