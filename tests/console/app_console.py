"""Workflows for the console tests, loaded with ``--app app_console`` (cwd = this
folder). Names are prefixed ``ui_`` so they never clash with other tests' workflows."""

from __future__ import annotations

from typing import Any

import duralog

#: How many times ``ui_flaky`` fails before it succeeds.
FAILURES = 2


@duralog.step(name="ui_flaky", retry=duralog.RetryPolicy(max_attempts=5, initial_interval=0.01))
def flaky(key: str) -> str:
    attempt = duralog.step_info().attempt
    if attempt <= FAILURES:
        raise RuntimeError(f"attempt {attempt} of {key} fails")
    return f"done {key}"


@duralog.step(name="ui_echo_step")
def echo_step(value: Any) -> Any:
    return value


@duralog.workflow(name="ui_retrying")
async def retrying(key: str) -> str:
    """One step that fails twice, then succeeds: three attempts, two retries."""
    return await flaky(key)


@duralog.workflow(name="ui_echo")
async def echo(value: Any) -> Any:
    """Records ``value`` as its input, a step's result and its own result."""
    duralog.publish("echoed", value)
    return await echo_step(value)


@duralog.workflow(name="ui_waiter")
async def waiter(label: str) -> Any:
    """Waits for signal ``go``, then returns its payload."""
    await echo_step(label)
    return await duralog.wait_signal("go")


@duralog.workflow(name="ui_parent")
async def parent(n: int) -> Any:
    """A short timer, then a child ``ui_echo``."""
    await duralog.sleep(0.01)
    return await echo(n)


@duralog.workflow(name="ui_countdown")
async def countdown(n: int) -> int:
    """Continues as new until ``n`` is 0: runs archived as ``<id>~run1`` ..."""
    if n > 0:
        duralog.continue_as_new(n - 1)
    return await echo_step(n)
