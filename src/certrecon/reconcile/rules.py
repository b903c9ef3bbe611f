"""The reconciliation rules: one certification and its roster entry in, one decision out.

Policy (rule version :data:`RULE_VERSION`). The rules are tried in this order and the first
that applies decides; ``d`` is the certification's local date (China Standard Time):

1. ``region_out_of_scope`` → ``not_in_scope``: the certification's insured region does not
   start with the region prefix this agency serves.
2. ``no_roster_entry`` → ``not_in_scope``: the ID number is not on the local roster.
3. ``benefit_terminated`` → ``not_in_scope``: the roster status is ``terminated``.
4. ``no_first_payment`` / ``first_payment_after_cutoff`` → ``not_in_scope``: no first monthly
   payment is recorded, or it was after the cycle's cut-off (31 December of the year before
   the cycle). A first payment exactly on the cut-off is in scope.
5. Comparison evidence (contract 1.1), judged by
   :func:`~certrecon.reconcile.evidence.person_evidence`:
   ``evidence_under_review`` → held, no automatic outcome: a person-level review item
   (death, or imprisonment without a later release) is open; the certification waits for
   the staff verdict and is decided again after it. ``eligibility_lost_confirmed`` →
   ``eligibility_lost``: staff confirmed a loss of eligibility covering ``d``. Rejected
   evidence, and confirmed evidence whose period does not cover ``d``, let the rules go
   on as if it were not there.
6. ``deceased`` / ``imprisoned`` → staff review, no automatic outcome: local records show
   death on or before ``d``, or a prison term containing ``d`` (both ends inclusive, an open
   end meaning "still serving"). Death is checked first. Staff decide (逐人核实) between
   ``eligibility_lost`` and ``qualified``.
7. ``name_mismatch`` → ``identity_mismatch``: the names differ after
   :func:`~certrecon.reconcile.names.normalise_name`.
8. ``face_check_failed`` → ``face_not_verified``: ``face_match`` is ``fail``.
9. ``qualified`` → ``qualified``; ``qualified_lifts_suspension`` when the roster status is
   ``suspended``: payments are held *because* the certification was missing, so a valid
   certification is exactly what lifts the suspension.

Loss of eligibility (5, 6) is checked before the name and the face (7, 8) because a
deceased person's identity being used is the case staff most need to see, whatever the
name or face check said.

``evidence`` carries every input the rules examined up to the deciding one (roster fields,
dates as ISO strings, the person's comparison evidence findings with their state and
verdict, and the few certification facts used), so that an auditor can
re-derive the decision with the same rule version. It is stored with the decision in the
database and is never logged.

Pure functions: no I/O, no clock reads.
"""

from __future__ import annotations

import datetime as dt
from types import MappingProxyType
from typing import Any

from certrecon.domain import (
    Certification,
    Cycle,
    Decision,
    FaceMatch,
    Outcome,
    ReviewReason,
    RosterRecord,
    RosterStatus,
)
from certrecon.reconcile.evidence import NO_EVIDENCE, PersonEvidence
from certrecon.reconcile.names import normalise_name

RULE_VERSION = "2026.2"
"""Changes whenever the policy above changes; stored with every decision."""

_NOT_IN_SCOPE = "不在本地认证范围"
_REVIEW = "待人工核实"
_LOST = "丧失待遇领取资格"
_MISMATCH = "身份信息不匹配"
_FACE = "人脸识别未通过"
_QUALIFIED = "认证通过"


def _iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def _decision(
    evidence: dict[str, Any],
    *,
    rule: str,
    reason: str,
    outcome: Outcome | None = None,
    review: ReviewReason | None = None,
) -> Decision:
    return Decision(
        reason=reason,
        rule=rule,
        rule_version=RULE_VERSION,
        outcome=outcome,
        review=review,
        # decide builds a fresh dict per call and never touches it after this: no copy.
        evidence=MappingProxyType(evidence),
    )


def is_imprisoned_on(roster: RosterRecord, day: dt.date) -> bool:
    """True when the roster's prison term contains ``day`` (inclusive; no end = still serving)."""
    start, end = roster.imprisoned_from, roster.imprisoned_until
    return start is not None and start <= day and (end is None or day <= end)


