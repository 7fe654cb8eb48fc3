"""A worker of a partitioned queue: ``python app_queue_options.py DB``; runs until killed.

Each step writes ``start <pid> <tenant> <key> <time>`` to ``OPTIONS_LEDGER`` when it
begins, then waits for the file ``OPTIONS_GO`` to exist, then writes ``end ...``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import duralog

tenants = duralog.Queue("crash_tenants", concurrency=1, partitioned=True)


def _note(what: str, tenant: str) -> None:
    key = duralog.step_info().idempotency_key
    with open(os.environ["OPTIONS_LEDGER"], "a") as f:
        f.write(f"{what} {os.getpid()} {tenant} {key} {time.time()}\n")


@duralog.step
def export(tenant: str, i: int) -> str:
    _note("start", tenant)
    go = Path(os.environ["OPTIONS_GO"])
    while not go.exists():  # released by the test (a killed worker never gets here)
        time.sleep(0.02)
    _note("end", tenant)
    return f"{tenant}-{i}"


@duralog.workflow(name="crash_tenant_export")
async def tenant_export(tenant: str, i: int) -> str:
    return await export(tenant, i)


if __name__ == "__main__":
    with duralog.Engine(sys.argv[1], poll_interval=0.05, lease_seconds=2.0):
        print("ready", flush=True)
        while True:
            time.sleep(1)
