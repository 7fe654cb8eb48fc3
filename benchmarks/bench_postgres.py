#!/usr/bin/env python3
"""W2 on PostgreSQL with 1, 2 and 4 worker processes (and on SQLite for reference).

usage:
  python benchmarks/bench_postgres.py [--url postgresql://postgres@127.0.0.1:5432/test]
                                      [--workers 1,2,4] [--m 500] [--k 10] [--repeat 3]
                                      [--durability normal|full] [--no-sqlite] [--json]
                                      [--on-loop]

W2   M workflows of K no-op sync steps each. N worker processes (``--serve``: an engine
     with a worker, nothing else) run on one log; a client process with no worker starts
     the M workflows with ``engine.start()`` (one after another, returning at once) and
     watches the log until all M are COMPLETED. Wall time from the first start to the
     last completion -> workflows/s and steps/s. Each step returns its process id, so
     the table also shows how the workflows were spread over the workers.

Each run uses a fresh log: a new schema (PostgreSQL) or a new file (SQLite). Workers
wake on LISTEN/NOTIFY on PostgreSQL and poll every 50 ms on SQLite. The numbers are
the median of --repeat runs. ``--on-loop`` makes the PostgreSQL workers write on their
event loop, as they do for SQLite (``store.remote = False``: the behaviour before
workers moved their store calls off the loop), for an A/B comparison. The machine's
cores are shared by the workers, the client and the database server: on 2 cores, 4
workers compete for the same CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from typing import Any

import duralog
from duralog._signals import StopSignals
from duralog.store.open import open_store

DEFAULT_URL = os.environ.get("DURALOG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@duralog.step
def bench_noop(i: int) -> int:
    return os.getpid()


@duralog.workflow(name="bench_pg_w2")
async def bench_pg_w2(k: int) -> int:
    pid = 0
    for i in range(k):
        pid = await bench_noop(i)
    return pid


def serve(address: str, durability: str, on_loop: bool = False) -> None:
    """A worker process: run workflows from ``address`` until SIGTERM."""
    stop = StopSignals((signal.SIGTERM,))  # a lock-free handler: see duralog/_signals.py
    store = open_store(address, durability=durability)  # type: ignore[arg-type]
    if on_loop:
        store.remote = False  # the worker's store calls on its loop (as before)
    with duralog.Engine(store, durability=durability, poll_interval=0.05):  # type: ignore[arg-type]
        print("ready", flush=True)
        while not stop.wait(0.2):
            pass


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run_once(
    address: str, workers: int, m: int, k: int, durability: str, on_loop: bool = False
) -> dict[str, Any]:
    duralog.Engine(address, worker=False, durability=durability).close()  # type: ignore[arg-type]
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--serve", address, "--durability", durability]
            + (["--on-loop"] if on_loop else []),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        with duralog.Engine(address, worker=False, durability=durability) as client:  # type: ignore[arg-type]
            t0 = time.perf_counter()
            handles = [client.start(bench_pg_w2, k) for _ in range(m)]
            started = time.perf_counter() - t0
            deadline = time.monotonic() + 600
            done = duralog.WorkflowStatus.COMPLETED
            while len(client.store.list_workflows(status=done)) < m:
                if time.monotonic() > deadline:
                    raise SystemExit("W2: the workflows did not finish in 10 minutes")
                time.sleep(0.01)
            wall = time.perf_counter() - t0
            spread = Counter(h.result(timeout=10) for h in handles)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.communicate(timeout=60)
    return {
        "workflows_per_s": m / wall,
        "steps_per_s": m * k / wall,
        "wall_s": wall,
        "start_phase_s": started,
        "busiest_worker_share": max(spread.values()) / m,
        "workers_used": len(spread),
    }


def bench(store: str, workers: int, a: argparse.Namespace, tmp: str) -> dict[str, Any]:
    runs = []
    for r in range(a.repeat):
        if store == "postgres":
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            sep = "&" if "?" in a.url else "?"
            try:
                runs.append(
                    run_once(
                        f"{a.url}{sep}schema={schema}", workers, a.m, a.k, a.durability, a.on_loop
                    )
                )
            finally:
                drop_schema(a.url, schema)
        else:
            path = os.path.join(tmp, f"w2-{workers}-{r}.db")
            runs.append(run_once(path, workers, a.m, a.k, a.durability))
        print(
            f"  [{store} {workers} worker(s), run {r + 1}/{a.repeat}]"
            f" {runs[-1]['steps_per_s']:.0f} steps/s",
            file=sys.stderr,
        )
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return {"store": store, "workers": workers, **median}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--m", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--durability", choices=["normal", "full"], default="normal")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--on-loop", action="store_true")
    a = parser.parse_args()
    if a.serve:
        serve(a.serve, a.durability, a.on_loop)
        return
    counts = [int(n) for n in a.workers.split(",")]
    stores = ["postgres"] + ([] if a.no_sqlite else ["sqlite"])
    results = []
    with tempfile.TemporaryDirectory(prefix="duralog-bench-pg-") as tmp:
        for store in stores:
            for workers in counts:
                results.append(bench(store, workers, a, tmp))
    out = sys.stderr if a.json else sys.stdout
    print(
        f"\nW2 {a.m}x{a.k}, durability={a.durability}, median of {a.repeat}"
        f" ({os.cpu_count()} cores)",
        file=out,
    )
    print(
        f"{'store':<9} {'workers':>7} {'steps/s':>9} {'workflows/s':>12} {'wall s':>7}"
        f" {'start s':>8} {'busiest':>8}",
        file=out,
    )
    for r in results:
        print(
            f"{r['store']:<9} {r['workers']:>7} {r['steps_per_s']:>9.0f}"
            f" {r['workflows_per_s']:>12.0f} {r['wall_s']:>7.2f} {r['start_phase_s']:>8.2f}"
            f" {r['busiest_worker_share']:>8.0%}",
            file=out,
        )
    if a.json:
        print(json.dumps({"m": a.m, "k": a.k, "durability": a.durability, "results": results}))


if __name__ == "__main__":
    main()
