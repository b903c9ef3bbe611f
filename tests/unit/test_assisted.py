"""Assisted certification: what may be recorded, and how it counts for the cycle."""

from __future__ import annotations

import datetime as dt

import pytest

from certrecon.cycle import CertificationFact, CycleStatus, Period, PersonFacts, person_status
from certrecon.cycle.assisted import AssistedCertification, AssistedHow, assisted_problems
from certrecon.domain import CST, CycleMode, RosterStatus
from tests.unit.test_reconcile import ID, person

NOW = dt.datetime(2024, 6, 1, 9, 0, tzinfo=CST)
CAL = CycleMode.CALENDAR_YEAR
ROLL = CycleMode.ROLLING_12_MONTHS


def assisted(**changes: object) -> AssistedCertification:
    fields: dict[str, object] = {
        "id_number": ID,
        "how": AssistedHow.HOME_VISIT,
        "by": "w001",
        "at": NOW,
        "note": "家访，本人在家",
    }
    fields.update(changes)
    return AssistedCertification(**fields)  # type: ignore[arg-type]


def test_a_home_visit_counts_as_certified_by_staff() -> None:
    cert = assisted(at=dt.datetime(2024, 5, 31, 23, 30, tzinfo=dt.UTC))  # 1 June in Beijing
    assert assisted_problems(cert, person(), CAL, NOW) == []
    fact = cert.fact()
    assert fact == CertificationFact(dt.date(2024, 6, 1), "assisted:home_visit", "staff:w001")
    status = person_status(PersonFacts(person(), (fact,)), Period.of(CAL, 2024))
    assert status.status is CycleStatus.CERTIFIED


@pytest.mark.parametrize(
    ("changes", "roster_changes", "mode", "problem"),
    [
        ({}, {"status": RosterStatus.TERMINATED}, CAL, "cycle (the benefit is terminated)"),
        ({}, {"first_paid_on": None}, CAL, "no first payment on the roster"),
        ({}, {"first_paid_on": dt.date(2024, 1, 1)}, CAL, "first payment 2024-01-01 is too"),
        ({}, {"first_paid_on": dt.date(2024, 6, 2)}, ROLL, "is too recent"),
        ({"by": " "}, {}, CAL, "--by is empty"),
        ({"by": "w\n001"}, {}, CAL, "--by contains control characters or a line break"),
        ({"at": NOW + dt.timedelta(minutes=11)}, {}, CAL, "more than 10 minutes in the future"),
        ({"at": dt.datetime(1999, 1, 1, tzinfo=CST)}, {}, CAL, "--at is before 2000-01-01"),
        ({"note": "x" * 2001}, {}, CAL, "--note is 2,001 characters long; at most 2,000"),
        ({"note": "a\x00b"}, {}, CAL, "--note contains a NUL character"),
    ],
)
def test_what_cannot_be_recorded(
    changes: dict[str, object], roster_changes: dict[str, object], mode: CycleMode, problem: str
) -> None:
    problems = assisted_problems(assisted(**changes), person(**roster_changes), mode, NOW)
    assert any(problem in p for p in problems), problems
    assert all(ID not in p for p in problems)


def test_rolling_mode_lets_a_new_recipient_certify() -> None:
    roster = person(first_paid_on=dt.date(2024, 1, 1))
    assert assisted_problems(assisted(), roster, ROLL, NOW) == []
    assert assisted_problems(assisted(note="line one\nline two\tend"), roster, ROLL, NOW) == []


def test_unknown_people_and_naive_times() -> None:
    assert assisted_problems(assisted(), None, CAL, NOW) == ["the ID number is not on the roster"]
    with pytest.raises(ValueError, match="timezone-aware"):
        assisted_problems(assisted(at=dt.datetime(2024, 1, 1)), person(), CAL, NOW)  # noqa: DTZ001
