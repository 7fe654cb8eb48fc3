"""``duralog read-stream``: what a workflow wrote to a stream, now or live."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from support import PATIENCE, read_line

import duralog

Invoke = Callable[..., Result]


@duralog.workflow
async def cli_streamer(n: int) -> int:
    for i in range(n):
        duralog.write_stream("out", {"i": i})
    duralog.close_stream("out")
    duralog.write_stream("open", "first")
    await duralog.wait_signal("go")
    duralog.write_stream("open", "second")
    return n


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "streams.db")
    with duralog.Engine(path, durability="normal", poll_interval=0.05) as engine:
        handle = engine.start(cli_streamer, 3, id="s")
        next(handle.read_stream("open", timeout=PATIENCE))  # it waits for "go" now
    return path


def test_the_values_so_far_one_json_value_a_line(cli: Invoke, db: str) -> None:
    done = cli("--db", db, "read-stream", "s", "out")
    assert done.exit_code == 0, done.output
    assert done.stdout == '{"i": 0}\n{"i": 1}\n{"i": 2}\n'
    as_json = cli("--db", db, "read-stream", "s", "out", "-o", "json", "--start", "1")
    assert json.loads(as_json.stdout) == [{"i": 1}, {"i": 2}]
    lines = cli("--db", db, "read-stream", "s", "out", "-o", "jsonl").stdout.splitlines()
    assert json.loads(lines[2]) == {
        "workflow_id": "s",
        "key": "out",
        "offset": 2,
        "value": {"i": 2},
    }
    # An open stream of a waiting workflow: what is there, without waiting.
    assert cli("--db", db, "read-stream", "s", "open").stdout == '"first"\n'
    assert cli("--db", db, "verify", "s").exit_code == 0


def test_follow_waits_for_the_next_value_and_times_out_with_exit_2(cli: Invoke, db: str) -> None:
    result = cli("--db", db, "read-stream", "s", "open", "-f", "--timeout", "0.2")
    assert result.exit_code == 2 and result.stdout == '"first"\n'
    (line,) = result.stderr.splitlines()
    assert "no new value within 0.2s (1 so far)" in line and "--start 1" in line


def test_follow_from_another_process_until_the_run_ends(db: str) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "duralog", "--db", db, "read-stream", "s", "open", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert read_line(follower.stdout) == '"first"'
        with duralog.Engine(db, poll_interval=0.05) as engine:
            engine.get("s").signal("go")
            assert engine.get("s").result(timeout=PATIENCE) == 3
        out, err = follower.communicate(timeout=PATIENCE)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert out == '"second"\n'


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["nobody", "out"], 1, "no workflow with id 'nobody'"),
        (["s", ""], 2, "non-empty"),
        (["s", "a\tb"], 2, "control character"),
        (["s", "out", "--start", "-1"], 2, "--start"),
    ],
)
def test_bad_input_is_one_line(cli: Invoke, db: str, args: list[str], code: int, said: str) -> None:
    result = cli("--db", db, "read-stream", *args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and said in result.output
