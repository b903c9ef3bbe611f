"""The certification cycle: scope, status, lists and benefit actions (pure part)."""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import json
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certrecon.contract import example_bytes
from certrecon.contract.validate import check_bytes
from certrecon.cycle import (
    OUTREACH_HEADER,
    ActionKind,
    BenefitAction,
    BenefitActionMessage,
    CertificationFact,
    CycleMode,
    CycleStatus,
    Period,
    PersonFacts,
    add_months,
    in_scope,
    outreach,
    person_status,
    resume_action,
    stop_actions,
    summarise,
    suspend_candidates,
    valid_until,
)
from certrecon.domain import CST, RosterStatus
from certrecon.evidence import Evidence, EvidenceKind
from certrecon.reconcile.evidence import StaffVerdict, Verdict, person_evidence
from certrecon.synthetic import make_roster
from tests.unit.test_reconcile import person as roster

D = dt.date
K = EvidenceKind
S = CycleStatus
CAL = CycleMode.CALENDAR_YEAR
ROLL = CycleMode.ROLLING_12_MONTHS
ID = "11010519491231002X"


def ev(evidence_id: str, kind: EvidenceKind, day: dt.date) -> Evidence:
    return Evidence(evidence_id, "s", kind, ID, "张三", day)


def facts(
    *,
    certified: tuple[dt.date, ...] = (),
    evidence: tuple[Evidence, ...] = (),
    verdicts: tuple[StaffVerdict, ...] = (),
    open_reviews: int = 0,
    **r: Any,
) -> PersonFacts:
    return PersonFacts(
        roster=roster(**r),
        certifications=tuple(CertificationFact(day, "12333") for day in certified),
        evidence=person_evidence(evidence, verdicts),
        open_reviews=open_reviews,
    )


JUNE = D(2024, 6, 1)


def confirm(evidence_id: str, effective: dt.date, on: dt.date = JUNE) -> StaffVerdict:
    return StaffVerdict(frozenset({("s", evidence_id)}), Verdict.CONFIRMED, "w001", on, effective)


def status(f: PersonFacts, year: int = 2024, mode: CycleMode = CAL, **kw: Any) -> CycleStatus:
    return person_status(f, Period.of(mode, year, **kw)).status


# ------------------------------------------------------------------------------ months


@given(st.dates(D(1950, 1, 1), D(2090, 12, 31)), st.integers(-120, 120))
def test_add_months_keeps_the_day_or_takes_the_last_of_the_month(day: dt.date, n: int) -> None:
    moved = add_months(day, n)
    assert (moved.year * 12 + moved.month) - (day.year * 12 + day.month) == n
    last = calendar.monthrange(moved.year, moved.month)[1]
    assert moved.day == min(day.day, last)


def test_add_months_examples() -> None:
    assert add_months(D(2024, 2, 29), 12) == D(2025, 2, 28)
    assert add_months(D(2024, 3, 15), 12) == D(2025, 3, 15)
    assert add_months(D(2024, 1, 31), 1) == D(2024, 2, 29)


# ------------------------------------------------------------------------------ scope


def test_calendar_scope_is_first_payment_by_the_end_of_the_year_before() -> None:
    p = Period.of(CAL, 2024)
    assert in_scope(facts(first_paid_on=D(2023, 12, 31)), p)
    assert not in_scope(facts(first_paid_on=D(2024, 1, 1)), p)
    assert not in_scope(facts(first_paid_on=None), p)
    assert not in_scope(facts(status=RosterStatus.TERMINATED), p)
    assert in_scope(facts(status=RosterStatus.SUSPENDED), p)


def test_rolling_scope_starts_when_a_person_is_due() -> None:
    as_of = D(2024, 6, 30)
    p = Period.of(ROLL, 2024, as_of=as_of)
    # Never certified: due once first payment + 12 months has passed.
    assert not in_scope(facts(first_paid_on=D(2023, 6, 30)), p)
    assert in_scope(facts(first_paid_on=D(2023, 6, 29)), p)
    # Certified once: in scope (and its validity decides the status).
    assert in_scope(facts(first_paid_on=D(2024, 1, 1), certified=(D(2024, 2, 1),)), p)
    assert not in_scope(facts(first_paid_on=D(2024, 7, 1)), p)
    assert not in_scope(facts(status=RosterStatus.TERMINATED, certified=(D(2024, 2, 1),)), p)


