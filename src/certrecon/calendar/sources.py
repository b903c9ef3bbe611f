"""Where the calendar's facts come from: the holidays package and the shipped data files.

Precedence, lowest first: ``holidays.China``; the JSON files in ``data/`` shipped inside
the package; overrides stored in PostgreSQL (applied by
:func:`certrecon.store.calendar_overrides.load_calendar`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from certrecon.calendar.model import FIRST_YEAR, LAST_YEAR, DayOverride, PublishedYear
from certrecon.calendar.working import BaseSchedule, WorkingCalendar
from certrecon.errors import CalendarError

SHIPPED_LAYER = "shipped data"
"""The layer name of the facts in the shipped data files."""

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DOCUMENT_KEYS = frozenset({"description", "days", "published_years"})
_DAY_KEYS = frozenset({"date", "working", "source", "note"})
_YEAR_KEYS = frozenset({"year", "source", "note"})


def package_schedule(first_year: int = FIRST_YEAR, last_year: int = LAST_YEAR) -> BaseSchedule:
    """Every day of ``first_year``–``last_year`` as ``holidays.China`` answers it."""
    from importlib.metadata import version

    from holidays import country_holidays

    # One year either side: a make-up Saturday can belong to the neighbouring year's notice
    # (2005-12-31 was worked for the 2006 New Year), and observed days can spill over.
    china = country_holidays("CN", years=range(first_year - 1, last_year + 2), language="zh_CN")
    names: dict[dt.date, str] = dict(china.items())
    weekend_workdays: set[dt.date] = set(china.weekend_workdays)
    start = dt.date(first_year, 1, 1).toordinal()
    end = dt.date(last_year, 12, 31).toordinal()
    working = bytearray(end - start + 1)
    for ordinal in range(start, end + 1):
        day = dt.date.fromordinal(ordinal)
        weekend = day.weekday() >= 5
        working[ordinal - start] = (day in weekend_workdays) if weekend else (day not in names)
    # The package has no flag for "estimated year": past its data it silently applies the
    # generic rules. It encodes each State Council notice as that year's substituted days,
    # so exactly the years carrying such data are official.
    encoded: Iterable[int] = getattr(china, "special_public_holidays", {}).keys()
    return BaseSchedule(
        first_year=first_year,
        last_year=last_year,
        working=bytes(working),
        names={day: name for day, name in names.items() if first_year <= day.year <= last_year},
        official_years=frozenset(y for y in encoded if first_year <= y <= last_year),
        label=f"holidays {version('holidays')}",
    )


@dataclass(frozen=True, slots=True)
class ShippedData:
    """The official schedule facts shipped with certrecon, merged from every data file."""

    days: tuple[DayOverride, ...]
    published_years: tuple[PublishedYear, ...]


def _fail(name: str, message: str) -> CalendarError:
    return CalendarError(f"calendar data file {name}: {message}")


def _source(name: str, where: str, entry: dict[str, Any]) -> str:
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise _fail(name, f"{where} needs a non-empty source (the notice number)")
    return source.strip()


def parse_data_document(text: str, name: str) -> ShippedData:
    """Parse and validate one data file; every problem is a :class:`CalendarError`."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(name, f"not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not document.keys() <= _DOCUMENT_KEYS:
        raise _fail(name, f"must be an object with keys among {sorted(_DOCUMENT_KEYS)}")
    days: list[DayOverride] = []
    for position, entry in enumerate(document.get("days", [])):
        where = f"days[{position}]"
        if not isinstance(entry, dict) or not entry.keys() <= _DAY_KEYS:
            raise _fail(name, f"{where} must be an object with keys among {sorted(_DAY_KEYS)}")
        raw = entry.get("date")
        if not isinstance(raw, str) or not _ISO_DATE.match(raw):
            raise _fail(name, f"{where}: date {raw!r} is not YYYY-MM-DD")
        try:
            day = dt.date.fromisoformat(raw)
        except ValueError as exc:
            raise _fail(name, f"{where}: date {raw!r}: {exc}") from None
        working = entry.get("working")
        if not isinstance(working, bool):
            raise _fail(name, f"{where}: working must be true or false")
        days.append(DayOverride(day, working, _source(name, where, entry)))
    years: list[PublishedYear] = []
    for position, entry in enumerate(document.get("published_years", [])):
        where = f"published_years[{position}]"
        if not isinstance(entry, dict) or not entry.keys() <= _YEAR_KEYS:
            raise _fail(name, f"{where} must be an object with keys among {sorted(_YEAR_KEYS)}")
        year = entry.get("year")
        if isinstance(year, bool) or not isinstance(year, int):
            raise _fail(name, f"{where}: year must be a whole number")
        years.append(PublishedYear(year, _source(name, where, entry)))
    return ShippedData(tuple(days), tuple(years))


def merge_data(parts: Iterable[ShippedData]) -> ShippedData:
    """Merge data files; the same date or year with different facts is a :class:`CalendarError`."""
    days: dict[dt.date, DayOverride] = {}
    years: dict[int, PublishedYear] = {}
    for part in parts:
        for override in part.days:
            earlier = days.setdefault(override.day, override)
            if earlier.working != override.working:
                raise CalendarError(
                    f"calendar data files disagree about {override.day.isoformat()}: "
                    f"{earlier} and {override}"
                )
        for published in part.published_years:
            years.setdefault(published.year, published)
    return ShippedData(tuple(days[d] for d in sorted(days)), tuple(years[y] for y in sorted(years)))


def _data_files() -> list[Traversable]:
    folder = resources.files("certrecon.calendar") / "data"
    return sorted(
        (f for f in folder.iterdir() if f.is_file() and f.name.endswith(".json")),
        key=lambda f: f.name,
    )


def shipped_data() -> ShippedData:
    """Every shipped data file, parsed, validated and merged."""
    return merge_data(parse_data_document(f.read_text("utf-8"), f.name) for f in _data_files())


def build_calendar(base: BaseSchedule, data: ShippedData) -> WorkingCalendar:
    """The package schedule with the shipped facts on top."""
    return WorkingCalendar(base).with_overrides(
        data.days, data.published_years, layer=SHIPPED_LAYER
    )


@functools.cache
def default_calendar() -> WorkingCalendar:
    """``holidays.China`` plus the shipped data files, built once per process.

    Pure: it reads only the installed package and files shipped with certrecon. Apply
    database overrides with :meth:`WorkingCalendar.with_overrides` (or ``load_calendar``).
    """
    return build_calendar(package_schedule(), shipped_data())
