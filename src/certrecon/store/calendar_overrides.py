"""Operator overrides of the working-day calendar, stored in PostgreSQL.

Operators add them when the State Council publishes a schedule before a holidays release
carries it: the days off and make-up working days (``calendar_override``), then the year
itself declared official (``calendar_published_year``). They beat the holidays package and
the shipped data.

Both are ledgers of events: adding, replacing or removing an override, declaring or
withdrawing a year, each is a new row (``calendar_override_event``,
``calendar_publication_event``); the views ``calendar_override`` and
``calendar_published_year`` show what is in force (the latest event per day or year).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from certrecon.calendar import FIRST_YEAR, LAST_YEAR, WorkingCalendar, default_calendar
from certrecon.calendar.model import PublishedYear
from certrecon.errors import InputError
from certrecon.text import MAX_SOURCE_LENGTH, check_free_text

if TYPE_CHECKING:
    from certrecon.store.db import Conn

DATABASE_LAYER = "database"
"""The layer name of the stored overrides, as calendars display it."""


@dataclass(frozen=True, slots=True)
class StoredOverride:
    """A ``calendar_override`` row."""

    day: dt.date
    working: bool
    source: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class StoredPublishedYear:
    """A ``calendar_published_year`` row."""

    year: int
    source: str
    created_at: dt.datetime


def _check_source(source: str) -> str:
    cleaned = check_free_text("the source", source, max_length=MAX_SOURCE_LENGTH).strip()
    if not cleaned:
        raise InputError("an override needs a source, e.g. the notice number 国办发明电〔2023〕7号")
    return cleaned


def _check_year(year: int) -> None:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise InputError(
            f"year {year} is outside the supported calendar range {FIRST_YEAR}–{LAST_YEAR}"
        )


async def add_override(conn: Conn, day: dt.date, working: bool, source: str) -> StoredOverride:
    """Store (or replace) the override for ``day``; returns the stored row."""
    if isinstance(day, dt.datetime):
        raise InputError(f"an override names a date, not an instant: {day.isoformat()}")
    _check_year(day.year)
    row = await conn.fetchrow(
        """
        INSERT INTO calendar_override_event (day, working, source) VALUES ($1, $2, $3)
        RETURNING day, working, source, recorded_at AS created_at
        """,
        day,
        working,
        _check_source(source),
    )
    assert row is not None  # RETURNING always yields the row
    return StoredOverride(row["day"], row["working"], row["source"], row["created_at"])


async def remove_override(conn: Conn, day: dt.date) -> bool:
    """Record that the override for ``day`` is removed; False when none was in force."""
    removed = await conn.fetchval(
        """
        INSERT INTO calendar_override_event (day, working, source)
        SELECT day, NULL, NULL FROM calendar_override WHERE day = $1
        RETURNING 1
        """,
        day,
    )
    return bool(removed)


async def list_overrides(conn: Conn) -> list[StoredOverride]:
    """Every stored override, by date."""
    rows = await conn.fetch(
        "SELECT day, working, source, created_at FROM calendar_override ORDER BY day"
    )
    return [StoredOverride(r["day"], r["working"], r["source"], r["created_at"]) for r in rows]


async def publish_year(conn: Conn, year: int, source: str) -> StoredPublishedYear:
    """Declare ``year``'s official schedule published (replacing an earlier declaration).

    Do this after its days off and make-up working days are in place (here, in the shipped
    data or in the holidays package): from then on its deadlines are no longer provisional.
    """
    _check_year(year)
    row = await conn.fetchrow(
        """
        INSERT INTO calendar_publication_event (year, published, source) VALUES ($1, true, $2)
        RETURNING year, source, recorded_at AS created_at
        """,
        year,
        _check_source(source),
    )
    assert row is not None  # RETURNING always yields the row
    return StoredPublishedYear(row["year"], row["source"], row["created_at"])


async def unpublish_year(conn: Conn, year: int) -> bool:
    """Record that ``year``'s declaration is withdrawn; False when none was in force."""
    withdrawn = await conn.fetchval(
        """
        INSERT INTO calendar_publication_event (year, published, source)
        SELECT year, false, NULL FROM calendar_published_year WHERE year = $1
        RETURNING 1
        """,
        year,
    )
    return bool(withdrawn)


async def list_published_years(conn: Conn) -> list[StoredPublishedYear]:
    """Every year declared published in the database, in order."""
    rows = await conn.fetch(
        "SELECT year, source, created_at FROM calendar_published_year ORDER BY year"
    )
    return [StoredPublishedYear(r["year"], r["source"], r["created_at"]) for r in rows]


async def load_calendar(conn: Conn) -> WorkingCalendar:
    """:func:`default_calendar` with the database overrides and published years applied.

    Both tables are read in one snapshot so that an operator's concurrent change is seen
    entirely or not at all.
    """
    if conn.is_in_transaction():
        # The caller's transaction already fixes what is seen.
        overrides = await list_overrides(conn)
        years = await list_published_years(conn)
    else:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            overrides = await list_overrides(conn)
            years = await list_published_years(conn)
    return default_calendar().with_overrides(
        ((o.day, o.working, o.source) for o in overrides),
        (PublishedYear(y.year, y.source) for y in years),
        layer=DATABASE_LAYER,
    )
