"""Cycle figures and lists: ``cycle status``, ``cycle outreach``, ``cycle suspend-candidates``.

* The summary counts in-scope people by status and by district (``insured_region``), every
  status present, zeros included; a person without an insured region counts under
  ``unknown``.
* The outreach list is the in-scope people still ``not_certified``; with
  ``expiring_within`` (rolling mode only) also every person due or not yet due whose
  ``valid_until`` falls within that many days after the as-of date and who is neither under
  review nor lost, for reminders before expiry.
* Suspend candidates are the in-scope people still ``not_certified`` on the as-of date:
  a listing only, nothing is suspended.

CSV cells that a spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``,
``@``) get a leading ``'``: staff open these files in spreadsheets.

Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from certrecon.cycle.status import (
    STATUS_ORDER,
    CycleMode,
    CycleStatus,
    Period,
    PersonFacts,
    in_scope,
    person_status,
)
from certrecon.domain import RosterStatus

__all__ = [
    "OUTREACH_HEADER",
    "UNKNOWN_DISTRICT",
    "CycleSummary",
    "OutreachRow",
    "outreach",
    "summarise",
    "suspend_candidates",
]

OUTREACH_HEADER = (
    "id_number",
    "name",
    "insured_region",
    "benefit_type",
    "status",
    "last_certified_on",
)
UNKNOWN_DISTRICT = "unknown"

_FORMULA_START = ("=", "+", "-", "@")


def _zeros() -> dict[CycleStatus, int]:
    return dict.fromkeys(STATUS_ORDER, 0)


@dataclass(slots=True)
class CycleSummary:
    year: int
    in_scope: int = 0
    by_status: dict[CycleStatus, int] = field(default_factory=_zeros)
    by_district: dict[str, dict[CycleStatus, int]] = field(default_factory=dict)

    def add(self, district: str, status: CycleStatus, count: int = 1) -> None:
        self.in_scope += count
        self.by_status[status] += count
        self.by_district.setdefault(district or UNKNOWN_DISTRICT, _zeros())[status] += count

    def to_json(self) -> dict[str, Any]:
        """The contract's ``cycle status --json`` document; districts in ascending order."""
        return {
            "year": self.year,
            "in_scope": self.in_scope,
            "by_status": {s.value: self.by_status[s] for s in STATUS_ORDER},
            "by_district": {
                d: {s.value: counts[s] for s in STATUS_ORDER}
                for d, counts in sorted(self.by_district.items())
            },
        }


@dataclass(frozen=True, slots=True)
class OutreachRow:
    id_number: str
    name: str
    insured_region: str
    benefit_type: str
    status: CycleStatus
    last_certified_on: dt.date | None
    valid_until: dt.date | None = None

    def cells(self) -> tuple[str, ...]:
        """The row as the outreach CSV carries it (:data:`OUTREACH_HEADER`)."""
        return (
            self.id_number,
            _safe_cell(self.name),
            self.insured_region,
            _safe_cell(self.benefit_type),
            self.status.value,
            "" if self.last_certified_on is None else self.last_certified_on.isoformat(),
        )


def _safe_cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def summarise(people: Iterable[PersonFacts], period: Period) -> CycleSummary:
    summary = CycleSummary(period.year)
    for facts in people:
        if in_scope(facts, period):
            summary.add(facts.roster.insured_region, person_status(facts, period).status)
    return summary


def outreach(
    people: Iterable[PersonFacts], period: Period, *, expiring_within: int | None = None
) -> Iterator[OutreachRow]:
    """The outreach list, in the order of ``people``."""
    if expiring_within is not None:
        if period.mode is not CycleMode.ROLLING_12_MONTHS:
            raise ValueError("expiring_within needs the rolling_12_months cycle mode")
        if expiring_within < 0:
            raise ValueError("expiring_within must not be negative")
    horizon = None if expiring_within is None else period.as_of + dt.timedelta(expiring_within)
    for facts in people:
        status = person_status(facts, period)
        due = in_scope(facts, period) and status.status is CycleStatus.NOT_CERTIFIED
        if due or (horizon is not None and _expiring(facts, period, horizon, status.valid_until)):
            yield _row(facts, status.status, status.last_certified_on, status.valid_until)


def _expiring(facts: PersonFacts, period: Period, horizon: dt.date, until: dt.date | None) -> bool:
    roster = facts.roster
    paid = roster.first_paid_on
    return (
        roster.status is not RosterStatus.TERMINATED
        and paid is not None
        and paid <= period.as_of
        and until is not None
        and period.as_of <= until <= horizon
        and facts.open_reviews == 0
        and not facts.evidence.under_review
        and facts.evidence.lost_on(period.as_of) is None
    )


def suspend_candidates(people: Iterable[PersonFacts], period: Period) -> Iterator[OutreachRow]:
    """In-scope people still ``not_certified`` on ``period.as_of``."""
    for facts in people:
        if in_scope(facts, period):
            status = person_status(facts, period)
            if status.status is CycleStatus.NOT_CERTIFIED:
                yield _row(facts, status.status, status.last_certified_on, status.valid_until)


def _row(
    facts: PersonFacts, status: CycleStatus, last: dt.date | None, until: dt.date | None
) -> OutreachRow:
    r = facts.roster
    return OutreachRow(r.id_number, r.name, r.insured_region, r.benefit_type, status, last, until)
