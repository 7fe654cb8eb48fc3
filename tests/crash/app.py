"""Workflows for the crash tests, run in a subprocess: ``python app.py DB WORKFLOW ID``.

Every step appends ``<step> <idempotency key>`` to the ledger file named by
``CRASH_LEDGER``; ``CRASH_AT=<step>`` makes that step SIGKILL its own process
the first time it runs; ``GATE=<path>`` makes step ``c`` wait for that file;
``CLOCK_AHEAD=<seconds>`` runs the engine on a wall clock that far ahead, as on
a machine that was down that long.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duralog
from duralog.engine.clock import Alarm


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


class ClockAhead:
    """The wall clock, ``seconds`` ahead."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def now(self) -> float:
        return time.time() + self.seconds

    def call_at(
        self, loop: asyncio.AbstractEventLoop, when: float, callback: Callable[[], Any]
    ) -> Alarm:
        return loop.call_later(max(0.0, when - self.now()), callback)


if __name__ == "__main__":
    db, name, workflow_id, *args = sys.argv[1:]
    with duralog.Engine(db, clock=ClockAhead(float(os.environ.get("CLOCK_AHEAD", "0")))) as engine:
        handle = engine.start(
            name, *[float(v) if "." in v else int(v) for v in args], id=workflow_id
        )
        print(handle.result(timeout=60), flush=True)
