"""The functional core: fold, the deterministic loop, the workflow instance, replay checks.

The replay API for tests and tools::

    from duralog import replay

    history = replay.load_history(open("order-1.json", "rb").read())
    report = replay.check(history, [checkout])          # or a {name: workflow} mapping
    assert report.ok, report.error
    state = replay.state_at(history, 7)                  # the derived state after event 7
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checker import ReplayReport, check, replay_history, state_at
    from .history import History, dump_history, load_history

# Loaded on first use: the engine imports ``replay.definitions`` and the rest of the
# core it needs, not the checker (see ``duralog/__init__.py``).
_LAZY = {
    **dict.fromkeys(("ReplayReport", "check", "replay_history", "state_at"), ".checker"),
    **dict.fromkeys(("History", "dump_history", "load_history"), ".history"),
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})


__all__ = [
    "History",
    "ReplayReport",
    "check",
    "dump_history",
    "load_history",
    "replay_history",
    "state_at",
]
