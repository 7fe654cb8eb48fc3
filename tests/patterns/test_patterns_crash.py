"""Each pattern killed with SIGKILL in the middle, resumed by a fresh process, then replayed.

The worker process runs ``app_patterns.py``; one step kills it (after the log
holds a chosen number of completions, so a sibling running in parallel has
finished durably). A second process resumes the workflow: every step whose
completion was on disk ran once, the step that was running ran again with the
same idempotency key, the result is right, and ``duralog replay --all`` (a
third process that imports the app with ``--app``) finds every history replays.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import PATIENCE, popen

HERE = Path(__file__).parent
APP = str(HERE / "app_patterns.py")


def spawn(db: str, ledger: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return popen(
        [sys.executable, APP, db, *args],
        env={**os.environ, "CRASH_LEDGER": str(ledger), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ledger(path: Path) -> Counter[str]:
    return Counter(path.read_text().splitlines() if path.exists() else [])


CASES = [
    # workflow, input (JSON args), the step that crashes, completions before it, result,
    # how often each step ran in all
    (
        "pt-etl",
        ['"2026-11-25"'],
        "transform",
        1,
        4124,
        {"extract": 1, "transform": 2, "load": 1},
    ),
    (
        "pt-diamond",
        [],
        "right",
        2,  # root and left (running beside right) completed
        {"join": 112},
        {"root": 1, "left": 1, "right": 2, "join": 1},
    ),
    (
        "pt-fanout",
        ["5"],
        "item4",
        4,  # items 0-3 completed; item 4, the last, runs in one of the two lanes
        [0, 1, 4, 9, 16],
        {"item0": 1, "item1": 1, "item2": 1, "item3": 1, "item4": 2},
    ),
    (
        "pt-trip",
        ['["flight", "hotel", "car"]'],
        "cancel-flight",
        3,  # book-flight, book-hotel, cancel-hotel; book-car failed
        "rolled back after no cars left",
        {
            "book-flight": 1,
            "book-hotel": 1,
            "book-car": 1,
            "cancel-hotel": 1,
            "cancel-flight": 2,
        },
    ),
    (
        "pt-configured",
        [],
        "cfg-b",
        1,
        {"merge": ["cfg-merge", 7]},
        {"cfg-a": 1, "cfg-b": 2, "cfg-merge": 1},
    ),
]


@pytest.mark.parametrize(
    ("name", "args", "crash_at", "after", "result", "runs"), CASES, ids=[c[0] for c in CASES]
)
def test_killed_mid_pattern_resumes_without_rerunning_finished_steps(
    tmp_path: Path,
    name: str,
    args: list[str],
    crash_at: str,
    after: int,
    result: Any,
    runs: dict[str, int],
) -> None:
    db, log = str(tmp_path / "log.db"), tmp_path / "ledger"
    first = spawn(db, log, name, "w", *args, CRASH_AT=crash_at, CRASH_AFTER=str(after))
    _, err = first.communicate(timeout=PATIENCE)
    assert first.returncode == -signal.SIGKILL, err
    assert ledger(log)  # the crash came mid-run, not before the first step

    second = spawn(db, log, name, "w", *args, MODE="serve")
    out, err = second.communicate(timeout=PATIENCE)
    assert second.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == result

    counts = ledger(log)
    assert Counter({line.split()[0]: n for line, n in counts.items()}) == Counter(runs)
    keys = [line.split()[1] for line in counts if line.split()[0] == crash_at]
    assert len(keys) == 1, "the re-run of the crashed step had another idempotency key"

    replay = subprocess.run(
        [sys.executable, "-m", "duralog", "--db", db, "--app", "app_patterns", "replay", "--all"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env={k: v for k, v in os.environ.items() if k != "DURALOG_APP"},
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "Traceback" not in replay.stderr
