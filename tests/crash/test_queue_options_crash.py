"""Dedup ids, partitions and delayed starts survive a SIGKILLed worker, on both stores.

A worker takes one workflow per tenant off a partitioned queue (``concurrency=1``
per partition) and is killed in the middle of their steps. While it is dead its
workflows keep their dedup ids (RUNNING, their owner gone); a fresh worker takes
them over, still one per tenant, runs the delayed one no sooner than its start, and
once each has ended its dedup id is free again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import PATIENCE, load_app, peak, popen, read_line, wait_for

import duralog

HERE = Path(__file__).parent
app = load_app(HERE / "app_queue_options.py")


def rows(ledger: Path) -> list[list[str]]:
    return [line.split() for line in ledger.read_text().splitlines()] if ledger.exists() else []


def test_queue_options_survive_a_killed_worker(address: str, tmp_path: Path) -> None:
    ledger, go = tmp_path / "ledger", tmp_path / "go"
    env = {**os.environ, "OPTIONS_LEDGER": str(ledger), "OPTIONS_GO": str(go)}
    q = app.tenants
    with duralog.Engine(address, worker=False, queues=[q]) as client:
        jobs = [
            client.start(app.tenant_export, t, i, queue=q, partition=t, dedup_id=f"{t}-{i}")
            for t, i in (("a", 0), ("a", 1), ("b", 0))
        ]
        delayed = client.start(app.tenant_export, "c", 0, queue=q, partition="c", delay=3)
        record = client.store.get_workflow(delayed.id)
        assert record is not None and record.start_at is not None
        due = record.start_at
    worker = popen(
        [sys.executable, str(HERE / "app_queue_options.py"), address],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert read_line(worker.stdout) == "ready"
    # One per tenant at once: a-0 and b-0 begin, a-1 waits its turn.
    wait_for(
        lambda: {r[2] for r in rows(ledger)} >= {"a", "b"}, what="a step of each tenant to begin"
    )
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=PATIENCE)
    begun = rows(ledger)
    assert sorted(r[2] for r in begun if r[2] != "c") == ["a", "b"]  # c: if it came due
    killed = {r[1] for r in begun}
    with duralog.Engine(address, worker=False, queues=[q]) as client:
        statuses = [client.get(j.id).status() for j in jobs]
        assert statuses.count(duralog.WorkflowStatus.RUNNING) == 2
        with pytest.raises(duralog.DuplicateWorkflow) as refused:
            client.start(app.tenant_export, "a", 9, queue=q, partition="a", dedup_id="a-0")
        assert refused.value.workflow_id == jobs[0].id
    go.touch()
    worker = popen(
        [sys.executable, str(HERE / "app_queue_options.py"), address],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert read_line(worker.stdout) == "ready"
    with duralog.Engine(address, worker=False, queues=[q]) as client:
        results = [client.get(j.id).result(timeout=PATIENCE) for j in [*jobs, delayed]]
        assert results == ["a-0", "a-1", "b-0", "c-0"]
        # Ended: the dedup id is free again.
        again = client.start(app.tenant_export, "a", 0, queue=q, partition="a", dedup_id="a-0")
        assert again.id != jobs[0].id
        again.cancel()
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=PATIENCE)
    found = rows(ledger)
    ours = {j.id for j in [*jobs, delayed]}  # (the second a-0 may have run too)
    found = [r for r in found if r[3].split(":")[0] in ours]
    ends = [r for r in found if r[0] == "end"]
    assert sorted(r[3] for r in ends) == sorted({r[3] for r in ends})  # each step ended once
    assert len(ends) == 4
    # The killed attempts ran again under the same key; never two of a tenant at once.
    for tenant in "abc":
        spans: dict[str, list[float]] = {}
        for r in found:
            if r[2] == tenant and r[1] not in killed:  # the second worker's
                spans.setdefault(r[3], []).append(float(r[4]))
        assert peak([(s[0], s[-1]) for s in spans.values()]) <= 1
    assert all(float(r[4]) >= due for r in found if r[2] == "c")
