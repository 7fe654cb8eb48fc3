"""The crash campaign: a mixed workload SIGKILLed in the middle of its work, again and again.

    python tests/crash/campaign.py --kills 300 --workflows 40 --rounds 600 --seed 7

The driver creates the workflows (steps with retries, durable sleeps, a signal sent
from outside, gathers, child workflows), then starts a worker process. It waits
until that worker has started a step (each step writes a line to a ledger), lets
it work a random moment longer, and kills it with SIGKILL; then it starts a fresh
worker, and so on. After the last kill a worker runs every workflow to its end.
Then it checks every invariant:

* every workflow COMPLETED with the right result;
* every history is gapless (seq 1..N), ends with its terminal event, and holds
  exactly one completion per step;
* replaying every history against the code agrees;
* no step whose completion was on disk before a kill ran again after it
  (the ledger records which worker ran which step);
* most kills interrupted work: a step attempt of the killed worker had started
  and its outcome (completed, retrying, failed) was not on disk, so the kill cut
  off the step itself or the commit of its outcome.

It prints a JSON report: kills, how many of them interrupted work, steps recorded
and run. It never waits forever: past ``--deadline`` seconds it kills its worker
and fails, saying what it was waiting for. ``tests/crash/test_campaign.py`` runs
a short campaign in CI.
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
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import duralog
from duralog.replay import History, check
from duralog.replay.definitions import REGISTRY

# -- the workload (runs in the worker process) --------------------------------


def _note(what: str) -> None:
    info = duralog.step_info()  # "<workflow id>:<seq>" names the step (whatever the key)
    line = f"{os.environ['CAMPAIGN_RUN']} {info.workflow_id}:{info.seq} {what} {info.attempt}\n"
    with open(os.environ["CAMPAIGN_LEDGER"], "a") as f:
        f.write(line)
        f.flush()


#: How long a step takes (a call to another service, say).
STEP_SECONDS = 0.02


@duralog.step(retry=duralog.RetryPolicy(max_attempts=5, initial_interval=0.01, jitter=False))
def work(n: int) -> int:
    _note("work")
    time.sleep(STEP_SECONDS)
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


def serve(db: str, count: int) -> None:
    """The worker process: run the campaign's workflows until every one has ended
    (the driver kills it long before, or bounds it with its deadline). It ends with
    its driver, should that die first."""
    driver = os.getppid()

    def orphaned() -> None:
        while os.getppid() == driver:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=orphaned, daemon=True).start()
    with duralog.Engine(db, poll_interval=0.05, lease_seconds=5) as engine:
        for i in range(count):
            engine.get(f"m-{i}").result(timeout=3600)


# -- the driver ------------------------------------------------------------------


class Stuck(Exception):
    """The campaign's deadline passed while it waited for something."""


