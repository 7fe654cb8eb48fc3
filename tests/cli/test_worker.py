"""`duralog worker` and `duralog cancel` as a user runs them: separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import PATIENCE, popen, wait_for

import duralog

HERE = Path(__file__).parent


def cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "duralog", "--db", db, "--app", "app_workflows", *args],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        cwd=HERE,
    )


def status(db: str, workflow_id: str) -> Any:
    # Read in this process: a CLI process per poll would load a slow machine further.
    with duralog.Engine(db, worker=False) as engine:
        return {r.id: r.status.value for r in engine.list()}.get(workflow_id)


def test_a_worker_process_runs_what_another_process_started(tmp_path: Path) -> None:
    db = str(tmp_path / "shop.db")
    started = cli(db, "start", "cli_order", "--input", '["o-9", 500]', "--id", "o-9")
    assert started.returncode == 0, started.stderr
    assert status(db, "o-9") == "PENDING"  # nobody runs it yet

    worker = popen(
        [sys.executable, "-m", "duralog", "--db", db, "--app", "app_workflows", "worker"],
        cwd=HERE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    wait_for(lambda: status(db, "o-9") == "COMPLETED")
    sleeper = cli(db, "start", "cli_sleeper", "--input", '["o-10"]', "--id", "o-10")
    assert sleeper.returncode == 0, sleeper.stderr
    wait_for(lambda: status(db, "o-10") == "RUNNING")
    cancelled = cli(db, "cancel", "o-10", "--reason", "customer asked")
    assert cancelled.returncode == 0, cancelled.stderr
    wait_for(lambda: status(db, "o-10") == "CANCELLED")
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=PATIENCE)
    assert worker.returncode == 0, err
    assert "worker stopped" in err and "Traceback" not in err
    with duralog.Engine(db, worker=False) as engine:
        assert engine.get("o-9").result(timeout=1) == [
            "reserved o-9",
            "charged o-9 500",
            "shipped o-9",
        ]


def test_cancel_of_an_unknown_or_finished_workflow_is_one_clear_line(tmp_path: Path) -> None:
    db = str(tmp_path / "shop.db")
    assert (
        cli(db, "start", "cli_order", "--input", '["o-1", 1]', "--id", "o-1", "--wait").returncode
        == 0
    )
    for target, expected in (("nope", "no workflow with id 'nope'"), ("o-1", "already COMPLETED")):
        done = cli(db, "cancel", target)
        assert done.returncode == 1
        assert done.stderr.startswith("error: ") and expected in done.stderr
        assert done.stderr.count("\n") == 1


def test_break_at_stops_pdb_in_the_workflow_code_with_recorded_values(tmp_path: Path) -> None:
    db = str(tmp_path / "shop.db")
    assert (
        cli(db, "start", "cli_order", "--input", '["o-5", 700]', "--id", "o-5", "--wait").returncode
        == 0
    )
    # seq 7 is the StepCompleted of cli_charge: pdb stops where the workflow receives it.
    debug = subprocess.run(
        [
            sys.executable,
            "-m",
            "duralog",
            "--db",
            db,
            "--app",
            "app_workflows",
            "replay",
            "o-5",
            "--break-at",
            "7",
        ],
        input="p charged\nn\np charged\nc\n",
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        cwd=HERE,
    )
    assert debug.returncode == 0, debug.stdout + debug.stderr
    assert "app_workflows.py" in debug.stdout  # the stop is in the user's workflow code
    assert "'charged o-5 700'" in debug.stdout  # the recorded value, in scope
    assert "agrees" in debug.stdout


def _replay_o5(db: str, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    command = ["--db", db, "--app", "app_workflows", "replay", "o-5", *args]
    return subprocess.run(
        [sys.executable, "-m", "duralog", *command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        cwd=HERE,
    )


@pytest.mark.parametrize("stdin", ["p charged\nq\n", ""], ids=["quit", "end-of-input"])
def test_quitting_pdb_stops_the_replay_and_is_no_divergence(tmp_path: Path, stdin: str) -> None:
    db = str(tmp_path / "shop.db")
    started = cli(db, "start", "cli_order", "--input", '["o-5", 700]', "--id", "o-5", "--wait")
    assert started.returncode == 0
    debug = _replay_o5(db, "--break-at", "7", stdin=stdin)
    assert debug.returncode == 0, debug.stdout + debug.stderr
    # (after pdb's last prompt: on a terminal the user's Enter ends that line)
    assert debug.stdout.rstrip().endswith("o-5 (cli_order): replay stopped by the user")
    assert "DIVERGES" not in debug.stdout


def test_break_at_past_the_end_says_so(tmp_path: Path) -> None:
    db = str(tmp_path / "shop.db")
    started = cli(db, "start", "cli_order", "--input", '["o-5", 700]', "--id", "o-5", "--wait")
    assert started.returncode == 0
    done = _replay_o5(db, "--break-at", "999", stdin="")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "agrees" in done.stdout
    assert "warning: --break-at 999 is past the end of what was replayed" in done.stderr
