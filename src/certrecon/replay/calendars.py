"""The working-day calendar as the ledger's override and publication events made it at any
past instant. Pure."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from typing import Any

from certrecon.calendar import PublishedYear, WorkingCalendar
from certrecon.replay.model import CalendarEvent


class CalendarHistory:
    """``at(t)``: the base calendar with the events recorded at or before ``t`` applied.
    Calendars are built once per distinct prefix of events, so a window decided under
    one calendar state builds it once."""

    def __init__(
        self, base: WorkingCalendar, events: Sequence[CalendarEvent], *, layer: str
    ) -> None:
        self._base = base
        self._events = list(events)
        self._times = [e.recorded_at for e in self._events]
        self._layer = layer
        self._built: dict[int, WorkingCalendar] = {}

    def at(self, instant: dt.datetime) -> WorkingCalendar:
        return self._prefix(bisect.bisect_right(self._times, instant))

    def current(self) -> WorkingCalendar:
        return self._prefix(len(self._events))

    def _prefix(self, n: int) -> WorkingCalendar:
        found = self._built.get(n)
        if found is None:
            days: dict[dt.date, tuple[bool | None, str | None]] = {}
            years: dict[int, tuple[bool | None, str | None]] = {}
            for e in self._events[:n]:
                if e.day is not None:
                    days[e.day] = (e.value, e.source)
                elif e.year is not None:
                    years[e.year] = (e.value, e.source)
            found = self._base.with_overrides(
                ((d, bool(w), s or "") for d, (w, s) in sorted(days.items()) if w is not None),
                (PublishedYear(y, s or "") for y, (p, s) in sorted(years.items()) if p),
                layer=self._layer,
            )
            self._built[n] = found
        return found

    def state(self) -> dict[str, Any]:
        """What the manifest says about the calendar: the base data and the events."""
        return {
            "base": self._base.package_label,
            "range": [self._base.first_year, self._base.last_year],
            "events": len(self._events),
            "last_event_at": self._times[-1].isoformat() if self._times else None,
            "overrides_in_force": len(self.current().overrides),
            "published_years_in_force": [p.year for p, _ in self.current().published_years],
        }
