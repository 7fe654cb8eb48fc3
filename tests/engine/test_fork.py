"""Fix forward: ``handle.fork`` and ``handle.restart``, end to end, on SQLite and PostgreSQL.

A fork copies its source's events before seq N into a new workflow, which runs on
with the code deployed now; the steps before N do not run again. The copy is
checked against that code first, and written in one transaction.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator

import msgspec
import pytest
from support import wait_for

import duralog
from duralog.engine import forks
from duralog.replay.definitions import Registry
from duralog.store import events as ev
from duralog.store.base import WorkflowQuery
from duralog.store.verify import verify

_lock = threading.Lock()
RUNS: Counter[str] = Counter()
#: What a payment service that deduplicates by idempotency key applied: key -> step.
APPLIED: dict[str, str] = {}
FIXED = {"on": False}


def ran(name: str) -> None:
    key = duralog.step_info().idempotency_key
    with _lock:
        RUNS[name] += 1
        APPLIED.setdefault(key, name)  # a key seen before is dropped, as a payment API does


@duralog.step
def fork_reserve(order: str) -> str:
    ran("reserve")
    return f"slot-{order}"


@duralog.step
def fork_charge(order: str) -> str:
    ran("charge")
    return f"ch-{order}"


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def fork_ship(order: str) -> str:
    ran("ship")
    if not FIXED["on"]:
        raise ValueError("the bug")
    return f"parcel-{order}"


@duralog.workflow(name="fork_order")
async def fork_order(order: str) -> str:
    slot = await fork_reserve(order)
    receipt = await fork_charge(order)
    return f"{slot} {receipt} {await fork_ship(order)}"


@duralog.workflow(name="fork_waiter")
async def fork_waiter(order: str) -> str:
    slot = await fork_reserve(order)
    return f"{slot} {await duralog.wait_signal('go')}"


@duralog.workflow(name="fork_parent")
async def fork_parent(order: str) -> str:
    return await fork_order(order)


@duralog.workflow(name="fork_looping")
async def fork_looping(run: int) -> int:
    await fork_reserve(f"run-{run}")
    if run < 2:
        duralog.continue_as_new(run + 1)
    return run


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    RUNS.clear()
    APPLIED.clear()
    FIXED["on"] = False
    yield
    FIXED["on"] = False


@pytest.fixture
def engine(address: str) -> Iterator[duralog.Engine]:
    with duralog.Engine(address, durability="normal", poll_interval=0.05) as e:
        yield e


def failed(engine: duralog.Engine, order: str) -> duralog.WorkflowHandle[str]:
    handle = engine.start(fork_order, order, id=order)
    with pytest.raises(duralog.WorkflowFailed, match="the bug"):
        handle.result(timeout=30)
    return handle


def seq_of(handle: duralog.WorkflowHandle[object], step: str) -> int:
    return next(seq for seq, s in handle.state().steps.items() if s.name == step)


def test_a_fork_reuses_the_results_before_its_seq_and_runs_the_rest(
    engine: duralog.Engine,
) -> None:
    source = failed(engine, "o-1")
    at = seq_of(source, "fork_ship")
    FIXED["on"] = True
    fork = source.fork(from_seq=at, id="o-1-fixed")
    assert fork.id == "o-1-fixed"
    assert fork.result(timeout=30) == "slot-o-1 ch-o-1 parcel-o-1"
    assert Counter(reserve=1, charge=1, ship=2) == RUNS

    original, copy = source.history(), fork.history()
    assert [(e.seq, e.at, e.event) for e in copy[1 : at - 1]] == [
        (e.seq, e.at, e.event) for e in original[1 : at - 1]
    ]
    first, started = original[0].event, copy[0].event
    assert isinstance(first, ev.WorkflowStarted) and isinstance(started, ev.WorkflowStarted)
    assert started.forked_from == ev.ForkOrigin(
        workflow_id="o-1", run=1, run_id=first.run_id, seq=at
    )
    assert started.run_id and started.run_id != first.run_id
    assert bytes(started.args) == bytes(first.args)
    assert source.status() is duralog.WorkflowStatus.FAILED  # left as it was
    (check,) = verify(engine.store, "o-1-fixed")
    assert check.ok, check.findings
    found = engine.store.find_workflows(WorkflowQuery(forked_from=("o-1",)))
    assert [r.id for r in found] == ["o-1-fixed"]


def test_forked_and_restarted_steps_get_keys_the_source_never_had(
    engine: duralog.Engine,
) -> None:
    source = failed(engine, "o-2")
    FIXED["on"] = True
    source.fork(from_seq=seq_of(source, "fork_charge")).result(timeout=30)
    source.restart().result(timeout=30)
    # The deduplicating service dropped nothing: every run of every step had its own key.
    assert Counter(APPLIED.values()) == Counter(reserve=2, charge=3, ship=3)
    assert sum(RUNS.values()) == len(APPLIED)


def test_restart_runs_everything_again_with_the_same_input(engine: duralog.Engine) -> None:
    source = failed(engine, "o-3")
    FIXED["on"] = True
    again = source.restart(id="o-3-again")
    assert again.result(timeout=30) == "slot-o-3 ch-o-3 parcel-o-3"
    assert Counter(reserve=2, charge=2, ship=2) == RUNS
    (started,) = again.history()[:1]
    assert isinstance(started.event, ev.WorkflowStarted)
    assert started.event.forked_from is not None and started.event.forked_from.seq == 2
    assert again.state().started_at >= source.state().started_at


def test_a_fork_of_a_running_workflow_leaves_it_running(engine: duralog.Engine) -> None:
    source = engine.start(fork_waiter, "o-4", id="o-4")
    wait = seq_of_waiting(source)
    fork = source.fork(from_seq=wait)
    source.signal("go", "source")
    assert source.result(timeout=30) == "slot-o-4 source"
    assert fork.status() is not duralog.WorkflowStatus.COMPLETED  # its own inbox, its own life
    fork.signal("go", "fork")
    assert fork.result(timeout=30) == "slot-o-4 fork"
    assert RUNS["reserve"] == 1


def seq_of_waiting(handle: duralog.WorkflowHandle[str]) -> int:
    """The seq after the source's reserve step completed (it then waits for a signal)."""

    def done() -> int | None:
        entries = handle.history()
        ends = [e.seq for e in entries if e.kind == "StepCompleted"]
        return ends[0] + 1 if ends else None

    return wait_for(done, what="the reserve step to complete")


