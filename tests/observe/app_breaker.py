"""Processes for the circuit breaker tests: ``python app_breaker.py MODE DB ARG``.

``open``: run orders whose payments call fails until the breaker opens, then die by
SIGKILL. ``check``: a fresh process calls the same dependency once and prints what
happened. ``trial``: print ``ready``, wait for the file ARG, then race for the
half-open trial and print ``trial`` or ``fast``. Every real call appends a line to
``BREAKER_LEDGER``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import duralog
from duralog.engine.api import StepInfo
from duralog.engine.clock import SystemClock
from duralog.patterns.breaker import Breakers, CircuitBreaker, CircuitOpen
from duralog.store.sqlite import SQLiteStore

payments = CircuitBreaker("proc-payments", failure_threshold=3, reset_timeout=3600)


def note(what: str) -> None:
    with open(os.environ["BREAKER_LEDGER"], "a") as f:
        f.write(f"{os.getpid()} {what}\n")


@duralog.step(circuit=payments, retry=duralog.RetryPolicy(max_attempts=20, initial_interval=0.05))
def proc_charge(order_id: str) -> str:
    note(f"charge {order_id}")
    raise ConnectionError("payments API unreachable")


@duralog.step(circuit=payments, retry=duralog.RetryPolicy(max_attempts=1))
def proc_probe(order_id: str) -> str:
    note(f"probe {order_id}")
    return "reached the payments API"


@duralog.workflow(name="proc_order")
async def proc_order(order_id: str) -> str:
    return await proc_charge(order_id)


@duralog.workflow(name="proc_probe_flow")
async def proc_probe_flow(order_id: str) -> str:
    try:
        return await proc_probe(order_id)
    except duralog.StepFailed as failed:
        return failed.error.message


def die_once_open(db: str) -> None:
    store = SQLiteStore(db)
    while payments.state(store).state != "open":
        time.sleep(0.005)
    os.kill(os.getpid(), signal.SIGKILL)


def main(mode: str, db: str, arg: str) -> None:
    if mode == "open":
        with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
            threading.Thread(target=die_once_open, args=(db,), daemon=True).start()
            for i in range(3):
                engine.start(proc_order, f"o{i}", id=f"order-{i}")
            time.sleep(60)  # SIGKILLed long before
    elif mode == "check":
        with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
            print(engine.run(proc_probe_flow, "p1", timeout=30), flush=True)
    elif mode == "trial":
        store = SQLiteStore(db)
        breakers = Breakers(store, SystemClock())
        print("ready", flush=True)
        while not Path(arg).exists():
            time.sleep(0.001)
        try:
            ticket = breakers.admit(payments, StepInfo("race", "proc_probe", 2, 1, "race"))
        except CircuitOpen:
            print("fast", flush=True)
        else:
            print("trial" if ticket.trial else "closed", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
