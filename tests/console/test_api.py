"""The JSON API under ``/api/``: what it answers is what the CLI prints with ``-o json``,
and its actions do what the CLI's do, on a real SQLite log."""

from __future__ import annotations

import json
from types import ModuleType
from urllib.parse import quote

from click.testing import CliRunner
from starlette.testclient import TestClient
from support import PATIENCE, wait_for

import duralog
from duralog.cli import main

JSON = {"Content-Type": "application/json"}
HOSTILE = "<script>alert('x')</script>"  # the id conftest gives a workflow


def cli(db: str, *args: str) -> object:
    """What ``duralog --db DB --app app_console ARGS -o json`` prints, decoded."""
    env = {"DURALOG_DB": None, "DURALOG_APP": None, "DURALOG_KEYS": None}
    result = CliRunner().invoke(main, ["--db", db, "--app", "app_console", *args], env=env)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def test_the_list_is_the_cli_list_newest_first(client: TestClient, shop_db: str) -> None:
    found = client.get("/api/workflows").json()
    assert found["workflows"] == cli(shop_db, "list", "-o", "json")
    assert found["next_after"] is None
    assert found["workflows"][0]["id"] == "wait-1"  # the newest
    by_id = {w["id"]: w for w in found["workflows"]}
    assert (by_id["retry-1"]["steps"], by_id["retry-1"]["retries"]) == (1, 2)
    assert (by_id["echo-1"]["steps"], by_id["echo-1"]["retries"]) == (1, 0)
    assert (by_id["parent-1"]["steps"], by_id["parent-1"]["retries"]) == (0, 0)  # a child


def test_the_list_filters_as_the_cli_does(client: TestClient, shop_db: str) -> None:
    running = client.get("/api/workflows?status=running").json()["workflows"]
    assert [w["id"] for w in running] == ["wait-1"]
    echoes = client.get("/api/workflows?name=ui_echo&id_prefix=echo-").json()["workflows"]
    assert sorted(w["id"] for w in echoes) == ["echo-1", "echo-2", "echo-3"]
    assert echoes == cli(shop_db, "list", "--name", "ui_echo", "--id-prefix", "echo-", "-o", "json")
    assert client.get("/api/workflows?since=1d&until=2999-01-01").json()["workflows"]
    assert client.get("/api/workflows?since=2999-01-01").json()["workflows"] == []
    children = client.get("/api/workflows?parent=parent-1").json()["workflows"]
    assert [w["name"] for w in children] == ["ui_echo"]


def test_keyset_pages_cover_every_workflow_once(client: TestClient, shop_db: str) -> None:
    seen: list[str] = []
    url = "/api/workflows?limit=2"
    while True:
        page = client.get(url).json()
        assert len(page["workflows"]) <= 2
        seen += [w["id"] for w in page["workflows"]]
        if page["next_after"] is None:
            break
        url = f"/api/workflows?limit=2&after={quote(page['next_after'], safe='')}"
    assert seen == [w["id"] for w in cli(shop_db, "list", "-o", "json")]  # type: ignore[attr-defined]


def test_bad_filters_get_one_clear_error(client: TestClient) -> None:
    for url, said in [
        ("/api/workflows?status=sleeping", "status must be one of"),
        ("/api/workflows?since=yesterday", "since: 'yesterday' is neither a duration"),
        ("/api/workflows?limit=0", "limit must be between 1 and 1000"),
        ("/api/workflows?limit=many", "limit must be a whole number"),
    ]:
        response = client.get(url)
        assert response.status_code == 400, url
        assert said in response.json()["error"]
    missing = client.get("/api/workflows?after=nobody")
    assert missing.status_code == 404
    assert "no workflow with id 'nobody'" in missing.json()["error"]


def test_one_workflow_is_what_show_prints(client: TestClient, shop_db: str) -> None:
    found = client.get("/api/workflows/retry-1").json()
    assert found == cli(shop_db, "show", "retry-1", "-o", "json")
    assert found["status"] == "COMPLETED"
    assert [e["kind"] for e in found["events"]].count("StepRetrying") == 2


def test_history_and_state_are_history_and_inspect(client: TestClient, shop_db: str) -> None:
    history = client.get("/api/workflows/retry-1/history").json()
    assert history == cli(shop_db, "history", "retry-1", "-o", "json")
    for at in (1, 4, len(history)):
        state = client.get(f"/api/workflows/retry-1/state?at={at}").json()
        assert state == cli(shop_db, "inspect", "retry-1", "--at", str(at), "-o", "json")
        assert state["last_seq"] == at
    assert client.get("/api/workflows/retry-1/state").json()["status"] == "COMPLETED"
    past = client.get("/api/workflows/retry-1/state?at=99")
    assert past.status_code == 400
    assert past.json() == {"error": f"at must be between 1 and {len(history)} for retry-1"}


