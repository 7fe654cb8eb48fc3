"""Workflows for the tests of ``duralog query``, loaded with ``--app app_queries``.

``qa_counter`` adds its inputs one step at a time and answers how far it got (and
adds more on update ``more``); with
``QA_GATE`` set to a file path, its step for the value 3 waits until that file
exists (a worker process can then be killed while the workflow is half-way).
Names are prefixed ``qa_`` so they never clash with other test apps.
"""

from __future__ import annotations

import os
import time

import duralog


@duralog.step(name="qa_add")
def add(x: int) -> int:
    gate = os.environ.get("QA_GATE")
    while gate and x == 3 and not os.path.exists(gate):
        time.sleep(0.01)
    return x


@duralog.workflow(name="qa_counter")
async def counter(values: list[int]) -> int:
    total = 0
    seen: list[int] = []
    duralog.on_query("total", lambda: total)

    def after(i: int) -> list[int]:
        return seen[i:]

    duralog.on_query("after", after)
    duralog.on_query("broken", lambda: seen[99])

    def spin() -> None:
        while True:  # a handler that never returns
            pass

    duralog.on_query("spin", spin)

    async def more(x: int) -> int:
        nonlocal total
        total += await add(x)
        seen.append(x)
        return total

    def positive(x: int) -> None:
        if x <= 0:
            raise ValueError(f"{x} is not positive")

    duralog.on_update("more", more, validator=positive)
    for v in values:
        total += await add(v)
        seen.append(v)
    await duralog.wait_signal("finish")
    return total
