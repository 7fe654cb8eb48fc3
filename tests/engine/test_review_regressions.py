"""Regressions found in review: each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path

import pytest

import duralog
from duralog.store.events import StepScheduled, StepStarted


@duralog.step
def add_one(x: int) -> int:
    return x + 1


def boom() -> None:
    raise RuntimeError("nope")


@duralog.workflow
async def side_effect_fails() -> int:
    try:  # noqa: SIM105 - the point is user code catching the failure
        duralog.side_effect(boom)
    except RuntimeError:
        pass
    return await add_one(1)


def test_a_failed_decision_consumes_no_seq(engine: duralog.Engine) -> None:
    handle = engine.start(side_effect_fails)
    assert handle.result(timeout=10) == 2
    history = handle.history()
    scheduled = next(e.seq for e in history if isinstance(e.event, StepScheduled))
    started = next(e.event for e in history if isinstance(e.event, StepStarted))
    assert started.step_seq == scheduled


@duralog.step
async def count_to(n: int) -> int:
    for _ in range(n):
        await asyncio.sleep(0)
    return n


@duralog.workflow
async def fire_and_forget(n: int, m: int) -> int:
    asyncio.ensure_future(count_to(m))  # noqa: RUF006 - never awaited, on purpose
    return await count_to(n)


def test_nothing_is_appended_after_the_terminal_event(db: str) -> None:
    with duralog.Engine(db, durability="normal") as engine:
        handles = [engine.start(fire_and_forget, i % 4, (i * 7) % 5) for i in range(200)]
        for handle in handles:
            assert handle.result(timeout=30) == handles.index(handle) % 4
    with sqlite3.connect(db) as conn:
        late = conn.execute(
            "SELECT count(*) FROM events t JOIN events x ON x.workflow_id = t.workflow_id"
            " AND x.seq > t.seq WHERE t.kind IN"
            " ('WorkflowCompleted', 'WorkflowFailed', 'WorkflowCancelled')"
        ).fetchone()[0]
    assert late == 0


@duralog.workflow
async def times_ten(n: int) -> int:
    return n * 10


@duralog.workflow
async def parent_runs(run: int) -> int:
    result = await times_ten(run)
    if run < 2:
        duralog.continue_as_new(run + 1)
    return result


def test_children_of_successive_runs_do_not_collide(engine: duralog.Engine) -> None:
    assert engine.start(parent_runs, 1, id="pr").result(timeout=10) == 20
    assert {r.id for r in engine.list(name="times_ten")} == {"pr/2", "pr/2.2"}


@duralog.step
def label(*parts: int, sep: str) -> str:
    return sep.join(str(p) for p in parts)


@duralog.workflow
async def joins() -> str:
    return await label(1, 2, 3, sep="-")


def test_keyword_only_parameters_are_decoded_by_name(engine: duralog.Engine) -> None:
    assert engine.run(joins, timeout=10) == "1-2-3"


@duralog.workflow
async def sleeps_forever() -> None:
    await duralog.sleep(math.inf)


def test_an_infinite_timer_is_refused_and_the_log_stays_readable(engine: duralog.Engine) -> None:
    handle = engine.start(sleeps_forever)
    with pytest.raises(duralog.WorkflowFailed, match="finite delay"):
        handle.result(timeout=10)
    assert handle.history()[-1].kind == "WorkflowFailed"


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": "3"},
        {"max_interval": math.inf},
        {"initial_interval": "1"},
        {"non_retryable": ValueError},
        {"non_retryable": (42,)},
    ],
)
def test_bad_retry_policies_are_configuration_errors(bad: dict[str, object]) -> None:
    with pytest.raises(duralog.ConfigurationError):
        duralog.RetryPolicy(**bad)  # type: ignore[arg-type]


def test_input_that_contains_itself_is_a_payload_error(engine: duralog.Engine) -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(duralog.PayloadError, match="contains itself"):
        engine.start(joins, loop)


def test_user_errors_on_list_and_ids_are_clear(engine: duralog.Engine) -> None:
    with pytest.raises(duralog.ConfigurationError, match="unknown status 'DONE'"):
        engine.list(status="DONE")
    with pytest.raises(duralog.ConfigurationError, match="reserved"):
        engine.start(joins, id="x~run1")


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(duralog.StoreError, match="something else"):
        duralog.Engine(str(path))
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"customers"}