def test_a_fork_of_a_child_answers_to_no_parent(engine: duralog.Engine) -> None:
    parent = engine.start(fork_parent, "o-5", id="p-5")
    with pytest.raises(duralog.WorkflowFailed):
        parent.result(timeout=30)
    (child,) = engine.store.find_workflows(duralog.store.base.WorkflowQuery(parents=("p-5",)), None)
    FIXED["on"] = True
    handle = engine.get(child.id)
    fork = handle.fork(from_seq=seq_of(handle, "fork_ship"))
    assert fork.result(timeout=30) == "slot-o-5 ch-o-5 parcel-o-5"
    assert fork.record().parent_id is None
    assert parent.status() is duralog.WorkflowStatus.FAILED


def test_a_continued_workflow_is_forked_from_the_run_given(engine: duralog.Engine) -> None:
    handle = engine.start(fork_looping, 1, id="loop")
    assert handle.result(timeout=30) == 2
    current = handle.fork(from_seq=5)  # copies run 2's reserve step
    assert current.result(timeout=30) == 2
    archived = engine.get("loop~run1").fork(from_seq=5, id="loop-run1-fork")
    assert archived.result(timeout=30) == 2  # run 1 continued as new, so the fork did too
    # The fork's own first run records where it came from.
    origin = engine.get("loop-run1-fork~run1").state().forked_from
    assert origin is not None and (origin.workflow_id, origin.run) == ("loop~run1", 1)
    assert RUNS["reserve"] == 2 + 1  # two runs, then the archived fork's run 2


