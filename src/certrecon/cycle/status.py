"""The certification cycle: who is in scope, and each person's status (contract 1.1, "The
certification cycle").

Two modes (``CERTRECON_CYCLE``):

``calendar_year`` (default)
    Cycle Y covers the roster's people whose benefit is not terminated and whose first
    monthly payment was on or before 31 December of Y−1. Certifications and proof of life
    count for Y when dated in Y (and on or before the as-of date when one is given).
``rolling_12_months``
    A certification or proof of life is valid for 12 months from its date: every
    non-terminated person with a first payment has a ``valid_until`` (their last
    certification or proof of life + 12 months; first payment + 12 months if never
    certified). "Cycle Y" means "as of 31 December of Y" unless an as-of date is given.

Status of an in-scope person, first match wins:

1. ``eligibility_lost``: staff confirmed death or imprisonment covering the as-of date
   (calendar mode: the as-of date is 31 December of Y, or the one given). Final for the
   period, so it beats a certification made before the loss.
2. ``pending_review``: a review item is open, a certification's (local death or prison
   record) or a person-level evidence item. Something doubtful must be checked before the
   person counts as certified.
3. ``certified``: calendar mode: a ``qualified`` result or an assisted certification dated
   in Y; rolling mode: one whose 12 months still cover the as-of date.
4. ``confirmed_by_evidence``: the same with proof-of-life evidence ("unless they already
   certified": a certification wins over proof of life).
5. ``not_certified``: none of the above.

Decisions (the contract leaves them open):

* "+ 12 months" is the same day a year later (29 February → 28 February); a validity
  covers its ``valid_until`` day itself.
* Rolling mode: a person never certified whose first payment + 12 months has not yet
  passed is not due yet, so not in scope (as calendar mode leaves out people whose
  payments began during the cycle); reminders before expiry still reach them (see
  :func:`certrecon.cycle.lists.outreach`). A person without a first payment has no
  ``valid_until`` and is never in scope.
* ``last_certified_on`` is the last certification (not proof of life) on or before the
  as-of date, in any year.

Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from certrecon.domain import CycleMode, RosterRecord, RosterStatus
from certrecon.reconcile.evidence import NO_EVIDENCE, PersonEvidence

__all__ = [
    "STATUS_ORDER",
    "CertificationFact",
    "CycleMode",
    "CycleStatus",
    "Period",
    "PersonFacts",
    "PersonStatus",
    "add_months",
    "in_scope",
    "person_status",
    "valid_until",
]


class CycleStatus(StrEnum):
    CERTIFIED = "certified"
    CONFIRMED_BY_EVIDENCE = "confirmed_by_evidence"
    PENDING_REVIEW = "pending_review"
    ELIGIBILITY_LOST = "eligibility_lost"
    NOT_CERTIFIED = "not_certified"


STATUS_ORDER: tuple[CycleStatus, ...] = tuple(CycleStatus)
"""The contract's order, for tables and JSON."""


@dataclass(frozen=True, slots=True)
class Period:
    """What a cycle question is about: the mode, the cycle year and the as-of date."""

    mode: CycleMode
    year: int
    as_of: dt.date

    @classmethod
    def of(cls, mode: CycleMode, year: int, as_of: dt.date | None = None) -> Period:
        """Cycle ``year`` as of ``as_of`` (default: 31 December of ``year``)."""
        return cls(mode, year, dt.date(year, 12, 31) if as_of is None else as_of)

    @property
    def payment_cutoff(self) -> dt.date:
        """Calendar mode: people whose first payment was on or before this are covered."""
        return dt.date(self.year - 1, 12, 31)


@dataclass(frozen=True, slots=True)
class CertificationFact:
    """A certification that counts for the cycle: the current result of a ministry-channel
    certification is ``qualified``, or staff recorded an assisted certification."""

    on: dt.date
    """Local date (China Standard Time)."""
    how: str
    """The channel (``12333``, …) or ``assisted:<how>`` (``assisted:home_visit``, …)."""
    decided_by: str = "rules"
    """``rules`` or ``staff:<id>``: who made it count."""


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """Everything the ledger says about one roster person that the cycle needs."""

    roster: RosterRecord
    certifications: tuple[CertificationFact, ...] = ()
    evidence: PersonEvidence = NO_EVIDENCE
    open_reviews: int = 0
    """Open certification-level review items."""


@dataclass(frozen=True, slots=True)
class PersonStatus:
    status: CycleStatus
    basis: CertificationFact | dt.date | None
    """What certified or confirmed the person (a certification, or a proof-of-life date)."""
    valid_until: dt.date | None
    """Rolling mode only; None in calendar mode."""
    last_certified_on: dt.date | None


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus whole months, on the same day of the month or the month's last day."""
    year, month0 = divmod(day.year * 12 + day.month - 1 + months, 12)
    month = month0 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def valid_until(facts: PersonFacts, as_of: dt.date) -> dt.date | None:
    """Rolling mode: the last day the person's latest certification or proof of life on or
    before ``as_of`` keeps them valid (first payment + 12 months if there is none)."""
    latest = _latest_basis_date(facts, as_of)
    if latest is not None:
        return add_months(latest, 12)
    paid = facts.roster.first_paid_on
    return None if paid is None else add_months(paid, 12)


def in_scope(facts: PersonFacts, period: Period) -> bool:
    """Whether the person is covered by the cycle question ``period``."""
    roster = facts.roster
    if roster.status is RosterStatus.TERMINATED or roster.first_paid_on is None:
        return False
    if period.mode is CycleMode.CALENDAR_YEAR:
        return roster.first_paid_on <= period.payment_cutoff
    if roster.first_paid_on > period.as_of:
        return False
    if _latest_basis_date(facts, period.as_of) is not None:
        return True
    return add_months(roster.first_paid_on, 12) < period.as_of


def person_status(facts: PersonFacts, period: Period) -> PersonStatus:
    """The status of one person for ``period`` (meaningful for in-scope people)."""
    as_of = period.as_of
    last = max((c.on for c in facts.certifications if c.on <= as_of), default=None)
    rolling = period.mode is CycleMode.ROLLING_12_MONTHS
    until = valid_until(facts, as_of) if rolling else None
    if facts.evidence.lost_on(as_of) is not None:
        return PersonStatus(CycleStatus.ELIGIBILITY_LOST, None, until, last)
    if facts.open_reviews > 0 or facts.evidence.under_review:
        return PersonStatus(CycleStatus.PENDING_REVIEW, None, until, last)
    if rolling:

        def counts(day: dt.date) -> bool:
            return day <= as_of <= add_months(day, 12)
    else:

        def counts(day: dt.date) -> bool:
            return day.year == period.year and day <= as_of

    certified = [c for c in facts.certifications if counts(c.on)]
    if certified:
        # The first that counts: the one that made the person certified.
        basis = min(certified, key=lambda c: (c.on, c.how, c.decided_by))
        return PersonStatus(CycleStatus.CERTIFIED, basis, until, last)
    proof = [day for day in facts.evidence.proof_of_life if counts(day)]
    if proof:
        return PersonStatus(CycleStatus.CONFIRMED_BY_EVIDENCE, min(proof), until, last)
    return PersonStatus(CycleStatus.NOT_CERTIFIED, None, until, last)


def _latest_basis_date(facts: PersonFacts, as_of: dt.date) -> dt.date | None:
    dates = [c.on for c in facts.certifications if c.on <= as_of]
    dates.extend(day for day in facts.evidence.proof_of_life if day <= as_of)
    return max(dates, default=None)
