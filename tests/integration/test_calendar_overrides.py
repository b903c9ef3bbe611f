"""The database overrides of the working-day calendar, on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from certrecon.calendar import YearStatus, compute_deadline, default_calendar
from certrecon.domain import CST
from certrecon.errors import InputError
from certrecon.store.calendar_overrides import (
    add_override,
    list_overrides,
    list_published_years,
    load_calendar,
    publish_year,
    remove_override,
    unpublish_year,
)

SHIPPED_DAY = dt.date(2005, 12, 31)  # worked, per the shipped data file


async def test_add_list_replace_and_remove(conn: asyncpg.Connection) -> None:
    assert await list_overrides(conn) == []
    stored = await add_override(conn, dt.date(2027, 2, 20), True, " 国办发明电〔2026〕99号 ")
    assert (stored.day, stored.working, stored.source) == (
        dt.date(2027, 2, 20),
        True,
        "国办发明电〔2026〕99号",
    )
    assert stored.created_at.tzinfo is not None
    await add_override(conn, dt.date(2027, 2, 11), False, "国办发明电〔2026〕99号")
    assert [o.day for o in await list_overrides(conn)] == [
        dt.date(2027, 2, 11),
        dt.date(2027, 2, 20),
    ]

    replaced = await add_override(conn, dt.date(2027, 2, 20), False, "corrected")
    assert (replaced.working, replaced.source) == (False, "corrected")
    assert len(await list_overrides(conn)) == 2

    assert await remove_override(conn, dt.date(2027, 2, 20)) is True
    assert await remove_override(conn, dt.date(2027, 2, 20)) is False
    assert [o.day for o in await list_overrides(conn)] == [dt.date(2027, 2, 11)]


async def test_database_overrides_beat_the_shipped_data_and_the_package(
    conn: asyncpg.Connection,
) -> None:
    assert default_calendar().is_working_day(SHIPPED_DAY) is True
    monday = dt.date(2023, 10, 9)
    await add_override(conn, SHIPPED_DAY, False, "test: beats the shipped data")
    await add_override(conn, monday, False, "test: beats the package")
    cal = await load_calendar(conn)
    assert cal.is_working_day(SHIPPED_DAY) is False
    assert cal.is_working_day(monday) is False
    assert cal.is_working_day(monday + dt.timedelta(days=1)) is True
    assert compute_deadline(dt.datetime(2023, 9, 27, 10, tzinfo=CST), cal).due_date == (
        dt.date(2023, 10, 11)
    )
    # The shared default calendar is untouched.
    assert default_calendar().is_working_day(monday) is True
    layers = {override.day: layer for override, layer in cal.overrides}
    assert layers == {SHIPPED_DAY: "database", monday: "database"}


async def test_publishing_a_year_makes_it_official(conn: asyncpg.Connection) -> None:
    cal = await load_calendar(conn)
    assert cal.year_status(2027) is YearStatus.PROVISIONAL
    certified = dt.datetime(2027, 3, 1, 10, tzinfo=CST)
    assert compute_deadline(certified, cal).provisional is True

    stored = await publish_year(conn, 2027, "国办发明电〔2026〕99号")
    assert (stored.year, stored.source) == (2027, "国办发明电〔2026〕99号")
    cal = await load_calendar(conn)
    assert cal.year_status(2027) is YearStatus.OFFICIAL
    assert compute_deadline(certified, cal).provisional is False
    schedule = cal.year_schedule(2027)
    assert schedule.status_source == "database: 国办发明电〔2026〕99号"
    assert [y.year for y in await list_published_years(conn)] == [2027]

    assert await unpublish_year(conn, 2027) is True
    assert await unpublish_year(conn, 2027) is False
    assert (await load_calendar(conn)).year_status(2027) is YearStatus.PROVISIONAL


async def test_load_calendar_inside_a_transaction(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await add_override(conn, dt.date(2030, 1, 2), False, "test")
        assert (await load_calendar(conn)).is_working_day(dt.date(2030, 1, 2)) is False
    assert (await load_calendar(conn)).is_working_day(dt.date(2030, 1, 2)) is False


@pytest.mark.parametrize(
    ("day", "source", "message"),
    [
        (dt.date(2003, 12, 31), "x", "outside the supported calendar range"),
        (dt.date(2100, 1, 1), "x", "outside the supported calendar range"),
        (dt.date(2027, 1, 4), "  ", "needs a source"),
        (dt.datetime(2027, 1, 4, tzinfo=CST), "x", "not an instant"),
    ],
)
async def test_bad_overrides_are_input_errors(
    conn: asyncpg.Connection, day: dt.date, source: str, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        await add_override(conn, day, True, source)
    assert await list_overrides(conn) == []


async def test_bad_published_years_are_input_errors(conn: asyncpg.Connection) -> None:
    with pytest.raises(InputError, match="outside"):
        await publish_year(conn, 2100, "x")
    with pytest.raises(InputError, match="needs a source"):
        await publish_year(conn, 2027, "")
    assert await list_published_years(conn) == []
