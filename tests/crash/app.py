"""Workflows for the crash tests, run in a subprocess: ``python app.py DB WORKFLOW ID``.

Every step appends ``<step> <idempotency key>`` to the ledger file named by
``CRASH_LEDGER``; ``CRASH_AT=<step>`` makes that step SIGKILL its own process
the first time it runs; ``GATE=<path>`` makes step ``c`` wait for that file.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import duralog


def note(step: str) -> None:
    with open(os.environ["CRASH_LEDGER"], "a") as f:
        f.write(f"{step} {duralog.step_info().idempotency_key}\n")
        f.flush()
        os.fsync(f.fileno())


@duralog.step
def a(x: int) -> int:
    note("a")
    return x + 1


@duralog.step
def b(x: int) -> int:
    note("b")
    if os.environ.get("CRASH_AT") == "b":
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 2


@duralog.step
def c(x: int) -> int:
    gate = os.environ.get("GATE")
    if gate:
        while not Path(gate).exists():
            time.sleep(0.01)
    note("c")
    return x - 3


@duralog.workflow
async def steps(x: int) -> int:
    return await c(await b(await a(x)))


@duralog.workflow
async def sleeper(x: int, seconds: float) -> int:
    y = await a(x)
    await duralog.sleep(seconds)
    return await c(y)


if __name__ == "__main__":
    db, name, workflow_id, *args = sys.argv[1:]
    with duralog.Engine(db) as engine:
        handle = engine.start(
            name, *[float(v) if "." in v else int(v) for v in args], id=workflow_id
        )
        print(handle.result(timeout=60), flush=True)