def test_an_unknown_workflow_is_404_everywhere(client: TestClient) -> None:
    for url in ("/api/workflows/nope", "/api/workflows/nope/history", "/api/workflows/nope/state"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "no workflow with id 'nope'" in response.json()["error"]
    response = client.post("/api/workflows/nope/cancel", headers=JSON)
    assert response.status_code == 404
    assert client.get("/workflows/nope").status_code == 404


def test_an_id_with_slashes_and_html_is_served(client: TestClient) -> None:
    found = client.get(f"/api/workflows/{quote(HOSTILE, safe='')}").json()
    assert found["id"] == HOSTILE
    assert found["state"]["result"] == HOSTILE


def test_replay_check_agrees_with_the_code(client: TestClient) -> None:
    report = client.get("/api/workflows/retry-1/replay").json()
    assert report["ok"] is True
    assert report["workflow_id"] == "retry-1"


def test_queues_schedules_and_stats_are_the_cli_s(client: TestClient, shop_db: str) -> None:
    assert client.get("/api/queues").json() == cli(shop_db, "queues", "-o", "json")
    assert client.get("/api/schedules").json() == []
    stats = client.get("/api/stats").json()
    assert {w["name"] for w in stats["workflows"]} >= {"ui_echo", "ui_retrying", "ui_waiter"}
    listed = cli(shop_db, "stats", "-o", "json")
    assert isinstance(listed, dict)
    assert {k: v for k, v in stats.items() if k not in ("at", "series")} == {
        k: v for k, v in listed.items() if k != "at"
    }


def test_stats_over_time_add_up_to_the_totals(client: TestClient) -> None:
    for url in ("/api/stats", "/api/stats?since=1h"):
        stats = client.get(url).json()
        series = stats["series"]
        buckets = series["buckets"]
        assert 1 <= len(buckets) <= 60 and series["width"] > 0
        if stats["since"] is not None:
            assert series["start"] == stats["since"]
        assert series["end"] == stats["at"]

        def total(field: str, buckets: list[dict[str, object]] = buckets) -> object:
            return sum(b[field] for b in buckets)  # type: ignore[misc]

        for outcome in ("completed", "failed", "cancelled", "continued"):
            assert total(outcome) == sum(w[outcome] for w in stats["workflows"]), url
        assert total("steps") == sum(s["completed"] for s in stats["steps"])
        assert total("retries") == sum(s["retries"] for s in stats["steps"]) == 2
        assert total("attempts") == sum(s["attempt_duration"]["count"] for s in stats["steps"])
    bad = client.get("/api/stats?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.json()["error"]


def test_start_signal_and_the_workflow_advances(
    fresh: tuple[str, TestClient], app: ModuleType
) -> None:
    db, client = fresh
    started = client.post(
        "/api/workflows", headers=JSON, json={"name": "ui_waiter", "args": ["s"], "id": "api-1"}
    )
    assert started.status_code == 201, started.text
    assert started.json() == {"id": "api-1", "name": "ui_waiter", "status": "PENDING"}
    sent = client.post("/api/workflows/api-1/signal/go", headers=JSON, json={"by": "api"})
    assert sent.status_code == 200, sent.text
    assert sent.json()["action"] == "signal"
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        assert engine.get("api-1").result(timeout=PATIENCE) == {"by": "api"}
    assert client.get("/api/workflows/api-1").json()["status"] == "COMPLETED"


def test_cancel_pause_and_resume(fresh: tuple[str, TestClient], app: ModuleType) -> None:
    db, client = fresh
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        paused = client.post("/api/workflows/wait-1/pause", headers=JSON, json={"reason": "r"})
        assert paused.status_code == 200, paused.text
        wait_for(lambda: engine.get("wait-1").status() is duralog.WorkflowStatus.PAUSED)
        assert client.post("/api/workflows/wait-1/resume", headers=JSON).status_code == 200
        wait_for(lambda: engine.get("wait-1").status() is duralog.WorkflowStatus.RUNNING)
        cancelled = client.post("/api/workflows/wait-1/cancel", headers=JSON, json={})
        assert cancelled.json() == {
            "workflow_id": "wait-1",
            "action": "cancel",
            "status": "RUNNING",
        }
        wait_for(lambda: engine.get("wait-1").status() is duralog.WorkflowStatus.CANCELLED)
    kinds = [e["kind"] for e in client.get("/api/workflows/wait-1/history").json()]
    assert kinds[-1] == "WorkflowCancelled"
    assert "PauseRequested" in kinds and "ResumeRequested" in kinds


def test_bad_starts_are_refused_before_anything_is_written(fresh: tuple[str, TestClient]) -> None:
    _, client = fresh
    before = len(client.get("/api/workflows").json()["workflows"])
    for body, status, said in [
        ({"name": "no_such_workflow"}, 400, "no_such_workflow"),
        ({"name": "ui_waiter", "args": "s"}, 400, "args must be a JSON array"),
        ({"name": "ui_waiter", "args": []}, 400, "ui_waiter"),  # a missing argument
        ({"args": []}, 400, "the body must be a JSON object"),
        ({"name": "ui_waiter", "args": ["other"], "id": "wait-1"}, 409, "wait-1"),
    ]:
        response = client.post("/api/workflows", headers=JSON, json=body)
        assert response.status_code == status, (body, response.text)
        assert said in response.json()["error"]
    broken = client.post("/api/workflows", headers=JSON, content=b"{nope")
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["error"]
    assert len(client.get("/api/workflows").json()["workflows"]) == before
