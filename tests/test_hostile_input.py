"""Hostile input at every door: ids, signal payloads and names, CLI arguments.

Each is accepted and round-trips exactly, or is refused with a DuralogError (the
CLI: one line, exit 1 or 2). Nothing crashes a worker or corrupts the log.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import duralog
from duralog.cli import main

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@duralog.workflow(name="hostile_echo")
async def echo(value: Any) -> Any:
    return [value, await duralog.wait_signal("more")]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duralog.Engine]:
    db = str(tmp_path_factory.mktemp("hostile") / "log.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as e:
        yield e


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@SETTINGS
@given(workflow_id=st.text(st.characters(exclude_categories=()), max_size=300))
def test_workflow_ids(engine: duralog.Engine, workflow_id: str) -> None:
    try:
        handle = engine.start(echo, 1, id=workflow_id)
    except duralog.DuralogError:
        return  # refused with a clear error
    assert engine.get(workflow_id).id == workflow_id
    if handle.status().is_terminal:
        return  # hypothesis ran this id before on the same engine: start() returned that run
    handle.signal("more", 2)
    assert handle.result(timeout=10) == [1, 2]


@SETTINGS
@given(
    payload=json_values | st.builds(object) | st.text(st.characters(exclude_categories=())),
    name=st.text(st.characters(exclude_categories=()), max_size=50),
)
def test_signal_payloads_and_names(engine: duralog.Engine, payload: Any, name: str) -> None:
    handle = engine.start(echo, None)
    try:
        handle.signal(name, payload)
    except duralog.DuralogError:
        handle.signal("more", "fallback")
        assert handle.result(timeout=10) == [None, "fallback"]
        return
    if name != "more":
        handle.signal("more", payload)
    assert handle.result(timeout=10) == [None, payload]


@SETTINGS
@given(raw=st.text(max_size=200))
def test_cli_inputs_never_end_in_a_traceback(engine: duralog.Engine, raw: str) -> None:
    db = engine.store.path  # type: ignore[attr-defined]
    runner = CliRunner()
    for args in (
        ["--db", db, "start", "hostile_echo", "--input", raw, "--id", "cli-x"],
        ["--db", db, "signal", "cli-x", "more", "--payload", raw],
        ["--db", db, "show", raw],
        ["--db", db, "inspect", raw, "--at", "1"],
        ["--db", db, "list", "--name", raw],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code in (0, 1, 2), (args, result.output)
        if result.exception is not None:
            assert isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in result.output


@pytest.mark.parametrize("text", ["\ud800", "a\udcffb", "\x00", "'; DROP TABLE events; --"])
def test_lone_surrogates_nul_and_sql_in_ids_and_names(engine: duralog.Engine, text: str) -> None:
    try:
        handle = engine.start(echo, 1, id=text)
    except duralog.ConfigurationError:
        handle = engine.start(echo, 1)
    else:
        assert engine.get(text).id == text
    with contextlib.suppress(duralog.ConfigurationError):  # refused, or delivered
        handle.signal(text, 1)
    handle.signal("more", 2)
    assert handle.result(timeout=10) == [1, 2]
    with pytest.raises(duralog.DuralogError):
        engine.get("\ud800")
    result = CliRunner().invoke(main, ["--db", engine.store.path, "show", "\ud800"])  # type: ignore[attr-defined]
    assert result.exit_code in (1, 2) and "Traceback" not in result.output


def test_a_good_cli_input_still_works(engine: duralog.Engine) -> None:
    db = engine.store.path  # type: ignore[attr-defined]
    result = CliRunner().invoke(main, ["--db", db, "list", "--json"])
    assert result.exit_code == 0 and isinstance(json.loads(result.stdout), list)
