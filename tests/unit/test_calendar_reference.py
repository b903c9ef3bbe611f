"""Every day from 2004 to 2026 against chinesecalendar, an independent implementation."""

from __future__ import annotations

import datetime as dt

import chinese_calendar

from certrecon.calendar import DayOverride, default_calendar, shipped_data

FIRST = dt.date(2004, 1, 1)
LAST = dt.date(2026, 12, 31)

# Days on which chinesecalendar contradicts the State Council notice, with the official
# answer and the notice. Each is pinned in the shipped data file with the same citation.
CHINESECALENDAR_ERRATA: dict[dt.date, tuple[bool, str]] = {
    # 国务院办公厅关于2006年部分节假日安排的通知: "12月31日（星期六）上班"; chinesecalendar
    # has it as an ordinary Saturday off (reported upstream as chinese-calendar issue #125).
    dt.date(2005, 12, 31): (True, "国办发明电〔2005〕35号"),
}


def _days() -> list[dt.date]:
    return [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]


def test_every_day_matches_chinesecalendar_or_a_documented_erratum() -> None:
    cal = default_calendar()
    mismatches = []
    for day in _days():
        expected = (
            CHINESECALENDAR_ERRATA[day][0]
            if day in CHINESECALENDAR_ERRATA
            else chinese_calendar.is_workday(day)
        )
        if cal.is_working_day(day) != expected:
            mismatches.append((day.isoformat(), cal.is_working_day(day), expected))
    assert mismatches == []


def test_each_erratum_is_a_real_disagreement_pinned_with_its_notice() -> None:
    pinned = {fact.day: fact for fact in shipped_data().days}
    for day, (working, notice) in CHINESECALENDAR_ERRATA.items():
        # When chinesecalendar is corrected the erratum is obsolete and must go.
        assert chinese_calendar.is_workday(day) is not working, day
        assert pinned[day] == DayOverride(day, working, notice)


def test_the_comparison_covers_make_up_working_days_and_weekday_holidays() -> None:
    # Guards against a vacuous comparison: the span has many of both kinds of exception.
    days = _days()
    makeup = [d for d in days if d.weekday() >= 5 and chinese_calendar.is_workday(d)]
    weekday_off = [d for d in days if d.weekday() < 5 and not chinese_calendar.is_workday(d)]
    assert len(makeup) > 100
    assert len(weekday_off) > 200
