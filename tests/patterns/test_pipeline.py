"""``duralog.Pipeline``: stages as durable steps, one output feeding the next, as a workflow."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

import duralog
from duralog.replay.checker import check
from duralog.replay.history import History, dump_history, load_history
from duralog.testing import step_names


@dataclasses.dataclass
class Batch:
    day: str
    rows: list[int]


@duralog.step
def pl_extract(day: str) -> Batch:
    return Batch(day, [3, 1, 2])


@duralog.step
def pl_transform(batch: Batch) -> Batch:
    assert isinstance(batch, Batch)  # typed by the annotation, live and on replay
    return Batch(batch.day, sorted(batch.rows))


@duralog.step
async def pl_load(batch: Batch) -> str:
    return f"{batch.day}: {batch.rows}"


@duralog.step
def pl_source() -> list[int]:
    return [5, 6]


@duralog.step
def pl_total(rows: list[int]) -> int:
    return sum(rows)


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def pl_broken(batch: Batch) -> Batch:
    raise ValueError(f"bad batch {batch.day}")


etl = duralog.Pipeline("pl-etl").then(pl_extract).then(pl_transform).then(pl_load)
no_input = duralog.Pipeline("pl-no-input").then(pl_source).then(pl_total)
failing = duralog.Pipeline("pl-failing").then(pl_extract).then(pl_broken).then(pl_load)


@duralog.workflow(name="pl-parent")
async def parent(days: list[str]) -> list[str]:
    return [await etl(day) for day in days]  # a pipeline is a workflow: here, a child


def test_each_stage_is_a_step_and_feeds_the_next(engine: duralog.Engine) -> None:
    handle = engine.start(etl, "2026-11-25")
    assert handle.result(timeout=10) == "2026-11-25: [1, 2, 3]"
    assert step_names(handle) == ["pl_extract", "pl_transform", "pl_load"]
    assert handle.record().name == "pl-etl"


def test_a_pipeline_is_registered_under_its_name(engine: duralog.Engine) -> None:
    assert "pl-etl" in engine.registry
    assert engine.registry.get("pl-etl") is etl
    assert engine.start("pl-etl", "2026-01-02").result(timeout=10) == "2026-01-02: [1, 2, 3]"


def test_a_first_stage_without_parameters_makes_a_pipeline_without_input(
    engine: duralog.Engine,
) -> None:
    assert engine.run(no_input, timeout=10) == 11
    handle = engine.start(no_input, [1])
    with pytest.raises(duralog.WorkflowFailed, match="takes no input"):
        handle.result(timeout=10)


def test_a_failing_stage_fails_the_workflow_and_stops_the_chain(engine: duralog.Engine) -> None:
    handle = engine.start(failing, "d1")
    with pytest.raises(duralog.WorkflowFailed, match="bad batch d1") as caught:
        handle.result(timeout=10)
    assert caught.value.cause.type == "duralog.errors.StepFailed"
    assert step_names(handle) == ["pl_extract", "pl_broken"]


def test_a_pipeline_runs_as_a_child_workflow(engine: duralog.Engine) -> None:
    handle = engine.start(parent, ["a", "b"])
    assert handle.result(timeout=10) == ["a: [1, 2, 3]", "b: [1, 2, 3]"]
    assert sorted(r.name for r in engine.list(name="pl-etl")) == ["pl-etl", "pl-etl"]


def test_the_history_replays(engine: duralog.Engine) -> None:
    handle = engine.start(etl, "2026-11-26")
    handle.result(timeout=10)
    history = load_history(dump_history(History(handle.id, "pl-etl", handle.history())))
    report = check(history, [etl])
    assert report.ok and report.finished, report.error


def test_outside_a_workflow_the_stages_simply_run() -> None:
    async def main() -> str:
        return await etl("x")

    assert asyncio.run(main()) == "x: [1, 2, 3]"


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        (lambda rows: rows, "is not a durable step; decorate it with @duralog.step"),
        (42, "pass a @duralog.step"),
        (duralog.step(lambda a, b: a), "must take one argument"),
    ],
)
def test_a_bad_stage_is_refused_when_added(stage: Any, message: str) -> None:
    with pytest.raises(duralog.ConfigurationError, match=message):
        duralog.Pipeline("pl-bad").then(pl_extract).then(stage)


def test_an_empty_pipeline_fails_with_advice(engine: duralog.Engine) -> None:
    empty = duralog.Pipeline("pl-empty")
    with pytest.raises(duralog.WorkflowFailed, match=r"no stages; add them with .then\(step\)"):
        engine.run(empty, None, timeout=10)


def test_a_name_is_required() -> None:
    with pytest.raises(duralog.ConfigurationError, match="needs a name"):
        duralog.Pipeline("")


def test_two_definitions_under_one_name_are_refused() -> None:
    with pytest.raises(duralog.RegistrationError, match="two workflows are named 'pl-etl'"):
        _elsewhere()


def _elsewhere() -> None:
    # Another module defining "pl-etl": the registry names both places.
    namespace: dict[str, Any] = {"__name__": "another_module", "duralog": duralog}
    exec("duralog.Pipeline('pl-etl')", namespace)


typed = duralog.Pipeline("pl-typed").then(pl_extract).then(pl_transform)


@duralog.workflow(name="pl-typed-parent")
async def typed_parent(day: str) -> int:
    batch = await typed(day)  # a child workflow: its result decodes as the last stage's
    assert isinstance(batch, Batch)
    return len(batch.rows)


def test_a_pipelines_result_has_its_last_stages_type(engine: duralog.Engine) -> None:
    assert typed.result_type is Batch
    result = engine.start(typed, "2026-11-25").result(timeout=10)
    assert isinstance(result, Batch)
    assert engine.run(typed_parent, "2026-11-25", timeout=10) == len(result.rows)