# ------------------------------------------------------------------------------ status


def test_calendar_status_counts_facts_dated_in_the_year() -> None:
    assert status(facts(certified=(D(2024, 1, 1),))) is S.CERTIFIED
    assert status(facts(certified=(D(2023, 12, 31),))) is S.NOT_CERTIFIED
    assert status(facts(evidence=(ev("P", K.PROOF_OF_LIFE, D(2024, 5, 1)),))) is (
        S.CONFIRMED_BY_EVIDENCE
    )
    assert status(facts(evidence=(ev("P", K.PROOF_OF_LIFE, D(2023, 5, 1)),))) is S.NOT_CERTIFIED
    # As of a date: only what was dated by then.
    f = facts(certified=(D(2024, 9, 1),))
    assert status(f, as_of=D(2024, 8, 31)) is S.NOT_CERTIFIED
    assert status(f, as_of=D(2024, 9, 1)) is S.CERTIFIED


def test_precedence_lost_then_review_then_certified_then_evidence() -> None:
    death = ev("E1", K.DEATH, D(2024, 7, 1))
    pol = ev("P", K.PROOF_OF_LIFE, D(2024, 2, 1))
    cert = (D(2024, 3, 1),)
    assert status(facts(certified=cert, evidence=(pol,))) is S.CERTIFIED
    assert status(facts(certified=cert, evidence=(pol, death))) is S.PENDING_REVIEW
    assert status(facts(certified=cert, open_reviews=1)) is S.PENDING_REVIEW
    lost = facts(certified=cert, evidence=(pol, death), verdicts=(confirm("E1", D(2024, 7, 1)),))
    assert status(lost) is S.ELIGIBILITY_LOST
    assert status(lost, as_of=D(2024, 6, 30)) is S.CERTIFIED  # before the effective date
    rejected = StaffVerdict(frozenset({("s", "E1")}), Verdict.REJECTED, "w", D(2024, 8, 1))
    assert status(facts(certified=cert, evidence=(death,), verdicts=(rejected,))) is S.CERTIFIED


def test_rolling_status_follows_valid_until() -> None:
    f = facts(certified=(D(2023, 3, 15),), evidence=(ev("P", K.PROOF_OF_LIFE, D(2023, 9, 1)),))
    assert valid_until(f, D(2024, 1, 1)) == D(2024, 9, 1)
    assert status(f, mode=ROLL, as_of=D(2024, 3, 15)) is S.CERTIFIED
    assert status(f, mode=ROLL, as_of=D(2024, 3, 16)) is S.CONFIRMED_BY_EVIDENCE
    assert status(f, mode=ROLL, as_of=D(2024, 9, 1)) is S.CONFIRMED_BY_EVIDENCE
    assert status(f, mode=ROLL, as_of=D(2024, 9, 2)) is S.NOT_CERTIFIED
    # Cycle Y means as of 31 December of Y.
    assert Period.of(ROLL, 2024).as_of == D(2024, 12, 31)
    # Never certified: first payment + 12 months.
    assert valid_until(facts(first_paid_on=D(2023, 2, 1)), D(2024, 6, 1)) == D(2024, 2, 1)
    assert valid_until(facts(first_paid_on=None), D(2024, 6, 1)) is None


def test_last_certified_on_is_the_last_certification_in_any_year() -> None:
    f = facts(certified=(D(2021, 5, 1), D(2022, 4, 1), D(2025, 1, 1)))
    result = person_status(f, Period.of(CAL, 2024))
    assert (result.status, result.last_certified_on) == (S.NOT_CERTIFIED, D(2022, 4, 1))


# ------------------------------------------------------------------------------ lists


