"""``python -m duralog`` in the repository's root: it runs, or says in one line why not."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-m", "duralog", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_runs_from_the_repository_root() -> None:
    done = run()
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout


def test_runs_from_the_source_folders_without_duralog_installed() -> None:
    """The dependencies are there, duralog is not (-S: no site, so no editable install):
    the package in the root finds its layers beside it."""
    done = run("-S", env={"PYTHONPATH": sysconfig.get_paths()["purelib"]})
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout


def test_says_in_one_line_what_is_missing() -> None:
    done = run("-S", env={"PYTHONPATH": ""})  # nothing installed at all
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert "not installed" in done.stderr and "Traceback" not in done.stderr
