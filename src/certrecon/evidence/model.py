"""Big-data comparison evidence: the facts other departments report about a person.

Contract (version 1.1, "Big-data comparison evidence"): a piece of evidence is a ``kind``
(death, imprisonment, release, proof of life) about one person on an ``event_date``,
reported by a ``source`` under an ``evidence_id`` that is unique per source. The same
evidence may arrive twice (a re-delivered message, a re-imported file): identical content
is ignored, different content under the same identity is refused.

Decisions (the contract leaves them open):

* The identity of a piece of evidence is ``(source, evidence_id)``; "identical" compares
  the content (kind, ID number, name, event date), not the transport (``observed_at``, the
  topic position or the file it came from), so a departmental file and the ministry topic
  may carry the same record.
* ``source`` is 1–128 characters, not blank, without control characters (the rules of a
  name).
* ``event_date`` is not before 1900-01-01 and not after the day it was received (China
  Standard Time): a future death or a future proof of life is a wrong record.

Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

from certrecon.consumers.models import NAME_MAX_LENGTH, name_problems
from certrecon.ids import id_number_problems

__all__ = [
    "ADVERSE_KINDS",
    "EARLIEST_EVENT_DATE",
    "EVIDENCE_ID_PATTERN",
    "SOURCE_MAX_LENGTH",
    "Evidence",
    "EvidenceKind",
    "event_date_problems",
    "is_evidence_id",
    "person_problems",
]

EVIDENCE_ID_PATTERN = r"^[A-Za-z0-9_:.-]{1,64}$"
SOURCE_MAX_LENGTH = 128
EARLIEST_EVENT_DATE = dt.date(1900, 1, 1)

TEXT_EVENT_DATE_EARLY = "is before 1900-01-01, not a plausible event date"
TEXT_EVENT_DATE_FUTURE = "is after the day it was received"

_EVIDENCE_ID = re.compile(EVIDENCE_ID_PATTERN)


class EvidenceKind(StrEnum):
    DEATH = "death"
    IMPRISONMENT = "imprisonment"
    RELEASE = "release"
    PROOF_OF_LIFE = "proof_of_life"


ADVERSE_KINDS = frozenset({EvidenceKind.DEATH, EvidenceKind.IMPRISONMENT})
"""Kinds that put a person before staff (逐人核实)."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """One validated piece of comparison evidence."""

    evidence_id: str
    source: str
    kind: EvidenceKind
    id_number: str
    """Normalised: upper-case check character."""
    name: str
    event_date: dt.date
    observed_at: dt.datetime | None = None
    """When the ministry observed it (topic only; a file row has none)."""

    @property
    def key(self) -> tuple[str, str]:
        """The identity: ``evidence_id`` is unique per source."""
        return (self.source, self.evidence_id)

    @property
    def content(self) -> tuple[EvidenceKind, str, str, dt.date]:
        """What must be equal for a repeat to be the same evidence."""
        return (self.kind, self.id_number, self.name, self.event_date)

    def conflicts_with(self, other: Evidence) -> bool:
        """True when ``other`` has this identity but different content (a refused repeat)."""
        return self.key == other.key and self.content != other.content


def is_evidence_id(value: object) -> bool:
    """True for a string of the ``evidence_id`` shape."""
    return isinstance(value, str) and _EVIDENCE_ID.fullmatch(value) is not None


def event_date_problems(day: dt.date, received_on: dt.date) -> list[str]:
    """The range rules of an ``event_date`` received on ``received_on`` (local date)."""
    problems = []
    if day < EARLIEST_EVENT_DATE:
        problems.append(TEXT_EVENT_DATE_EARLY)
    if day > received_on:
        problems.append(TEXT_EVENT_DATE_FUTURE)
    return problems


def person_problems(id_number: str, name: str, today: dt.date) -> list[tuple[str, str]]:
    """(field, problem) pairs of a file row's person, by the rules of a certification's subject.

    ``today`` rejects birth dates after it. Empty means valid.
    """
    problems: list[tuple[str, str]] = []
    if not id_number:
        problems.append(("id_number", "is empty"))
    else:
        problems.extend(("id_number", p) for p in id_number_problems(id_number, today=today))
    if not name:
        problems.append(("name", "is empty"))
    elif len(name) > NAME_MAX_LENGTH:
        problems.append(("name", f"is longer than {NAME_MAX_LENGTH} characters"))
    else:
        problems.extend(("name", p) for p in name_problems(name))
    return problems
