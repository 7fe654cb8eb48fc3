"""Streams (write_stream / close_stream / handle.read_stream), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextvars
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import PATIENCE, wait_for

import duralog
from duralog.replay.checker import replay_history
from duralog.store import events as ev

gate = threading.Event()
attempts: list[int] = []


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    gate.clear()
    attempts.clear()
    yield
    gate.set()


def engine_on(address: str, **options: Any) -> duralog.Engine:
    return duralog.Engine(address, durability="normal", poll_interval=0.05, **options)


@duralog.step
def tokens(prompt: str) -> str:
    for word in prompt.split():
        duralog.write_stream("tokens", word)
    return prompt.upper()


@duralog.step
async def async_tokens(prompt: str) -> int:
    for word in prompt.split():
        duralog.write_stream("tokens", word)
        await asyncio.sleep(0)
    return len(prompt)


@duralog.workflow
async def agent(prompt: str) -> str:
    duralog.write_stream("tokens", "<start>")
    answer = await tokens(prompt)
    await async_tokens(prompt)
    duralog.write_stream("tokens", "<end>")
    duralog.close_stream("tokens")
    duralog.write_stream("status", {"done": True})
    return answer


def test_workflow_and_step_values_come_in_order_then_the_end(address: str) -> None:
    with engine_on(address) as engine:
        handle = engine.start(agent, "hello streaming world", id="s-1")
        assert handle.result(timeout=PATIENCE) == "HELLO STREAMING WORLD"
        words = ["hello", "streaming", "world"]
        assert list(handle.read_stream("tokens")) == ["<start>", *words, *words, "<end>"]
        # A stream left open ends with the run.
        assert list(handle.read_stream("status", timeout=PATIENCE)) == [{"done": True}]
        assert list(handle.read_stream("tokens", start=5)) == [*words[1:], "<end>"]
        history = handle.history()
    kinds = [e.kind for e in history]
    assert kinds.count("StreamWritten") == 3 and kinds.count("StreamClosed") == 1
    assert kinds.count("StepStreamed") == 6
    # Each step's values are in the log before its completion.
    for entry in history:
        if isinstance(entry.event, ev.StepStreamed):
            done = [
                e.seq
                for e in history
                if getattr(e.event, "step_seq", None) == entry.event.step_seq
                and e.kind == "StepCompleted"
            ]
            assert done and entry.seq < done[0]
    # Replay matches the workflow's writes and makes none again.
    instance, _ = replay_history(agent, history)
    assert instance.finished


@duralog.workflow
async def chatty(n: int) -> int:
    for i in range(n):
        duralog.write_stream("out", i)
        await duralog.wait_signal("more")
    duralog.close_stream("out")
    await duralog.wait_signal("finish")
    return n


def test_a_reader_gets_values_live_and_stops_at_the_close(address: str) -> None:
    with engine_on(address) as engine:
        handle = engine.start(chatty, 3, id="live")
        got: list[Any] = []
        reader = threading.Thread(
            target=lambda: got.extend(handle.read_stream("out", timeout=PATIENCE))
        )
        reader.start()
        for i in range(1, 4):
            wait_for(lambda n=i: len(got) == n, what=f"value {i - 1} read live")  # type: ignore[misc]
            handle.signal("more")
        reader.join(PATIENCE)
        assert not reader.is_alive() and got == [0, 1, 2]
        # The reader ended at the close, while the workflow still runs.
        assert handle.status() is duralog.WorkflowStatus.RUNNING
        handle.signal("finish")
        assert handle.result(timeout=PATIENCE) == 3


def test_no_new_value_in_time_is_a_stream_timeout(address: str) -> None:
    with engine_on(address) as engine:
        handle = engine.start(chatty, 2, id="slow")
        values = handle.read_stream("out", timeout=0.3)
        assert next(values) == 0
        with pytest.raises(duralog.StreamTimeout) as caught:
            next(values)
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.received == 1 and caught.value.key == "out"
        assert "start=1" in str(caught.value) and "'slow'" in str(caught.value)
        rest = handle.read_stream("out", timeout=PATIENCE, start=caught.value.received)
        handle.signal("more")
        assert next(rest) == 1
        handle.signal("more")
        assert list(rest) == []
        handle.signal("finish")
        handle.result(timeout=PATIENCE)


@duralog.step(retry=duralog.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False))
def flaky_tokens(words: list[str]) -> int:
    attempt = duralog.step_info().attempt
    attempts.append(attempt)
    for word in words[:attempt]:
        duralog.write_stream("tokens", f"{attempt}:{word}")
    if attempt < 2:
        raise ConnectionError("the model went away")
    return attempt


@duralog.workflow
async def retried(words: list[str]) -> int:
    return await flaky_tokens(words)


def test_a_failed_attempt_keeps_its_values_and_the_retry_writes_again(address: str) -> None:
    with engine_on(address) as engine:
        handle = engine.start(retried, ["a", "b", "c"], id="retried")
        assert handle.result(timeout=PATIENCE) == 2
        assert list(handle.read_stream("tokens")) == ["1:a", "2:a", "2:b"]
        streamed = [e.event for e in handle.history() if isinstance(e.event, ev.StepStreamed)]
    assert [(s.attempt, s.step_seq) for s in streamed] == [(1, 2), (2, 2), (2, 2)]


@duralog.workflow
async def ends(how: str) -> None:
    duralog.write_stream("out", how)
    if how == "fail":
        raise ValueError("no good")
    if how == "continue":
        duralog.continue_as_new("done")
    if how in ("wait", "done"):
        duralog.write_stream("out", "waiting")
        await duralog.wait_signal("never")


@pytest.mark.parametrize("how", ["fail", "cancel", "terminate", "continue"])
def test_every_ending_of_the_run_ends_its_streams(address: str, how: str) -> None:
    with engine_on(address) as engine:
        handle = engine.start(ends, "wait" if how in ("cancel", "terminate") else how, id="e")
        if how == "cancel":
            wait_for(lambda: any(e.kind == "StreamWritten" for e in handle.history()))
            handle.cancel("enough")
        elif how == "terminate":
            wait_for(lambda: any(e.kind == "StreamWritten" for e in handle.history()))
            handle.terminate("enough")
        elif how == "continue":  # the next run has its own streams
            wait_for(lambda: handle.history()[0].event.run == 2)  # type: ignore[union-attr]
            values = handle.read_stream("out", timeout=PATIENCE)
            assert next(values) == "done"
            assert next(values) == "waiting"
            handle.cancel()
            assert list(values) == []
            assert list(engine.get("e~run1").read_stream("out")) == ["continue"]
            return
        expected = ["fail"] if how == "fail" else ["wait", "waiting"]
        assert list(handle.read_stream("out", timeout=PATIENCE)) == expected


@duralog.workflow
async def hostile(key: str) -> str:
    try:
        duralog.write_stream(key, 1)
    except duralog.ConfigurationError as exc:
        return str(exc)
    return "accepted"


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("", "non-empty"),
        ("k" * 300, "over the limit of 256"),
        ("a\x00b", "character 2"),
        ("line\n", "control character"),
    ],
)
def test_hostile_keys_get_a_clear_error(tmp_path: Path, key: str, said: str) -> None:
    with engine_on(str(tmp_path / "log.db")) as engine:
        handle = engine.start(hostile, key, id="h")
        message = handle.result(timeout=PATIENCE)
        assert said in message and "workflow 'h'" in message
        with pytest.raises(duralog.ConfigurationError, match=said):
            handle.read_stream(key)
        assert not any("Stream" in e.kind for e in handle.history())


@duralog.workflow
async def closer() -> None:
    duralog.close_stream("out")
    duralog.close_stream("out")  # again: nothing
    duralog.write_stream("out", "late")


def test_writing_to_a_closed_stream_and_writing_outside_are_refused(tmp_path: Path) -> None:
    with engine_on(str(tmp_path / "log.db")) as engine:
        handle = engine.start(closer, id="c")
        with pytest.raises(duralog.WorkflowFailed, match="stream 'out' of workflow 'c' is closed"):
            handle.result(timeout=PATIENCE)
        assert [e.kind for e in handle.history()].count("StreamClosed") == 1
        with pytest.raises(duralog.WorkflowNotFound):
            engine.get("nobody").read_stream("out")
        with pytest.raises(duralog.ConfigurationError, match="timeout"):
            handle.read_stream("out", timeout=-1)
    with pytest.raises(duralog.DuralogError, match="inside a workflow or a step"):
        duralog.write_stream("out", 1)
    with pytest.raises(duralog.DuralogError, match="inside a workflow or a step"):
        duralog.close_stream("out")


SECRET = "tok-7c1e-secret"


def test_encrypted_values_are_never_stored_in_clear(tmp_path: Path) -> None:
    db = str(tmp_path / "vault.db")
    codec = duralog.AesGcmCodec({"k1": os.urandom(32)}, "k1")
    with engine_on(db, payload_codec=codec) as engine:
        handle = engine.start(agent, f"say {SECRET}", id="v")
        handle.result(timeout=PATIENCE)
        assert SECRET in list(handle.read_stream("tokens"))
    with sqlite3.connect(db) as conn:
        for (body,) in conn.execute("SELECT body FROM events"):
            assert SECRET not in str(body)
    with duralog.Engine(db, worker=False) as keyless, pytest.raises(duralog.PayloadError):
        list(keyless.get("v").read_stream("tokens"))  # no key: no value


late: list[BaseException] = []
over = threading.Event()  # set by the test once the step's completion is in the log


@duralog.step
def slow_tokens() -> str:
    duralog.write_stream("tokens", "first")
    context = contextvars.copy_context()  # a thread of the step's own, writing later

    def write_later() -> None:
        assert over.wait(PATIENCE)
        try:
            duralog.write_stream("tokens", "too late")
        except duralog.DuralogError as exc:
            late.append(exc)

    threading.Thread(target=context.run, args=(write_later,)).start()
    assert gate.wait(PATIENCE), "the test never opened the gate"
    return "done"


@duralog.workflow
async def slow(_: int) -> str:
    text = await slow_tokens()
    duralog.on_query("write", lambda: duralog.write_stream("tokens", "from a query"))
    await duralog.wait_signal("end")
    return text


def test_a_step_value_reaches_readers_while_the_step_runs(address: str) -> None:
    late.clear()
    over.clear()
    with engine_on(address) as engine:
        handle = engine.start(slow, 0, id="slow-step")
        values = handle.read_stream("tokens", timeout=PATIENCE)
        assert next(values) == "first"  # the step still waits for the gate
        assert handle.state().steps[2].status == "running"
        gate.set()
        wait_for(lambda: any(e.kind == "StepCompleted" for e in handle.history()))
        over.set()
        wait_for(lambda: late, what="the write after the attempt ended")
        assert "attempt 1 is over" in str(late[0])
        with pytest.raises(duralog.QueryFailed, match="tried to write to stream"):
            handle.query("write")
        handle.signal("end")
        assert handle.result(timeout=PATIENCE) == "done"
        assert list(values) == []


@duralog.step
def closing_step() -> str:
    duralog.write_stream("rows", "row 1")
    duralog.close_stream("rows")
    duralog.close_stream("rows")  # again: nothing
    try:
        duralog.write_stream("rows", "row 2")
    except duralog.ConfigurationError as exc:
        return str(exc)
    return "accepted"


@duralog.workflow
async def closed_by_step() -> str:
    said = await closing_step()
    await duralog.wait_signal("end")
    return said


def test_a_step_closes_a_stream_for_its_readers(address: str) -> None:
    with engine_on(address) as engine:
        handle = engine.start(closed_by_step, id="step-closed")
        # The reader ends at the step's close, while the workflow still waits.
        assert list(handle.read_stream("rows", timeout=PATIENCE)) == ["row 1"]
        handle.signal("end")
        said = handle.result(timeout=PATIENCE)
    assert "stream 'rows' was closed by step" in said and "'step-closed'" in said


def test_an_async_reader_gets_the_same_values_live(address: str) -> None:
    async def read(handle: duralog.WorkflowHandle[Any]) -> list[Any]:
        got = []
        async for value in handle.read_stream_async("out", timeout=PATIENCE):
            got.append(value)
            handle.signal("more")  # the next value comes only once this one was read
        return got

    with engine_on(address) as engine:
        handle = engine.start(chatty, 3, id="async-reader")
        assert asyncio.run(read(handle)) == [0, 1, 2]
        late = handle.read_stream_async("out", start=1)
        assert asyncio.run(anext(late)) == 1
        with pytest.raises(duralog.StreamTimeout):
            asyncio.run(anext(handle.read_stream_async("never", timeout=0.2)))
        handle.signal("finish")
        handle.result(timeout=PATIENCE)
