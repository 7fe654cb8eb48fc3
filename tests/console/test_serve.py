"""``duralog ui`` as a real process: it serves the pages and the API, streams every
append as server-sent events, and stops on Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx2 as httpx
from support import PATIENCE, popen, read_line, wait_for

import duralog

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_console_serves_and_streams_appends(tmp_path: Path, app: ModuleType) -> None:
    db = str(tmp_path / "served.db")
    with duralog.Engine(db, worker=False):
        pass  # the log exists
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = popen(
        [
            sys.executable,
            "-m",
            "duralog",
            "--db",
            db,
            "--app",
            "app_console",
            "ui",
            "--port",
            str(port),
        ],
        cwd=HERE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert read_line(server.stderr).startswith(f"duralog console on {base}/ serving ")
    with httpx.Client(base_url=base, timeout=PATIENCE) as http:
        wait_for(lambda: _answers(http))
        with http.stream("GET", "/api/events?interval=0.05") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines) == ": duralog events"
            started = http.post(
                "/api/workflows", json={"name": "ui_echo", "args": [5], "id": "s-1"}
            )
            assert started.status_code == 201, started.text
            kinds = []
            with duralog.Engine(db, durability="normal", poll_interval=0.05):
                for line in lines:
                    if line.startswith("data: "):
                        event = json.loads(line[6:])
                        assert event["workflow_id"] == "s-1"
                        kinds.append(event["kind"])
                        if event["kind"] == "WorkflowCompleted":
                            assert event["result"] == 5
                            break
            assert kinds[0] == "WorkflowStarted" and "StepCompleted" in kinds
        page = http.get("/workflows/s-1")
        assert page.status_code == 200 and "WorkflowCompleted" in page.text
    server.send_signal(signal.SIGINT)
    assert server.wait(timeout=PATIENCE) == 0
    assert "Traceback" not in server.stderr.read()


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/api/workflows").status_code == 200
    except httpx.TransportError:
        return False
