"""``duralog update``: the answer, a rejection, and the exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import Result
from support import PATIENCE, load_app, wait_for

import duralog

HERE = Path(__file__).parent
Invoke = Callable[..., Result]


@pytest.fixture(scope="module")
def app() -> ModuleType:
    return load_app(HERE / "app_queries.py")


@pytest.fixture
def served(tmp_path: Path, app: ModuleType) -> Iterator[str]:
    """A log with ``u-1``, a ``qa_counter`` that added 1 and waits, and a worker serving it."""
    db = str(tmp_path / "updates.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        handle = engine.start(app.counter, [1], id="u-1")
        wait_for(lambda: handle.query("total") == 1)
        yield db


def one_error(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


def test_update_prints_the_answer(cli: Invoke, served: str) -> None:
    base = ("--db", served, "--app", "app_queries", "update", "u-1", "more")
    done = cli(*base, "--payload", "41", "--timeout", str(PATIENCE))
    assert done.exit_code == 0, done.output
    assert done.stdout == "42\n"
    as_json = cli(*base, "--payload", "8", "--timeout", str(PATIENCE), "-o", "json")
    assert json.loads(as_json.stdout) == {"workflow_id": "u-1", "update": "more", "result": 50}


def test_a_rejected_update_exits_1(cli: Invoke, served: str) -> None:
    base = ("--db", served, "--app", "app_queries", "update", "u-1", "more")
    line = one_error(cli(*base, "--payload", "-3"), 1)
    assert "was rejected: its validator rejected it: ValueError: -3 is not positive" in line
    as_json = cli(*base, "--payload", "0", "--json")
    assert as_json.exit_code == 1
    found = json.loads(as_json.stdout)
    assert found["rejected"] is True and "0 is not positive" in found["error"]
    unknown = one_error(cli("--db", served, "--app", "app_queries", "update", "u-1", "less"), 1)
    assert "has no update handler 'less' (registered: more)" in unknown


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--payload", "{"), "--payload is not valid JSON"),
        (("--payload", "1", "--timeout", "-1"), "--timeout must be a number of seconds"),
    ],
)
def test_bad_input_exits_2(cli: Invoke, served: str, args: tuple[str, ...], said: str) -> None:
    base = ("--db", served, "--app", "app_queries", "update", "u-1", "more")
    assert said in one_error(cli(*base, *args), 2)


def test_no_code_or_no_answer_in_time_exit_2(cli: Invoke, app: ModuleType, tmp_path: Path) -> None:
    db = str(tmp_path / "idle.db")
    with duralog.Engine(db, worker=False) as engine:  # no worker: it stays PENDING
        engine.start(app.counter, [1], id="idle")
    line = one_error(cli("--db", db, "update", "idle", "more", "--payload", "1"), 2)
    assert "pass --app MODULE" in line
    base = ("--db", db, "--app", "app_queries", "update", "idle", "more", "--payload", "1")
    line = one_error(cli(*base, "--timeout", "0.1"), 2)
    assert "no answer within 0.1s (status PENDING); it was sent" in line


def test_an_update_id_makes_a_retry_print_the_first_answer(
    cli: Invoke, served: str, app: ModuleType
) -> None:
    base = ("--db", served, "--app", "app_queries", "update", "u-1", "more", "--payload", "41")
    for _ in range(2):
        done = cli(*base, "--update-id", "more-1", "--timeout", str(PATIENCE))
        assert done.exit_code == 0, done.output
        assert done.stdout == "42\n"
    with duralog.Engine(served, worker=False) as engine:
        assert engine.get("u-1").query("total") == 42  # added once
    assert "update id must be a non-empty" in one_error(cli(*base, "--update-id", ""), 2)
