"""A step's close of a stream counts only if its attempt succeeds: an attempt that
closes and then fails must not end the stream before the values of the retry that
completes (a step's values reach readers at least once)."""

from __future__ import annotations

from support import PATIENCE

import duralog


@duralog.step(name="sc_answer", retry=duralog.RetryPolicy(max_attempts=2, initial_interval=0.01))
def answer() -> str:
    attempt = duralog.step_info().attempt
    duralog.write_stream("tokens", f"token of attempt {attempt}")
    duralog.close_stream("tokens")  # done streaming...
    if attempt == 1:
        raise ConnectionError("...but saving the answer failed")  # a transient error after it
    return f"answer of attempt {attempt}"


@duralog.workflow(name="sc_chat")
async def chat() -> str:
    return await answer()


def test_the_values_of_the_successful_retry_reach_readers(engine: duralog.Engine) -> None:
    handle = engine.start(chat, id="sc-1")
    assert handle.result(timeout=PATIENCE) == "answer of attempt 2"
    read = list(handle.read_stream("tokens", timeout=PATIENCE))
    assert read == ["token of attempt 1", "token of attempt 2"], read
