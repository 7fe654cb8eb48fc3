"""``handle.update``: validated before it is sent, recorded once accepted, answered once,
on real SQLite files (the SIGKILL case is in tests/crash/test_update_crash.py)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support import PATIENCE, wait_for

import duralog
from duralog.replay.checker import check
from duralog.replay.definitions import Registry
from duralog.replay.history import History
from duralog.replay.updates import Request, signal_name
from duralog.store import codec


@duralog.step(name="eu_reserve")
def reserve(item: str) -> str:
    return item.upper()


@duralog.workflow(name="eu_cart")
async def cart(limit: int) -> list[str]:
    items: list[str] = []

    def has_room(item: str) -> None:
        if len(items) >= limit:
            raise ValueError(f"the cart holds {limit} items at most")

    async def add(item: str) -> int:
        items.append(item)  # takes its place at once: the next validator sees it
        await reserve(item)
        return len(items)

    async def slow(seconds: float) -> str:
        await duralog.sleep(seconds)
        return "slept"

    duralog.on_update("add_item", add, validator=has_room)
    duralog.on_update("fails", lambda: [][0])
    duralog.on_update("slow", slow)
    duralog.on_query("items", lambda: items)
    await duralog.wait_signal("checkout")
    return items


def history_of(db: str, workflow_id: str) -> bytes:
    with duralog.Engine(db, worker=False) as engine:
        return msgspec.json.encode(engine.get(workflow_id).history())


def test_an_update_is_answered_and_recorded(engine: duralog.Engine) -> None:
    handle = engine.start(cart, 5, id="cart-1")
    assert handle.update("add_item", "apple", timeout=PATIENCE) == 1
    count = handle.update("add_item", "pear", timeout=PATIENCE, result_type=float)
    assert isinstance(count, float) and count == 2
    assert handle.query("items") == ["apple", "pear"]
    handle.signal("checkout")
    assert handle.result(timeout=PATIENCE) == ["apple", "pear"]
    kinds = [(e.kind, getattr(e.event, "name", "")) for e in handle.history()]
    assert kinds.count(("SignalReceived", "duralog.update:add_item")) == 2
    assert sum(e.kind == "StatePublished" for e in handle.history()) == 2
    assert check(History("cart-1", "eu_cart", handle.history()), [cart]).ok


@pytest.mark.parametrize(
    ("name", "payload", "said"),
    [
        ("add_item", "third", "its validator rejected it: ValueError: the cart holds 2 items"),
        ("add_item", 3, "the payload does not fit its handler: the payload (item): expected str"),
        ("remove_item", "x", "has no update handler 'remove_item' (registered: add_item, fails"),
    ],
)
def test_a_rejected_update_leaves_no_trace(
    engine: duralog.Engine, db: str, name: str, payload: Any, said: str
) -> None:
    handle = engine.start(cart, 2, id="full")
    handle.update("add_item", "a", timeout=PATIENCE)
    handle.update("add_item", "b", timeout=PATIENCE)
    before = history_of(db, "full")
    with pytest.raises(duralog.UpdateFailed) as caught:
        handle.update(name, payload, timeout=PATIENCE)
    assert caught.value.rejected and said in str(caught.value)
    assert str(caught.value).startswith(f"update {name!r} of workflow 'full' was rejected: ")
    # The witness that nothing was sent: a signal sent after it is the next thing logged.
    handle.signal("checkout")
    assert handle.result(timeout=PATIENCE) == ["a", "b"]
    assert history_of(db, "full").startswith(before[:-1])
    assert [e.kind for e in handle.history()][-2:] == ["SignalReceived", "WorkflowCompleted"]
    assert len(handle.history()) == len(msgspec.json.decode(before)) + 2


def test_a_handler_that_raises_fails_the_update_not_the_workflow(engine: duralog.Engine) -> None:
    handle = engine.start(cart, 5, id="cart-1")
    with pytest.raises(duralog.UpdateFailed) as caught:
        handle.update("fails", timeout=PATIENCE)
    assert not caught.value.rejected
    assert caught.value.cause is not None and caught.value.cause.type == "IndexError"
    assert handle.update("add_item", "still", timeout=PATIENCE) == 1


def test_the_state_changed_between_sending_and_delivery(db: str) -> None:
    """Both updates pass the check while no worker runs; delivered in turn, the second
    finds the cart full: its rejection is the recorded answer."""
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        handle = engine.start(cart, 1, id="race")
        wait_for(lambda: handle.query("items") == [])
    answers: dict[str, Any] = {}
    with duralog.Engine(db, worker=False) as sender:
        waiting = sender.get("race")

        def send(item: str) -> None:
            try:
                answers[item] = waiting.update("add_item", item, timeout=PATIENCE)
            except duralog.UpdateFailed as exc:
                answers[item] = exc

        senders = [threading.Thread(target=send, args=(item,)) for item in ("x", "y")]
        for thread in senders:
            thread.start()
        # Both were checked and sent before any worker runs: two update signals wait.
        wait_for(lambda: len(sender.store.inbox("race")) == 2)
        with duralog.Engine(db, durability="normal", poll_interval=0.05):
            for thread in senders:
                thread.join(PATIENCE)
    rejected = [v for v in answers.values() if isinstance(v, duralog.UpdateFailed)]
    assert sorted(answers) == ["x", "y"] and len(rejected) == 1
    assert rejected[0].rejected and "the cart holds 1 items at most" in str(rejected[0])
    assert 1 in answers.values()


def test_no_answer_in_time_and_ended_workflows(db: str) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        handle = engine.start(cart, 5, id="cart-1")
        wait_for(lambda: handle.query("items") == [])
    with (
        duralog.Engine(db, worker=False) as sender,  # nobody delivers it
        pytest.raises(duralog.UpdateTimeout, match=r"no answer within 0\.2s"),
    ):
        sender.get("cart-1").update("add_item", "late", timeout=0.2)
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        handle = engine.get("cart-1")
        # The late update is still carried out, once a worker delivers it.
        wait_for(lambda: handle.query("items") == ["late"])
        # A handler still running when the workflow ends never answers.
        slow: list[BaseException] = []
        thread = threading.Thread(target=lambda: _catch(slow, handle.update, "slow", 3600))
        thread.start()
        wait_for(lambda: any(e.kind == "TimerStarted" for e in handle.history()))
        handle.signal("checkout")
        thread.join(PATIENCE)
        assert handle.result(timeout=PATIENCE) == ["late"]
    assert isinstance(slow[0], duralog.UpdateFailed)
    assert "ended (COMPLETED) before answering it" in str(slow[0])
    with (
        duralog.Engine(db, worker=False) as engine,
        pytest.raises(duralog.UpdateFailed, match="already COMPLETED; nothing was sent"),
    ):
        engine.get("cart-1").update("add_item", "after")


def _catch(found: list[BaseException], fn: Any, *args: Any) -> None:
    try:
        fn(*args, timeout=PATIENCE)
    except BaseException as exc:  # kept for the test to look at
        found.append(exc)


def test_the_code_must_be_registered_here(engine: duralog.Engine, db: str) -> None:
    handle = engine.start(cart, 5, id="cart-1")
    wait_for(lambda: handle.query("items") == [])
    with (
        duralog.Engine(db, worker=False, registry=Registry()) as elsewhere,
        pytest.raises(duralog.RegistrationError, match="--app MODULE"),
    ):
        elsewhere.get("cart-1").update("add_item", "x")
    assert handle.query("items") == []


def test_updates_to_an_encrypted_log(db: str) -> None:
    vault = duralog.AesGcmCodec({"k1": os.urandom(32)}, "k1")
    with duralog.Engine(db, payload_codec=vault, poll_interval=0.05) as engine:
        handle = engine.start(cart, 5, id="secret")
        assert handle.update("add_item", "SECRET-ITEM", timeout=PATIENCE) == 1
    for path in Path(db).parent.glob(Path(db).name + "*"):  # the file, its WAL
        assert b"SECRET-ITEM" not in path.read_bytes()  # the request and answer are sealed
    with (
        duralog.Engine(db, worker=False) as keyless,
        pytest.raises(duralog.PayloadError, match="'k1'"),
    ):
        keyless.get("secret").update("add_item", "x")


def test_update_signals_cannot_be_sent_as_plain_signals(engine: duralog.Engine) -> None:
    handle = engine.start(cart, 5, id="cart-1")
    with pytest.raises(duralog.ConfigurationError, match="carry updates"):
        handle.signal("duralog.update:add_item", {"id": "forged", "payload": "x"})


@duralog.workflow(name="eu_rounds")
async def rounds(n: int) -> int:
    async def bump(by: int) -> int:
        return n + by

    async def stuck(_: object) -> None:
        await duralog.wait_signal("never")

    duralog.on_update("bump", bump)
    duralog.on_update("stuck", stuck)
    await duralog.wait_signal("next")
    if n < 2:
        duralog.continue_as_new(n + 1)
    return n


@duralog.workflow(name="eu_bump_then_continue")
async def bump_then_continue(n: int) -> int:
    bumped = asyncio.Event()

    def bump(by: int) -> int:
        bumped.set()
        return n + by

    duralog.on_update("bump", bump)
    await bumped.wait()
    if n < 1:
        duralog.continue_as_new(n + 1)  # in the same turn as the answer
    return n


def test_an_update_answered_by_a_run_that_then_continued_as_new(engine: duralog.Engine) -> None:
    handle = engine.start(bump_then_continue, 0, id="rounds-1")
    assert handle.update("bump", 10, timeout=PATIENCE) == 10  # found in rounds-1~run1
    wait_for(lambda: engine.get("rounds-1").state().run == 2)
    assert handle.update("bump", 5, timeout=PATIENCE) == 6  # answered by run 2


def test_an_update_cut_short_by_continue_as_new_fails_at_once(engine: duralog.Engine) -> None:
    handle = engine.start(rounds, 0, id="rounds-2")
    failed: list[BaseException] = []

    def send() -> None:
        try:
            handle.update("stuck", None)  # no timeout: only the run's end can stop it
        except duralog.UpdateFailed as exc:
            failed.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: "SignalReceived" in [e.kind for e in handle.history()])
    handle.signal("next")
    sender.join(PATIENCE)
    assert not sender.is_alive()
    assert "run 1 continued as new before answering it" in str(failed[0])


def test_an_update_sent_again_with_its_id_is_answered_once(engine: duralog.Engine) -> None:
    handle = engine.start(cart, 1, id="cart-id")
    assert handle.update("add_item", "apple", timeout=PATIENCE, update_id="add-1") == 1
    # The cart is full now: a new update would be rejected, the retry is not even checked.
    assert handle.update("add_item", "apple", timeout=PATIENCE, update_id="add-1") == 1
    with pytest.raises(duralog.UpdateFailed, match="holds 1 items"):
        handle.update("add_item", "pear", timeout=PATIENCE)
    assert handle.query("items") == ["apple"]
    handle.signal("checkout")
    assert handle.result(timeout=PATIENCE) == ["apple"]
    # Ended: the answer is still there for a retry, and nothing is sent.
    assert handle.update("add_item", "apple", timeout=PATIENCE, update_id="add-1") == 1
    events = handle.history()
    assert sum(e.kind == "StepCompleted" for e in events) == 1  # the handler's step ran once
    assert [e.kind for e in events].count("SignalReceived") == 2  # add-1 and checkout
    with pytest.raises(duralog.ConfigurationError, match="update id must be a non-empty"):
        handle.update("add_item", "x", update_id="")


def test_two_requests_with_one_id_in_the_log_run_the_handler_once(db: str) -> None:
    """Sent twice before any worker ran (two senders racing, say): both are logged,
    and replay delivers the second to no one; both senders get the first's answer."""
    with duralog.Engine(db, worker=False) as engine:
        engine.start(cart, 5, id="twice")
        request = codec.encode(Request(id="dup", payload="plum"))
        for _ in range(2):
            engine.store.send("twice", "signal", signal_name("add_item"), bytes(request), 0.0)
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        handle = engine.get("twice")
        assert handle.update("add_item", "plum", timeout=PATIENCE, update_id="dup") == 1
        # The witness: a later update finds one item before it, not two.
        assert handle.update("add_item", "fig", timeout=PATIENCE) == 2
        assert handle.query("items") == ["plum", "fig"]
        events = handle.history()
    assert [e.kind for e in events].count("SignalReceived") == 3
    assert sum(e.kind == "StatePublished" for e in events) == 2
    assert check(History("twice", "eu_cart", events), [cart]).ok


def test_an_update_answered_by_an_earlier_run_is_not_run_again(engine: duralog.Engine) -> None:
    handle = engine.start(bump_then_continue, 0, id="rounds-id")
    assert handle.update("bump", 10, timeout=PATIENCE, update_id="b-1") == 10
    wait_for(lambda: engine.get("rounds-id").state().run == 2)
    # Run 2 would answer 11: the retry gets run 1's answer, and run 2 still waits.
    assert handle.update("bump", 10, timeout=PATIENCE, update_id="b-1") == 10
    assert [e.kind for e in handle.history()].count("SignalReceived") == 0
    assert handle.update("bump", 5, timeout=PATIENCE) == 6
    assert handle.result(timeout=PATIENCE) == 1
