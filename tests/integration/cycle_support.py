"""Generated people with cycle facts, loaded into the ledger in bulk, and an independent
reading of the contract's cycle rules to check the service against."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from certrecon.domain import CST
from certrecon.synthetic import make_id_number

REGIONS = ("110101", "110105", "110108", "")


@dataclass
class Cert:
    on: dt.date
    outcomes: list[str]
    """Result revisions in order; empty: no result yet."""
    review: str | None = None
    """'open' or 'decided' review item."""
    valid: bool = True


@dataclass
class Adverse:
    kind: str
    on: dt.date
    verdict: str | None = None
    effective: dt.date | None = None


@dataclass
class Person:
    id_number: str
    name: str
    status: str
    first_paid_on: dt.date | None
    region: str
    certs: list[Cert] = field(default_factory=list)
    assisted: list[dt.date] = field(default_factory=list)
    proof: list[dt.date] = field(default_factory=list)
    adverse: list[Adverse] = field(default_factory=list)
    releases: list[dt.date] = field(default_factory=list)


def _day(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randrange((end - start).days + 1))


def make_people(n: int, seed: int, *, start: int = 0) -> list[Person]:
    rng = random.Random(seed)
    lo, hi = dt.date(2024, 1, 1), dt.date(2026, 11, 27)
    people = []
    for i in range(start, start + n):
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=i // 1000)
        person = Person(
            id_number=make_id_number("110105", birth, i % 1000),
            name=f"测试{i}",
            status=rng.choices(["active", "suspended", "terminated"], [80, 12, 8])[0],
            first_paid_on=None
            if rng.random() < 0.03
            else _day(rng, dt.date(2015, 1, 1), dt.date(2026, 10, 1)),
            region=rng.choice(REGIONS),
        )
        for _ in range(rng.choices([0, 1, 2], [45, 40, 15])[0]):
            outcomes = rng.choices(
                [
                    [],
                    ["qualified"],
                    ["not_in_scope"],
                    ["qualified", "eligibility_lost"],
                    ["identity_mismatch", "qualified"],
                ],
                [8, 60, 12, 5, 15],
            )[0]
            review = None
            if not outcomes:
                review = "open"
            elif rng.random() < 0.1:
                review = "decided"
            person.certs.append(
                Cert(_day(rng, lo, hi), list(outcomes), review, valid=rng.random() > 0.02)
            )
        if rng.random() < 0.06:
            person.assisted.append(_day(rng, lo, hi))
        for _ in range(rng.choices([0, 1, 2], [40, 40, 20])[0]):
            person.proof.append(_day(rng, lo, hi))
        for kind, chance in (("death", 0.03), ("imprisonment", 0.03)):
            if rng.random() < chance:
                on = _day(rng, lo, hi)
                verdict = rng.choice([None, "confirmed", "rejected"])
                effective = (
                    on + dt.timedelta(days=rng.randrange(-10, 30))
                    if verdict == "confirmed"
                    else None
                )
                person.adverse.append(Adverse(kind, on, verdict, effective))
        if rng.random() < 0.04:
            person.releases.append(_day(rng, lo, hi))
        people.append(person)
    return people


def _at(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, 10, tzinfo=CST)


async def load(conn: asyncpg.Connection, people: list[Person]) -> None:
    """Every fact of ``people`` as ledger rows, written in bulk."""
    await conn.copy_records_to_table(
        "roster_version",
        records=[
            (p.id_number, p.name, "basic_pension", p.status, p.first_paid_on, p.region or None)
            for p in people
        ],
        columns=("id_number", "name", "benefit_type", "status", "first_paid_on", "insured_region"),
    )
    certs, results, reviews, decisions = [], [], [], []
    for p in people:
        for n, c in enumerate(p.certs):
            cid = f"C-{p.id_number}-{n}"
            at = _at(c.on)
            certs.append((cid, p.id_number if c.valid else None, c.valid, at, c.on))
            for rev, outcome in enumerate(c.outcomes, start=1):
                results.append((cid, rev, f"{cid}:{rev}", outcome, at))
            if c.review is not None:
                reviews.append((cid, at))
                if c.review == "decided":
                    decisions.append((cid, at))
    if certs:
        await _insert_certifications(conn, certs)
    if results:
        await conn.execute(
            """
            INSERT INTO result (certification_id, revision, result_id, outcome, reason,
                                decided_at, decided_by)
            SELECT c, r, i, o, 'test', t, CASE WHEN r = 1 THEN 'rules' ELSE 'staff:t' END
            FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[])
                 AS x(c, r, i, o, t)
            """,
            *map(list, zip(*results, strict=True)),
        )
    if reviews:
        await conn.execute(
            "INSERT INTO review_item (certification_id, reason, queued_at)"
            " SELECT c, 'deceased', t FROM unnest($1::text[], $2::timestamptz[]) AS x(c, t)",
            *map(list, zip(*reviews, strict=True)),
        )
    if decisions:
        await conn.execute(
            "INSERT INTO staff_decision (certification_id, outcome, decided_by, decided_at)"
            " SELECT c, 'qualified', 'staff:t', t"
            " FROM unnest($1::text[], $2::timestamptz[]) AS x(c, t)",
            *map(list, zip(*decisions, strict=True)),
        )
    assisted = [(p.id_number, _at(d), d) for p in people for d in p.assisted]
    if assisted:
        await conn.execute(
            "INSERT INTO assisted_certification (id_number, how, certified_at, local_date,"
            " decided_by) SELECT i, 'offline', t, d, 'staff:t'"
            " FROM unnest($1::text[], $2::timestamptz[], $3::date[]) AS x(i, t, d)",
            *map(list, zip(*assisted, strict=True)),
        )
    evidence = []
    for p in people:
        for n, d in enumerate(p.proof):
            evidence.append((f"P{n}-{p.id_number}", "proof_of_life", p.id_number, p.name, d))
        for n, d in enumerate(p.releases):
            evidence.append((f"R{n}-{p.id_number}", "release", p.id_number, p.name, d))
        for n, a in enumerate(p.adverse):
            evidence.append((f"A{n}-{p.id_number}", a.kind, p.id_number, p.name, a.on))
    if evidence:
        await conn.execute(
            """
            WITH new AS (
                INSERT INTO comparison_evidence (source, evidence_id, kind, id_number, name,
                    event_date, via, file_name, file_sha256, file_line)
                SELECT 'test:feed', e, k, i, n, d, 'file', 'feed.csv', '\\x00', 2
                FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::date[])
                     AS x(e, k, i, n, d)
                RETURNING id, kind, id_number
            )
            INSERT INTO evidence_review_item (evidence_ref, id_number)
            SELECT id, id_number FROM new WHERE kind IN ('death', 'imprisonment')
            """,
            *map(list, zip(*evidence, strict=True)),
        )
    verdicts = [
        (f"A{n}-{p.id_number}", a.verdict, a.effective, _at(a.on))
        for p in people
        for n, a in enumerate(p.adverse)
        if a.verdict is not None
    ]
    if verdicts:
        await conn.execute(
            """
            INSERT INTO evidence_verdict (decision_id, evidence_ref, verdict, effective_date,
                                          decided_by, decided_at)
            SELECT 'V-' || e.evidence_id, e.id, x.v, x.f, 'staff:t', x.t
            FROM unnest($1::text[], $2::text[], $3::date[], $4::timestamptz[]) AS x(e, v, f, t)
            JOIN comparison_evidence e ON e.source = 'test:feed' AND e.evidence_id = x.e
            """,
            *map(list, zip(*verdicts, strict=True)),
        )


_MISMATCHES = """
SELECT 'kept' AS side, * FROM (
    SELECT * FROM cycle_person p WHERE NOT cycle_person_empty(p)
    EXCEPT ALL
    SELECT * FROM cycle_person_derived(NULL) d WHERE NOT cycle_person_empty(d)) k
