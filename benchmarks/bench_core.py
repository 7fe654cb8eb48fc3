#!/usr/bin/env python3
"""duralog core overhead: sequential steps, many workflows, and the raw SQLite commit.

usage:
  python benchmarks/bench_core.py [--durability full|normal|both] [--n 1000] [--m 500] [--k 10]
                                  [--rows 2000] [--repeat 3] [--warmup 10] [--json]

W1   one workflow of N sequential no-op sync steps; `start()` -> `result()` wall time / N
     = the per-step overhead (us). Also CPU time per step (all threads), events and
     commits per step.
W2   M workflows of K no-op sync steps each, all started with `engine.start()` (one
     after another from the main thread, returning at once) and then awaited; wall time
     from the first start to the last result -> workflows/s and steps/s.
RAW  the reference: one row per commit with plain sqlite3 (WAL, the same
     `synchronous` level as the engine's durability: full -> FULL, normal -> NORMAL),
     `BEGIN IMMEDIATE; INSERT; COMMIT` per row, timed the same way (wall / rows), in a
     file in the same temp dir (same file system) as the engine's log.

Every number is the median of --repeat runs, interleaved (raw, W1, W2, raw, W1, W2, ...),
each run on a fresh database file. With --json the table goes to stderr and one JSON
line with every number goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import duralog

SYNC = {"full": "FULL", "normal": "NORMAL"}


@duralog.step(name="bench_core.noop")
def noop(i: int) -> int:
    return i


@duralog.step(name="bench_core.noop_inline", inline=True)
def noop_inline(i: int) -> int:
    return i


@duralog.workflow(name="bench_core.sequential")
async def sequential(n: int, inline: bool = False) -> int:
    step = noop_inline if inline else noop
    total = 0
    for i in range(n):
        total += await step(i)
    return total


INLINE = False  # --steps inline


def code_version() -> str:
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


# -- reference: one committed row per step ---------------------------------------------


def raw_commit(path: str, sync: str, rows: int) -> dict[str, float]:
    """sqlite3 only: one event row per transaction (the table of the shared sqlite_limit.py)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={sync}")
    con.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, workflow_id TEXT NOT NULL,"
        " seq INTEGER NOT NULL, kind TEXT NOT NULL, payload TEXT, ts REAL,"
        " UNIQUE(workflow_id, seq))"
    )
    sql = "INSERT INTO events (workflow_id, seq, kind, payload, ts) VALUES (?,?,?,?,?)"
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(rows):
        con.execute("BEGIN IMMEDIATE")
        con.execute(
            sql, ("wf-1", i, "StepCompleted", json.dumps({"step": i, "result": i}), time.time())
        )
        con.execute("COMMIT")
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    con.close()
    return {"us_per_row": wall / rows * 1e6, "cpu_us_per_row": cpu / rows * 1e6}


# -- the engine ------------------------------------------------------------------------


class CommitCounter:
    """Counts the store's write transactions (wraps the instance's methods, no file edits)."""

    def __init__(self, store: Any) -> None:
        self.commits = 0
        for name in ("append", "create_workflows"):
            original = getattr(store, name)
            setattr(store, name, self._counting(original))

    def _counting(self, fn: Any) -> Any:
        def wrapper(batch: Any) -> Any:
            self.commits += 1
            return fn(batch)

        return wrapper


def open_engine(path: str, durability: str) -> tuple[duralog.Engine, CommitCounter]:
    engine = duralog.Engine(path, durability=durability)  # type: ignore[arg-type]
    counter = CommitCounter(engine.store)
    engine.__enter__()
    return engine, counter


def w1(path: str, durability: str, n: int, warmup: int) -> dict[str, float]:
    engine, counter = open_engine(path, durability)
    try:
        if warmup:
            engine.run(sequential, warmup, timeout=60)
        commits0 = counter.commits
        cpu0, t0 = time.process_time(), time.perf_counter()
        handle = engine.start(sequential, n, INLINE)
        result = handle.result(timeout=120)  # a hang is a bug: fail, do not wait
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        commits = counter.commits - commits0
        if result != sum(range(n)):
            raise SystemExit(f"W1: wrong result {result!r}")
        events = len(handle.history())
    finally:
        engine.close()
    return {
        "us_per_step": wall / n * 1e6,
        "cpu_us_per_step": cpu / n * 1e6,
        "events_per_step": events / n,
        "commits_per_step": commits / n,
    }


def w2(path: str, durability: str, m: int, k: int, warmup: int) -> dict[str, float]:
    engine, counter = open_engine(path, durability)
    try:
        if warmup:
            engine.run(sequential, warmup, timeout=60)
        commits0 = counter.commits
        t0 = time.perf_counter()
        handles = [engine.start(sequential, k, INLINE) for _ in range(m)]
        started = time.perf_counter() - t0
        results = [h.result(timeout=120) for h in handles]
        wall = time.perf_counter() - t0
        commits = counter.commits - commits0
        if results != [sum(range(k))] * m:
            raise SystemExit("W2: wrong results")
    finally:
        engine.close()
    return {
        "workflows_per_s": m / wall,
        "steps_per_s": m * k / wall,
        "start_phase_s": started,
        "wall_s": wall,
        "commits": commits,
    }


