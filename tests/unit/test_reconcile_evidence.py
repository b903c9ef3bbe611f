"""Comparison evidence in the rules: findings, staff verdicts, held certifications."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certrecon.domain import Cycle, Outcome, ReviewReason, RosterStatus
from certrecon.evidence import Evidence, EvidenceKind
from certrecon.reconcile import decide
from certrecon.reconcile.evidence import (
    FindingState,
    LostPeriod,
    StaffVerdict,
    Verdict,
    person_evidence,
    recorded_evidence,
)
from tests.unit.test_reconcile import DAY, ID, REGION, cert, person

K = EvidenceKind


def ev(evidence_id: str, kind: EvidenceKind, day: dt.date, source: str = "s") -> Evidence:
    return Evidence(
        evidence_id=evidence_id,
        source=source,
        kind=kind,
        id_number=ID,
        name="张三",
        event_date=day,
    )


def verdict(*ids: str, confirm: dt.date | None = None, source: str = "s") -> StaffVerdict:
    return StaffVerdict(
        evidence=frozenset((source, i) for i in ids),
        verdict=Verdict.CONFIRMED if confirm else Verdict.REJECTED,
        decided_by="w001",
        decided_on=dt.date(2024, 4, 1),
        effective_date=confirm,
    )


D = dt.date


def test_death_opens_an_item_until_staff_decide() -> None:
    death = ev("E1", K.DEATH, D(2024, 2, 1))
    assert person_evidence([death]).under_review
    confirmed = person_evidence([death], [verdict("E1", confirm=D(2024, 2, 1))])
    assert not confirmed.under_review
    assert confirmed.lost_periods == (LostPeriod(D(2024, 2, 1), None),)
    rejected = person_evidence([death], [verdict("E1")])
    assert [f.state for f in rejected.findings] == [FindingState.REJECTED]
    assert rejected.lost_periods == ()


def test_imprisonment_needs_no_review_once_a_later_release_is_known() -> None:
    jail = ev("J1", K.IMPRISONMENT, D(2023, 5, 1))
    assert person_evidence([jail]).under_review
    ended = person_evidence([jail, ev("R1", K.RELEASE, D(2023, 5, 1))])
    assert [f.state for f in ended.findings] == [FindingState.ENDED]
    # A release before the imprisonment ends nothing.
    assert person_evidence([jail, ev("R0", K.RELEASE, D(2023, 4, 30))]).under_review


def test_a_confirmed_imprisonment_ends_with_its_release() -> None:
    state = person_evidence(
        [ev("J1", K.IMPRISONMENT, D(2023, 5, 1)), ev("R1", K.RELEASE, D(2024, 1, 10))],
        [verdict("J1", confirm=D(2023, 5, 3))],
    )
    assert state.lost_periods == (LostPeriod(D(2023, 5, 3), D(2024, 1, 10)),)
    assert state.lost_on(D(2023, 12, 31)) is not None
    assert state.lost_on(D(2024, 1, 10)) is None


def test_evidence_after_a_verdict_opens_a_new_item() -> None:
    state = person_evidence(
        [ev("E1", K.DEATH, D(2024, 2, 1)), ev("E2", K.DEATH, D(2024, 2, 1), "other")],
        [verdict("E1")],
    )
    assert [f.evidence.evidence_id for f in state.open_findings] == ["E2"]


def test_proof_of_life_dates_are_sorted() -> None:
    state = person_evidence(
        [ev("P2", K.PROOF_OF_LIFE, D(2024, 6, 1)), ev("P1", K.PROOF_OF_LIFE, D(2024, 1, 1))]
    )
    assert state.proof_of_life == (D(2024, 1, 1), D(2024, 6, 1))
    assert not state.under_review


def test_verdicts_must_be_consistent() -> None:
    with pytest.raises(ValueError, match="effective date"):
        StaffVerdict(frozenset({("s", "E1")}), Verdict.CONFIRMED, "w", D(2024, 1, 1))
    with pytest.raises(ValueError, match="at least one"):
        StaffVerdict(frozenset(), Verdict.REJECTED, "w", D(2024, 1, 1))


# ------------------------------------------------------------------------------ decide


def run(evidence: list[Evidence], verdicts: list[StaffVerdict] | None = None, **r: Any) -> Any:
    c = cert()
    comparison = person_evidence(evidence, verdicts or [])
    return decide(c, person(**r), Cycle.of(c), region_prefix=REGION, comparison=comparison)


def test_an_open_item_holds_the_certification() -> None:
    d = run([ev("E1", K.DEATH, DAY - dt.timedelta(days=30))])
    assert (d.outcome, d.review, d.rule) == (
        None,
        ReviewReason.COMPARISON_EVIDENCE,
        "evidence_under_review",
    )
    assert d.evidence["comparison_evidence"] == [
        {
            "source": "s",
            "evidence_id": "E1",
            "kind": "death",
            "event_date": "2024-02-14",
            "state": "open",
        }
    ]


def test_a_certification_before_the_death_evidence_arrived_is_held_too() -> None:
    # The person certified in March; the death record dated later is still open.
    d = run([ev("E1", K.DEATH, DAY + dt.timedelta(days=10))])
    assert d.rule == "evidence_under_review"


def test_confirmed_death_covering_the_date_is_eligibility_lost() -> None:
    d = run([ev("E1", K.DEATH, D(2024, 2, 1))], [verdict("E1", confirm=D(2024, 2, 1))])
    assert (d.outcome, d.rule) == (Outcome.ELIGIBILITY_LOST, "eligibility_lost_confirmed")
    [finding] = d.evidence["comparison_evidence"]
    assert finding["state"] == "confirmed"
    assert finding["effective_date"] == "2024-02-01"
    assert finding["decided_by"] == "staff:w001"


def test_confirmed_death_after_the_certification_lets_it_qualify() -> None:
    d = run([ev("E1", K.DEATH, D(2024, 5, 1))], [verdict("E1", confirm=D(2024, 5, 1))])
    assert (d.outcome, d.rule) == (Outcome.QUALIFIED, "qualified")
    assert d.evidence["comparison_evidence"][0]["state"] == "confirmed"


def test_a_rejection_releases_the_certification_to_the_rules() -> None:
    d = run([ev("E1", K.DEATH, D(2024, 2, 1))], [verdict("E1")])
    assert (d.outcome, d.rule) == (Outcome.QUALIFIED, "qualified")
    assert d.evidence["comparison_evidence"][0]["state"] == "rejected"
    # Without the evidence, the roster's own death record still goes to a person.
    d = run([ev("E1", K.DEATH, D(2024, 2, 1))], [verdict("E1")], deceased_on=D(2024, 2, 1))
    assert (d.review, d.rule) == (ReviewReason.DECEASED, "deceased")


def test_scope_is_decided_before_evidence() -> None:
    d = run([ev("E1", K.DEATH, D(2024, 2, 1))], status=RosterStatus.TERMINATED)
    assert (d.outcome, d.rule) == (Outcome.NOT_IN_SCOPE, "benefit_terminated")


ITEMS = st.lists(
    st.tuples(
        st.sampled_from(list(EvidenceKind)),
        st.dates(D(2020, 1, 1), D(2025, 12, 31)),
        st.sampled_from([None, "reject", "confirm"]),
    ),
    max_size=6,
)
"""A person's evidence as (kind, event date, what staff decided of it, if anything)."""

