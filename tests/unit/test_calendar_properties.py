"""Property tests of the deadline arithmetic and of overrides."""

from __future__ import annotations

import datetime as dt
import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from certrecon.calendar import WorkingCalendar, YearStatus, compute_deadline, default_calendar
from certrecon.domain import CST

OFFSETS = st.sampled_from(
    [dt.UTC, CST]
    + [
        dt.timezone(dt.timedelta(hours=h, minutes=m))
        for h, m in [(-12, 0), (-5, 0), (5, 30), (14, 0)]
    ]
)


# Local-time bounds keep every offset's CST date inside the supported range.
def instants(first_year: int = 2004, last_year: int = 2027) -> st.SearchStrategy[dt.datetime]:
    return st.datetimes(
        min_value=dt.datetime(first_year, 1, 2),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=dt.datetime(last_year, 12, 20),  # noqa: DTZ001
        timezones=OFFSETS,
    )


WORKING_DAYS = st.integers(min_value=1, max_value=30)


def cal() -> WorkingCalendar:
    return default_calendar()


@functools.cache
def published(years: frozenset[int]) -> WorkingCalendar:
    return default_calendar().with_overrides([], sorted(years))


def working_days_between(calendar: WorkingCalendar, after: dt.date, through: dt.date) -> int:
    count = 0
    day = after + dt.timedelta(days=1)
    while day <= through:
        count += calendar.is_working_day(day)
        day += dt.timedelta(days=1)
    return count


@given(instants(), WORKING_DAYS)
def test_the_due_date_is_a_working_day_exactly_n_working_days_on(
    certified_at: dt.datetime, n: int
) -> None:
    deadline = compute_deadline(certified_at, cal(), n)
    assert deadline.local_date == certified_at.astimezone(CST).date()
    assert cal().is_working_day(deadline.due_date)
    assert working_days_between(cal(), deadline.local_date, deadline.due_date) == n
    assert deadline.deadline == dt.datetime.combine(
        deadline.due_date + dt.timedelta(days=1), dt.time(0), tzinfo=CST
    )


@given(instants(), instants(), WORKING_DAYS)
def test_the_due_date_never_decreases(a: dt.datetime, b: dt.datetime, n: int) -> None:
    early, late = sorted([a, b])
    assert compute_deadline(early, cal(), n).due_date <= compute_deadline(late, cal(), n).due_date


@given(instants(), WORKING_DAYS)
def test_one_more_working_day_moves_to_the_next_working_day(
    certified_at: dt.datetime, n: int
) -> None:
    this = compute_deadline(certified_at, cal(), n)
    following = compute_deadline(certified_at, cal(), n + 1)
    assert following.due_date == cal().next_working_day(this.due_date)


@given(
    instants(2024, 2032),
    WORKING_DAYS,
    st.frozensets(st.integers(min_value=2027, max_value=2033), max_size=4),
)
@settings(max_examples=60)
def test_provisional_exactly_when_the_span_touches_a_provisional_year(
    certified_at: dt.datetime, n: int, declared: frozenset[int]
) -> None:
    calendar = published(declared)
    deadline = compute_deadline(certified_at, calendar, n)
    touched = range(deadline.local_date.year, deadline.due_date.year + 1)
    assert deadline.provisional == any(
        calendar.year_status(year) is YearStatus.PROVISIONAL for year in touched
    )
    for year in declared:
        assert calendar.year_status(year) is YearStatus.OFFICIAL


@given(
    st.dictionaries(
        st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2028, 12, 31)),
        st.booleans(),
        max_size=25,
    )
)
@settings(max_examples=40, deadline=None)
def test_an_override_changes_exactly_the_days_it_names(named: dict[dt.date, bool]) -> None:
    base = cal()
    changed = base.with_overrides([(day, working, "test") for day, working in named.items()])
    day = dt.date(2024, 1, 1)
    while day <= dt.date(2029, 12, 31):
        expected = named.get(day, base.is_working_day(day))
        assert changed.is_working_day(day) is expected, day
        day += dt.timedelta(days=1)


@given(instants(), st.dates(min_value=dt.date(2004, 2, 1), max_value=dt.date(2027, 12, 1)))
def test_working_days_left_is_zero_only_on_the_due_date_and_negative_after(
    now: dt.datetime, due: dt.date
) -> None:
    today = now.astimezone(CST).date()
    left = cal().working_days_left(now, due)
    if due == today:
        assert left == 0
    elif due > today:
        assert left == working_days_between(cal(), today, due)
    else:
        assert left < 0
