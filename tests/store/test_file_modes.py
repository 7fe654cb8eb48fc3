"""Files duralog creates are readable by their owner only (0600), whatever the umask:
the SQLite log with its -wal and -shm files, and exported history files. Files
that already exist keep their mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import duralog
from duralog.cli import main


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)  # files would be created rw for everyone without care
    yield
    os.umask(old)


@duralog.step(name="modes_step")
def step(x: int) -> int:
    return x + 1


@duralog.workflow(name="modes_wf")
async def workflow(x: int) -> int:
    return await step(x)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("permissive_umask")
def test_the_log_and_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    with duralog.Engine(str(db), durability="normal", poll_interval=0.05) as engine:
        assert engine.run(workflow, 1) == 2
        files = {p.name: mode(p) for p in tmp_path.iterdir()}
    assert {"log.db", "log.db-wal", "log.db-shm"} <= set(files)
    assert files == dict.fromkeys(files, 0o600)


@pytest.mark.usefixtures("permissive_umask")
def test_an_existing_log_keeps_its_mode(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    duralog.Engine(str(db), worker=False).close()
    db.chmod(0o640)  # a group-readable log, on purpose
    with duralog.Engine(str(db), durability="normal", poll_interval=0.05) as engine:
        engine.run(workflow, 1)
    assert mode(db) == 0o640


@pytest.mark.usefixtures("permissive_umask")
def test_exported_history_files_are_private(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        engine.start(workflow, 1, id="w").result(timeout=10)
    out, kept = tmp_path / "w.json", tmp_path / "kept.json"
    kept.write_text("")
    kept.chmod(0o644)
    env = {"DURALOG_DB": None, "DURALOG_APP": None, "DURALOG_KEYS": None}
    for target in (out, kept):
        result = CliRunner().invoke(main, ["--db", db, "export", "w", "-o", str(target)], env=env)
        assert result.exit_code == 0, result.output
        assert target.read_bytes().startswith(b'{"format":"duralog-history"')
    assert mode(out) == 0o600
    assert mode(kept) == 0o644


def test_an_unwritable_export_target_is_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        engine.start(workflow, 1, id="w").result(timeout=10)
    env = {"DURALOG_DB": None, "DURALOG_APP": None, "DURALOG_KEYS": None}
    target = str(tmp_path / "missing" / "w.json")
    result = CliRunner().invoke(main, ["--db", db, "export", "w", "-o", target], env=env)
    assert result.exit_code == 2
    assert result.output.startswith("error: cannot write") and "Traceback" not in result.output
