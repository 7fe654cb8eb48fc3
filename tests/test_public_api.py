"""The public surface is a contract: this pins it."""

from __future__ import annotations

import duralog

EXPECTED = {
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
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(duralog.__all__) == EXPECTED
    assert callable(duralog.map)  # public, but out of __all__: it would shadow the builtin
    for name in duralog.__all__:
        assert hasattr(duralog, name), name
        assert not name.startswith("_") or name == "__version__"


def test_public_names_have_docstrings() -> None:
    for name in duralog.__all__:
        obj = getattr(duralog, name)
        if callable(obj):
            assert obj.__doc__, f"duralog.{name} has no docstring"


def test_every_error_is_a_duralog_error() -> None:
    for name in duralog.__all__:
        obj = getattr(duralog, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, duralog.DuralogError), name


def test_statuses() -> None:
    assert [s.value for s in duralog.WorkflowStatus] == [
        "PENDING",
        "RUNNING",
        "PAUSED",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "SUSPENDED",
    ]
    assert str(duralog.WorkflowStatus.RUNNING) == "RUNNING"
