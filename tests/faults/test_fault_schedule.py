"""A short seeded fault schedule against three worker processes (see tests/faults/).

``CERTRECON_CHAOS_SEED`` replays a seed; ``bench/chaos.py`` runs long schedules.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.faults.schedule import FAULTS, run_schedule

pytestmark = pytest.mark.slow

SECONDS = 0.0
"""No faults beyond one of each kind (which take about 90 s): CI's time is short."""


async def test_a_seeded_fault_schedule_loses_nothing_and_answers_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("CERTRECON_CHAOS_SEED") or random.SystemRandom().randrange(1 << 31))
    # The seed is printed (pytest shows it on failure) so a failing run can be replayed.
    print(f"CERTRECON_CHAOS_SEED={seed}")
    result = await run_schedule(tmp_path / "chaos", seed=seed, seconds=SECONDS, pause=True)
    print("\n".join(result.lines()))
    assert result.problems == [], f"seed {seed}:\n" + "\n".join(result.lines())
    # The schedule did what it says: every kind of fault, and every kind of outcome.
    assert {i.fault for i in result.injected} == set(FAULTS)
    assert len(result.monitor.takeovers) == 2
    assert result.check.results > 0
    assert result.check.review_items > 0
    assert result.check.dead_letters > 0
    assert result.check.alerts > 0
    assert result.check.revisions_above_one > 0
