"""The cycle's set-based SQL against the pure rules and an independent reading of the
contract, over a generated roster of 10,000 people (and small generated cases)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certrecon.cli.cycle_view import write_list, write_rows_csv
from certrecon.cycle import (
    CycleMode,
    OutreachRow,
    Period,
    in_scope,
    outreach,
    person_status,
    summarise,
    suspend_candidates,
    valid_until,
)
from certrecon.store.cycle import cycle_rows, cycle_summary, fetch_person_facts, person_rows
from certrecon.synthetic import make_id_number
from tests.conftest import _ensure_template, _temporary_database
from tests.integration.cycle_support import (
    Adverse,
    Cert,
    Person,
    expected_status,
    load,
    make_people,
    projection_mismatches,
)

PERIODS = [
    Period.of(CycleMode.CALENDAR_YEAR, 2025),
    Period.of(CycleMode.CALENDAR_YEAR, 2026, dt.date(2026, 11, 27)),
    Period.of(CycleMode.ROLLING_12_MONTHS, 2026, dt.date(2026, 6, 30)),
    Period.of(CycleMode.ROLLING_12_MONTHS, 2025),
]
IDS = ["calendar-2025", "calendar-2026-to-date", "rolling-mid-2026", "rolling-end-2025"]


async def _rows(
    conn: asyncpg.Connection, period: Period, expiring: int | None = None
) -> list[OutreachRow]:
    async with conn.transaction(readonly=True):
        return [r async for r in cycle_rows(conn, period, expiring_within=expiring, batch=500)]


@pytest_asyncio.fixture(scope="module")
async def big(pg_server: str) -> AsyncIterator[tuple[asyncpg.Connection, list[Person]]]:
    """10,000 generated people in a database of their own, shared by this module's tests."""
    template = await _ensure_template(pg_server)
    async with _temporary_database(pg_server, "cy", template) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            people = make_people(10_000, seed=12)
            await load(conn, people)
            yield conn, people
        finally:
            await conn.close()


async def test_the_projection_kept_at_write_time_is_the_ledger_derivation(
    big: tuple[asyncpg.Connection, list[Person]],
) -> None:
    conn, people = big
    assert await projection_mismatches(conn) == []
    kept = await conn.fetchval("SELECT count(*) FROM cycle_person")
    assert kept >= len(people)


@pytest.mark.parametrize("period", PERIODS, ids=IDS)
async def test_status_counts_agree_with_the_pure_rules_and_the_contract(
    big: tuple[asyncpg.Connection, list[Person]], period: Period
) -> None:
    conn, people = big
    rolling = period.mode is CycleMode.ROLLING_12_MONTHS
    summary = await cycle_summary(conn, period)
    facts = await fetch_person_facts(conn, [p.id_number for p in people])
    pure = summarise(facts.values(), period)
    assert summary.to_json() == pure.to_json()
    expected = Counter(
        s
        for p in people
        if (s := expected_status(p, rolling, period.year, period.as_of)) is not None
    )
    assert {k: v for k, v in summary.to_json()["by_status"].items() if v} == expected
    # The generated roster exercises every status.
    assert all(expected.values())
    assert len(expected) == 5


@pytest.mark.parametrize("period", PERIODS, ids=IDS)
async def test_outreach_is_the_people_in_scope_minus_everyone_settled(
    big: tuple[asyncpg.Connection, list[Person]], period: Period
) -> None:
    conn, people = big
    rolling = period.mode is CycleMode.ROLLING_12_MONTHS
    listed = await _rows(conn, period)
    in_scope_ids = {
        p.id_number
        for p in people
        if expected_status(p, rolling, period.year, period.as_of) is not None
    }
    settled = {
        p.id_number
        for p in people
        if expected_status(p, rolling, period.year, period.as_of)
        in {"certified", "confirmed_by_evidence", "pending_review", "eligibility_lost"}
    }
    assert {r.id_number for r in listed} == in_scope_ids - settled
    assert [r.id_number for r in listed] == sorted(r.id_number for r in listed)
    facts = await fetch_person_facts(conn, [p.id_number for p in people])
    ordered = [facts[k] for k in sorted(facts)]
    assert listed == list(outreach(ordered, period))
    assert listed == list(suspend_candidates(ordered, period))


