"""Workflows for the tests of the operator commands (``list`` filters, ``count``,
``result``, ``get-event``, ``queues``, ``delete``), loaded with ``--app app_ops``.

Names are prefixed ``ops_`` so they never clash with other test apps.
"""

from __future__ import annotations

import duralog

#: A queue with every limit set, so ``duralog queues`` has something to show.
emails = duralog.Queue("ops_emails", concurrency=3, worker_concurrency=2, rate_limit=10, period=60)
#: A partitioned queue: `start --partition` is required on it.
exports = duralog.Queue("ops_exports", concurrency=1, partitioned=True)


@duralog.step(name="ops_boom", retry=duralog.RetryPolicy(max_attempts=1))
def boom(text: str) -> str:
    raise ValueError(f"boom: {text}")


@duralog.workflow(name="ops_echo")
async def echo(text: str) -> str:
    return text.upper()


@duralog.workflow(name="ops_fail")
async def fail(text: str) -> str:
    return await boom(text)


@duralog.workflow(name="ops_child")
async def child(n: int) -> int:
    return n * 2


@duralog.workflow(name="ops_parent")
async def parent(n: int) -> list[int]:
    return [await child(n), await child(n + 1)]


@duralog.workflow(name="ops_publisher")
async def publisher(steps: int) -> str:
    duralog.publish("progress", {"done": 0, "of": steps})
    go = await duralog.wait_signal("go")
    duralog.publish("progress", {"done": steps, "of": steps})
    return f"went {go}"
