"""An update accepted before its worker is SIGKILLed is answered once, by the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from support import PATIENCE, load_app, popen, wait_in_log

import duralog

HERE = Path(__file__).parent
APP = load_app(HERE / "app_updates.py")


def serve(db: str, ledger: Path, **env: str) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DURALOG_")}
    return popen(
        [sys.executable, "-m", "duralog", "--db", db, "--app", "app_updates", "worker"],
        cwd=HERE,
        env={**clean, "CRASH_LEDGER": str(ledger), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_an_update_accepted_before_a_sigkill_is_answered_once(tmp_path: Path) -> None:
    db, ledger, gate = str(tmp_path / "cart.db"), tmp_path / "ledger", tmp_path / "gate"
    with duralog.Engine(db, worker=False) as engine:
        engine.start(APP.cart, id="u-1")
    first = serve(db, ledger, CU_GATE=str(gate))
    answers: list[Any] = []

    def buy() -> None:
        with duralog.Engine(db, worker=False) as sender:
            try:
                answers.append(sender.get("u-1").update("buy", "book", timeout=PATIENCE))
            except BaseException as exc:  # looked at below
                answers.append(exc)

    buyer = threading.Thread(target=buy)
    buyer.start()
    wait_in_log(db, "StepStarted", 1, "u-1")  # accepted, and its step runs (and waits)
    first.send_signal(signal.SIGKILL)
    assert first.wait(PATIENCE) == -signal.SIGKILL
    gate.touch()
    serve(db, ledger)  # recovers u-1: replays the update, runs the step again
    buyer.join(PATIENCE)
    assert answers == ["charged book"]
    with duralog.Engine(db, worker=False) as engine:
        handle = engine.get("u-1")
        events = handle.history()
        assert handle.query("receipts") == ["charged book"]
    signals = [e for e in events if e.kind == "SignalReceived"]
    answered = [e for e in events if e.kind == "StatePublished"]
    assert len(signals) == 1 and len(answered) == 1  # accepted once, answered once
    # The step ran at least once per attempt the crash cut short, and was recorded once.
    assert ledger.read_text().splitlines() == ["charge book", "charge book"]
    assert sum(e.kind == "StepCompleted" for e in events) == 1


def test_an_update_retried_with_its_id_after_a_sigkill_is_answered_once(tmp_path: Path) -> None:
    """The sender gives up (its timeout), the worker is killed mid-handler; after
    recovery the sender retries with the same id and gets the one answer."""
    db, ledger, gate = str(tmp_path / "cart.db"), tmp_path / "ledger", tmp_path / "gate"
    with duralog.Engine(db, worker=False) as engine:
        engine.start(APP.cart, id="u-2")
    first = serve(db, ledger, CU_GATE=str(gate))
    gave_up: list[BaseException] = []

    def buy() -> None:
        with duralog.Engine(db, worker=False) as sender:
            try:
                sender.get("u-2").update("buy", "book", timeout=0.5, update_id="buy-1")
            except BaseException as exc:  # looked at below
                gave_up.append(exc)

    buyer = threading.Thread(target=buy)
    buyer.start()
    wait_in_log(db, "StepStarted", 1, "u-2")  # accepted, and its step runs (and waits)
    first.send_signal(signal.SIGKILL)
    assert first.wait(PATIENCE) == -signal.SIGKILL
    buyer.join(PATIENCE)
    assert isinstance(gave_up[0], duralog.UpdateTimeout)  # no worker answered it
    gate.touch()
    serve(db, ledger)  # recovers u-2: replays the update, runs the step again
    with duralog.Engine(db, worker=False) as engine:
        handle = engine.get("u-2")
        again = handle.update("buy", "book", timeout=PATIENCE, update_id="buy-1")
        assert again == "charged book"
        assert handle.query("receipts") == ["charged book"]
        events = handle.history()
    assert [e.kind for e in events].count("SignalReceived") == 1
    assert [e.kind for e in events].count("StatePublished") == 1
    assert ledger.read_text().splitlines() == ["charge book", "charge book"]
