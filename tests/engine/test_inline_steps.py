"""@duralog.step(inline=True): a sync step run on the worker's loop, recorded like any step."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import duralog
from duralog.errors import ConfigurationError
from duralog.testing import history_kinds

ran_on: dict[str, str] = {}
attempts: dict[str, int] = {}


@duralog.step(name="inline.double", inline=True)
def inline_double(x: int) -> int:
    ran_on["inline"] = threading.current_thread().name
    return 2 * x


@duralog.step(name="inline.threaded_double")
def threaded_double(x: int) -> int:
    ran_on["thread"] = threading.current_thread().name
    return 2 * x


@duralog.step(
    name="inline.flaky",
    inline=True,
    retry=duralog.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False),
)
def inline_flaky(key: str) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] < 3:
        raise ConnectionError(f"attempt {attempts[key]} of {key} failed")
    return f"{key} after {attempts[key]} attempts"


@duralog.step(
    name="inline.broken",
    inline=True,
    retry=duralog.RetryPolicy(max_attempts=2, initial_interval=0.01, jitter=False),
)
def inline_broken() -> None:
    raise ValueError("always broken")


@duralog.step(name="inline.info", inline=True)
def inline_info() -> str:
    info = duralog.step_info()
    return f"{info.step}#{info.attempt}"


@duralog.workflow(name="inline.both")
async def both(x: int) -> list[int]:
    return [await inline_double(x), await threaded_double(x)]


@duralog.workflow(name="inline.retries")
async def retries(key: str) -> str:
    return await inline_flaky(key)


@duralog.workflow(name="inline.fails")
async def fails() -> None:
    await inline_broken()


@duralog.workflow(name="inline.info")
async def info_workflow() -> str:
    return await inline_info()


def test_an_inline_step_runs_on_the_worker_loop_and_is_recorded_like_a_threaded_one(
    engine: duralog.Engine,
) -> None:
    handle = engine.start(both, 21)
    assert handle.result(timeout=10) == [42, 42]
    assert ran_on["inline"] == "duralog-worker"
    assert ran_on["thread"].startswith("duralog-step-")
    # The same events as a thread step: the log cannot tell them apart.
    assert history_kinds(handle) == [
        "WorkflowStarted",
        *["StepScheduled", "StepStarted", "StepCompleted"] * 2,
        "WorkflowCompleted",
    ]


def test_an_inline_step_is_retried_by_its_policy(engine: duralog.Engine) -> None:
    handle = engine.start(retries, "k1")
    assert handle.result(timeout=10) == "k1 after 3 attempts"
    assert history_kinds(handle).count("StepRetrying") == 2


def test_an_inline_step_that_keeps_failing_fails_the_workflow(engine: duralog.Engine) -> None:
    handle = engine.start(fails)
    with pytest.raises(duralog.WorkflowFailed, match="always broken"):
        handle.result(timeout=10)
    assert history_kinds(handle)[-2:] == ["StepFailed", "WorkflowFailed"]


def test_step_info_inside_an_inline_step(engine: duralog.Engine) -> None:
    assert engine.start(info_workflow).result(timeout=10) == "inline.info#1"


def test_a_workflow_of_inline_steps_resumes_from_its_log(tmp_path: Path) -> None:
    db = str(tmp_path / "inline.db")
    with duralog.Engine(db, durability="normal", worker=False) as client:
        handle = client.start(both, 5, id="resume-me")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        assert engine.get("resume-me").result(timeout=10) == [10, 10]
        assert handle.id == "resume-me"


def test_inline_refuses_what_it_cannot_honour() -> None:
    async def already_async() -> None: ...

    def slow() -> None: ...

    with pytest.raises(ConfigurationError, match="already runs on the worker's event loop"):
        duralog.step(inline=True)(already_async)
    with pytest.raises(ConfigurationError, match="cannot have a timeout"):
        duralog.step(inline=True, timeout=5)(slow)
