"""SLA levels: where an open certification stands against its deadline, and its alerts.

Pure: no I/O, no clock read (the instant is given). :meth:`Window.level` is the rule,
written once; the monitor's queries (:mod:`certrecon.store.sla`) select and count by the
bounds :class:`Window` gives them, so the database sorts certifications into the same
levels without a per-row function.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from enum import StrEnum
from json.encoder import encode_basestring

from certrecon.calendar import WorkingCalendar
from certrecon.domain import CST

ALERT_SCHEMA_VERSION = 1


class SlaLevel(StrEnum):
    """Where an open certification stands against its deadline."""

    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    """No result yet and the due date is today or the next working day."""
    BREACHED = "breached"
    """The deadline (24:00 CST of the due date) passed with no result."""


ALERT_LEVELS: tuple[SlaLevel, ...] = (SlaLevel.AT_RISK, SlaLevel.BREACHED)


def alert_id(certification_id: str, level: SlaLevel) -> str:
    """``<certification_id>:<level>``: an alert of a level is raised once per certification."""
    return f"{certification_id}:{level.value}"


@dataclass(frozen=True, slots=True)
class Window:
    """The instants and dates that sort open certifications into levels at ``now``."""

    now: dt.datetime
    today: dt.date
    """``now``'s date in China Standard Time."""
    next_working_day: dt.date
    """The first working day after ``today``: due by then means at risk."""

    @classmethod
    def at(cls, now: dt.datetime, calendar: WorkingCalendar) -> Window:
        if now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        today = now.astimezone(CST).date()
        return cls(now, today, calendar.next_working_day(today))

    def level(self, due_date: dt.date, deadline: dt.datetime) -> SlaLevel:
        """The level of an open certification with this due date and deadline."""
        if deadline < self.now:
            return SlaLevel.BREACHED
        # Not breached, so the due date is today or later (or yesterday at the very instant
        # of the deadline, which is not passed yet).
        if due_date <= self.next_working_day:
            return SlaLevel.AT_RISK
        return SlaLevel.ON_TRACK

    @property
    def earliest_open_due(self) -> dt.date:
        """The earliest due date whose deadline has not passed at ``now``."""
        return self.today - dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Alert:
    """One SLA alert, as stored in ``sla_alert`` and published on the alert topic."""

    certification_id: str
    level: SlaLevel
    channel: str
    due_date: dt.date
    deadline: dt.datetime
    working_days_left: int
    provisional: bool
    raised_at: dt.datetime
    key: bytes

    @property
    def alert_id(self) -> str:
        return alert_id(self.certification_id, self.level)

    def payload(self) -> bytes:
        """The contract's JSON object (UTF-8, compact); times in China Standard Time.

        Written out directly: a run may raise ten thousand alerts, and building a dict for
        the JSON encoder costs more than the message. The strings are escaped by the JSON
        encoder's own function, so the bytes are what ``json.dumps(...,
        ensure_ascii=False, separators=(",", ":"))`` gives."""
        level = self.level.value
        return (
            f'{{"schema_version":{ALERT_SCHEMA_VERSION:d},'
            f'"alert_id":{encode_basestring(self.alert_id)},'
            f'"level":{encode_basestring(level)},'
            f'"certification_id":{encode_basestring(self.certification_id)},'
            f'"channel":{encode_basestring(self.channel)},'
            f'"due_date":"{self.due_date.isoformat()}",'
            f'"deadline":"{_cst_text(self.deadline)}",'
            f'"working_days_left":{self.working_days_left:d},'
            f'"provisional":{"true" if self.provisional else "false"},'
            f'"raised_at":"{_cst_text(self.raised_at)}"}}'
        ).encode()


@functools.lru_cache(maxsize=1024)
def _cst_text(at: dt.datetime) -> str:
    # A run raises thousands of alerts with one raised_at and a few deadlines.
    return at.astimezone(CST).isoformat()
