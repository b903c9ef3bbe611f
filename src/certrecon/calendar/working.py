"""The working-day calendar: precomputed tables and the deadline arithmetic on them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import accumulate

from certrecon.calendar.model import (
    DayOverride,
    Deadline,
    PublishedYear,
    ScheduledDay,
    YearSchedule,
    YearStatus,
)
from certrecon.domain import CST
from certrecon.errors import CalendarError, InputError

_ONE_DAY = dt.timedelta(days=1)
_MIDNIGHT_CST = dt.time(0, tzinfo=CST)
_SATURDAY = 5
_MEMO_LIMIT = 8
"""How many different numbers of working days get a memo of deadlines (one list per day)."""

DAY_OFF_NAME = "休息日"
"""Label of a day off that the holidays package does not name (e.g. one added by an override)."""
MAKEUP_DAY_NAME = "调休上班"
"""Label of a Saturday or Sunday that is a working day."""


@dataclass(frozen=True, slots=True)
class BaseSchedule:
    """The holidays package's answer for every day of the supported range, before overrides."""

    first_year: int
    last_year: int
    working: bytes
    """One byte per day from 1 January of ``first_year``: 1 for a working day, 0 otherwise."""
    names: Mapping[dt.date, str]
    """Holiday names as the package gives them, for display only."""
    official_years: frozenset[int]
    """Years whose State Council schedule the package encodes."""
    label: str
    """The package and its version, e.g. ``holidays 0.109``."""

    def __post_init__(self) -> None:
        days = (
            dt.date(self.last_year, 12, 31).toordinal() - dt.date(self.first_year, 1, 1).toordinal()
        )
        if len(self.working) != days + 1:
            raise ValueError(
                f"the schedule has {len(self.working)} days, {self.first_year}–{self.last_year} "
                f"has {days + 1}"
            )


