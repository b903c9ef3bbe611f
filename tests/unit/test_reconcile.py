from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certrecon.domain import (
    CST,
    Certification,
    Channel,
    Cycle,
    Decision,
    FaceMatch,
    IdType,
    Method,
    Outcome,
    ReviewReason,
    RosterRecord,
    RosterStatus,
)
from certrecon.reconcile import RULE_VERSION, decide, normalise_name, same_name
from certrecon.reconcile.names import _normalise_in_rounds

ID = "11010519491231002X"
REGION = "11"
# 2024-03-15 10:00 in Beijing.
CERTIFIED_AT = dt.datetime(2024, 3, 15, 2, 0, tzinfo=dt.UTC)
DAY = dt.date(2024, 3, 15)


def cert(**changes: object) -> Certification:
    base = Certification(
        certification_id="C1",
        channel=Channel.APP_12333,
        id_type=IdType.RESIDENT_ID,
        id_number=ID,
        name="张三",
        certified_at=CERTIFIED_AT,
        certified_at_raw="2024-03-15T10:00:00+08:00",
        method=Method.FACE,
        face_match=FaceMatch.PASS,
        insured_region="110105",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def person(**changes: object) -> RosterRecord:
    base = RosterRecord(
        id_number=ID,
        name="张三",
        benefit_type="basic_pension",
        status=RosterStatus.ACTIVE,
        insured_region="110105",
        first_paid_on=dt.date(2010, 1, 1),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def run(c: Certification | None = None, r: RosterRecord | None = None) -> Decision:
    c = c or cert()
    return decide(c, r, Cycle.of(c), region_prefix=REGION)


# --- one test per outcome, in rule order -------------------------------------------------


def test_other_region_is_not_in_scope_even_with_a_roster_entry() -> None:
    d = run(cert(insured_region="320102"), person())
    assert (d.outcome, d.rule) == (Outcome.NOT_IN_SCOPE, "region_out_of_scope")
    assert d.evidence["insured_region"] == "320102"
    assert d.evidence["region_prefix"] == REGION
    assert "不在本地认证范围" in d.reason


def test_no_roster_entry_is_not_in_scope() -> None:
    d = run(cert(), None)
    assert (d.outcome, d.rule, d.review) == (Outcome.NOT_IN_SCOPE, "no_roster_entry", None)
    assert d.evidence["roster_entry"] is False


def test_terminated_benefit_is_not_in_scope() -> None:
    d = run(cert(), person(status=RosterStatus.TERMINATED))
    assert (d.outcome, d.rule) == (Outcome.NOT_IN_SCOPE, "benefit_terminated")
    assert d.evidence["roster_status"] == "terminated"


def test_terminated_beats_death_records() -> None:
    d = run(cert(), person(status=RosterStatus.TERMINATED, deceased_on=dt.date(2020, 1, 1)))
    assert d.outcome is Outcome.NOT_IN_SCOPE


def test_no_first_payment_is_not_in_scope() -> None:
    d = run(cert(), person(first_paid_on=None))
    assert (d.outcome, d.rule) == (Outcome.NOT_IN_SCOPE, "no_first_payment")
    assert d.evidence["roster_first_paid_on"] is None


def test_first_payment_on_the_cutoff_is_in_scope() -> None:
    d = run(cert(), person(first_paid_on=dt.date(2023, 12, 31)))
    assert d.outcome is Outcome.QUALIFIED
    assert d.evidence["payment_cutoff"] == "2023-12-31"
    assert d.evidence["cycle"] == 2024


def test_first_payment_the_day_after_the_cutoff_is_not_in_scope() -> None:
    d = run(cert(), person(first_paid_on=dt.date(2024, 1, 1)))
    assert (d.outcome, d.rule) == (Outcome.NOT_IN_SCOPE, "first_payment_after_cutoff")
    assert d.evidence["roster_first_paid_on"] == "2024-01-01"


def test_cycle_follows_the_local_date_not_utc() -> None:
    # 2023-12-31T20:00Z is 2024-01-01 04:00 in Beijing: the 2024 cycle.
    c = cert(certified_at=dt.datetime(2023, 12, 31, 20, 0, tzinfo=dt.UTC))
    assert c.local_date == dt.date(2024, 1, 1)
    assert Cycle.of(c) == Cycle(2024)
    assert run(c, person(first_paid_on=dt.date(2023, 12, 31))).outcome is Outcome.QUALIFIED
    late = run(c, person(first_paid_on=dt.date(2024, 1, 1)))
    assert late.rule == "first_payment_after_cutoff"


def test_death_on_the_certification_date_goes_to_review() -> None:
    d = run(cert(), person(deceased_on=DAY))
    assert d.outcome is None
    assert (d.review, d.rule) == (ReviewReason.DECEASED, "deceased")
    assert d.evidence["roster_deceased_on"] == DAY.isoformat()
    assert d.evidence["certification_local_date"] == DAY.isoformat()


def test_death_before_the_certification_goes_to_review() -> None:
    assert run(cert(), person(deceased_on=dt.date(2019, 5, 1))).review is ReviewReason.DECEASED


def test_death_the_day_after_is_qualified() -> None:
    d = run(cert(), person(deceased_on=DAY + dt.timedelta(days=1)))
    assert d.outcome is Outcome.QUALIFIED


def test_death_uses_the_local_date() -> None:
    # 2024-03-14T17:00Z is 2024-03-15 01:00 in Beijing: death recorded on the 15th counts.
    c = cert(certified_at=dt.datetime(2024, 3, 14, 17, 0, tzinfo=dt.UTC))
    assert run(c, person(deceased_on=DAY)).review is ReviewReason.DECEASED


def test_death_is_checked_before_a_name_or_face_failure() -> None:
    d = run(cert(name="李四", face_match=FaceMatch.FAIL), person(deceased_on=DAY))
    assert d.review is ReviewReason.DECEASED


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (DAY, DAY),  # a one-day term on the certification date
        (DAY, None),  # started that day, still serving
        (dt.date(2020, 1, 1), DAY),  # released that day
        (dt.date(2020, 1, 1), None),
        (dt.date(2020, 1, 1), dt.date(2030, 1, 1)),
    ],
)
def test_imprisonment_ranges_are_inclusive(start: dt.date, end: dt.date | None) -> None:
    d = run(cert(), person(imprisoned_from=start, imprisoned_until=end))
    assert (d.review, d.rule, d.outcome) == (ReviewReason.IMPRISONED, "imprisoned", None)
    assert d.evidence["roster_imprisoned_from"] == start.isoformat()
    assert d.evidence["roster_imprisoned_until"] == (end.isoformat() if end else None)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (DAY + dt.timedelta(days=1), None),  # starts the day after
        (dt.date(2020, 1, 1), DAY - dt.timedelta(days=1)),  # released the day before
        (None, dt.date(2030, 1, 1)),  # an end without a start is not a term
    ],
)
def test_outside_the_prison_term_is_qualified(start: dt.date | None, end: dt.date | None) -> None:
    assert run(cert(), person(imprisoned_from=start, imprisoned_until=end)).outcome is (
        Outcome.QUALIFIED
    )


