"""Queries answered by replay alone: no engine, no store (``run_in_memory`` makes the logs).

A query replays the log and calls the handler the code registered; it must see the
state any prefix of the log leads to, refuse whatever would act, and record nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import run_in_memory

import duralog
from duralog.replay.checker import check, query_history
from duralog.replay.definitions import Workflow
from duralog.replay.history import History
from duralog.store import codec
from duralog.store.events import LogEntry


@duralog.step(name="rq_add")
def add(x: int) -> int:
    return x


async def counter_fn(values: list[int]) -> int:
    total = 0
    seen: list[int] = []
    duralog.on_query("total", lambda: total)

    def after(i: int) -> list[int]:
        return seen[i:]

    duralog.on_query("after", after)
    for v in values:
        total += await add(v)
        seen.append(v)
    await duralog.wait_signal("finish")
    return total


counter = Workflow(counter_fn, name="rq_counter")


def ask(log: list[LogEntry], query: str, *args: Any, workflow: Any = counter) -> Any:
    encoded, _ = codec.encode_call(args, {})
    return codec.decode(query_history(workflow, log, query, encoded, "rq-1"))


@given(st.lists(st.integers(-1000, 1000), max_size=8))
def test_every_prefix_of_the_log_answers_with_the_state_it_leads_to(values: list[int]) -> None:
    log = run_in_memory(counter, values, workflow_id="rq-1")
    before = msgspec.json.encode(log)
    for k in range(1, len(log) + 1):
        completed = sum(1 for e in log[:k] if e.kind == "StepCompleted")
        assert ask(log[:k], "total") == sum(values[:completed])
        assert ask(log[:k], "after", 0) == values[:completed]
    assert msgspec.json.encode(log) == before  # nothing was recorded
    assert check(History("rq-1", counter.name, log), [counter]).ok


async def misbehaving_fn() -> None:
    def calls_step_and_hides_it() -> str:
        with contextlib.suppress(Exception):
            add(1)  # refused: the query fails all the same
        return "the refusal was swallowed"

    async def sleeps() -> None:
        await duralog.sleep(1)

    async def waits_for_an_event() -> None:
        await asyncio.Event().wait()

    async def waits_for_a_signal() -> Any:
        return await duralog.wait_signal("go")

    async def computes(x: int) -> int:
        await asyncio.sleep(0)  # ready at once: allowed
        return x * 2

    def starts_a_child() -> None:
        counter([1])  # refused at the call, nothing to await

    handlers: dict[str, Any] = {
        "step": calls_step_and_hides_it,
        "sleep": sleeps,
        "event": waits_for_an_event,
        "signal": waits_for_a_signal,
        "publish": lambda: duralog.publish("k", 1),
        "now": lambda: duralog.now().isoformat(),
        "random": lambda: duralog.random(),
        "child": starts_a_child,
        "again": lambda: duralog.continue_as_new(),
        "register": lambda: duralog.on_query("other", lambda: 1),
        "raises": lambda: 1 / 0,
        "exits": lambda: exec("raise SystemExit(3)"),
        "object": lambda: object(),
        "computes": computes,
        "info": lambda: duralog.workflow_info().name,
    }
    for name, handler in handlers.items():
        duralog.on_query(name, handler)
    await duralog.wait_signal("finish")


misbehaving = Workflow(misbehaving_fn, name="rq_misbehaving")


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("step", "tried to call step 'rq_add'"),
        ("sleep", "tried to sleep or start a timer"),
        ("event", "tried to wait for something not ready"),
        ("signal", "tried to wait for signal 'go'"),
        ("publish", "tried to publish 'k'"),
        ("now", "tried to record a value (now)"),
        ("random", "tried to record a value (random)"),
        ("child", "tried to start child workflow 'rq_counter'"),
        ("again", "tried to continue the workflow as new"),
        ("register", "tried to register query 'other'"),
        ("raises", "its handler raised ZeroDivisionError: division by zero"),
        ("exits", "its handler raised SystemExit: 3"),
        ("object", "its result cannot be encoded"),
    ],
)
def test_a_query_that_acts_or_raises_fails_with_what_it_did(query: str, said: str) -> None:
    log = run_in_memory(misbehaving)
    with pytest.raises(duralog.QueryFailed) as caught:
        ask(log, query, workflow=misbehaving)
    message = str(caught.value)
    assert message.startswith(f"query {query!r} of workflow 'rq-1' failed: ")
    assert said in message
    assert caught.value.query == query and caught.value.workflow_id == "rq-1"
    if query == "raises":
        assert caught.value.cause is not None and "1 / 0" in caught.value.cause.traceback
    # The instance is not left half-way: the next query is answered.
    assert ask(log, "computes", 21, workflow=misbehaving) == 42


def test_handlers_that_only_read_are_answered() -> None:
    log = run_in_memory(misbehaving)
    assert ask(log, "info", workflow=misbehaving) == "rq_misbehaving"
    assert ask(log, "computes", 2, workflow=misbehaving) == 4


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("x",), "argument 1 (i): expected int, got str"),
        ((1, 2), "too many positional arguments"),
        ((), "missing a required argument: 'i'"),
    ],
)
def test_arguments_that_do_not_fit_the_handler(args: tuple[Any, ...], said: str) -> None:
    log = run_in_memory(counter, [1])
    with pytest.raises(duralog.QueryFailed, match="the arguments do not fit its handler") as caught:
        ask(log, "after", *args)
    assert said in str(caught.value)


def test_an_unknown_query_lists_the_registered_ones() -> None:
    log = run_in_memory(counter, [1])
    with pytest.raises(duralog.QueryFailed) as caught:
        ask(log, "totl")
    assert "registers no query 'totl' (registered: after, total)" in str(caught.value)


async def registers_late_fn() -> str:
    await add(1)
    duralog.on_query("late", lambda: "here")
    return "done"


def test_a_query_registered_after_a_wait_exists_only_once_the_code_gets_there() -> None:
    registers_late = Workflow(registers_late_fn, name="rq_late")
    log = run_in_memory(registers_late)
    assert ask(log, "late", workflow=registers_late) == "here"  # a finished run is queried
    with pytest.raises(duralog.QueryFailed, match=r"\(registered: none\)"):
        ask(log[:2], "late", workflow=registers_late)  # still waiting for its step


async def changed_fn(values: list[int]) -> int:
    duralog.on_query("total", lambda: 0)
    await duralog.sleep(5)  # the recorded history called rq_add here
    return 0


def test_a_diverged_history_is_reported_not_answered() -> None:
    log = run_in_memory(counter, [1, 2])
    changed = Workflow(changed_fn, name="rq_counter")
    with pytest.raises(duralog.NondeterminismError) as caught:
        ask(log, "total", workflow=changed)
    assert caught.value.recorded == "StepScheduled rq_add"


def test_on_query_outside_a_workflow_and_bad_registrations() -> None:
    with pytest.raises(duralog.DuralogError, match="only be called inside a workflow"):
        duralog.on_query("x", lambda: 1)

    async def bad_name_fn() -> None:
        duralog.on_query("", lambda: 1)

    bad_name = Workflow(bad_name_fn, name="rq_bad_name")
    log = run_in_memory(bad_name)
    assert log[-1].kind == "WorkflowFailed"
    assert "a query name must be a non-empty string" in str(log[-1].event.error)  # type: ignore[union-attr]
