"""Value types of the working-day calendar: year status, overrides, deadlines, schedules."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

FIRST_YEAR = 2004
"""The first supported year: the earliest schedule cross-checked against an independent
implementation (the test suite compares every day from here on)."""

LAST_YEAR = 2099
"""The last supported year. Years after the last published schedule are answered as
provisional estimates; the bound only keeps the precomputed tables finite."""


class YearStatus(StrEnum):
    """Whether a year's holiday schedule is the State Council's or an estimate."""

    OFFICIAL = "official"
    """The State Council schedule is known: statutory holidays, days off and make-up days."""
    PROVISIONAL = "provisional"
    """Estimated holidays and no make-up working days; deadlines must be recomputed once
    the schedule is published."""


class DayOverride(NamedTuple):
    """One official schedule fact that beats the holidays package."""

    day: dt.date
    working: bool
    source: str
    """Where the fact comes from, normally a State Council notice number such as
    国办发明电〔2023〕7号."""


class PublishedYear(NamedTuple):
    """A declaration that a year's official schedule is published (and fully applied)."""

    year: int
    source: str


class ScheduledDay(NamedTuple):
    """A day worth listing in a year's schedule: a holiday or a make-up working day."""

    day: dt.date
    name: str
    source: str
    """Which layer decided the day: the holidays package, the shipped data or the database."""


@dataclass(frozen=True, slots=True)
class YearSchedule:
    """One year as an operator reads it: status, days off and make-up working days."""

    year: int
    status: YearStatus
    status_source: str
    """Why the year has its status (the package release, or the declaring override)."""
    holidays: tuple[ScheduledDay, ...]
    """Non-working days that are not plain weekends (plus named holidays on weekends)."""
    makeup_working_days: tuple[ScheduledDay, ...]
    """Saturdays and Sundays that are working days (调休上班)."""
    overrides: tuple[tuple[DayOverride, str], ...]
    """Overrides in force in this year, each with the layer it comes from."""
    working_day_count: int


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a certification must be answered.

    ``deadline`` is 24:00 China Standard Time on ``due_date``, written as 00:00 +08:00 of the
    following day, so "answered before the deadline" is a plain ``<`` comparison.
    """

    local_date: dt.date
    """The certification date in China Standard Time; it is not counted."""
    due_date: dt.date
    """The ``working_days``-th working day after ``local_date``."""
    deadline: dt.datetime
    provisional: bool
    """Whether any year from ``local_date`` through ``due_date`` has a provisional schedule;
    such deadlines must be shown as provisional and recomputed when the schedule arrives."""
    working_days: int
