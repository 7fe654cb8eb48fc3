"""Storage faults: a locked database, a full disk, a corrupt event. Nothing committed is lost."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import PATIENCE, wait_for

import duralog
from duralog.store.sqlite import SQLiteStore

ran: list[int] = []
go_on = threading.Event()  # step 5 waits for it


@pytest.fixture(autouse=True)
def step_five_goes_on() -> Iterator[None]:
    go_on.set()
    yield
    go_on.set()


@duralog.step
def record(i: int) -> int:
    ran.append(i)
    if i == 5:
        assert go_on.wait(PATIENCE)
    return i


@duralog.workflow
async def counts(n: int) -> int:
    total = 0
    for i in range(n):
        total += await record(i)
        await duralog.sleep(0.01)
    return total


def refused(caplog: pytest.LogCaptureFixture, workflow_id: str) -> bool:
    """Whether the worker logged that it dropped ``workflow_id`` after a refused write."""
    return any(
        f"dropped workflow {workflow_id}" in r.getMessage() and "refused a write" in r.getMessage()
        for r in caplog.records
    )


def test_a_database_locked_past_the_busy_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log.db"
    store = SQLiteStore(path, durability="normal", busy_timeout=0.05)
    go_on.clear()
    with duralog.Engine(store, poll_interval=0.05, error_backoff=0.2) as engine:
        handle = engine.start(counts, 30)
        wait_for(lambda: 5 in ran)  # step 5 runs, held
        # Another process holds the write lock until a commit of the workflow (step
        # 5's outcome, say) has failed on it.
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        go_on.set()
        wait_for(lambda: refused(caplog, handle.id))
        blocker.execute("ROLLBACK")
        blocker.close()
        assert handle.result(timeout=PATIENCE) == sum(range(30))
    history = SQLiteStore(path).read_events(handle.id)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert sorted(set(ran)) == list(range(30))


def test_a_corrupt_event_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with duralog.Engine(str(path), durability="normal") as engine:
        handle = engine.start(counts, 100, id="victim")
        wait_for(lambda: len(handle.history()) >= 10)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE events SET body = '{\"kind\": 42' WHERE workflow_id = 'victim' AND seq = 4"
        )
    with duralog.Engine(str(path), durability="normal") as engine:
        assert engine.run(counts, 3, timeout=PATIENCE) == 3  # the others are served
        with pytest.raises(duralog.CorruptEventError, match="event 4 of workflow 'victim'"):
            engine.get("victim").history()
        assert engine.get("victim").record().owner is None  # left alone, not half-run


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        path = mount / "log.db"
        with duralog.Engine(str(path), durability="normal", error_backoff=0.2) as engine:
            handle = engine.start(counts, 5, id="before")
            assert handle.result(timeout=PATIENCE) == 10
            filler = mount / "filler"
            stuck = engine.start(counts, 200, id="during")
            with open(filler, "ab", buffering=0) as f:  # fill the disk to the last byte
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError:
                    pass
            with pytest.raises(duralog.StoreError, match="refused a write"):
                engine.start(counts, 1, id="refused")  # a clear error, not a traceback
            wait_for(lambda: refused(caplog, "during"))  # it cannot advance meanwhile
            filler.unlink()  # space again: it resumes from its log
            assert stuck.result(timeout=PATIENCE) == sum(range(200))
            assert engine.get("before").result(timeout=PATIENCE) == 10
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
