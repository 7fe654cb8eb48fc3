"""duralog adapter for the engine-neutral harness in ../shared/bench (see its README.md).

Run from this repository's root with this folder on the import path:

    PYTHONPATH=benchmarks .venv/bin/python ../shared/bench/harness.py \\
        --adapter duralog_adapter [--opt durability=normal] w1 --n 1000

opts:
  durability=full|normal   Engine(durability=...): WAL with synchronous=FULL (default,
                           the engine's default) or NORMAL
  threads=N                Engine(max_threads=N) for sync steps (default: the engine's)
  steps=thread|inline      the no-op step runs on a step thread (default, any sync step)
                           or inline on the worker's loop (@duralog.step(inline=True))

W1/W2 use a sync no-op step, `engine.start()` and `handle.result()`. W2 starts the M
workflows one after another from the harness thread (each `start()` returns once the
workflow is committed; the worker runs them meanwhile) and then waits for every result.
W3: the workflow runs N steps, then one more step, `w3_gate`, which in the crash process
calls `ready()` (never returns) and in the recovering process returns at once. The gate
starts only after the N-th step's completion is committed, so "N steps durable" holds
when `ready()` runs; the recovered history has N + 1 steps.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

import duralog

W3_ID = "w3-bench"
_gate: Callable[[], None] | None = None


@duralog.step(name="bench.noop")
def noop(i: int) -> int:
    return i


@duralog.step(name="bench.noop_inline", inline=True)
def noop_inline(i: int) -> int:
    return i


@duralog.step(name="bench.w3_gate")
def w3_gate() -> None:
    if _gate is not None:
        _gate()  # the crash process: announce W3READY and block until SIGKILL


@duralog.workflow(name="bench.sequential")
async def sequential(n: int, inline: bool = False) -> int:
    step = noop_inline if inline else noop
    total = 0
    for i in range(n):
        total += await step(i)
    return total


@duralog.workflow(name="bench.w3")
async def w3_workflow(n: int, inline: bool = False) -> int:
    step = noop_inline if inline else noop
    total = 0
    for i in range(n):
        total += await step(i)
    await w3_gate()
    return total


def _commit() -> str:
    """The git commit of the duralog checkout being measured (+dirty if its code is edited)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(duralog.__file__)))
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                root,
                "status",
                "--porcelain",
                "--",
                "engine",
                "replay",
                "store",
                "duralog",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


class Adapter:
    name = "duralog"
    version = duralog.__version__
    supports_w3 = True

    def __init__(
        self,
        durability: str = "full",
        threads: str | None = None,
        starts: str = "one",
        steps: str = "thread",
    ) -> None:
        if durability not in ("full", "normal"):
            raise SystemExit(f"durability must be full or normal, not {durability!r}")
        if starts not in ("one", "many"):
            raise SystemExit(f"starts must be one (engine.start each) or many, not {starts!r}")
        if steps not in ("thread", "inline"):
            raise SystemExit(f"steps must be thread or inline, not {steps!r}")
        self.inline = steps == "inline"
        self.starts = starts
        self.durability = durability
        self.threads = int(threads) if threads else None
        self.version = (
            f"{duralog.__version__} ({_commit()}) durability={durability} starts={starts}"
            f" steps={steps}"
        )
        self.engine: duralog.Engine | None = None

    def start(self, workdir: str, fresh: bool) -> None:
        path = os.path.join(workdir, "duralog.db")
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
        options: dict[str, Any] = {"durability": self.durability}
        if self.threads:
            options["max_threads"] = self.threads
        self.engine = duralog.Engine(path, **options)
        self.engine.__enter__()  # starts the worker; with fresh=False it recovers pending work

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def _engine(self) -> duralog.Engine:
        assert self.engine is not None, "start() first"
        return self.engine

    def run_sequential(self, n: int) -> int:
        return self._engine().start(sequential, n, self.inline).result(timeout=3600)

    def run_many(self, m: int, k: int) -> list[int]:
        engine = self._engine()
        if self.starts == "many":  # one commit for all the starts
            handles = engine.start_many(sequential, [(k, self.inline)] * m)
        else:
            handles = [engine.start(sequential, k, self.inline) for _ in range(m)]
        return [h.result(timeout=3600) for h in handles]

    def w3_crash(self, n: int, ready: Callable[[], None]) -> None:
        global _gate
        _gate = ready
        self._engine().start(w3_workflow, n, self.inline, id=W3_ID).result()

    def w3_recover(self, n: int) -> int:
        result: int = self._engine().get(W3_ID).result(timeout=3600)
        return result

    def w3_extra(self, n: int) -> dict[str, Any]:
        return {"events": len(self._engine().get(W3_ID).history())}
