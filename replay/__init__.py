"""The functional core: fold, the deterministic loop, the workflow instance, replay checks.

The replay API for tests and tools::

    from duralog import replay

    history = replay.load_history(open("order-1.json", "rb").read())
    report = replay.check(history, [checkout])          # or a {name: workflow} mapping
    assert report.ok, report.error
    state = replay.state_at(history, 7)                  # the derived state after event 7
"""

from .checker import ReplayReport, check, replay_history, state_at
from .history import History, dump_history, load_history

__all__ = [
    "History",
    "ReplayReport",
    "check",
    "dump_history",
    "load_history",
    "replay_history",
    "state_at",
]
