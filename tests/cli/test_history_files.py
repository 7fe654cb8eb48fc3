"""Whatever bytes a history file holds, reading it loads or raises ``HistoryFileError``, and
``duralog replay --file`` answers with an exit code and one line, never a traceback.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duralog import HistoryFileError
from duralog.cli import main
from duralog.replay.history import History, load_history
from duralog.store.events import EVENT_KINDS

# The autouse ``in_cli_folder`` fixture only changes directory: the same for every example.
cli_settings = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="session")
def good_files(shop_db: str) -> list[bytes]:
    """Valid history files exported by the CLI: completed, failed, still running."""
    runner = CliRunner()
    files = []
    for workflow_id in ("order-1", "fail-1", "sleep-1"):
        result = runner.invoke(main, ["--db", shop_db, "export", workflow_id, "-o", "-"])
        assert result.exit_code == 0, result.output
        files.append(result.stdout.encode())
    return files


def load_or_error(data: bytes | str) -> History | None:
    """``load_history(data)``, or None when it raised ``HistoryFileError``; any other
    exception escapes and fails the test."""
    try:
        return load_history(data)
    except HistoryFileError as exc:
        assert str(exc), "a HistoryFileError must say what is wrong"
        return None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {
        "seq": st.integers(-2, 5),
        "at": st.floats(allow_nan=False),
        "kind": st.sampled_from(sorted(EVENT_KINDS)),
    },
    optional={"name": st.text(max_size=5), "args": json_values, "step_seq": st.integers(-1, 5)},
)
document_like = st.fixed_dictionaries(
    {
        "format": st.sampled_from(["duralog-history", "other"]),
        "version": st.integers(-1, 3),
        "workflow_id": st.text(max_size=5),
        "workflow_name": st.text(max_size=5),
        "events": st.lists(event_like | json_values, max_size=5),
    },
    optional={"event_format": st.integers(-1, 3)},
)


@given(st.binary(max_size=300))
@settings(max_examples=100)
def test_arbitrary_bytes(data: bytes) -> None:
    load_or_error(data)


@given(json_values | document_like)
@settings(max_examples=100)
def test_arbitrary_json_documents(value: Any) -> None:
    text = json.dumps(value)
    load_or_error(text)
    load_or_error(text.encode())


@given(st.data())
@settings(max_examples=60)
def test_truncated_files(good_files: list[bytes], data: st.DataObject) -> None:
    good = data.draw(st.sampled_from(good_files))
    cut = data.draw(st.integers(0, len(good) - 1))
    loaded = load_or_error(good[:cut])
    if good[:cut].strip() != good.strip():
        assert loaded is None, f"a file cut at byte {cut} of {len(good)} was accepted"


def mutate(good: bytes, data: st.DataObject) -> tuple[str, bytes]:
    """One event of ``good`` with a wrong seq, a wrong kind, or a field removed."""
    doc = json.loads(good)
    index = data.draw(st.integers(0, len(doc["events"]) - 1), label="event")
    event = doc["events"][index]
    how = data.draw(st.sampled_from(["seq", "kind", "field", "value"]), label="mutation")
    if how == "seq":
        event["seq"] = data.draw(
            st.integers(-3, 40).filter(lambda s: s != event["seq"]) | st.text(max_size=3)
        )
    elif how == "kind":
        event["kind"] = data.draw(
            st.sampled_from(sorted(EVENT_KINDS - {event["kind"]})) | st.text(max_size=8)
        )
    elif how == "field":
        event.pop(data.draw(st.sampled_from(sorted(event))))
    else:
        key = data.draw(st.sampled_from(sorted(event)))
        if event["kind"] == "WorkflowStarted" and key in ("args", "kwargs"):
            # Keep the shape (array / object): other shapes hit a known bug, pinned by
            # test_recorded_input_of_the_wrong_shape, and would make this test flaky.
            shape = (
                st.lists(json_values) if key == "args" else st.dictionaries(st.text(), json_values)
            )
            event[key] = data.draw(shape)
        else:
            event[key] = data.draw(json_values)
    return how, json.dumps(doc).encode()


@given(st.data())
@settings(max_examples=100)
def test_mutated_events(good_files: list[bytes], data: st.DataObject) -> None:
    how, bad = mutate(data.draw(st.sampled_from(good_files)), data)
    loaded = load_or_error(bad)
    if how == "seq":
        assert loaded is None, "a history with a wrong seq was accepted"


@pytest.mark.parametrize("key", ["seq", "kind", "at"])
def test_an_event_without_seq_kind_or_at_is_rejected(good_files: list[bytes], key: str) -> None:
    doc = json.loads(good_files[0])
    del doc["events"][1][key]
    with pytest.raises(HistoryFileError, match="event #2 is malformed"):
        load_history(json.dumps(doc))


@pytest.mark.parametrize("where", ["document", "event"])
def test_deeply_nested_json(good_files: list[bytes], where: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    if where == "document":
        text = '{"format": "duralog-history", "extra": ' + deep + "}"
    else:
        doc = json.loads(good_files[0])
        doc["events"][0]["args"] = "@DEEP@"
        text = json.dumps(doc).replace('"@DEEP@"', deep)
    with pytest.raises(HistoryFileError):
        load_history(text)


# -- the same files through ``duralog replay --file`` ---------------------------


def replay_file(data: bytes) -> tuple[int, str, str, BaseException | None]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.json"
        path.write_bytes(data)
        result = CliRunner().invoke(
            main,
            ["--app", "app_workflows", "replay", "--file", str(path)],
            env={"DURALOG_DB": None, "DURALOG_APP": None},
        )
    return result.exit_code, result.stdout, result.stderr, result.exception


def assert_cli_answers(data: bytes) -> None:
    """Exit 2 with one ``error:`` line for a file that does not load; otherwise a replay
    report (exit 0 or 1). Never an exception other than SystemExit, never a traceback."""
    code, out, err, exception = replay_file(data)
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    assert "Traceback" not in out + err
    if load_or_error(data) is None:
        assert code == 2, out + err
        assert err.startswith("error: ") and err.count("\n") == 1 and out == "", err
    else:
        assert code in (0, 1), out + err


@given(st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), document_like))
@cli_settings
def test_cli_on_arbitrary_files(app: ModuleType, data: bytes) -> None:
    assert_cli_answers(data)


@given(st.data())
@cli_settings
def test_cli_on_truncated_files(
    app: ModuleType, good_files: list[bytes], data: st.DataObject
) -> None:
    good = data.draw(st.sampled_from(good_files))
    assert_cli_answers(good[: data.draw(st.integers(0, len(good) - 1))])


@given(st.data())
@cli_settings
def test_cli_on_mutated_files(
    app: ModuleType, good_files: list[bytes], data: st.DataObject
) -> None:
    _, bad = mutate(data.draw(st.sampled_from(good_files)), data)
    assert_cli_answers(bad)


@pytest.mark.parametrize("kind", ["Step\nScheduled", "\r"])
def test_error_line_with_control_characters(
    app: ModuleType, good_files: list[bytes], kind: str
) -> None:
    doc = json.loads(good_files[0])
    doc["events"][1]["kind"] = kind
    code, out, err, _ = replay_file(json.dumps(doc).encode())
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert all(c.isprintable() for c in err.rstrip("\n")), repr(err)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("args", 5),
        ("args", True),
        ("kwargs", [1]),
        ("kwargs", 5),
        ("args", "xy"),
        ("args", {"a": 1}),
        ("kwargs", {"unknown": 1}),
    ],
)
def test_recorded_input_of_the_wrong_shape(
    app: ModuleType, good_files: list[bytes], field: str, value: Any
) -> None:
    doc = json.loads(good_files[0])
    doc["events"][0][field] = value
    data = json.dumps(doc).encode()
    code, out, err, exception = replay_file(data)
    assert isinstance(exception, SystemExit), repr(exception)
    assert "Traceback" not in out + err
    assert code in (1, 2), out + err
