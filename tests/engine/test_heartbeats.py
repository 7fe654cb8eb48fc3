"""Long steps: ``duralog.heartbeat()``, ``heartbeat_timeout``, details passed on to the
next attempt, and cancellation reaching a running step, on SQLite and PostgreSQL.

The steps here talk to the test through ``threading.Event``s: a test waits for what
a step did (with a deadline), never for time to pass.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import PATIENCE, wait_for

import duralog
from duralog.cli import main
from duralog.store import codec

#: What the steps saw, by attempt, and the events they wait on; reset by each test.
seen: list[dict[str, Any]] = []
release = threading.Event()
beaten = threading.Event()
queued = threading.Event()


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    seen.clear()
    release.clear()
    beaten.clear()
    queued.clear()
    yield
    release.set()  # whatever still waits (an abandoned attempt) ends


def engine_on(address: str, **options: Any) -> duralog.Engine:
    return duralog.Engine(address, durability="normal", poll_interval=0.05, **options)


def stored(engine: duralog.Engine, workflow_id: str, seq: int) -> Any:
    """The details the store holds for step ``seq`` (decoded), or None."""
    found = engine.store.get_heartbeat(workflow_id, seq)
    if found is None:
        return None
    return codec.decode(found.details, payload_codec=engine.store.payload_codec)


def step_seq(handle: duralog.WorkflowHandle[Any]) -> int:
    """The seq of the workflow's first step (0 while it is not in the log)."""
    return next((e.seq for e in handle.history() if e.kind == "StepScheduled"), 0)


# -- a step that stops heartbeating ----------------------------------------------


@duralog.step(
    heartbeat_timeout=1.0,
    retry=duralog.RetryPolicy(max_attempts=2, initial_interval=0.01, jitter=False),
)
def hb_hangs(rows: int) -> int:
    info = duralog.step_info()
    seen.append({"attempt": info.attempt, "details": info.heartbeat_details})
    if info.attempt == 1:
        for offset in range(3):
            duralog.heartbeat({"offset": offset + 1})
        release.wait(PATIENCE)  # hung: no heartbeat from here on
        try:
            duralog.heartbeat({"offset": 99})
        except duralog.StepCancelled as exc:
            seen.append({"abandoned": exc.reason, "cancelled": info.cancelled})
            raise
        return -1
    return rows - info.heartbeat_details["offset"]


@duralog.workflow
async def hb_hanging(rows: int) -> int:
    return await hb_hangs(rows)


def test_a_step_that_stops_heartbeating_is_retried_with_its_last_details(address: str) -> None:
    with engine_on(address) as engine:
        handle = engine.start(hb_hanging, 10, id="hangs")
        assert handle.result(timeout=PATIENCE) == 7
        retrying = next(e for e in handle.history() if e.kind == "StepRetrying")
        error = retrying.event.error  # type: ignore[attr-defined]
        assert error.type == "TimeoutError"
        assert "had no heartbeat for 1 s (its heartbeat_timeout)" in error.message
        assert "'hangs'" in error.message
        assert seen[:2] == [
            {"attempt": 1, "details": None},
            {"attempt": 2, "details": {"offset": 3}},
        ]
        # The hung attempt, woken up, is told at its next heartbeat that it was given up.
        release.set()
        wait_for(lambda: len(seen) == 3, what="the abandoned attempt's last heartbeat")
        assert seen[2]["cancelled"] is True
        assert "the attempt was given up" in seen[2]["abandoned"]
        assert [e.kind for e in handle.history()].count("StepCompleted") == 1
        # The step ended: its details are of no use any more.
        wait_for(lambda: stored(engine, "hangs", step_seq(handle)) is None)


# -- details stored, throttled, and passed on after a failure ---------------------


@duralog.step(retry=duralog.RetryPolicy(max_attempts=2, initial_interval=3600))
def hb_fails_once(rows: int) -> int:
    info = duralog.step_info()
    seen.append({"attempt": info.attempt, "details": info.heartbeat_details})
    if info.attempt == 1:
        duralog.heartbeat(1)
        beaten.set()
        release.wait(PATIENCE)
        for offset in range(2, 51):
            duralog.heartbeat(offset)
        duralog.heartbeat()  # alive, and the details stay 50
        raise ValueError("the database went away")
    return rows - int(info.heartbeat_details)


