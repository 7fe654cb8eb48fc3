"""duralog: durable execution for Python that embeds like SQLite.

Write workflows as ``async def`` functions that await steps; every step
transition is appended to an event log, and after a crash a workflow is rebuilt
by replaying its code against that log. See the README for a tour.

This package is the public face: these re-exports, ``errors.py`` (every public
exception, which every layer may import) and the CLI. It may import every package,
and no package imports it but ``errors.py`` (``tests/test_layers.py`` checks both).
"""

# First, before anything that needs duralog's layers or dependencies (see its docstring).
from duralog import _source  # noqa: F401  # isort: skip

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from duralog._engine import Engine
    from duralog.engine.api import (
        StepInfo,
        close_stream,
        continue_as_new,
        deprecate_patch,
        heartbeat,
        now,
        on_query,
        on_update,
        patched,
        publish,
        random,
        side_effect,
        sleep,
        step_info,
        uuid4,
        wait_signal,
        workflow_info,
        write_stream,
    )
    from duralog.engine.decorators import step, workflow
    from duralog.engine.handle import WorkflowHandle
    from duralog.engine.queues import Queue
    from duralog.engine.schedules import schedule
    from duralog.errors import (
        CircuitOpen,
        CompensationFailed,
        ConfigurationError,
        CorruptEventError,
        DAGCycleError,
        DuplicateWorkflow,
        DuralogError,
        ErrorDetails,
        ForkDiverged,
        HistoryFileError,
        IllegalTransition,
        LeaseLost,
        LogDamaged,
        MissingDependencyError,
        NondeterminismError,
        PayloadError,
        QueryFailed,
        QueryTimeout,
        RegistrationError,
        ResourceMissing,
        ResultTimeout,
        StepCancelled,
        StepFailed,
        StoreDamaged,
        StoreError,
        StreamTimeout,
        UpdateFailed,
        UpdateTimeout,
        WorkflowConfigError,
        WorkflowFailed,
        WorkflowIdInUse,
        WorkflowNotFound,
        WorkflowSandboxError,
        WorkflowSuspended,
        WorkflowTimeout,
    )
    from duralog.observe.logger import WorkflowLogger, logger
    from duralog.observe.metrics import Stats
    from duralog.observe.subscribe import CommittedEvent, Subscription
    from duralog.patterns.breaker import CircuitBreaker
    from duralog.patterns.config import StepRegistry, load_workflow, parse_workflow
    from duralog.patterns.dag import DAG, Task
    from duralog.patterns.fanout import map as map
    from duralog.patterns.pipeline import Pipeline
    from duralog.patterns.resources import inject, resource
    from duralog.patterns.saga import Saga
    from duralog.replay.context import WorkflowInfo
    from duralog.replay.definitions import Registry, RetryPolicy, Step, Workflow
    from duralog.store.base import ScheduleRecord, WorkflowRecord, WorkflowStatus
    from duralog.store.crypto import AesGcmCodec
    from duralog.store.events import LogEntry

