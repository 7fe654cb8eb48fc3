"""duralog prune: finished workflows older than a date go; running ones never do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duralog

HERE = Path(__file__).parent


def cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "duralog", "--db", db, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=HERE,
    )


@duralog.step
def noop(i: int) -> int:
    return i


@duralog.workflow
async def quick(i: int) -> int:
    return await noop(i)


@duralog.workflow
async def waits() -> None:
    await duralog.wait_signal("never")


def test_prune_is_a_dry_run_until_told_otherwise(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    with duralog.Engine(db, durability="normal") as engine:
        for i in range(3):
            engine.run(quick, i, id=f"q-{i}", timeout=10)
        engine.start(waits, id="running")
    dry = cli(db, "prune", "--completed-before", "2999-01-01")
    assert dry.returncode == 0, dry.stderr
    assert "would remove 3 workflows" in dry.stdout and "--yes" in dry.stdout
    assert len(json.loads(cli(db, "list", "--json").stdout)) == 4

    assert "would remove 0 workflows" in cli(db, "prune", "--completed-before", "2000-01-01").stdout
    done = cli(db, "prune", "--completed-before", "2999-01-01", "--yes")
    assert "removed 3 workflows" in done.stdout
    left = json.loads(cli(db, "list", "--json").stdout)
    assert [r["id"] for r in left] == ["running"]
    with duralog.Engine(db, worker=False) as engine:
        assert engine.store.read_events("q-0") == []


def test_prune_rejects_a_bad_date(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    duralog.Engine(db, worker=False).close()
    bad = cli(db, "prune", "--completed-before", "last tuesday")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
