"""``handle.query``: answered from the log, in the asking process, on real SQLite files.

The replay room's own tests (tests/replay/test_queries.py) cover what handlers may
do; these cover the engine's side: no worker needed, nothing written, a consistent
read while a worker appends, encrypted logs, code that is missing or changed.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from support import PATIENCE, wait_for

import duralog
from duralog.replay.definitions import Registry, Workflow

released = threading.Event()
# A handler that logs as it computes: a timed-out query must never stop its thread
# inside logging's code, between the handler's lock taken and its release.
chatty_handler = logging.StreamHandler(io.StringIO())
chatty = logging.getLogger("eq_chatty")
chatty.addHandler(chatty_handler)
chatty.propagate = False
chatty.setLevel(logging.INFO)


chatty_stop = threading.Event()  # set after each test: no handler thread outlives it


def slow_progress() -> int:
    while not chatty_stop.is_set():
        chatty.info("computing progress")
        chatty_handler.stream.seek(0)
        chatty_handler.stream.truncate()
    return 0


@pytest.fixture(autouse=True)
def _stop_chatty() -> Iterator[None]:
    chatty_stop.clear()
    yield
    chatty_stop.set()


@duralog.step(name="eq_add")
def add(x: int) -> int:
    return x


@duralog.workflow(name="eq_counter")
async def counter(values: list[int]) -> int:
    total = 0
    seen: list[int] = []
    duralog.on_query("total", lambda: total)
    duralog.on_query("seen", lambda: {"count": len(seen), "last": seen[-1] if seen else None})
    duralog.on_query("fails", lambda: seen[99])

    def spin() -> None:
        while True:  # a handler that never returns
            pass

    duralog.on_query("spin", spin)
    duralog.on_query("slow_progress", slow_progress)
    for v in values:
        total += await add(v)
        seen.append(v)
    await duralog.wait_signal("finish")
    if total < 0:
        raise ValueError("a negative total")
    return total


def everything_in(db: str, workflow_id: str) -> bytes:
    """The workflow's events, and what its index row says of them (a running worker
    renews the row's lease meanwhile)."""
    with duralog.Engine(db, worker=False) as engine:
        handle = engine.get(workflow_id)
        record = handle.record()
        return msgspec.json.encode([handle.history(), record.status, record.last_seq])


def completed(handle: duralog.WorkflowHandle[Any], count: int) -> bool:
    return sum(e.kind == "StepCompleted" for e in handle.history()) >= count


def test_a_running_workflow_answers_and_nothing_is_written(engine: duralog.Engine, db: str) -> None:
    handle = engine.start(counter, [1, 2, 3], id="c-1")
    wait_for(lambda: completed(handle, 3))
    wait_for(lambda: handle.query("total") == 6)
    before = everything_in(db, "c-1")
    assert handle.query("seen") == {"count": 3, "last": 3}
    with pytest.raises(duralog.QueryFailed, match="its handler raised IndexError"):
        handle.query("fails")
    assert everything_in(db, "c-1") == before
    # A failed query disturbed nothing: the workflow goes on and ends as it would.
    handle.signal("finish")
    assert handle.result(timeout=PATIENCE) == 6


def test_no_worker_needed_and_ended_workflows_answer(db: str) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        waiting = engine.start(counter, [4, 5], id="waiting")
        done = engine.start(counter, [7], id="done")
        failed = engine.start(counter, [-1], id="failed")
        for handle in (waiting, done, failed):
            wait_for(lambda h=handle: completed(h, 1))  # type: ignore[misc]
        done.signal("finish")
        failed.signal("finish")
        assert done.result(timeout=PATIENCE) == 7
        with pytest.raises(duralog.WorkflowFailed):
            failed.result(timeout=PATIENCE)
        wait_for(lambda: completed(waiting, 2))
    # No worker anywhere now: this process replays the log to answer.
    with duralog.Engine(db, worker=False) as engine:
        assert engine.get("waiting").query("total") == 9
        assert engine.get("done").query("seen") == {"count": 1, "last": 7}
        assert engine.get("failed").query("total") == -1
        assert engine.get("waiting").status() is duralog.WorkflowStatus.RUNNING
        with pytest.raises(duralog.WorkflowNotFound):
            engine.get("nobody").query("total")


