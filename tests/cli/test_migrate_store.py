"""``duralog migrate-store``: a whole log copied between stores, from the command line."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import duralog
from duralog.cli import main
from duralog.store.open import open_store
from duralog.store.open import redact as _redacted


@duralog.step
def double(x: int) -> int:
    return 2 * x


@duralog.workflow(name="migrate_flow")
async def flow(x: int) -> int:
    return await double(x) + await double(x + 1)


def make_log(path: str) -> list[str]:
    with duralog.Engine(path, durability="normal") as engine:
        engine.schedule("nightly", "0 3 * * *", flow, 5)
        ids = [engine.start(flow, i, id=f"m-{i}").id for i in range(5)]
        for workflow_id in ids:
            engine.get(workflow_id).result(timeout=10)
    return ids


def events_of(address: str, ids: list[str]) -> dict[str, list[tuple[int, str]]]:
    store = open_store(address)
    try:
        return {i: [(e.seq, type(e.event).__name__) for e in store.read_events(i)] for i in ids}
    finally:
        store.close()


def test_sqlite_to_postgres_and_back(tmp_path: Path, postgres_url: str) -> None:
    source, back = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    ids = make_log(source)
    runner = CliRunner()
    there = runner.invoke(main, ["migrate-store", "--from", source, "--to", postgres_url])
    assert there.exit_code == 0, there.output
    assert "copied" in there.output and "5 workflows" in there.output
    again = runner.invoke(main, ["migrate-store", "--from", source, "--to", postgres_url])
    assert again.exit_code == 1 and "m-0" in again.output  # refused: the ids are there
    home = runner.invoke(main, ["migrate-store", "--from", postgres_url, "--to", back])
    assert home.exit_code == 0, home.output
    assert events_of(back, ids) == events_of(source, ids) == events_of(postgres_url, ids)
    with duralog.Engine(back, worker=False) as engine:
        assert [s.id for s in engine.schedules()] == ["nightly"]
        assert engine.get("m-3").result(timeout=1) == 14


def test_sqlite_to_sqlite_and_clear_errors(tmp_path: Path) -> None:
    source, target = str(tmp_path / "a.db"), str(tmp_path / "c.db")
    ids = make_log(source)
    runner = CliRunner()
    done = runner.invoke(main, ["migrate-store", "--from", source, "--to", target])
    assert done.exit_code == 0, done.output
    assert events_of(target, ids) == events_of(source, ids)
    missing = runner.invoke(
        main, ["migrate-store", "--from", str(tmp_path / "no.db"), "--to", target]
    )
    assert missing.exit_code == 1 and "no duralog database at" in missing.output
    same = runner.invoke(main, ["migrate-store", "--from", source, "--to", source])
    assert same.exit_code == 1 and "the same log" in same.output
    unreachable = runner.invoke(
        main, ["migrate-store", "--from", source, "--to", "postgresql://u:pw@127.0.0.1:1/x"]
    )
    assert unreachable.exit_code == 1 and "pw" not in unreachable.output
    assert "Traceback" not in unreachable.output


def test_passwords_are_never_printed() -> None:
    assert _redacted("postgresql://app:secret@db/prod") == "postgresql://app:***@db/prod"
    assert _redacted("postgresql://app@db/prod") == "postgresql://app@db/prod"
    assert _redacted("shop.db") == "shop.db"