def decide(
    cert: Certification,
    roster: RosterRecord | None,
    cycle: Cycle,
    *,
    region_prefix: str,
    comparison: PersonEvidence = NO_EVIDENCE,
) -> Decision:
    """Apply the policy in this module's docstring to one certification.

    ``roster`` is the roster entry for the certification's ID number, or None when there is
    none; ``cycle`` is the certification's cycle (normally ``Cycle.of(cert)``);
    ``comparison`` is the person's comparison evidence as judged so far.
    """
    day = cert.local_date
    evidence: dict[str, Any] = {
        "certification_local_date": day.isoformat(),
        "insured_region": cert.insured_region,
        "region_prefix": region_prefix,
    }

    # 1. Region.
    if not cert.insured_region.startswith(region_prefix):
        return _decision(
            evidence,
            rule="region_out_of_scope",
            outcome=Outcome.NOT_IN_SCOPE,
            reason=f"{_NOT_IN_SCOPE}: insured region {cert.insured_region} is not served "
            f"here (region prefix {region_prefix})",
        )

    # 2. Roster entry.
    evidence["roster_entry"] = roster is not None
    if roster is None:
        return _decision(
            evidence,
            rule="no_roster_entry",
            outcome=Outcome.NOT_IN_SCOPE,
            reason=f"{_NOT_IN_SCOPE}: no roster entry for this ID number",
        )

    # 3. Benefit status.
    evidence["roster_status"] = roster.status.value
    evidence["roster_benefit_type"] = roster.benefit_type
    if roster.status is RosterStatus.TERMINATED:
        return _decision(
            evidence,
            rule="benefit_terminated",
            outcome=Outcome.NOT_IN_SCOPE,
            reason=f"{_NOT_IN_SCOPE}: the benefit is terminated",
        )

    # 4. Cycle scope.
    cutoff = cycle.payment_cutoff
    evidence["cycle"] = cycle.year
    evidence["payment_cutoff"] = cutoff.isoformat()
    evidence["roster_first_paid_on"] = _iso(roster.first_paid_on)
    if roster.first_paid_on is None:
        return _decision(
            evidence,
            rule="no_first_payment",
            outcome=Outcome.NOT_IN_SCOPE,
            reason=f"{_NOT_IN_SCOPE}: no first monthly payment on the roster",
        )
    if roster.first_paid_on > cutoff:
        return _decision(
            evidence,
            rule="first_payment_after_cutoff",
            outcome=Outcome.NOT_IN_SCOPE,
            reason=f"{_NOT_IN_SCOPE}: first payment {roster.first_paid_on.isoformat()} is "
            f"after the {cycle.year} cycle cut-off {cutoff.isoformat()}",
        )

    # 5. Comparison evidence: staff verify it person by person (逐人核实).
    if not comparison.findings:
        # Nearly everyone: nothing under review, no confirmed loss.
        evidence["comparison_evidence"] = []
    else:
        held = _by_comparison(evidence, comparison, day)
        if held is not None:
            return held

    # 6. Local records of death or imprisonment: a person decides, not the rules.
    evidence["roster_deceased_on"] = _iso(roster.deceased_on)
    if roster.deceased_on is not None and roster.deceased_on <= day:
        return _decision(
            evidence,
            rule="deceased",
            review=ReviewReason.DECEASED,
            reason=f"{_REVIEW}: local records show death on {roster.deceased_on.isoformat()}, "
            f"on or before the certification date {day.isoformat()}",
        )
    evidence["roster_imprisoned_from"] = _iso(roster.imprisoned_from)
    evidence["roster_imprisoned_until"] = _iso(roster.imprisoned_until)
    if is_imprisoned_on(roster, day):
        until = _iso(roster.imprisoned_until) or "open"
        return _decision(
            evidence,
            rule="imprisoned",
            review=ReviewReason.IMPRISONED,
            reason=f"{_REVIEW}: local records show a prison term "
            f"{_iso(roster.imprisoned_from)} to {until} covering {day.isoformat()}",
        )

    # 7. Name.
    roster_name = normalise_name(roster.name)
    cert_name = normalise_name(cert.name)
    evidence["roster_name"] = roster.name
    evidence["roster_name_normalised"] = roster_name
    evidence["certification_name_normalised"] = cert_name
    if roster_name != cert_name:
        return _decision(
            evidence,
            rule="name_mismatch",
            outcome=Outcome.IDENTITY_MISMATCH,
            reason=f"{_MISMATCH}: the name differs from the roster after normalisation",
        )

    # 8. Face check.
    evidence["face_match"] = cert.face_match.value
    if cert.face_match is FaceMatch.FAIL:
        return _decision(
            evidence,
            rule="face_check_failed",
            outcome=Outcome.FACE_NOT_VERIFIED,
            reason=f"{_FACE}: the channel's face check failed",
        )

    # 9. Qualified.
    if roster.status is RosterStatus.SUSPENDED:
        return _decision(
            evidence,
            rule="qualified_lifts_suspension",
            outcome=Outcome.QUALIFIED,
            reason=f"{_QUALIFIED}: benefit suspended on the roster; this certification is "
            "what lifts the suspension",
        )
    return _decision(
        evidence,
        rule="qualified",
        outcome=Outcome.QUALIFIED,
        reason=_QUALIFIED,
    )


def _by_comparison(
    evidence: dict[str, Any], comparison: PersonEvidence, day: dt.date
) -> Decision | None:
    """Rule 5 for a person with comparison evidence: held while it is under review, lost
    when a confirmed loss covers ``day``; else None, and the rules go on."""
    evidence["comparison_evidence"] = comparison.records()
    if comparison.under_review:
        return _decision(
            evidence,
            rule="evidence_under_review",
            review=ReviewReason.COMPARISON_EVIDENCE,
            reason=f"{_REVIEW}: comparison evidence of death or imprisonment is being "
            "verified for this person; the certification waits for the verdict",
        )
    lost = comparison.lost_on(day)
    if lost is not None:
        return _decision(
            evidence,
            rule="eligibility_lost_confirmed",
            outcome=Outcome.ELIGIBILITY_LOST,
            reason=f"{_LOST}: staff confirmed comparison evidence; eligibility lost from "
            f"{lost.start.isoformat()}, covering {day.isoformat()}",
        )
    return None
