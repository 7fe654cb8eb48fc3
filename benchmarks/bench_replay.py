#!/usr/bin/env python3
"""Replay speed: how many events per second `duralog replay` checks.

usage:
  python benchmarks/bench_replay.py [--steps 20000] [--workflows 1] [--repeat 3]

Records one workflow of --steps sequential no-op steps (3 events per step) with the
real engine (durability=normal), then times, median of --repeat runs:

  fold     folding the events into the derived state (what a snapshot holds)
  check    `duralog.replay.check`: re-running the workflow code against the
           whole history, decision by decision (what `duralog replay` does)
  cli      `duralog replay --all` in a fresh process: interpreter, imports,
           reading the log and the check (wall time of the command)

and prints events/s for each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duralog
from duralog.replay.checker import check
from duralog.replay.history import History
from duralog.replay.state import fold_all
from duralog.store.open import open_store


@duralog.step(name="bench_replay.noop")
def noop(i: int) -> int:
    return i


@duralog.workflow(name="bench_replay.sequential")
async def sequential(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="duralog-replay-"))
    db = str(folder / "replay.db")
    with duralog.Engine(db, durability="normal", max_history_events=None) as engine:
        engine.run(sequential, opts.steps, id="long", timeout=600)
    store = open_store(db)
    events = store.read_events("long")
    store.close()
    history = History("long", "bench_replay.sequential", events)
    n = len(events)
    timings: dict[str, list[float]] = {"fold": [], "check": [], "cli": []}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    command = [sys.executable, "-m", "duralog", "--db", db, "--app", "bench_replay"]
    for _ in range(opts.repeat):
        t0 = time.perf_counter()
        fold_all("long", events)
        timings["fold"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        report = check(history, [sequential])
        timings["check"].append(time.perf_counter() - t0)
        assert report.ok, report
        t0 = time.perf_counter()
        subprocess.run([*command, "replay", "--all"], env=env, check=True, capture_output=True)
        timings["cli"].append(time.perf_counter() - t0)
    print(f"history: {opts.steps} steps, {n} events; median of {opts.repeat} runs")
    for label, values in timings.items():
        seconds = statistics.median(values)
        print(f"  {label:<6} {seconds:8.3f} s   {n / seconds:>10,.0f} events/s")


if __name__ == "__main__":
    main()
