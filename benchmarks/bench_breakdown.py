#!/usr/bin/env python3
"""Where a W1 step's time goes, layer by layer (each layer adds one piece of the engine).

usage: python benchmarks/bench_breakdown.py [--durability full|normal|both] [--n 2000]
                                            [--repeat 3] [--json]

  raw-1row     plain sqlite3: BEGIN IMMEDIATE; INSERT 1 row; COMMIT        (the reference)
  store        SQLiteStore.append() of one step's 3 events (StepScheduled, StepStarted,
               StepCompleted) with the fence check and index update, called directly from
               one thread: the engine's transaction, no threads, no asyncio
  committer    the same Append through the worker's AppendCommitter on an asyncio loop
               (await the future): + one batch written by a callback on the loop
  w1-async     the whole engine, W1 with an `async def` no-op step (runs on the worker loop)
  w1-sync      the whole engine, W1 with a plain `def` no-op step (+ the step thread pool)

For each: wall us per step, CPU us per step (all threads of the process), and context
switches per step (voluntary + involuntary, getrusage). Medians of --repeat runs, each on
a fresh file in one temp dir. `store` and `committer` use engine internals
(duralog.store.sqlite, duralog.engine.committer), which may change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import msgspec

import duralog
from duralog.engine.committer import AppendCommitter
from duralog.store import events as ev
from duralog.store.base import Append, NewWorkflow
from duralog.store.events import LogEntry
from duralog.store.sqlite import SQLiteStore

SYNC = {"full": "FULL", "normal": "NORMAL"}


@duralog.step(name="bench_breakdown.noop_sync")
def noop_sync(i: int) -> int:
    return i


@duralog.step(name="bench_breakdown.noop_async")
async def noop_async(i: int) -> int:
    return i


@duralog.workflow(name="bench_breakdown.w1_sync")
async def w1_sync(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop_sync(i)
    return total


@duralog.workflow(name="bench_breakdown.w1_async")
async def w1_async(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop_async(i)
    return total


def measured(n: int, body: Callable[[], Any]) -> dict[str, float]:
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, t0 = time.process_time(), time.perf_counter()
    body()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    switches = (r1.ru_nvcsw - r0.ru_nvcsw) + (r1.ru_nivcsw - r0.ru_nivcsw)
    return {"us": wall / n * 1e6, "cpu_us": cpu / n * 1e6, "ctx_switches": switches / n}


def raw_1row(path: str, durability: str, n: int) -> dict[str, float]:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={SYNC[durability]}")
    con.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, workflow_id TEXT NOT NULL,"
        " seq INTEGER NOT NULL, kind TEXT NOT NULL, payload TEXT, ts REAL,"
        " UNIQUE(workflow_id, seq))"
    )
    sql = "INSERT INTO events (workflow_id, seq, kind, payload, ts) VALUES (?,?,?,?,?)"

    def body() -> None:
        for i in range(n):
            con.execute("BEGIN IMMEDIATE")
            con.execute(sql, ("wf", i, "StepCompleted", json.dumps({"result": i}), time.time()))
            con.execute("COMMIT")

    try:
        return measured(n, body)
    finally:
        con.close()


def _store(path: str, durability: str) -> tuple[SQLiteStore, int]:
    store = SQLiteStore(path, durability=durability)  # type: ignore[arg-type]
    now = time.time()
    started = LogEntry(1, now, ev.WorkflowStarted(name="x", args=msgspec.Raw(b"[]")))
    (fence,) = store.create_workflows(
        [NewWorkflow("wf", "x", started, owner="bench", lease_seconds=3600)]
    )
    assert fence is not None
    return store, fence


def _step_append(fence: int, i: int) -> Append:
    seq, now = 2 + 3 * i, time.time()
    return Append(
        "wf",
        fence,
        [
            LogEntry(seq, now, ev.StepScheduled(name="noop", args=msgspec.Raw(b"[%d]" % i))),
            LogEntry(seq + 1, now, ev.StepStarted(step_seq=seq, attempt=1)),
            LogEntry(seq + 2, now, ev.StepCompleted(step_seq=seq, result=msgspec.Raw(b"%d" % i))),
        ],
    )


def store_only(path: str, durability: str, n: int) -> dict[str, float]:
    store, fence = _store(path, durability)

    def body() -> None:
        for i in range(n):
            assert store.append([_step_append(fence, i)]) == [True]

    try:
        return measured(n, body)
    finally:
        store.close()


def committer(path: str, durability: str, n: int) -> dict[str, float]:
    store, fence = _store(path, durability)
    loop = asyncio.new_event_loop()
    writer = AppendCommitter(store, loop)

    async def run() -> None:
        for i in range(n):
            assert await writer.append(_step_append(fence, i))

    try:
        return measured(n, lambda: loop.run_until_complete(run()))
    finally:
        loop.close()
        store.close()


def engine_w1(workflow: Any) -> Callable[[str, str, int], dict[str, float]]:
    def run(path: str, durability: str, n: int) -> dict[str, float]:
        with duralog.Engine(path, durability=durability) as engine:  # type: ignore[arg-type]
            assert engine.run(workflow, 10, timeout=60) == 45
            results: list[int] = []
            out = measured(n, lambda: results.append(engine.run(workflow, n, timeout=600)))
            assert results == [sum(range(n))], results
            return out

    return run


LAYERS: dict[str, Callable[[str, str, int], dict[str, float]]] = {
    "raw-1row": raw_1row,
    "store": store_only,
    "committer": committer,
    "w1-async": engine_w1(w1_async),
    "w1-sync": engine_w1(w1_sync),
}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--durability", choices=["full", "normal", "both"], default="both")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    levels = ["full", "normal"] if a.durability == "both" else [a.durability]
    tmp = tempfile.mkdtemp(prefix="duralog-breakdown-")
    out: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for level in levels:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in LAYERS}
            for r in range(a.repeat):
                for name, fn in LAYERS.items():
                    path = os.path.join(tmp, f"{level}-{r}-{name}.db")
                    runs[name].append(fn(path, level, a.n))
            out[level] = {
                name: {k: statistics.median(x[k] for x in rs) for k in rs[0]}
                for name, rs in runs.items()
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dest = sys.stderr if a.json else sys.stdout
    print(f"n={a.n}, median of {a.repeat}; us per step (or per row for raw-1row)", file=dest)
    print(
        f"{'durability':<10} {'layer':<10} {'wall us':>8} {'+ vs prev':>9} {'CPU us':>7}"
        f" {'ctx sw':>7}",
        file=dest,
    )
    for level, layers in out.items():
        prev = None
        for name, m in layers.items():
            delta = "" if prev is None else f"{m['us'] - prev:+.0f}"
            print(
                f"{level:<10} {name:<10} {m['us']:>8.0f} {delta:>9} {m['cpu_us']:>7.0f}"
                f" {m['ctx_switches']:>7.1f}",
                file=dest,
            )
            prev = m["us"]
    if a.json:
        print(
            json.dumps({"bench": "bench_breakdown", "n": a.n, "repeat": a.repeat, "results": out})
        )


if __name__ == "__main__":
    main()
