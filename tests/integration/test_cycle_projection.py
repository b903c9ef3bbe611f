"""The per-person cycle projection (sql/0009) as the ledger grows fact by fact: after every
write it equals the projection derived from the whole ledger; a database migrated with its
facts already there is backfilled; a rebuild repairs it; concurrent writers of one person
leave it right."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import asyncpg
import pytest

from certrecon.cli.cycle_view import write_list, write_rows_csv
from certrecon.cycle import CycleMode, CycleStatus, Period
from certrecon.domain import CST
from certrecon.store import db
from certrecon.store.cycle import cycle_rows, cycle_summary, person_rows
from certrecon.store.migrations import load_migrations, migrate
from tests.integration.cycle_support import load, make_people, projection_mismatches

PERSON = "110105194905050013"
OTHER = "110105195002020024"


def _at(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, 10, tzinfo=CST)


async def _roster(conn: asyncpg.Connection, id_number: str, status: str, region: str) -> None:
    await conn.execute(
        "INSERT INTO roster_version (id_number, name, benefit_type, status, first_paid_on,"
        " insured_region) VALUES ($1, '测试', 'basic_pension', $2, '2020-03-01', $3)",
        id_number,
        status,
        region,
    )


async def _certification(conn: asyncpg.Connection, cid: str, id_number: str, day: dt.date) -> None:
    at = _at(day)
    await conn.execute(
        """
        INSERT INTO certification (certification_id, channel, topic, kafka_partition,
            kafka_offset, id_number, valid, certified_at, local_date, due_date, deadline,
            provisional, content_sha256, raw, received_at)
        VALUES ($1, '12333', 'mohrss.certification.12333', 0, 0, $2, true, $3, $4, $4::date + 7,
                $3, false, '\\x00', '\\x00', $3)
        """,
        cid,
        id_number,
        at,
        day,
    )


async def _result(conn: asyncpg.Connection, cid: str, revision: int, outcome: str) -> None:
    await conn.execute(
        "INSERT INTO result (certification_id, revision, result_id, outcome, reason,"
        " decided_at, decided_by)"
        " VALUES ($1, $2::int, $1 || ':' || $2::int, $3, 'test', now(), $4)",
        cid,
        revision,
        outcome,
        "rules" if revision == 1 else "staff:t",
    )


async def _evidence(
    conn: asyncpg.Connection, evidence_id: str, kind: str, id_number: str, day: dt.date
) -> int:
    ref: int = await conn.fetchval(
        """
        INSERT INTO comparison_evidence (source, evidence_id, kind, id_number, name,
            event_date, via, file_name, file_sha256, file_line)
        VALUES ('test:feed', $1, $2, $3, '测试', $4, 'file', 'feed.csv', '\\x00', 2)
        RETURNING id
        """,
        evidence_id,
        kind,
        id_number,
        day,
    )
    if kind in ("death", "imprisonment"):
        await conn.execute(
            "INSERT INTO evidence_review_item (evidence_ref, id_number) VALUES ($1, $2)",
            ref,
            id_number,
        )
    return ref


async def _verdict(
    conn: asyncpg.Connection, ref: int, verdict: str, effective: dt.date | None
) -> None:
    await conn.execute(
        "INSERT INTO evidence_verdict (decision_id, evidence_ref, verdict, effective_date,"
        " decided_by, decided_at) VALUES ('V' || $1::bigint, $1::bigint, $2, $3, 'staff:t', now())",
        ref,
        verdict,
        effective,
    )


async def _status(conn: asyncpg.Connection, mode: CycleMode, as_of: dt.date) -> CycleStatus:
    rows = await person_rows(conn, Period.of(mode, as_of.year, as_of), [PERSON])
    return rows[PERSON].status


async def test_each_fact_keeps_the_projection_equal_to_the_ledger(
    conn: asyncpg.Connection,
) -> None:
    calendar, rolling = CycleMode.CALENDAR_YEAR, CycleMode.ROLLING_12_MONTHS
    day = dt.date(2026, 3, 10)

    async def agrees() -> None:
        assert await projection_mismatches(conn) == []

    await _roster(conn, PERSON, "active", "110105")
    await agrees()
    assert await _status(conn, calendar, dt.date(2026, 12, 31)) is CycleStatus.NOT_CERTIFIED
    # A qualified result counts; staff revising it away stops it counting, and back.
    await _certification(conn, "C1", PERSON, day)
    await agrees()
    await _result(conn, "C1", 1, "qualified")
    await agrees()
    assert await _status(conn, calendar, dt.date(2026, 12, 31)) is CycleStatus.CERTIFIED
    assert await _status(conn, calendar, dt.date(2026, 3, 9)) is CycleStatus.NOT_CERTIFIED
    assert await _status(conn, rolling, dt.date(2027, 3, 10)) is CycleStatus.CERTIFIED
    assert await _status(conn, rolling, dt.date(2027, 3, 11)) is CycleStatus.NOT_CERTIFIED
    await _result(conn, "C1", 2, "eligibility_lost")
    await agrees()
    assert await _status(conn, calendar, dt.date(2026, 12, 31)) is CycleStatus.NOT_CERTIFIED
    await _result(conn, "C1", 3, "qualified")
    await agrees()
    # Two certifications on one day: revising one away leaves the other counting.
    await _certification(conn, "C2", PERSON, day)
    await _result(conn, "C2", 1, "qualified")
    await _result(conn, "C1", 4, "not_in_scope")
    await agrees()
    assert await _status(conn, calendar, dt.date(2026, 12, 31)) is CycleStatus.CERTIFIED
    # A review item holds the person until staff decide it, once.
    await _certification(conn, "C3", PERSON, day)
    await conn.execute(
        "INSERT INTO review_item (certification_id, reason, queued_at)"
        " VALUES ('C3', 'deceased', now())"
    )
    await agrees()
    assert await _status(conn, calendar, dt.date(2026, 12, 31)) is CycleStatus.PENDING_REVIEW
    for _ in range(2):
        await conn.execute(
            "INSERT INTO staff_decision (certification_id, outcome, decided_by, decided_at)"
            " VALUES ('C3', 'qualified', 'staff:t', now())"
        )
        await agrees()
    assert await _status(conn, calendar, dt.date(2026, 12, 31)) is CycleStatus.CERTIFIED
    # Assisted certification and proof of life of another person.
    await _roster(conn, OTHER, "suspended", "110101")
    await conn.execute(
        "INSERT INTO assisted_certification (id_number, how, certified_at, local_date,"
        " decided_by) VALUES ($1, 'offline', $2, $3, 'staff:t')",
        OTHER,
        _at(day),
        day,
    )
    await _evidence(conn, "P1", "proof_of_life", OTHER, dt.date(2026, 5, 1))
    await _evidence(conn, "P2", "proof_of_life", OTHER, dt.date(2025, 5, 1))
    await agrees()
    # Imprisonment: under review, confirmed (lost), ended by a release.
    prison = await _evidence(conn, "I1", "imprisonment", PERSON, dt.date(2026, 6, 1))
    await agrees()
    assert await _status(conn, calendar, dt.date(2026, 12, 31)) is CycleStatus.PENDING_REVIEW
    await _verdict(conn, prison, "confirmed", dt.date(2026, 6, 5))
    await agrees()
    assert await _status(conn, calendar, dt.date(2026, 7, 1)) is CycleStatus.ELIGIBILITY_LOST
    await _evidence(conn, "R1", "release", PERSON, dt.date(2026, 9, 1))
    await agrees()
    assert await _status(conn, calendar, dt.date(2026, 7, 1)) is CycleStatus.ELIGIBILITY_LOST
    assert await _status(conn, calendar, dt.date(2026, 9, 1)) is CycleStatus.CERTIFIED
    # A rejected death record leaves nothing behind; a new roster version replaces the old.
    death = await _evidence(conn, "D1", "death", PERSON, dt.date(2026, 10, 1))
    await agrees()
    await _verdict(conn, death, "rejected", None)
    await agrees()
    await _roster(conn, PERSON, "terminated", "110108")
    await agrees()
    assert await person_rows(conn, Period.of(calendar, 2026), [PERSON]) == {}


async def test_a_rebuild_restores_the_projection_from_the_ledger(
    conn: asyncpg.Connection,
) -> None:
    people = make_people(300, seed=3)
    await load(conn, people)
    period = Period.of(CycleMode.CALENDAR_YEAR, 2026, dt.date(2026, 11, 27))
    before = (await cycle_summary(conn, period)).to_json()
    await conn.execute("UPDATE cycle_person SET cert_days = NULL, lost = NULL")
    assert await projection_mismatches(conn) != []
    assert await conn.fetchval("SELECT cycle_person_rebuild()") >= len(people)
    assert await projection_mismatches(conn) == []
    assert (await cycle_summary(conn, period)).to_json() == before


async def test_a_database_migrated_with_its_facts_is_backfilled(
    empty_database: str, tmp_path: Path
) -> None:
    for m in load_migrations():
        if m.name < "0009":
            (tmp_path / f"{m.name}.sql").write_text(m.sql, "utf-8")
    c = await db.connect(empty_database)
    try:
        await migrate(c, tmp_path)
        assert await c.fetchval("SELECT to_regclass('cycle_person')") is None
        people = make_people(300, seed=4)
        await load(c, people)
        await migrate(c)
        assert await c.fetchval("SELECT count(*) FROM cycle_person") >= len(people)
        assert await projection_mismatches(c) == []
    finally:
        await c.close()


async def test_concurrent_writers_of_one_person_leave_it_right(fresh_database: str) -> None:
    first, second = await db.connect(fresh_database), await db.connect(fresh_database)
    try:
        await _roster(first, PERSON, "active", "110105")
        death_tx = first.transaction()
        await death_tx.start()
        # Findings recomputed with the row locked; the other writer waits for the lock.
        await _evidence(first, "D1", "death", PERSON, dt.date(2026, 4, 1))

        async def proof() -> None:
            async with second.transaction():
                await _evidence(second, "P1", "proof_of_life", PERSON, dt.date(2026, 4, 2))
                await _certification(second, "C1", PERSON, dt.date(2026, 4, 3))
                await _result(second, "C1", 1, "qualified")

        waiting = asyncio.create_task(proof())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await death_tx.commit()
        await waiting
        assert await projection_mismatches(first) == []
        row = await first.fetchrow("SELECT * FROM cycle_person WHERE id_number = $1", PERSON)
        assert row is not None
        assert row["evidence_review"]
        assert row["proof_days"] == [dt.date(2026, 4, 2)]
        assert row["cert_days"] == [dt.date(2026, 4, 3)]
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("role", ["certrecon_app", "certrecon_reviewer", "certrecon_auditor"])
async def test_no_role_writes_the_projection(conn: asyncpg.Connection, role: str) -> None:
    for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
        assert not await conn.fetchval(
            "SELECT has_table_privilege($1, 'cycle_person', $2)", role, privilege
        )
    assert await conn.fetchval("SELECT has_table_privilege($1, 'cycle_person', 'SELECT')", role)


async def test_the_list_file_quotes_what_csv_and_spreadsheets_need(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    names = ['=HYPERLINK("x")', "李,四", 'say "hi"', "two\nlines", "@sum", "-1", " +"]
    for n, name in enumerate(names):
        await conn.execute(
            "INSERT INTO roster_version (id_number, name, benefit_type, status, first_paid_on,"
            " insured_region) VALUES ($1, $2, $3, 'active', '2020-03-01', $4)",
            f"11010519490505{n:04d}",
            name,
            "+basic" if n % 2 else "basic_pension",
            None if n % 3 else "110105",
        )
    period = Period.of(CycleMode.CALENDAR_YEAR, 2026)
    async with conn.transaction(readonly=True):
        assert await write_list(conn, period, tmp_path / "copy.csv") == len(names)
        rows = [r async for r in cycle_rows(conn, period)]
    write_rows_csv(tmp_path / "rows.csv", rows)
    assert (tmp_path / "copy.csv").read_bytes() == (tmp_path / "rows.csv").read_bytes()
    assert "'=HYPERLINK" in (tmp_path / "copy.csv").read_text("utf-8")
