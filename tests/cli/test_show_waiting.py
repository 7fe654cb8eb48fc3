"""Nothing stays silent about why it is not running: ``show`` says why a workflow
waits and lists the requests still in its inbox; a worker warns about the waiting
workflows no running worker can run."""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner
from support import wait_for

import duralog
from duralog.cli import main
from duralog.engine.diagnose import Unserved, unserved
from duralog.engine.queues import Queue
from duralog.store.base import WorkerRecord

#: The workflows the client side knows; the workers below run a registry without them.
client = duralog.Registry()
other = duralog.Registry()
reports = Queue("reports", concurrency=1)


@duralog.workflow(name="waiting_report", registry=client)
async def waiting_report(day: str) -> str:
    return day


@duralog.workflow(name="something_else", registry=other)
async def something_else() -> None:
    return None


def show(db: str, workflow_id: str, *more: str) -> str:
    found = CliRunner().invoke(main, ["--db", db, "show", workflow_id, *more])
    assert found.exit_code == 0, found.output
    return found.stdout


def test_no_worker_running(db: str) -> None:
    with duralog.Engine(db, worker=False, registry=client) as engine:
        engine.start(waiting_report, "mon", id="r-1")
    assert "waiting   no worker is running on this log" in show(db, "r-1")
    assert json.loads(show(db, "r-1", "-o", "json"))["waiting"].startswith("no worker is running")


def test_no_running_worker_has_its_code(db: str) -> None:
    with duralog.Engine(db, worker=False, registry=client) as engine:
        engine.start(waiting_report, "mon", id="r-2")
    with duralog.Engine(db, registry=other, poll_interval=0.05):
        shown = show(db, "r-2")
    assert "no running worker has workflow 'waiting_report' registered" in shown
    assert "registering: something_else" in shown


def test_no_running_worker_takes_from_its_queue(db: str) -> None:
    with duralog.Engine(db, worker=False, registry=client, queues=[reports]) as engine:
        engine.start(waiting_report, "tue", id="r-3", queue="reports")
    with duralog.Engine(db, registry=client, poll_interval=0.05):  # no queue declared
        shown = show(db, "r-3")
    assert "takes from queue 'reports'" in shown


def test_show_lists_the_requests_waiting_in_the_inbox(db: str) -> None:
    with duralog.Engine(db, worker=False, registry=client) as engine:
        handle = engine.start(waiting_report, "wed", id="r-4")
        handle.signal("approval", {"by": "ana"})
        handle.cancel("not needed")
    shown = show(db, "r-4")
    assert 'inbox     SignalReceived approval {"by":"ana"} (sent ' in shown
    assert "inbox     CancelRequested not needed (sent " in shown
    data = json.loads(show(db, "r-4", "-o", "json"))
    assert [(r["kind"], r.get("name"), r.get("reason")) for r in data["inbox"]] == [
        ("SignalReceived", "approval", None),
        ("CancelRequested", None, "not needed"),
    ]


def test_a_running_workflow_says_nothing_about_waiting(db: str) -> None:
    with duralog.Engine(db, registry=client, poll_interval=0.05) as engine:
        engine.run(waiting_report, "thu", id="r-5")
    data = json.loads(show(db, "r-5", "-o", "json"))
    assert data["waiting"] is None and data["inbox"] == []


def test_a_worker_warns_about_workflows_nobody_can_run(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    with duralog.Engine(db, worker=False, registry=client) as engine:
        engine.start(waiting_report, "fri", id="r-6")
        engine.start(waiting_report, "sat", id="r-7")
    with (
        caplog.at_level(logging.WARNING, logger="duralog.engine"),
        duralog.Engine(db, registry=other, poll_interval=0.05, worker_id="w-other"),
    ):
        wait_for(lambda: any("cannot run" in r.getMessage() for r in caplog.records))
    (said,) = [r.getMessage() for r in caplog.records if "cannot run" in r.getMessage()]
    assert said.startswith("worker w-other: 2 workflow(s) named 'waiting_report' cannot run:")


def worker(workflows: tuple[str, ...] | None, queues: tuple[str, ...] = ()) -> WorkerRecord:
    return WorkerRecord("w", "h", 1, 0.0, 100.0, workflows, queues)


def test_each_unserved_group_is_said_once_until_it_is_served() -> None:
    unserved_by = Unserved("w")
    waiting = [("a", None, 3)]
    assert len(unserved_by.note(waiting, [worker(("b",))], now=50.0)) == 1
    assert unserved_by.note(waiting, [worker(("b",))], now=51.0) == []  # said already
    assert unserved_by.note(waiting, [worker(("a",))], now=52.0) == []  # served now
    assert len(unserved_by.note(waiting, [worker(("b",))], now=53.0)) == 1  # again unserved


def test_what_unserved_says() -> None:
    assert unserved("a", None, [], 1.0) is not None
    assert "stopped renewing 50 s ago" in (unserved("a", None, [worker(("a",))], 150.0) or "")
    assert unserved("a", None, [worker(None)], 50.0) is None  # an older worker: may serve it
    assert unserved("a", "q", [worker(("a",), ("q",))], 50.0) is None
    assert "queue 'q'" in (unserved("a", "q", [worker(("a",))], 50.0) or "")
