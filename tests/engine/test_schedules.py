"""Cron schedules: which ticks are due, one workflow per tick, across workers."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from croniter import croniter
from hypothesis import given
from hypothesis import strategies as st
from support import PATIENCE, wait_for

import duralog
from duralog.cli import main
from duralog.engine.clock import VirtualClock
from duralog.engine.queues import Queue
from duralog.engine.schedules import (
    MAX_TICKS_PER_POLL,
    due_ticks,
    make_schedule,
    schedule,
    tick_id,
)
from duralog.errors import ConfigurationError
from duralog.store.base import ScheduleRecord

UTC = dt.UTC


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def record(
    cron: str, last_tick: float, catch_up: str = "latest", tz: str = "UTC"
) -> ScheduleRecord:
    return ScheduleRecord(
        "s", cron, "wf", b"[]", last_tick, last_tick, last_tick, catch_up=catch_up, timezone=tz
    )


def iso(ticks: list[float]) -> list[str]:
    return [dt.datetime.fromtimestamp(t, UTC).strftime("%H:%M") for t in ticks]


# -- which ticks are due -----------------------------------------------------


def test_catch_up_policies_after_downtime() -> None:
    last, now = at("2026-01-01T09:00:00"), at("2026-01-01T09:44:10")
    ticks, new_last = due_ticks(record("*/15 * * * *", last, "all"), now)
    assert iso(ticks) == ["09:15", "09:30"] and new_last == at("2026-01-01T09:30:00")
    ticks, new_last = due_ticks(record("*/15 * * * *", last, "latest"), now)
    assert iso(ticks) == ["09:30"] and new_last == at("2026-01-01T09:30:00")
    ticks, new_last = due_ticks(record("*/15 * * * *", last, "none"), now)
    assert ticks == [] and new_last == at("2026-01-01T09:30:00")  # 14 min late: skipped


def test_a_tick_on_time_is_due_under_every_policy() -> None:
    last = at("2026-01-01T09:00:00")
    for policy in ("all", "latest", "none"):
        ticks, _ = due_ticks(record("*/15 * * * *", last, policy), at("2026-01-01T09:15:00"))
        assert iso(ticks) == ["09:15"], policy
        ticks, _ = due_ticks(record("*/15 * * * *", last, policy), at("2026-01-01T09:14:59.9"))
        assert ticks == [], policy


def test_all_catches_up_in_bounded_batches() -> None:
    last, now = at("2026-01-01T00:00:00"), at("2026-01-01T05:00:00")
    ticks, new_last = due_ticks(record("* * * * *", last, "all"), now)
    assert len(ticks) == MAX_TICKS_PER_POLL and new_last == ticks[-1]
    more, _ = due_ticks(record("* * * * *", new_last, "all"), now)
    assert more[0] == ticks[-1] + 60  # the next poll goes on where this one stopped


def test_time_zones_follow_daylight_saving() -> None:
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC from 29 March 2026.
    last = at("2026-03-27T12:00:00")
    spec = record("0 9 * * *", last, "all", tz="Europe/Paris")
    ticks, _ = due_ticks(spec, at("2026-03-30T12:00:00"))
    assert [dt.datetime.fromtimestamp(t, UTC).isoformat() for t in ticks] == [
        "2026-03-28T08:00:00+00:00",
        "2026-03-29T07:00:00+00:00",
        "2026-03-30T07:00:00+00:00",
    ]


CRONS = ["* * * * *", "*/7 * * * *", "0 */3 * * *", "30 2 * * 1-5", "0 0 1 * *", "*/10 * * * * *"]


@given(
    cron=st.sampled_from(CRONS),
    policy=st.sampled_from(["all", "latest", "none"]),
    last=st.floats(min_value=1.6e9, max_value=2.0e9),
    gap=st.floats(min_value=0, max_value=5e6),
)
def test_due_ticks_are_real_ticks_in_order_and_in_range(
    cron: str, policy: str, last: float, gap: float
) -> None:
    now = last + gap
    ticks, new_last = due_ticks(record(cron, last, policy), now)
    assert ticks == sorted(set(ticks))
    assert all(last < t <= now for t in ticks)
    assert all(croniter.match(cron, dt.datetime.fromtimestamp(t, UTC)) for t in ticks)
    assert last <= new_last <= now and (not ticks or new_last == ticks[-1])
    if policy == "latest" and new_last > last:
        # nothing due was left behind: the next tick after the new last one is in the future
        assert due_ticks(record(cron, new_last, policy), now)[0] == []


def test_tick_ids_are_derived_from_schedule_and_time() -> None:
    assert tick_id("nightly", at("2026-11-25T03:00:00")) == "nightly@2026-11-25T03:00:00Z"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"cron": "61 * * * *"}, "is not a cron expression"),
        ({"cron": "every day"}, "is not a cron expression"),
        ({"cron": 5}, "must be a string"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"catch_up": "some"}, "catch_up must be one of all, latest, none"),
        ({"schedule_id": "a@b"}, "without '@'"),
        ({"schedule_id": ""}, "non-empty"),
    ],
)
def test_bad_schedules_are_clear_errors(kwargs: dict[str, object], fragment: str) -> None:
    options: dict[str, object] = {"schedule_id": "s", "cron": "* * * * *", "workflow": "wf"}
    options.update(kwargs)
    with pytest.raises(ConfigurationError, match=fragment):
        make_schedule(**options)  # type: ignore[arg-type]


# -- running schedules ---------------------------------------------------------


@duralog.workflow(name="scheduled_report")
async def report(tick: dt.datetime, region: str) -> str:
    return f"{region} {tick.isoformat()}"


START = at("2026-11-25T03:00:30")


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def engine(tmp_path: Path, clock: VirtualClock) -> Iterator[duralog.Engine]:
    path = str(tmp_path / "s.db")
    with duralog.Engine(path, durability="normal", poll_interval=0.02, clock=clock) as e:
        yield e


def finished(engine: duralog.Engine) -> dict[str, str]:
    return {
        r.id: engine.get(r.id).result(timeout=10)
        for r in engine.list(name="scheduled_report")
        if r.status is duralog.WorkflowStatus.COMPLETED
    }


def test_each_tick_starts_one_workflow_with_its_tick(
    engine: duralog.Engine, clock: VirtualClock
) -> None:
    saved = engine.schedule("hourly", "0 * * * *", report, "eu", catch_up="all")
    assert saved.last_tick == START and saved.args == b'["eu"]'
    clock.advance(3 * 3600)  # 04:00, 05:00 and 06:00 are due
    wait_for(lambda: len(finished(engine)) == 3)
    assert finished(engine) == {
        f"hourly@2026-11-25T0{h}:00:00Z": f"eu 2026-11-25T0{h}:00:00+00:00" for h in (4, 5, 6)
    }


def test_two_workers_start_each_tick_once(tmp_path: Path, clock: VirtualClock) -> None:
    path = str(tmp_path / "two.db")
    options = {"durability": "normal", "poll_interval": 0.01, "clock": clock}
    with duralog.Engine(path, **options) as one, duralog.Engine(path, **options) as two:  # type: ignore[arg-type]
        one.schedule("minutely", "* * * * *", report, "us", catch_up="all")
        for minute in range(1, 6):
            clock.advance(60)  # the workers race for each tick as it falls due
            wait_for(lambda: len(one.list(name="scheduled_report")) == minute)  # noqa: B023
        wait_for(lambda: len(finished(one)) == 5)
        ids = [r.id for r in two.list(name="scheduled_report")]
    assert sorted(ids) == [f"minutely@2026-11-25T03:0{m}:00Z" for m in range(1, 6)]


def test_paused_schedules_skip_their_ticks(engine: duralog.Engine, clock: VirtualClock) -> None:
    engine.schedule("paused", "* * * * *", report, "ap")
    engine.schedule("witness", "* * * * *", report, "wi")
    assert engine.store.pause_schedule("paused", True, clock.now())
    clock.advance(600)
    # The pass that started the witness's tick went over the paused schedule too.
    wait_for(lambda: "witness@2026-11-25T03:10:00Z" in finished(engine))
    assert [r.id for r in engine.list(name="scheduled_report")] == ["witness@2026-11-25T03:10:00Z"]
    assert engine.store.pause_schedule("paused", False, clock.now())
    assert engine.unschedule("witness")
    clock.advance(60)
    wait_for(lambda: len(finished(engine)) == 2)
    assert sorted(finished(engine)) == [
        "paused@2026-11-25T03:11:00Z",
        "witness@2026-11-25T03:10:00Z",
    ]


def test_updating_a_schedule_keeps_its_last_tick(
    engine: duralog.Engine, clock: VirtualClock
) -> None:
    engine.schedule("upd", "0 * * * *", report, "eu")
    clock.advance(3600)
    wait_for(lambda: len(finished(engine)) == 1)
    updated = engine.schedule("upd", "30 * * * *", report, "us")
    assert updated.cron == "30 * * * *" and updated.last_tick == at("2026-11-25T04:00:00")
    assert engine.unschedule("upd") and not engine.unschedule("upd")
    assert engine.schedules() == []


def test_declared_schedules_are_stored_by_workers(tmp_path: Path, clock: VirtualClock) -> None:
    registry = duralog.Registry()  # declared here only: no other test's engine sees it
    registry.add(report)
    assert schedule("*/5 * * * *", id="declared", args=["mx"], registry=registry)(report) is report
    path = str(tmp_path / "d.db")
    options = {"durability": "normal", "poll_interval": 0.02, "clock": clock}
    with duralog.Engine(path, registry=registry, **options) as e:  # type: ignore[arg-type]
        assert [s.id for s in e.schedules()] == ["declared"]
        clock.advance(3600)  # catch_up="latest": only the last missed tick
        wait_for(lambda: len(finished(e)) == 1)
        assert list(finished(e)) == ["declared@2026-11-25T04:00:00Z"]
    with duralog.Engine(str(tmp_path / "other.db"), **options) as other:  # type: ignore[arg-type]
        assert other.schedules() == []  # the default registry declares none
    with pytest.raises(ConfigurationError, match=r"above @duralog\.workflow"):
        schedule("* * * * *")(lambda: None)  # type: ignore[arg-type]


def test_the_cli_lists_pauses_resumes_and_deletes(engine: duralog.Engine) -> None:
    engine.schedule("nightly", "0 3 * * *", report, "eu", timezone="Europe/Paris")
    db = str(engine.store.path)  # type: ignore[attr-defined]
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, ["--db", db, "schedules", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    header, row = run().splitlines()
    assert header.split()[:4] == ["ID", "CRON", "TIMEZONE", "WORKFLOW"]
    assert row.startswith("nightly") and "0 3 * * *" in row and "Europe/Paris" in row
    assert "scheduled_report" in row and row.endswith("2026-11-26 02:00:00.000 UTC")
    assert run("pause", "nightly") == "nightly: paused\n"
    assert "paused" in run()
    assert '"paused":true' in run("--json")
    assert run("resume", "nightly") == "nightly: resumed\n"
    deleted = runner.invoke(main, ["--db", db, "schedules", "delete", "nightly"])
    assert deleted.stdout == "nightly: deleted\n"
    assert "if 'nightly' is declared in code (@duralog.schedule), the next worker" in (
        deleted.stderr
    )
    assert run() == "no schedules\n"
    missing = runner.invoke(main, ["--db", db, "schedules", "pause", "nope"])
    assert missing.exit_code == 1 and "no schedule with id 'nope'" in missing.output


def test_a_cron_that_never_matches_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="never matches a date"):
        make_schedule("feb30", "0 0 30 2 *", "wf")


def test_a_schedule_that_cannot_fire_does_not_stop_the_others(
    tmp_path: Path, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "broken.db")
    with duralog.Engine(path, durability="normal", poll_interval=0.02, clock=clock) as engine:
        engine.schedule("good", "* * * * *", report, "ok")
        # Written by another host whose tz database knows a zone this one does not.
        broken = ScheduleRecord("broken", "* * * * *", "scheduled_report", b'["x"]', START, 0, 0)
        engine.store.put_schedule(msgspec.structs.replace(broken, timezone="Mars/Olympus"))
        clock.advance(60)
        wait_for(lambda: len(finished(engine)) == 1)
        assert list(finished(engine)) == ["good@2026-11-25T03:01:00Z"]
    assert "cannot fire schedule 'broken'" in caplog.text
    assert "duralog schedules delete broken" in caplog.text
    with duralog.Engine(path, durability="normal", clock=clock):  # it still opens
        pass


def test_a_declared_schedule_on_an_undeclared_queue_stops_the_worker_at_start(
    tmp_path: Path,
) -> None:
    registry = duralog.Registry()
    registry.add(report)
    schedule("0 * * * *", id="typo", queue="emials", registry=registry)(report)
    with (
        pytest.raises(ConfigurationError, match=r"queue 'emials'.*declared nowhere"),
        duralog.Engine(str(tmp_path / "q.db"), registry=registry),
    ):
        pass


def test_a_daily_schedule_runs_once_on_the_night_clocks_go_back() -> None:
    # Europe/Paris, 25 October 2026: 02:30 happens at 00:30 and again at 01:30 UTC.
    last = at("2026-10-24T12:00:00")
    for policy in ("all", "latest"):
        ticks, _ = due_ticks(
            record("30 2 * * *", last, policy, "Europe/Paris"), at("2026-10-27T12:00:00")
        )
        expected = ["00:30", "01:30", "01:30"] if policy == "all" else ["01:30"]
        assert iso(ticks) == expected, policy
        fired_first = record("30 2 * * *", at("2026-10-25T00:30:00"), policy, "Europe/Paris")
        assert due_ticks(fired_first, at("2026-10-25T01:45:00"))[0] == [], policy
    # An hourly schedule runs in both hours.
    ticks, _ = due_ticks(
        record("0 * * * *", at("2026-10-24T23:30:00"), "all", "Europe/Paris"),
        at("2026-10-25T01:30:00"),
    )
    assert iso(ticks) == ["00:00", "01:00"]


def test_deleting_a_schedule_declared_in_code_says_it_comes_back(tmp_path: Path) -> None:
    (tmp_path / "sched_app.py").write_text(
        "import duralog\n\n"
        "@duralog.schedule('0 3 * * *', id='nightly')\n"
        "@duralog.workflow\n"
        "async def nightly(tick: float) -> None:\n"
        "    return None\n"
    )
    db = str(tmp_path / "s.db")
    store = (  # a worker's start stores the schedules its code declares
        f"import duralog, sched_app\nwith duralog.Engine({db!r}) as engine:\n"
        "    assert engine.schedules()\n"
    )
    subprocess.run([sys.executable, "-c", store], cwd=tmp_path, check=True, timeout=PATIENCE)
    command = ["--db", db, "--app", "sched_app", "schedules", "delete", "nightly"]
    done = subprocess.run(
        [sys.executable, "-m", "duralog", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "nightly: deleted\n"
    assert done.stderr.strip() == (
        "note: 'nightly' is declared in code (@duralog.schedule in --app): the next worker "
        "start re-creates it; remove the declaration to delete it for good"
    )


tenants = Queue("sched_tenants", concurrency=1, partitioned=True)


def test_a_schedule_on_a_partitioned_queue_starts_its_ticks_in_its_partition(
    tmp_path: Path, clock: VirtualClock
) -> None:
    path = str(tmp_path / "p.db")
    options = {"durability": "normal", "poll_interval": 0.02, "clock": clock, "queues": [tenants]}
    with duralog.Engine(path, **options) as e:  # type: ignore[arg-type]
        saved = e.schedule("acme", "0 * * * *", report, "eu", queue=tenants, partition="acme")
        assert (saved.queue, saved.partition_key) == ("sched_tenants", "acme")
        clock.advance(3600)
        wait_for(lambda: len(finished(e)) == 1)
        (tick,) = e.list(name="scheduled_report")
        assert (tick.id, tick.queue, tick.partition_key) == (
            "acme@2026-11-25T04:00:00Z",
            "sched_tenants",
            "acme",
        )
        with pytest.raises(ConfigurationError, match=r"^schedule 'bare': queue 'sched_tenants' is"):
            e.schedule("bare", "0 * * * *", report, "eu", queue="sched_tenants")
        with pytest.raises(ConfigurationError, match=r"^schedule 'odd': partition 'x' was given"):
            e.schedule("odd", "0 * * * *", report, "eu", partition="x")
        assert [s.id for s in e.schedules()] == ["acme"]
    listed = CliRunner().invoke(main, ["--db", path, "schedules"])
    assert "sched_tenants (partition acme)" in listed.stdout
    as_json = CliRunner().invoke(main, ["--db", path, "schedules", "-o", "json"])
    assert msgspec.json.decode(as_json.stdout)[0]["partition_key"] == "acme"


def test_a_declared_schedule_names_its_partition(tmp_path: Path, clock: VirtualClock) -> None:
    registry = duralog.Registry()
    registry.add(report)
    schedule(
        "0 * * * *", id="by-name", queue="sched_tenants", partition="globex", registry=registry
    )(report)
    path = str(tmp_path / "d.db")
    with duralog.Engine(path, registry=registry, queues=[tenants], clock=clock) as e:
        assert [(s.id, s.partition_key) for s in e.schedules()] == [("by-name", "globex")]
    with pytest.raises(ConfigurationError, match=r"^schedule 'given': queue 'sched_tenants' is"):
        schedule("0 * * * *", id="given", queue=tenants, registry=registry)(report)
    schedule("0 * * * *", id="unnamed", queue="sched_tenants", registry=registry)(report)
    with (
        pytest.raises(ConfigurationError, match=r"^schedule 'unnamed': queue 'sched_tenants' is"),
        duralog.Engine(path, registry=registry, queues=[tenants], clock=clock),
    ):
        pass
