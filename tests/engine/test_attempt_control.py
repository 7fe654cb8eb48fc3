"""``AttemptControl``: what a step's heartbeats leave for the worker to store.

The property: whatever the order of heartbeats (from the step) and takes (by the
worker), every change of the details is either taken or announced by ``on_change``,
never lost; ``on_change`` is not repeated while the worker has not taken the last
change; and what is taken is always the newest details.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from duralog.engine.heartbeats import AttemptControl
from duralog.errors import PayloadError, StepCancelled
from duralog.store import codec

# A step's heartbeat (an int: new details, or None: alive only), or the worker's take.
Op = st.one_of(
    st.integers(0, 3).map(lambda n: ("beat", n)), st.just(("beat", None)), st.just(("take", None))
)


@given(st.lists(Op, max_size=40))
def test_every_change_is_taken_or_announced(ops: list[tuple[str, int | None]]) -> None:
    control = AttemptControl("wf", "import", 2, 1, previous=bytes(codec.encode(0)))
    announced = 0
    newest: int = 0
    pending = False  # a change the worker has not taken
    told = False  # on_change was called since the last take that found nothing

    def on_change() -> None:
        nonlocal announced
        announced += 1

    control.on_change = on_change
    for op, value in ops:
        if op == "beat":
            before = announced
            control.beat(value)
            if value is not None and value != newest:
                newest, pending = value, True
                assert announced == before + (0 if told else 1)
                told = True
            else:
                assert announced == before
        else:
            taken = control.take()
            if pending:
                assert taken is not None and codec.decode(taken) == newest
                pending = False
            else:
                assert taken is None
                told = False
        assert codec.decode(control.latest or b"null") == newest


def test_a_stopped_attempt_raises_at_its_heartbeat_with_the_first_reason() -> None:
    control = AttemptControl("wf", "import", 2, 3)
    control.beat({"offset": 1})
    control.stop("workflow 'wf' was cancelled")
    control.stop("a later reason")
    with pytest.raises(StepCancelled) as stopped:
        control.beat({"offset": 2})
    assert stopped.value.reason == "workflow 'wf' was cancelled"
    assert (stopped.value.workflow_id, stopped.value.seq, stopped.value.attempt) == ("wf", 2, 3)
    assert not stopped.value.lease_lost
    assert codec.decode(control.latest or b"null") == {"offset": 1}  # not replaced


def test_details_over_the_payload_limit_are_refused_in_the_step() -> None:
    control = AttemptControl("wf", "import", 2, 1, max_bytes=50)
    with pytest.raises(PayloadError, match=r"heartbeat details of step 'import' \(seq 2\) of"):
        control.beat("x" * 100)
    assert control.latest is None
