"""``duralog.DAG``: dependencies, parallelism bounded by ``max_parallel``, errors at definition."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from support import PATIENCE, wait_for, wait_in_log

import duralog
from duralog.replay.checker import check
from duralog.replay.history import History, dump_history, load_history
from duralog.testing import step_names

# -- what the steps measure ------------------------------------------------------

LOCK = threading.Lock()
SPANS: dict[str, tuple[float, float]] = {}  # task label -> (start, end), monotonic
RUNNING = {"now": 0, "max": 0}
BARRIER = threading.Barrier(2, timeout=PATIENCE)
DB = {"path": ""}


def measured(label: str, work: Callable[[], object] = lambda: None) -> None:
    """Run ``work`` as task ``label``, recording when it ran and how many ran at once."""
    start = time.monotonic()
    with LOCK:
        RUNNING["now"] += 1
        RUNNING["max"] = max(RUNNING["max"], RUNNING["now"])
    try:
        work()
    finally:
        with LOCK:
            RUNNING["now"] -= 1
        SPANS[label] = (start, time.monotonic())


@pytest.fixture(autouse=True)
def fresh_measures(db: str) -> None:
    global BARRIER
    SPANS.clear()
    RUNNING.update(now=0, max=0)
    BARRIER = threading.Barrier(2, timeout=PATIENCE)
    DB["path"] = db


# -- steps ---------------------------------------------------------------------


@duralog.step
def users(region: str) -> list[str]:
    measured("users", lambda: BARRIER.wait())
    return [f"ana@{region}", f"bo@{region}"]


@duralog.step
def orders(region: str, limit: int = 10) -> int:
    measured("orders", lambda: BARRIER.wait())
    return min(limit, 3)


@duralog.step
async def report(users: list[str], orders: int, title: str = "report") -> str:
    measured("report")
    return f"{title}: {len(users)} users, {orders} orders"


@duralog.step
def lane(label: str) -> str:
    measured(label, lambda: BARRIER.wait())
    return label


@duralog.step
def gather_all(**results: Any) -> list[str]:
    return sorted(results)


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def explode() -> None:
    raise RuntimeError("the warehouse is on fire")


@duralog.step
def outlast() -> str:
    wait_in_log(DB["path"], "StepFailed")  # finish only after the sibling's failure is recorded
    return "done"


@duralog.step
def after(label: str) -> str:
    return label


@duralog.step
def racer(label: str, leader: str) -> str:
    if label != leader:
        wait_in_log(DB["path"], "StepCompleted")  # the leader's completion is in the log first
    return label


@duralog.step
def merge(first: str, second: str) -> str:
    return f"{first}+{second}"


HELD = threading.Event()


@duralog.step
def held() -> str:
    assert HELD.wait(PATIENCE), "never released"
    return "held"


daily = duralog.DAG(
    "dg-daily",
    [
        duralog.Task(users),
        duralog.Task(orders),
        duralog.Task(report, depends_on=["users", "orders"], params={"title": "daily"}),
    ],
    defaults={"limit": 2},
)

bounded = duralog.DAG(
    "dg-bounded",
    [duralog.Task(lane, name=f"lane{i}", params={"label": f"lane{i}"}) for i in range(4)]
    + [duralog.Task(gather_all, depends_on=[f"lane{i}" for i in range(4)])],
    max_parallel=2,
)

failing = duralog.DAG(
    "dg-failing",
    [
        duralog.Task(explode),
        duralog.Task(outlast),
        duralog.Task(after, name="after_explode", depends_on="explode", params={"label": "x"}),
        duralog.Task(after, name="after_outlast", depends_on="outlast", params={"label": "y"}),
    ],
)

race = duralog.DAG(
    "dg-race",
    [
        duralog.Task(racer, name="first", params={"label": "first"}),
        duralog.Task(racer, name="second", params={"label": "second"}),
        duralog.Task(merge, depends_on=["first", "second"]),
    ],
)


cancellable = duralog.DAG(
    "dg-cancellable",
    [duralog.Task(held), duralog.Task(after, depends_on="held", params={"label": "never"})],
)


@duralog.workflow(name="dg-parent")
async def parent(regions: list[str]) -> list[dict[str, Any]]:
    return [await daily({"region": region}) for region in regions]


# -- behaviour -----------------------------------------------------------------


def test_independent_tasks_run_at_once_and_dependants_after(engine: duralog.Engine) -> None:
    handle = engine.start(daily, {"region": "eu"})
    assert handle.result(timeout=15) == {"report": "daily: 2 users, 2 orders"}
    (u0, u1), (o0, o1), (r0, _) = SPANS["users"], SPANS["orders"], SPANS["report"]
    assert max(u0, o0) < min(u1, o1), "users and orders did not overlap in time"
    assert r0 >= max(u1, o1), "report started before its dependencies ended"
    assert step_names(handle) == ["users", "orders", "report"]


def test_max_parallel_bounds_the_tasks_running_at_once(engine: duralog.Engine) -> None:
    handle = engine.start(bounded)
    assert handle.result(timeout=15) == {"gather_all": ["lane0", "lane1", "lane2", "lane3"]}
    assert RUNNING["max"] == 2  # the barrier proves two overlap; the bound, no more
    in_flight, most = set(), 0  # the same from the log: scheduled and not yet completed
    for entry in handle.history():
        if entry.kind == "StepScheduled":
            in_flight.add(entry.seq)
        elif entry.kind == "StepCompleted":
            in_flight.discard(entry.event.step_seq)  # type: ignore[union-attr]
        most = max(most, len(in_flight))
    assert most == 2


def test_a_failure_starts_nothing_new_lets_running_tasks_finish_and_is_raised(
    engine: duralog.Engine,
) -> None:
    handle = engine.start(failing)
    with pytest.raises(duralog.WorkflowFailed, match="the warehouse is on fire") as caught:
        handle.result(timeout=15)
    assert caught.value.cause.type == "duralog.errors.StepFailed"
    assert "in DAG 'dg-failing', task 'explode' failed" in caught.value.cause.traceback
    assert "not started: after_explode, after_outlast" in caught.value.cause.traceback
    kinds = [e.kind for e in handle.history()]
    assert step_names(handle) == ["explode", "outlast"]
    assert kinds.count("StepCompleted") == 1  # outlast finished before the DAG gave up


def test_inputs_fill_parameters_by_name_and_are_checked(engine: duralog.Engine) -> None:
    assert engine.run(daily, {"region": "us", "limit": 1}, timeout=15) == {
        "report": "daily: 2 users, 1 orders"
    }
    for given, message in [
        ({}, r"task 'users' needs input 'region'; start the DAG with \{'region': ...\}"),
        ({"region": "eu", "regoin": "x"}, "input 'regoin', which no task takes"),
    ]:
        handle = engine.start(daily, given)
        with pytest.raises(duralog.WorkflowFailed, match=message):
            handle.result(timeout=15)
        assert step_names(handle) == []  # refused before any task ran


def test_a_dag_runs_as_a_child_workflow(engine: duralog.Engine) -> None:
    handle = engine.start(parent, ["eu"])
    assert handle.result(timeout=15) == [{"report": "daily: 2 users, 2 orders"}]
    assert [r.status for r in engine.list(name="dg-daily")] == [duralog.WorkflowStatus.COMPLETED]


def test_a_workflow_can_be_a_task() -> None:
    nested = duralog.DAG(
        "dg-nested",
        [
            duralog.Task(daily, name="inner", params={"inputs": {"region": "nz"}}),
            duralog.Task(after),
        ],
        defaults={"label": "outer"},
    )
    with duralog.Engine(DB["path"], durability="normal") as engine:
        assert engine.run(nested, timeout=15) == {
            "inner": {"report": "daily: 2 users, 2 orders"},
            "after": "outer",
        }


def test_a_cancel_stops_the_dag_and_starts_nothing_more(engine: duralog.Engine) -> None:
    HELD.clear()
    handle = engine.start(cancellable)
    wait_for(lambda: "StepStarted" in [e.kind for e in handle.history()])
    handle.cancel()
    with pytest.raises(duralog.WorkflowFailed, match="cancelled"):
        handle.result(timeout=PATIENCE)
    HELD.set()
    assert handle.status() is duralog.WorkflowStatus.CANCELLED
    assert step_names(handle) == ["held"]


# -- replay ------------------------------------------------------------------------


def test_replay_makes_the_same_decisions_whatever_order_tasks_finished_in(
    engine: duralog.Engine,
) -> None:
    histories = {}
    for leader in ("first", "second"):
        handle = engine.start(race, {"leader": leader})
        assert handle.result(timeout=15) == {"merge": "first+second"}
        exported = dump_history(History(handle.id, "dg-race", handle.history()))
        histories[leader] = load_history(exported)

    def completed(history: History) -> list[int]:  # the seqs of the steps, as they finished
        return [e.event.step_seq for e in history.events if e.kind == "StepCompleted"]  # type: ignore[union-attr]

    def scheduled(history: History) -> list[tuple[int, str]]:
        return [(e.seq, e.event.name) for e in history.events if e.kind == "StepScheduled"]  # type: ignore[union-attr]

    # The two runs finished "first" (seq 2) and "second" (seq 3) in opposite orders...
    assert completed(histories["first"])[:2] == [2, 3]
    assert completed(histories["second"])[:2] == [3, 2]
    # ...and still decided the same calls in the same order, and replay.
    assert [n for _, n in scheduled(histories["first"])] == ["racer", "racer", "merge"]
    assert [n for _, n in scheduled(histories["second"])] == ["racer", "racer", "merge"]
    for history in histories.values():
        report = check(history, [race])
        assert report.ok and report.finished, report.error


def test_replay_against_a_changed_dag_diverges() -> None:
    with duralog.Engine(DB["path"], durability="normal") as engine:
        handle = engine.start(daily, {"region": "eu"})
        handle.result(timeout=15)
        history = History(handle.id, "dg-daily", handle.history())
    reordered = duralog.DAG(
        "dg-daily-reordered",
        [duralog.Task(orders), duralog.Task(users), daily.tasks[2]],  # orders now starts first
        defaults={"limit": 2},
    )
    assert not check(history, {"dg-daily": reordered}).ok
    replaced = duralog.DAG(
        "dg-daily-replaced",
        [
            *daily.tasks[:2],
            duralog.Task(
                merge,
                name="report",
                depends_on=["users", "orders"],
                params={"first": "a", "second": "b"},
            ),
        ],
    )
    found = check(history, {"dg-daily": replaced})
    assert (found.ok, found.seq) == (False, 8)
    assert (found.recorded, found.attempted) == ("StepScheduled report", "StepScheduled merge")


# -- definition errors -----------------------------------------------------------------


def task_list(*specs: tuple[str, list[str]]) -> list[duralog.Task]:
    return [duralog.Task(after, name=name, depends_on=deps) for name, deps in specs]


def test_a_cycle_is_refused_at_definition_and_named() -> None:
    with pytest.raises(duralog.DAGCycleError, match="b -> c -> d -> b") as caught:
        duralog.DAG("dg-cycle", task_list(("a", []), ("b", ["c"]), ("c", ["d"]), ("d", ["b", "a"])))
    assert caught.value.cycle == ("b", "c", "d", "b")
    assert isinstance(caught.value, duralog.ConfigurationError)
    with pytest.raises(duralog.DAGCycleError, match="a -> a"):
        duralog.DAG("dg-self", task_list(("a", ["a"])))


def test_a_missing_dependency_is_refused_at_definition_and_named() -> None:
    with pytest.raises(duralog.MissingDependencyError, match="task 'b' depends on 'z'") as caught:
        duralog.DAG("dg-missing", task_list(("a", []), ("b", ["a", "z"])))
    assert (caught.value.task, caught.value.missing) == ("b", "z")


def test_a_long_chain_is_checked_without_recursion() -> None:
    chain = task_list(*[(f"t{i}", [f"t{i - 1}"] if i else []) for i in range(3000)])
    assert len(duralog.DAG("dg-chain", chain).sinks) == 1


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: duralog.DAG("dg-e1", []), "has no tasks"),
        (lambda: duralog.DAG("dg-e2", task_list(("a", []), ("a", []))), "two tasks named 'a'"),
        (lambda: duralog.DAG("dg-e3", task_list(("a", [])), max_parallel=0), "max_parallel"),
        (lambda: duralog.DAG("dg-e4", [after]), "is not a duralog.Task"),  # type: ignore[list-item]
        (
            lambda: duralog.DAG("dg-e5", [duralog.Task(after, params={"lable": 1})]),
            "has no parameter 'lable'",
        ),
        (
            lambda: duralog.DAG(
                "dg-e6",
                [duralog.Task(after), duralog.Task(merge, depends_on="after", params={"after": 1})],
            ),
            "both a dependency and a param",
        ),
        (lambda: duralog.Task(lambda: 1), "is not a durable step"),  # type: ignore[arg-type]
        (
            lambda: duralog.DAG("dg-e7", [duralog.Task(duralog.step(lambda x, /: x))]),
            "positional-only parameter 'x'",
        ),
        (
            lambda: duralog.DAG("dg-e8", [duralog.Task(after, params={"label": object()})]),
            "cannot be recorded",
        ),
        (lambda: duralog.Task(after, depends_on=[1]), "depends_on must name tasks"),  # type: ignore[list-item]
    ],
)
def test_definition_errors(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(duralog.ConfigurationError, match=message):
        build()


def test_two_definitions_under_one_name_in_one_module_are_refused() -> None:
    duralog.DAG("dag-defined-twice", [duralog.Task(users)])
    with pytest.raises(duralog.RegistrationError, match="two workflows are named"):
        duralog.DAG("dag-defined-twice", [duralog.Task(orders)])
    duralog.Pipeline("pipeline-defined-twice").then(users)
    with pytest.raises(duralog.RegistrationError, match="two workflows are named"):
        duralog.Pipeline("pipeline-defined-twice")


def test_a_default_no_task_takes_is_refused_at_definition() -> None:
    with pytest.raises(duralog.ConfigurationError, match=r"defaults has 'limt'.*inputs: limit"):
        duralog.DAG("dag-bad-default", [duralog.Task(orders)], defaults={"limt": 5})
