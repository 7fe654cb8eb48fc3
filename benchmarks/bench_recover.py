#!/usr/bin/env python3
"""Where the time of a fresh-process recovery (the harness's W3) goes, phase by phase.

usage: python benchmarks/bench_recover.py [--n 2000] [--runs 7] [--durability normal]

Once: a child process starts the W3 workflow of ``duralog_adapter.py`` (N no-op steps,
then a gate step that blocks) and is SIGKILLed when the gate runs; its log (the
database, its WAL and shared-memory files) is kept as a template. Then, ``--runs``
times: a copy of the template, and a fresh interpreter that recovers the workflow
and prints how long each phase took, from its own first line:

  imports       import duralog_adapter (duralog, declaring the workflows) and
                duralog.engine.engine (the runtime and the store)
  Engine()      open the store (an existing log: no migration)
  worker start  ``with Engine``: register the worker, start its thread, claim; split into
    load_state    the newest snapshot plus the tail of the log, read, verified, folded
    activate      the workflow's code replayed against that state (N steps)
    other         the rest: thread start, claim, index row, recovery count, inbox
  result        the gate step runs, the workflow completes, ``result()`` returns

``load_state`` and ``activate`` are timed by wrapping ``Claims.load_state`` and
``Execution.activate`` (engine internals, which may change). The interpreter's own
start (about 17 ms here) and the modules the harness imports before its adapter
(asyncio, json, subprocess..., about 28 ms) come first and are not counted; the
harness's ``recover_wall_s`` counts both.

Imports dominate when Python has no bytecode cache for duralog's modules (an editable
install run with PYTHONDONTWRITEBYTECODE=1 compiles about 670 KB of source on every
start); the header line says which case was measured.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

CRASH = """
import sys, time
import duralog, duralog_adapter as bench
def ready():
    print("READY", flush=True)
    while True:
        time.sleep(3600)
bench._gate = ready
with duralog.Engine(sys.argv[1], durability=sys.argv[3]) as engine:
    engine.start(bench.w3_workflow, int(sys.argv[2]), id=bench.W3_ID).result()
"""

RECOVER = """
import argparse, asyncio, contextlib, importlib, inspect, json, platform, resource, signal
import subprocess, sys, time  # what the harness imports before its adapter: not counted
t0 = time.perf_counter()
import duralog_adapter as bench
import duralog
import duralog.engine.engine
from duralog.engine.claims import Claims
from duralog.engine.execution import Execution

spent = {"load_state": 0.0, "activate": 0.0}

def timed(cls, name):
    fn = getattr(cls, name)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start
    setattr(cls, name, wrapper)

timed(Claims, "load_state")
timed(Execution, "activate")
t1 = time.perf_counter()
engine = duralog.Engine(sys.argv[1], durability=sys.argv[3])
t2 = time.perf_counter()
engine.__enter__()
t3 = time.perf_counter()
result = engine.get(bench.W3_ID).result(timeout=600)
t4 = time.perf_counter()
assert result == sum(range(int(sys.argv[2]))), result
worker = t3 - t2
print(repr({
    "imports": t1 - t0, "Engine()": t2 - t1, "worker start": worker,
    "  load_state": spent["load_state"], "  activate": spent["activate"],
    "  other": worker - spent["load_state"] - spent["activate"],
    "result": t4 - t3, "total": t4 - t0,
}))
engine.close()
"""


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path)


def crashed_log(folder: str, n: int, durability: str) -> str:
    """Run the crash child until its gate step, SIGKILL it; the folder of its log."""
    template = os.path.join(folder, "template")
    os.makedirs(template)
    log = os.path.join(template, "log.db")
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH, log, str(n), durability],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == "READY":
            break
    else:
        raise SystemExit(f"the crash child exited ({child.wait()}) before its gate step")
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    return template


def recover_once(template: str, folder: str, n: int, durability: str) -> dict[str, float]:
    """Recover a fresh copy of the template in a fresh interpreter; its phases."""
    work = os.path.join(folder, "work")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(template, work)
    out = subprocess.run(
        [sys.executable, "-c", RECOVER, os.path.join(work, "log.db"), str(n), durability],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    ).stdout
    phases: dict[str, float] = ast.literal_eval(out.strip().splitlines()[-1])
    return phases


def main() -> None:
    """Print the median milliseconds of each phase over ``--runs`` recoveries."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="steps before the crash")
    parser.add_argument("--runs", type=int, default=7, help="fresh recoveries")
    parser.add_argument("--durability", choices=("full", "normal"), default="normal")
    args = parser.parse_args()
    import duralog.engine  # where the runtime's bytecode cache would be

    engine_dir = os.path.dirname(duralog.engine.__file__ or "")
    cached = os.path.isdir(os.path.join(engine_dir, "__pycache__"))
    print(
        f"N={args.n}, durability={args.durability}, median of {args.runs}; "
        f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}, "
        f"bytecode cache of the runtime: {'present' if cached else 'absent'}"
    )
    with tempfile.TemporaryDirectory() as folder:
        template = crashed_log(folder, args.n, args.durability)
        recover_once(template, folder, args.n, args.durability)  # warm the file cache
        runs = [recover_once(template, folder, args.n, args.durability) for _ in range(args.runs)]
    for phase in runs[0]:
        values = sorted(run[phase] * 1000 for run in runs)
        print(f"{phase:14} {statistics.median(values):7.1f} ms  ({values[0]:.1f}-{values[-1]:.1f})")


if __name__ == "__main__":
    main()
