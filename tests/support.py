"""Helpers the tests share. ``tests/`` is on ``sys.path`` (pyproject's pytest
``pythonpath``): ``from support import wait_for``."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType


def load_app(path: Path, name: str | None = None) -> ModuleType:
    """Import the app module at ``path`` once (tests run with
    ``--import-mode=importlib``: their folders are not on ``sys.path``), so that
    its workflows are registered in this process as in the workers that run it."""
    name = name or path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def wait_for(condition: Callable[[], object], timeout: float = 20.0) -> None:
    """Poll ``condition`` until it is true; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)


def peak(intervals: Sequence[tuple[float, float]]) -> int:
    """The most of ``(start, end)`` intervals open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def race_close(
    call: Callable[[], object], close: Callable[[], None], threads: int = 3
) -> list[BaseException]:
    """Run ``call`` over and over in ``threads`` threads, run ``close()`` while they
    do, and return the exception that stopped each of them (a thread that never
    stops fails the test)."""
    started = threading.Event()
    stopped: list[BaseException] = []

    def repeat() -> None:
        while True:
            try:
                call()
            except BaseException as exc:
                stopped.append(exc)
                return
            started.set()

    workers = [threading.Thread(target=repeat, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    assert started.wait(timeout=20), "no call succeeded before close()"
    close()
    for worker in workers:
        worker.join(timeout=20)
        assert not worker.is_alive(), "a call went on after close()"
    return stopped