class WorkingCalendar:
    """Working days of mainland China, answered from tables precomputed per day.

    A calendar is immutable; :meth:`with_overrides` returns a new one. Every question about
    a date outside ``first_year``–``last_year`` raises :class:`CalendarError`, so no answer
    is ever made up for a day the tables do not cover.
    """

    __slots__ = (
        "_base",
        "_before",
        "_day_count",
        "_first_ordinal",
        "_memo",
        "_official",
        "_overrides",
        "_provisional_before",
        "_published",
        "_working",
        "_working_ordinals",
    )

    def __init__(
        self,
        base: BaseSchedule,
        overrides: Mapping[dt.date, tuple[DayOverride, str]] | None = None,
        published: Mapping[int, tuple[PublishedYear, str]] | None = None,
    ) -> None:
        """Build the tables; ``overrides`` and ``published`` map to (fact, layer name)."""
        self._base = base
        self._overrides = dict(overrides or {})
        self._published = dict(published or {})
        first = dt.date(base.first_year, 1, 1).toordinal()
        self._first_ordinal = first
        self._day_count = len(base.working)
        working = bytearray(base.working)
        for day, (override, _layer) in self._overrides.items():
            working[self._index(day, "override day")] = override.working
        self._working = bytes(working)
        # _before[i] = working days among the first i days, so any count over a date range
        # is one subtraction and the k-th working day after a date is one list index.
        self._before = list(accumulate(working, initial=0))
        self._working_ordinals = [first + i for i, flag in enumerate(working) if flag]
        years = range(base.first_year, base.last_year + 1)
        self._official = frozenset(
            y for y in years if y in base.official_years or y in self._published
        )
        self._provisional_before = list(
            accumulate((y not in self._official for y in years), initial=0)
        )
        # Deadlines depend only on the local date and N, so each is computed once per
        # calendar; the entries are immutable and can be shared between callers.
        self._memo: dict[int, list[Deadline | None]] = {}

    # -- the range ------------------------------------------------------------------------

    @property
    def first_year(self) -> int:
        """The first year the tables cover."""
        return self._base.first_year

    @property
    def last_year(self) -> int:
        """The last year the tables cover."""
        return self._base.last_year

    @property
    def package_label(self) -> str:
        """The holidays package and version the base schedule comes from."""
        return self._base.label

    @property
    def overrides(self) -> tuple[tuple[DayOverride, str], ...]:
        """Every override in force, by date, each with the layer it comes from."""
        return tuple(self._overrides[day] for day in sorted(self._overrides))

    @property
    def published_years(self) -> tuple[tuple[PublishedYear, str], ...]:
        """Years declared official by an override layer, each with that layer's name."""
        return tuple(self._published[year] for year in sorted(self._published))

    def _range_text(self) -> str:
        return f"{self._base.first_year}-01-01..{self._base.last_year}-12-31"

    def _index(self, day: dt.date, what: str) -> int:
        if isinstance(day, dt.datetime):
            # A datetime's date part depends on its offset; callers must convert to CST first.
            raise TypeError(f"{what} must be a date, not a datetime: {day!r}")
        index = day.toordinal() - self._first_ordinal
        if 0 <= index < self._day_count:
            return index
        raise CalendarError(
            f"{what} {day.isoformat()} is outside the supported calendar range {self._range_text()}"
        )

    def _check_year(self, year: int) -> None:
        if not self._base.first_year <= year <= self._base.last_year:
            raise CalendarError(
                f"year {year} is outside the supported calendar range "
                f"{self._base.first_year}–{self._base.last_year}"
            )

    def _local_index(self, instant: dt.datetime, what: str) -> int:
        if not isinstance(instant, dt.datetime):
            raise TypeError(f"{what} must be a datetime, not {type(instant).__name__}")
        if instant.utcoffset() is None:
            raise InputError(
                f"{what} {instant.isoformat()} has no UTC offset, so its date in China "
                "Standard Time is unknown"
            )
        return self._index(instant.astimezone(CST).date(), f"{what} local date")

    # -- single days ----------------------------------------------------------------------

    def is_working_day(self, day: dt.date) -> bool:
        """Whether ``day`` is a working day (weekends and holidays are not; 调休 Saturdays are)."""
        return self._working[self._index(day, "day")] == 1

    def year_status(self, year: int) -> YearStatus:
        """``official`` when the year's State Council schedule is known, else ``provisional``."""
        self._check_year(year)
        return YearStatus.OFFICIAL if year in self._official else YearStatus.PROVISIONAL

    def next_working_day(self, day: dt.date) -> dt.date:
        """The first working day strictly after ``day``."""
        rank = self._before[self._index(day, "day") + 1]
        if rank >= len(self._working_ordinals):
            raise CalendarError(
                f"no working day after {day.isoformat()} within the supported calendar range "
                f"{self._range_text()}"
            )
        return dt.date.fromordinal(self._working_ordinals[rank])

    def count_working_days(self, after: dt.date, through: dt.date) -> int:
        """The number of working days d with ``after < d <= through`` (0 if none)."""
        start = self._index(after, "date")
        end = self._index(through, "date")
        return max(0, self._before[end + 1] - self._before[start + 1])

    # -- deadlines ------------------------------------------------------------------------

    def deadline_for(self, certified_at: dt.datetime, working_days: int = 5) -> Deadline:
        """The deadline of a certification made at ``certified_at``: :func:`compute_deadline`."""
        # type() rather than isinstance(): True must not pass for 1 (nor share its memo).
        memo = self._memo.get(working_days) if type(working_days) is int else None
        if memo is None:
            if type(working_days) is not int or working_days < 1:
                raise InputError(
                    f"the number of working days must be a whole number of at least 1, "
                    f"not {working_days!r}"
                )
            if len(self._memo) >= _MEMO_LIMIT:
                # Some caller varies N freely: answer without growing memory.
                index = self._local_index(certified_at, "certified_at")
                return self._compute(index, working_days)
            memo = self._memo.setdefault(working_days, [None] * self._day_count)
        # The hot path of the worker: checks inlined; the slow path only explains failures.
        if isinstance(certified_at, dt.datetime) and certified_at.utcoffset() is not None:
            index = certified_at.astimezone(CST).toordinal() - self._first_ordinal
            if not 0 <= index < len(memo):
                index = self._local_index(certified_at, "certified_at")
        else:
            index = self._local_index(certified_at, "certified_at")
        found = memo[index]
        if found is None:
            found = memo[index] = self._compute(index, working_days)
        return found

    def _compute(self, index: int, working_days: int) -> Deadline:
        local_date = dt.date.fromordinal(self._first_ordinal + index)
        rank = self._before[index + 1] + working_days - 1
        if rank >= len(self._working_ordinals):
            raise CalendarError(
                f"the {working_days}th working day after {local_date.isoformat()} lies beyond "
                f"the supported calendar range {self._range_text()}"
            )
        due_date = dt.date.fromordinal(self._working_ordinals[rank])
        first = self._base.first_year
        provisional_years = (
            self._provisional_before[due_date.year - first + 1]
            - self._provisional_before[local_date.year - first]
        )
        return Deadline(
            local_date=local_date,
            due_date=due_date,
            deadline=dt.datetime.combine(due_date + _ONE_DAY, _MIDNIGHT_CST),
            provisional=provisional_years > 0,
            working_days=working_days,
        )

    def working_days_left(self, now: dt.datetime, due_date: dt.date) -> int:
        """Working days from ``now``'s date in China Standard Time until ``due_date``.

        Not yet due: the number of working days after today up to and including the due
        date, so 0 when it is due today and 1 when it is due on the next working day (also
        when asked on a weekend). Past due: negative, never 0: minus the working days after
        the due date up to and including today, minus one more when today is not a working
        day. So for a Friday due date, Saturday, Sunday and Monday give -1 and Tuesday -2.
        """
        today = self._local_index(now, "now")
        due = self._index(due_date, "due date")
        if due >= today:
            return self._before[due + 1] - self._before[today + 1]
        passed = self._before[today + 1] - self._before[due + 1]
        return -passed - (0 if self._working[today] else 1)

    # -- overrides ------------------------------------------------------------------------

    def with_overrides(
        self,
        overrides: Iterable[tuple[dt.date, bool, str]],
        published_years: Iterable[int | PublishedYear] = (),
        *,
        layer: str = "database",
    ) -> WorkingCalendar:
        """A new calendar in which ``overrides`` beat everything this one knows.

        ``overrides`` are (date, working, source) facts; ``published_years`` are years whose
        official schedule is declared published (plain years take ``layer`` as source).
        ``layer`` names where the facts come from, for display.
        """
        merged = dict(self._overrides)
        batch: dict[dt.date, DayOverride] = {}
        for day, working, source in overrides:
            if not isinstance(working, bool):
                raise TypeError(f"override for {day!r}: working must be a bool, not {working!r}")
            if not isinstance(source, str) or not source.strip():
                raise CalendarError(f"override for {day!r} has no source")
            self._index(day, "override day")
            override = DayOverride(day, working, source.strip())
            earlier = batch.setdefault(day, override)
            if earlier != override:
                raise CalendarError(
                    f"conflicting overrides for {day.isoformat()}: {earlier} and {override}"
                )
            merged[day] = (override, layer)
        published = dict(self._published)
        for item in published_years:
            entry = item if isinstance(item, PublishedYear) else PublishedYear(item, layer)
            if isinstance(entry.year, bool) or not isinstance(entry.year, int):
                raise TypeError(f"a published year must be an int, not {entry.year!r}")
            self._check_year(entry.year)
            published[entry.year] = (entry, layer)
        return WorkingCalendar(self._base, merged, published)

    # -- a year for people ----------------------------------------------------------------

    def year_schedule(self, year: int) -> YearSchedule:
        """The year's status, days off and make-up working days, each with its source."""
        status = self.year_status(year)
        start = dt.date(year, 1, 1)
        end = dt.date(year, 12, 31)
        base_index = self._index(start, "date")
        holidays: list[ScheduledDay] = []
        makeup: list[ScheduledDay] = []
        for offset in range(end.toordinal() - start.toordinal() + 1):
            day = start + dt.timedelta(days=offset)
            working = self._working[base_index + offset] == 1
            weekend = day.weekday() >= _SATURDAY
            name = self._base.names.get(day)
            found = self._overrides.get(day)
            source = f"{found[1]}: {found[0].source}" if found else self._base.label
            if not working and (not weekend or name is not None or found is not None):
                holidays.append(ScheduledDay(day, name or DAY_OFF_NAME, source))
            elif working and weekend:
                makeup.append(ScheduledDay(day, MAKEUP_DAY_NAME, source))
        declared = self._published.get(year)
        if status is YearStatus.PROVISIONAL:
            status_source = (
                "no published State Council schedule is known: holidays are estimated and "
                "make-up working days are unknown"
            )
        elif declared is not None:
            status_source = f"{declared[1]}: {declared[0].source}"
        else:
            status_source = self._base.label
        return YearSchedule(
            year=year,
            status=status,
            status_source=status_source,
            holidays=tuple(holidays),
            makeup_working_days=tuple(makeup),
            overrides=tuple(
                entry for day, entry in sorted(self._overrides.items()) if day.year == year
            ),
            working_day_count=self._before[self._index(end, "date") + 1] - self._before[base_index],
        )

    def __repr__(self) -> str:
        return (
            f"WorkingCalendar({self._base.label}, {self._range_text()}, "
            f"{len(self._overrides)} overrides, {len(self._published)} declared years)"
        )


def compute_deadline(
    certified_at: dt.datetime, cal: WorkingCalendar, working_days: int = 5
) -> Deadline:
    """The answer deadline of a certification made at ``certified_at``.

    The certification date is ``certified_at``'s date in China Standard Time whatever its
    offset, and it is not counted; the due date is the ``working_days``-th working day after
    it, and the deadline is 24:00 CST that day. ``provisional`` is set when any year from the
    certification date through the due date has no published schedule.

    Raises :class:`InputError` for a naive ``certified_at`` or ``working_days`` below 1, and
    :class:`CalendarError` when the dates leave the supported range.
    """
    return cal.deadline_for(certified_at, working_days)
