"""Structured logs from workflow code, and nothing logged twice across a crash.

    python examples/structured_logging.py

``duralog.logger`` is a ``logging.LoggerAdapter``: each record carries the
workflow's id and name, the step and the seq it is about (as record attributes,
here printed as JSON lines). The workflow runs in a child process that is killed
with SIGKILL during a durable sleep; a fresh process replays it up to where it
stopped (silently: the lines the code logs again while it catches up are not
emitted) and carries on. Every line appears once. No payload is logged unless
asked for with ``duralog.logger.with_payloads()``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import duralog

# The attributes duralog.logger puts on every record (None outside a workflow or step).
FIELDS = ("workflow_id", "workflow_name", "step", "seq", "attempt")


class JsonLines(logging.Formatter):
    """One JSON object per record: the message and duralog's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {"level": record.levelname, "msg": record.getMessage()}
        line.update({field: getattr(record, field, None) for field in FIELDS})
        if hasattr(record, "payload"):
            line["payload"] = record.payload
        return json.dumps(line)


@duralog.step
def reserve(order_id: str) -> str:
    duralog.logger.info("reserving stock")  # step, seq and attempt come with it
    return f"shelf-7/{order_id}"


@duralog.step
def ship(order_id: str, shelf: str) -> str:
    duralog.logger.info("handing the parcel to the carrier")
    return f"parcel-{order_id}"


@duralog.workflow
async def fulfil(order_id: str) -> str:
    duralog.logger.info("order received")
    shelf = await reserve(order_id)
    duralog.logger.with_payloads().info("reserved")  # asked for: the step's result rides along
    await duralog.sleep(1.0)  # the process is killed in here
    duralog.logger.info("woke up; shipping")
    parcel = await ship(order_id, shelf)
    duralog.logger.info("done")
    return parcel


def child(db: str, crash: bool) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLines())
    logging.getLogger("duralog.workflow").addHandler(handler)
    logging.getLogger("duralog.workflow").setLevel(logging.INFO)
    with duralog.Engine(db) as engine:
        handle = engine.start(fulfil, "o-1", id="order-o-1")
        if crash:  # a power cut once the sleep is on disk
            while not any(e.kind == "TimerStarted" for e in handle.history()):
                time.sleep(0.01)
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        handle.result(timeout=30)


def main() -> int:
    db = str(Path(tempfile.mkdtemp(prefix="duralog-logging-")) / "shop.db")
    me = [sys.executable, __file__, "--child", db]
    lines: list[str] = []
    for crash in (True, False):
        print("first process (killed during the sleep):" if crash else "\nfresh process:")
        done = subprocess.run([*me, "crash" if crash else "resume"], capture_output=True, text=True)
        for line in done.stdout.splitlines():
            print(f"  {line}")
            lines.append(json.loads(line)["msg"])
        print(f"  (exit code {done.returncode})")
    repeated = [msg for msg, n in Counter(lines).items() if n > 1]
    print(f"\nevery line logged once: {'no: ' + ', '.join(repeated) if repeated else 'yes'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], crash=sys.argv[3] == "crash")
    else:
        sys.exit(main())
