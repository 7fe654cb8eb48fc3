"""Worker processes sharing one queue: ``python app_queues.py DB``; runs until SIGTERM.

Each step appends ``<pid> <start> <end> <idempotency key>`` to ``QUEUES_LEDGER``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import duralog
from duralog._signals import StopSignals
from duralog.engine.queues import Queue

shared = Queue("shared", concurrency=3, worker_concurrency=2)


@duralog.step
def timed(i: int) -> int:
    start = time.time()
    time.sleep(0.08)
    with open(os.environ["QUEUES_LEDGER"], "a") as f:
        f.write(f"{os.getpid()} {start} {time.time()} {duralog.step_info().idempotency_key}\n")
    return i


@duralog.workflow(name="queue_processes_flow")
async def flow(i: int) -> int:
    return await timed(i)


if __name__ == "__main__":
    stop = StopSignals((signal.SIGTERM,))  # a lock-free handler: see duralog/_signals.py
    with duralog.Engine(sys.argv[1], poll_interval=0.05, durability="normal"):
        print("ready", flush=True)
        while not stop.wait(0.2):
            pass
