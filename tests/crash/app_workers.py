"""A worker process for the many-workers tests: ``python app_workers.py DB LEASE``.

Runs until SIGTERM. Steps append ``<pid> <idempotency key>`` to ``WORKERS_LEDGER``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import duralog
from duralog._signals import StopSignals


@duralog.step
def slow(i: int) -> int:
    with open(os.environ["WORKERS_LEDGER"], "a") as f:
        f.write(f"{os.getpid()} {duralog.step_info().idempotency_key}\n")
    time.sleep(0.02)
    return i


@duralog.workflow(name="many_workers_flow")
async def flow(n: int) -> int:
    total = 0
    for i in range(n):
        total += await slow(i)
    return total


if __name__ == "__main__":
    db, lease = sys.argv[1], float(sys.argv[2])
    stop = StopSignals((signal.SIGTERM,))  # a lock-free handler: see duralog/_signals.py
    with duralog.Engine(db, lease_seconds=lease, poll_interval=0.05, durability="normal"):
        print("ready", flush=True)
        while not stop.wait(0.2):
            pass
