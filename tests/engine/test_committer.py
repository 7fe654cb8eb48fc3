"""Group commit under contention: every request is written and answered exactly once."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from duralog.engine.committer import Committer
from duralog.store import events as ev
from duralog.store.base import Append, NewWorkflow
from duralog.store.events import LogEntry
from duralog.store.sqlite import SQLiteStore


@pytest.fixture
def busy_switching() -> Iterator[None]:
    # Switch threads as often as possible, so the writer swaps its queues while
    # callers are in the middle of submitting.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_no_request_is_lost_while_the_writer_swaps_its_queues(
    tmp_path: Path, busy_switching: None
) -> None:
    # Regression: a request queued while the writer took the previous batch went
    # into the taken list and was never written; its caller waited forever.
    store = SQLiteStore(tmp_path / "log.db", durability="normal")
    committer = Committer(store)
    count = 1000
    started = ev.WorkflowStarted(name="flow", args=msgspec.Raw(b"[]"))
    fences = committer.create(
        [NewWorkflow(f"w-{i}", "flow", LogEntry(1, 1.0, started)) for i in range(count)]
    )

    async def append_all() -> list[bool]:
        pending = []
        for seq in range(2, 12):
            for i, fence in enumerate(fences):
                assert fence is not None
                entry = LogEntry(seq, 2.0, ev.TimerStarted(fire_at=9.0))
                pending.append(committer.append(Append(f"w-{i}", fence, [entry])))
            await asyncio.sleep(0)
        return await asyncio.wait_for(asyncio.gather(*pending), timeout=60)

    results = asyncio.run(append_all())
    committer.close()
    assert results == [True] * (count * 10)
    assert all(w.last_seq == 11 for w in store.list_workflows())
    store.close()