Item = tuple[EvidenceKind, dt.date, str | None]


def evidence_and_verdicts(items: list[Item]) -> tuple[list[Evidence], list[StaffVerdict]]:
    evidence = [ev(f"E{i}", kind, day) for i, (kind, day, _) in enumerate(items)]
    verdicts = [
        verdict(f"E{i}", confirm=day if how == "confirm" else None)
        for i, (kind, day, how) in enumerate(items)
        if how is not None and kind in (K.DEATH, K.IMPRISONMENT)
    ]
    return evidence, verdicts


@given(ITEMS)
def test_held_exactly_when_an_item_is_open(
    items: list[Item],
) -> None:
    evidence, verdicts = evidence_and_verdicts(items)
    state = person_evidence(evidence, verdicts)
    # Independently: an adverse record without a verdict, and (imprisonment) without a
    # release on or after it.
    releases = [day for kind, day, _ in items if kind is K.RELEASE]
    expected_open = any(
        (kind is K.DEATH or (kind is K.IMPRISONMENT and not any(r >= day for r in releases)))
        and how is None
        for kind, day, how in items
    )
    assert state.under_review == expected_open
    d = run(evidence, verdicts)
    assert (d.rule == "evidence_under_review") == expected_open
    if not expected_open:
        lost = state.lost_on(DAY) is not None
        assert (d.outcome is Outcome.ELIGIBILITY_LOST) == lost


@given(ITEMS)
def test_recorded_findings_decide_as_the_evidence_did(
    items: list[Item],
) -> None:
    # What the replay re-decides from: the findings a decision recorded, read back.
    evidence, verdicts = evidence_and_verdicts(items)
    state = person_evidence(evidence, verdicts)
    read_back = recorded_evidence(json.loads(json.dumps(state.records())), ID)
    assert read_back.records() == state.records()
    assert read_back.under_review == state.under_review
    assert read_back.lost_periods == state.lost_periods
    original = decide(cert(), person(), Cycle.of(cert()), region_prefix=REGION, comparison=state)
    again = decide(cert(), person(), Cycle.of(cert()), region_prefix=REGION, comparison=read_back)
    assert again == original


@pytest.mark.parametrize(
    "bad",
    [
        [{"source": "s"}],
        [{"source": "s", "evidence_id": "E1", "kind": "flood", "event_date": "2024-01-01"}],
        [{**{"source": "s", "evidence_id": "E1", "kind": "death"}, "event_date": "01/01/2024"}],
        ["not a record"],
    ],
)
def test_a_record_not_in_the_recorded_shape_is_refused(bad: list[Any]) -> None:
    with pytest.raises(ValueError, match="not a recorded finding"):
        recorded_evidence(bad, ID)
