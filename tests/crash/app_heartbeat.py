"""A long import whose worker is killed mid-step: ``python app_heartbeat.py ADDRESS``.

The step imports ``ROWS`` rows, reporting the offset it reached with
``duralog.heartbeat`` after each one, and starts from the offset the previous
attempt reported. With ``HB_HANG=1`` it stops after ``HANG_AT`` rows and prints
``hung``: the test then SIGKILLs this process. Each attempt writes where it started
to the file ``HB_LEDGER`` names.
"""

from __future__ import annotations

import os
import sys
import threading

import duralog

ROWS = 40
HANG_AT = 25


@duralog.step(heartbeat_timeout=60)
def hb_import_rows(rows: int) -> int:
    info = duralog.step_info()
    start: int = info.heartbeat_details or 0
    with open(os.environ["HB_LEDGER"], "a") as ledger:
        ledger.write(f"attempt from {start}\n")
    for offset in range(start, rows):
        duralog.heartbeat(offset + 1)
        if os.environ.get("HB_HANG") == "1" and offset + 1 == HANG_AT:
            print("hung", flush=True)
            threading.Event().wait()  # until SIGKILL
    return rows - start


@duralog.workflow
async def hb_import(rows: int) -> int:
    return await hb_import_rows(rows)


def main(address: str) -> None:
    options = {"lease_seconds": 2.0, "heartbeat_interval": 0.05, "poll_interval": 0.05}
    with duralog.Engine(address, **options) as engine:  # type: ignore[arg-type]
        engine.start(hb_import, ROWS, id="import")
        threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1])
