"""The working-day calendar and deadline arithmetic, against hand-checked State Council facts."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
from pathlib import Path

import pytest

import certrecon
from certrecon.calendar import (
    FIRST_YEAR,
    LAST_YEAR,
    DayOverride,
    PublishedYear,
    ShippedData,
    WorkingCalendar,
    YearStatus,
    build_calendar,
    compute_deadline,
    default_calendar,
    package_schedule,
    shipped_data,
)
from certrecon.calendar.sources import merge_data, parse_data_document
from certrecon.domain import CST
from certrecon.errors import CalendarError, InputError

UTC = dt.UTC
EST = dt.timezone(dt.timedelta(hours=-5))
NOTICE = re.compile(r"^国办发(明电)?〔\d{4}〕\d+号$")


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return default_calendar()


def cst(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=CST)


# Each case is worked out by hand from the notice named in the comment.
KNOWN_DEADLINES = [
    # 国办发明电〔2022〕16号: 9-29..10-6 off, Sat 10-7 and Sun 10-8 worked.
    (cst(2023, 9, 27, 10), dt.date(2023, 9, 27), dt.date(2023, 10, 10)),
    # 国办发明电〔2023〕7号: 2-10..2-17 off, Sun 2-4 and Sun 2-18 worked; 2-9 (除夕) worked.
    (cst(2024, 2, 8, 9), dt.date(2024, 2, 8), dt.date(2024, 2, 21)),
    # 国办发明电〔2024〕12号: 10-1..10-8 off, Sun 9-28 and Sat 10-11 worked.
    (cst(2025, 9, 26, 15), dt.date(2025, 9, 26), dt.date(2025, 10, 10)),
    # 国办发明电〔2005〕35号: 1-1..1-3 off, Sat 2005-12-31 worked.
    (cst(2005, 12, 29, 11), dt.date(2005, 12, 29), dt.date(2006, 1, 6)),
    # An ordinary week: Monday certification, due the next Monday.
    (cst(2023, 11, 6, 8), dt.date(2023, 11, 6), dt.date(2023, 11, 13)),
    # A Saturday certification counts from Monday.
    (cst(2023, 11, 11, 8), dt.date(2023, 11, 11), dt.date(2023, 11, 17)),
]


@pytest.mark.parametrize(("certified_at", "local_date", "due_date"), KNOWN_DEADLINES)
def test_known_deadlines(
    cal: WorkingCalendar, certified_at: dt.datetime, local_date: dt.date, due_date: dt.date
) -> None:
    deadline = compute_deadline(certified_at, cal)
    assert deadline.local_date == local_date
    assert deadline.due_date == due_date
    assert deadline.working_days == 5
    assert deadline.provisional is False
    assert deadline.deadline == dt.datetime.combine(
        due_date + dt.timedelta(days=1), dt.time(0), tzinfo=CST
    )


def test_the_deadline_is_midnight_at_the_end_of_the_due_date_in_cst(cal: WorkingCalendar) -> None:
    deadline = compute_deadline(cst(2023, 9, 27, 10), cal)
    assert deadline.deadline.utcoffset() == dt.timedelta(hours=8)
    assert deadline.deadline == dt.datetime(2023, 10, 10, 16, 0, tzinfo=UTC)
    assert deadline.deadline - dt.timedelta(microseconds=1) < deadline.deadline
    assert (deadline.deadline - dt.timedelta(microseconds=1)).astimezone(CST).date() == (
        deadline.due_date
    )


def test_a_late_evening_utc_timestamp_falls_on_the_next_local_day(cal: WorkingCalendar) -> None:
    # 15:59:59 UTC is 23:59:59 CST on the same day; 16:00 UTC is already the next day.
    before = compute_deadline(dt.datetime(2023, 9, 27, 15, 59, 59, tzinfo=UTC), cal)
    after = compute_deadline(dt.datetime(2023, 9, 27, 20, 0, tzinfo=UTC), cal)
    assert before.local_date == dt.date(2023, 9, 27)
    assert before.due_date == dt.date(2023, 10, 10)
    assert after.local_date == dt.date(2023, 9, 28)
    assert after.due_date == dt.date(2023, 10, 11)


def test_any_offset_is_converted_to_cst(cal: WorkingCalendar) -> None:
    # 22:00 in New York on 9-26 is 11:00 CST on 9-27.
    deadline = compute_deadline(dt.datetime(2023, 9, 26, 22, 0, tzinfo=EST), cal)
    assert deadline.local_date == dt.date(2023, 9, 27)
    assert deadline.due_date == dt.date(2023, 10, 10)


def test_working_days_other_than_five(cal: WorkingCalendar) -> None:
    assert compute_deadline(cst(2023, 9, 27, 10), cal, 1).due_date == dt.date(2023, 9, 28)
    assert compute_deadline(cst(2023, 9, 27, 10), cal, 2).due_date == dt.date(2023, 10, 7)
    assert compute_deadline(cst(2023, 9, 27, 10), cal, 6).due_date == dt.date(2023, 10, 11)


def test_a_naive_timestamp_is_an_input_error(cal: WorkingCalendar) -> None:
    with pytest.raises(InputError, match="no UTC offset"):
        compute_deadline(dt.datetime(2023, 9, 27, 10), cal)  # noqa: DTZ001


@pytest.mark.parametrize("working_days", [0, -1, True])
def test_fewer_than_one_working_day_is_an_input_error(
    cal: WorkingCalendar, working_days: int
) -> None:
    with pytest.raises(InputError, match="at least 1"):
        compute_deadline(cst(2023, 9, 27, 10), cal, working_days)


def test_a_date_instead_of_a_datetime_is_a_type_error(cal: WorkingCalendar) -> None:
    with pytest.raises(TypeError):
        compute_deadline(dt.date(2023, 9, 27), cal)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cal.is_working_day(cst(2023, 9, 27, 10))


def test_years_outside_the_supported_range_are_calendar_errors(cal: WorkingCalendar) -> None:
    assert (cal.first_year, cal.last_year) == (FIRST_YEAR, LAST_YEAR)
    with pytest.raises(CalendarError, match="outside the supported calendar range"):
        cal.is_working_day(dt.date(FIRST_YEAR - 1, 12, 31))
    with pytest.raises(CalendarError, match="outside the supported calendar range"):
        cal.is_working_day(dt.date(LAST_YEAR + 1, 1, 1))
    with pytest.raises(CalendarError, match=f"year {LAST_YEAR + 1} is outside"):
        cal.year_status(LAST_YEAR + 1)
    with pytest.raises(CalendarError, match="outside the supported calendar range"):
        compute_deadline(cst(FIRST_YEAR - 1, 12, 31, 12), cal)
    with pytest.raises(CalendarError, match="beyond the supported calendar range"):
        compute_deadline(cst(LAST_YEAR, 12, 30, 12), cal)
    # The first moment of the range counts, the one before does not.
    assert compute_deadline(cst(FIRST_YEAR, 1, 1, 0), cal).local_date == dt.date(FIRST_YEAR, 1, 1)
    with pytest.raises(CalendarError):
        compute_deadline(dt.datetime(FIRST_YEAR - 1, 12, 31, 15, 59, tzinfo=UTC), cal)


def test_year_status(cal: WorkingCalendar) -> None:
    assert cal.year_status(2004) is YearStatus.OFFICIAL
    assert cal.year_status(2026) is YearStatus.OFFICIAL
    # holidays 0.109 does not carry the 2027 schedule: it estimates and says nothing.
    assert cal.year_status(2027) is YearStatus.PROVISIONAL
    assert cal.year_status(LAST_YEAR) is YearStatus.PROVISIONAL
    assert YearStatus.PROVISIONAL.value == "provisional"
    assert f"{YearStatus.OFFICIAL}" == "official"


def test_a_span_into_a_provisional_year_is_provisional(cal: WorkingCalendar) -> None:
    inside = compute_deadline(cst(2026, 12, 24, 10), cal)
    assert (inside.due_date, inside.provisional) == (dt.date(2026, 12, 31), False)
    across = compute_deadline(cst(2026, 12, 25, 10), cal)
    assert across.due_date.year == 2027
    assert across.provisional is True
    assert compute_deadline(cst(2027, 6, 1, 10), cal).provisional is True


def test_next_working_day(cal: WorkingCalendar) -> None:
    assert cal.next_working_day(dt.date(2023, 9, 28)) == dt.date(2023, 10, 7)
    assert cal.next_working_day(dt.date(2023, 11, 10)) == dt.date(2023, 11, 13)
    assert cal.next_working_day(dt.date(2023, 11, 13)) == dt.date(2023, 11, 14)
    with pytest.raises(CalendarError, match="no working day after"):
        cal.next_working_day(dt.date(LAST_YEAR, 12, 31))


def test_working_days_left_before_on_and_after_the_due_date(cal: WorkingCalendar) -> None:
    due = dt.date(2023, 10, 10)
    assert cal.working_days_left(cst(2023, 10, 10, 23, 59), due) == 0
    assert cal.working_days_left(cst(2023, 10, 9, 9), due) == 1
    # From a holiday: 10-7, 10-8, 10-9 and 10-10 are left.
    assert cal.working_days_left(cst(2023, 10, 1, 9), due) == 4
    # 16:30 UTC on 10-9 is already 10-10 in China.
    assert cal.working_days_left(dt.datetime(2023, 10, 9, 16, 30, tzinfo=UTC), due) == 0
    assert cal.working_days_left(cst(2023, 10, 11, 0, 0), due) == -1
    friday = dt.date(2023, 11, 10)
    assert cal.working_days_left(cst(2023, 11, 11, 9), friday) == -1  # Saturday
    assert cal.working_days_left(cst(2023, 11, 12, 9), friday) == -1  # Sunday
    assert cal.working_days_left(cst(2023, 11, 13, 9), friday) == -1  # Monday
    assert cal.working_days_left(cst(2023, 11, 14, 9), friday) == -2  # Tuesday
    # Seen from the weekend before, Monday is one working day away.
    assert cal.working_days_left(cst(2023, 11, 11, 9), dt.date(2023, 11, 13)) == 1
    with pytest.raises(InputError):
        cal.working_days_left(dt.datetime(2023, 11, 11, 9), friday)  # noqa: DTZ001


def test_count_working_days(cal: WorkingCalendar) -> None:
    assert cal.count_working_days(dt.date(2023, 9, 27), dt.date(2023, 10, 10)) == 5
    assert cal.count_working_days(dt.date(2023, 10, 10), dt.date(2023, 9, 27)) == 0
    assert cal.count_working_days(dt.date(2023, 10, 10), dt.date(2023, 10, 10)) == 0


def test_year_schedule_of_an_official_year(cal: WorkingCalendar) -> None:
    schedule = cal.year_schedule(2023)
    assert schedule.status is YearStatus.OFFICIAL
    makeup = {entry.day for entry in schedule.makeup_working_days}
    assert {dt.date(2023, 10, 7), dt.date(2023, 10, 8), dt.date(2023, 1, 28)} <= makeup
    assert all(day.weekday() >= 5 for day in makeup)
    days_off = {entry.day for entry in schedule.holidays}
    assert {dt.date(2023, 9, 29), dt.date(2023, 10, 6), dt.date(2023, 1, 27)} <= days_off
    assert not any(cal.is_working_day(day) for day in days_off)
    assert schedule.working_day_count == sum(
        cal.is_working_day(dt.date(2023, 1, 1) + dt.timedelta(days=i)) for i in range(365)
    )


def test_year_schedule_of_a_provisional_year_has_no_makeup_days(cal: WorkingCalendar) -> None:
    schedule = cal.year_schedule(2027)
    assert schedule.status is YearStatus.PROVISIONAL
    assert "estimated" in schedule.status_source
    assert schedule.makeup_working_days == ()
    assert dt.date(2027, 1, 1) in {entry.day for entry in schedule.holidays}


def test_the_default_calendar_is_built_once(cal: WorkingCalendar) -> None:
    assert default_calendar() is cal


def test_the_package_is_not_the_standard_library_calendar() -> None:
    import calendar

    assert calendar.isleap(2024)
    spec = importlib.util.find_spec("calendar")
    assert spec is not None
    assert spec.origin is not None
    assert Path(certrecon.__file__).parent not in Path(spec.origin).parents


# -- layers: package < shipped data < database ------------------------------------------


@pytest.fixture(scope="module")
def base() -> object:
    return package_schedule()


def test_shipped_data_beats_the_package_and_the_database_beats_both(base: object) -> None:
    from certrecon.calendar import BaseSchedule

    assert isinstance(base, BaseSchedule)
    plain = WorkingCalendar(base)
    day = dt.date(2023, 10, 9)  # a Monday the package calls a working day
    assert plain.is_working_day(day)
    shipped = build_calendar(
        base,
        ShippedData(
            (DayOverride(day, False, "国办发明电〔2099〕1号"),),
            (PublishedYear(2027, "国办发明电〔2099〕2号"),),
        ),
    )
    assert not shipped.is_working_day(day)
    assert shipped.year_status(2027) is YearStatus.OFFICIAL
    assert plain.year_status(2027) is YearStatus.PROVISIONAL
    database = shipped.with_overrides([(day, True, "operator")], [2028])
    assert database.is_working_day(day)
    assert database.year_status(2028) is YearStatus.OFFICIAL
    assert shipped.is_working_day(day) is False  # calendars are immutable
    ((override, layer),) = [entry for entry in database.overrides if entry[0].day == day]
    assert (override.working, override.source, layer) == (True, "operator", "database")


def test_an_override_moves_deadlines(cal: WorkingCalendar) -> None:
    # Declaring the Monday before the due date a day off pushes the deadline one day.
    moved = cal.with_overrides([(dt.date(2023, 10, 9), False, "test notice")])
    assert compute_deadline(cst(2023, 9, 27, 10), moved).due_date == dt.date(2023, 10, 11)
    assert compute_deadline(cst(2023, 9, 27, 10), cal).due_date == dt.date(2023, 10, 10)


def test_bad_overrides_are_refused(cal: WorkingCalendar) -> None:
    with pytest.raises(CalendarError, match="no source"):
        cal.with_overrides([(dt.date(2023, 10, 9), False, " ")])
    with pytest.raises(CalendarError, match="outside"):
        cal.with_overrides([(dt.date(2003, 10, 9), False, "x")])
    with pytest.raises(CalendarError, match="conflicting"):
        cal.with_overrides([(dt.date(2023, 10, 9), False, "x"), (dt.date(2023, 10, 9), True, "x")])
    with pytest.raises(CalendarError, match="outside"):
        cal.with_overrides([], [LAST_YEAR + 1])
    with pytest.raises(TypeError):
        cal.with_overrides([(dt.date(2023, 10, 9), 1, "x")])  # type: ignore[list-item]


# -- the shipped data file ---------------------------------------------------------------


def test_every_shipped_fact_cites_a_state_council_notice() -> None:
    data = shipped_data()
    assert data.days, "the shipped data file is empty"
    for source in [d.source for d in data.days] + [y.source for y in data.published_years]:
        assert NOTICE.match(source), source
    for day in data.days:
        assert FIRST_YEAR <= day.day.year <= LAST_YEAR


def test_the_shipped_data_is_in_force(cal: WorkingCalendar) -> None:
    for fact in shipped_data().days:
        assert cal.is_working_day(fact.day) is fact.working
        assert (fact, "shipped data") in cal.overrides


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not valid JSON"),
        ("[]", "must be an object"),
        ('{"days": [{"date": "2023-1-01", "working": true, "source": "x"}]}', "YYYY-MM-DD"),
        ('{"days": [{"date": "2023-02-30", "working": true, "source": "x"}]}', "2023-02-30"),
        ('{"days": [{"date": "2023-02-03", "working": "yes", "source": "x"}]}', "true or false"),
        ('{"days": [{"date": "2023-02-03", "working": true}]}', "source"),
        ('{"days": [{"date": "2023-02-03", "working": true, "source": "x", "y": 1}]}', "keys"),
        ('{"published_years": [{"year": "2027", "source": "x"}]}', "whole number"),
        ('{"holidays": []}', "keys among"),
    ],
)
def test_malformed_data_files_are_refused(text: str, problem: str) -> None:
    with pytest.raises(CalendarError, match=re.escape(problem)):
        parse_data_document(text, "broken.json")


def test_data_files_that_contradict_each_other_are_refused() -> None:
    one = parse_data_document(
        '{"days": [{"date": "2030-02-02", "working": true, "source": "a"}]}', "a.json"
    )
    other = parse_data_document(
        '{"days": [{"date": "2030-02-02", "working": false, "source": "b"}]}', "b.json"
    )
    assert merge_data([one, one]) == one
    with pytest.raises(CalendarError, match="disagree about 2030-02-02"):
        merge_data([one, other])
