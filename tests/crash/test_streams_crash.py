"""A worker SIGKILLed while its workflow streams: a reader following the stream from
another process gets every value the workflow wrote exactly once, in order, then the
end, once a fresh worker has resumed the run; on SQLite and PostgreSQL.

The workflow's own writes are decisions in its log, so the resumed run replays them
without writing them again. The step cut short by the kill runs again, and writes
its value again: a step's values are delivered at least once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from support import PATIENCE, load_app, popen, read_line, wait_for

import duralog

APP = Path(__file__).with_name("app_streams.py")
app = load_app(APP)  # its workflow, for the worker this test runs after the kill


def test_a_live_reader_gets_every_value_once_across_a_sigkill(address: str) -> None:
    worker = popen(
        [sys.executable, str(APP), address],
        env={**os.environ, "ST_HANG": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert read_line(worker.stdout) == "hung"
    got: list[Any] = []
    failed: list[BaseException] = []

    def read() -> None:
        with duralog.Engine(address, worker=False) as reader:
            try:
                got.extend(reader.get("agent").read_stream("tokens", timeout=PATIENCE))
            except BaseException as exc:  # looked at below
                failed.append(exc)

    following = threading.Thread(target=read)
    following.start()
    hung = f"step {app.HANG_AT}"
    wait_for(lambda: hung in got, what="the hung step's value, read from the other process")
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(PATIENCE) == -signal.SIGKILL

    with duralog.Engine(address, poll_interval=0.05, lease_seconds=2) as engine:
        handle = engine.get("agent")
        assert handle.result(timeout=PATIENCE) == app.ROUNDS
        following.join(PATIENCE)
        assert not following.is_alive() and not failed
        late = list(handle.read_stream("tokens"))  # a reader that starts after it all
        kinds = [e.kind for e in handle.history()]
    expected: list[str] = []
    for i in range(app.ROUNDS):
        # The step cut short wrote its value once per attempt: before and after the kill.
        expected += [f"wf {i}", f"step {i}"] + ([hung] if i == app.HANG_AT else [])
    assert got == expected
    assert late == expected
    assert kinds.count("StreamWritten") == app.ROUNDS and kinds.count("StreamClosed") == 1
