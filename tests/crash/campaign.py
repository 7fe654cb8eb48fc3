"""The crash campaign: a mixed workload SIGKILLed at random points, again and again.

    python tests/crash/campaign.py --kills 200 --workflows 40 --rounds 200 --seed 7

A worker process runs a mix of workflows (steps, retries, durable sleeps,
signals, gathers, child workflows). The driver kills it with SIGKILL after a
random delay, starts a fresh one, sends signals from outside meanwhile, and
repeats until every workflow has finished. Then it checks every invariant:

* every workflow COMPLETED with the right result;
* every history is gapless (seq 1..N), ends with its terminal event, and holds
  exactly one completion per step;
* replaying every history against the code agrees;
* no step whose completion was on disk before a kill ran again after it
  (the ledger records which process incarnation ran which step).

It prints how many kills were survived. ``tests/crash/test_campaign.py`` runs a
short campaign in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import duralog
from duralog.replay import History, check
from duralog.replay.definitions import REGISTRY

# -- the workload (runs in the worker process) --------------------------------


def _note(what: str) -> None:
    info = duralog.step_info()
    line = f"{os.environ['CAMPAIGN_RUN']} {info.idempotency_key} {what} {info.attempt}\n"
    with open(os.environ["CAMPAIGN_LEDGER"], "a") as f:
        f.write(line)
        f.flush()


@duralog.step(retry=duralog.RetryPolicy(max_attempts=5, initial_interval=0.01, jitter=False))
def work(n: int) -> int:
    _note("work")
    if duralog.step_info().attempt == 1 and n % 3 == 0:
        raise ConnectionError("the first try of every third call fails")
    return n * 2


@duralog.workflow(name="campaign_child")
async def child(n: int) -> int:
    return await work(n) + 1


@duralog.workflow(name="campaign_mixed")
async def mixed(i: int, rounds: int) -> int:
    total = 0
    for r in range(rounds):
        total += await work(i + r)
        await duralog.sleep(0.05 * ((i + r) % 4))
    parts = await asyncio.gather(work(i + 1), work(i + 2), child(i))
    total += sum(parts)
    if i % 2 == 0:
        total += int(await duralog.wait_signal("bonus"))
    total += await work(i + 3)
    return total


def expected(i: int, rounds: int) -> int:
    bonus = 100 if i % 2 == 0 else 0
    looped = sum(2 * (i + r) for r in range(rounds))
    return looped + (2 * (i + 1) + 2 * (i + 2) + 2 * i + 1) + bonus + 2 * (i + 3)


def serve(db: str, count: int, rounds: int) -> None:
    """The worker process: start (idempotently) every workflow and run until done."""
    with duralog.Engine(db, poll_interval=0.05, lease_seconds=5) as engine:
        handles = [engine.start(mixed, i, rounds, id=f"m-{i}") for i in range(count)]
        for handle in handles:
            handle.result(timeout=600)


# -- the driver ------------------------------------------------------------------


def run_campaign(
    folder: Path, kills: int, count: int, seed: int, rounds: int = 10
) -> dict[str, Any]:
    rng = random.Random(seed)
    db, ledger = str(folder / "campaign.db"), folder / "ledger.txt"
    env = {**os.environ, "CAMPAIGN_LEDGER": str(ledger)}
    survived = 0
    incarnation = 0
    signalled: set[str] = set()
    completions_before: dict[int, set[str]] = {}
    started = time.monotonic()
    while True:
        incarnation += 1
        completions_before[incarnation] = _completed_keys(db)
        worker = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                db,
                "--workflows",
                str(count),
                "--rounds",
                str(rounds),
            ],
            env={**env, "CAMPAIGN_RUN": str(incarnation)},
        )
        deadline = time.monotonic() + rng.uniform(0.02, 0.35)
        while time.monotonic() < deadline and worker.poll() is None:
            _send_bonuses(db, count, signalled, rng)
            time.sleep(0.01)
        if worker.poll() is not None:
            if worker.returncode != 0:
                raise SystemExit(f"the worker failed with exit code {worker.returncode}")
            break
        if survived >= kills:
            _send_bonuses(db, count, signalled, rng, everyone=True)
            worker.wait(timeout=600)
            if worker.returncode != 0:
                raise SystemExit(f"the last worker failed with exit code {worker.returncode}")
            break
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        survived += 1
    report = _check(db, ledger, count, rounds, completions_before)
    report.update(
        kills_survived=survived, workflows=count, seconds=round(time.monotonic() - started, 1)
    )
    return report


def _send_bonuses(
    db: str, count: int, signalled: set[str], rng: random.Random, everyone: bool = False
) -> None:
    if not Path(db).exists() or (not everyone and rng.random() > 0.2):
        return
    with duralog.Engine(db, worker=False) as engine:
        for i in range(0, count, 2):
            workflow_id = f"m-{i}"
            if workflow_id in signalled:
                continue
            try:
                engine.get(workflow_id).signal("bonus", 100)
            except duralog.WorkflowNotFound:
                continue
            signalled.add(workflow_id)
            if not everyone:
                return


def _completed_keys(db: str) -> set[str]:
    if not Path(db).exists():
        return set()
    with duralog.Engine(db, worker=False) as engine:
        keys = set()
        for record in engine.list():
            for entry in engine.store.read_events(record.id):
                if entry.kind == "StepCompleted":
                    keys.add(f"{record.id}:{entry.event.step_seq}")  # type: ignore[union-attr]
        return keys


def _check(
    db: str, ledger: Path, count: int, rounds: int, completions_before: dict[int, set[str]]
) -> dict[str, Any]:
    problems: list[str] = []
    steps_recorded = 0
    with duralog.Engine(db, worker=False) as engine:
        for i in range(count):
            handle = engine.get(f"m-{i}")
            if handle.status() is not duralog.WorkflowStatus.COMPLETED:
                problems.append(f"m-{i} is {handle.status().value}")
                continue
            if handle.result(timeout=1) != expected(i, rounds):
                problems.append(f"m-{i} returned {handle.result()}, not {expected(i, rounds)}")
        for record in engine.list():
            history = engine.store.read_events(record.id)
            if [e.seq for e in history] != list(range(1, len(history) + 1)):
                problems.append(f"{record.id}: the history has a gap")
            if history[-1].kind != "WorkflowCompleted":
                problems.append(f"{record.id}: the history ends with {history[-1].kind}")
            done: defaultdict[int, int] = defaultdict(int)
            for entry in history:
                if entry.kind == "StepCompleted":
                    done[entry.event.step_seq] += 1  # type: ignore[union-attr]
            steps_recorded += len(done)
            if any(n != 1 for n in done.values()):
                problems.append(f"{record.id}: a step completed twice")
            report = check(History(record.id, record.name, history), REGISTRY)
            if not report.ok:
                problems.append(f"{record.id}: replay diverges: {report.error}")
    reruns = 0
    for line in ledger.read_text().splitlines():
        run, key, _, _ = line.split()
        if key in completions_before[int(run)]:
            reruns += 1
            problems.append(f"{key} ran again in process {run} after its completion was on disk")
    return {
        "ok": not problems,
        "problems": problems[:20],
        "steps_recorded": steps_recorded,
        "step_executions": len(ledger.read_text().splitlines()),
        "completed_steps_rerun": reruns,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--workflows", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10, help="steps and sleeps per workflow")
    parser.add_argument("--serve", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help="where to keep the log (default: a temp dir)")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.workflows, args.rounds)
        return
    import tempfile

    folder = Path(args.dir or tempfile.mkdtemp(prefix="duralog-campaign-"))
    folder.mkdir(parents=True, exist_ok=True)
    report = run_campaign(folder, args.kills, args.workflows, args.seed, args.rounds)
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
