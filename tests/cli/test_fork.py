"""``duralog fork`` and ``duralog restart`` on real logs: the confirmation, ``show``'s
links both ways, the divergence report (exit 1) and one error line for bad input.

Each test forks a copy of ``shop_db`` (see ``conftest.py``), which stays read-only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import Result
from support import PATIENCE

import duralog

Invoke = Callable[..., Result]
Run = Callable[..., subprocess.CompletedProcess[str]]
APP = ("--app", "app_workflows")


@pytest.fixture
def db(shop_db: str, tmp_path: Path, app: ModuleType) -> str:
    copy = tmp_path / "shop.db"
    shutil.copy(shop_db, copy)
    return str(copy)


def seq_of(db: str, workflow_id: str, kind: str, name: str) -> int:
    with duralog.Engine(db, worker=False) as engine:
        history = engine.get(workflow_id).history()
    return next(e.seq for e in history if e.kind == kind and getattr(e.event, "name", "") == name)


def one_error(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


def test_fork_confirms_and_a_worker_finishes_it(cli: Invoke, db: str) -> None:
    ship = seq_of(db, "order-1", "StepScheduled", "cli_ship")
    done = cli("--db", db, *APP, "fork", "order-1", "--from-seq", str(ship), "--id", "again")
    assert done.exit_code == 0, done.output
    assert done.stdout == (
        f"forked order-1 at seq {ship} into again ({ship - 2} events copied) (status PENDING); "
        "a worker with this code runs it\n"
    )
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        assert engine.get("again").result(timeout=PATIENCE) == [
            "reserved o-1",
            "charged o-1 1999",
            "shipped o-1",
        ]
    fork = cli("--db", db, "show", "again")
    assert f"forked    from order-1 (run 1) at seq {ship}: events 2-{ship - 1}" in fork.stdout
    source = cli("--db", db, "show", "order-1", "-o", "json")
    assert json.loads(source.stdout)["forks"] == [{"workflow_id": "again", "status": "COMPLETED"}]
    assert "forks     again (COMPLETED)" in cli("--db", db, "show", "order-1").stdout
    assert cli("--db", db, "verify", "again").exit_code == 0


@pytest.mark.parametrize("option", [("-o", "json"), ("--json",), ("-o", "jsonl")])
def test_fork_and_restart_print_json(cli: Invoke, db: str, option: tuple[str, ...]) -> None:
    forked = cli("--db", db, *APP, "fork", "fail-1", "--from-seq", "2", *option)
    assert forked.exit_code == 0, forked.output
    found = json.loads(forked.stdout)
    assert found["workflow_id"].startswith("fail-1-fork-")
    assert {k: v for k, v in found.items() if k != "workflow_id"} == {
        "action": "fork",
        "source": "fail-1",
        "from_seq": 2,
        "copied": 0,
        "status": "PENDING",
    }
    restarted = cli("--db", db, *APP, "restart", "fail-1", "--id", "fail-1-again", *option)
    assert json.loads(restarted.stdout) == {
        "workflow_id": "fail-1-again",
        "action": "restart",
        "source": "fail-1",
        "from_seq": 2,
        "copied": 0,
        "status": "PENDING",
    }


def test_a_fork_the_code_does_not_replay_is_refused_with_the_report(python_m: Run, db: str) -> None:
    """``app_changed`` charges before it reserves: the copy diverges at seq 2."""
    ship = str(seq_of(db, "order-1", "StepScheduled", "cli_ship"))
    done = python_m("--db", db, "--app", "app_changed", "fork", "order-1", "--from-seq", ship)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "order-1: fork refused, the current code DIVERGES from the copy at seq 2"
    assert lines[1:3] == [
        "  recorded:  StepScheduled cli_reserve",
        "  attempted: StepScheduled cli_charge",
    ]
    assert "app_changed.py:" in lines[3] and "nothing was written" in lines[4]
    as_json = python_m(
        "--db", db, "--app", "app_changed", "fork", "order-1", "--from-seq", ship, "--json"
    )
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert (report["ok"], report["seq"], report["from_seq"]) == (False, 2, int(ship))
    with duralog.Engine(db, worker=False) as engine:
        assert len(engine.list()) == 3  # nothing was written
    # A restart copies no decision: nothing to diverge from.
    again = python_m("--db", db, "--app", "app_changed", "restart", "order-1")
    assert again.returncode == 0, again.stderr


def test_bad_input_is_one_error_line(cli: Invoke, db: str) -> None:
    charge = seq_of(db, "order-1", "StepScheduled", "cli_charge")
    cases = [
        (("fork", "order-1", "--from-seq", "1"), 2, "choose a seq from 2"),
        (("fork", "order-1", "--from-seq", "99"), 2, "is never copied"),
        (("fork", "order-1", "--from-seq", str(charge + 1)), 2, "inside step 'cli_charge'"),
        (("fork", "order-1", "--from-seq", "x"), 2, "'x' is not a valid integer"),
        (("fork", "order-1"), 2, "Missing option '--from-seq'"),
        (("fork", "nope", "--from-seq", "2"), 1, "no workflow with id 'nope'"),
        (("fork", "order-1", "--from-seq", "2", "--id", "fail-1"), 2, "choose another id"),
        (("restart", "order-1", "--id", "a~b"), 2, "'~' is reserved"),
        (("fork", "order-1", "--from-seq", "2", "--json", "-o", "table"), 2, "--json is -o json"),
    ]
    for args, code, message in cases:
        line = one_error(cli("--db", db, *APP, *args), code)
        assert message in line, (args, line)
    line = one_error(cli("--db", db, "fork", "order-1", "--from-seq", "2"), 2)
    assert "pass --app MODULE" in line
    with duralog.Engine(db, worker=False) as engine:
        assert len(engine.list()) == 3


def test_an_encrypted_log_is_forked_only_with_its_keys(
    cli: Invoke, tmp_path: Path, app: ModuleType
) -> None:
    db = str(tmp_path / "vault.db")
    key = duralog.AesGcmCodec({"k1": bytes(range(32))}, "k1")
    with duralog.Engine(db, durability="normal", payload_codec=key) as engine:
        engine.start(app.order, "o-9", 5, id="sealed").result(timeout=PATIENCE)
    line = one_error(cli("--db", db, *APP, "fork", "sealed", "--from-seq", "5"), 2)
    assert "cannot fork 'sealed'" in line and "key 'k1', which is not configured" in line
    with duralog.Engine(db, worker=False) as engine:
        assert [r.id for r in engine.list()] == ["sealed"]
