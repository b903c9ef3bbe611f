"""`certrecon demo` as a user runs it: a fresh data directory, embedded services only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_answers_every_certification_and_prints_the_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTRECON_")}
    env["CERTRECON_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "certrecon", "demo", "--people", "300"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for outcome in (
        "qualified",
        "not_in_scope",
        "identity_mismatch",
        "face_not_verified",
        "invalid_record",
        "review:deceased",
        "review:imprisoned",
    ):
        assert outcome in out, outcome
    for channel in ("national_platform", "12333", "essc", "consular"):
        assert channel in out
    assert "Review queue" in out
    # Personal data stays masked in what the demo prints.
    assert "********" in out
