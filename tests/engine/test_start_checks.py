"""A start is checked when it is made: the call against the workflow's signature, and
an existing id against the input it was started with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import PATIENCE

import duralog
from duralog.errors import ConfigurationError, WorkflowIdInUse


@duralog.workflow
async def sc_pay(order_id: str, cents: int, *, note: str = "") -> int:
    return cents


@duralog.workflow
async def sc_poll(cursor: int) -> int:
    if cursor < 2:
        duralog.continue_as_new(cursor + 1)
    return cursor


@pytest.mark.parametrize(
    ("args", "kwargs", "says"),
    [
        (("o",), {}, "missing a required argument: 'cents'"),
        (("o", 5, 6), {}, "too many positional arguments"),
        (("o", "five"), {}, "argument 2 (cents): expected int, got str"),
        ((7, 5), {}, "argument 1 (order_id): expected str, got int"),
    ],
)
def test_a_call_the_signature_refuses_is_refused_at_once(
    engine: duralog.Engine, args: tuple[object, ...], kwargs: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        engine.start(sc_pay, *args, id="refused", **kwargs)
    assert says in str(refused.value)
    assert "sc_pay(order_id: str, cents: int, *, note: str = '')" in str(refused.value)
    assert engine.store.get_workflow("refused") is None  # nothing was recorded
    with pytest.raises(ConfigurationError, match="expected int"):
        engine.start_many(sc_pay, [("a", 1), ("b", "two")], ids=["b-1", "b-2"])
    assert engine.store.get_workflow("b-1") is None  # the batch is refused whole


def test_an_existing_id_with_the_same_input_is_its_handle(engine: duralog.Engine) -> None:
    first = engine.start(sc_pay, "o-1", 5, id="pay-1")
    assert first.result(timeout=PATIENCE) == 5
    assert engine.start(sc_pay, "o-1", 5, id="pay-1").result(timeout=PATIENCE) == 5


def test_an_existing_id_with_other_input_is_refused_and_keeps_its_input(
    engine: duralog.Engine,
) -> None:
    engine.start(sc_pay, "o-1", 5, id="pay-1").result(timeout=PATIENCE)
    with pytest.raises(WorkflowIdInUse, match="started with other input; its recorded input"):
        engine.start(sc_pay, "o-1", 6, id="pay-1")
    # In a batch the others are started all the same, then the clash is raised.
    with pytest.raises(WorkflowIdInUse, match="pay-1"):
        engine.start_many(sc_pay, [("o-1", 7), ("o-2", 2)], ids=["pay-1", "pay-2"])
    assert engine.get("pay-2").result(timeout=PATIENCE) == 2
    assert engine.get("pay-1").result(timeout=PATIENCE) == 5


def test_a_workflow_continued_as_new_is_not_compared_with_its_first_input(
    engine: duralog.Engine,
) -> None:
    assert engine.start(sc_poll, 0, id="poller").result(timeout=PATIENCE) == 2
    # A program that starts its poller at every boot gets the running one back.
    assert engine.start(sc_poll, 0, id="poller").result(timeout=PATIENCE) == 2


def test_the_cli_refuses_a_bad_input_before_it_opens_the_log(tmp_path: Path) -> None:
    app = tmp_path / "sc_app.py"
    app.write_text(
        "import duralog\n\n@duralog.workflow\nasync def pay(order_id: str, cents: int) -> int:\n"
        "    return cents\n"
    )
    db = tmp_path / "never.db"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "duralog",
            "--db",
            str(db),
            "--app",
            "sc_app",
            "start",
            "pay",
            "--input",
            '["o-1", "five"]',
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "error: cannot call 'pay' with these arguments: argument 2 (cents): expected int, "
        "got str; its signature is pay(order_id: str, cents: int) -> int"
    )
    assert not db.exists()