def test_death_beats_imprisonment() -> None:
    d = run(cert(), person(deceased_on=DAY, imprisoned_from=dt.date(2020, 1, 1)))
    assert d.review is ReviewReason.DECEASED


def test_different_name_is_identity_mismatch() -> None:
    d = run(cert(name="张山"), person())
    assert (d.outcome, d.rule) == (Outcome.IDENTITY_MISMATCH, "name_mismatch")
    assert d.evidence["roster_name"] == "张三"
    assert d.evidence["certification_name_normalised"] == "张山"


def test_name_mismatch_beats_face_failure() -> None:
    d = run(cert(name="张山", face_match=FaceMatch.FAIL), person())
    assert d.outcome is Outcome.IDENTITY_MISMATCH


def test_face_failure_is_face_not_verified() -> None:
    d = run(cert(face_match=FaceMatch.FAIL), person())
    assert (d.outcome, d.rule) == (Outcome.FACE_NOT_VERIFIED, "face_check_failed")
    assert d.evidence["face_match"] == "fail"


def test_qualified_carries_everything_an_auditor_needs() -> None:
    d = run(cert(), person())
    assert (d.outcome, d.review, d.rule) == (Outcome.QUALIFIED, None, "qualified")
    assert d.reason == "认证通过"
    assert d.rule_version == RULE_VERSION
    assert dict(d.evidence) == {
        "certification_local_date": "2024-03-15",
        "insured_region": "110105",
        "region_prefix": "11",
        "roster_entry": True,
        "roster_status": "active",
        "roster_benefit_type": "basic_pension",
        "cycle": 2024,
        "payment_cutoff": "2023-12-31",
        "roster_first_paid_on": "2010-01-01",
        "comparison_evidence": [],
        "roster_deceased_on": None,
        "roster_imprisoned_from": None,
        "roster_imprisoned_until": None,
        "roster_name": "张三",
        "roster_name_normalised": "张三",
        "certification_name_normalised": "张三",
        "face_match": "pass",
    }


