"""Workflow and step definitions: what ``@duralog.workflow`` and ``@duralog.step`` make.

A ``Step`` wraps a plain function (sync or async). Called inside a workflow it is
a durable call: the instance records a ``StepScheduled`` decision and the call's
awaitable resolves when the step's result is in the log. Called anywhere else,
awaiting it simply runs the function, and ``step.fn`` is the undecorated
function for unit tests.

A ``Workflow`` wraps an ``async def``; it registers under its ``__qualname__``
(or ``name=``) in a ``Registry`` so a worker can find the code of any workflow in
its log. A registry also keeps what a program declares beside its workflows
(queues, schedules, circuit breakers: see ``DeclarationKind``). The decorators fill
``REGISTRY``, the default; an engine given another registry sees only that one.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, cast

import msgspec

from duralog.errors import (
    ConfigurationError,
    PayloadError,
    RegistrationError,
    positive_seconds,
    whole_number,
)
from duralog.store import codec
from duralog.store.envelope import PayloadCodec, is_sealed_payload
from duralog.store.events import NULL

from .context import running_code, running_code_get

P = ParamSpec("P")
R = TypeVar("R")
K = TypeVar("K")
V = TypeVar("V")


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How a failing step is retried: exponential backoff with jitter, bounded.

    Attempt ``n`` (1-based) that fails waits ``min(initial_interval * backoff**(n-1),
    max_interval)`` seconds before attempt ``n+1``; with ``jitter`` the wait is drawn
    uniformly from the upper half of that, so retries of many workflows spread out.
    ``non_retryable`` lists exception types (or their qualified names) that fail
    the step at once. ``max_attempts=1`` means no retry.

    Example:
        ``@duralog.step(retry=duralog.RetryPolicy(max_attempts=5, non_retryable=(ValueError,)))``

    Attributes:
        max_attempts: attempts in all, the first included (a whole number, at least 1).
        initial_interval: seconds to wait after the first failed attempt.
        backoff: the factor each further wait is multiplied by (at least 1).
        max_interval: the longest wait between two attempts, in seconds.
        jitter: draw each wait from the upper half of its value, so that the retries
            of many workflows do not all come at once.
        non_retryable: exception types, or their qualified names (``"shop.OutOfStock"``),
            that fail the step at once, whatever attempts are left.
    """

    max_attempts: int = 3
    initial_interval: float = 1.0
    backoff: float = 2.0
    max_interval: float = 60.0
    jitter: bool = True
    non_retryable: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        whole_number(self.max_attempts, "RetryPolicy.max_attempts", minimum=1)
        for name in ("initial_interval", "backoff", "max_interval"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigurationError(f"RetryPolicy.{name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise ConfigurationError(f"RetryPolicy.{name} must be finite, not {value!r}")
        if not isinstance(self.non_retryable, tuple) or not all(
            isinstance(item, str) or (isinstance(item, type) and issubclass(item, BaseException))
            for item in self.non_retryable
        ):
            raise ConfigurationError(
                "RetryPolicy.non_retryable must be a tuple of exception types or their "
                f"qualified names, not {self.non_retryable!r}"
            )
        if self.initial_interval < 0 or self.max_interval < 0:
            raise ConfigurationError("RetryPolicy intervals must not be negative")
        if self.backoff < 1:
            raise ConfigurationError("RetryPolicy.backoff must be at least 1")

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait after failed attempt ``attempt``; ``rand`` is uniform in [0, 1)."""
        exponent = min(max(attempt - 1, 0), 64)
        try:
            grown = self.initial_interval * self.backoff**exponent
        except OverflowError:
            grown = math.inf if self.initial_interval > 0 else 0.0
        base = min(grown, self.max_interval)
        if self.jitter:
            return base / 2 + base / 2 * rand
        return base

    def retryable(self, error_type: type[BaseException] | None, error_name: str) -> bool:
        """Whether an error of that type (or qualified name) may be retried at all."""
        for item in self.non_retryable:
            if isinstance(item, str):
                if item in (error_name, error_name.rsplit(".", 1)[-1]):
                    return False
            elif error_type is not None and issubclass(error_type, item):
                return False
        return True


DEFAULT_RETRY = RetryPolicy()
#: ``@duralog.workflow(max_recovery_attempts=...)`` when not given.
DEFAULT_MAX_RECOVERY_ATTEMPTS = 10


class _Typed(Generic[P, R]):
    """What steps and workflows share: a function, a name, typed decoding of its calls."""

    fn: Callable[..., Any]
    name: str

    @functools.cached_property
    def _hints(self) -> tuple[Any, list[tuple[str, Any, bool]]]:
        return _signature_types(self.fn)

    @functools.cached_property
    def _call_shape(self) -> _CallShape:
        return _CallShape(self._hints[1])

    @functools.cached_property
    def _signature(self) -> inspect.Signature:
        try:  # annotations as types, not strings, under `from __future__ import annotations`
            return inspect.signature(self.fn, eval_str=True)
        except Exception:  # an unresolvable forward reference: as written
            return inspect.signature(self.fn)

    @functools.cached_property
    def _arity(self) -> tuple[int, int] | None:
        """(required, most) positional arguments when every parameter can be passed by
        position and none collects the rest: all ``check_call`` needs to know of a call
        without keyword arguments. None otherwise (``inspect`` binds the call)."""
        required = most = 0
        for param in self._signature.parameters.values():
            if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                return None
            most += 1
            if param.default is param.empty:
                required = most
        return required, most

    @property
    def result_type(self) -> Any:
        """The annotated return type (``Any`` when unannotated)."""
        return self._hints[0]

    @functools.cached_property
    def _decode_plain(self) -> Callable[[msgspec.Raw], Any]:
        """Decodes a plain (unsealed) payload into ``result_type`` (``codec.decode``'s)."""
        return codec.decoder_for(self.result_type)

    def decode_args(
        self,
        args: msgspec.Raw,
        kwargs: msgspec.Raw,
        payload_codec: PayloadCodec | None = None,
    ) -> tuple[list[Any], dict[str, Any]]:
        """Decode recorded call arguments (opening them with ``payload_codec``), typed by
        the function's annotations."""
        try:  # (a worker decodes every step's call here, in one frame less)
            return _convert_call(self._call_shape, args, kwargs, payload_codec)
        except PayloadError as exc:
            raise PayloadError(
                f"the arguments recorded for {self.name!r} do not decode: {exc}"
            ) from None

    def check_call(
        self, args: msgspec.Raw, kwargs: msgspec.Raw, payload_codec: PayloadCodec | None
    ) -> None:
        """Refuse, with a ``ConfigurationError`` naming the argument, a call the function
        cannot take: the wrong number of arguments, or a value its annotation refuses
        (decoded as a run would decode it)."""
        try:
            decoded, named = _convert_call(self._call_shape, args, kwargs, payload_codec)
            arity = self._arity
            if named or arity is None or not arity[0] <= len(decoded) <= arity[1]:
                self._signature.bind(*decoded, **named)  # (and its message, if it fails)
        except (PayloadError, TypeError) as exc:
            raise ConfigurationError(
                f"cannot call {self.name!r} with these arguments: {exc}; its signature is "
                f"{self.name}{self._signature}"
            ) from None


class Step(_Typed[P, R]):
    """A durable step; see ``duralog.step``."""

    def __init__(
        self,
        fn: Callable[P, R] | Callable[P, Awaitable[R]],
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        inline: bool = False,
        heartbeat_timeout: float | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"@duralog.step needs a function, got {fn!r}")
        timeout = positive_seconds(timeout, "step timeout", optional=True)
        heartbeat_timeout = positive_seconds(
            heartbeat_timeout, "step heartbeat_timeout", optional=True
        )
        self.fn = fn
        self.name = name or fn.__qualname__
        self.retry = retry or DEFAULT_RETRY
        self.timeout = timeout
        #: Seconds an attempt may go without ``duralog.heartbeat()`` before it is given up.
        self.heartbeat_timeout = heartbeat_timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        self.inline = _check_inline(fn, inline, timeout, heartbeat_timeout)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<duralog step {self.name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        instance = running_code_get()
        if instance is None:
            return self._run_directly(*args, **kwargs)
        return instance.call_step(self, args, kwargs)

    async def _run_directly(self, *args: Any, **kwargs: Any) -> R:
        result = self.fn(*args, **kwargs)
        if self.is_async:
            return await typing.cast(Awaitable[R], result)
        return typing.cast(R, result)

    def decode_result(self, payload: msgspec.Raw, payload_codec: PayloadCodec | None = None) -> R:
        """Decode a recorded result (opened with ``payload_codec``) into the annotated
        return type."""
        if not is_sealed_payload(payload):  # plain JSON: straight to the typed decoder
            try:
                result: R = self._decode_plain(payload)
                return result
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass  # codec.decode below says what is wrong, as it says it everywhere
        try:
            return typing.cast(
                R, codec.decode(payload, self.result_type, payload_codec=payload_codec)
            )
        except PayloadError as exc:
            raise PayloadError(
                f"the recorded result of step {self.name!r} does not decode as its annotated "
                f"return type: {exc}. Fix the annotation or the value the step returns"
            ) from None


def _check_inline(
    fn: Callable[..., Any], inline: bool, timeout: float | None, heartbeat_timeout: float | None
) -> bool:
    """Refuse ``inline=True`` where it cannot mean what it says."""
    if not inline:
        return False
    name = getattr(fn, "__qualname__", repr(fn))
    if inspect.iscoroutinefunction(fn):
        raise ConfigurationError(
            f"step {name}: inline=True is for sync steps; an async step already runs on "
            "the worker's event loop, so drop inline=True"
        )
    if timeout is not None:
        raise ConfigurationError(
            f"step {name}: an inline step cannot have a timeout, because it runs on the "
            "worker's event loop and nothing can interrupt it there; drop inline=True to "
            "run it on a step thread with its timeout"
        )
    if heartbeat_timeout is not None:
        raise ConfigurationError(
            f"step {name}: an inline step cannot have a heartbeat_timeout, because it runs "
            "on the worker's event loop, which nothing watches while it runs; drop "
            "inline=True to run it on a step thread"
        )
    return True


class Workflow(_Typed[P, R]):
    """A durable workflow; see ``duralog.workflow``."""

    fn: Callable[P, Awaitable[R]]

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]],
        *,
        name: str | None = None,
        max_recovery_attempts: int | None = DEFAULT_MAX_RECOVERY_ATTEMPTS,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"@duralog.workflow needs an `async def` function; {fn.__qualname__} is not one"
            )
        self.fn = fn
        self.name = name or fn.__qualname__
        #: Recoveries in a row without progress before the workflow is set aside
        #: (FAILED with a ``RecoveryLimit`` cause); None: no limit.
        self.max_recovery_attempts = whole_number(
            max_recovery_attempts,
            f"workflow {self.name!r}: max_recovery_attempts",
            minimum=0,
            optional=True,
        )
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<duralog workflow {self.name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        instance = running_code()
        if instance is not None:  # inside a workflow: a durable child workflow
            return instance.start_child(self, args, kwargs)
        return self._call(*args, **kwargs)

    async def _call(self, *args: Any, **kwargs: Any) -> R:
        return await self.fn(*args, **kwargs)


class DeclarationKind(Generic[K, V]):
    """A kind of declaration a ``Registry`` keeps beside its workflows, by key: queues
    by name, schedules by id, circuit breakers by step. The module that owns the
    kind makes its one ``DeclarationKind`` (so a registry holds the circuits of
    ``duralog.patterns`` without the runtime importing it)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<duralog declarations: {self.name}>"


class Registry:
    """What a program declares for the engines that run it: workflows by name, and
    beside them queues, schedules and circuit breakers (``declared``).

    ``@duralog.workflow``, ``duralog.Queue``, ``@duralog.schedule`` and
    ``circuit=`` fill ``REGISTRY``, the default, unless given ``registry=``; an
    ``Engine`` uses the default unless given its own. Two test modules may each
    define a workflow called ``checkout``, each in its own registry, for its own
    engine.

    Example:
        ```python
        registry = duralog.Registry()

        @duralog.workflow(registry=registry)
        async def checkout(order_id: str) -> str: ...

        engine = duralog.Engine("shop.db", registry=registry)
        ```
    """

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow[Any, Any]] = {}
        self._declared: dict[DeclarationKind[Any, Any], dict[Any, Any]] = {}

    def add(self, workflow: Workflow[Any, Any]) -> None:
        """Register ``workflow``; a different function under a taken name is an error."""
        known = self._workflows.get(workflow.name)
        if known is not None and _origin(known.fn) != _origin(workflow.fn):
            raise RegistrationError(
                f"two workflows are named {workflow.name!r}: {_origin(known.fn)} and "
                f"{_origin(workflow.fn)}; give one of them another name with "
                "@duralog.workflow(name=...)"
            )
        self._workflows[workflow.name] = workflow

    def get(self, name: str) -> Workflow[Any, Any]:
        """The workflow registered as ``name``; ``RegistrationError`` names the known ones."""
        try:
            return self._workflows[name]
        except KeyError:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise RegistrationError(
                f"no workflow named {name!r} is registered in this process (known: {known}); "
                "import the module that defines it (CLI: --app MODULE)"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._workflows

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._workflows)

    def declared(self, kind: DeclarationKind[K, V]) -> dict[K, V]:
        """The declarations of ``kind`` in this registry: a live mapping, which
        declaring adds to (a later declaration under a key replaces the earlier)."""
        return cast("dict[K, V]", self._declared.setdefault(kind, {}))


#: The default registry: the decorators fill it, and an ``Engine`` given no
#: ``registry=`` uses it.
REGISTRY = Registry()


def _origin(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _signature_types(fn: Callable[..., Any]) -> tuple[Any, list[tuple[str, Any, bool]]]:
    """The return type and the (name, type) of each parameter, ``Any`` where unknown."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: decode untyped
        hints = {}
    # Positional parameters first, in order; *args items and keyword-only ones are
    # matched by name only (an extra positional value is decoded untyped).
    params = [
        (p.name, hints.get(p.name, Any), p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    return hints.get("return", Any), params


class _CallShape:
    """What decoding a call needs of a signature (``_signature_types``'s parameters):
    the type of each parameter by name, and of each positional one by position."""

    __slots__ = ("names", "positional", "types")

    def __init__(self, params: Sequence[tuple[str, Any, bool]]) -> None:
        self.types = {name: tp for name, tp, _ in params}
        self.positional = [tp for _, tp, by_position in params if by_position]
        self.names = [name for name, _, by_position in params if by_position]


_decode_any = msgspec.json.Decoder().decode


def _decode_value(payload: msgspec.Raw, payload_codec: PayloadCodec | None) -> Any:
    """``codec.decode(payload, payload_codec=payload_codec)``, and no more calls than
    one for plain JSON."""
    if payload is NULL:
        return None
    if not is_sealed_payload(payload):
        try:
            return _decode_any(payload)
        except msgspec.DecodeError:
            pass  # codec.decode says what is wrong, as it says it everywhere
    return codec.decode(payload, payload_codec=payload_codec)


def _convert_call(
    params: Sequence[tuple[str, Any, bool]] | _CallShape,
    args: msgspec.Raw,
    kwargs: msgspec.Raw,
    payload_codec: PayloadCodec | None,
) -> tuple[list[Any], dict[str, Any]]:
    shape = params if isinstance(params, _CallShape) else _CallShape(params)
    raw_args = _decode_value(args, payload_codec) or []
    raw_kwargs: Mapping[str, Any] = (
        {} if kwargs is NULL else _decode_value(kwargs, payload_codec) or {}
    )
    if not isinstance(raw_args, list) or not isinstance(raw_kwargs, dict):
        raise PayloadError("arguments must be a JSON array and keyword arguments an object")
    positional, names = shape.positional, shape.names
    decoded = raw_args
    for i, tp in enumerate(positional[: len(raw_args)]):
        if tp is not Any:  # (codec.convert returns a value for Any as it is)
            decoded[i] = codec.convert(decoded[i], tp, f"argument {i + 1} ({names[i]})")
    if not raw_kwargs:
        return decoded, {}
    types = shape.types
    named = {
        k: codec.convert(v, types.get(k, Any), f"keyword argument {k}")
        for k, v in raw_kwargs.items()
    }
    return decoded, named
