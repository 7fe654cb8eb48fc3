"""engine.start_many: many workflows in one commit."""

from __future__ import annotations

import pytest

import duralog
from duralog.errors import ConfigurationError, PayloadError


@duralog.step
def add(a: int, b: int) -> int:
    return a + b


@duralog.workflow(name="start_many_sum")
async def summed(a: int, b: int) -> int:
    return await add(a, b)


def test_every_call_runs_once_with_its_arguments(engine: duralog.Engine) -> None:
    handles = engine.start_many(summed, [(i, 10 * i) for i in range(50)])
    assert [h.result(timeout=10) for h in handles] == [11 * i for i in range(50)]
    assert len({h.id for h in handles}) == 50


def test_ids_are_idempotent_like_start(engine: duralog.Engine) -> None:
    first = engine.start_many(summed, [(1, 2), (3, 4)], ids=["a", "b"])
    again = engine.start_many(summed, [(1, 2), (3, 4), (7, 8)], ids=["a", "b", "c"])
    assert [h.id for h in again] == ["a", "b", "c"]
    assert [h.result(timeout=10) for h in again] == [3, 7, 15]
    assert [h.result(timeout=10) for h in first] == [3, 7]
    # Other input under an existing id: refused once the rest are started; a keeps its own.
    with pytest.raises(duralog.WorkflowIdInUse, match=r"'a'.*other input"):
        engine.start_many(summed, [(9, 9), (1, 1)], ids=["a", "d"])
    assert engine.get("d").result(timeout=10) == 2
    assert engine.get("a").result(timeout=10) == 3


def test_on_a_queue(db: str) -> None:
    queue = duralog.Queue("test-start-many", concurrency=2)
    with duralog.Engine(db, durability="normal", poll_interval=0.05, queues=[queue]) as engine:
        handles = engine.start_many("start_many_sum", [[i, i] for i in range(6)], queue=queue)
        assert [h.result(timeout=10) for h in handles] == [2 * i for i in range(6)]
        assert {h.record().queue for h in handles} == {"test-start-many"}


def test_bad_batches_write_nothing(engine: duralog.Engine) -> None:
    with pytest.raises(ConfigurationError, match="got 2 calls but 1 ids"):
        engine.start_many(summed, [(1, 2), (3, 4)], ids=["x"])
    with pytest.raises(PayloadError, match="cannot record the input"):
        engine.start_many(summed, [(1, 2), (object(), 4)])
    with pytest.raises(ConfigurationError, match="workflow id"):
        engine.start_many(summed, [(1, 2), (3, 4)], ids=["ok", ""])
    assert engine.list() == []
    assert engine.start_many(summed, []) == []
