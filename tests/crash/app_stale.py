"""A worker for the stale-worker tests: ``python app_stale.py ADDRESS LEASE``.

Runs until SIGTERM, logging warnings to stderr. Each attempt of ``charge`` appends
``<pid> <attempt>`` to ``STALE_LEDGER`` before anything else; its first attempt
fails, and the retry waits ``STALE_RETRY_DELAY`` seconds.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import duralog
from duralog._signals import StopSignals


@duralog.step(
    retry=duralog.RetryPolicy(
        max_attempts=3,
        initial_interval=float(os.environ.get("STALE_RETRY_DELAY", "4")),
        jitter=False,
    )
)
def charge(order: str) -> str:
    info = duralog.step_info()
    with open(os.environ["STALE_LEDGER"], "a") as ledger:
        ledger.write(f"{os.getpid()} {info.attempt}\n")
    if info.attempt == 1:
        raise RuntimeError("the payment service timed out")
    return f"charged {order}"


@duralog.workflow(name="stale_worker_flow")
async def flow(order: str) -> str:
    return await charge(order)


if __name__ == "__main__":
    address, lease = sys.argv[1], float(sys.argv[2])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    stop = StopSignals((signal.SIGTERM,))  # a lock-free handler: see duralog/_signals.py
    with duralog.Engine(address, lease_seconds=lease, poll_interval=0.05, durability="normal"):
        print("ready", flush=True)
        while not stop.wait(0.2):
            pass
