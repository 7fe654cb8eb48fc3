#!/usr/bin/env python3
"""How long ``engine.start()`` takes while the same engine runs a W2 load.

usage:
  python benchmarks/bench_start_latency.py [--seconds 5] [--steps thread|inline]
                                           [--durability normal|full] [--repeat 3]

One engine (a worker in the process, SQLite). A load thread starts workflows of 10
no-op steps, 100 at a time, and waits for them, again and again (W2's shape). Meanwhile
the main thread starts a one-step workflow every 3 ms and times each ``engine.start()``
call (it returns once the start is committed). Prints the median, the 90th and 99th
percentile and the worst, in milliseconds, for each of --repeat runs, and the load's
steps/s in the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

from duralog_adapter import sequential  # (this folder: W2's workflow of no-op steps)

import duralog


def run(seconds: float, inline: bool, durability: str) -> tuple[list[float], float]:
    path = os.path.join(tempfile.mkdtemp(prefix="duralog-latency-"), "latency.db")
    with duralog.Engine(path, durability=durability) as engine:  # type: ignore[arg-type]
        engine.run(sequential, 10, inline, timeout=60)  # warm up
        stop = threading.Event()
        steps = [0]

        def load() -> None:
            while not stop.is_set():
                handles = [engine.start(sequential, 10, inline) for _ in range(100)]
                for handle in handles:
                    handle.result(timeout=600)
                steps[0] += 1000

        loader = threading.Thread(target=load, name="w2-load")
        loader.start()
        latencies: list[float] = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            began = time.perf_counter()
            engine.start(sequential, 1, True)
            latencies.append(time.perf_counter() - began)
            time.sleep(0.003)
        stop.set()
        loader.join()
        elapsed = time.perf_counter() - t0
    return sorted(latencies), steps[0] / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--steps", choices=["thread", "inline"], default="thread")
    parser.add_argument("--durability", choices=["normal", "full"], default="normal")
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    print(f"engine.start() while W2 runs ({opts.steps} steps, durability={opts.durability})")
    for _ in range(opts.repeat):
        latencies, rate = run(opts.seconds, opts.steps == "inline", opts.durability)

        def at(q: float, values: list[float] = latencies) -> float:
            return values[min(len(values) - 1, int(len(values) * q))] * 1000

        print(
            f"  {len(latencies)} starts: p50 {at(0.5):.2f} ms  p90 {at(0.9):.2f}  "
            f"p99 {at(0.99):.2f}  max {latencies[-1] * 1000:.2f}   (load: {rate:,.0f} steps/s)"
        )


if __name__ == "__main__":
    main()
