"""A step attempt leaves no reference cycle behind: its objects are freed when it ends,
not by Python's cyclic collector, whose passes get longer with every object left to
it (a worker running thousands of steps would spend its time there)."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

import duralog
from duralog.engine.heartbeats import AttemptControl

controls: list[weakref.ref[AttemptControl]] = []


@duralog.step(name="garbage.keep_control")
def keep_control(i: int) -> int:
    info = duralog.step_info()
    assert info is not None and info.control is not None
    controls.append(weakref.ref(info.control))
    return i


@duralog.step(name="garbage.keep_control_inline", inline=True)
def keep_control_inline(i: int) -> int:
    return keep_control.fn(i)  # type: ignore[return-value]


@duralog.workflow(name="garbage.steps")
async def steps(n: int, inline: bool) -> int:
    step = keep_control_inline if inline else keep_control
    return sum([await step(i) for i in range(n)])


@pytest.fixture
def no_cyclic_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_an_ended_attempt_is_freed_without_the_cyclic_collector(
    tmp_path: Path, no_cyclic_collector: None, inline: bool
) -> None:
    controls.clear()
    with duralog.Engine(tmp_path / "log.db") as engine:
        assert engine.start(steps, 5, inline).result(timeout=60) == 10
        assert len(controls) == 5
        # The last attempt's objects go once the workflow's execution lets go of them:
        # wait for that (the collector stays off), then every control must be gone.
        deadline = time.monotonic() + 30
        while any(ref() is not None for ref in controls) and time.monotonic() < deadline:
            time.sleep(0.01)
        alive = [ref() for ref in controls if ref() is not None]
        assert alive == [], f"attempt controls kept alive by a reference cycle: {alive}"
