"""Golden histories of each pattern, recorded by ``app_patterns.py``, must keep replaying.

A change to how a Pipeline, a DAG, ``duralog.map``, a Saga or a document-built
workflow makes its decisions (the order it starts tasks in, say) would break
every such workflow running in production; these files catch it. To re-record
one: run the app on a fresh log and ``duralog export`` the workflow (ids are the
file names).
"""

from __future__ import annotations

from pathlib import Path

from support import load_app

from duralog.replay.history import load_history
from duralog.testing import replay_histories

HERE = Path(__file__).parent


app = load_app(HERE / "app_patterns.py")
WORKFLOWS = [app.etl, app.diamond, app.fanout, app.trip, app.configured]


def kinds_and_names(stem: str) -> list[str]:
    events = load_history((HERE / "histories" / f"{stem}.json").read_bytes()).events
    return [f"{e.kind} {getattr(e.event, 'name', '')}".rstrip() for e in events]


def test_every_golden_history_replays_to_its_end() -> None:
    reports = replay_histories(HERE / "histories", WORKFLOWS)
    assert sorted(r.workflow_id for r in reports) == sorted(
        ["configured", "diamond", "etl", "fanout", "trip"]
    )
    assert all(r.finished for r in reports)


def test_the_files_hold_what_they_are_named_for() -> None:
    diamond = kinds_and_names("diamond")
    # left and right were started together, once root had finished
    assert diamond[4:6] == ["StepScheduled left", "StepScheduled right"]
    fanout = kinds_and_names("fanout")
    assert fanout[1:3] == ["StepScheduled square"] * 2  # two lanes
    trip = kinds_and_names("trip")
    scheduled = [k for k in trip if k.startswith("StepScheduled")]
    assert scheduled[-2:] == ["StepScheduled cancel"] * 2
    assert "StepFailed" in trip
    assert kinds_and_names("configured")[1:3] == ["StepScheduled work"] * 2
