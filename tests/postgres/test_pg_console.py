"""The web console over PostgreSQL: the same pages and API as over SQLite, the same
answers as the CLI's ``-o json``, actions, and the events stream's source."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient
from support import PATIENCE, load_app, wait_for

import duralog
from duralog._cli_common import Context
from duralog.cli import main
from duralog.console.app import create_app
from duralog.console.service import Console

CONSOLE_TESTS = Path(__file__).parent.parent / "console"
JSON = {"Content-Type": "application/json"}
HOSTILE = "<script>alert('pg')</script>"
PASSWORD = "hunter2-not-shown"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.chdir(CONSOLE_TESTS)  # where --app app_console is found
    return load_app(CONSOLE_TESTS / "app_console.py")


@pytest.fixture
def console(postgres_url: str, app: ModuleType) -> Iterator[Console]:
    with duralog.Engine(postgres_url, poll_interval=0.05) as engine:
        assert engine.run(app.retrying, "r", id="retry-1") == "done r"
        assert engine.run(app.echo, HOSTILE, id=HOSTILE) == HOSTILE
        waiting = engine.start(app.waiter, "w", id="wait-1")
        wait_for(lambda: len(waiting.history()) >= 4)
    # A password in the address (the local server trusts any): it must never show.
    found = Console(Context(with_password(postgres_url), ("app_console",)))
    yield found
    found.close()


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def cli(url: str, *args: str) -> object:
    env = {"DURALOG_DB": None, "DURALOG_APP": None, "DURALOG_KEYS": None}
    result = CliRunner().invoke(main, ["--db", url, "--app", "app_console", *args], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_api_answers_what_the_cli_prints(console: Console, postgres_url: str) -> None:
    with TestClient(create_app(console), base_url="http://127.0.0.1") as client:
        listed = client.get("/api/workflows").json()
        assert listed["workflows"] == cli(postgres_url, "list", "-o", "json")
        by_id = {w["id"]: w for w in listed["workflows"]}
        assert (by_id["retry-1"]["steps"], by_id["retry-1"]["retries"]) == (1, 2)
        assert re.search(r'<td class="num retried">2</td>', client.get("/?id_prefix=retry").text)
        stats = client.get("/api/stats?since=1h").json()
        buckets = stats["series"]["buckets"]
        assert sum(b["retries"] for b in buckets) == 2
        assert sum(b["completed"] for b in buckets) == 2  # retry-1 and the hostile one
        assert 'id="chart-latency"' in client.get("/stats?since=1h").text
        assert client.get("/api/workflows?status=RUNNING").json()["workflows"][0]["id"] == "wait-1"
        assert client.get("/api/workflows/retry-1").json() == cli(
            postgres_url, "show", "retry-1", "-o", "json"
        )
        assert client.get("/api/workflows/retry-1/history").json() == cli(
            postgres_url, "history", "retry-1", "-o", "json"
        )
        assert client.get("/api/workflows/retry-1/state?at=4").json() == cli(
            postgres_url, "inspect", "retry-1", "--at", "4", "-o", "json"
        )
        page = client.get("/workflows/retry-1").text
        assert re.findall(r'<rect class="shape (\w+)"', page) == ["retried", "retried", "attempt"]
        hostile = client.get(f"/workflows/{quote(HOSTILE, safe='')}").text
        assert "<script>alert" not in hostile and HOSTILE not in client.get("/").text
        missing = client.get("/api/workflows/nope").json()["error"]
        assert missing.startswith("no workflow with id 'nope' in postgresql://")
        assert PASSWORD not in missing + client.get("/workflows/nope").text


def test_actions_and_the_event_stream(console: Console, postgres_url: str, app: ModuleType) -> None:
    stop = threading.Event()
    events = console.events(stop, poll_interval=0.05)
    with TestClient(create_app(console), base_url="http://127.0.0.1") as client:
        sent = client.post("/api/workflows/wait-1/signal/go", headers=JSON, json="pg")
        assert sent.status_code == 200, sent.text
        with duralog.Engine(postgres_url, poll_interval=0.05) as engine:
            assert engine.get("wait-1").result(timeout=PATIENCE) == "pg"
        kinds = []
        for line in events:
            event = json.loads(line)
            assert event["workflow_id"] == "wait-1"
            kinds.append(event["kind"])
            if event["kind"] == "WorkflowCompleted":
                break
        assert kinds[0] == "SignalReceived"
        assert client.get("/api/workflows/wait-1").json()["status"] == "COMPLETED"
    stop.set()