class _Ledger:
    """The lines the workers wrote to the ledger since the last look."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def new_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        whole = data[: data.rfind(b"\n") + 1]  # a line being written waits for next time
        self.offset += len(whole)
        return whole.decode().splitlines()


class _Campaign:
    def __init__(self, folder: Path, count: int, rounds: int, seed: int, deadline: float) -> None:
        self.folder, self.count, self.rounds = folder, count, rounds
        self.rng = random.Random(seed)
        self.db = str(folder / "campaign.db")
        self.ledger_path = folder / "ledger.txt"
        self.ledger = _Ledger(self.ledger_path)
        self.worker_log = folder / "workers.log"
        self.deadline = time.monotonic() + deadline
        self.signalled: set[str] = set()

    def start_worker(self, incarnation: int) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "CAMPAIGN_LEDGER": str(self.ledger_path),
            "CAMPAIGN_RUN": str(incarnation),
        }
        with open(self.worker_log, "ab") as log:
            return subprocess.Popen(
                [sys.executable, __file__, "--serve", self.db, "--workflows", str(self.count)],
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C of the driver is the driver's to handle
            )

    def wait_for_step(self, worker: subprocess.Popen[bytes], incarnation: int) -> list[str]:
        """The ledger lines of worker ``incarnation`` once it has started a step; [] if
        it exited first."""
        mine: list[str] = []
        prefix = f"{incarnation} "
        while True:
            mine += [line for line in self.ledger.new_lines() if line.startswith(prefix)]
            if mine:
                return mine
            if worker.poll() is not None:
                return []
            self.check_deadline(f"worker {incarnation} to start a step")
            time.sleep(0.005)

    def let_it_work(self, worker: subprocess.Popen[bytes], seconds: float) -> None:
        """A random moment more of work, signals sent from outside meanwhile."""
        until = time.monotonic() + seconds
        while time.monotonic() < until and worker.poll() is None:
            self.send_bonuses()
            time.sleep(0.01)

    def finish(self, worker: subprocess.Popen[bytes], incarnation: int) -> None:
        """Signal every workflow that waits for one, and let the last worker end."""
        self.send_bonuses(everyone=True)
        while worker.poll() is None:
            self.check_deadline(f"the last worker ({incarnation}) to finish every workflow")
            time.sleep(0.05)

    def check_deadline(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            raise Stuck(f"the campaign's deadline passed while it waited for {what}")

    def send_bonuses(self, everyone: bool = False) -> None:
        if not everyone and self.rng.random() > 0.2:
            return
        with duralog.Engine(self.db, worker=False) as engine:
            for i in range(0, self.count, 2):
                workflow_id = f"m-{i}"
                if workflow_id in self.signalled:
                    continue
                engine.get(workflow_id).signal("bonus", 100)
                self.signalled.add(workflow_id)
                if not everyone:
                    return

    def interrupted(self, incarnation: int, lines: list[str]) -> bool:
        """Whether a step attempt the killed worker ``incarnation`` started (its ledger
        ``lines``) has no outcome on disk: the kill cut off the step or its commit."""
        attempts: defaultdict[str, set[tuple[int, int]]] = defaultdict(set)
        for line in lines:
            run, key, _, attempt = line.split()
            if int(run) == incarnation:
                workflow_id, _, step_seq = key.rpartition(":")
                attempts[workflow_id].add((int(step_seq), int(attempt)))
        with duralog.Engine(self.db, worker=False) as engine:
            for workflow_id, started in attempts.items():
                done = _outcomes(engine.store.read_events(workflow_id))
                if any((seq, None) not in done and (seq, n) not in done for seq, n in started):
                    return True
        return False

    def unfinished(self) -> str:
        with duralog.Engine(self.db, worker=False) as engine:
            left = [
                f"{r.id} {r.status.value}"
                for r in engine.list()
                if r.status is not duralog.WorkflowStatus.COMPLETED
            ]
        tail = (
            self.worker_log.read_text(errors="replace")[-2000:] if self.worker_log.exists() else ""
        )
        shown = ", ".join(left[:20]) + (f" and {len(left) - 20} more" if len(left) > 20 else "")
        return f"not finished: {shown or 'none'}; the workers' output ends with:\n{tail}"


def _outcomes(history: list[Any]) -> set[tuple[int, int | None]]:
    """(step seq, attempt) of every attempt whose outcome is in ``history``; attempt
    None for a step that ended (completed or failed for good)."""
    found: set[tuple[int, int | None]] = set()
    for entry in history:
        event = entry.event
        if entry.kind in ("StepCompleted", "StepFailed"):
            found.add((event.step_seq, None))
        elif entry.kind == "StepRetrying":
            found.add((event.step_seq, event.attempt))
    return found


def run_campaign(
    folder: Path,
    kills: int,
    count: int,
    seed: int,
    rounds: int = 10,
    deadline: float = 3600.0,
    most_delay: float = 0.3,
) -> dict[str, Any]:
    """Kill a worker ``kills`` times in the middle of its work, then check everything.

    Each kill comes ``0..most_delay`` seconds after the worker started its first step.
    Past ``deadline`` seconds the campaign stops and reports what it waited for."""
    campaign = _Campaign(folder, count, rounds, seed, deadline)
    with duralog.Engine(campaign.db, worker=False) as client:  # every workflow exists up front
        for i in range(count):
            client.start(mixed, i, rounds, id=f"m-{i}")
    completions_before: dict[int, set[str]] = {}
    killed = interrupting = incarnation = 0
    problems: list[str] = []
    started = time.monotonic()
    try:
        while True:
            incarnation += 1
            completions_before[incarnation] = _completed_keys(campaign.db)
            worker = campaign.start_worker(incarnation)
            try:
                if killed >= kills:
                    campaign.finish(worker, incarnation)
                    if worker.returncode != 0:
                        problems.append(f"the last worker exited with {worker.returncode}")
                    break
                # It has started work; a random moment later, the next step it starts
                # is killed in flight, or in the commit of its outcome.
                lines = campaign.wait_for_step(worker, incarnation)
                if lines:
                    campaign.let_it_work(worker, campaign.rng.uniform(0, most_delay))
                    lines += campaign.ledger.new_lines()  # (steps it ran meanwhile)
                    lines += campaign.wait_for_step(worker, incarnation)
                    time.sleep(campaign.rng.uniform(0, 1.5 * STEP_SECONDS))
                if worker.poll() is not None:  # it ended by itself: it failed, or it finished
                    problems.append(
                        f"worker {incarnation} exited with {worker.returncode}"
                        if worker.returncode
                        else f"the workload ended after {killed} of {kills} kills (more --rounds)"
                    )
                    break
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                killed += 1
                interrupting += campaign.interrupted(
                    incarnation, lines + campaign.ledger.new_lines()
                )
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
    except Stuck as exc:
        problems.append(f"{exc}; {campaign.unfinished()}")
    report: dict[str, Any] = {"ok": False, "problems": problems}
    if not problems:
        report = _check(campaign.db, campaign.ledger_path, count, rounds, completions_before)
        if interrupting * 2 <= killed:
            report["ok"] = False
            report["problems"].append(
                f"only {interrupting} of {killed} kills interrupted a step or its commit"
            )
    report.update(
        kills=killed,
        kills_interrupting_work=interrupting,
        workers_started=incarnation,
        workflows=count,
        seconds=round(time.monotonic() - started, 1),
    )
    return report


def _completed_keys(db: str) -> set[str]:
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
    parser.add_argument(
        "--deadline", type=float, default=3600.0, help="seconds before it gives up (failing)"
    )
    parser.add_argument("--serve", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help="where to keep the log (default: a temp dir)")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.workflows)
        return
    # SIGTERM unwinds like Ctrl-C, so the worker it runs is killed on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    import tempfile

    folder = Path(args.dir or tempfile.mkdtemp(prefix="duralog-campaign-"))
    folder.mkdir(parents=True, exist_ok=True)
    report = run_campaign(
        folder, args.kills, args.workflows, args.seed, args.rounds, deadline=args.deadline
    )
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
