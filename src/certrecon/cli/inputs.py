"""Parsing of operator input: dates, instants, years and free text, each bounded.

Every parser raises :class:`~certrecon.errors.InputError` (one ``Error:`` line, exit 2) for
anything it cannot take, out-of-range values included, so no operator input can reach a
``datetime`` overflow or the database as an unchecked value. Messages quote the input
shortened: it may be long or hostile (it is neutralised when printed).
"""

from __future__ import annotations

import datetime as dt
import re

from certrecon.calendar import FIRST_YEAR, LAST_YEAR
from certrecon.domain import CST
from certrecon.errors import InputError
from certrecon.text import MAX_ARGUMENT_LENGTH, check_free_text, shorten

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
RANGE_TEXT = f"{FIRST_YEAR}-01-01..{LAST_YEAR}-12-31"
"""The dates the calendar (and so every deadline) supports."""


def _quoted(text: str) -> str:
    return repr(shorten(text.strip(), 60))


def check_year(year: int) -> int:
    """A year the calendar supports."""
    if not FIRST_YEAR <= year <= LAST_YEAR:
        shown = str(year) if abs(year) < 10**9 else "that year"
        raise InputError(
            f"year {shown} is outside the supported calendar range {FIRST_YEAR}–{LAST_YEAR}"
        )
    return year


def _in_range(day: dt.date, text: str) -> None:
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise InputError(
            f"{_quoted(text)} is outside the supported calendar range {RANGE_TEXT} "
            "(China Standard Time)"
        )


def parse_day(text: str) -> dt.date:
    """A calendar date written YYYY-MM-DD within the supported range."""
    check_free_text("the date", text, max_length=MAX_ARGUMENT_LENGTH)
    value = text.strip()
    if not _DATE.match(value):
        raise InputError(f"{_quoted(text)} is not a date written YYYY-MM-DD")
    try:
        day = dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{_quoted(text)} is not a valid date: {exc}") from None
    _in_range(day, text)
    return day


def _parse_timestamp(text: str) -> dt.datetime | None:
    """An aware datetime whose CST date is in range; None when ``text`` is not a timestamp."""
    check_free_text("the time", text, max_length=MAX_ARGUMENT_LENGTH)
    try:
        instant = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if instant.utcoffset() is None:
        raise InputError(
            f"timestamp {_quoted(text)} has no UTC offset, so its date in China Standard Time "
            "is unknown; add one, e.g. +08:00 or Z"
        )
    try:
        local = instant.astimezone(CST)
    except OverflowError:
        local = None
    if local is None or not FIRST_YEAR <= local.year <= LAST_YEAR:
        raise InputError(
            f"{_quoted(text)} is outside the supported calendar range {RANGE_TEXT} "
            "(China Standard Time)"
        )
    return instant


def parse_instant(text: str) -> dt.datetime:
    """An RFC 3339 timestamp with an offset, within the supported range (``--at``)."""
    instant = _parse_timestamp(text)
    if instant is None:
        raise InputError(
            f"{_quoted(text)} is not an RFC 3339 timestamp such as 2024-06-07T09:00:00+08:00"
        )
    return instant


def parse_certified_at(text: str) -> dt.datetime:
    """An RFC 3339 timestamp with its offset, or a plain date taken as a date in CST."""
    value = text.strip()
    if _DATE.match(value):
        return dt.datetime.combine(parse_day(value), dt.time(0, tzinfo=CST))
    instant = _parse_timestamp(text)
    if instant is None:
        raise InputError(
            f"{_quoted(text)} is neither a date (YYYY-MM-DD) nor an RFC 3339 timestamp "
            "(e.g. 2023-09-27T10:00:00+08:00)"
        )
    return instant
