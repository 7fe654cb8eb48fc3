"""A fork killed half-way: ``python app_fork.py DB MODE``.

``prepare`` runs ``crash_fork_flow`` (20 steps, the last one failing) to its end.
``fork`` forks it from the failed step under the id ``forked`` and prints what was
copied. ``die`` does the same, but SIGKILLs its own process inside the fork's
transaction, once the row, the first event and every copied event are written and
before the commit: the moment that leaves the most behind if the fork were not one
transaction.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import duralog

STEPS = 20


@duralog.step
def crash_fork_step(n: int) -> int:
    return n + 1


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def crash_fork_last(n: int) -> int:
    if os.environ.get("CRASH_FORK_FIXED") != "1":
        raise ValueError("the bug")
    return n


@duralog.workflow
async def crash_fork_flow(n: int) -> int:
    for _ in range(STEPS):
        n = await crash_fork_step(n)
    return await crash_fork_last(n)


def last_step(handle: duralog.WorkflowHandle[int]) -> int:
    return max(seq for seq, step in handle.state().steps.items() if step.name.endswith("last"))


def main(db: str, mode: str) -> None:
    if mode == "prepare":
        with duralog.Engine(db, poll_interval=0.05) as engine:
            handle = engine.start(crash_fork_flow, 0, id="source")
            try:
                handle.result(timeout=60)
            except duralog.WorkflowFailed:
                print(json.dumps({"from_seq": last_step(handle)}), flush=True)
        return
    with duralog.Engine(db, worker=False) as engine:
        source = engine.get("source")
        if mode == "die":
            store_class: Any = type(engine.store)

            def die(*_: object) -> None:  # called inside the fork's transaction, last
                os.kill(os.getpid(), signal.SIGKILL)

            store_class._notify = die
        fork = source.fork(from_seq=last_step(source), id="forked")
        print(json.dumps({"id": fork.id, "last_seq": fork.record().last_seq}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