def test_outreach_rows_and_csv_cells() -> None:
    people = [
        facts(certified=(D(2024, 3, 1),)),
        facts(id_number="A", name="=cmd()", certified=(D(2022, 1, 5),)),
        facts(id_number="B", insured_region="", first_paid_on=D(2024, 2, 1)),  # not in scope
    ]
    rows = list(outreach(people, Period.of(CAL, 2024)))
    assert [r.cells() for r in rows] == [
        ("A", "'=cmd()", "110105", "basic_pension", "not_certified", "2022-01-05")
    ]
    assert len(OUTREACH_HEADER) == len(rows[0].cells())


def test_expiring_within_adds_people_about_to_lapse_in_rolling_mode_only() -> None:
    as_of = D(2024, 6, 1)
    p = Period.of(ROLL, 2024, as_of=as_of)
    people = [
        facts(id_number="LAPSED", certified=(D(2023, 5, 1),)),
        facts(id_number="SOON", certified=(D(2023, 8, 1),)),
        facts(id_number="LATER", certified=(D(2024, 1, 1),)),
        facts(id_number="NEW", first_paid_on=D(2023, 7, 15)),  # not due yet, expiring soon
        facts(
            id_number="REVIEW",
            certified=(D(2023, 8, 1),),
            evidence=(ev("E", K.DEATH, D(2024, 5, 1)),),
        ),
    ]
    assert [r.id_number for r in outreach(people, p)] == ["LAPSED"]
    rows = list(outreach(people, p, expiring_within=92))
    assert [(r.id_number, r.status, r.valid_until) for r in rows] == [
        ("LAPSED", S.NOT_CERTIFIED, D(2024, 5, 1)),
        ("SOON", S.CERTIFIED, D(2024, 8, 1)),
        ("NEW", S.NOT_CERTIFIED, D(2024, 7, 15)),
    ]
    with pytest.raises(ValueError, match="rolling_12_months"):
        list(outreach(people, Period.of(CAL, 2024), expiring_within=90))
    with pytest.raises(ValueError, match="negative"):
        list(outreach(people, p, expiring_within=-1))


def test_suspend_candidates_as_of_a_date() -> None:
    people = [
        facts(id_number="EARLY", certified=(D(2024, 2, 1),)),
        facts(id_number="LATE", certified=(D(2024, 9, 1),)),
        facts(id_number="NONE"),
        facts(id_number="REVIEW", open_reviews=1),
    ]
    rows = suspend_candidates(people, Period.of(CAL, 2024, as_of=D(2024, 6, 30)))
    assert [r.id_number for r in rows] == ["LATE", "NONE"]


def test_summary_has_every_status_and_district_with_zeros() -> None:
    people = [
        facts(certified=(D(2024, 3, 1),)),
        facts(insured_region="110108"),
        facts(insured_region=""),
        facts(first_paid_on=D(2024, 5, 1)),
    ]
    assert summarise(people, Period.of(CAL, 2024)).to_json() == {
        "year": 2024,
        "in_scope": 3,
        "by_status": {
            "certified": 1,
            "confirmed_by_evidence": 0,
            "pending_review": 0,
            "eligibility_lost": 0,
            "not_certified": 2,
        },
        "by_district": {
            "110105": dict.fromkeys([s.value for s in S], 0) | {"certified": 1},
            "110108": dict.fromkeys([s.value for s in S], 0) | {"not_certified": 1},
            "unknown": dict.fromkeys([s.value for s in S], 0) | {"not_certified": 1},
        },
    }


# ------------------------------------------------------------------------------ actions


