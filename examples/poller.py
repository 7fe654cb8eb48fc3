"""An endless workflow with a bounded log: it polls, then continues as new.

    python examples/poller.py

Every run polls a feed a few times and then calls ``duralog.continue_as_new``
with its cursor: the run's history is archived as ``<id>~run<N>`` and the next
run starts with an empty log under the same id. A ``stop`` signal ends it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duralog

POLLS_PER_RUN = 3


@duralog.step
def poll(cursor: int) -> int:
    return cursor + 10  # pretend ten new items arrived


@duralog.workflow
async def follow_feed(cursor: int, runs: int) -> int:
    for _ in range(POLLS_PER_RUN):
        cursor = await poll(cursor)
        duralog.publish("cursor", cursor)
        await duralog.sleep(0.05)
    if runs > 1:
        duralog.continue_as_new(cursor, runs - 1)
    await duralog.wait_signal("stop")
    return cursor


def main() -> None:
    db = str(Path(tempfile.mkdtemp(prefix="duralog-poller-")) / "feeds.db")
    with duralog.Engine(db) as engine:
        handle = engine.start(follow_feed, 0, 4, id="feed")
        handle.signal("stop")  # waits in the inbox until the last run asks for it
        print(f"  final cursor {handle.result(timeout=30)}")
        print(f"  the live log of 'feed' holds {len(handle.history())} events")
        for record in sorted(engine.list(), key=lambda r: r.id):
            print(f"  {record.id:<10} {record.status.value:<10} {record.last_seq:>3} events")


if __name__ == "__main__":
    main()
