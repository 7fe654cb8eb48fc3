"""A fork killed half-way leaves either nothing or a whole new workflow, on SQLite and
PostgreSQL: the fork's row, its first event and its copies are one transaction.

``app_fork.py die`` SIGKILLs itself inside that transaction, after every write and
before the commit; a fresh process then finds no trace of the fork, forks again under
the same id, and a worker finishes the fork once the fix is deployed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import PATIENCE, load_app, popen

import duralog
from duralog.store.verify import verify

APP = Path(__file__).with_name("app_fork.py")
app = load_app(APP)  # its workflow, for the worker this test runs at the end


def run(db: str, mode: str, **env: str) -> subprocess.CompletedProcess[str]:
    process = popen(
        [sys.executable, str(APP), db, mode],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=PATIENCE)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_a_fork_killed_inside_its_transaction_leaves_nothing(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared = run(address, "prepare")
    assert prepared.returncode == 0, prepared.stderr
    from_seq = json.loads(prepared.stdout)["from_seq"]

    died = run(address, "die")
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert died.stdout == ""
    with duralog.Engine(address, worker=False) as engine:
        assert [r.id for r in engine.list()] == ["source"]
        assert engine.store.read_events("forked", verify=False) == []
        assert all(check.ok for check in verify(engine.store))

    forked = run(address, "fork")
    assert forked.returncode == 0, forked.stderr
    assert json.loads(forked.stdout) == {"id": "forked", "last_seq": from_seq - 1}
    monkeypatch.setenv("CRASH_FORK_FIXED", "1")  # the fix, for the worker below
    with duralog.Engine(address, poll_interval=0.05) as engine:
        assert engine.get("forked").result(timeout=PATIENCE) == app.STEPS
        assert all(check.ok for check in verify(engine.store))
