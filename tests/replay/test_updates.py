"""Updates delivered to workflow code by replay alone: no engine, no store.

A log is written by hand: the run's start, then the signal that carries an update;
the instance's new decisions are what a worker would append: the published answer
(or the handler's steps first).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from support import T0

import duralog
from duralog.replay.definitions import Workflow
from duralog.replay.instance import WorkflowInstance
from duralog.replay.state import fold_all
from duralog.replay.updates import Answer, Request, answer_key, signal_name
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.events import LogEntry


@duralog.step(name="ru_note")
def note(text: str) -> str:
    return text


async def box_fn() -> list[Any]:
    got: list[Any] = []

    def keep(value: int) -> int:
        got.append(value)
        return len(got)

    def positive(value: int) -> None:
        if value <= 0:
            raise ValueError(f"{value} is not positive")

    async def noted(text: str) -> str:
        return await note(text)

    def sneaky(value: int) -> None:
        note("x")  # a validator that tries to act

    def star(*values: Any) -> int:
        return len(values)

    duralog.on_update("keep", keep, validator=positive)
    duralog.on_update("bare", lambda: "no payload")
    duralog.on_update("optional", lambda value=7: value)
    duralog.on_update("noted", noted)
    duralog.on_update("sneaky", keep, validator=sneaky)
    duralog.on_update("star", star)
    duralog.on_update("raises", lambda value: {}[value])
    duralog.on_update("unencodable", lambda: object())
    await duralog.wait_signal("done")
    return got


box = Workflow(box_fn, name="ru_box")


def deliver(update: str, payload: Any) -> list[tuple[int, ev.Event]]:
    """The decisions the code makes when update ``update`` with ``payload`` arrives."""
    request = codec.encode(Request(id="u-1", payload=payload))
    log = [
        ev.started_entry(T0, name=box.name, args=codec.encode([])),
        LogEntry(2, T0 + 1, ev.SignalReceived(name=signal_name(update), payload=request)),
    ]
    instance = WorkflowInstance(box, "box-1")
    return instance.feed(fold_all("box-1", log), 3)


def answer_of(decisions: list[tuple[int, ev.Event]]) -> Answer:
    event, *_ = [e for _, e in decisions if isinstance(e, ev.StatePublished)]
    assert isinstance(event, ev.StatePublished) and event.key == answer_key("u-1")
    return msgspec.json.decode(event.value, type=Answer)


@pytest.mark.parametrize(
    ("update", "payload", "result"),
    [
        ("keep", 5, 1),
        ("keep", "5", 1),  # converted as the annotation says, as step arguments are
        ("bare", None, "no payload"),
        ("optional", None, 7),
        ("optional", 3, 3),
        ("star", [1, 2], 1),
    ],
)
def test_the_handler_answers(update: str, payload: Any, result: Any) -> None:
    assert answer_of(deliver(update, payload)) == Answer(result=result)


@pytest.mark.parametrize(
    ("update", "payload", "said"),
    [
        ("keep", -1, "its validator rejected it: ValueError: -1 is not positive"),
        ("keep", "x", "the payload does not fit its handler: the payload (value): expected int"),
        ("keep", None, "the payload does not fit its handler"),
        ("bare", 1, "the payload does not fit its handler: too many positional arguments"),
        ("sneaky", 1, "its validator tried to call step 'ru_note'"),
        ("missing", 1, "has no update handler 'missing' (registered: bare, keep, noted"),
    ],
)
def test_a_rejection_on_delivery_is_the_answer(update: str, payload: Any, said: str) -> None:
    decisions = deliver(update, payload)
    answer = answer_of(decisions)
    assert answer.rejected is not None and said in answer.rejected
    assert len(decisions) == 1  # the handler never ran


def test_a_handler_that_raises_or_returns_garbage_answers_with_its_error() -> None:
    raised = answer_of(deliver("raises", "k"))
    assert raised.error is not None and raised.error.type == "KeyError"
    garbage = answer_of(deliver("unencodable", None))
    assert garbage.error is not None and "cannot encode" in garbage.error.message


def test_an_async_handler_runs_its_steps_first() -> None:
    decisions = deliver("noted", "hello")
    assert [type(e).__name__ for _, e in decisions] == ["StepScheduled"]


def test_a_signal_duralog_did_not_send_is_dropped() -> None:
    log = [
        ev.started_entry(T0, name=box.name, args=codec.encode([])),
        LogEntry(2, T0 + 1, ev.SignalReceived(name=signal_name("keep"), payload=ev.NULL)),
    ]
    instance = WorkflowInstance(box, "box-1")
    assert instance.feed(fold_all("box-1", log), 3) == []
    assert instance.unconsumed_signals() == []  # never queued for wait_signal either
