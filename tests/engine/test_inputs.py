"""Bad input gets a clear error and loses nothing: arguments, timers, retry policies,
ids, statuses, foreign files. (Regressions found in review: each failed before its fix.)"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

import duralog


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
