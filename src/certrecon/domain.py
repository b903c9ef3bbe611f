"""Domain vocabulary shared by the consumers, the reconciliation rules and the worker.

Plain frozen dataclasses and enums: no I/O, no clock reads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

CST = dt.timezone(dt.timedelta(hours=8), "CST")
"""China Standard Time. China has kept UTC+8 without daylight saving since 1991."""


class Channel(StrEnum):
    NATIONAL_PLATFORM = "national_platform"
    APP_12333 = "12333"
    ESSC = "essc"
    CONSULAR = "consular"


class IdType(StrEnum):
    RESIDENT_ID = "resident_id"
    HMT_RESIDENCE_PERMIT = "hmt_residence_permit"
    FOREIGN_PERMANENT_RESIDENT = "foreign_permanent_resident"


class Method(StrEnum):
    FACE = "face"
    FACE_VIDEO = "face_video"
    ASSISTED = "assisted"


class FaceMatch(StrEnum):
    PASS = "pass"  # noqa: S105 - a face-check verdict, not a password
    FAIL = "fail"


class Outcome(StrEnum):
    QUALIFIED = "qualified"
    NOT_IN_SCOPE = "not_in_scope"
    IDENTITY_MISMATCH = "identity_mismatch"
    FACE_NOT_VERIFIED = "face_not_verified"
    ELIGIBILITY_LOST = "eligibility_lost"
    INVALID_RECORD = "invalid_record"


class RosterStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class CycleMode(StrEnum):
    """How certification cycles are counted (``CERTRECON_CYCLE``); see certrecon.cycle."""

    CALENDAR_YEAR = "calendar_year"
    ROLLING_12_MONTHS = "rolling_12_months"


class ReviewReason(StrEnum):
    """Why a certification waits for a person (逐人核实) instead of an automatic result."""

    DECEASED = "deceased"
    IMPRISONED = "imprisoned"
    COMPARISON_EVIDENCE = "comparison_evidence"
    """Held, not queued: the person's comparison evidence is under review (person-level)."""


@dataclass(frozen=True, slots=True)
class Person:
    id_number: str
    name: str


@dataclass(frozen=True, slots=True)
class Certification:
    """A decoded, validated inbound certification (schema_version 1)."""

    certification_id: str
    channel: Channel
    id_type: IdType
    id_number: str
    """Normalised: upper-case check character."""
    name: str
    certified_at: dt.datetime
    """Timezone-aware, as parsed."""
    certified_at_raw: str
    """Exactly as received; the result echoes it."""
    method: Method
    face_match: FaceMatch
    insured_region: str
    on_behalf: Person | None = None
    residence_country: str | None = None

    @property
    def local_date(self) -> dt.date:
        """The certification date in China Standard Time, whatever offset was sent."""
        return self.certified_at.astimezone(CST).date()


@dataclass(frozen=True, slots=True)
class RosterRecord:
    """One person on the local benefit roster."""

    id_number: str
    name: str
    benefit_type: str
    status: RosterStatus
    insured_region: str
    first_paid_on: dt.date | None = None
    deceased_on: dt.date | None = None
    imprisoned_from: dt.date | None = None
    imprisoned_until: dt.date | None = None
    suspended_on: dt.date | None = None
    """When payments were suspended (the roster's optional last column), if known."""


@dataclass(frozen=True, slots=True)
class Cycle:
    """A certification cycle: the local calendar year of the certification."""

    year: int

    @property
    def payment_cutoff(self) -> dt.date:
        """People whose first monthly payment was on or before this date are covered."""
        return dt.date(self.year - 1, 12, 31)

    @classmethod
    def of(cls, certification: Certification) -> Cycle:
        return cls(certification.local_date.year)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of the rules for one certification.

    Exactly one of ``outcome`` (an automatic result) and ``review`` (staff must decide) is set.
    ``evidence`` holds the roster fields the rule used, so an auditor can re-derive it.
    """

    reason: str
    rule: str
    rule_version: str
    outcome: Outcome | None = None
    review: ReviewReason | None = None
    evidence: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if (self.outcome is None) == (self.review is None):
            raise ValueError("a decision carries either an outcome or a review reason")