def test_refused_forks_say_why_and_write_nothing(engine: duralog.Engine) -> None:
    source = failed(engine, "o-6")
    last = source.record().last_seq
    before = {r.id for r in engine.list()}
    ship = seq_of(source, "fork_ship")
    cases: list[tuple[int, type[Exception], str]] = [
        (1, duralog.ConfigurationError, rf"choose a seq from 2 .* to {last} \(its WorkflowFailed"),
        (last + 1, duralog.ConfigurationError, "is never copied"),
        (ship + 1, duralog.ConfigurationError, f"inside step 'fork_ship', begun at seq {ship}"),
        (4, duralog.ConfigurationError, "fork from seq 2 to run it again .* from seq 5 to keep"),
    ]
    for seq, error, message in cases:
        with pytest.raises(error, match=message):
            source.fork(from_seq=seq)
    with pytest.raises(duralog.WorkflowIdInUse, match="choose another id"):
        source.fork(from_seq=ship, id="o-6")
    with pytest.raises(duralog.ConfigurationError, match="reserved"):
        source.fork(from_seq=ship, id="bad~id")
    assert {r.id for r in engine.list()} == before
    with pytest.raises(duralog.WorkflowNotFound):
        forks.fork(engine.store, engine.registry, "nope", 3, None, now=0.0)


def test_a_fork_the_current_code_does_not_replay_is_refused_with_the_report(
    address: str, registry: Registry
) -> None:
    with duralog.Engine(address, durability="normal", poll_interval=0.05) as engine:
        failed(engine, "o-7")

    @duralog.workflow(name="fork_order", registry=registry)
    async def reordered(order: str) -> str:  # charge before reserve: diverges at seq 2
        receipt = await fork_charge(order)
        slot = await fork_reserve(order)
        return f"{slot} {receipt} {await fork_ship(order)}"

    with duralog.Engine(address, registry=registry, worker=False) as engine:
        source = engine.get("o-7")
        with pytest.raises(duralog.ForkDiverged) as caught:
            source.fork(from_seq=seq_of(source, "fork_ship"), id="o-7-fork")
        assert (caught.value.seq, caught.value.recorded, caught.value.attempted) == (
            2,
            "StepScheduled fork_reserve",
            "StepScheduled fork_charge",
        )
        assert "test_fork.py" in (caught.value.location or "")
        assert isinstance(caught.value, duralog.NondeterminismError)
        assert engine.store.get_workflow("o-7-fork") is None
        # From before the divergence, nothing recorded disagrees: the fork is written.
        assert source.fork(from_seq=2, id="o-7-restart").record().last_seq == 1


def test_an_encrypted_log_is_copied_sealed_and_needs_its_key(address: str) -> None:
    key = duralog.AesGcmCodec({"k1": os.urandom(32)}, "k1")
    with duralog.Engine(address, durability="normal", payload_codec=key) as engine:
        source = failed(engine, "o-8")
        at = seq_of(source, "fork_ship")
    with duralog.Engine(address, worker=False) as keyless:
        with pytest.raises(duralog.PayloadError, match=r"cannot fork 'o-8'.*'k1'"):
            keyless.get("o-8").fork(from_seq=at)
        assert len(keyless.list()) == 1
    FIXED["on"] = True
    with duralog.Engine(address, durability="normal", payload_codec=key) as engine:
        source = engine.get("o-8")
        fork = source.fork(from_seq=at)
        assert fork.result(timeout=30) == "slot-o-8 ch-o-8 parcel-o-8"
        copied = [msgspec.json.encode(e.event) for e in fork.history()[1 : at - 1]]
        assert copied == [msgspec.json.encode(e.event) for e in source.history()[1 : at - 1]]
        assert b"slot-o-8" not in b"".join(copied)  # still sealed
