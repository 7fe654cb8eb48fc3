"""The schema of workflow documents (``patterns/_config_schema.py``): msgspec Structs.

One table holds a bad key, a bad type or an out-of-range value per row, each at
a JSON path such as ``$.steps.charge.retry``; the error must name that path (as
``steps.charge.retry``, after the file and line) and say what is wrong there.
A property then writes valid documents in every format, and in msgspec's own
encoding of the schema, and requires the same workflow definition from each.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import duralog
from duralog.errors import ConfigurationError
from duralog.patterns._config_read import Format, InvalidDocument
from duralog.patterns._config_schema import Document, StepSpec, conform

TYPES = duralog.StepRegistry()


@TYPES.add
@duralog.step
def cs_echo(label: str = "", value: Any = None) -> list[Any]:
    return [label, value]


@duralog.step(retry=duralog.RetryPolicy(max_attempts=4, backoff=3.0), timeout=90)
def cs_join(label: str = "") -> str:
    return label


TYPES.add(cs_join, name="join")

SHOP: dict[str, Any] = {
    "name": "cs-shop",
    "description": "reserve, then charge",
    "max_parallel": 2,
    "inputs": {"value": 1999},
    "defaults": {"retry": {"max_attempts": 2}, "timeout": 30},
    "steps": {
        "reserve": {"type": "cs_echo", "params": {"label": "reserve"}},
        "charge": {
            "type": "join",
            "depends_on": ["reserve"],
            "retry": {"max_attempts": 5, "initial_interval": 0.5, "non_retryable": ["KeyError"]},
            "timeout": 10,
        },
    },
}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()  # a row's value: delete the key at the path
TOP_KEYS = "name, description, max_parallel, inputs, defaults, steps"
STEP_KEYS = "type, depends_on, params, retry, timeout"
RETRY_KEYS = "max_attempts, initial_interval, backoff, max_interval, jitter, non_retryable"

ROWS = [
    # -- keys the schema does not have, or that a table must have
    ("$.retries", 3, f"unknown key; expected one of: {TOP_KEYS}"),
    ("$.defaults.timout", 30, "unknown key; expected one of: retry, timeout"),
    ("$.defaults.retry.jiter", False, f"unknown key; expected one of: {RETRY_KEYS}"),
    ("$.steps.charge.dependson", ["reserve"], f"unknown key; expected one of: {STEP_KEYS}"),
    ("$.steps.charge.retry.max_attemps", 5, f"unknown key; expected one of: {RETRY_KEYS}"),
    ("$.name", MISSING, "missing (a non-blank string is required here)"),
    ("$.steps", MISSING, "missing (a table of one or more steps is required here)"),
    ("$.steps.charge.type", MISSING, "missing (the name of a registered step type is required"),
    # -- values of the wrong type
    ("$.name", 5, "must be a non-blank string, not 5"),
    ("$.description", ["x"], "must be a string, not ['x']"),
    ("$.max_parallel", "2", "must be a whole number of at least 1, not '2'"),
    ("$.max_parallel", 2.5, "must be a whole number of at least 1, not 2.5"),
    ("$.max_parallel", True, "must be a whole number of at least 1, not True"),
    ("$.inputs", [1], "must be a table (an object), not [1]"),
    ("$.defaults", 3, "must be a table (an object), not 3"),
    ("$.defaults.retry", "fast", "must be a table (an object), not 'fast'"),
    ("$.steps", ["reserve"], "must be a table of one or more steps, not ['reserve']"),
    ("$.steps.charge", "join", "must be a table (an object), not 'join'"),
    ("$.steps.charge.type", 3, "must be the name of a registered step type, not 3"),
    ("$.steps.charge.depends_on", 7, "must be a step name or a list of them, not 7"),
    ("$.steps.charge.depends_on[1]", 1, "must be a step name, not 1"),
    ("$.steps.charge.params", "x", "must be a table (an object), not 'x'"),
    ("$.steps.charge.retry", "fast", "must be a table (an object), not 'fast'"),
    ("$.steps.charge.retry.max_attempts", "5", "must be a whole number of at least 1, not '5'"),
    ("$.steps.charge.retry.jitter", "yes", "must be a boolean (true or false), not 'yes'"),
    ("$.steps.charge.retry.non_retryable", "KeyError", "must be a list of exception names"),
    ("$.steps.charge.retry.non_retryable[1]", 3, "must be an exception name, not 3"),
    ("$.steps.charge.timeout", "10s", "must be a finite positive number of seconds, not '10s'"),
    ("$.steps.charge.timeout", False, "must be a finite positive number of seconds, not False"),
    # -- values out of range
    ("$.name", "  ", "must be a non-blank string, not '  '"),
    ("$.max_parallel", 0, "must be a whole number of at least 1, not 0"),
    ("$.steps", {}, "must be a table of one or more steps, not {}"),
    ("$.defaults.retry.max_attempts", 0, "must be a whole number of at least 1, not 0"),
    ("$.steps.charge.retry.max_attempts", -3, "must be a whole number of at least 1, not -3"),
    ("$.steps.charge.retry.initial_interval", -1, "must be a finite number of at least 0, not -1"),
    ("$.steps.charge.retry.backoff", 0.5, "must be a finite number of at least 1, not 0.5"),
    ("$.steps.charge.retry.max_interval", float("inf"), "must be a finite number of at least 0"),
    ("$.steps.charge.timeout", 0, "must be a finite positive number of seconds, not 0"),
    ("$.steps.charge.timeout", -5, "must be a finite positive number of seconds, not -5"),
    ("$.steps.charge.timeout", float("nan"), "must be a finite positive number of seconds"),
    ("$.defaults.timeout", float("inf"), "must be a finite positive number of seconds, not inf"),
]  # fmt: skip

_PART = re.compile(r"\.([A-Za-z_]+)|\[(\d+)\]")


def parts(path: str) -> list[str | int]:
    """``"$.steps.charge.depends_on[1]"`` as ``["steps", "charge", "depends_on", 1]``."""
    assert path.startswith("$")
    return [key or int(index) for key, index in _PART.findall(path)]


def broken(path: str, value: Any) -> dict[str, Any]:
    """``SHOP`` with ``value`` at ``path`` (the key deleted for ``MISSING``)."""
    doc = copy.deepcopy(SHOP)
    *above, last = parts(path)
    table: Any = doc
    for part in above:
        table = table[part]
    if value is MISSING:
        del table[last]
    elif isinstance(last, int) and last == len(table):
        table.append(value)
    else:
        table[last] = value
    return doc


def test_the_shop_document_is_valid() -> None:
    shop = duralog.parse_workflow(json.dumps(SHOP), TYPES, format="json", source="shop.json")
    assert [t.name for t in shop.tasks] == ["reserve", "charge"]


@pytest.mark.parametrize(("path", "value", "reason"), ROWS, ids=[f"{p}={v!r}" for p, v, _ in ROWS])
def test_each_schema_error_names_its_path_and_what_is_wrong(
    path: str, value: Any, reason: str
) -> None:
    text = json.dumps(broken(path, value), indent=2)  # one key per line
    with pytest.raises(duralog.WorkflowConfigError) as caught:
        duralog.parse_workflow(text, TYPES, format="json", source="shop.json")
    error = caught.value
    key = path.removeprefix("$.")
    assert error.key == key, str(error)
    assert reason in error.reason, str(error)
    lines = text.splitlines()
    assert 1 <= error.line <= len(lines)
    assert str(error) == f"shop.json:{error.line}: {key}: {error.reason}"
    assert "\n" not in str(error) and "$" not in str(error) and "Expected" not in str(error)


def test_the_whole_document_must_be_a_table() -> None:
    with pytest.raises(duralog.WorkflowConfigError) as caught:
        duralog.parse_workflow("[1, 2]", TYPES, format="json", source="list.json")
    assert str(caught.value) == "list.json:1: the document must be a table (an object), not [1, 2]"


def test_conform_raises_an_invalid_document_at_the_full_path() -> None:
    body = {"type": "join", "retry": {"backoff": 0}}
    with pytest.raises(InvalidDocument) as caught:
        conform(body, StepSpec, ("steps", "charge"))
    invalid = caught.value
    assert invalid.path == ("steps", "charge", "retry", "backoff")
    assert invalid.reason == "must be a finite number of at least 1, not 0"
    assert invalid.line is None  # the caller finds it from the path
    assert isinstance(invalid, ConfigurationError)  # in duralog's tree, like what it becomes


# -- round trip: a valid document, encoded and decoded, is the same definition ---------

NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True).filter(
    lambda n: n not in ("label", "value")  # a dependency of that name would fill a parameter
)
TEXT = st.text(st.characters(categories=["L", "N", "P", "Zs"]), max_size=12)
SECONDS = st.integers(1, 10**6) | st.floats(1e-3, 1e6)
INTERVALS = st.integers(0, 10**6) | st.floats(0, 1e6)


@st.composite
def retries(draw: st.DrawFn) -> dict[str, Any]:
    fields = {
        "max_attempts": st.integers(1, 50),
        "initial_interval": INTERVALS,
        "backoff": st.integers(1, 10) | st.floats(1, 10),
        "max_interval": INTERVALS,
        "jitter": st.booleans(),
        "non_retryable": st.lists(st.sampled_from(["KeyError", "shop.Declined"]), max_size=2),
    }
    chosen = draw(st.lists(st.sampled_from(list(fields)), unique=True))
    return {key: draw(fields[key]) for key in chosen}


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    steps: dict[str, Any] = {}
    for i, name in enumerate(names):
        body: dict[str, Any] = {"type": draw(st.sampled_from(["cs_echo", "join"]))}
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        if len(deps) == 1 and draw(st.booleans()):
            body["depends_on"] = deps[0]  # one name stands for a list of one
        elif deps or draw(st.booleans()):
            body["depends_on"] = deps
        if draw(st.booleans()):
            body["params"] = {"label": draw(TEXT)}
        if draw(st.booleans()):
            body["retry"] = draw(retries())
        if draw(st.booleans()):
            body["timeout"] = draw(SECONDS)
        steps[name] = body
    doc: dict[str, Any] = {"name": "cs-roundtrip"}
    if draw(st.booleans()):
        doc["description"] = draw(TEXT)
    if draw(st.booleans()):
        doc["max_parallel"] = draw(st.integers(1, 64))
    if any(body["type"] == "cs_echo" for body in steps.values()) and draw(st.booleans()):
        doc["inputs"] = {"value": draw(st.integers(-(2**53), 2**53) | TEXT | st.booleans())}
    if draw(st.booleans()):
        doc["defaults"] = {
            key: draw(strategy)
            for key, strategy in (("retry", retries()), ("timeout", SECONDS))
            if draw(st.booleans())
        }
    doc["steps"] = steps
    return doc


def definition(dag: duralog.DAG) -> tuple[Any, ...]:
    """What a DAG does: its name, bound and inputs; each task's step, its code, its
    dependencies, fixed params, retry policy and timeout."""
    tasks = [
        (t.name, t.step.name, t.step.fn, t.depends_on, t.params, t.step.retry, t.step.timeout)
        for t in dag.tasks
        if isinstance(t.step, duralog.Step)
    ]
    assert len(tasks) == len(dag.tasks)
    return dag.name, dag.max_parallel, dag.defaults, tasks


def described(doc: dict[str, Any]) -> tuple[Any, ...]:
    """The definition ``doc`` asks for, worked out from the document alone."""
    defaults = doc.get("defaults", {})
    tasks = []
    for label, body in doc["steps"].items():
        step = TYPES.get(body["type"])
        retry = {**defaults.get("retry", {}), **body.get("retry", {})}
        if "non_retryable" in retry:
            retry["non_retryable"] = tuple(retry["non_retryable"])
        timeout = body.get("timeout", defaults.get("timeout", step.timeout))
        deps = body.get("depends_on", [])
        deps = (deps,) if isinstance(deps, str) else tuple(deps)
        policy = msgspec.structs.replace(step.retry, **retry)
        tasks.append((label, step.name, step.fn, deps, body.get("params", {}), policy, timeout))
    return doc["name"], doc.get("max_parallel"), doc.get("inputs", {}), tasks


def toml_text(doc: dict[str, Any]) -> str:
    """``doc`` as TOML, each top-level key on a line of its own, tables inline."""
    return "".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in doc.items())


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def texts(doc: dict[str, Any]) -> dict[str, tuple[Format, str]]:
    """``doc`` written in every format duralog reads (YAML when PyYAML is installed),
    and as msgspec encodes the schema's ``Document`` it conforms to."""
    written: dict[str, tuple[Format, str]] = {
        "json": ("json", json.dumps(doc)),
        "toml": ("toml", toml_text(doc)),
        "schema": ("json", msgspec.json.encode(conform(doc, Document)).decode()),
    }
    if importlib.util.find_spec("yaml") is not None:
        yaml: Any = importlib.import_module("yaml")  # an optional extra, without stubs
        written["yaml"] = ("yaml", yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return written


@given(documents())
def test_a_valid_document_encoded_and_decoded_is_the_same_definition(doc: dict[str, Any]) -> None:
    schema = conform(doc, Document)
    assert msgspec.json.decode(msgspec.json.encode(schema), type=Document) == schema
    expected = described(doc)
    for label, (format, text) in texts(doc).items():
        dag = duralog.parse_workflow(text, TYPES, format=format, source="roundtrip")
        assert definition(dag) == expected, f"{label}:\n{text}"
