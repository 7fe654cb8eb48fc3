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

from typing import TYPE_CHECKING, Any

from duralog._engine import Engine
from duralog.engine.api import (
    StepInfo,
    continue_as_new,
    deprecate_patch,
    now,
    patched,
    publish,
    random,
    side_effect,
    sleep,
    step_info,
    uuid4,
    wait_signal,
    workflow_info,
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
    DuralogError,
    ErrorDetails,
    HistoryFileError,
    IllegalTransition,
    LeaseLost,
    LogDamaged,
    MissingDependencyError,
    NondeterminismError,
    PayloadError,
    RegistrationError,
    ResourceMissing,
    ResultTimeout,
    StepFailed,
    StoreDamaged,
    StoreError,
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

__version__ = "0.1.0"

if TYPE_CHECKING:
    from duralog.patterns.config import StepRegistry, load_workflow, parse_workflow

# The workflow-document API loads on first use, so ``import duralog`` does not pay
# for the document parsers and their schema; ``from duralog import StepRegistry``
# works as usual. Type checkers see the imports above, and no ``__getattr__``
# (with one, they would take any misspelt ``duralog.X`` for Any).
_DOCUMENTS = ("StepRegistry", "load_workflow", "parse_workflow")

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name not in _DOCUMENTS:
            raise AttributeError(f"module 'duralog' has no attribute {name!r}")
        from duralog.patterns import config

        value = getattr(config, name)
        globals()[name] = value  # found directly from now on
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_DOCUMENTS})


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
    "DuralogError",
    "Engine",
    "ErrorDetails",
    "HistoryFileError",
    "IllegalTransition",
    "LeaseLost",
    "LogDamaged",
    "LogEntry",
    "MissingDependencyError",
    "NondeterminismError",
    "PayloadError",
    "Pipeline",
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
    "StepFailed",
    "StepInfo",
    "StepRegistry",
    "StoreDamaged",
    "StoreError",
    "Subscription",
    "Task",
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
    "continue_as_new",
    "deprecate_patch",
    "inject",
    "load_workflow",
    "logger",
    "now",
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
]
