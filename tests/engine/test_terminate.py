"""``terminate``: a workflow ends at once, FAILED with a Terminated cause, running none
of its code (no cleanup), whoever holds it; its history says so and still replays."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import PATIENCE, wait_for

import duralog
from duralog.cli import main
from duralog.replay.checker import check
from duralog.replay.history import History

ran: list[str] = []
release = threading.Event()


@duralog.step
def term_note(what: str) -> str:
    ran.append(what)
    return what


@duralog.step
async def term_forever() -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        ran.append("step cancelled")
        raise


@duralog.step
def term_held() -> str:
    release.wait(PATIENCE)
    ran.append("held step returned")
    return "done"


@duralog.workflow
async def term_with_cleanup() -> str:
    await term_note("first")
    try:
        await term_forever()
    except asyncio.CancelledError:
        await term_note("cleanup")
        raise
    return "never"


@duralog.workflow
async def term_holds_a_sync_step() -> str:
    return await term_held()


@duralog.workflow
async def term_sleeper() -> None:
    try:
        await duralog.sleep(3600)
    except asyncio.CancelledError:
        await term_note("child cleanup")
        raise


@duralog.workflow
async def term_parent_of_sleeper() -> None:
    await term_sleeper()


@duralog.workflow
async def term_parent_catching() -> str:
    try:
        await term_sleeper()
    except duralog.WorkflowFailed as exc:
        return f"{exc.cause.type}: {exc.cause.message}"
    return "child returned"


def history_of(engine: duralog.Engine, workflow_id: str) -> History:
    return History(
        workflow_id, engine.get(workflow_id).record().name, engine.get(workflow_id).history()
    )


def test_terminate_ends_at_once_without_cleanup(engine: duralog.Engine) -> None:
    ran.clear()
    handle = engine.start(term_with_cleanup, id="t-1")
    wait_for(lambda: "StepStarted" in [e.kind for e in handle.history()[3:]])
    assert handle.terminate("stuck on a retired API") is True
    with pytest.raises(duralog.WorkflowFailed) as failed:
        handle.result(timeout=PATIENCE)
    assert failed.value.cause.type == "Terminated"
    assert failed.value.cause.message == "stuck on a retired API"
    # The running async step was cancelled; its cancellation is the later event that
    # shows the workflow's own handlers had their chance and did not run.
    wait_for(lambda: "step cancelled" in ran)
    assert ran == ["first", "step cancelled"]
    history = handle.history()
    assert history[-1].kind == "WorkflowTerminated"
    assert handle.status() is duralog.WorkflowStatus.FAILED
    state = handle.state()
    assert state.terminated and state.error is not None and state.error.type == "Terminated"
    # The code agrees with its history: replay stops at the termination.
    report = check(history_of(engine, "t-1"), [term_with_cleanup])
    assert report.ok and not report.finished


def test_terminating_again_does_nothing(engine: duralog.Engine) -> None:
    handle = engine.start(term_sleeper, id="t-2")
    wait_for(lambda: "TimerStarted" in [e.kind for e in handle.history()])
    assert handle.terminate() is True
    seqs = [e.seq for e in handle.history()]
    assert handle.terminate("again") is False
    assert [e.seq for e in handle.history()] == seqs
    with pytest.raises(duralog.WorkflowFailed, match="Terminated"):
        handle.result(timeout=PATIENCE)


def test_a_pending_workflow_is_terminated_without_a_worker(db: str) -> None:
    ran.clear()
    with duralog.Engine(db, worker=False) as engine:
        handle = engine.start(term_with_cleanup, id="t-3")
        assert handle.terminate("never wanted") is True
        assert [e.kind for e in handle.history()] == ["WorkflowStarted", "WorkflowTerminated"]
    with duralog.Engine(db, poll_interval=0.05) as engine:
        later = engine.start(term_sleeper, id="t-3b")  # the worker is serving: it takes this one
        wait_for(lambda: "TimerStarted" in [e.kind for e in later.history()])
        later.terminate()
        assert [e.kind for e in engine.get("t-3").history()][-1] == "WorkflowTerminated"
    assert ran == []


def test_terminating_a_parent_terminates_its_children(engine: duralog.Engine) -> None:
    ran.clear()
    handle = engine.start(term_parent_of_sleeper, id="t-4")
    wait_for(lambda: engine.list(name="term_sleeper") != [])
    child = engine.get("t-4/2")
    wait_for(lambda: "TimerStarted" in [e.kind for e in child.history()])
    handle.terminate("order withdrawn")
    assert child.status() is duralog.WorkflowStatus.FAILED
    assert child.history()[-1].kind == "WorkflowTerminated"
    with pytest.raises(duralog.WorkflowFailed, match="parent workflow was terminated"):
        child.result(timeout=PATIENCE)
    assert ran == []
    assert engine.store.inbox("t-4") == []  # no notice left for the ended parent


def test_a_parent_sees_its_terminated_child_fail(engine: duralog.Engine) -> None:
    handle = engine.start(term_parent_catching, id="t-5")
    wait_for(lambda: engine.list(name="term_sleeper") != [])
    child = engine.get("t-5/2")
    wait_for(lambda: "TimerStarted" in [e.kind for e in child.history()])
    child.terminate("operator")
    assert handle.result(timeout=PATIENCE) == "Terminated: operator"


def test_a_worker_of_another_engine_drops_it_and_writes_nothing_more(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The worker is another engine (as another process would be): it hears nothing,
    # its next write finds the fence moved, and it drops the workflow quietly.
    ran.clear()
    release.clear()
    with duralog.Engine(db, poll_interval=0.05) as worker:
        handle = worker.start(term_holds_a_sync_step, id="t-6")
        wait_for(lambda: "StepStarted" in [e.kind for e in handle.history()])
        with duralog.Engine(db, worker=False) as other:
            assert other.get("t-6").terminate("from elsewhere") is True
        with caplog.at_level(logging.INFO, logger="duralog.engine"):
            release.set()
            wait_for(lambda: "held step returned" in ran)
            wait_for(lambda: any("was terminated" in r.getMessage() for r in caplog.records))
        # The worker still serves: a later workflow completes, after which the
        # terminated one still ends with its WorkflowTerminated.
        assert worker.run(term_sleeper_free) == "free"
        assert handle.history()[-1].kind == "WorkflowTerminated"
        assert "StepCompleted" not in [e.kind for e in handle.history()]
    assert not [
        r for r in caplog.records if r.levelno >= logging.WARNING and "t-6" in r.getMessage()
    ]


@duralog.workflow
async def term_sleeper_free() -> str:
    return "free"


class TerminateInBetween:
    """A trace hook (``engine.listeners.traces``) called after a parent's
    ``ChildStarted`` is written and before its child is created: another engine
    terminates the parent right there, as another process could."""

    def __init__(self, db: str) -> None:
        self.db = db

    def begin(self, workflow_id: str, name: str, parent_id: str | None) -> str | None:
        if parent_id is not None:
            with duralog.Engine(self.db, worker=False) as other:
                assert other.get(parent_id).terminate("in between") is True
        return None


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_a_worker_that_lost_its_parent_creates_no_child(
    where: str, db: str, request: pytest.FixtureRequest
) -> None:
    if where == "postgres":
        db = str(request.getfixturevalue("postgres_url"))
    with duralog.Engine(db, poll_interval=0.05) as worker:
        worker.listeners.traces = TerminateInBetween(db)
        handle = worker.start(term_parent_of_sleeper, id="t-10")
        wait_for(lambda: handle.status() is duralog.WorkflowStatus.FAILED)
    # The engine closed: every create its worker asked for was written or refused.
    with duralog.Engine(db, worker=False) as engine:
        kinds = [e.kind for e in engine.get("t-10").history()]
        assert kinds[-2:] == ["ChildStarted", "WorkflowTerminated"]
        assert engine.store.get_workflow("t-10/2") is None
        assert engine.store.read_events("t-10/2") == []
        assert engine.list(name="term_sleeper") == []


def test_the_reason_is_encrypted_at_rest(tmp_path: Path) -> None:
    key = b"k" * 32
    db = str(tmp_path / "secret.db")
    with duralog.Engine(
        db, worker=False, payload_codec=duralog.AesGcmCodec({"k1": key}, "k1")
    ) as e:
        e.start(term_sleeper, id="t-7").terminate("card 4111-1111 stolen")
        with pytest.raises(duralog.WorkflowFailed, match="card 4111-1111 stolen"):
            e.get("t-7").result(timeout=PATIENCE)
    assert b"4111" not in Path(db).read_bytes()


def test_cli_terminate(db: str) -> None:
    with duralog.Engine(db, worker=False) as engine:
        engine.start(term_sleeper, id="t-8")
    runner = CliRunner()
    done = runner.invoke(main, ["--db", db, "terminate", "t-8", "--reason", "by hand"])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == "terminated t-8 (status FAILED)"
    again = runner.invoke(main, ["--db", db, "terminate", "t-8", "-o", "json"])
    assert again.exit_code == 1
    assert "had already ended (FAILED); nothing was terminated" in again.stderr
    missing = runner.invoke(main, ["--db", db, "terminate", "nope"])
    assert missing.exit_code == 1 and "no workflow with id 'nope'" in missing.stderr
    with duralog.Engine(db, worker=False) as engine:
        engine.start(term_sleeper, id="t-9")
    as_json = runner.invoke(main, ["--db", db, "terminate", "t-9", "-o", "json"])
    assert json.loads(as_json.stdout) == {
        "workflow_id": "t-9",
        "action": "terminate",
        "status": "FAILED",
    }
    shown = runner.invoke(main, ["--db", db, "show", "t-8"])
    assert "WorkflowTerminated" in shown.stdout and "Terminated: by hand" in shown.stdout
    verified = runner.invoke(main, ["--db", db, "verify", "--all"])
    assert verified.exit_code == 0, verified.output