@duralog.workflow
async def hb_failing(rows: int) -> int:
    return await hb_fails_once(rows)


def test_details_are_stored_throttled_and_kept_for_the_retry(address: str) -> None:
    with engine_on(address, heartbeat_interval=3600) as engine:
        handle = engine.start(hb_failing, 80, id="fails")
        beaten.wait(PATIENCE)
        seq = wait_for(lambda: step_seq(handle))
        # The first heartbeat is stored at once, with the StepStarted it belongs to.
        wait_for(lambda: stored(engine, "fails", seq) == 1)
        assert "StepStarted" in [e.kind for e in handle.history()]
        row = engine.store.get_heartbeat("fails", seq)
        assert row is not None and row.attempt == 1
        release.set()
        # The attempt failed: its newest details are stored before the retry's wait
        # (an hour), not an interval (an hour too) after the first write.
        wait_for(lambda: stored(engine, "fails", seq) == 50)
        assert [e.kind for e in handle.history()][-1] == "StepRetrying"
        handle.cancel()
        wait_for(lambda: handle.status() is duralog.WorkflowStatus.CANCELLED)
    # A fresh worker would start the retry from the stored details.
    with engine_on(address, worker=False) as engine:
        assert stored(engine, "fails", seq) == 50


# -- a graceful stop keeps the newest details ------------------------------------


@duralog.step
def hb_until_stopped() -> int:
    duralog.heartbeat({"offset": 1})  # stored at once
    beaten.set()
    queued.wait(PATIENCE)
    for offset in range(2, 6):
        duralog.heartbeat({"offset": offset})  # the interval (an hour) not over: kept
    seen.append({"offset": 5})
    while not release.wait(0.01):
        duralog.heartbeat()  # alive; raises StepCancelled once the worker stops
    return 0


@duralog.workflow
async def hb_stopped() -> int:
    return await hb_until_stopped()


def test_a_graceful_stop_stores_the_newest_details(address: str) -> None:
    with engine_on(address, heartbeat_interval=3600) as engine:
        handle = engine.start(hb_stopped, id="stopped")
        beaten.wait(PATIENCE)
        seq = wait_for(lambda: step_seq(handle))
        wait_for(lambda: stored(engine, "stopped", seq) == {"offset": 1})
        # `duralog show` tells the step's last stored heartbeat: when, and its details.
        shown = CliRunner().invoke(main, ["--db", address, "show", "stopped"])
        assert shown.exit_code == 0, shown.output
        said = f'heartbeat hb_until_stopped (seq {seq}, attempt 1): {{"offset":1}} (stored 20'
        assert said in shown.stdout
        as_json = CliRunner().invoke(main, ["--db", address, "show", "stopped", "-o", "json"])
        (beat,) = json.loads(as_json.stdout)["heartbeats"]
        assert beat["details"] == {"offset": 1} and (beat["seq"], beat["attempt"]) == (seq, 1)
        assert time.time() - PATIENCE < beat["at"] <= time.time()
        queued.set()
        wait_for(lambda: seen == [{"offset": 5}])
        assert stored(engine, "stopped", seq) == {"offset": 1}  # an hour to the next write
    with engine_on(address, worker=False) as engine:
        assert stored(engine, "stopped", seq) == {"offset": 5}
        assert engine.get("stopped").status() is duralog.WorkflowStatus.RUNNING


# -- cancellation reaches running steps ------------------------------------------


@duralog.step
def hb_sync_loop() -> int:
    info = duralog.step_info()
    count = 0
    try:
        for count in itertools.count():
            duralog.heartbeat(count)
            beaten.set()
            release.wait(0.005)  # a unit of work
    except Exception as exc:  # what a careless step does: StepCancelled goes through it
        seen.append({"swallowed": repr(exc)})
    except duralog.StepCancelled as exc:
        seen.append({"cancelled": info.cancelled, "reason": exc.reason, "at": count > 0})
        raise
    return -1


