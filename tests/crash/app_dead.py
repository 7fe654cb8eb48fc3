"""Workflows whose steps kill their worker: ``python app_dead.py DB MODE [ID]``.

``start poison`` starts ``poison`` (``crash_flow``: a step that completes, then one
that SIGKILLs its own process) and ``sleeper`` (``sleepy_flow``: waits an hour);
``start flaky`` starts ``flaky`` (``flaky_flow``: each of its steps kills its worker
the first time only); neither runs them. ``work ID`` runs one worker until workflow ID ends, then
prints how it ended (JSON); a worker that runs a crashing step dies by SIGKILL
instead. Every run of ``prepare`` appends a line to the file ``DEAD_RUNS`` names.
With ``DEAD_FIXED=1`` the crashing step is fixed: it returns.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import duralog

LIMIT = 3
FLAKY_STEPS = 4


@duralog.step
def prepare(order: str) -> str:
    with open(os.environ["DEAD_RUNS"], "a") as runs:
        runs.write(f"prepare {order}\n")
    return f"prepared {order}"


@duralog.step
def native_call(order: str) -> str:
    if os.environ.get("DEAD_FIXED") != "1":
        os.kill(os.getpid(), signal.SIGKILL)  # a segfault, an OOM kill
    return f"shipped {order}"


@duralog.workflow(max_recovery_attempts=LIMIT)
async def crash_flow(order: str) -> str:
    prepared = await prepare(order)
    return f"{prepared}, {await native_call(order)}"


@duralog.step
def once_fatal(n: int) -> int:
    marker = f"{os.environ['DEAD_RUNS']}.{n}"
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os.kill(os.getpid(), signal.SIGKILL)
    return n


@duralog.workflow(max_recovery_attempts=1)
async def flaky_flow(steps: int) -> int:
    return sum([await once_fatal(n) for n in range(steps)])


@duralog.workflow
async def sleepy_flow() -> str:
    await duralog.sleep(3600)
    return "woke"


def main(db: str, mode: str, workflow_id: str) -> None:
    if mode == "start":
        with duralog.Engine(db, worker=False) as engine:
            if workflow_id == "poison":  # with an innocent bystander
                engine.start(crash_flow, "o-1", id="poison")
                engine.start(sleepy_flow, id="sleeper")
            else:
                engine.start(flaky_flow, FLAKY_STEPS, id="flaky")
        return
    with duralog.Engine(db, poll_interval=0.05) as engine:
        try:
            result = engine.get(workflow_id).result(timeout=60)
        except duralog.WorkflowFailed as exc:
            print(json.dumps({"failed": exc.cause.type, "message": exc.cause.message}))
        else:
            print(json.dumps({"result": result}))


if __name__ == "__main__":
    main(*sys.argv[1:])