def test_a_suspended_person_certifying_twice_gets_one_resume() -> None:
    f = PersonFacts(
        roster=roster(status=RosterStatus.SUSPENDED, suspended_on=D(2024, 1, 1)),
        certifications=(
            CertificationFact(D(2024, 5, 2), "essc"),
            CertificationFact(D(2024, 4, 9), "assisted:home_visit", "staff:w001"),
        ),
    )
    action = resume_action(f, Period.of(CAL, 2024))
    assert action == BenefitAction(
        action=ActionKind.RESUME,
        id_number=ID,
        year=2024,
        reason="恢复发放并补发: certified on 2024-04-09 (assisted:home_visit)",
        decided_by="staff:w001",
        suspended_on=D(2024, 1, 1),
        basis="assisted:home_visit",
        basis_date=D(2024, 4, 9),
    )
    assert action.action_id == f"{ID}:2024:resume"
    later = dataclasses.replace(
        f, certifications=(*f.certifications, CertificationFact(D(2024, 8, 1), "12333"))
    )
    again = resume_action(later, Period.of(CAL, 2024))
    assert again is not None
    assert again.action_id == action.action_id


def test_resume_only_for_suspended_and_valid_people() -> None:
    cert = (D(2024, 4, 9),)
    period = Period.of(CAL, 2024)
    assert resume_action(facts(certified=cert), period) is None
    suspended = RosterStatus.SUSPENDED
    assert resume_action(facts(status=suspended), period) is None
    assert resume_action(facts(certified=cert, open_reviews=1, status=suspended), period) is None
    pol = resume_action(
        facts(evidence=(ev("P", K.PROOF_OF_LIFE, D(2024, 2, 2)),), status=suspended), period
    )
    assert pol is not None
    assert (pol.basis, pol.decided_by, pol.suspended_on) == ("proof_of_life", "rules", None)
    rolling = resume_action(
        facts(certified=(D(2023, 11, 1),), status=suspended),
        Period.of(ROLL, 2024, as_of=D(2024, 3, 1)),
    )
    assert rolling is not None
    assert rolling.action_id == f"{ID}:2023:resume"


def test_stop_once_per_year_of_confirmation() -> None:
    evidence = (
        ev("J", K.IMPRISONMENT, D(2023, 1, 1)),
        ev("E", K.DEATH, D(2024, 3, 1)),
        ev("E2", K.DEATH, D(2024, 3, 1)),
    )
    verdicts = (
        confirm("J", D(2023, 1, 1), on=D(2023, 2, 1)),
        confirm("E", D(2024, 3, 1), on=D(2024, 3, 9)),
        confirm("E2", D(2024, 3, 1), on=D(2024, 4, 9)),
    )
    actions = stop_actions(facts(evidence=evidence, verdicts=verdicts))
    assert [(a.action_id, a.effective_date, a.decided_by) for a in actions] == [
        (f"{ID}:2023:stop", D(2023, 1, 1), "staff:w001"),
        (f"{ID}:2024:stop", D(2024, 3, 1), "staff:w001"),
    ]
    assert stop_actions(facts(evidence=evidence)) == []


def test_action_messages_match_the_schema() -> None:
    assert check_bytes("benefit-action", example_bytes("benefit-action-resume.json")) == []
    assert BenefitActionMessage.model_validate_json(example_bytes("benefit-action-resume.json"))
    raised = dt.datetime(2024, 6, 1, 9, 0, tzinfo=CST)
    resume = BenefitAction(
        ActionKind.RESUME, ID, 2024, "r", "rules", basis="12333", basis_date=D(2024, 5, 1)
    )
    stop = BenefitAction(ActionKind.STOP, ID, 2024, "s", "staff:w1", effective_date=D(2024, 3, 1))
    for action in (resume, stop):
        raw = action.message(raised).to_bytes()
        assert check_bytes("benefit-action", raw) == []
        document = json.loads(raw)
        assert document["action_id"] == action.action_id
        assert document["raised_at"] == "2024-06-01T09:00:00+08:00"
    assert json.loads(resume.message(raised).to_bytes())["suspended_on"] is None
    assert "suspended_on" not in json.loads(stop.message(raised).to_bytes())
    assert "effective_date" not in json.loads(resume.message(raised).to_bytes())


# ------------------------------------------------------------------------------ at scale