async def test_expiring_within_agrees_with_the_pure_list(
    big: tuple[asyncpg.Connection, list[Person]],
) -> None:
    conn, people = big
    period = PERIODS[2]
    facts = await fetch_person_facts(conn, [p.id_number for p in people])
    ordered = [facts[k] for k in sorted(facts)]
    listed = await _rows(conn, period, expiring=90)
    assert listed == list(outreach(ordered, period, expiring_within=90))
    due = await _rows(conn, period)
    assert len(listed) > len(due)
    with pytest.raises(Exception, match="rolling_12_months"):
        await _rows(conn, PERIODS[0], expiring=90)


# ----------------------------------------------------------------------------------------
# Small generated cases: every field of one person, SQL against the pure functions
# ----------------------------------------------------------------------------------------

_numbers = itertools.count()
DAYS = st.dates(dt.date(2024, 1, 1), dt.date(2026, 11, 27))
OUTCOMES = st.lists(
    st.sampled_from(["qualified", "not_in_scope", "eligibility_lost"]), min_size=0, max_size=2
)


@st.composite
def people(draw: st.DrawFn) -> Person:
    n = next(_numbers)
    birth = dt.date(1930, 1, 1) + dt.timedelta(days=n // 1000)
    certs = [
        Cert(day, outcomes, None if outcomes else draw(st.sampled_from([None, "open"])))
        for day, outcomes in draw(st.lists(st.tuples(DAYS, OUTCOMES), max_size=3))
    ]
    adverse = []
    for kind, on, verdict, shift in draw(
        st.lists(
            st.tuples(
                st.sampled_from(["death", "imprisonment"]),
                DAYS,
                st.sampled_from([None, "confirmed", "rejected"]),
                st.integers(-40, 40),
            ),
            max_size=2,
        )
    ):
        effective = on + dt.timedelta(days=shift) if verdict == "confirmed" else None
        adverse.append(Adverse(kind, on, verdict, effective))
    return Person(
        id_number=make_id_number("110105", birth, n % 1000),
        name="测试",
        status=draw(st.sampled_from(["active", "suspended"])),
        first_paid_on=draw(st.dates(dt.date(2023, 1, 1), dt.date(2026, 11, 1))),
        region="110105",
        certs=certs,
        assisted=draw(st.lists(DAYS, max_size=1)),
        proof=draw(st.lists(DAYS, max_size=2)),
        adverse=adverse,
        releases=draw(st.lists(DAYS, max_size=1)),
    )


@pytest_asyncio.fixture(scope="module")
async def small(pg_server: str) -> AsyncIterator[str]:
    template = await _ensure_template(pg_server)
    async with _temporary_database(pg_server, "cs", template) as dsn:
        yield dsn


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    group=st.lists(people(), min_size=1, max_size=4),
    as_of=st.dates(dt.date(2024, 6, 1), dt.date(2026, 12, 31)),
)
async def test_small_cases_agree_person_by_person(
    small: str, group: list[Person], as_of: dt.date
) -> None:
    conn = await asyncpg.connect(small)
    try:
        await load(conn, group)
        assert await projection_mismatches(conn) == []
        ids = [p.id_number for p in group]
        facts = await fetch_person_facts(conn, ids)
        for period in (
            Period.of(CycleMode.CALENDAR_YEAR, as_of.year, as_of),
            Period.of(CycleMode.ROLLING_12_MONTHS, as_of.year, as_of),
        ):
            rolling = period.mode is CycleMode.ROLLING_12_MONTHS
            judged = await person_rows(conn, period, ids)
            for p in group:
                f, row = facts[p.id_number], judged[p.id_number]
                pure = person_status(f, period)
                assert row.in_scope == in_scope(f, period)
                assert row.status == pure.status
                assert row.last_certified_on == pure.last_certified_on
                assert row.valid_until == (valid_until(f, as_of) if rolling else None)
                independent = expected_status(p, rolling, period.year, as_of)
                assert (independent is not None) == row.in_scope
                if independent is not None:
                    assert row.status.value == independent
    finally:
        await conn.close()


@pytest.mark.parametrize("period", PERIODS, ids=IDS)
async def test_the_list_file_written_by_copy_is_the_rows_as_csv(
    big: tuple[asyncpg.Connection, list[Person]], period: Period, tmp_path: Path
) -> None:
    conn, _ = big
    expiring = 90 if period.mode is CycleMode.ROLLING_12_MONTHS else None
    async with conn.transaction(readonly=True):
        count = await write_list(conn, period, tmp_path / "copy.csv", expiring_within=expiring)
    rows = await _rows(conn, period, expiring)
    assert count == len(rows) > 0
    assert write_rows_csv(tmp_path / "rows.csv", rows) == count
    assert (tmp_path / "copy.csv").read_bytes() == (tmp_path / "rows.csv").read_bytes()
