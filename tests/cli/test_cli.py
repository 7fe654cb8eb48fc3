"""The ``duralog`` command line on real log files, through click's runner and a subprocess.

The shared log (``shop_db``) holds ``order-1`` (COMPLETED ``cli_order``), ``fail-1``
(FAILED ``cli_fail``) and ``sleep-1`` (RUNNING ``cli_sleeper``, on an hour-long timer).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result
from support import PATIENCE

import duralog
from duralog.cli import main
from duralog.replay.history import load_history
from duralog.store.sqlite import SQLiteStore

HERE = Path(__file__).parent
Invoke = Callable[..., Result]
Run = Callable[..., subprocess.CompletedProcess[str]]
APP = ("--app", "app_workflows")
TIMELINE_LINE = re.compile(r"^\s*(\d+)\s+\+\s*\d+\.\d+s\s+([A-Za-z]+)\b(.*)$")


def assert_clean_error(result: Result, code: int) -> str:
    """Exit ``code``, one ``error: ...`` line on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` that contains ``text``."""
    (number,) = [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    return number


def timeline(output: str) -> list[tuple[int, str, str]]:
    return [
        (int(m[1]), m[2], m[3].strip())
        for m in map(TIMELINE_LINE.match, output.splitlines())
        if m is not None
    ]


def events_in_store(db: str, workflow_id: str) -> int:
    store = SQLiteStore(db)
    try:
        return len(store.read_events(workflow_id))
    finally:
        store.close()


# -- list ------------------------------------------------------------------


def test_list_shows_every_workflow_with_its_status(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, "list")
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split()[:3] == ["ID", "NAME", "STATUS"]
    rows = {line.split()[0]: line.split() for line in lines}
    assert set(rows) == {"order-1", "fail-1", "sleep-1"}
    assert rows["order-1"][1:3] == ["cli_order", "COMPLETED"]
    assert rows["fail-1"][1:3] == ["cli_fail", "FAILED"]
    assert rows["sleep-1"][1:3] == ["cli_sleeper", "RUNNING"]


def test_list_json(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, "list", "--json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert isinstance(records, list)
    by_id = {r["id"]: r for r in records}
    assert set(by_id) == {"order-1", "fail-1", "sleep-1"}
    assert by_id["order-1"]["name"] == "cli_order"
    assert by_id["order-1"]["status"] == "COMPLETED"
    assert by_id["order-1"]["last_seq"] == events_in_store(shop_db, "order-1")
    assert by_id["fail-1"]["status"] == "FAILED"


@pytest.mark.parametrize(
    ("status", "ids"),
    [("RUNNING", ["sleep-1"]), ("FAILED", ["fail-1"]), ("COMPLETED", ["order-1"]), ("PAUSED", [])],
)
def test_list_status_filter(cli: Invoke, shop_db: str, status: str, ids: list[str]) -> None:
    result = cli("--db", shop_db, "list", "--status", status, "--json")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == ids
    plain = cli("--db", shop_db, "list", "--status", status)
    assert [line.split()[0] for line in plain.stdout.splitlines()[1:]] == ids


def test_list_name_filter(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, "list", "--name", "cli_fail", "--json")
    assert [r["id"] for r in json.loads(result.stdout)] == ["fail-1"]


def test_list_rejects_an_unknown_status(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, "list", "--status", "DONE")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


# -- show and history ------------------------------------------------------


def test_show_completed_workflow(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, "show", "order-1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"^workflow\s+order-1 \(cli_order\)$", out, re.M)
    assert re.search(r"^status\s+COMPLETED$", out, re.M)
    assert re.search(r'^input\s+\["o-1",1999\]$', out, re.M)
    assert re.search(r'^result\s+\["reserved o-1","charged o-1 1999","shipped o-1"\]$', out, re.M)
    lines = timeline(out)
    assert [seq for seq, _, _ in lines] == list(range(1, events_in_store(shop_db, "order-1") + 1))
    assert lines[0][:2] == (1, "WorkflowStarted")
    assert lines[-1][:2] == (len(lines), "WorkflowCompleted")
    scheduled = [text for _, kind, text in lines if kind == "StepScheduled"]
    assert [s.split("(")[0] for s in scheduled] == ["cli_reserve", "cli_charge", "cli_ship"]
    assert any(kind == "TimerStarted" for _, kind, _ in lines)
    assert any(kind == "StepCompleted" and "cli_charge ->" in text for _, kind, text in lines)


def test_show_failed_workflow_says_why(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, "show", "fail-1")
    assert result.exit_code == 0, result.output
    assert re.search(r"^status\s+FAILED", result.stdout, re.M)
    assert re.search(r"^error\s+.*no stock for o-2", result.stdout, re.M)
    kinds = [kind for _, kind, _ in timeline(result.stdout)]
    assert "StepFailed" in kinds and kinds[-1] == "WorkflowFailed"


def test_show_running_workflow(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, "show", "sleep-1")
    assert result.exit_code == 0, result.output
    assert re.search(r"^status\s+RUNNING", result.stdout, re.M)
    assert "result" not in result.stdout
    assert timeline(result.stdout)[-1][1] == "TimerStarted"


def test_history_json_is_a_gapless_array_of_events(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, "history", "order-1", "--json")
    assert result.exit_code == 0, result.output
    events = json.loads(result.stdout)
    assert isinstance(events, list) and events
    assert all(isinstance(e, dict) and {"seq", "kind", "at"} <= e.keys() for e in events)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len(events) == events_in_store(shop_db, "order-1")
    assert events[0]["kind"] == "WorkflowStarted" and events[0]["name"] == "cli_order"
    assert events[-1]["kind"] == "WorkflowCompleted"
    assert [e["name"] for e in events if e["kind"] == "StepScheduled"] == [
        "cli_reserve",
        "cli_charge",
        "cli_ship",
    ]


def test_history_plain_is_the_timeline(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, "history", "fail-1")
    assert result.exit_code == 0, result.output
    lines = timeline(result.stdout)
    assert len(lines) == len(result.stdout.splitlines()) == events_in_store(shop_db, "fail-1")


# -- export and replay -----------------------------------------------------


def test_export_then_replay_the_file(cli: Invoke, shop_db: str, tmp_path: Path) -> None:
    out = tmp_path / "order-1.json"
    exported = cli("--db", shop_db, "export", "order-1", "-o", str(out))
    assert exported.exit_code == 0, exported.output
    history = load_history(out.read_bytes())
    assert history.workflow_id == "order-1" and history.workflow_name == "cli_order"
    assert len(history.events) == events_in_store(shop_db, "order-1")

    # No --db: a history file is replayed without any log.
    result = cli("--db", str(tmp_path / "absent.db"), *APP, "replay", "--file", str(out))
    assert result.exit_code == 0, result.output
    assert "order-1 (cli_order): agrees" in result.stdout
    assert "finished" in result.stdout
    assert not (tmp_path / "absent.db").exists()


def test_export_to_stdout_matches_the_file(cli: Invoke, shop_db: str, tmp_path: Path) -> None:
    out = tmp_path / "fail-1.json"
    assert cli("--db", shop_db, "export", "fail-1", "-o", str(out)).exit_code == 0
    result = cli("--db", shop_db, "export", "fail-1", "-o", "-")
    assert result.exit_code == 0
    assert result.stdout.encode() == out.read_bytes()


@pytest.mark.parametrize("workflow_id", ["order-1", "fail-1"])
def test_replay_by_id_agrees(cli: Invoke, shop_db: str, workflow_id: str) -> None:
    result = cli("--db", shop_db, *APP, "replay", workflow_id)
    assert result.exit_code == 0, result.output
    assert f"{workflow_id} (" in result.stdout and "agrees" in result.stdout
    assert "finished" in result.stdout


def test_replay_of_a_running_workflow_says_where_it_waits(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, *APP, "replay", "sleep-1")
    assert result.exit_code == 0, result.output
    line = line_of(HERE / "app_workflows.py", "await duralog.sleep(3600)")
    assert f"waiting at {HERE / 'app_workflows.py'}:{line}" in result.stdout


def test_replay_until_stops_early(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, *APP, "replay", "order-1", "--until", "3")
    assert result.exit_code == 0, result.output
    assert "replayed 3 of" in result.stdout and "waiting at" in result.stdout


def test_replay_all_prints_a_summary(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, *APP, "replay", "--all")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "3 agree, 0 diverge"
    assert "[3/3]" not in result.stderr  # the running count is for a terminal only
    assert "agrees" not in result.stdout  # only what diverges, then the counts


def test_replay_all_json(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, *APP, "replay", "--all", "--json")
    assert result.exit_code == 0, result.output
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["workflow_id"] for r in reports) == ["fail-1", "order-1", "sleep-1"]
    assert all(r["ok"] for r in reports)
    by_id = {r["workflow_id"]: r for r in reports}
    assert by_id["order-1"]["finished"] and not by_id["sleep-1"]["finished"]


def test_replay_against_changed_code_diverges(python_m: Run, shop_db: str, tmp_path: Path) -> None:
    # app_changed registers another function as "cli_order": it must run in its own process.
    changed = HERE / "app_changed.py"
    where = f"{changed}:{line_of(changed, 'charged = await charge(order_id, cents)')}"
    for source in (("order-1",), ("--all", "--name", "cli_order")):
        done = python_m("--db", shop_db, "--app", "app_changed", "replay", *source)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        out = done.stdout
        assert "order-1 (cli_order): DIVERGES at seq 2" in out
        assert re.search(r"recorded:\s+StepScheduled cli_reserve", out)
        assert re.search(r"attempted:\s+StepScheduled cli_charge", out)
        assert where in out
        assert "duralog.patched" in out

    exported = tmp_path / "order-1.json"
    assert python_m("--db", shop_db, "export", "order-1", "-o", str(exported)).returncode == 0
    done = python_m("--app", "app_changed", "replay", "--file", str(exported), "--json")
    assert done.returncode == 1, done.stderr
    (report,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert report["ok"] is False
    assert report["seq"] == 2
    assert report["recorded"] == "StepScheduled cli_reserve"
    assert report["attempted"] == "StepScheduled cli_charge"
    assert report["location"] == where


# -- inspect ---------------------------------------------------------------


def test_inspect_at_a_seq_is_the_state_then(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, "inspect", "order-1", "--at", "2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"^at seq\s+2 ", out, re.M)
    assert re.search(r"^status\s+RUNNING$", out, re.M)
    assert re.search(r"^steps\s+0 finished, 1 pending$", out, re.M)
    assert re.search(r"^\s+2 cli_reserve\s+scheduled", out, re.M)
    assert "result" not in out


def test_inspect_json_at_a_seq(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, "inspect", "order-1", "--at", "2", "--json")
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout)
    assert state["workflow_id"] == "order-1" and state["name"] == "cli_order"
    assert state["last_seq"] == 2 and state["status"] == "RUNNING"
    assert state["args"] == ["o-1", 1999]
    assert list(state["steps"]) == ["2"]
    assert state["steps"]["2"]["name"] == "cli_reserve"


def test_inspect_without_at_is_the_final_state(cli: Invoke, shop_db: str) -> None:
    result = cli("--db", shop_db, "inspect", "order-1", "--json")
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout)
    assert state["status"] == "COMPLETED"
    assert state["last_seq"] == events_in_store(shop_db, "order-1")
    assert state["result"] == ["reserved o-1", "charged o-1 1999", "shipped o-1"]
    assert [s["status"] for s in state["steps"].values()] == ["completed"] * 3


@pytest.mark.parametrize("at", ["0", "999"])
def test_inspect_at_out_of_range(cli: Invoke, shop_db: str, at: str) -> None:
    line = assert_clean_error(cli("--db", shop_db, "inspect", "order-1", "--at", at), 2)
    assert "--at must be between 1 and" in line


# -- start -----------------------------------------------------------------


def test_start_and_wait(cli: Invoke, app: ModuleType, tmp_path: Path) -> None:
    db = str(tmp_path / "new.db")
    result = cli(
        "--db", db, *APP, "start", "cli_order", "--input", '["o-9", 5]',
        "--id", "order-9", "--wait", "--timeout", "10",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "order-9  COMPLETED",
        json.dumps(["reserved o-9", "charged o-9 5", "shipped o-9"]),
    ]
    listed = json.loads(cli("--db", db, "list", "--json").stdout)
    assert [(r["id"], r["status"]) for r in listed] == [("order-9", "COMPLETED")]


def test_start_without_wait_only_records_the_start(
    cli: Invoke, app: ModuleType, tmp_path: Path
) -> None:
    db = str(tmp_path / "new.db")
    result = cli("--db", db, *APP, "start", "cli_order", "--input", '["o-8", 1]', "--id", "o-8")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "o-8  PENDING"
    events = json.loads(cli("--db", db, "history", "o-8", "--json").stdout)
    assert [e["kind"] for e in events] == ["WorkflowStarted"]
    assert events[0]["args"] == ["o-8", 1]


@pytest.mark.parametrize(
    ("input_json", "message"),
    [
        ("[1, ", "--input is not valid JSON"),
        ("{'a': 1}", "--input is not valid JSON"),
        ('{"order": 1}', "--input must be a JSON array"),
        ("5", "--input must be a JSON array"),
    ],
)
def test_start_with_bad_input(
    cli: Invoke, app: ModuleType, tmp_path: Path, input_json: str, message: str
) -> None:
    db = tmp_path / "new.db"
    result = cli("--db", str(db), *APP, "start", "cli_order", "--input", input_json)
    assert message in assert_clean_error(result, 2)
    assert not db.exists()


def test_start_of_an_unknown_workflow_name(cli: Invoke, app: ModuleType, tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    result = cli("--db", str(db), *APP, "start", "cli_nope", "--input", "[]")
    line = assert_clean_error(result, 1)
    assert "no workflow named 'cli_nope'" in line and "cli_order" in line
    assert not db.exists()


# -- errors: one line, an exit code, no traceback --------------------------


@pytest.mark.parametrize(
    "command", [("replay", "order-1"), ("replay", "--all"), ("start", "cli_order")]
)
def test_commands_that_run_code_need_app(
    cli: Invoke, shop_db: str, command: tuple[str, ...]
) -> None:
    line = assert_clean_error(cli("--db", shop_db, *command), 2)
    assert "--app MODULE" in line


def test_an_app_that_does_not_import(cli: Invoke, shop_db: str) -> None:
    line = assert_clean_error(cli("--db", shop_db, "--app", "no_such_app", "replay", "--all"), 2)
    assert "cannot import --app 'no_such_app'" in line


def test_app_from_the_environment(app: ModuleType, shop_db: str) -> None:
    # DURALOG_APP stands in for --app (the ``cli`` fixture clears it; this runner sets it).
    result = CliRunner().invoke(
        main, ["--db", shop_db, "replay", "order-1"], env={"DURALOG_APP": "app_workflows"}
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "command",
    [
        ("show", "nope-1"),
        ("history", "nope-1"),
        ("history", "nope-1", "--json"),
        ("export", "nope-1", "-o", "-"),
        ("inspect", "nope-1"),
        ("--app", "app_workflows", "replay", "nope-1"),
    ],
)
def test_unknown_workflow_id(
    cli: Invoke, app: ModuleType, shop_db: str, command: tuple[str, ...]
) -> None:
    line = assert_clean_error(cli("--db", shop_db, *command), 1)
    assert "'nope-1'" in line


@pytest.mark.parametrize(
    "command",
    [
        ("list",),
        ("show", "order-1"),
        ("history", "order-1"),
        ("inspect", "order-1"),
        ("--app", "app_workflows", "replay", "--all"),
    ],
)
def test_missing_database_file(
    cli: Invoke, app: ModuleType, tmp_path: Path, command: tuple[str, ...]
) -> None:
    db = tmp_path / "missing.db"
    line = assert_clean_error(cli("--db", str(db), *command), 1)
    assert f"no duralog database at {db}" in line
    assert not db.exists(), "a read-only command must not create the database"


def test_replay_needs_exactly_one_source(cli: Invoke, app: ModuleType, shop_db: str) -> None:
    for args in ((), ("order-1", "--all")):
        line = assert_clean_error(cli("--db", shop_db, *APP, "replay", *args), 2)
        assert "exactly one of" in line


@pytest.fixture
def exported(cli: Invoke, shop_db: str, tmp_path: Path) -> bytes:
    out = tmp_path / "good.json"
    assert cli("--db", shop_db, "export", "order-1", "-o", str(out)).exit_code == 0
    return out.read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda good: b"", id="empty"),
        pytest.param(lambda good: b"\x00\xff\xfe garbage", id="binary"),
        pytest.param(lambda good: b"{not json", id="malformed"),
        pytest.param(lambda good: b"[1, 2, 3]", id="not-an-object"),
        pytest.param(lambda good: good[: len(good) // 2], id="truncated-half"),
        pytest.param(lambda good: good[:-3], id="truncated-end"),
        pytest.param(lambda good: good.replace(b'"seq":2', b'"seq":7'), id="seq-gap"),
        pytest.param(
            lambda good: good.replace(b'"duralog-history"', b'"other-format"'), id="format"
        ),
        pytest.param(lambda good: good.replace(b'"version":1', b'"version":99'), id="version"),
        pytest.param(
            lambda good: good.replace(b'"kind":"StepScheduled"', b'"kind":"Bogus"', 1), id="kind"
        ),
    ],
)
def test_bad_history_files(
    cli: Invoke, app: ModuleType, tmp_path: Path, exported: bytes, damage: Callable[[bytes], bytes]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(damage(exported))
    line = assert_clean_error(cli(*APP, "replay", "--file", str(bad)), 2)
    assert str(bad) in line


def test_history_file_that_does_not_exist(cli: Invoke, app: ModuleType, tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    line = assert_clean_error(cli(*APP, "replay", "--file", str(missing)), 2)
    assert f"cannot read {missing}" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_history_file(
    cli: Invoke, app: ModuleType, tmp_path: Path, exported: bytes
) -> None:
    locked = tmp_path / "locked.json"
    locked.write_bytes(exported)
    locked.chmod(0)
    line = assert_clean_error(cli(*APP, "replay", "--file", str(locked)), 2)
    assert f"cannot read {locked}" in line


def test_history_file_that_is_a_directory(cli: Invoke, app: ModuleType, tmp_path: Path) -> None:
    result = cli(*APP, "replay", "--file", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "is a directory with no .json history files" in result.stderr


def test_a_folder_of_history_files_replays_each(
    cli: Invoke, app: ModuleType, tmp_path: Path, exported: bytes
) -> None:
    folder = tmp_path / "histories"
    folder.mkdir()
    for name in ("a.json", "b.json"):
        (folder / name).write_bytes(exported)
    result = cli(*APP, "replay", "--file", str(folder))
    assert result.exit_code == 0, result.output
    assert "2 agree, 0 diverge" in result.stdout


def test_a_bad_file_among_good_ones_replays_nothing(
    cli: Invoke, app: ModuleType, tmp_path: Path, exported: bytes
) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    bad.write_bytes(exported[:100])
    result = cli(*APP, "replay", "--file", str(good), "--file", str(bad))
    assert_clean_error(result, 2)


# -- the real entry point --------------------------------------------------


def test_python_dash_m_duralog(python_m: Run, shop_db: str) -> None:
    done = python_m("--db", shop_db, "list", "--json")
    assert done.returncode == 0, done.stderr
    assert {r["id"] for r in json.loads(done.stdout)} == {"order-1", "fail-1", "sleep-1"}

    done = python_m("--db", shop_db, "--app", "app_workflows", "replay", "--all")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "3 agree, 0 diverge"

    done = python_m("--db", shop_db, "show", "no-such-id")
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr.strip().splitlines() == [
        f"error: no workflow with id 'no-such-id' in {shop_db}"
    ]


def test_help_has_an_example_for_every_command(cli: Invoke) -> None:
    commands = ["worker", "start", "list", "show", "history", "export", "replay", "inspect"]
    for command in commands:
        result = cli(command, "--help")
        assert result.exit_code == 0, command
        assert "Example" in result.stdout, command


def test_replay_all_skips_a_workflow_without_code_and_goes_on(
    python_m: Run, app: ModuleType, ops: ModuleType, tmp_path: Path
) -> None:
    db = str(tmp_path / "mixed.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        engine.start(ops.echo, "x", id="e-1").result(timeout=PATIENCE)  # app_ops's code
        engine.start(app.order, "o-1", 1999, id="order-1").result(timeout=PATIENCE)
        engine.start(ops.echo, "y", id="e-2").result(timeout=PATIENCE)
    # In a process of its own, where only --app app_workflows is registered.
    done = python_m("--db", db, "--app", APP[1], "replay", "--all")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        "1 agree, 0 diverge, 2 skipped (no code registered for ops_echo (2): "
        "add its module with --app)"
    )
    done = python_m("--db", db, "--app", APP[1], "replay", "--all", "-o", "jsonl")
    reports = {r["workflow_id"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert reports["order-1"]["ok"] and set(reports) == {"order-1", "e-1", "e-2"}
    assert "no workflow named 'ops_echo'" in reports["e-1"]["skipped"]


def test_replay_all_shows_its_running_count_on_a_terminal(shop_db: str) -> None:
    leader, follower = pty.openpty()  # stderr is a terminal, stdout is not
    try:
        done = subprocess.run(
            [sys.executable, "-m", "duralog", "--db", shop_db, *APP, "replay", "--all"],
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=PATIENCE,
            cwd=HERE,
        )
        os.close(follower)
        follower = -1
        shown = b""
        with contextlib.suppress(OSError):  # EIO once everything written was read
            while chunk := os.read(leader, 4096):
                shown += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert done.returncode == 0, done.stdout
    assert b"[3/3] 3 agree, 0 diverge" in shown
    assert done.stdout.strip() == "3 agree, 0 diverge"
