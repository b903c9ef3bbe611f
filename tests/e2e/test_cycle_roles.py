"""The certification cycle through logins that hold one role each: the app imports
evidence, the reviewer records assisted certifications and verdicts, the auditor reads the
cycle; none can do the others' work."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from certrecon.calendar import default_calendar
from certrecon.cycle import CycleMode, Period
from certrecon.cycle.assisted import AssistedCertification, AssistedHow
from certrecon.domain import CST
from certrecon.evidence.csvfile import HEADER
from certrecon.reconcile.evidence import Verdict
from certrecon.store import db
from certrecon.store.cycle import cycle_rows, cycle_summary, record_assisted
from certrecon.store.evidence import import_evidence_file
from certrecon.store.evidence_review import decide_evidence
from certrecon.store.roster import import_roster
from certrecon.worker.pipeline import PipelineConfig
from tests.e2e import test_roles
from tests.e2e.test_roles import dsn_as
from tests.support import eligible_roster, isolated_settings

logins = test_roles.logins
"""Logins holding one role each (the fixture of the roles test)."""

NOW = dt.datetime.now(dt.UTC)


async def test_cycle_rights_per_role(fresh_database: str, logins: Any, tmp_path: Path) -> None:
    app = dsn_as(fresh_database, await logins("certrecon_app"))
    reviewer_login = await logins("certrecon_reviewer")
    reviewer = dsn_as(fresh_database, reviewer_login)
    auditor = dsn_as(fresh_database, await logins("certrecon_auditor"))
    dead, alive = eligible_roster(2, seed=51)
    today = NOW.astimezone(CST).date()
    feed = tmp_path / "feed.csv"
    feed.write_text(
        ",".join(HEADER)
        + f"\nD1,death,{dead.id_number},{dead.name},{today},civil_affairs:cremation\n",
        encoding="utf-8",
    )

    conn = await db.connect(app)
    try:
        await import_roster(conn, [dead, alive])
        summary = await import_evidence_file(conn, feed, today=today)
        assert summary.review_items == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO assisted_certification (id_number, how, certified_at, local_date,"
                " decided_by) VALUES ('x', 'offline', now(), current_date, 'staff:x')"
            )
    finally:
        await conn.close()

    conn = await db.connect(reviewer)
    try:
        cert = AssistedCertification(alive.id_number, AssistedHow.OFFLINE, "s9", NOW)
        done = await record_assisted(conn, cert, mode=CycleMode.CALENDAR_YEAR, now=NOW)
        assert done.login == reviewer_login
        ref = await conn.fetchval("SELECT evidence_ref FROM evidence_review_item")
        settings = isolated_settings()
        verdict = await decide_evidence(
            conn,
            f"E{ref}",
            verdict=Verdict.REJECTED,
            effective_date=None,
            staff_id="s9",
            note=None,
            now=NOW,
            calendar=default_calendar(),
            config=PipelineConfig.from_settings(settings),
            benefit_action_topic=settings.benefit_action_topic,
        )
        assert verdict.covered == (f"E{ref}",)
        assert await conn.fetchval("SELECT login FROM evidence_verdict") == reviewer_login
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM assisted_certification")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO comparison_evidence (source, evidence_id, kind, id_number, name,"
                " event_date, via, file_name, file_sha256, file_line)"
                " VALUES ('s', 'e', 'death', 'x', 'y', current_date, 'file', 'f', '\\x00', 2)"
            )
    finally:
        await conn.close()

    conn = await db.connect(auditor)
    try:
        period = Period.of(CycleMode.CALENDAR_YEAR, today.year, today)
        async with conn.transaction(readonly=True):
            counted = await cycle_summary(conn, period)
            listed = [r async for r in cycle_rows(conn, period)]
        assert counted.to_json()["by_status"]["certified"] == 1
        assert counted.to_json()["by_status"]["not_certified"] == 1
        assert [r.id_number for r in listed] == [dead.id_number]
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute(
                "INSERT INTO evidence_verdict (decision_id, evidence_ref, verdict, decided_by,"
                " decided_at) VALUES ('x', 1, 'rejected', 'staff:x', now())"
            )
    finally:
        await conn.close()