def _generate(n: int, seed: int) -> list[tuple[PersonFacts, dict[str, Any]]]:
    """``n`` people with random ledger facts, and the raw facts for the reference."""
    rng = random.Random(seed)
    out = []
    for i, generated in enumerate(make_roster(n, seed=seed)):
        region = rng.choice(("110105", "110108", "110101", ""))
        suspended_on = D(2023, 7, 1) if generated.status is RosterStatus.SUSPENDED else None
        person = dataclasses.replace(generated, insured_region=region, suspended_on=suspended_on)
        certs = sorted(
            D(2022, 1, 1) + dt.timedelta(days=rng.randrange(1095))
            for _ in range(rng.choice((0, 0, 1, 1, 2)))
        )
        raw: dict[str, Any] = {"certs": certs, "pol": [], "adverse": [], "releases": []}
        evidence: list[Evidence] = []
        verdicts: list[StaffVerdict] = []
        for j in range(rng.choice((0, 0, 0, 1, 2))):
            kind = rng.choices(list(K), (2, 2, 1, 10))[0]
            day = D(2022, 1, 1) + dt.timedelta(days=rng.randrange(1095))
            e = Evidence(f"E{i}-{j}", "src", kind, person.id_number, person.name, day)
            evidence.append(e)
            if kind is K.PROOF_OF_LIFE:
                raw["pol"].append(day)
            elif kind is K.RELEASE:
                raw["releases"].append(day)
            else:
                how = rng.choice((None, "confirm", "reject"))
                raw["adverse"].append((kind, day, how))
                if how is not None:
                    verdicts.append(
                        StaffVerdict(
                            frozenset({e.key}),
                            Verdict.CONFIRMED if how == "confirm" else Verdict.REJECTED,
                            "w",
                            day + dt.timedelta(days=5),
                            day if how == "confirm" else None,
                        )
                    )
        raw["open_reviews"] = 1 if rng.random() < 0.02 else 0
        out.append(
            (
                PersonFacts(
                    roster=person,
                    certifications=tuple(CertificationFact(c, "12333") for c in certs),
                    evidence=person_evidence(evidence, verdicts),
                    open_reviews=raw["open_reviews"],
                ),
                raw,
            )
        )
    return out


def _reference(
    people: list[tuple[PersonFacts, dict[str, Any]]], mode: CycleMode, year: int, as_of: dt.date
) -> tuple[Counter[str], list[str]]:
    """The contract computed again, set by set, from the raw facts."""

    def plus_year(day: dt.date) -> dt.date:
        try:
            return day.replace(year=day.year + 1)
        except ValueError:
            return day.replace(year=day.year + 1, day=28)

    def counts(day: dt.date) -> bool:
        if mode is CAL:
            return day.year == year and day <= as_of
        return day <= as_of <= plus_year(day)

    scope, lost, pending, certified, confirmed = set(), set(), set(), set(), set()
    for f, raw in people:
        r, key = f.roster, f.roster.id_number
        dated = [d for d in raw["certs"] + raw["pol"] if d <= as_of]
        if r.status is not RosterStatus.TERMINATED and r.first_paid_on is not None:
            if mode is CAL:
                due = r.first_paid_on <= D(year - 1, 12, 31)
            else:
                due = r.first_paid_on <= as_of and (
                    bool(dated) or plus_year(r.first_paid_on) < as_of
                )
            if due:
                scope.add(key)
        for kind, day, how in raw["adverse"]:
            release = min((x for x in raw["releases"] if x >= day), default=None)
            if how is None and (kind is K.DEATH or release is None):
                pending.add(key)
            if (
                how == "confirm"
                and day <= as_of
                and (kind is K.DEATH or release is None or as_of < release)
            ):
                lost.add(key)
        if raw["open_reviews"]:
            pending.add(key)
        if any(counts(d) for d in raw["certs"]):
            certified.add(key)
        if any(counts(d) for d in raw["pol"]):
            confirmed.add(key)
    outreach_ids = scope - certified - confirmed - pending - lost
    tally: Counter[str] = Counter(
        {
            "eligibility_lost": len(scope & lost),
            "pending_review": len((scope & pending) - lost),
            "certified": len((scope & certified) - pending - lost),
            "confirmed_by_evidence": len((scope & confirmed) - certified - pending - lost),
            "not_certified": len(outreach_ids),
        }
    )
    order = [f.roster.id_number for f, _ in people if f.roster.id_number in outreach_ids]
    return tally, order


