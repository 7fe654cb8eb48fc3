"""Workflows from documents: ``StepRegistry``, ``load_workflow``, ``parse_workflow``.

The property tests write valid documents (TOML and JSON, with a writer that
knows the line of every key), break them in one place, and require a
``WorkflowConfigError`` naming exactly that key and its line; random text gets
a ``WorkflowConfigError`` too, never another exception.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import duralog

TYPES = duralog.StepRegistry()


@TYPES.add
@duralog.step
def echo(label: str = "", value: Any = None) -> list[Any]:
    return [label, value]


@duralog.step(retry=duralog.RetryPolicy(max_attempts=4, backoff=3.0))
def combine(left: list[Any], right: list[Any], sep: str = "+") -> str:
    return f"{left[0]}{sep}{right[0]}"


TYPES.add(combine, name="join")

REPORT_TOML = """\
# A template: one definition, an instance per input.
name = "cf-report"
description = "two fetches, then a join"
max_parallel = 2

[inputs]
value = "default"

[defaults]
timeout = 60

[steps.left]
type = "echo"
params = { label = "L" }
retry = { max_attempts = 5, initial_interval = 0.01 }

[steps.right]
type = "echo"
params.label = "R"
timeout = 5

[steps.both]
type = "join"
depends_on = ["left", "right"]
retry.jitter = false
"""


def test_a_document_builds_a_registered_runnable_workflow(engine: duralog.Engine) -> None:
    report = duralog.parse_workflow(REPORT_TOML, TYPES, format="toml", source="report.toml")
    assert isinstance(report, duralog.DAG) and report.name == "cf-report"
    assert engine.registry.get("cf-report") is report
    assert report.max_parallel == 2
    assert engine.run(report, timeout=15) == {"both": "L+R"}
    handle = engine.start("cf-report", {"value": 42})  # the template, another instance
    assert handle.result(timeout=15) == {"both": "L+R"}
    args = [bytes(e.event.kwargs) for e in handle.history() if e.kind == "StepScheduled"]  # type: ignore[union-attr]
    assert args[0] == b'{"value":42,"label":"L"}'


def test_retries_and_timeouts_come_from_the_document_over_the_step() -> None:
    report = duralog.parse_workflow(REPORT_TOML, TYPES, format="toml", source="report.toml")
    left, right, both = (task.step for task in report.tasks)
    assert isinstance(left, duralog.Step) and isinstance(right, duralog.Step)
    assert isinstance(both, duralog.Step)
    assert (left.retry.max_attempts, left.retry.initial_interval, left.timeout) == (5, 0.01, 60.0)
    assert (right.retry, right.timeout) == (echo.retry, 5.0)
    assert (both.retry.max_attempts, both.retry.backoff, both.retry.jitter) == (4, 3.0, False)
    assert left.name == right.name == "echo" and left.fn is echo.fn  # same code, same name
    assert echo.retry.max_attempts == 3  # the registered step is untouched


def test_json_and_files(tmp_path: Path) -> None:
    doc = {"name": "cf-json", "steps": {"only": {"type": "echo", "params": {"label": "x"}}}}
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(doc))
    assert duralog.load_workflow(path, TYPES).tasks[0].name == "only"
    assert duralog.load_workflow(str(path), TYPES, format="json").name == "cf-json"
    (tmp_path / "flow.txt").write_text("{}")
    with pytest.raises(duralog.ConfigurationError, match="cannot tell the format"):
        duralog.load_workflow(tmp_path / "flow.txt", TYPES)
    with pytest.raises(duralog.ConfigurationError, match="cannot read workflow document"):
        duralog.load_workflow(tmp_path / "missing.toml", TYPES)
    (tmp_path / "latin.toml").write_bytes(b'name = "x"\n# caf\xe9\n')
    with pytest.raises(duralog.WorkflowConfigError, match=r"latin.toml:2: the document is not"):
        duralog.load_workflow(tmp_path / "latin.toml", TYPES)


def test_yaml_when_pyyaml_is_installed() -> None:
    text = "name: cf-yaml\nsteps:\n  a:\n    type: echo\n  b:\n    type: echo\n"
    text += "    depends_on: [a, c]\n"
    if importlib.util.find_spec("yaml") is None:
        with pytest.raises(duralog.ConfigurationError, match="needs PyYAML"):
            duralog.parse_workflow(text, TYPES, format="yaml", source="f.yaml")
        return
    with pytest.raises(duralog.WorkflowConfigError) as caught:
        duralog.parse_workflow(text, TYPES, format="yaml", source="f.yaml")
    assert (caught.value.line, caught.value.key) == (7, "steps.b.depends_on[1]")
    ok = duralog.parse_workflow(text.replace(", c", ""), TYPES, format="yaml")
    assert [t.name for t in ok.tasks] == ["a", "b"]


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "reason"),
    [
        ('type = "join"', 'type = "jion"', 23, "steps.both.type", "unknown step type 'jion'"),
        ('"right"]', '"rigth"]', 24, "steps.both.depends_on[1]", "'rigth' is not a step"),
        ("max_attempts = 5", "max_attempts = 0", 15, "steps.left.retry.max_attempts", "at least 1"),
        ("timeout = 5", 'timeout = "5s"', 20, "steps.right.timeout", "positive number"),
        ('label = "R"', 'lable = "R"', 19, "steps.right.params.lable", "no parameter 'lable'"),
        ("jitter = false", "jiter = false", 25, "steps.both.retry.jiter", "unknown key"),
        ('value = "default"', 'valeu = "default"', 7, "inputs.valeu", "no step takes an input"),
        ("max_parallel = 2", "max_parallel = 0", 4, "max_parallel", "at least 1"),
        ('name = "cf-report"', "", 1, "name", "missing"),
        ('type = "echo"\nparams = {', 'params = {', 12, "steps.left.type", "missing"),
        ("[steps.right]", "[steps.right]\ndepends_on = 'both'", 18, "steps.right.depends_on[0]",
         "cycle: right -> both -> right"),
        ("[steps.both]", "[steps.both\n", 22, None, "invalid TOML"),
        ("max_attempts = 5", 'max_attempts = "5"', 15, "steps.left.retry.max_attempts",
         "must be a whole number of at least 1, not '5'"),
        ("max_parallel = 2", "max_parallel = 2.0", 4, "max_parallel", "whole number"),
        ("timeout = 5", "timeout = inf", 20, "steps.right.timeout", "positive number"),
        ("timeout = 60", "timeout = nan", 10, "defaults.timeout", "positive number"),
        ("jitter = false", 'non_retryable = ["KeyError", 3]', 25,
         "steps.both.retry.non_retryable[1]", "must be an exception name, not 3"),
        ('name = "cf-report"', 'name = "  "', 2, "name", "must be a non-blank string"),
        ("[steps.left]", "[steps.left]\nretries = 2", 13, "steps.left.retries",
         "unknown key; expected one of: type, depends_on, params, retry, timeout"),
        ('params.label = "R"', 'params.label = "R"\nparams.7 = 1', 20,
         "steps.right.params.7", "step type 'echo' has no parameter '7'"),
    ],
)  # fmt: skip
def test_each_error_names_the_line_and_the_key(
    old: str, new: str, line: int, key: str | None, reason: str
) -> None:
    broken = REPORT_TOML.replace(old, new, 1)
    assert broken != REPORT_TOML
    with pytest.raises(duralog.WorkflowConfigError) as caught:
        duralog.parse_workflow(broken, TYPES, format="toml", source="report.toml")
    error = caught.value
    assert (error.line, error.key) == (line, key), str(error)
    assert reason in error.reason
    assert str(error).startswith(f"report.toml:{line}: " + (f"{key}: " if key else ""))


def test_a_retry_table_sets_only_the_fields_it_names() -> None:
    text = REPORT_TOML.replace("jitter = false", 'non_retryable = ["KeyError"]')
    report = duralog.parse_workflow(text, TYPES, format="toml", source="report.toml")
    both = report.tasks[2].step
    assert isinstance(both, duralog.Step)
    assert both.retry.non_retryable == ("KeyError",)
    assert (both.retry.max_attempts, both.retry.backoff, both.retry.jitter) == (4, 3.0, True)


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ('{\n "name": "cf-dup",\n "steps": {"a": {"type": "echo"}},\n "name": "x"\n}', 4, "name"),
        ('{"name": "cf-dup", "steps": {\n "a": {"type": "echo",\n  "type": "echo"}}}', 3,
         "steps.a.type"),
    ],
)  # fmt: skip
def test_a_key_given_twice_is_refused_at_its_second_line(text: str, line: int, key: str) -> None:
    with pytest.raises(duralog.WorkflowConfigError) as caught:
        duralog.parse_workflow(text, TYPES, format="json", source="dup.json")
    assert (caught.value.line, caught.value.key) == (line, key)
    assert caught.value.reason == "this key appears twice"


def test_non_string_keys_are_refused() -> None:
    pytest.importorskip("yaml")
    text = "name: cf-keys\nsteps:\n  a:\n    type: echo\n    params:\n      1: x\n"
    with pytest.raises(duralog.WorkflowConfigError) as caught:
        duralog.parse_workflow(text, TYPES, format="yaml", source="keys.yaml")
    assert str(caught.value) == "keys.yaml:5: steps.a.params: keys must be strings, not 1"


def test_importing_duralog_does_not_load_the_document_modules() -> None:
    code = (
        "import sys, duralog\n"
        "assert not [m for m in sys.modules if 'config' in m and 'duralog' in m], sys.modules\n"
        "assert 'tomllib' not in sys.modules\n"
        "from duralog import StepRegistry, load_workflow\n"
        "assert load_workflow is duralog.load_workflow and 'load_workflow' in dir(duralog)\n"
        "assert 'duralog.patterns.config' in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout == "ok\n", done.stderr


def test_the_step_registry() -> None:
    registry = duralog.StepRegistry([echo])
    assert registry.names() == ["echo"] and "echo" in registry
    assert registry.add(echo) is echo  # the same step again is fine
    with pytest.raises(duralog.RegistrationError, match="registered twice"):
        registry.add(combine, name="echo")
    with pytest.raises(duralog.RegistrationError, match=r"no step type 'nope' \(known: echo\)"):
        registry.get("nope")
    with pytest.raises(duralog.ConfigurationError, match=r"needs a @duralog\.step"):
        registry.add(print)  # type: ignore[type-var]


# -- property tests: malformed documents -------------------------------------------

DocPath = tuple[str | int, ...]
NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
SCALARS = st.one_of(st.booleans(), st.integers(-(10**20), 10**20), TEXT, st.floats(-1e9, 1e9))


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    steps: dict[str, Any] = {}
    for i, name in enumerate(names):
        body: dict[str, Any] = {"type": "echo"}
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        if deps:
            body["depends_on"] = deps
        if draw(st.booleans()):
            body["params"] = {"label": draw(TEXT)}
        if draw(st.booleans()):
            body["timeout"] = draw(st.floats(0.5, 1e6))
        if draw(st.booleans()):
            body["retry"] = {"max_attempts": draw(st.integers(1, 9)), "jitter": draw(st.booleans())}
        steps[name] = body
    doc: dict[str, Any] = {"name": "cf-generated"}
    if draw(st.booleans()):
        doc["max_parallel"] = draw(st.integers(1, 8))
    if draw(st.booleans()):
        doc["inputs"] = {"value": draw(SCALARS)}
    doc["steps"] = steps
    return doc


@st.composite
def broken_documents(draw: st.DrawFn) -> tuple[dict[str, Any], DocPath]:
    """A valid document broken in one place, and the path of the key an error must name."""
    doc = draw(valid_documents())
    steps = doc["steps"]
    name = draw(st.sampled_from(list(steps)))
    body = steps[name]
    at: DocPath = ("steps", name)
    kind = draw(st.sampled_from(range(12)))
    if kind == 0:
        del doc["name"]
        return doc, ("name",)
    if kind == 1:
        del body["type"]
        return doc, (*at, "type")
    if kind == 2:
        body["type"] = draw(TEXT.filter(lambda t: t not in ("echo", "join")))
        return doc, (*at, "type")
    if kind == 3:
        where = draw(st.sampled_from([(), at, (*at, "retry")]))
        table = doc if not where else body if where == at else body.setdefault("retry", {})
        key = draw(NAMES.filter(lambda k: k not in table and k not in _KNOWN))
        table[key] = draw(SCALARS)
        return doc, (*where, key)
    if kind == 4:
        key = draw(st.sampled_from(["timeout", "params", "retry", "depends_on", "type"]))
        body[key] = draw(st.sampled_from([True, -1, 0, [1], "x" if key != "type" else 5]))
        if key == "depends_on" and body[key] == [1]:
            return doc, (*at, key, 0)
        if key in ("params", "depends_on") and body[key] == "x":
            body[key] = 7
        return doc, (*at, key)
    if kind == 5:
        deps = body.setdefault("depends_on", [])
        deps.append(draw(NAMES.filter(lambda n: n not in steps)))
        return doc, (*at, "depends_on", len(deps) - 1)
    if kind == 6:  # a cycle: the first step depends on the last one, which (now) needs it
        first, last = next(iter(steps)), list(steps)[-1]
        steps[last].setdefault("depends_on", [])
        if first not in steps[last]["depends_on"]:
            steps[last]["depends_on"].append(first)
        steps[first]["depends_on"] = [last]
        return doc, ("steps", first, "depends_on", 0)
    if kind == 7:
        key = draw(st.sampled_from(["max_attempts", "initial_interval", "backoff", "jitter"]))
        value = {"max_attempts": 0, "initial_interval": -1, "backoff": 0.5, "jitter": "yes"}[key]
        body["retry"] = {**body.get("retry", {}), key: value}
        return doc, (*at, "retry", key)
    if kind == 8:
        key = draw(NAMES.filter(lambda k: k not in ("label", "value")))
        body["params"] = {**body.get("params", {}), key: draw(SCALARS)}
        return doc, (*at, "params", key)
    if kind == 9:
        doc["inputs"] = {draw(NAMES.filter(lambda k: k not in ("label", "value"))): 1}
        return doc, ("inputs", next(iter(doc["inputs"])))
    if kind == 10:
        doc["max_parallel"] = draw(st.sampled_from([0, -2, 1.5, "4", True]))
        return doc, ("max_parallel",)
    doc["steps"] = draw(st.sampled_from([{}, [], "steps", 3]))
    return doc, ("steps",)


_KNOWN = {"name", "description", "max_parallel", "inputs", "defaults", "steps"} | {
    "type", "depends_on", "params", "retry", "timeout", "max_attempts", "initial_interval",
    "backoff", "max_interval", "jitter", "non_retryable",
}  # fmt: skip


def toml_text(doc: dict[str, Any]) -> tuple[str, dict[DocPath, int]]:
    """``doc`` as TOML (tables as headers, the rest inline), and the line of every key."""
    lines: list[str] = []
    where: dict[DocPath, int] = {(): 1}

    def table(path: DocPath, value: dict[str, Any]) -> None:
        for key, item in value.items():
            if not isinstance(item, dict):
                lines.append(f"{json.dumps(key)} = {toml_value(item)}")
                where[(*path, key)] = len(lines)
                for i in range(len(item) if isinstance(item, list) else 0):
                    where[(*path, key, i)] = len(lines)
        for key, item in value.items():
            if isinstance(item, dict):
                lines.append(f"[{'.'.join(json.dumps(p) for p in (*path, key))}]")
                where[(*path, key)] = len(lines)
                table((*path, key), item)

    table((), doc)
    return "\n".join(lines) + "\n", where


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return repr(value)


def json_text(doc: Any) -> tuple[str, dict[DocPath, int]]:
    """``doc`` as JSON with one key or item per line, and the line of every key."""
    lines: list[str] = []
    where: dict[DocPath, int] = {(): 1}

    def put(path: DocPath, value: Any, prefix: str, comma: str) -> None:
        pad = "  " * len(path)
        if isinstance(value, dict | list) and value:
            items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
            lines.append(pad + prefix + ("{" if isinstance(value, dict) else "["))
            where[path] = len(lines)
            for i, (key, item) in enumerate(items):
                label = f"{json.dumps(key)}: " if isinstance(value, dict) else ""
                put((*path, key), item, label, "," if i < len(items) - 1 else "")
            lines.append(pad + ("}" if isinstance(value, dict) else "]") + comma)
        else:
            lines.append(pad + prefix + json.dumps(value) + comma)
            where[path] = len(lines)

    put((), doc, "", "")
    where[()] = 1
    return "\n".join(lines) + "\n", where


def expected_line(where: dict[DocPath, int], path: DocPath) -> int:
    while path not in where:
        path = path[:-1]
    return where[path]


def key_text(path: DocPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


@given(valid_documents(), st.sampled_from(["toml", "json"]))
def test_generated_valid_documents_build(doc: dict[str, Any], format: str) -> None:
    text, _ = (toml_text if format == "toml" else json_text)(doc)
    built = duralog.parse_workflow(text, TYPES, format=format)  # type: ignore[arg-type]
    assert [t.name for t in built.tasks] == list(doc["steps"])


@given(broken_documents(), st.sampled_from(["toml", "json"]))
def test_a_broken_document_names_the_broken_key_and_its_line(
    broken: tuple[dict[str, Any], DocPath], format: str
) -> None:
    doc, path = broken
    text, where = (toml_text if format == "toml" else json_text)(doc)
    with pytest.raises(duralog.WorkflowConfigError) as caught:
        duralog.parse_workflow(text, TYPES, format=format, source="gen")  # type: ignore[arg-type]
    error = caught.value
    assert error.key == key_text(path), f"{error}\n{text}"
    assert error.line == expected_line(where, path), f"{error}\n{text}"
    assert str(error).startswith(f"gen:{error.line}: {error.key}: ")


@given(st.text(max_size=200), st.sampled_from(["toml", "json", "yaml"]))
def test_random_text_gets_a_config_error_never_a_traceback(text: str, format: str) -> None:
    if format == "yaml" and importlib.util.find_spec("yaml") is None:
        format = "json"
    try:
        duralog.parse_workflow(text, TYPES, format=format, source="t")  # type: ignore[arg-type]
    except duralog.WorkflowConfigError as error:
        assert error.line >= 1 and error.reason and "Traceback" not in str(error)


@given(
    st.recursive(
        SCALARS | st.none(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
        max_leaves=12,
    )
)
def test_any_json_value_gets_a_config_error_or_builds(value: Any) -> None:
    text, _ = json_text(value)
    try:
        duralog.parse_workflow(text, TYPES, format="json", source="v")
    except duralog.WorkflowConfigError as error:
        assert error.line >= 1 and error.reason


def test_two_documents_with_one_name_are_refused_but_one_loads_twice() -> None:
    text = 'name = "cf-twice"\n[steps.only]\ntype = "echo"\nparams = {label = "x"}\n'
    first = duralog.parse_workflow(text, TYPES, format="toml", source="eu.toml")
    again = duralog.parse_workflow(text, TYPES, format="toml", source="eu.toml")
    assert again.name == first.name == "cf-twice"
    with pytest.raises(duralog.WorkflowConfigError) as caught:
        duralog.parse_workflow(text, TYPES, format="toml", source="us.toml")
    error = caught.value
    assert (error.source, error.line, error.key) == ("us.toml", 1, "name")
    assert "give this document a name of its own" in str(error)


GUARDED = duralog.CircuitBreaker("cf-guarded", failure_threshold=3)
SECURE = duralog.StepRegistry()


class Vault:
    def __init__(self, secret: str) -> None:
        self.secret = secret


@SECURE.add
@duralog.step(circuit=GUARDED)
def lookup(key: str, vault: Vault = duralog.inject()) -> str:
    return f"{key}:{len(vault.secret)}"


def test_a_document_keeps_the_steps_breaker_and_injected_clients(tmp_path: Path) -> None:
    from duralog.patterns.breaker import circuit_of

    text = (
        'name = "cf-secure"\n[defaults]\ntimeout = 30\n'
        '[steps.one]\ntype = "lookup"\nparams = {key = "k"}\n'
    )
    flow = duralog.parse_workflow(text, SECURE, format="toml", source="secure.toml")
    (task,) = flow.tasks
    assert task.step.timeout == 30 and circuit_of(task.step) is GUARDED
    db = str(tmp_path / "secure.db")
    with duralog.Engine(db, durability="normal", resources={"vault": Vault("hunter2")}) as e:
        handle = e.start(flow)
        assert handle.result(timeout=10) == {"one": "k:7"}
    assert b"hunter2" not in Path(db).read_bytes()
    with pytest.raises(duralog.WorkflowConfigError) as caught:
        duralog.parse_workflow(
            text.replace('{key = "k"}', '{key = "k", vault = "x"}'),
            SECURE,
            format="toml",
            source="secure2.toml",
        )
    assert caught.value.key == "steps.one.params.vault" and "injected" in caught.value.reason


@pytest.mark.parametrize(
    "bad",
    ["timeout: !!float 30s", "timeout: !!int three", "timeout: !!timestamp tomorrow", "x: !!float"],
)
def test_badly_tagged_yaml_is_a_config_error(bad: str) -> None:
    pytest.importorskip("yaml")
    text = f"name: cf-yaml-tags\n{bad}\nsteps:\n  a:\n    type: echo\n"
    with pytest.raises(duralog.WorkflowConfigError, match="invalid YAML"):
        duralog.parse_workflow(text, TYPES, format="yaml", source="tags.yaml")


@duralog.step(name="cf.fast", inline=True)
def cf_fast(x: int = 1) -> int:
    return x


def test_an_inline_step_stays_inline_and_takes_no_document_timeout() -> None:
    registry = duralog.StepRegistry([cf_fast])
    doc = {
        "name": "cf-inline",
        "defaults": {"timeout": 30},  # a default does not reach the inline step
        "steps": {"a": {"type": "cf.fast", "retry": {"max_attempts": 2}}},
    }
    (task,) = duralog.parse_workflow(json.dumps(doc), registry, format="json").tasks
    assert (task.step.inline, task.step.timeout, task.step.retry.max_attempts) == (True, None, 2)
    doc["steps"] = {"a": {"type": "cf.fast", "timeout": 5}}
    with pytest.raises(duralog.WorkflowConfigError, match=r"inline .* cannot have a timeout"):
        duralog.parse_workflow(json.dumps(doc), registry, format="json", source="doc.json")