@duralog.step
async def hb_async_loop() -> int:
    info = duralog.step_info()
    try:
        while True:
            duralog.heartbeat()
            beaten.set()
            await asyncio.sleep(0.005)
    except asyncio.CancelledError:
        seen.append({"async cancelled": info.cancelled})
        raise


@duralog.step
def hb_cleanup(what: str) -> str:
    return what


@duralog.workflow
async def hb_cancellable(kind: str) -> str:
    try:
        await (hb_sync_loop() if kind == "sync" else hb_async_loop())
    except asyncio.CancelledError:
        return await hb_cleanup("cleaned up")
    return "ran to its end"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_cancelling_a_workflow_stops_its_running_step(address: str, kind: str) -> None:
    with engine_on(address) as engine:
        handle = engine.start(hb_cancellable, kind, id=f"cancel-{kind}")
        beaten.wait(PATIENCE)
        handle.cancel("no longer needed")
        assert handle.result(timeout=PATIENCE) == "cleaned up"
        # The step never completes; whether its StepFailed ("Cancelled") is in the log
        # depends on whether it stopped before the workflow's cleanup ended the run.
        seq = step_seq(handle)
        ended = [e.event for e in handle.history() if getattr(e.event, "step_seq", 0) == seq]
        assert [type(e).__name__ for e in ended][-1] in ("StepStarted", "StepFailed")
        assert all(e.error.type == "Cancelled" for e in ended if hasattr(e, "error"))
        # ...and the step may hear of it after the run ended (it was told first).
        wait_for(lambda: seen, what="the step's reaction to the cancellation")
        if kind == "sync":
            assert seen == [
                {"cancelled": True, "reason": "workflow 'cancel-sync' was cancelled", "at": True}
            ]
        else:
            assert seen == [{"async cancelled": True}]
        kinds = [e.kind for e in handle.history()]
        assert kinds.count("StepRetrying") == 0 and kinds[-1] == "WorkflowCompleted"


# -- a lost lease ----------------------------------------------------------------


@duralog.step
def hb_until_told() -> int:
    try:
        for count in itertools.count():
            duralog.heartbeat(count)  # new details each time: each interval writes
            beaten.set()
            release.wait(0.005)
    except duralog.StepCancelled as exc:
        seen.append({"lease_lost": exc.lease_lost, "reason": exc.reason})
        raise
    return -1


@duralog.workflow
async def hb_owned() -> int:
    return await hb_until_told()


def test_heartbeat_raises_once_another_worker_may_hold_the_workflow(address: str) -> None:
    with engine_on(address, heartbeat_interval=0.05) as engine:
        handle = engine.start(hb_owned, id="owned")
        beaten.wait(PATIENCE)
        # Terminated from another engine (as from another process), which moves the
        # fence as a takeover by another worker does: the worker hears of it at its next
        # write of the details (refused) or at once (PostgreSQL's notifications).
        with engine_on(address, worker=False) as other:
            other.get("owned").terminate("taken elsewhere")
        wait_for(lambda: seen, what="the step's StepCancelled")
        assert seen[0]["lease_lost"] is True
        assert (
            "the store refused its heartbeat" in seen[0]["reason"]
            or "this worker lost workflow 'owned'" in seen[0]["reason"]
        )
        assert handle.status() is duralog.WorkflowStatus.FAILED
        assert [e.kind for e in handle.history()][-1] == "WorkflowTerminated"


# -- clear errors ----------------------------------------------------------------


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def hb_bad_details() -> None:
    duralog.heartbeat(threading.Lock())


@duralog.workflow
async def hb_bad() -> None:
    await hb_bad_details()


def test_details_that_cannot_be_stored_fail_the_step_clearly(tmp_path: Path) -> None:
    with engine_on(str(tmp_path / "log.db")) as engine:
        handle = engine.start(hb_bad, id="bad")
        with pytest.raises(duralog.WorkflowFailed) as failed:
            handle.result(timeout=PATIENCE)
    message = str(failed.value)
    assert "the heartbeat details of step" in message and "hb_bad_details" in message
    assert "of workflow 'bad' cannot be stored" in message


