"""StepThreads: sync steps run on pool threads and their outcomes come back to the loop,
many at once in one hand-off, each to its own future."""

from __future__ import annotations

import asyncio
import contextvars
import threading

from support import PATIENCE, wait_for

from duralog.engine.threads import StepThreads


def test_calls_that_end_together_each_get_their_own_outcome() -> None:
    release = threading.Event()

    def call(i: int) -> int:
        release.wait(10)  # all of them end at once, while the loop is busy
        if i % 3 == 0:
            raise ValueError(f"call {i}")
        return i * i

    async def main() -> list[object]:
        threads = StepThreads(asyncio.get_running_loop(), max_threads=8)
        try:
            futures = [threads.run(contextvars.copy_context(), call, i) for i in range(40)]
            release.set()
            return await asyncio.gather(*futures, return_exceptions=True)
        finally:
            threads.close()

    outcomes = asyncio.run(main())
    for i, outcome in enumerate(outcomes):
        if i % 3 == 0:
            assert isinstance(outcome, ValueError) and str(outcome) == f"call {i}"
        else:
            assert outcome == i * i


def test_an_outcome_after_the_loop_closed_is_dropped_and_the_thread_serves_on() -> None:
    loop = asyncio.new_event_loop()
    threads = StepThreads(loop, max_threads=1)
    started, finish = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        finish.wait(10)
        return "late"

    future = threads.run(contextvars.copy_context(), slow)
    assert started.wait(10)
    loop.close()  # the engine stopped while the call ran
    finish.set()
    # The one thread lives on through answers it cannot give: later calls still run.
    for _ in range(2):
        done = threading.Event()
        threads.run(contextvars.copy_context(), done.set)
        assert done.wait(10)
    assert not future.done()
    threads.close()


def test_every_burst_wakes_the_loop_again() -> None:
    async def main() -> None:
        threads = StepThreads(asyncio.get_running_loop(), max_threads=4)
        try:
            for r in range(3):
                results = await asyncio.gather(
                    *(threads.run(contextvars.copy_context(), int, f"{r}{i}") for i in range(10))
                )
                assert results == [int(f"{r}{i}") for i in range(10)]
        finally:
            threads.close()

    asyncio.run(main())


def test_a_stop_iteration_fails_its_call_and_strands_no_other_outcome() -> None:
    # Future.set_exception refuses StopIteration: the outcomes that end in the same
    # hand-off must all still be settled (a bare next() in a step is enough).
    both_done = threading.Barrier(2, timeout=10)

    def empty_next() -> int:
        both_done.wait()
        return int(next(iter([])))

    def fine() -> int:
        both_done.wait()
        return 7

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        threads = StepThreads(loop, max_threads=2)
        try:
            futures = [threads.run(contextvars.copy_context(), f) for f in (empty_next, fine)]
            # Hold the loop until both outcomes wait for it: they are settled together.
            wait_for(lambda: len(threads._done) == 2, what="both outcomes queued")
            gathered = asyncio.gather(*futures, return_exceptions=True)
            return await asyncio.wait_for(gathered, PATIENCE)  # (it hung: a stranded outcome)
        finally:
            threads.close()

    bad, good = asyncio.run(main())
    assert good == 7
    assert isinstance(bad, RuntimeError) and isinstance(bad.__cause__, StopIteration)
