"""The working-day calendar of mainland China and certification deadlines.

Pure and deterministic: ``holidays.China``, overridden by the data files shipped in
``certrecon/calendar/data``, overridden in turn by operator overrides from the database
(:mod:`certrecon.store.calendar_overrides`). Dates are China Standard Time.
"""

from certrecon.calendar.model import (
    FIRST_YEAR,
    LAST_YEAR,
    DayOverride,
    Deadline,
    PublishedYear,
    ScheduledDay,
    YearSchedule,
    YearStatus,
)
from certrecon.calendar.sources import (
    SHIPPED_LAYER,
    ShippedData,
    build_calendar,
    default_calendar,
    package_schedule,
    shipped_data,
)
from certrecon.calendar.working import BaseSchedule, WorkingCalendar, compute_deadline

__all__ = [
    "FIRST_YEAR",
    "LAST_YEAR",
    "SHIPPED_LAYER",
    "BaseSchedule",
    "DayOverride",
    "Deadline",
    "PublishedYear",
    "ScheduledDay",
    "ShippedData",
    "WorkingCalendar",
    "YearSchedule",
    "YearStatus",
    "build_calendar",
    "compute_deadline",
    "default_calendar",
    "package_schedule",
    "shipped_data",
]