def test_heartbeat_outside_a_step_is_a_clear_error() -> None:
    with pytest.raises(duralog.DuralogError, match=r"only be called inside a step run by"):
        duralog.heartbeat(1)
    # A step called outside any workflow runs as a plain function: no engine, no heartbeat.
    with pytest.raises(duralog.DuralogError, match=r"only be called inside a step run by"):
        asyncio.run(hb_bad_details())


def test_heartbeat_timeout_is_checked_where_it_is_declared() -> None:
    with pytest.raises(duralog.ConfigurationError, match="heartbeat_timeout"):
        duralog.step(heartbeat_timeout=0)(lambda: None)
    with pytest.raises(duralog.ConfigurationError, match="inline step cannot have a heartbeat"):
        duralog.step(inline=True, heartbeat_timeout=5)(lambda: None)


# -- sealed at rest --------------------------------------------------------------

SECRET = "acct-7731-secret"


@duralog.step(retry=duralog.RetryPolicy(max_attempts=2, initial_interval=0.01))
def hb_sealed_step() -> str:
    info = duralog.step_info()
    if info.attempt == 1:
        duralog.heartbeat({"cursor": SECRET})
        beaten.set()
        release.wait(PATIENCE)
        raise ValueError("try again")
    return str(info.heartbeat_details["cursor"])


@duralog.workflow
async def hb_sealed() -> str:
    return await hb_sealed_step()


def test_details_are_sealed_by_the_payload_codec(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    vault = duralog.AesGcmCodec({"k1": bytes(range(32))}, "k1")
    with engine_on(db, payload_codec=vault) as engine:
        handle = engine.start(hb_sealed, id="sealed")
        beaten.wait(PATIENCE)
        wait_for(lambda: stored(engine, "sealed", step_seq(handle)) == {"cursor": SECRET})
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT details FROM heartbeats").fetchall()
        conn.close()
        assert len(rows) == 1 and SECRET not in rows[0][0]
        # `duralog show`: the details only with the key, else their marker.
        keys = "k1:" + base64.b64encode(bytes(range(32))).decode()
        for env_keys in (None, keys):
            env = {"DURALOG_KEYS": env_keys, "DURALOG_DB": None}
            shown = CliRunner().invoke(main, ["--db", db, "show", "sealed"], env=env)
            as_json = CliRunner().invoke(
                main, ["--db", db, "show", "sealed", "-o", "json"], env=env
            )
            assert shown.exit_code == 0 and as_json.exit_code == 0, shown.output
            (beat,) = json.loads(as_json.stdout)["heartbeats"]
            if env_keys is None:
                assert SECRET not in shown.stdout + as_json.stdout
                assert "heartbeat hb_sealed_step (seq 2, attempt 1): <encrypted: key k1>" in (
                    shown.stdout
                )
                assert beat["details"] == "<encrypted: key k1>"
            else:
                assert f'attempt 1): {{"cursor":"{SECRET}"}} (stored ' in shown.stdout
                assert beat["details"] == {"cursor": SECRET}
        release.set()
        assert handle.result(timeout=PATIENCE) == SECRET


# -- the silence counts from the step's start ------------------------------------


@duralog.step(heartbeat_timeout=0.5, retry=duralog.RetryPolicy(max_attempts=1))
def hb_busy(name: str) -> str:
    seen.append({"started": name})
    if name == "first":
        # Holds the only step thread for three heartbeat timeouts, beating all along,
        # while the second workflow's attempt waits for the thread.
        assert queued.wait(PATIENCE)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            duralog.heartbeat()
            release.wait(0.01)
    return name


@duralog.workflow
async def hb_queued(name: str) -> str:
    return await hb_busy(name)


def test_waiting_for_a_step_thread_is_no_silence(tmp_path: Path) -> None:
    with engine_on(str(tmp_path / "log.db"), max_threads=1) as engine:
        first = engine.start(hb_queued, "first", id="first")
        wait_for(lambda: seen, what="the first step's start")
        second = engine.start(hb_queued, "second", id="second")
        queued.set()
        assert first.result(timeout=PATIENCE) == "first"
        assert second.result(timeout=PATIENCE) == "second"
        assert seen == [{"started": "first"}, {"started": "second"}]
        assert "StepRetrying" not in [e.kind for e in second.history()]
