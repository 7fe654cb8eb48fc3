"""Every example runs from a fresh process and does what its docstring says."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(name: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_checkout_crashes_and_resumes_without_rerunning_completed_steps() -> None:
    out = run("checkout.py")
    assert "exited with -9 (SIGKILL)" in out
    assert "completed before the crash, ran once: reserve, charge" in out
    assert "in flight at the crash, ran again (same key): ship" in out
    assert "result: order 1001: charged 4999 cents" in out


def test_approval_flow() -> None:
    out = run("approval.py")
    assert "exp-1 paid (approved by ana)" in out
    assert "exp-2 rejected by bo" in out
    assert "exp-3 escalated" in out
    assert "exp-4 cancelled" in out


def test_children() -> None:
    out = run("children.py")
    assert "rerouted: the warehouse is closed" in out
    assert out.count("COMPLETED") == 3 and out.count("FAILED") == 1


def test_agent_streams_tokens_to_a_reader_in_another_process() -> None:
    out = run("agent_stream.py")
    assert "the reader got 15 tokens, live, then the end" in out
    assert "they make the answer: True" in out
    assert "a late reader got the same answer: True" in out
    assert "status: done" in out


def test_poller_continues_as_new() -> None:
    out = run("poller.py")
    assert "final cursor 120" in out
    assert "feed~run3" in out


def test_the_example_test_kit_test() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "test_expense.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_pipeline_runs_each_stage_once() -> None:
    out = run("pipeline.py")
    assert "result: loaded 2 rows for 2026-11-25" in out
    assert "steps extract, transform, load" in out
    assert "stage runs: extract 1, transform 1, load 1" in out


def test_dag_runs_independent_tasks_at_once() -> None:
    out = run("dag.py")
    assert "{'report': 'eu: 3 users, 24.99 EUR in 2 orders'}" in out
    assert "users and orders ran at once for" in out


def test_saga_compensates_in_reverse_and_reports_a_failed_compensation() -> None:
    out = run("saga.py")
    lisbon = out.index("cancelled lisbon-hotel")
    assert lisbon < out.index("cancelled lisbon-flight")
    assert "FAILED: CompensationFailed" in out
    assert "ConnectionError: the airline's API is gone" in out
    assert "cancelled doomed-hotel" in out


def test_config_workflow_builds_runs_and_refuses_a_typo() -> None:
    out = run("config_workflow.py")
    assert "{'render': 'us: 2 users, 3 orders (amounts in USD)'}" in out
    assert "orders  fetch: 5 attempts, timeout 30s" in out
    assert "report.toml:24: steps.render.type: unknown step type 'rendr'" in out


def test_circuit_breaker_fails_fast_and_closes_when_the_api_is_back() -> None:
    out = run("circuit_breaker.py")
    assert "all 6 orders charged; circuit at the end: closed" in out
    assert "is half-open" in out and "closed: the trial call succeeded" in out
    fast = int(out.split("attempts failed fast without calling the API: ")[1].split()[0])
    assert fast > 0


def test_resources_stay_out_of_the_log() -> None:
    out = run("resources.py")
    assert "result: ch_o-1_4999" in out
    assert 'recorded call: charge["o-1",4999]' in out
    assert "the API key in the log: no" in out
    assert "unit test with a fake: ch_fake" in out


def test_observe_subscriber_and_tail_see_every_event() -> None:
    out = run("observe.py")
    seen = int(out.split("the subscriber saw ")[1].split()[0])
    assert f"tail`, printed {seen}:" in out and "dropped 0" in out
    assert "o-3: FAILED" in out and "StepRetrying      reserve attempt 1 failed" in out


def test_metrics_from_the_log() -> None:
    out = run("metrics.py")
    assert "orders: 18 completed, 2 failed" in out
    assert "retries of reserve_stock: 11" in out
    assert 'duralog_step_retries_total{step="reserve_stock"} 11' in out


def test_structured_logging_once_across_a_crash() -> None:
    out = run("structured_logging.py")
    assert "(exit code -9)" in out and "(exit code 0)" in out
    assert '"msg": "woke up; shipping", "workflow_id": "order-o-1"' in out
    assert '"payload": "shelf-7/o-1"' in out
    assert "every line logged once: yes" in out


def test_queues_bound_concurrency_and_schedules_fire_once_per_tick() -> None:
    out = run("queues.py")
    assert "every job done; at most two ever ran at once" in out
    assert "(3 running)" not in out
    # Priority 0 before 5 before 9: the urgent jobs render first. Jobs taken off the
    # queue together start on two threads at once, so their lines come in any order.
    renders = [line.split()[2] for line in out.splitlines() if " render " in line]
    assert set(renders[:2]) == {"invoice", "receipt"}
    assert set(renders[2:4]) == {"cat", "dog"} and set(renders[4:]) == {"owl", "fox"}
    ticks = [line for line in out.splitlines() if line.startswith("  report@")]
    assert len(ticks) == 3 and len(set(ticks)) == 3


PUBLIC_MODULES = {"duralog", "duralog.testing", "duralog.replay"}


def public_names(module: str) -> set[str]:
    found = importlib.import_module(module)
    names = set(found.__all__)
    return names | {"map"} if module == "duralog" else names


def test_examples_use_only_the_public_api() -> None:
    """An example is what a user copies: it imports only public modules and the names
    in their ``__all__``, and touches no underscore attribute of duralog."""
    for path in sorted(EXAMPLES.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "duralog":
                        assert alias.name in PUBLIC_MODULES, f"{where}: import {alias.name}"
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("duralog"):
                module = node.module or ""
                assert module in PUBLIC_MODULES, f"{where}: from {module} import ..."
                for alias in node.names:
                    assert alias.name in public_names(module), f"{where}: {module}.{alias.name}"
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                base = node.value
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id == "duralog":
                    raise AssertionError(f"{where}: duralog...{node.attr} is private")


IMPORT_QUIETLY = """
import importlib.util, os, sys, threading
path = sys.argv[1]
spec = importlib.util.spec_from_file_location("example", path)
module = sys.modules["example"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert threading.active_count() == 1, [t.name for t in threading.enumerate()]
assert os.listdir(".") == [], os.listdir(".")
"""


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_importing_an_example_starts_nothing(name: str, tmp_path: Path) -> None:
    """What the README asks of an ``--app`` module: importing it defines workflows and
    starts no engine (no worker thread, no log file)."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_QUIETLY, str(EXAMPLES / name)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_fix_forward_finishes_a_failed_workflow_without_repeating_its_steps() -> None:
    out = run("fix_forward.py")
    assert "order-1001 FAILED" in out and "cannot parse postcode" in out
    assert "forked order-1001 at seq 8 into order-1001-fixed (events 2-7 copied)" in out
    assert "result: order 1001: slot-1001, ch_1001, parcel-1001 to SW1A 1AA" in out
    assert "step runs: reserve 1, charge 1, ship 2" in out
    assert "order-1001-fixed was forked from order-1001 at seq 8" in out
