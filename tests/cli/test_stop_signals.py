"""A long-running command stops on SIGTERM wherever the signal lands.

``duralog worker`` once set a ``threading.Event`` from its SIGTERM handler. A
handler runs in the main thread between two bytecodes, also while that thread
holds the event's own lock inside ``Event.wait``; ``set()`` then waited for that
lock forever and the worker ignored the signal (seen once in a full suite run: the
worker still running 60 s after SIGTERM). The waiting loop below spends nearly all
its time in ``wait`` so that, with the old handler, most of these processes hang.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from support import PATIENCE, popen, read_line

WAITER = """
from duralog._signals import StopSignals
stop = StopSignals()
print("ready", flush=True)
while not stop.wait(0):
    pass
print("stopped", stop.received, flush=True)
"""

PROCESSES = 12


def test_every_waiter_stops_on_sigterm() -> None:
    waiters = [
        popen([sys.executable, "-c", WAITER], stdout=subprocess.PIPE, text=True)
        for _ in range(PROCESSES)
    ]
    for waiter in waiters:
        assert read_line(waiter.stdout) == "ready"  # its handler is installed
    for waiter in waiters:
        waiter.send_signal(signal.SIGTERM)
    for waiter in waiters:
        assert read_line(waiter.stdout) == f"stopped [{int(signal.SIGTERM)}]"
        assert waiter.wait(timeout=PATIENCE) == 0
