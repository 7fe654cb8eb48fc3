"""``duralog.logger``: logging from workflow and step code, with the workflow attached.

Each record carries, as ``extra`` fields (record attributes), ``workflow_id``,
``workflow_name``, ``step``, ``seq`` and ``attempt``:

- in workflow code, ``seq`` is the event the code is handling (1, the start, or
  the step result, timer, signal... that woke it) and ``step`` the step whose
  result or failure that event delivered;
- in a step, ``step``, ``seq`` and ``attempt`` are the running attempt's;
- anywhere else they are None, so one format string serves every record.

Workflow code is re-run on every recovery: while it catches up with its recorded
history the logger is silent, so each line is logged once, when the code first
gets there. (A line logged just before a crash, whose decisions had not reached
the disk yet, is logged again by the recovery: that code runs again.)

No payload is attached unless asked: ``duralog.logger.with_payloads()`` adds
``payload``, the decoded value the workflow is handling (its input, the step
result or signal that woke it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

import msgspec

from duralog.engine.api import current_step
from duralog.errors import PayloadError
from duralog.replay.instance import ReplaySources, WorkflowInstance, current_instance
from duralog.store import codec
from duralog.store.envelope import PayloadCodec, unseal_error
from duralog.store.events import NULL

FIELDS = ("workflow_id", "workflow_name", "step", "seq", "attempt")
_NOTHING: dict[str, Any] = dict.fromkeys(FIELDS)


class WorkflowLogger(logging.LoggerAdapter[logging.Logger]):
    """A ``logging.LoggerAdapter`` for workflow and step code (see the module docstring).

    Args:
        logger: the logger to write to, or its name (default ``"duralog.workflow"``).
        payloads: attach ``payload`` (the value being handled) to each record.

    Example:
        ```python
        @duralog.workflow
        async def checkout(order_id: str) -> None:
            duralog.logger.info("charging %s", order_id)   # once, never on replay
            await charge(order_id)
        ```
    """

    def __init__(
        self, logger: logging.Logger | str = "duralog.workflow", *, payloads: bool = False
    ) -> None:
        super().__init__(logging.getLogger(logger) if isinstance(logger, str) else logger, {})
        self.payloads = payloads

    def __repr__(self) -> str:
        return f"<WorkflowLogger {self.logger.name!r}{' with payloads' if self.payloads else ''}>"

    def with_payloads(self) -> WorkflowLogger:
        """The same logger, attaching ``payload`` to each record."""
        return WorkflowLogger(self.logger, payloads=True)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log with the workflow's fields attached; nothing while replaying."""
        instance = current_instance()
        if instance is not None and _replaying(instance):
            return
        if not self.isEnabledFor(level):
            return
        msg, options = self.process(msg, kwargs)
        # Point the record's file and line at the caller, not at this adapter.
        options["stacklevel"] = options.get("stacklevel", 1) + 1
        self.logger.log(level, msg, *args, **options)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Attach the workflow's fields to ``extra`` (the caller's own extra wins)."""
        fields = context_fields(self.payloads)
        given: Mapping[str, Any] | None = kwargs.get("extra")
        if given:
            fields.update(given)
        kwargs["extra"] = fields
        return msg, kwargs


def context_fields(payloads: bool = False) -> dict[str, Any]:
    """The fields a record gets where it is logged from (None outside workflows)."""
    info = current_step()
    if info is not None:
        fields: dict[str, Any] = {
            "workflow_id": info.workflow_id,
            "workflow_name": info.workflow_name or None,
            "step": info.step,
            "seq": info.seq,
            "attempt": info.attempt,
        }
        if payloads:
            fields["payload"] = None  # a step holds its arguments itself
        return fields
    instance = current_instance()
    if instance is None:
        return {**_NOTHING, "payload": None} if payloads else dict(_NOTHING)
    seq, step, raw = _position(instance)
    fields = {
        "workflow_id": instance.workflow_id,
        "workflow_name": instance.workflow.name,
        "step": step,
        "seq": seq,
        "attempt": None,
    }
    if payloads:
        try:
            fields["payload"] = codec.decode(raw, payload_codec=instance.payload_codec)
        except PayloadError:
            fields["payload"] = bytes(raw).decode("utf-8", "replace")
    return fields


def _replaying(instance: WorkflowInstance) -> bool:
    # A pure replay (``duralog replay``, ``check``) has no real sources: it never logs,
    # not even past the end of the recorded decisions.
    return instance.is_replaying or isinstance(instance.sources, ReplaySources)


def _position(instance: WorkflowInstance) -> tuple[int | None, str | None, Any]:
    """(seq, step name, payload) of the input the instance is handling."""
    # The instance delivers inputs one at a time: the last one delivered is the one
    # the code is handling now (none yet: the workflow's start).
    state = getattr(instance, "_state", None)
    delivered: int = getattr(instance, "_inputs_seen", 0)
    if state is None:
        return None, None, NULL
    if delivered == 0 or delivered > len(state.inputs):
        return 1, None, state.args
    item = state.inputs[delivered - 1]
    if item.kind in ("StepCompleted", "StepFailed"):
        view = state.steps.get(item.ref)
        if view is None:
            return item.seq, None, NULL
        payload = (
            view.result
            if item.kind == "StepCompleted"
            else _error_payload(view.error, instance.payload_codec)
        )
        return item.seq, view.name, payload
    if item.kind == "SignalReceived":
        return item.seq, None, state.signals[item.ref].payload
    if item.kind == "ChildCompleted":
        return item.seq, None, state.child_results.get(item.ref, NULL)
    return item.seq, None, NULL


def _error_payload(error: Any, payload_codec: PayloadCodec | None) -> msgspec.Raw:
    if error is None:
        return NULL
    # Logging payloads was asked for: the error as it was raised (without the key,
    # the sealed text: a log call never raises).
    with contextlib.suppress(PayloadError):
        error = unseal_error(error, payload_codec)
    return msgspec.Raw(msgspec.json.encode(str(error)))


#: The logger workflow and step code use: ``duralog.logger.info("...")``.
logger = WorkflowLogger()