POPULATION = _generate(10_000, seed=12)


@pytest.mark.parametrize(
    ("mode", "year", "as_of"),
    [
        (CAL, 2024, None),
        (CAL, 2024, D(2024, 6, 30)),
        (CAL, 2023, None),
        (ROLL, 2024, None),
        (ROLL, 2024, D(2024, 2, 29)),
    ],
)
def test_ten_thousand_people_against_an_independent_computation(
    mode: CycleMode, year: int, as_of: dt.date | None
) -> None:
    period = Period.of(mode, year, as_of)
    expected_counts, expected_ids = _reference(POPULATION, mode, year, period.as_of)
    people = [f for f, _ in POPULATION]
    summary = summarise(people, period).to_json()
    assert summary["by_status"] == {s.value: expected_counts[s.value] for s in S}
    assert summary["in_scope"] == sum(expected_counts.values())
    assert sum(sum(d.values()) for d in summary["by_district"].values()) == summary["in_scope"]
    assert [r.id_number for r in outreach(people, period)] == expected_ids
    assert [r.id_number for r in suspend_candidates(people, period)] == expected_ids
    # Every status occurs in the generated data, so no branch is left untested.
    assert all(summary["by_status"][s.value] > 0 for s in S), summary["by_status"]


@given(
    st.lists(st.dates(D(2021, 1, 1), D(2025, 12, 31)), max_size=3),
    st.lists(
        st.tuples(
            st.sampled_from(list(K)),
            st.dates(D(2021, 1, 1), D(2025, 12, 31)),
            st.sampled_from([None, "confirm", "reject"]),
        ),
        max_size=4,
    ),
    st.sampled_from(list(RosterStatus)),
    st.one_of(st.none(), st.dates(D(2019, 1, 1), D(2025, 6, 30))),
    st.integers(0, 1),
    st.sampled_from([CAL, ROLL]),
    st.dates(D(2023, 1, 1), D(2025, 12, 31)),
)
def test_small_cases_against_the_independent_computation(  # noqa: PLR0917
    certs: list[dt.date],
    adverse: list[tuple[EvidenceKind, dt.date, str | None]],
    roster_status: RosterStatus,
    first_paid: dt.date | None,
    open_reviews: int,
    mode: CycleMode,
    as_of: dt.date,
) -> None:
    person = roster(status=roster_status, first_paid_on=first_paid)
    evidence, verdicts = [], []
    raw: dict[str, Any] = {"certs": sorted(certs), "pol": [], "adverse": [], "releases": []}
    for j, (kind, day, how) in enumerate(adverse):
        e = Evidence(f"E{j}", "src", kind, ID, "张三", day)
        evidence.append(e)
        if kind is K.PROOF_OF_LIFE:
            raw["pol"].append(day)
        elif kind is K.RELEASE:
            raw["releases"].append(day)
        else:
            raw["adverse"].append((kind, day, how))
            if how is not None:
                confirmed = how == "confirm"
                verdicts.append(
                    StaffVerdict(
                        frozenset({e.key}),
                        Verdict.CONFIRMED if confirmed else Verdict.REJECTED,
                        "w",
                        day,
                        day if confirmed else None,
                    )
                )
    raw["open_reviews"] = open_reviews
    f = PersonFacts(
        person,
        tuple(CertificationFact(c, "12333") for c in certs),
        person_evidence(evidence, verdicts),
        open_reviews,
    )
    period = Period.of(mode, as_of.year, as_of)
    expected_counts, expected_ids = _reference([(f, raw)], mode, as_of.year, as_of)
    got = summarise([f], period).to_json()["by_status"]
    assert got == {s.value: expected_counts[s.value] for s in S}
    assert [r.id_number for r in outreach([f], period)] == expected_ids
