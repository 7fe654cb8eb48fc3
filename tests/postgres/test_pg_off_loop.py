"""On PostgreSQL a worker's appends do not run on its event loop: a commit that waits
on the network delays the workflow it belongs to, and no other.

The store of these tests holds one workflow's append on an event the test controls
(a round trip that does not come back); another workflow must run to its end
meanwhile. Proven by the order of what happened, not by timing. Real PostgreSQL (the
``postgres_url`` fixture); without a server they are skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from support import PATIENCE

import duralog
from duralog.store.postgres import PostgresStore
from duralog.store.records import Append, Appended


@duralog.step
def offloop_add(a: int, b: int) -> int:
    return a + b


@duralog.workflow(name="offloop_steps")
async def offloop_steps(n: int) -> int:
    total = 0
    for i in range(n):
        total = await offloop_add(total, i)
    return total


class HeldStore(PostgresStore):
    """Holds the first append of workflow ``held`` until ``release`` is set."""

    def __init__(self, url: str, held: str) -> None:
        super().__init__(url, durability="normal")
        self.held = held
        self.holding = threading.Event()
        self.release = threading.Event()
        self.order: list[str] = []
        self._lock = threading.Lock()

    def note(self, what: str) -> None:
        with self._lock:
            self.order.append(what)

    def append(self, batch: Sequence[Append]) -> list[Appended]:
        if not self.holding.is_set() and any(i.workflow_id == self.held for i in batch):
            self.holding.set()
            self.note(f"{self.held} append held")
            self.release.wait(PATIENCE)
            self.note(f"{self.held} append released")
        return super().append(batch)


def test_a_held_append_stalls_no_other_workflow(postgres_url: str) -> None:
    store = HeldStore(postgres_url, held="slow")
    with duralog.Engine(store, durability="normal", poll_interval=0.1) as engine:
        try:
            slow = engine.start(offloop_steps, 3, id="slow")
            assert store.holding.wait(PATIENCE), "the held append never came"
            fast = engine.start(offloop_steps, 5, id="fast")
            # Before: the loop itself waited in the held append, and this timed out.
            assert fast.result(timeout=15) == 10
            store.note("fast completed")
        finally:
            store.release.set()
        assert slow.result(timeout=PATIENCE) == 3
        seqs = [e.seq for e in slow.history()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert store.order == ["slow append held", "fast completed", "slow append released"]


def test_appends_of_one_workflow_commit_in_order(postgres_url: str) -> None:
    """Several writers: a workflow's next append waits for its held one (never a gap
    nor a clash), while other workflows complete."""
    store = HeldStore(postgres_url, held="held")
    with duralog.Engine(store, durability="normal", poll_interval=0.1) as engine:
        try:
            held = engine.start(offloop_steps, 4, id="held")
            assert store.holding.wait(PATIENCE)
            others = [engine.start(offloop_steps, 3, id=f"other-{n}") for n in range(20)]
            assert [h.result(timeout=15) for h in others] == [3] * 20
            store.note("others completed")
        finally:
            store.release.set()
        assert held.result(timeout=PATIENCE) == 6
        seqs = [e.seq for e in held.history()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert store.order == ["held append held", "others completed", "held append released"]
