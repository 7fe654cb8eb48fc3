"""How the CLI renders recorded calls."""

from __future__ import annotations

import subprocess
import sys

import msgspec

from duralog._format import call_arguments, describe, table
from duralog.store import events as ev
from duralog.store.events import LogEntry


def raw(text: str) -> msgspec.Raw:
    return msgspec.Raw(text.encode())


def test_keyword_arguments_are_shown_after_positional_ones() -> None:
    scheduled = ev.StepScheduled(name="left", args=raw("[]"), kwargs=raw('{"root":1}'))
    assert describe(LogEntry(2, 0.0, scheduled), {}) == "left(root=1)"
    assert call_arguments(raw('[1,"a"]'), raw('{"k":[1,2]}')) == '1,"a", k=[1,2]'
    assert call_arguments(raw("[1]"), raw("null")) == "1"


def test_an_encrypted_envelope_is_shown_as_recorded() -> None:
    assert call_arguments(raw("[]"), raw('"dlenc:abc"')) == '"dlenc:abc"'


def test_long_arguments_are_shortened() -> None:
    text = call_arguments(raw("[]"), raw('{"blob":"' + "x" * 500 + '"}'), limit=40)
    assert len(text) == 40 and text.endswith("…")


def test_a_table_shows_values_as_they_are() -> None:
    text = table(["ID", "EVENTS", "QUEUE"], [["007", 12, None], ["1e5", 3, "emails"]])
    assert [line.split() for line in text.splitlines()] == [
        ["ID", "EVENTS", "QUEUE"],
        ["007", "12", "-"],  # an id is no number: not "7"
        ["1e5", "3", "emails"],
    ]
    assert table(["ID"], []).split() == ["ID"]


def test_the_cli_loads_tabulate_only_to_print_a_table() -> None:
    code = "import sys, duralog.cli; print('tabulate' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
