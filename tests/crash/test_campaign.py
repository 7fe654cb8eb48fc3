"""A short crash campaign in CI: a mixed workload SIGKILLed many times, every invariant checked.

The long one: ``python tests/crash/campaign.py --kills 300 --workflows 40 --rounds 300``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _campaign():  # type: ignore[no-untyped-def]
    path = Path(__file__).with_name("campaign.py")
    spec = importlib.util.spec_from_file_location("duralog_campaign", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_twenty_kills_in_a_row_lose_nothing(tmp_path: Path) -> None:
    report = _campaign().run_campaign(tmp_path, kills=20, count=12, seed=11, rounds=60)
    assert report["ok"], report["problems"]
    assert report["kills_survived"] == 20
    assert report["completed_steps_rerun"] == 0
