"""Assisted certification (线下协助认证): staff certify a person locally.

``certrecon certify assisted ID_NUMBER --how offline|home_visit|embassy_papers --by STAFF
[--at TIME] [--note TEXT]`` records one; no ministry result is produced. It counts for the
cycle like a ``qualified`` channel result (:class:`~certrecon.cycle.status.CertificationFact`
``assisted:<how>``, decided by ``staff:<id>``).

Decisions (the contract leaves them open):

* "Not in scope" follows the cycle mode: calendar mode, the person must be in scope for
  the cycle of the certification's local date; rolling mode, the benefit must not be
  terminated and its first payment on or before that date (a new recipient may certify
  before being due).
* ``--at`` may not lie more than 10 minutes ahead of the clock (as for certifications) nor
  before 2000; ``--by`` and ``--note`` follow the rules of a staff review decision
  (:func:`certrecon.text.check_free_text`).

Pure: no I/O, no clock reads (``now`` is a parameter).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from certrecon.consumers.models import EARLIEST_CERTIFIED_AT
from certrecon.cycle.status import CertificationFact, Period, PersonFacts, in_scope
from certrecon.domain import CST, CycleMode, RosterRecord, RosterStatus
from certrecon.errors import InputError
from certrecon.text import MAX_NOTE_LENGTH, MAX_STAFF_ID_LENGTH, check_free_text

__all__ = [
    "AssistedCertification",
    "AssistedHow",
    "assisted_problems",
]

MAX_AHEAD = dt.timedelta(minutes=10)


class AssistedHow(StrEnum):
    OFFLINE = "offline"
    HOME_VISIT = "home_visit"
    EMBASSY_PAPERS = "embassy_papers"
    """Papers from a Chinese embassy or consulate, brought by the employer."""


@dataclass(frozen=True, slots=True)
class AssistedCertification:
    id_number: str
    how: AssistedHow
    by: str
    at: dt.datetime
    note: str | None = None

    @property
    def local_date(self) -> dt.date:
        return self.at.astimezone(CST).date()

    def fact(self) -> CertificationFact:
        """How it counts for the cycle."""
        return CertificationFact(self.local_date, f"assisted:{self.how.value}", f"staff:{self.by}")


def assisted_problems(
    cert: AssistedCertification, roster: RosterRecord | None, mode: CycleMode, now: dt.datetime
) -> list[str]:
    """Why ``cert`` cannot be recorded (empty: it can). Texts never repeat the ID number."""
    problems: list[str] = []
    if not cert.by.strip():
        problems.append("--by is empty")
    problems.extend(_free_text("--by", cert.by, MAX_STAFF_ID_LENGTH, multiline=False))
    if cert.at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    if cert.at < EARLIEST_CERTIFIED_AT:
        problems.append("--at is before 2000-01-01")
    elif cert.at - now > MAX_AHEAD:
        problems.append("--at is more than 10 minutes in the future")
    if cert.note is not None:
        problems.extend(_free_text("--note", cert.note, MAX_NOTE_LENGTH, multiline=True))
    if roster is None:
        problems.append("the ID number is not on the roster")
    elif not _in_scope_on(roster, cert.local_date, mode):
        problems.append(f"the person is not in scope of the certification cycle ({_why(roster)})")
    return problems


def _free_text(label: str, value: str, max_length: int, *, multiline: bool) -> list[str]:
    try:
        check_free_text(label, value, max_length=max_length, multiline=multiline)
    except InputError as exc:
        return [str(exc)]
    return []


def _in_scope_on(roster: RosterRecord, day: dt.date, mode: CycleMode) -> bool:
    if mode is CycleMode.CALENDAR_YEAR:
        return in_scope(PersonFacts(roster), Period.of(mode, day.year, day))
    paid = roster.first_paid_on
    return roster.status is not RosterStatus.TERMINATED and paid is not None and paid <= day


def _why(roster: RosterRecord) -> str:
    if roster.status is RosterStatus.TERMINATED:
        return "the benefit is terminated"
    if roster.first_paid_on is None:
        return "no first payment on the roster"
    return f"first payment {roster.first_paid_on.isoformat()} is too recent"