UNION ALL
SELECT 'derived', * FROM (
    SELECT * FROM cycle_person_derived(NULL) d WHERE NOT cycle_person_empty(d)
    EXCEPT ALL
    SELECT * FROM cycle_person p WHERE NOT cycle_person_empty(p)) d
"""


async def projection_mismatches(conn: asyncpg.Connection) -> list[dict[str, object]]:
    """Rows of the projection the database kept as facts were written that differ from
    the projection derived from the whole ledger now (empty: they agree)."""
    return [dict(r) for r in await conn.fetch(_MISMATCHES)]


# ----------------------------------------------------------------------------------------
# The contract's rules, read independently of certrecon.cycle
# ----------------------------------------------------------------------------------------


def _plus_year(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


def certified_days(p: Person) -> list[dt.date]:
    days = [c.on for c in p.certs if c.valid and c.outcomes and c.outcomes[-1] == "qualified"]
    return days + p.assisted


def expected_status(p: Person, rolling: bool, year: int, as_of: dt.date) -> str | None:
    """The person's status, or None when not in scope."""
    if p.status == "terminated" or p.first_paid_on is None:
        return None
    basis = [d for d in certified_days(p) + p.proof if d <= as_of]
    if rolling:
        if p.first_paid_on > as_of:
            return None
        if not basis and not _plus_year(p.first_paid_on) < as_of:
            return None
    elif p.first_paid_on > dt.date(year - 1, 12, 31):
        return None
    return judge(p, rolling, year, as_of)


def judge(p: Person, rolling: bool, year: int, as_of: dt.date) -> str:
    def ended(a: Adverse) -> dt.date | None:
        if a.kind != "imprisonment":
            return None
        later = [r for r in p.releases if r >= a.on]
        return min(later) if later else None

    for a in p.adverse:
        if a.verdict == "confirmed" and a.effective is not None and a.effective <= as_of:
            end = ended(a)
            if end is None or as_of < end:
                return "eligibility_lost"
    if any(c.review == "open" for c in p.certs if c.valid):
        return "pending_review"
    if any(a.verdict is None and ended(a) is None for a in p.adverse):
        return "pending_review"

    def counts(day: dt.date) -> bool:
        if rolling:
            return day <= as_of <= _plus_year(day)
        return day.year == year and day <= as_of

    if any(counts(d) for d in certified_days(p)):
        return "certified"
    if any(counts(d) for d in p.proof):
        return "confirmed_by_evidence"
    return "not_certified"


async def _insert_certifications(
    conn: asyncpg.Connection, certs: Sequence[tuple[object, ...]]
) -> None:
    await conn.execute(
        """
        INSERT INTO certification (certification_id, channel, topic, kafka_partition,
            kafka_offset, id_number, valid, certified_at, local_date, due_date, deadline,
            provisional, content_sha256, raw, received_at)
        SELECT c, '12333', 'mohrss.certification.12333', 0, 0, i, v, t, d, d + 7, t, false,
               '\\x00', '\\x00', t
        FROM unnest($1::text[], $2::text[], $3::bool[], $4::timestamptz[], $5::date[])
             AS x(c, i, v, t, d)
        """,
        *map(list, zip(*certs, strict=True)),
    )
