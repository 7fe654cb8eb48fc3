"""An agent streaming tokens whose worker is killed mid-step: ``python app_streams.py ADDRESS``.

Each round the workflow writes ``wf <i>`` to the stream ``tokens`` and calls a step
that writes ``step <i>``. With ``ST_HANG=1`` the step of round ``HANG_AT`` stops
after writing, and the process prints ``hung``: the test then SIGKILLs it.
"""

from __future__ import annotations

import os
import sys
import threading

import duralog

ROUNDS = 6
HANG_AT = 3


@duralog.step
def st_generate(i: int) -> str:
    duralog.write_stream("tokens", f"step {i}")
    if os.environ.get("ST_HANG") == "1" and i == HANG_AT:
        print("hung", flush=True)
        threading.Event().wait()  # until SIGKILL
    return f"r{i}"


@duralog.workflow
async def st_agent(rounds: int) -> int:
    for i in range(rounds):
        duralog.write_stream("tokens", f"wf {i}")
        await st_generate(i)
    duralog.close_stream("tokens")
    return rounds


def main(address: str) -> None:
    options = {"lease_seconds": 2.0, "poll_interval": 0.05}
    with duralog.Engine(address, **options) as engine:  # type: ignore[arg-type]
        engine.start(st_agent, ROUNDS, id="agent")
        threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1])
