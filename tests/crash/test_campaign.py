"""A short crash campaign in CI: a mixed workload SIGKILLed many times, every invariant checked.

The long one (see the README's Reliability section):
``python tests/crash/campaign.py --kills 300 --workflows 40 --rounds 600 --seed 7``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import load_app

campaign = load_app(Path(__file__).with_name("campaign.py"), "duralog_campaign")


@pytest.mark.timeout(420)
def test_twenty_kills_in_the_middle_of_work_lose_nothing(tmp_path: Path) -> None:
    # Its own deadline comes first, so a stuck campaign says what it waited for.
    report = campaign.run_campaign(tmp_path, kills=20, count=12, seed=11, rounds=60, deadline=300)
    assert report["ok"], report["problems"]
    assert report["kills"] == 20
    assert report["kills_interrupting_work"] > 10  # most kills cut off a step or its commit
    assert report["completed_steps_rerun"] == 0
