"""Fixtures for the CLI tests: the ``app_workflows`` module, a populated log, a runner."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result
from support import PATIENCE, load_app, wait_for

import duralog
from duralog.cli import main

HERE = Path(__file__).parent
APP = "app_workflows"


@pytest.fixture(scope="session")
def app() -> ModuleType:
    """``app_workflows``, imported under the name ``--app app_workflows`` finds it by."""
    return load_app(HERE / f"{APP}.py")


@pytest.fixture(autouse=True)
def in_cli_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--app`` imports from the working directory, as a user's shell would."""
    monkeypatch.chdir(HERE)


@pytest.fixture(scope="session")
def shop_db(tmp_path_factory: pytest.TempPathFactory, app: ModuleType) -> str:
    """A log with one COMPLETED ``cli_order``, one FAILED ``cli_fail`` and one RUNNING
    ``cli_sleeper`` (waiting on an hour-long timer). Read-only for the tests."""
    db = str(tmp_path_factory.mktemp("cli") / "shop.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        assert engine.start(app.order, "o-1", 1999, id="order-1").result(timeout=PATIENCE) == [
            "reserved o-1",
            "charged o-1 1999",
            "shipped o-1",
        ]
        with pytest.raises(duralog.WorkflowFailed):
            engine.start(app.fail, "o-2", id="fail-1").result(timeout=PATIENCE)
        sleeping = engine.start(app.sleeper, "o-3", id="sleep-1")
        wait_for(lambda: any(e.kind == "TimerStarted" for e in sleeping.history()))
    return db


@pytest.fixture(scope="session")
def ops() -> ModuleType:
    """``app_ops``, imported under the name ``--app app_ops`` finds it by."""
    return load_app(HERE / "app_ops.py")


@pytest.fixture(scope="session")
def ops_db(tmp_path_factory: pytest.TempPathFactory, ops: ModuleType) -> str:
    """A log of ``app_ops`` workflows, oldest first: ``e-1`` .. ``e-4`` (COMPLETED
    ``ops_echo``), ``f-1`` (FAILED ``ops_fail``), ``p-1`` (COMPLETED ``ops_parent``)
    with its two children, ``pub-1`` (RUNNING ``ops_publisher``: it published
    ``progress`` and waits for signal ``go``) and ``q-1``, ``q-2`` (PENDING on queue
    ``ops_emails``: no worker ran when they were started). Read-only for the tests."""
    db = str(tmp_path_factory.mktemp("ops") / "ops.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        for i in range(1, 5):
            assert engine.start(ops.echo, f"x{i}", id=f"e-{i}").result(timeout=PATIENCE)
            time.sleep(0.02)  # distinct start times: --since/--until fall between them
        with pytest.raises(duralog.WorkflowFailed):
            engine.start(ops.fail, "f", id="f-1").result(timeout=PATIENCE)
        assert engine.start(ops.parent, 1, id="p-1").result(timeout=PATIENCE) == [2, 4]
        publisher = engine.start(ops.publisher, 3, id="pub-1")
        wait_for(lambda: engine.store.published("pub-1", "progress"))
        assert publisher.status() is duralog.WorkflowStatus.RUNNING
    with duralog.Engine(db, worker=False) as engine:  # nobody takes them off the queue
        engine.start(ops.echo, "q", id="q-1", queue=ops.emails)
        engine.start(ops.echo, "q", id="q-2", queue=ops.emails)
    return db


Invoke = Callable[..., Result]


@pytest.fixture
def cli() -> Invoke:
    """``cli("--db", db, "list")``: run the command in-process; returns click's Result."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        # The environment must not choose the database or the app for a test.
        env: dict[str, str | None] = {"DURALOG_DB": None, "DURALOG_APP": None}
        return runner.invoke(main, list(args), env=env, catch_exceptions=True)

    return invoke


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def python_m() -> Run:
    """``python_m("--db", db, "list")``: ``python -m duralog`` in a real subprocess, run
    in this folder (so ``--app app_workflows`` / ``--app app_changed`` import)."""

    def run(*args: str, timeout: float = PATIENCE) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DURALOG_")}
        return subprocess.run(
            [sys.executable, "-m", "duralog", *args],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )

    return run