def test_suspended_is_qualified_because_certification_lifts_the_suspension() -> None:
    d = run(cert(), person(status=RosterStatus.SUSPENDED))
    assert (d.outcome, d.rule) == (Outcome.QUALIFIED, "qualified_lifts_suspension")
    assert "suspension" in d.reason
    assert d.evidence["roster_status"] == "suspended"


def test_evidence_holds_no_certification_identity() -> None:
    d = run(cert(), person())
    assert ID not in {str(v) for v in d.evidence.values()}
    assert "certified_at_raw" not in d.evidence


# --- name normalisation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("张三", "张 三"),
        ("张三", "张\u3000三"),  # ideographic space
        ("张三", " 张三\t"),
        ("张三", "张\u200b三"),  # zero-width space from a web page
        ("阿依古丽·买买提", "阿依古丽•买买提"),
        ("阿依古丽·买买提", "阿依古丽‧买买提"),
        ("阿依古丽·买买提", "阿依古丽・买买提"),
        ("阿依古丽·买买提", "阿依古丽･买买提"),
        ("阿依古丽·买买提", "阿依古丽∙买买提"),
        ("阿依古丽·买买提", "阿依古丽⋅买买提"),
        ("阿依古丽·买买提", "阿依古丽．买买提"),
        ("阿依古丽·买买提", "阿依古丽.买买提"),
        ("阿依古丽·买买提", "阿依古丽 · 买买提"),
        ("JOHN SMITH", "john smith"),
        ("ＪＯＨＮ　ＳＭＩＴＨ", "John Smith"),  # full-width letters and space
        ("Müller", "MÜLLER"),
    ],
)
def test_names_equal_after_normalisation(a: str, b: str) -> None:
    assert same_name(a, b)
    assert run(cert(name=b), person(name=a)).outcome is Outcome.QUALIFIED


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("张三", "张山"),
        ("张三", "張三"),  # traditional vs simplified is deliberately not unified
        ("于明", "於明"),
        ("阿依古丽·买买提", "阿依古丽买买提"),  # a missing separator is a difference
        ("李四", "李四四"),
    ],
)
def test_names_that_stay_different(a: str, b: str) -> None:
    assert not same_name(a, b)


def test_normalise_name_uses_one_middle_dot() -> None:
    assert normalise_name("Ａｌｉ・Ｈａｓｓａｎ") == "ali·hassan"


# --- properties -------------------------------------------------------------------------

_dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31))
_names = st.text(min_size=1, max_size=8)

_rosters = st.builds(
    RosterRecord,
    id_number=st.just(ID),
    name=_names,
    benefit_type=st.sampled_from(["basic_pension", "work_injury", "survivor"]),
    status=st.sampled_from(RosterStatus),
    insured_region=st.sampled_from(["110105", "", "320102"]),
    first_paid_on=st.none() | _dates,
    deceased_on=st.none() | _dates,
    imprisoned_from=st.none() | _dates,
    imprisoned_until=st.none() | _dates,
)

