"""``duralog list`` (header, limit, paging, filters) and ``duralog count`` on a real log.

The log is ``ops_db`` (see ``conftest.py``): eleven workflows of ``app_ops``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest
from click.testing import Result

from duralog.store.sqlite import SQLiteStore

Invoke = Callable[..., Result]
EVERY = 11


def ids(result: Result) -> list[str]:
    """The ids of a table (its header row first) or of a JSON array."""
    assert result.exit_code == 0, result.output
    text = result.stdout
    if text.startswith("["):
        return [r["id"] for r in json.loads(text)]
    header, *rows = text.splitlines()
    assert header.split()[:3] == ["ID", "NAME", "STATUS"], header
    return [row.split()[0] for row in rows if not row.startswith("(")]


def every_id(cli: Invoke, db: str) -> list[str]:
    return ids(cli("--db", db, "list", "--limit", "0", "-o", "json"))


def test_the_table_has_a_header_row(cli: Invoke, ops_db: str) -> None:
    result = cli("--db", ops_db, "list")
    header = result.stdout.splitlines()[0].split()
    assert header == ["ID", "NAME", "STATUS", "QUEUE", "EVENTS", "STARTED", "UPDATED"]
    assert len(ids(result)) == EVERY
    empty = cli("--db", ops_db, "list", "--status", "paused")
    assert empty.exit_code == 0 and empty.stdout.split() == header


def test_newest_first(cli: Invoke, ops_db: str) -> None:
    found = every_id(cli, ops_db)
    assert found[:2] == ["q-1", "q-2"] or found[:2] == ["q-2", "q-1"]
    assert found[-4:] == ["e-4", "e-3", "e-2", "e-1"]


def test_a_cut_list_says_so_in_a_footer(cli: Invoke, ops_db: str) -> None:
    result = cli("--db", ops_db, "list", "--limit", "3")
    assert len(ids(result)) == 3
    footer = result.stdout.splitlines()[-1]
    assert footer.startswith("(3 shown; more match") and "--after" in footer
    assert result.stderr == ""
    whole = cli("--db", ops_db, "list", "--limit", str(EVERY))
    assert len(ids(whole)) == EVERY and "more match" not in whole.output


@pytest.mark.parametrize("output", ["json", "jsonl"])
def test_a_cut_list_says_so_on_stderr_for_scripts(cli: Invoke, ops_db: str, output: str) -> None:
    result = cli("--db", ops_db, "list", "--limit", "2", "-o", output)
    assert result.exit_code == 0, result.output
    if output == "json":
        assert len(json.loads(result.stdout)) == 2
    else:
        assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == every_id(
            cli, ops_db
        )[:2]
    assert "more match" in result.stderr and "--after" in result.stderr


def test_limit_zero_is_no_limit(cli: Invoke, ops_db: str) -> None:
    assert len(every_id(cli, ops_db)) == EVERY
    assert len(ids(cli("--db", ops_db, "list", "--limit", "0"))) == EVERY


@pytest.mark.parametrize("limit", ["-1", "-100"])
def test_a_negative_limit_is_one_clear_line(cli: Invoke, ops_db: str, limit: str) -> None:
    result = cli("--db", ops_db, "list", "--limit", limit)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: --limit must be 0 (no limit) or more, not {limit}"
    ]


def test_paging_with_after_visits_each_workflow_once(cli: Invoke, ops_db: str) -> None:
    seen: list[str] = []
    after: list[str] = []
    for _ in range(EVERY):
        result = cli("--db", ops_db, "list", "--limit", "4", *after)
        page = ids(result)
        seen += page
        footer = result.stdout.splitlines()[-1]
        if "more match" not in footer:
            break
        after = ["--after", page[-1]]
        assert f"--after {page[-1]}" in footer
    assert seen == every_id(cli, ops_db)


def test_after_an_unknown_id(cli: Invoke, ops_db: str) -> None:
    result = cli("--db", ops_db, "list", "--after", "nope")
    assert result.exit_code == 1 and "--after: no workflow with id 'nope'" in result.stderr


@pytest.mark.parametrize("spelled", ["completed", "Completed", "COMPLETED"])
def test_statuses_in_any_case(cli: Invoke, ops_db: str, spelled: str) -> None:
    found = ids(cli("--db", ops_db, "list", "--status", spelled))
    assert len(found) == 7 and {"e-1", "e-2", "e-3", "e-4", "p-1"} < set(found)


def test_repeated_filters_match_any_of_their_values(cli: Invoke, ops_db: str) -> None:
    found = ids(cli("--db", ops_db, "list", "--status", "failed", "--status", "Running"))
    assert sorted(found) == ["f-1", "pub-1"]
    found = ids(cli("--db", ops_db, "list", "--name", "ops_fail", "--name", "ops_publisher"))
    assert sorted(found) == ["f-1", "pub-1"]


def test_queue_and_parent_filters(cli: Invoke, ops_db: str) -> None:
    assert sorted(ids(cli("--db", ops_db, "list", "--queue", "ops_emails"))) == ["q-1", "q-2"]
    children = ids(cli("--db", ops_db, "list", "--parent", "p-1", "-o", "json"))
    assert len(children) == 2 and all(c.startswith("p-1/") for c in children)
    assert ids(cli("--db", ops_db, "list", "--queue", "nope")) == []


def _started(db: str, workflow_id: str) -> float:
    store = SQLiteStore(db)
    try:
        record = store.get_workflow(workflow_id)
        assert record is not None
        return record.created_at
    finally:
        store.close()


def test_since_and_until_compare_start_times(cli: Invoke, ops_db: str) -> None:
    between = (_started(ops_db, "e-2") + _started(ops_db, "e-3")) / 2
    moment = dt.datetime.fromtimestamp(between, dt.UTC).isoformat()
    before = ids(cli("--db", ops_db, "list", "--until", moment))
    assert before == ["e-2", "e-1"]
    after = ids(cli("--db", ops_db, "list", "--since", moment, "--limit", "0"))
    assert sorted(after + before) == sorted(every_id(cli, ops_db))
    assert ids(cli("--db", ops_db, "list", "--since", "1h", "--limit", "0")) == every_id(
        cli, ops_db
    )
    assert ids(cli("--db", ops_db, "list", "--until", "1h")) == []


def test_a_bad_time_is_one_clear_line(cli: Invoke, ops_db: str) -> None:
    result = cli("--db", ops_db, "list", "--until", "yesterday")
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: --until: 'yesterday' is neither a duration")


@pytest.mark.parametrize(
    "filters",
    [
        (),
        ("--status", "completed"),
        ("--status", "pending", "--queue", "ops_emails"),
        ("--parent", "p-1"),
        ("--name", "ops_echo", "--since", "1h"),
        ("--until", "1h"),
    ],
)
def test_count_takes_the_filters_of_list(
    cli: Invoke, ops_db: str, filters: tuple[str, ...]
) -> None:
    listed = ids(cli("--db", ops_db, "list", "--limit", "0", "-o", "json", *filters))
    counted = cli("--db", ops_db, "count", *filters)
    assert counted.exit_code == 0, counted.output
    assert counted.stdout == f"{len(listed)}\n"
    as_json = cli("--db", ops_db, "count", "--json", *filters)
    assert json.loads(as_json.stdout) == {"count": len(listed)}


def test_jsonl_is_one_record_per_line(cli: Invoke, ops_db: str) -> None:
    result = cli("--db", ops_db, "list", "-o", "jsonl", "--status", "pending")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["id"] for r in records) == ["q-1", "q-2"]
    assert all(r["queue"] == "ops_emails" and r["status"] == "PENDING" for r in records)


def test_json_rows_carry_steps_and_retries_the_table_does_not(cli: Invoke, ops_db: str) -> None:
    result = cli("--db", ops_db, "list", "-o", "jsonl", "--name", "ops_fail", "--name", "ops_echo")
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert (rows["f-1"]["steps"], rows["f-1"]["retries"]) == (1, 0)  # one attempt, failed
    assert (rows["e-1"]["steps"], rows["e-1"]["retries"]) == (0, 0)  # no step at all
    table = cli("--db", ops_db, "list", "--id-prefix", "f-").stdout
    assert "STEPS" not in table and "f-1" in table
