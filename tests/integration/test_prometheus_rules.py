"""The shipped Prometheus alerting rules pass their promtool unit tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def _promtool() -> str:
    found = shutil.which("promtool")
    # A missing promtool is a broken environment, not a reason to skip: .ci/run installs it.
    assert found is not None, "promtool is not on PATH (Debian: apt-get install prometheus)"
    return found


def _run_promtool(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_rules_are_valid(repo_root: Path) -> None:
    done = _run_promtool(repo_root, "check", "rules", "deploy/prometheus/alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_pass_their_unit_tests(repo_root: Path) -> None:
    done = _run_promtool(repo_root, "test", "rules", "deploy/prometheus/alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_unit_test(repo_root: Path) -> None:
    rules = (repo_root / "deploy/prometheus/alerts.yml").read_text("utf-8")
    tests = (repo_root / "deploy/prometheus/alerts_test.yml").read_text("utf-8")
    names = [
        line.split(":", 1)[1].strip()
        for line in rules.splitlines()
        if line.strip().startswith("- alert:")
    ]
    assert len(names) == 8
    for name in names:
        assert f"alertname: {name}" in tests, name
