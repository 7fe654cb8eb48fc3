"""Storage faults: a locked database, a full disk, a corrupt event. Nothing committed is lost."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

import duralog
from duralog.store.sqlite import SQLiteStore

ran: list[int] = []


@duralog.step
def record(i: int) -> int:
    ran.append(i)
    return i


@duralog.workflow
async def counts(n: int) -> int:
    total = 0
    for i in range(n):
        total += await record(i)
        await duralog.sleep(0.01)
    return total


def test_a_database_locked_past_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    store = SQLiteStore(path, durability="normal", busy_timeout=0.05)
    with duralog.Engine(store, poll_interval=0.05, error_backoff=0.2) as engine:
        handle = engine.start(counts, 30)
        while len(ran) < 5:
            time.sleep(0.005)
        # Another process holds the write lock for a while: commits fail meanwhile.
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        time.sleep(0.5)
        blocker.execute("ROLLBACK")
        blocker.close()
        assert handle.result(timeout=20) == sum(range(30))
    history = SQLiteStore(path).read_events(handle.id)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert sorted(set(ran)) == list(range(30))


def test_a_corrupt_event_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with duralog.Engine(str(path), durability="normal") as engine:
        handle = engine.start(counts, 100, id="victim")
        while len(handle.history()) < 10:
            time.sleep(0.005)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE events SET body = '{\"kind\": 42' WHERE workflow_id = 'victim' AND seq = 4"
        )
    with duralog.Engine(str(path), durability="normal") as engine:
        assert engine.run(counts, 3, timeout=10) == 3  # the others are served
        with pytest.raises(duralog.CorruptEventError, match="event 4 of workflow 'victim'"):
            engine.get("victim").history()
        assert engine.get("victim").record().owner is None  # left alone, not half-run


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk(tmp_path: Path) -> None:
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
            assert handle.result(timeout=10) == 10
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
            time.sleep(0.5)  # it cannot advance meanwhile
            filler.unlink()  # space again: it resumes from its log
            assert stuck.result(timeout=30) == sum(range(200))
            assert engine.get("before").result(timeout=5) == 10
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
