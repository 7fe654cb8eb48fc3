"""``PendingCalls``: the calls whose coroutines have not started, whatever happens to
them (started, never awaited, closed before they start), in call order."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from duralog.replay.waits import PendingCalls

# What happens to each call: started and awaited to its end, closed before it starts
# (as a task cancelled first leaves it), or never touched.
fates = st.lists(st.sampled_from(["run", "close", "leave"]), max_size=12)


@given(fates, st.booleans(), st.integers(min_value=0, max_value=12))
def test_pending_calls_are_the_unstarted_ones_in_call_order(
    plan: list[str], lazy: bool, turn_at: int
) -> None:
    loop = asyncio.new_event_loop()
    try:
        calls, scheduled = PendingCalls(), []

        def schedule(name: str) -> asyncio.Future[Any]:
            scheduled.append(name)
            future = loop.create_future()
            future.set_result(name)
            return future

        made = [
            calls.call(lambda name=f"call{i}": schedule(name), f"call{i}", lazy)
            for i in range(len(plan))
        ]
        for i, fate in enumerate(plan):
            if fate == "run":
                assert loop.run_until_complete(made[i]) == f"call{i}"
            elif fate == "close":
                made[i].close()
            if i == turn_at:
                calls.forget_started()  # after a loop turn, at any point
        # (format 1's calls, scheduled at the call, go by their wrapper's name)
        waiting = [f"call{i}" if lazy else "_await" for i, f in enumerate(plan) if f == "leave"]
        assert calls.never_awaited() == waiting
        calls.forget_started()
        assert calls.never_awaited() == waiting
        assert bool(calls) == bool(waiting)
        run = [f"call{i}" for i, fate in enumerate(plan) if fate == "run"]
        assert scheduled == (run if lazy else [f"call{i}" for i in range(len(plan))])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # closing them leaves no "never awaited"
            calls.close()
            del made
            gc.collect()
        assert not calls and calls.never_awaited() == []
    finally:
        loop.close()
