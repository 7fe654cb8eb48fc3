"""Finding workflows: ``Engine.list``'s filters and keyset paging, and the same
filters on ``duralog list``."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

import duralog
from duralog.cli import main


@duralog.workflow
async def listed(n: int) -> int:
    return n


@duralog.workflow
async def listed_other() -> None:
    return None


def test_filters_and_pages(db: str) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        for i in range(7):
            engine.run(listed, i, id=f"order-{i}")
        engine.run(listed_other, id="Order-x")
    with duralog.Engine(db, worker=False) as engine:
        stopped = engine.start(listed_other, id="order-late")
        ended_at = engine.get("order-6").record().updated_at
        assert [r.id for r in engine.list(id_prefix="order-", limit=3)] == [
            "order-late",
            "order-6",
            "order-5",
        ]
        # Pages by a cursor: every workflow once, in order, whatever starts meanwhile.
        seen, page = [], engine.list(name="listed", limit=3)
        while page:
            seen += [r.id for r in page]
            engine.start(listed, 99, id=f"new-{len(seen)}")  # (newer: never in a later page)
            page = engine.list(name="listed", limit=3, after=page[-1])
        assert seen == [f"order-{i}" for i in reversed(range(7))]
        assert [r.id for r in engine.list(ended_since=ended_at, name="listed")] == ["order-6"]
        assert "order-late" not in [r.id for r in engine.list(ended_since=0)]
        # (a datetime is precise to the microsecond: one rounded up would take order-6 in)
        when = dt.datetime.fromtimestamp(ended_at - 1e-6, dt.UTC)
        assert [r.id for r in engine.list(ended_until=when, id_prefix="order-")] == [
            f"order-{i}" for i in reversed(range(6))
        ]
        assert [r.id for r in engine.list(status=["completed"], name=["listed_other"])] == [
            "Order-x"
        ]
        stopped.terminate()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"status": "nope"}, "unknown status 'nope'"),
        ({"started_since": dt.datetime(2026, 1, 1)}, "must be an aware datetime"),
        ({"ended_until": float("nan")}, "aware datetime or epoch seconds"),
        ({"limit": -1}, "limit must be None or a whole number >= 0"),
        ({"limit": True}, "limit must be None or a whole number >= 0"),
    ],
)
def test_bad_filters_are_refused(db: str, arguments: dict[str, object], message: str) -> None:
    with (
        duralog.Engine(db, worker=False) as engine,
        pytest.raises(duralog.ConfigurationError, match=message),
    ):
        engine.list(**arguments)  # type: ignore[arg-type]


def test_cli_id_prefix_and_ended_range(db: str) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        engine.run(listed, 1, id="invoice-1")
        engine.run(listed, 2, id="invoice_2")  # _ is no wildcard
        engine.start(listed_other, id="invoice-open")
        engine.get("invoice-open").terminate()
    with duralog.Engine(db, worker=False) as engine:
        engine.start(listed_other, id="invoice-waiting")
    runner = CliRunner()
    found = runner.invoke(main, ["--db", db, "list", "--id-prefix", "invoice-", "-o", "json"])
    assert found.exit_code == 0, found.output
    assert [r["id"] for r in json.loads(found.stdout)] == [
        "invoice-waiting",
        "invoice-open",
        "invoice-1",
    ]
    ended = runner.invoke(main, ["--db", db, "list", "--ended-since", "1h", "-o", "json"])
    assert {r["id"] for r in json.loads(ended.stdout)} == {"invoice-1", "invoice_2", "invoice-open"}
    counted = runner.invoke(main, ["--db", db, "count", "--ended-until", "1h"])
    assert counted.stdout.strip() == "0"
    bad = runner.invoke(main, ["--db", db, "list", "--ended-since", "yesterday-ish"])
    assert bad.exit_code == 2 and "--ended-since" in bad.stderr
