"""``import duralog`` loads what the core needs; heavy and optional dependencies load
where they are used (migrations, PostgreSQL, encryption, cron, YAML)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

HEAVY = ("sqlite_utils", "psycopg", "psycopg_pool", "cryptography", "croniter", "yaml")


def loaded_after(statement: str) -> list[str]:
    """The heavy modules (top-level names) a fresh interpreter holds after ``statement``."""
    code = (
        f"{statement}\nimport sys\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return list(ast.literal_eval(found.stdout.strip().splitlines()[-1]))


def test_import_duralog_loads_no_heavy_dependency() -> None:
    assert loaded_after("import duralog") == []


def test_the_command_line_loads_no_heavy_dependency_before_a_command() -> None:
    assert loaded_after("import duralog.cli") == []


def test_sqlite_utils_loads_only_to_migrate_a_log(tmp_path: Path) -> None:
    open_log = f"import duralog; duralog.Engine({str(tmp_path / 'log.db')!r}).close()"
    assert loaded_after(open_log) == ["sqlite_utils"]  # a new file: created by migrating
    assert loaded_after(open_log) == []  # at the current schema: nothing to migrate


def test_croniter_loads_when_a_schedule_is_checked() -> None:
    check = "import duralog.engine.schedules as s; s.make_schedule('s', '* * * * *', 'w')"
    assert loaded_after(check) == ["croniter"]


def duralog_modules_after(statement: str) -> set[str]:
    """The ``duralog.*`` modules a fresh interpreter holds after ``statement``."""
    listing = "print(sorted(m for m in sys.modules if m.startswith('duralog.')))"
    code = f"{statement}\nimport sys\n{listing}"
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(ast.literal_eval(found.stdout.strip().splitlines()[-1]))


def test_import_duralog_loads_its_names_on_first_use() -> None:
    assert duralog_modules_after("import duralog") <= {"duralog._source"}


def test_declaring_a_workflow_and_a_step_loads_neither_the_runtime_nor_the_plug_ins() -> None:
    declare = (
        "import duralog\n"
        "@duralog.step\ndef add(a: int, b: int) -> int:\n    return a + b\n"
        "@duralog.workflow\nasync def total(a: int) -> int:\n    return await add(a, 1)\n"
    )
    loaded = duralog_modules_after(declare)
    assert "duralog.engine.decorators" in loaded
    heavy = {"duralog._engine", "duralog.engine.engine", "duralog.engine.worker"}
    heavy |= {"duralog.replay.checker", "duralog.replay.instance", "duralog.store.sqlite"}
    assert not loaded & heavy
    assert not {m for m in loaded if m.startswith(("duralog.patterns", "duralog.observe"))}


def test_an_engine_loads_observability_when_it_is_used() -> None:
    open_engine = "import duralog\nengine = duralog.Engine(':memory:', worker=False)"
    assert not {m for m in duralog_modules_after(open_engine) if m.startswith("duralog.observe")}
    loaded = duralog_modules_after(f"{open_engine}\nengine.stats()\nengine.close()")
    assert "duralog.observe.metrics" in loaded


def test_a_plug_in_loads_when_its_name_is_used() -> None:
    loaded = duralog_modules_after("import duralog\nduralog.CircuitBreaker")
    assert "duralog.patterns.breaker" in loaded
    assert "duralog.observe.subscribe" not in loaded


def test_duralog_help_loads_neither_the_engine_nor_the_store() -> None:
    show_help = (
        "import sys\nsys.argv = ['duralog', '--help']\nimport duralog.cli\n"
        "try:\n    duralog.cli.main()\nexcept SystemExit:\n    pass"
    )
    loaded = duralog_modules_after(show_help)
    assert "duralog.cli" in loaded
    assert not {m for m in loaded if m.startswith(("duralog.engine", "duralog.replay"))}
    assert not {m for m in loaded if m.startswith("duralog.cli_")}  # the commands' modules
    assert "duralog.store.sqlite" not in loaded


def test_a_worker_on_an_existing_log_loads_only_what_recovery_uses(tmp_path: Path) -> None:
    """A fresh process that recovers (``with Engine(path):``) pays for no fork checker,
    no cron code, no listing, and none of the modules only they or errors use."""
    run = f"import duralog\nwith duralog.Engine({str(tmp_path / 'log.db')!r}):\n    pass"
    duralog_modules_after(run)  # creates the log (sqlite-utils, and so on)
    loaded = duralog_modules_after(run)
    assert "duralog.engine.worker" in loaded
    unused = {"duralog.engine.forks", "duralog.replay.checker", "duralog.replay.history"}
    unused |= {"duralog.engine.schedules", "duralog.engine.listing"}
    assert not loaded & unused
    code = f"{run}\nimport sys\nprint(sorted(sys.modules))"
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    stdlib = set(ast.literal_eval(found.stdout.strip().splitlines()[-1]))
    assert not stdlib & {"zoneinfo", "secrets", "shlex", "dataclasses", "hmac", "random"}
