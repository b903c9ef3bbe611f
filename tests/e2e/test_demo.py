"""`certrecon demo` as a user runs it: an empty folder, embedded services only; then the
commands it prints at the end, typed as printed in the same folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_MARK = "@@certrecon-test-exit"


def _env() -> dict[str, str]:
    # As on a newcomer's machine: no setting at all, so the default data directory.
    return {k: v for k, v in os.environ.items() if not k.startswith("CERTRECON_")}


def _demo(folder: Path, people: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "certrecon", "demo", "--people", str(people)],
        cwd=folder,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _printed_commands(out: str) -> list[str]:
    """The lines after "type in this folder:", without their indentation."""
    _, found, tail = out.partition("To look at what it did, type in this folder:\n")
    assert found, out[-2000:]
    return [line[2:] for line in tail.splitlines() if line.startswith("  ")]


def _type(folder: Path, commands: list[str]) -> list[tuple[str, int, str]]:
    """Run the commands one after the other in one shell, as a person would type them;
    return (command, exit status, output) for each."""
    script = "".join(f"{c}\necho {_MARK} $?\n" for c in commands)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=folder,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parts = re.split(rf"^{_MARK} (\d+)\n", done.stdout, flags=re.MULTILINE)
    outputs, statuses = parts[0:-1:2], [int(s) for s in parts[1::2]]
    assert len(statuses) == len(commands), done.stdout[-3000:]
    return list(zip(commands, statuses, outputs, strict=True))


def test_the_demo_leaves_its_data_for_the_commands_it_prints(tmp_path: Path) -> None:
    done = _demo(tmp_path, 300)
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
    # Personal data stays masked in what the demo prints.
    assert "********" in out
    waiting = re.search(r"Review queue: (\d+) awaiting", out)
    assert waiting is not None
    table = out.partition("Review queue:")[2].partition("results published:")[0]
    in_order = re.findall(r"DEMO\d{14}", table)
    queued, first = sorted(set(in_order)), in_order[0]
    assert int(waiting.group(1)) == len(queued) > 0
    assert f"stays in {tmp_path / '.certrecon'}" in out
    # The certification cycle: comparison evidence confirmed some people silently.
    cycle = out.partition("Certification cycle")[2]
    assert re.search(r"confirmed_by_evidence\s+│?\s*[1-9]", cycle), cycle

    commands = _printed_commands(out)
    # Typed as printed: at most an activation line first, then plain certrecon commands
    # (no setting needed: the data is in ./.certrecon, where every command looks).
    setup = [c for c in commands if not c.startswith("certrecon ")]
    assert all(c.startswith(". ") and c.endswith("/bin/activate") for c in setup), commands
    typed = _type(tmp_path, commands)
    for command, status, output in typed:
        assert status == 0, (command, output[-2000:])
    shown = {c.removeprefix("certrecon "): o for c, _, o in typed if c not in setup}
    assert list(shown)[:3] == ["sla", "review list", f"review show {first}"]

    sla = shown["sla"]
    assert "No open certification" not in sla
    assert first in sla
    assert "awaiting_review" in sla
    assert sorted(set(re.findall(r"DEMO\d{14}", shown["review list"]))) == queued
    review = shown[f"review show {first}"]
    assert f"Certification {first}" in review
    assert "deceased" in review or "imprisoned" in review
    assert "No result yet." in review
    (answered_id,) = [c.split()[-1] for c in shown if c.startswith("review show DEMO")][1:]
    answered = shown[f"review show {answered_id}"]
    assert "identity_mismatch" in answered
    assert "Results (every revision)" in answered
    (due,) = [o for c, o in shown.items() if c.startswith("calendar due ")]
    assert "due date" in due

    # Again in the same folder: the demo resets its own database and says so; a staff
    # decision taken on the first run's data is gone with it.
    decide = f"certrecon review decide {first} --outcome eligibility_lost --by S1"
    ((_, status, output),) = _type(tmp_path, [decide])
    assert status == 0, output
    again = _demo(tmp_path, 110)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resetting the database an earlier demo left in" in again.stdout
    ((_, status, listed),) = _type(tmp_path, ["certrecon review list --json"])
    assert status == 0
    # Person-level evidence items (no certification id) are listed beside them.
    open_again = {i["certification_id"][-6:] for i in json.loads(listed) if "item" not in i}
    assert first[-6:] in open_again


def test_the_demo_leaves_a_database_it_did_not_make_alone(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "id_number,name,benefit_type,status,first_paid_on,deceased_on,imprisoned_from,"
        "imprisoned_until,insured_region\n"
        "11010519491231002X,张秀英,basic_pension,active,2010-01-01,,,,110105\n",
        encoding="utf-8",
    )
    ((_, status, output),) = _type(tmp_path, ["certrecon roster import roster.csv"])
    assert status == 0, output
    done = _demo(tmp_path, 110)
    assert done.returncode == 2
    assert "did not create; the demo leaves it alone" in done.stderr
    assert not (tmp_path / ".certrecon" / "postgres" / "certrecon-demo.json").exists()
    ((_, status, output),) = _type(tmp_path, ["certrecon roster import roster.csv"])
    assert status == 0, output
