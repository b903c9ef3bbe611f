"""What a person's comparison evidence and the staff verdicts on it amount to.

Contract (version 1.1, "Big-data comparison evidence", "Effects"):

* ``death``, or ``imprisonment`` without a later ``release``, is an **adverse finding**
  that opens a person-level review item (逐人核实). While a finding is open, the person's
  certifications wait (the rules hold them, like the version-1 death/prison rule).
* Staff decide an item: ``confirmed`` (eligibility lost from an effective date) or
  ``rejected`` (the evidence is wrong). A verdict covers the findings open when it was
  given; evidence arriving later opens a new item.
* A rejected finding is left out: the waiting certifications go to the rules without it.
* ``proof_of_life`` confirms a person for the cycle of its date (see :mod:`certrecon.cycle`).

Decisions (the contract leaves them open):

* A ``release`` ends an imprisonment when its event date is on or after the imprisonment's.
  An imprisonment ended that way before staff decided never holds anything (the state is
  ``ended``); one confirmed and later ended by a release is a loss of eligibility from the
  effective date until the release date.
* A confirmed death is a loss from its effective date on, for good.

Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from certrecon.evidence.model import ADVERSE_KINDS, Evidence, EvidenceKind

__all__ = [
    "AdverseFinding",
    "FindingState",
    "LostPeriod",
    "PersonEvidence",
    "StaffVerdict",
    "Verdict",
    "person_evidence",
    "recorded_evidence",
]

EvidenceKey = tuple[str, str]


class Verdict(StrEnum):
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


class FindingState(StrEnum):
    OPEN = "open"
    """No verdict yet: the person is under review and certifications wait."""
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    ENDED = "ended"
    """An imprisonment a release ended before any verdict: it holds nothing."""


@dataclass(frozen=True, slots=True)
class StaffVerdict:
    """A staff decision on a person-level evidence item."""

    evidence: frozenset[EvidenceKey]
    """The ``(source, evidence_id)`` of every finding the item carried."""
    verdict: Verdict
    decided_by: str
    """The staff id (``--by``)."""
    decided_on: dt.date
    """Local date of the decision."""
    effective_date: dt.date | None = None
    """Confirmed: the date eligibility was lost."""

    def __post_init__(self) -> None:
        if (self.verdict is Verdict.CONFIRMED) != (self.effective_date is not None):
            raise ValueError("a confirmation carries an effective date, a rejection none")
        if not self.evidence:
            raise ValueError("a verdict covers at least one piece of evidence")


@dataclass(frozen=True, slots=True)
class LostPeriod:
    """Eligibility lost from ``start`` (inclusive) until ``end`` (exclusive; None: for good)."""

    start: dt.date
    end: dt.date | None

    def contains(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or day < self.end)


@dataclass(frozen=True, slots=True)
class AdverseFinding:
    """One death or imprisonment record and where it stands."""

    evidence: Evidence
    state: FindingState
    verdict: StaffVerdict | None = None
    release: Evidence | None = None
    """The release that ended an imprisonment, if any."""

    @property
    def lost(self) -> LostPeriod | None:
        """The period of lost eligibility a confirmation established, else None."""
        if self.state is not FindingState.CONFIRMED or self.verdict is None:
            return None
        start = self.verdict.effective_date
        assert start is not None  # a confirmation always has one (StaffVerdict checks)
        end = None if self.release is None else self.release.event_date
        return LostPeriod(start, end)

    def record(self) -> dict[str, Any]:
        """What a decision records about this finding (no ID number, no name)."""
        e = self.evidence
        out: dict[str, Any] = {
            "source": e.source,
            "evidence_id": e.evidence_id,
            "kind": e.kind.value,
            "event_date": e.event_date.isoformat(),
            "state": self.state.value,
        }
        if self.verdict is not None:
            out["decided_by"] = f"staff:{self.verdict.decided_by}"
            out["decided_on"] = self.verdict.decided_on.isoformat()
            if self.verdict.effective_date is not None:
                out["effective_date"] = self.verdict.effective_date.isoformat()
        if self.release is not None:
            out["released_on"] = self.release.event_date.isoformat()
            out["release_evidence"] = [self.release.source, self.release.evidence_id]
        return out


@dataclass(frozen=True, slots=True)
class PersonEvidence:
    """All comparison evidence of one person, judged."""

    findings: tuple[AdverseFinding, ...] = ()
    proof_of_life: tuple[dt.date, ...] = ()
    """Event dates of proof-of-life evidence, ascending."""

    @property
    def open_findings(self) -> tuple[AdverseFinding, ...]:
        return tuple(f for f in self.findings if f.state is FindingState.OPEN)

    @property
    def under_review(self) -> bool:
        """True while a person-level review item is open."""
        return any(f.state is FindingState.OPEN for f in self.findings)

    @property
    def lost_periods(self) -> tuple[LostPeriod, ...]:
        return tuple(p for p in (f.lost for f in self.findings) if p is not None)

    def lost_on(self, day: dt.date) -> LostPeriod | None:
        """The confirmed loss of eligibility covering ``day``, if any (the earliest start)."""
        covering = [p for p in self.lost_periods if p.contains(day)]
        return min(covering, key=lambda p: p.start) if covering else None

    def records(self) -> list[dict[str, Any]]:
        """The findings as a decision records them, in a stable order."""
        return [f.record() for f in self.findings]


NO_EVIDENCE = PersonEvidence()


def recorded_evidence(records: Sequence[Any], id_number: str) -> PersonEvidence:
    """The findings a decision recorded (:meth:`PersonEvidence.records`), as the rules saw
    them: what re-deciding a recorded certification starts from.

    A record keeps no name, so the findings carry none; nothing the rules read depends on it.
    Refuses a record that is not in that shape with ``ValueError``.
    """
    findings: list[AdverseFinding] = []
    for r in records:
        try:
            evidence = Evidence(
                r["evidence_id"],
                r["source"],
                EvidenceKind(r["kind"]),
                id_number,
                "",
                dt.date.fromisoformat(r["event_date"]),
            )
            state = FindingState(r["state"])
            verdict = None
            if "decided_by" in r:
                verdict = StaffVerdict(
                    frozenset({evidence.key}),
                    Verdict.CONFIRMED if state is FindingState.CONFIRMED else Verdict.REJECTED,
                    r["decided_by"].removeprefix("staff:"),
                    dt.date.fromisoformat(r["decided_on"]),
                    dt.date.fromisoformat(r["effective_date"]) if "effective_date" in r else None,
                )
            release = None
            if "released_on" in r:
                source, evidence_id = r["release_evidence"]
                release = Evidence(
                    evidence_id,
                    source,
                    EvidenceKind.RELEASE,
                    id_number,
                    "",
                    dt.date.fromisoformat(r["released_on"]),
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a recorded finding: {exc!r}") from None
        findings.append(AdverseFinding(evidence, state, verdict, release))
    return PersonEvidence(tuple(findings))


def person_evidence(
    evidence: Iterable[Evidence], verdicts: Sequence[StaffVerdict] = ()
) -> PersonEvidence:
    """Judge one person's evidence (any order) against the staff verdicts given so far."""
    items = sorted(evidence, key=lambda e: (e.event_date, e.source, e.evidence_id))
    releases = [e for e in items if e.kind is EvidenceKind.RELEASE]
    verdict_of: dict[EvidenceKey, StaffVerdict] = {}
    for given in verdicts:
        for key in given.evidence:
            # A finding is decided once; should two verdicts name it, the first stands.
            verdict_of.setdefault(key, given)
    findings: list[AdverseFinding] = []
    for e in items:
        if e.kind not in ADVERSE_KINDS:
            continue
        release = None
        if e.kind is EvidenceKind.IMPRISONMENT:
            release = next((r for r in releases if r.event_date >= e.event_date), None)
        verdict = verdict_of.get(e.key)
        if verdict is not None:
            state = (
                FindingState.CONFIRMED
                if verdict.verdict is Verdict.CONFIRMED
                else FindingState.REJECTED
            )
        elif release is not None:
            state = FindingState.ENDED
        else:
            state = FindingState.OPEN
        findings.append(AdverseFinding(e, state, verdict, release))
    proof = tuple(e.event_date for e in items if e.kind is EvidenceKind.PROOF_OF_LIFE)
    return PersonEvidence(tuple(findings), proof)