def test_queries_racing_a_worker_see_whole_commits_only(engine: duralog.Engine) -> None:
    values = list(range(1, 41))
    prefix_sums = {sum(values[:k]) for k in range(len(values) + 1)}
    handle = engine.start(counter, values, id="race")
    answers: list[int] = []
    errors: list[BaseException] = []

    def ask_until_done() -> None:
        try:
            while not answers or answers[-1] != sum(values):
                answers.append(handle.query("total"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    askers = [threading.Thread(target=ask_until_done) for _ in range(2)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(PATIENCE)
    assert not errors, errors
    assert answers[-1] == sum(values)
    assert set(answers) <= prefix_sums  # every answer is the state of some prefix
    handle.signal("finish")
    assert handle.result(timeout=PATIENCE) == sum(values)


def test_the_code_must_be_registered_here(engine: duralog.Engine, db: str) -> None:
    handle = engine.start(counter, [1], id="c-1")
    wait_for(lambda: completed(handle, 1))
    with (
        duralog.Engine(db, worker=False, registry=Registry()) as elsewhere,
        pytest.raises(duralog.RegistrationError, match="--app MODULE"),
    ):
        elsewhere.get("c-1").query("total")


def flow_v1_fn() -> Any:
    async def flow() -> str:
        duralog.on_query("where", lambda: "v1")
        await add(1)
        await duralog.wait_signal("finish")
        return "v1"

    return flow


async def flow_v2(  # the step is gone: the recorded history diverges at seq 2
) -> str:
    duralog.on_query("where", lambda: "v2")
    await duralog.wait_signal("finish")
    return "v2"


def test_a_diverged_history_is_reported(db: str) -> None:
    old, new = Registry(), Registry()
    old.add(Workflow(flow_v1_fn(), name="eq_flow"))
    new.add(Workflow(flow_v2, name="eq_flow"))
    with duralog.Engine(db, registry=old, poll_interval=0.05) as engine:
        handle = engine.start("eq_flow", id="f-1")
        wait_for(lambda: completed(handle, 1))
        assert handle.query("where") == "v1"
    with (
        duralog.Engine(db, worker=False, registry=new) as engine,
        pytest.raises(duralog.NondeterminismError) as caught,
    ):
        engine.get("f-1").query("where")
    assert caught.value.seq == 2 and caught.value.recorded == "StepScheduled eq_add"


def test_an_encrypted_log_needs_its_key(db: str) -> None:
    vault = duralog.AesGcmCodec({"k1": os.urandom(32)}, "k1")
    with duralog.Engine(db, payload_codec=vault, poll_interval=0.05) as engine:
        handle = engine.start(counter, [20, 22], id="secret")
        wait_for(lambda: completed(handle, 2))
    with (
        duralog.Engine(db, worker=False) as engine,
        pytest.raises(duralog.PayloadError, match="'k1'"),
    ):
        engine.get("secret").query("total")
    with duralog.Engine(db, worker=False, payload_codec=vault) as engine:
        assert engine.get("secret").query("total") == 42


def test_hostile_arguments_and_names_are_refused(engine: duralog.Engine) -> None:
    handle = engine.start(counter, [1], id="c-1")
    wait_for(lambda: completed(handle, 1))
    with pytest.raises(duralog.PayloadError, match="cannot send query 'total' to workflow 'c-1'"):
        handle.query("total", object())
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(duralog.PayloadError):
        handle.query("total", deep)
    with pytest.raises(duralog.ConfigurationError, match="a query name"):
        handle.query("")
    with pytest.raises(duralog.QueryFailed, match="too many positional arguments"):
        handle.query("total", 1)


def test_a_query_that_never_returns_times_out(engine: duralog.Engine) -> None:
    handle = engine.start(counter, [4], id="c-spin")
    wait_for(lambda: completed(handle, 1))
    with pytest.raises(duralog.QueryTimeout) as caught:
        handle.query("spin", timeout=0.2)
    assert isinstance(caught.value, duralog.QueryFailed) and isinstance(caught.value, TimeoutError)
    assert str(caught.value).startswith(
        "query 'spin' of workflow 'c-spin' failed: no answer within 0.2s: its handler"
    )
    # Its thread was interrupted, not left spinning.
    wait_for(lambda: "duralog query spin" not in [t.name for t in threading.enumerate()])
    assert handle.query("total", timeout=PATIENCE) == 4
    with pytest.raises(duralog.ConfigurationError, match="timeout must be a number of seconds"):
        handle.query("total", timeout=-1)


@duralog.workflow(name="eq_heavy")
async def heavy() -> int:
    duralog.on_query("slow_progress", slow_progress)
    total = 0
    for i in range(100_000):  # replayed in an asyncio task, traced once a query times out
        total += i
    await duralog.wait_signal("finish")
    return total


def test_a_query_timed_out_during_the_replay_stops_in_its_handler(
    engine: duralog.Engine,
) -> None:
    handle = engine.start(heavy, id="c-heavy")  # a query replays its log: no need to wait
    for _ in range(3):
        with pytest.raises(duralog.QueryTimeout):
            handle.query("slow_progress", timeout=0.001)
        wait_for(
            lambda: "duralog query slow_progress" not in [t.name for t in threading.enumerate()]
        )


def test_a_timed_out_query_stops_only_in_the_workflows_own_code(engine: duralog.Engine) -> None:
    handle = engine.start(counter, [4], id="c-chatty")
    wait_for(lambda: completed(handle, 1))
    for i in range(40):
        # (0: it times out while the workflow's code is replayed, in an asyncio task)
        with pytest.raises(duralog.QueryTimeout):
            handle.query("slow_progress", timeout=0.01 * (i % 2))
        wait_for(
            lambda: "duralog query slow_progress" not in [t.name for t in threading.enumerate()]
        )
        # Had it been stopped inside logging's handle(), the lock would be held for good.
        assert chatty_handler.lock is not None and chatty_handler.lock.acquire(timeout=PATIENCE)
        chatty_handler.lock.release()
    assert handle.query("total", timeout=float("inf")) == 4