# Every public name loads on first use, from the module that defines it: ``import
# duralog`` costs little more than Python's own asyncio, sqlite3 and msgspec, and a
# program pays for the runtime, the patterns (DAG, saga, ...), observability and the
# workflow documents when it first touches them (``benchmarks/bench_import.py``).
# ``from duralog import Engine`` works as usual. Type checkers see the imports above
# and no ``__getattr__`` (with one, they would take any misspelt ``duralog.X`` for Any).
#
# The patterns and observability are plug-ins (``engine/hooks.py``): a circuit breaker
# or an injected resource is made through its module, which installs its hook then.
_LAZY = {
    "Engine": "duralog._engine",
    **dict.fromkeys(
        (
            "StepInfo",
            "close_stream",
            "continue_as_new",
            "deprecate_patch",
            "heartbeat",
            "now",
            "on_query",
            "on_update",
            "patched",
            "publish",
            "random",
            "side_effect",
            "sleep",
            "step_info",
            "uuid4",
            "wait_signal",
            "workflow_info",
            "write_stream",
        ),
        "duralog.engine.api",
    ),
    "step": "duralog.engine.decorators",
    "workflow": "duralog.engine.decorators",
    "WorkflowHandle": "duralog.engine.handle",
    "Queue": "duralog.engine.queues",
    "schedule": "duralog.engine.schedules",
    **dict.fromkeys(
        (
            "CircuitOpen",
            "CompensationFailed",
            "ConfigurationError",
            "CorruptEventError",
            "DAGCycleError",
            "DuplicateWorkflow",
            "DuralogError",
            "ErrorDetails",
            "ForkDiverged",
            "HistoryFileError",
            "IllegalTransition",
            "LeaseLost",
            "LogDamaged",
            "MissingDependencyError",
            "NondeterminismError",
            "PayloadError",
            "QueryFailed",
            "QueryTimeout",
            "RegistrationError",
            "ResourceMissing",
            "ResultTimeout",
            "StepCancelled",
            "StepFailed",
            "StoreDamaged",
            "StoreError",
            "StreamTimeout",
            "UpdateFailed",
            "UpdateTimeout",
            "WorkflowConfigError",
            "WorkflowFailed",
            "WorkflowIdInUse",
            "WorkflowNotFound",
            "WorkflowSandboxError",
            "WorkflowSuspended",
            "WorkflowTimeout",
        ),
        "duralog.errors",
    ),
    "WorkflowLogger": "duralog.observe.logger",
    "logger": "duralog.observe.logger",
    "Stats": "duralog.observe.metrics",
    "CommittedEvent": "duralog.observe.subscribe",
    "Subscription": "duralog.observe.subscribe",
    "CircuitBreaker": "duralog.patterns.breaker",
    "DAG": "duralog.patterns.dag",
    "Task": "duralog.patterns.dag",
    "map": "duralog.patterns.fanout",
    "Pipeline": "duralog.patterns.pipeline",
    "inject": "duralog.patterns.resources",
    "resource": "duralog.patterns.resources",
    "Saga": "duralog.patterns.saga",
    "WorkflowInfo": "duralog.replay.context",
    "Registry": "duralog.replay.definitions",
    "RetryPolicy": "duralog.replay.definitions",
    "Step": "duralog.replay.definitions",
    "Workflow": "duralog.replay.definitions",
    "ScheduleRecord": "duralog.store.base",
    "WorkflowRecord": "duralog.store.base",
    "WorkflowStatus": "duralog.store.base",
    "AesGcmCodec": "duralog.store.crypto",
    "LogEntry": "duralog.store.events",
    "StepRegistry": "duralog.patterns.config",
    "load_workflow": "duralog.patterns.config",
    "parse_workflow": "duralog.patterns.config",
}

# The layers, found as attributes once imported (``duralog.replay.check(...)``), as
# they were when ``import duralog`` loaded them all.
_PACKAGES = ("engine", "errors", "observe", "patterns", "replay", "store", "testing")

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name in _LAZY:
            value = getattr(importlib.import_module(_LAZY[name]), name)
        elif name in _PACKAGES:
            value = importlib.import_module(f"duralog.{name}")
        else:
            raise AttributeError(f"module 'duralog' has no attribute {name!r}")
        globals()[name] = value  # found directly from now on
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})


# ``map`` is public as ``duralog.map`` but kept out of ``__all__``: a star import
# must not shadow the builtin.
__all__ = [
    "AesGcmCodec",
    "CircuitBreaker",
    "CircuitOpen",
    "CommittedEvent",
    "CompensationFailed",
    "ConfigurationError",
    "CorruptEventError",
    "DAG",
    "DAGCycleError",
    "DuplicateWorkflow",
    "DuralogError",
    "Engine",
    "ErrorDetails",
    "ForkDiverged",
    "HistoryFileError",
    "IllegalTransition",
    "LeaseLost",
    "LogDamaged",
    "LogEntry",
    "MissingDependencyError",
    "NondeterminismError",
    "PayloadError",
    "Pipeline",
    "QueryFailed",
    "QueryTimeout",
    "Queue",
    "RegistrationError",
    "Registry",
    "ResourceMissing",
    "ResultTimeout",
    "RetryPolicy",
    "Saga",
    "ScheduleRecord",
    "Stats",
    "Step",
    "StepCancelled",
    "StepFailed",
    "StepInfo",
    "StepRegistry",
    "StoreDamaged",
    "StoreError",
    "StreamTimeout",
    "Subscription",
    "Task",
    "UpdateFailed",
    "UpdateTimeout",
    "Workflow",
    "WorkflowConfigError",
    "WorkflowFailed",
    "WorkflowHandle",
    "WorkflowIdInUse",
    "WorkflowInfo",
    "WorkflowLogger",
    "WorkflowNotFound",
    "WorkflowRecord",
    "WorkflowSandboxError",
    "WorkflowStatus",
    "WorkflowSuspended",
    "WorkflowTimeout",
    "__version__",
    "close_stream",
    "continue_as_new",
    "deprecate_patch",
    "heartbeat",
    "inject",
    "load_workflow",
    "logger",
    "now",
    "on_query",
    "on_update",
    "parse_workflow",
    "patched",
    "publish",
    "random",
    "resource",
    "schedule",
    "side_effect",
    "sleep",
    "step",
    "step_info",
    "uuid4",
    "wait_signal",
    "workflow",
    "workflow_info",
    "write_stream",
]
