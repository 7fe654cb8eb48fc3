"""Workflows for the primitive crash tests: ``python app_primitives.py DB WORKFLOW ID [ARGS]``.

``CRASH_AT=<step>`` makes that step SIGKILL its own process the first time it
runs (a marker file remembers it); every step appends ``<step> <key>`` to the
ledger named by ``CRASH_LEDGER``. ``MODE=start`` starts and waits; ``MODE=serve``
only runs a worker until the workflow ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import duralog


def note(step: str) -> None:
    with open(os.environ["CRASH_LEDGER"], "a") as f:
        f.write(f"{step} {duralog.step_info().idempotency_key}\n")
        f.flush()
        os.fsync(f.fileno())
    marker = Path(os.environ["CRASH_LEDGER"] + ".crashed-" + step)
    if os.environ.get("CRASH_AT") == step and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)


@duralog.step
def work(name: str, n: int) -> int:
    note(name)
    return n + 1


@duralog.workflow
async def child(n: int) -> int:
    return await work("child_step", n)


@duralog.workflow
async def parent(n: int) -> int:
    first = await work("parent_step", n)
    return await child(first) + await work("after_child", 0)


@duralog.workflow
async def looping(n: int, runs: int) -> int:
    n = await work(f"run_{runs}", n)
    if runs > 1:
        duralog.continue_as_new(n, runs - 1)
    return n


@duralog.workflow
async def cancellable(n: int) -> int:
    await work("before", n)
    try:
        await duralog.sleep(3600)
    except asyncio.CancelledError:
        await work("cleanup", 0)
        raise
    return n


@duralog.workflow
async def pausable(n: int) -> int:
    for i in range(n):
        await work(f"tick_{i}", i)
        await duralog.sleep(0.05)
    return n


@duralog.workflow
async def bounded(n: int) -> int:
    await work("before", n)
    await duralog.sleep(3600)
    return n


if __name__ == "__main__":
    db, name, workflow_id, *args = sys.argv[1:]
    with duralog.Engine(db, poll_interval=0.05) as engine:
        if os.environ.get("MODE", "start") == "start":
            timeout = os.environ.get("WF_TIMEOUT")
            handle = engine.start(
                name,
                *[json.loads(a) for a in args],
                id=workflow_id,
                timeout=float(timeout) if timeout else None,
            )
        else:
            handle = engine.get(workflow_id)
        try:
            print(json.dumps(handle.result(timeout=60)), flush=True)
        except duralog.WorkflowFailed as exc:
            print(json.dumps({"failed": exc.cause.type, "message": exc.cause.message}), flush=True)