# -- driver ----------------------------------------------------------------------------


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def bench(durability: str, a: argparse.Namespace, tmp: str) -> dict[str, Any]:
    raws, w1s, w2s = [], [], []
    for r in range(a.repeat):
        run_dir = os.path.join(tmp, f"{durability}-{r}")
        os.makedirs(run_dir)
        raws.append(raw_commit(os.path.join(run_dir, "raw.sqlite"), SYNC[durability], a.rows))
        w1s.append(w1(os.path.join(run_dir, "w1.db"), durability, a.n, a.warmup))
        if a.m:
            w2s.append(w2(os.path.join(run_dir, "w2.db"), durability, a.m, a.k, a.warmup))
        print(
            f"  [{durability} run {r + 1}/{a.repeat}] raw {raws[-1]['us_per_row']:.0f} us/row,"
            f" W1 {w1s[-1]['us_per_step']:.0f} us/step"
            + (f", W2 {w2s[-1]['steps_per_s']:.0f} steps/s" if w2s else ""),
            file=sys.stderr,
        )
    out: dict[str, Any] = {"durability": durability, "synchronous": SYNC[durability]}
    out["raw"] = median_of(raws)
    out["w1"] = median_of(w1s)
    out["w1"]["x_raw_commit"] = out["w1"]["us_per_step"] / out["raw"]["us_per_row"]
    out["w1"]["runs_us_per_step"] = [round(x["us_per_step"], 1) for x in w1s]
    if w2s:
        out["w2"] = median_of(w2s)
    return out


def table(results: list[dict[str, Any]], a: argparse.Namespace) -> str:
    lines = [
        f"duralog {duralog.__version__} ({code_version()}), SQLite {sqlite3.sqlite_version},"
        f" Python {platform.python_version()}, {os.cpu_count()} CPUs; median of {a.repeat} runs;"
        f" {a.steps} steps",
        "",
        f"{'durability':<10} {'raw commit':>11} {'W1 N=' + str(a.n):>11} {'x raw':>6}"
        f" {'W1 CPU':>9} {'events':>7} {'commits':>8}"
        f" {'W2 ' + str(a.m) + 'x' + str(a.k):>11} {'W2':>9}",
        f"{'':<10} {'us/row':>11} {'us/step':>11} {'':>6} {'us/step':>9} {'/step':>7} {'/step':>8}"
        f" {'wf/s':>11} {'steps/s':>9}",
    ]
    for r in results:
        raw, one, two = r["raw"], r["w1"], r.get("w2")
        lines.append(
            f"{r['durability']:<10} {raw['us_per_row']:>11.0f} {one['us_per_step']:>11.0f}"
            f" {one['x_raw_commit']:>6.2f} {one['cpu_us_per_step']:>9.0f}"
            f" {one['events_per_step']:>7.2f} {one['commits_per_step']:>8.2f}"
            + (f" {two['workflows_per_s']:>11.0f} {two['steps_per_s']:>9.0f}" if two else "")
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--durability", choices=["full", "normal", "both"], default="both")
    ap.add_argument("--n", type=int, default=1000, help="W1: steps of the one workflow")
    ap.add_argument("--m", type=int, default=500, help="W2: workflows (0 skips W2)")
    ap.add_argument("--k", type=int, default=10, help="W2: steps per workflow")
    ap.add_argument("--rows", type=int, default=2000, help="raw commits measured per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    ap.add_argument("--warmup", type=int, default=10, help="steps of an unmeasured workflow")
    ap.add_argument("--tmp", help="parent folder of the temp dir (default: system temp)")
    ap.add_argument("--json", action="store_true", help="table to stderr, JSON line to stdout")
    ap.add_argument(
        "--steps",
        choices=["thread", "inline"],
        default="thread",
        help="the no-op step on a step thread (any sync step) or inline=True on the loop",
    )
    a = ap.parse_args()
    global INLINE
    INLINE = a.steps == "inline"

    levels = ["full", "normal"] if a.durability == "both" else [a.durability]
    tmp = tempfile.mkdtemp(prefix="duralog-bench-", dir=a.tmp)
    try:
        results = [bench(level, a, tmp) for level in levels]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(results, a), file=sys.stderr if a.json else sys.stdout, flush=True)
    if a.json:
        record = {
            "bench": "bench_core",
            "duralog": duralog.__version__,
            "commit": code_version(),
            "sqlite": sqlite3.sqlite_version,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "n": a.n,
            "m": a.m,
            "k": a.k,
            "rows": a.rows,
            "repeat": a.repeat,
            "steps": a.steps,
            "results": results,
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
