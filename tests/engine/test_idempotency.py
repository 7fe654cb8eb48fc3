"""Idempotency keys: one per step of each run, the same for every attempt of that step.

The service here deduplicates by key, as payment APIs do: a repeated key is dropped.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duralog

charges: dict[str, int] = {}  # key -> cents: what the payment service applied
attempts: list[str] = []
_lock = threading.Lock()


def apply_charge(key: str, cents: int) -> None:
    with _lock:
        charges.setdefault(key, cents)  # a key seen before is dropped


@duralog.step
def charge(cents: int) -> str:
    key = duralog.step_info().idempotency_key
    apply_charge(key, cents)
    return key


@duralog.workflow(name="monthly_billing")
async def billing(month: int, months: int) -> int:
    await charge(100 + month)
    if month < months:
        duralog.continue_as_new(month + 1, months)
    return month


@duralog.step(retry=duralog.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False))
def flaky_charge(cents: int) -> str:
    info = duralog.step_info()
    with _lock:
        attempts.append(info.idempotency_key)
    if info.attempt < 3:
        raise ConnectionError("the payment service did not answer")
    return info.idempotency_key


@duralog.workflow(name="flaky_billing")
async def flaky_billing() -> str:
    return await flaky_charge(5)


def test_every_run_of_a_continued_workflow_charges_once(engine: duralog.Engine) -> None:
    charges.clear()
    assert engine.run(billing, 1, 3, id="sub-1", timeout=30) == 3
    assert sorted(charges.values()) == [101, 102, 103]  # no run's charge was dropped
    assert all(key.startswith("sub-1:") for key in charges)


def test_a_reused_workflow_id_gets_new_keys(tmp_path: Path) -> None:
    charges.clear()
    db = str(tmp_path / "log.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        assert engine.run(billing, 1, 1, id="sub-2", timeout=30) == 1
        assert [r.id for r in engine.store.prune(time.time() + 1, dry_run=False)] == ["sub-2"]
        assert engine.run(billing, 1, 1, id="sub-2", timeout=30) == 1  # the id again
    assert sorted(charges.values()) == [101, 101]


def test_retries_of_a_step_keep_its_key(engine: duralog.Engine) -> None:
    attempts.clear()
    key = engine.run(flaky_billing, id="flaky-1", timeout=30)
    assert attempts == [key, key, key]
