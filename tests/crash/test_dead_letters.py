"""Dead letters: a workflow whose step kills every worker that runs it is set aside
after ``max_recovery_attempts`` recoveries in a row, on SQLite and PostgreSQL, and a
fork with the fixed code finishes it.

Each ``app_dead.py work`` process is a fresh worker: it takes the workflows over from
the worker before it (dead, on this host), runs the crashing step and dies by SIGKILL,
until one finds the limit exceeded and sets the workflow aside instead of running it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import PATIENCE, load_app, popen

import duralog
from duralog.cli import main as cli
from duralog.store.verify import verify

APP = Path(__file__).with_name("app_dead.py")
app = load_app(APP)  # its workflows, for the worker this test runs at the end


def run(db: str, mode: str, runs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    process = popen(
        [sys.executable, str(APP), db, mode, *args],
        env={**os.environ, "DEAD_RUNS": str(runs)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=PATIENCE)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_a_step_that_kills_its_workers_is_set_aside_and_a_fork_finishes_it(
    address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs.txt"
    assert run(address, "start", runs, "poison").returncode == 0
    killed = 0
    for _ in range(app.LIMIT + 4):
        worker = run(address, "work", runs, "poison")
        if worker.returncode != -signal.SIGKILL:
            break
        killed += 1
    assert worker.returncode == 0, worker.stderr
    outcome = json.loads(worker.stdout)
    assert outcome["failed"] == "RecoveryLimit"
    assert f"max_recovery_attempts={app.LIMIT}" in outcome["message"]
    assert "native_call" in outcome["message"]
    # The first worker dies before the crashing step's start reaches the log (decisions
    # ride with the next commit); from the first recovery on, they are committed before
    # the step starts, so each later death is counted. One more than the limit sets it
    # aside, without running the step again.
    assert killed in (app.LIMIT + 1, app.LIMIT + 2)
    assert "set aside" in worker.stderr
    assert runs.read_text() == "prepare o-1\n"  # the completed step never ran again

    with duralog.Engine(address, worker=False) as engine:
        poison, sleeper = engine.get("poison"), engine.get("sleeper")
        assert poison.status() is duralog.WorkflowStatus.FAILED
        record = poison.record()
        assert record.recoveries == app.LIMIT + 1
        assert record.reason is not None and record.reason.startswith("set aside after 4")
        last = poison.history()[-1]
        assert last.kind == "WorkflowTerminated"
        # The sleeper was taken over from every dead worker too, but it was only waiting
        # on its timer: no recovery is charged to it.
        assert sleeper.status() is duralog.WorkflowStatus.RUNNING
        assert sleeper.record().recoveries == 0
        crashing = next(s for s in poison.state().steps.values() if s.name.endswith("call"))
        assert all(check.ok for check in verify(engine.store))

    cli_runner = CliRunner()
    listed = cli_runner.invoke(cli, ["--db", address, "list"])
    assert listed.exit_code == 0, listed.output
    (line,) = [line for line in listed.output.splitlines() if line.startswith("poison")]
    assert "FAILED" in line and "set aside after 4 recoveries" in line
    shown = cli_runner.invoke(cli, ["--db", address, "show", "poison"])
    assert shown.exit_code == 0, shown.output
    assert "status    FAILED: set aside after 4 recoveries in a row" in shown.output
    assert "error     RecoveryLimit: workflow 'poison' was set aside" in shown.output
    stats = cli_runner.invoke(cli, ["--db", address, "stats", "-o", "json"])
    assert stats.exit_code == 0, stats.output
    by_name = {wf["name"]: wf for wf in json.loads(stats.output)["workflows"]}
    assert by_name["crash_flow"]["set_aside"] == 1 and by_name["crash_flow"]["failed"] == 1
    assert by_name["sleepy_flow"]["recovering"] == 0

    # The fix is deployed: a fork from the crashing step finishes it, without running
    # the first step again; a restart runs it all anew.
    monkeypatch.setenv("DEAD_FIXED", "1")
    monkeypatch.setenv("DEAD_RUNS", str(runs))
    with duralog.Engine(address, poll_interval=0.05) as engine:
        fork = engine.get("poison").fork(from_seq=crashing.seq, id="poison-fixed")
        assert fork.result(timeout=PATIENCE) == "prepared o-1, shipped o-1"
        assert runs.read_text() == "prepare o-1\n"
        again = engine.get("poison").restart(id="poison-again")
        assert again.result(timeout=PATIENCE) == "prepared o-1, shipped o-1"
        assert runs.read_text() == "prepare o-1\n" * 2
        assert fork.record().recoveries == 0


def test_a_workflow_that_progresses_between_crashes_is_never_set_aside(
    address: str, tmp_path: Path
) -> None:
    """Each step of ``flaky`` kills its worker once; the recovery after completes it, so
    the count starts again at each recovery and its limit of 1 is never exceeded."""
    runs = tmp_path / "runs.txt"
    assert run(address, "start", runs, "flaky").returncode == 0
    killed = 0
    for _ in range(app.FLAKY_STEPS + 2):
        worker = run(address, "work", runs, "flaky")
        if worker.returncode != -signal.SIGKILL:
            break
        killed += 1
    assert worker.returncode == 0, worker.stderr
    assert json.loads(worker.stdout) == {"result": sum(range(app.FLAKY_STEPS))}
    assert killed == app.FLAKY_STEPS
    with duralog.Engine(address, worker=False) as engine:
        assert engine.get("flaky").record().recoveries == 1  # the last one, counted
