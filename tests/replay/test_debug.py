"""``replay.debug``: stop in the workflow code at a seq, and a replay's report in words."""

from __future__ import annotations

import io
import re
import sys
import sysconfig
import types
from typing import Any

from support import run_in_memory

import duralog
from duralog.replay.checker import ReplayReport, check
from duralog.replay.debug import (
    ReplayTally,
    WorkflowPdb,
    breakpoint_at,
    is_user_code,
    report_text,
    stop_banner,
)
from duralog.replay.definitions import Workflow
from duralog.replay.history import History
from duralog.replay.state import Input


@duralog.step(name="dbg_charge")
def charge(order: str, cents: int) -> str:
    return f"charged {order} {cents}"


async def order(order_id: str) -> str:
    charged = await charge(order_id, 700)
    return charged.upper()


ORDER = Workflow(order, name="dbg_order")


def history() -> History:
    return History("dbg-1", "dbg_order", run_in_memory(ORDER, "o-5", workflow_id="dbg-1"))


def test_the_breakpoint_stops_once_at_the_first_input_from_its_seq() -> None:
    stops: list[Input] = []
    hook = breakpoint_at(3, stops.append)
    for seq in (2, 3, 4, 5):
        hook(Input(seq, float(seq), "StepCompleted", seq))
    assert [i.seq for i in stops] == [3]
    late: list[Input] = []
    hook = breakpoint_at(3, late.append)
    hook(Input(9, 9.0, "TimerFired", 7))  # the first input past the seq stands for it
    assert [i.seq for i in late] == [9]


def test_the_breakpoint_on_a_replay_gets_the_input_the_code_receives() -> None:
    replayed = history()
    completed = next(e.seq for e in replayed.events if e.kind == "StepCompleted")
    stops: list[Input] = []
    assert check(replayed, [ORDER], on_input=breakpoint_at(completed, stops.append)).ok
    assert [(i.seq, i.kind) for i in stops] == [(completed, "StepCompleted")]
    assert f"seq {completed} (StepCompleted)" in stop_banner(stops[0])


def test_pdb_stops_in_the_workflow_code_with_the_recorded_value_in_scope() -> None:
    replayed = history()
    completed = next(e.seq for e in replayed.events if e.kind == "StepCompleted")
    out = io.StringIO()
    paths = sysconfig.get_paths()
    library = (paths["stdlib"], paths["purelib"])

    def debug(item: Input) -> None:
        commands = io.StringIO("p charged\nn\np charged\nn\np charged\nc\n")
        debugger = WorkflowPdb(library, stdin=commands, stdout=out)
        debugger.set_trace(sys._getframe(1))

    tracer = sys.gettrace()
    try:
        report = check(replayed, [ORDER], on_input=breakpoint_at(completed, debug))
    finally:
        sys.settrace(tracer)
    assert report.ok and report.finished
    shown = out.getvalue()
    stops = re.findall(r"> (\S+)\(\d+\)(\w+)\(\)", shown)
    assert stops and all(path == __file__ for path, _ in stops), stops  # only user code
    assert "order" in {name for _, name in stops}, stops  # the workflow's code
    assert "'charged o-5 700'" in shown  # the recorded value, printed by `p charged`


def frame(module: str, filename: str) -> Any:
    return types.SimpleNamespace(
        f_globals={"__name__": module}, f_code=types.SimpleNamespace(co_filename=filename)
    )


def test_only_user_code_is_user_code() -> None:
    library = ("/usr/lib/python3", "/site-packages")
    assert is_user_code("shop.workflows", "/srv/shop/workflows.py", library)
    assert not is_user_code("duralog.replay.instance", "/srv/duralog/instance.py", library)
    assert not is_user_code("click.core", "/srv/click/core.py", library)
    assert not is_user_code("asyncio.tasks", "/usr/lib/python3/asyncio/tasks.py", library)
    assert not is_user_code("requests", "/site-packages/requests/api.py", library)
    assert not is_user_code("shop.models", "<string>", library)  # generated code
    debugger = WorkflowPdb(library)
    assert not debugger.stop_here(frame("duralog.engine.api", "/srv/duralog/api.py"))
    assert not debugger.stop_here(frame("shop.models", "<string>"))


def report(ok: bool, **fields: Any) -> ReplayReport:
    return ReplayReport(
        workflow_id="o-1", workflow_name="checkout", ok=ok, replayed_to=7, events=9, **fields
    )


def test_a_report_in_words() -> None:
    waiting = report_text(report(True, finished=False, waiting_at="shop.py:12"))
    assert waiting == "o-1 (checkout): agrees (replayed 7 of 9 events, waiting at shop.py:12)"
    assert report_text(report(True, finished=True)).endswith("9 events, finished)")
    diverged = report_text(
        report(
            False,
            finished=False,
            seq=4,
            recorded="StepScheduled charge",
            attempted=None,
            location="shop.py:20",
        )
    ).splitlines()
    assert diverged[0] == "o-1 (checkout): DIVERGES at seq 4"
    assert diverged[1:4] == [
        "  recorded:  StepScheduled charge",
        "  attempted: no further decision",
        "  code:      shop.py:20",
    ]
    assert "duralog.patched" in diverged[4]


def test_the_tally_of_many_replays() -> None:
    tally = ReplayTally()
    assert tally.exit_code == 0 and tally.summary() == "0 agree, 0 diverge"
    tally.add(report(True, finished=True))
    tally.add(report(True, finished=True))
    assert tally.exit_code == 0 and tally.progress() == "2 agree, 0 diverge"
    tally.add(report(False, finished=False))
    assert tally.exit_code == 1 and tally.summary() == "2 agree, 1 diverge"
    tally.add_damaged()
    assert tally.summary() == "2 agree, 1 diverge, 1 damaged"


def test_a_breakpoint_past_the_end_never_fires_and_says_so() -> None:
    replayed = history()
    hook = breakpoint_at(replayed.events[-1].seq + 1, lambda item: None)
    assert check(replayed, [ORDER], on_input=hook).ok
    assert not hook.fired


def test_quitting_pdb_is_known_to_the_caller() -> None:
    replayed = history()
    completed = next(e.seq for e in replayed.events if e.kind == "StepCompleted")
    paths = sysconfig.get_paths()
    debuggers: list[WorkflowPdb] = []

    def debug(item: Input) -> None:
        debugger = WorkflowPdb(
            (paths["stdlib"], paths["purelib"]), io.StringIO("q\n"), io.StringIO()
        )
        debuggers.append(debugger)
        debugger.set_trace(sys._getframe(1))

    tracer = sys.gettrace()
    try:
        check(replayed, [ORDER], on_input=breakpoint_at(completed, debug))
    finally:
        sys.settrace(tracer)
    assert [d.quit_by_user for d in debuggers] == [True]
