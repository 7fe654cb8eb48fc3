"""Updates: requests that change a workflow and get its answer back.

Workflow code registers a handler and, optionally, a validator
(``duralog.on_update("add_item", handler, validator=check)``). An update travels
on the log's existing channels, so it is recorded, survives a crash and replays
like everything else:

1. the sender replays the workflow's log and runs the validator on the state it
   reaches (``validate``): a rejected update is never sent and leaves no trace;
2. an accepted one is sent as a signal named ``duralog.update:<name>`` carrying
   ``{"id": <update id>, "payload": ...}``; the workflow's owner moves it into the
   log (``SignalReceived``) like any signal: from then on it is accepted;
3. delivered to the code (``deliver``), the validator runs again on the state
   there (deterministic, so replay agrees): a request the state no longer admits
   is answered ``rejected``; otherwise the handler runs as a task of the workflow
   (it may call steps, sleep, wait) and its result or error is published under
   ``duralog.update:<update id>`` (a ``StatePublished`` decision), which the
   sender waits for.

A crash between acceptance and answer replays the signal, runs the handler again
(its recorded steps are not run twice) and publishes the answer once.

The update id makes an update idempotent: the sender may choose it
(``update_id=``), and a signal whose id this run already delivered is skipped
here, in replay, so a request sent twice (a retry after a timeout, or after the
sender crashed) runs its handler once and both senders read the one answer. The
sender also looks for the id before sending (``engine/updates.py``): answered by
an earlier run, or in the log or inbox already, it is not sent again.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from duralog.errors import ConfigurationError, ErrorDetails, PayloadError
from duralog.store import codec
from duralog.store.envelope import PayloadCodec

from .failures import details_of
from .queries import Replayed, call_read_only

#: The signals that carry updates are named this, then the update's name.
SIGNAL_PREFIX = "duralog.update:"


def signal_name(update: str) -> str:
    """The name of the signal that carries an update called ``update``."""
    return SIGNAL_PREFIX + update


def answer_key(update_id: str) -> str:
    """The key the answer to update ``update_id`` is published under."""
    return SIGNAL_PREFIX + update_id


class Request(msgspec.Struct, frozen=True):
    """What the signal of an update carries."""

    id: str
    payload: Any = None


class Answer(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the workflow publishes for an update: its result, the error its handler
    raised, or why it was rejected when it was delivered."""

    result: Any = None
    error: ErrorDetails | None = None
    rejected: str | None = None


class Rejected(Exception):
    """An update the code does not admit: no such handler, arguments that do not fit
    it, or a validator that raised or tried to act (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpdateHandlers:
    """The update handlers (and their validators) one run's code registered."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self._handlers: dict[str, tuple[Callable[..., Any], Callable[..., Any] | None]] = {}
        self._delivered: set[str] = set()

    def register(
        self, name: str, handler: Callable[..., Any], validator: Callable[..., Any] | None
    ) -> None:
        """Handle update ``name`` with ``handler``, after ``validator`` admits it."""
        where = f"workflow {self.workflow_id!r}"
        if not isinstance(name, str) or not name:
            raise ConfigurationError(
                f"{where}: an update name must be a non-empty string, not {name!r}"
            )
        if not callable(handler):
            raise ConfigurationError(
                f"{where}: the handler of update {name!r} must be a function, not {handler!r}"
            )
        if validator is not None and (
            not callable(validator) or inspect.iscoroutinefunction(validator)
        ):
            raise ConfigurationError(
                f"{where}: the validator of update {name!r} must be a plain (not async) "
                f"function that raises to reject, not {validator!r}"
            )
        self._handlers[name] = (handler, validator)

    def names(self) -> list[str]:
        """The registered update names, sorted."""
        return sorted(self._handlers)

    def get(self, name: str) -> tuple[Callable[..., Any], Callable[..., Any] | None] | None:
        """The handler and validator of update ``name``, if registered."""
        return self._handlers.get(name)

    def first_delivery(self, update_id: str) -> bool:
        """True the first time this run delivers update ``update_id``, False after:
        a request sent again with the same id is answered by the first one."""
        if update_id in self._delivered:
            return False
        self._delivered.add(update_id)
        return True


class Updating(Replayed, Protocol):
    """What updates use of a ``WorkflowInstance``."""

    updates: UpdateHandlers
    payload_codec: PayloadCodec | None

    def publish(self, key: str, value: Any) -> None: ...


def validate(instance: Updating, name: str, payload: Any) -> tuple[Callable[..., Any], list[Any]]:
    """The handler of update ``name`` and the arguments it gets for ``payload`` (a
    decoded JSON value), once its validator admitted them; ``Rejected`` otherwise."""
    found = instance.updates.get(name)
    if found is None:
        known = ", ".join(instance.updates.names()) or "none"
        raise Rejected(
            f"workflow {instance.workflow.name!r} has no update handler {name!r} (registered: "
            f"{known}); its code registers them with duralog.on_update(name, handler)"
        )
    handler, validator = found
    try:
        args = _arguments(handler, payload)
    except (PayloadError, TypeError) as exc:
        raise Rejected(f"the payload does not fit its handler: {exc}") from None
    if validator is None:
        return handler, args
    queries = instance.queries
    _, failure = call_read_only(instance, f"the validator of update {name!r}", validator, args)
    if queries.refused is not None:
        raise Rejected(
            f"its validator tried to {queries.refused}: a validator only reads the "
            "workflow's state (the handler makes the change)"
        )
    if failure is not None:
        raise Rejected(f"its validator rejected it: {failure}")
    return handler, args


def deliver(instance: Updating, signal: str, raw: msgspec.Raw) -> None:
    """An update's signal reached the code: validate it again, then run its handler
    as a task of the workflow, which publishes the answer when it ends."""
    name = signal.removeprefix(SIGNAL_PREFIX)
    try:
        request = codec.decode(raw, Request, payload_codec=instance.payload_codec)
    except PayloadError:
        return  # not sent by duralog (the id is unknown): no one waits for an answer
    if not instance.updates.first_delivery(request.id):
        return  # sent again with the same id: its first delivery answers it
    key = answer_key(request.id)
    try:
        handler, args = validate(instance, name, request.payload)
    except Rejected as exc:
        instance.publish(key, Answer(rejected=exc.reason))
        return

    async def handle() -> None:
        try:
            result = handler(*args)
            if inspect.isawaitable(result):
                result = await result
            answer = Answer(result=result)
            codec.encode(answer)  # a result that cannot be encoded is the handler's error
        except Exception as exc:
            answer = Answer(error=details_of(exc, with_traceback=True))
        instance.publish(key, answer)

    instance.loop.create_task(handle(), name=f"update {name} {request.id}")


def _arguments(handler: Callable[..., Any], payload: Any) -> list[Any]:
    """The handler's arguments for ``payload``: none when it is None and the handler
    takes none, else the payload, converted to the handler's first parameter's type."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # no signature to read: as given
        return [] if payload is None else [payload]
    params = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if payload is None and not any(p.default is p.empty for p in params):
        signature.bind()
        return []
    if not params:  # raises unless the handler takes *args
        signature.bind(payload)
        return [payload]
    first = params[0].name
    args = [codec.convert(payload, _annotation(handler, first), f"the payload ({first})")]
    signature.bind(*args)
    return args


def _annotation(handler: Callable[..., Any], name: str) -> Any:
    try:
        return typing.get_type_hints(handler).get(name, Any)
    except Exception:  # unresolvable forward references: untyped
        return Any
