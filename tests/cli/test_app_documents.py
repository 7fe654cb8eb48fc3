"""An ``--app`` that loads a workflow document: a broken or missing document stops the
command with one clear line, the exit code of any ``--app`` that fails to import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import PATIENCE

APP = """\
from pathlib import Path

import duralog

step_types = duralog.StepRegistry()


@step_types.add
@duralog.step
def charge(order: str) -> str:
    return order


shop = duralog.load_workflow(Path(__file__).with_name("shop.toml"), step_types)
"""

BROKEN = """\
name = "cli-doc-shop"

[steps.charge]
type = "charge"
retry = "fast"
"""


def run_app(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m duralog --app shop_app ...`` in ``folder``, as a user's shell runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURALOG_")}
    command = ["--db", str(folder / "shop.db"), "--app", "shop_app", *args]
    return subprocess.run(
        [sys.executable, "-m", "duralog", *command],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env=env,
    )


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            BROKEN,
            "WorkflowConfigError: {document}:5: steps.charge.retry: "
            "must be a table (an object), not 'fast'",
        ),
        (None, "ConfigurationError: cannot read workflow document {document}: "),
    ],
    ids=["broken", "missing"],
)
def test_a_bad_document_is_one_line_and_the_exit_code_of_a_failed_import(
    tmp_path: Path, document: str | None, expected: str
) -> None:
    (tmp_path / "shop_app.py").write_text(APP)
    if document is not None:
        (tmp_path / "shop.toml").write_text(document)
    done = run_app(tmp_path, "replay", "--all")
    assert done.returncode == 2, done.stderr  # as for an --app that does not import
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: importing --app 'shop_app' raised "), line
    assert expected.format(document=tmp_path / "shop.toml") in line
    assert not (tmp_path / "shop.db").exists()  # stopped before anything else


def test_the_same_app_runs_once_the_document_is_fixed(tmp_path: Path) -> None:
    (tmp_path / "shop_app.py").write_text(APP)
    (tmp_path / "shop.toml").write_text(BROKEN.replace('retry = "fast"', "retry.max_attempts = 2"))
    order = '[{"order": "o-1"}]'
    done = run_app(tmp_path, "start", "cli-doc-shop", "--input", order, "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == '{"charge": "o-1"}'
