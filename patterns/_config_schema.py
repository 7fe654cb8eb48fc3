"""The shape of a workflow document, as msgspec Structs, and its errors in words.

msgspec checks every key (``forbid_unknown_fields``: a typo never silently
drops a setting) and every value's type and range (``msgspec.Meta``), strictly:
the string ``"3"`` is not a whole number. ``conform`` rewords its errors: where
msgspec says ``Expected `int` >= 1 - at `$.retry.max_attempts```, the user
reads ``retry.max_attempts: must be a whole number of at least 1, not 0``. The
words are the ``description`` of each type below, next to the rule they state.
The rules that need the step registry or the whole document are in ``_config_build``.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType
from msgspec import inspect as mi

from ._config_read import InvalidDocument, Path

S = TypeVar("S", bound=Struct)

_MAX = sys.float_info.max  # msgspec has no "finite": le=_MAX refuses inf, nan fails any bound

Text = Annotated[str, Meta(description="a string")]
Table = Annotated[dict[str, Any], Meta(description="a table (an object)")]
StepName = Annotated[str, Meta(description="a step name")]
AtLeastOne = Annotated[int, Meta(ge=1, description="a whole number of at least 1")]
Seconds = Annotated[float, Meta(gt=0, le=_MAX, description="a finite positive number of seconds")]
Interval = Annotated[float, Meta(ge=0, le=_MAX, description="a finite number of at least 0")]
Backoff = Annotated[float, Meta(ge=1, le=_MAX, description="a finite number of at least 1")]
Flag = Annotated[bool, Meta(description="a boolean (true or false)")]
Names = Annotated[
    tuple[Annotated[str, Meta(description="an exception name")], ...],
    Meta(description="a list of exception names"),
]


class Retry(Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields laid over a step's ``RetryPolicy``; one left out keeps the policy's."""

    max_attempts: AtLeastOne | UnsetType = UNSET
    initial_interval: Interval | UnsetType = UNSET
    backoff: Backoff | UnsetType = UNSET
    max_interval: Interval | UnsetType = UNSET
    jitter: Flag | UnsetType = UNSET
    non_retryable: Names | UnsetType = UNSET


def overrides(retry: Retry | None) -> dict[str, Any]:
    """The fields a retry table sets."""
    fields = msgspec.structs.asdict(retry) if retry else {}
    return {key: value for key, value in fields.items() if value is not UNSET}


class Defaults(Struct, forbid_unknown_fields=True, kw_only=True):
    """``[defaults]``: the retry and timeout of every step that sets none."""

    retry: Retry | None = None
    timeout: Seconds | None = None


class StepSpec(Struct, forbid_unknown_fields=True, kw_only=True):
    """One entry of ``[steps]``: a registered step type, its params and dependencies."""

    type: Annotated[str, Meta(description="the name of a registered step type")]
    depends_on: Annotated[
        StepName | list[StepName], Meta(description="a step name or a list of them")
    ] = []
    params: Table = {}  # fixed keyword arguments
    retry: Retry | None = None
    timeout: Seconds | None = None  # per attempt


class Document(Struct, forbid_unknown_fields=True, kw_only=True):
    """A whole document. Each of its ``steps`` is conformed to a ``StepSpec`` on its
    own: msgspec's error paths leave out the keys of a dict."""

    name: Annotated[str, Meta(pattern=r"\S", description="a non-blank string")]
    description: Text = ""
    max_parallel: AtLeastOne | None = None  # tasks at once (None: no bound)
    inputs: Table = {}  # default inputs, under the start input
    defaults: Defaults = msgspec.field(default_factory=Defaults)
    steps: Annotated[dict[str, Any], Meta(min_length=1, description="a table of one or more steps")]


def conform(value: Any, schema: type[S], at: Path = ()) -> S:
    """``value`` (found at ``at`` in the document) as a ``schema`` Struct; otherwise an
    ``InvalidDocument`` at the path of the first error."""
    try:
        return msgspec.convert(value, schema)
    except msgspec.ValidationError as exc:
        path, reason = _reworded(str(exc), value, schema)
    if not at and not path and reason.startswith("must"):
        reason = f"the document {reason}"
    raise InvalidDocument(reason, (*at, *path))


def _reworded(error: str, value: Any, schema: type[Struct]) -> tuple[Path, str]:
    found = _ERROR.fullmatch(error)
    assert found is not None  # the pattern matches any text
    path: Path = tuple(
        int(index) if index else key for key, index in _PART.findall(found["path"] or "")
    )
    here = value
    for part in path:
        here = here[part]
    field = _FIELD.fullmatch(found["what"])
    if found["key"]:
        key = next((k for k in here if not isinstance(k, str)), "?")
        return path, f"keys must be strings, not {key!r}"
    if field and field["how"] == "contains unknown":
        known = ", ".join(_expected(schema, path)[1])
        return (*path, field["key"]), f"unknown key; expected one of: {known}"
    if field:
        path = (*path, field["key"])
        return path, f"missing ({_expected(schema, path)[0]} is required here)"
    return path, f"must be {_expected(schema, path)[0]}, not {here!r:.60}"


_ERROR = re.compile(r"(?P<what>.*?)(?: - at `(?P<key>key` in `)?\$(?P<path>[^`]*)`)?", re.S)
_ARRAYS = (mi.ListType, mi.VarTupleType)
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_FIELD = re.compile(r"Object (?P<how>missing required|contains unknown) field `(?P<key>.*)`")


def _expected(schema: type[Struct], path: Path) -> tuple[str, list[str]]:
    """What the value at ``path`` must be, in words, and the keys it may have."""
    node: Any = mi.type_info(schema)
    said = ""
    for part in (*path, None):
        while isinstance(node, mi.Metadata | mi.UnionType):  # the outermost description
            if isinstance(node, mi.Metadata):
                said = said or (node.extra_json_schema or {}).get("description", "")
                node = node.type
            else:  # of a union, the member ``part`` goes into (a list for an index)
                node = next(
                    t
                    for t in node.types
                    if not isinstance(t, mi.NoneType)
                    and (part is None or isinstance(part, int) == isinstance(t, _ARRAYS))
                )
        if part is None:
            break
        if isinstance(part, int):
            node = node.item_type
        else:
            node = next(f.type for f in node.fields if f.encode_name == part)
        said = ""
    known = [f.encode_name for f in node.fields] if isinstance(node, mi.StructType) else []
    return said or "a table (an object)", known
