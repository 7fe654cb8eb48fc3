"""A worker process for the PostgreSQL multi-worker test: ``python app_pg_workers.py URL``.

Runs an engine on the log at URL (lease 2 s, so a stopped worker loses its work
fast) until SIGTERM. Each step appends ``<pid> <idempotency key>`` to the file
named by ``PG_WORKERS_LEDGER`` before it returns, once that file holds fewer lines
than the number in the file named by ``PG_WORKERS_BUDGET`` (if set): the test
lets the work go on in measured amounts, however fast or slow the machine. With
``PG_WORKERS_LOG_FLOOD=N`` it logs N bytes of warnings once ready (as a worker with
many failing workflows does).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import time

import duralog
from duralog._signals import StopSignals


def within_budget(ledger: str) -> bool:
    """Whether the test allows one more step now (no budget file: always)."""
    budget = os.environ.get("PG_WORKERS_BUDGET")
    if budget is None or not os.path.exists(budget):
        return True
    with open(budget) as allowed, open(ledger, "a+") as written:
        written.seek(0)
        # No lock, so a few steps may pass at once: the test needs "at least", and a
        # lock held by a worker the test freezes would stop every other worker.
        return written.read().count("\n") < int(allowed.read() or "0")


@duralog.step
def pg_workers_step(i: int) -> int:
    while not within_budget(os.environ["PG_WORKERS_LEDGER"]):
        time.sleep(0.005)
    with open(os.environ["PG_WORKERS_LEDGER"], "a") as ledger:
        ledger.write(f"{os.getpid()} {duralog.step_info().idempotency_key}\n")
    time.sleep(0.01)
    return i


@duralog.workflow(name="pg_workers_flow")
async def pg_workers_flow(n: int) -> int:
    total = 0
    for i in range(n):
        total += await pg_workers_step(i)
    return total


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # a stack dump if it hangs
    stop = StopSignals((signal.SIGTERM,))  # a lock-free handler: see duralog/_signals.py
    with duralog.Engine(sys.argv[1], lease_seconds=2.0, poll_interval=0.2, durability="normal"):
        print("ready", flush=True)
        flood = int(os.environ.get("PG_WORKERS_LOG_FLOOD", "0"))
        for _ in range((flood + 99) // 100):  # lines of 100 bytes
            logging.getLogger("duralog.engine").warning("%s", "x" * 99)
        while not stop.wait(0.2):
            pass
