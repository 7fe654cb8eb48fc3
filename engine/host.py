"""This process among others: its worker id, whether another local pid still runs,
and the real sources of the values workflows record (time, randomness)."""

from __future__ import annotations

import os
import random
import socket
import uuid

from .clock import Clock


class RealSources:
    """New non-deterministic values for live runs: the engine's clock and the OS's randomness."""

    def __init__(self, clock: Clock) -> None:
        self._random = random.SystemRandom()
        self._clock = clock

    def now(self) -> float:
        return self._clock.now()

    def random(self) -> float:
        return self._random.random()

    def uuid4(self) -> uuid.UUID:
        return uuid.uuid4()


def default_worker_id() -> str:
    """``host:pid:random``: unique per process, readable in ``duralog list``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