_certs = st.builds(
    Certification,
    certification_id=st.just("C1"),
    channel=st.sampled_from(Channel),
    id_type=st.sampled_from(IdType),
    id_number=st.just(ID),
    name=_names,
    # Any offset: the local date must come out right whatever the sender used.
    certified_at=st.datetimes(
        # hypothesis wants naive bounds and attaches the zone itself.
        min_value=dt.datetime(1950, 1, 1),  # noqa: DTZ001
        max_value=dt.datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.sampled_from(
            [dt.UTC, CST, dt.timezone(dt.timedelta(hours=-12)), dt.timezone(dt.timedelta(hours=14))]
        ),
    ),
    certified_at_raw=st.just("raw"),
    method=st.sampled_from(Method),
    face_match=st.sampled_from(FaceMatch),
    insured_region=st.sampled_from(["110105", "110000", "320102", "1", ""]),
)


@given(c=_certs, r=st.none() | _rosters, prefix=st.sampled_from(["11", "1101", "", "32"]))
def test_decide_is_total_and_decides_exactly_one_way(
    c: Certification, r: RosterRecord | None, prefix: str
) -> None:
    d = decide(c, r, Cycle.of(c), region_prefix=prefix)
    assert (d.outcome is None) != (d.review is None)
    assert d.rule
    assert d.reason
    assert d.rule_version == RULE_VERSION
    # A review only ever comes from local death or imprisonment records.
    if d.review is not None:
        assert r is not None
        assert d.rule in {"deceased", "imprisoned"}


@given(c=_certs, r=st.none() | _rosters, prefix=st.sampled_from(["11", ""]))
def test_decide_is_deterministic(c: Certification, r: RosterRecord | None, prefix: str) -> None:
    first = decide(c, r, Cycle.of(c), region_prefix=prefix)
    again = decide(c, r, Cycle.of(c), region_prefix=prefix)
    assert first == again
    assert dict(first.evidence) == dict(again.evidence)


@given(c=_certs, r=_rosters)
def test_evidence_alone_re_derives_the_scope_decision(c: Certification, r: RosterRecord) -> None:
    d = decide(c, r, Cycle.of(c), region_prefix="")
    paid = d.evidence.get("roster_first_paid_on")
    if d.rule == "first_payment_after_cutoff":
        assert paid is not None
        assert paid > d.evidence["payment_cutoff"]
    if d.outcome is Outcome.QUALIFIED:
        assert paid is not None
        assert paid <= d.evidence["payment_cutoff"]
        died = d.evidence["roster_deceased_on"]
        assert died is None or died > d.evidence["certification_local_date"]


@given(name=st.text(max_size=20))
def test_normalise_name_is_idempotent(name: str) -> None:
    once = normalise_name(name)
    assert normalise_name(once) == once


# Names of CJK Unified Ideographs and middle dots skip the normalisation rounds: that is
# only right if the rounds would return them unchanged.
_SHORTCUT_ALPHABET = [chr(c) for c in range(0x4E00, 0xA000)] + ["\u00b7"]


def test_every_code_point_of_the_shortcut_is_its_own_normal_form() -> None:
    changed = [c for c in _SHORTCUT_ALPHABET if _normalise_in_rounds(c) != c]
    assert changed == []


@given(st.text(alphabet=st.sampled_from(_SHORTCUT_ALPHABET), min_size=1, max_size=12))
def test_shortcut_names_are_their_own_normal_form(name: str) -> None:
    assert _normalise_in_rounds(name) == name
    assert normalise_name(name) == name


@given(
    st.text(
        alphabet=st.sampled_from(
            ["张", "阿", "·", "・", ".", " ", "\u3000", "\u200b", "Ａ", "a", "ß", "\u0308", "丽"]
        ),
        max_size=12,
    )
    | st.text(max_size=12)
)
def test_normalise_name_agrees_with_the_rounds_alone(name: str) -> None:
    assert normalise_name(name) == _normalise_in_rounds(name)
