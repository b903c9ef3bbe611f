"""The certification cycle in PostgreSQL: assisted certifications, and each in-scope person's
status derived from the ledger with set-based SQL (contract 1.1, "The certification cycle").

The status rules are those of :mod:`certrecon.cycle.status` (the pure functions are the
reference; the tests hold the two against each other). What the rules need of a person:

* certifications that count: a valid ministry-channel certification whose latest result
  revision is ``qualified`` (its local date), and assisted certifications;
* proof-of-life evidence (its event date);
* open certification review items (a review item without a staff decision);
* adverse evidence (death, imprisonment) and the first verdict naming each piece; an
  imprisonment is ended by the person's first release dated on or after it.

A municipal roster has millions of people, so nothing is computed per person in Python,
and the ledger is not aggregated per question either: the database keeps those facts per
person in the projection ``cycle_person`` as they are written (``sql/0009_cycle_person.sql``,
derivable from the ledger at any time), and a question reads one row per person there.
:func:`fetch_person_facts` reads the ledger itself, for the pure functions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from certrecon.cycle.actions import BenefitAction, resume_action
from certrecon.cycle.assisted import AssistedCertification, assisted_problems
from certrecon.cycle.lists import UNKNOWN_DISTRICT, CycleSummary, OutreachRow
from certrecon.cycle.status import (
    CertificationFact,
    CycleMode,
    CycleStatus,
    Period,
    PersonFacts,
)
from certrecon.domain import CST
from certrecon.errors import InputError
from certrecon.evidence.model import Evidence
from certrecon.reconcile.evidence import person_evidence
from certrecon.store.db import Conn
from certrecon.store.evidence import fetch_person_evidence, fetch_verdicts
from certrecon.store.results import OutboxMessage, enqueue
from certrecon.store.roster import fetch_roster

__all__ = [
    "AssistedRecorded",
    "PersonRow",
    "copy_list_csv",
    "cycle_rows",
    "cycle_summary",
    "fetch_person_facts",
    "person_rows",
    "publish_benefit_actions",
    "record_assisted",
    "resume_actions",
]

# ----------------------------------------------------------------------------------------
# Assisted certifications
# ----------------------------------------------------------------------------------------

_INSERT_ASSISTED = """
INSERT INTO assisted_certification (id_number, how, certified_at, local_date, decided_by, note)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, login, recorded_at
"""


@dataclass(frozen=True, slots=True)
class AssistedRecorded:
    id: int
    login: str | None
    recorded_at: dt.datetime
    actions: tuple[str, ...] = ()
    """Benefit actions published (a suspended person's ``resume``)."""


async def record_assisted(
    conn: Conn,
    cert: AssistedCertification,
    *,
    mode: CycleMode,
    now: dt.datetime,
    benefit_action_topic: str | None = None,
) -> AssistedRecorded:
    """Record one assisted certification, with the staff id and the database login; a
    suspended person's ``resume`` goes to ``benefit_action_topic`` in the same transaction.

    Raises :class:`InputError` (nothing recorded) when the contract refuses it: an ID
    number not in scope, a bad ``--by`` or ``--note``, an instant in the future.
    """
    async with conn.transaction():
        roster = (await fetch_roster(conn, [cert.id_number])).get(cert.id_number)
        problems = assisted_problems(cert, roster, mode, now)
        if problems:
            raise InputError("; ".join(problems))
        row = await conn.fetchrow(
            _INSERT_ASSISTED,
            cert.id_number,
            cert.how.value,
            cert.at,
            cert.local_date,
            f"staff:{cert.by}",
            cert.note,
        )
        assert row is not None
        actions: list[str] = []
        if benefit_action_topic is not None:
            found = await resume_actions(conn, [(cert.id_number, cert.local_date)], mode)
            actions = await publish_benefit_actions(conn, found, now, benefit_action_topic)
    return AssistedRecorded(row["id"], row["login"], row["recorded_at"], tuple(actions))


# ----------------------------------------------------------------------------------------
# Per-person facts, for one person or a few (the pure functions decide)
# ----------------------------------------------------------------------------------------

_CERTIFICATIONS = """
SELECT c.id_number, c.local_date AS on, c.channel AS how, r.decided_by
FROM certification c
JOIN LATERAL (SELECT outcome, decided_by FROM result r
              WHERE r.certification_id = c.certification_id
              ORDER BY r.revision DESC LIMIT 1) r ON true
WHERE c.valid AND c.id_number = ANY($1::text[]) AND r.outcome = 'qualified'
UNION ALL
SELECT id_number, local_date, 'assisted:' || how, decided_by
FROM assisted_certification WHERE id_number = ANY($1::text[])
"""
_OPEN_REVIEWS = """
SELECT c.id_number, count(*) AS open
FROM review_item q JOIN certification c ON c.certification_id = q.certification_id
WHERE c.id_number = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM staff_decision s WHERE s.certification_id = q.certification_id)
GROUP BY c.id_number
"""


async def fetch_person_facts(conn: Conn, id_numbers: Sequence[str]) -> dict[str, PersonFacts]:
    """Everything the cycle needs about these roster people, for the pure functions."""
    wanted = list(id_numbers)
    roster = await fetch_roster(conn, wanted)
    certs: dict[str, list[CertificationFact]] = {}
    for r in await conn.fetch(_CERTIFICATIONS, wanted):
        certs.setdefault(r["id_number"], []).append(
            CertificationFact(r["on"], r["how"], r["decided_by"])
        )
    reviews = {r["id_number"]: int(r["open"]) for r in await conn.fetch(_OPEN_REVIEWS, wanted)}
    verdicts = await fetch_verdicts(conn, wanted)
    evidence: dict[str, list[Evidence]] = await fetch_person_evidence(conn, wanted)
    return {
        key: PersonFacts(
            roster=record,
            certifications=tuple(sorted(certs.get(key, ()), key=lambda c: (c.on, c.how))),
            evidence=person_evidence(evidence.get(key, ()), verdicts.get(key, ())),
            open_reviews=reviews.get(key, 0),
        )
        for key, record in roster.items()
    }


# ----------------------------------------------------------------------------------------
# Set-based status for the whole roster
# ----------------------------------------------------------------------------------------

# $1 mode ('calendar_year' | 'rolling_12_months'), $2 cycle year, $3 as-of date.
# One row per roster person (not terminated, with a first payment), read from the
# projection cycle_person (sql/0009) that the database keeps from the ledger: its sorted
# certification and proof-of-life days answer any year and as-of date by binary search
# (width_bucket: how many days are on or before a day), without aggregating the ledger.
# The parameters are used in place (no CTE of them), so the scan can run in parallel.
_STATUS = """
WITH person AS (
    SELECT x.id_number, x.name, x.insured_region, x.benefit_type, x.first_paid_on,
           -- The latest certification and proof of life on or before the as-of date, and
           -- (calendar mode) on or before it within the cycle year.
           x.cert_days[width_bucket($3::date, x.cert_days)] AS last_certified_on,
           x.proof_days[width_bucket($3::date, x.proof_days)] AS last_proof,
           x.cert_days[width_bucket(least($3::date, make_date($2::int, 12, 31)), x.cert_days)]
               AS year_certified_on,
           x.proof_days[width_bucket(least($3::date, make_date($2::int, 12, 31)), x.proof_days)]
               AS year_proof,
           x.open_reviews > 0 OR x.evidence_review AS under_review,
           COALESCE(x.lost @> $3::date, false) AS lost
    FROM cycle_person x
    WHERE x.roster_status <> 'terminated' AND x.first_paid_on IS NOT NULL
),
judged AS (
    SELECT x.*,
           CASE WHEN $1::text = 'rolling_12_months' THEN
               (COALESCE(greatest(x.last_certified_on, x.last_proof), x.first_paid_on)
                + interval '12 months')::date
           END AS valid_until,
           CASE WHEN $1::text = 'rolling_12_months'
                THEN x.first_paid_on <= $3::date
                     AND (x.last_certified_on IS NOT NULL OR x.last_proof IS NOT NULL
                          OR (x.first_paid_on + interval '12 months')::date < $3::date)
                ELSE x.first_paid_on <= make_date($2::int - 1, 12, 31)
           END AS in_scope,
           CASE WHEN x.lost THEN 'eligibility_lost'
                WHEN x.under_review THEN 'pending_review'
                WHEN CASE WHEN $1::text = 'rolling_12_months'
                          THEN $3::date <= (x.last_certified_on + interval '12 months')::date
                          ELSE x.year_certified_on >= make_date($2::int, 1, 1) END
                     THEN 'certified'
                WHEN CASE WHEN $1::text = 'rolling_12_months'
                          THEN $3::date <= (x.last_proof + interval '12 months')::date
                          ELSE x.year_proof >= make_date($2::int, 1, 1) END
                     THEN 'confirmed_by_evidence'
                ELSE 'not_certified'
           END AS status
    FROM person x
)
"""

# Grouped by district only (a handful of groups the planner can count on), so the scan and
# the counting run in parallel workers.
_SUMMARY = (
    _STATUS
    + """
SELECT COALESCE(insured_region, '') AS district,
       count(*) FILTER (WHERE status = 'certified') AS certified,
       count(*) FILTER (WHERE status = 'confirmed_by_evidence') AS confirmed_by_evidence,
       count(*) FILTER (WHERE status = 'pending_review') AS pending_review,
       count(*) FILTER (WHERE status = 'eligibility_lost') AS eligibility_lost,
       count(*) FILTER (WHERE status = 'not_certified') AS not_certified
FROM judged WHERE in_scope
GROUP BY 1
"""
)

# $4 expiring horizon (NULL: none). People due (in scope, not certified), and with a horizon
# also those whose valid_until falls within it, unless under review or lost.
_LISTED = """
FROM judged
WHERE (in_scope AND status = 'not_certified')
   OR ($4::date IS NOT NULL AND first_paid_on <= $3::date
       AND valid_until BETWEEN $3::date AND $4::date
       AND status <> 'pending_review' AND NOT lost)
ORDER BY id_number
"""
_LIST = (
    _STATUS
    + """
SELECT id_number, name, COALESCE(insured_region, '') AS insured_region, benefit_type,
       status, last_certified_on, valid_until
"""
    + _LISTED
)

# The same list as the cells of the outreach CSV (OutreachRow.cells, OUTREACH_HEADER), for
# COPY: a cell a spreadsheet would run as a formula gets a leading quote, an empty cell is
# NULL (written bare, as Python's csv module writes an empty string).
_LIST_CELLS = (
    _STATUS
    + """
SELECT id_number,
       CASE WHEN left(name, 1) IN ('=', '+', '-', '@') THEN '''' || name
            ELSE NULLIF(name, '') END,
       NULLIF(insured_region, ''),
       CASE WHEN left(benefit_type, 1) IN ('=', '+', '-', '@') THEN '''' || benefit_type
            ELSE NULLIF(benefit_type, '') END,
       status, to_char(last_certified_on, 'YYYY-MM-DD')
"""
    + _LISTED
)


_PEOPLE = (
    _STATUS
    + """
SELECT id_number, in_scope, status, valid_until, last_certified_on
FROM judged WHERE id_number = ANY($4::text[])
"""
)


@dataclass(frozen=True, slots=True)
class PersonRow:
    """One person as the set-based query judges them."""

    in_scope: bool
    status: CycleStatus
    valid_until: dt.date | None
    last_certified_on: dt.date | None


async def person_rows(
    conn: Conn, period: Period, id_numbers: Sequence[str]
) -> dict[str, PersonRow]:
    """The set-based judgement of a few people (not terminated, with a first payment)."""
    rows = await conn.fetch(_PEOPLE, *_args(period), list(id_numbers))
    return {
        r["id_number"]: PersonRow(
            r["in_scope"], CycleStatus(r["status"]), r["valid_until"], r["last_certified_on"]
        )
        for r in rows
    }


def _args(period: Period) -> tuple[str, int, dt.date]:
    return (period.mode.value, period.year, period.as_of)


# The outreach list of a municipal roster (hundreds of thousands of rows) is sorted in
# memory rather than spilled to disk; the setting lasts until the end of the caller's
# transaction.
_WORK_MEM = "SET LOCAL work_mem = '256MB'"


async def cycle_summary(conn: Conn, period: Period) -> CycleSummary:
    """Counts of in-scope people by status and by district (``cycle status``)."""
    summary = CycleSummary(period.year)
    if conn.is_in_transaction():
        await conn.execute(_WORK_MEM)
        rows = await conn.fetch(_SUMMARY, *_args(period))
    else:
        async with conn.transaction(readonly=True):
            await conn.execute(_WORK_MEM)
            rows = await conn.fetch(_SUMMARY, *_args(period))
    for r in rows:
        for status in CycleStatus:
            if r[status.value]:
                summary.add(r["district"] or UNKNOWN_DISTRICT, status, r[status.value])
    return summary


def _horizon(period: Period, expiring_within: int | None) -> dt.date | None:
    if expiring_within is None:
        return None
    if period.mode is not CycleMode.ROLLING_12_MONTHS:
        raise InputError("--expiring-within needs the rolling_12_months cycle mode")
    if expiring_within < 0:
        raise InputError("--expiring-within must not be negative")
    return period.as_of + dt.timedelta(days=expiring_within)


async def cycle_rows(
    conn: asyncpg.Connection,
    period: Period,
    *,
    expiring_within: int | None = None,
    batch: int = 10_000,
) -> AsyncIterator[OutreachRow]:
    """The outreach list (or, without ``expiring_within``, the suspend candidates) in ID
    number order, streamed from a cursor: the caller must hold a transaction open."""
    horizon = _horizon(period, expiring_within)
    await conn.execute(_WORK_MEM)
    cursor = conn.cursor(_LIST, *_args(period), horizon, prefetch=batch)
    async for r in cursor:
        yield OutreachRow(
            r["id_number"],
            r["name"],
            r["insured_region"],
            r["benefit_type"],
            CycleStatus(r["status"]),
            r["last_certified_on"],
            r["valid_until"],
        )


async def copy_list_csv(
    conn: asyncpg.Connection,
    period: Period,
    output: Callable[[bytes], Coroutine[Any, Any, None]],
    *,
    expiring_within: int | None = None,
) -> int:
    """The list of :func:`cycle_rows` as CSV lines without the header, in ID number order,
    written by PostgreSQL (COPY) to ``output`` chunk by chunk: a million people are not
    turned into Python objects one by one. Returns the number of people."""
    horizon = _horizon(period, expiring_within)
    if conn.is_in_transaction():
        await conn.execute(_WORK_MEM)
    status = await conn.copy_from_query(
        _LIST_CELLS, *_args(period), horizon, output=output, format="csv"
    )
    return int(status.rsplit(" ", 1)[-1])


# ----------------------------------------------------------------------------------------
# Benefit actions
# ----------------------------------------------------------------------------------------

_SUSPENDED = """
SELECT id_number FROM roster WHERE id_number = ANY($1::text[]) AND status = 'suspended'
"""


async def resume_actions(
    conn: Conn, bases: Sequence[tuple[str, dt.date]], mode: CycleMode
) -> list[BenefitAction]:
    """The ``resume`` actions that certifications or proof of life dated ``bases`` (ID
    number, local date) call for, read in the caller's transaction after they were
    recorded: only suspended people who are now certified or confirmed for that cycle."""
    if not bases:
        return []
    wanted = sorted({k for k, _ in bases})
    suspended = [r["id_number"] for r in await conn.fetch(_SUSPENDED, wanted)]
    if not suspended:
        return []
    facts = await fetch_person_facts(conn, suspended)
    actions: dict[str, BenefitAction] = {}
    for id_number, day in sorted(bases, key=lambda b: (b[1], b[0])):
        person = facts.get(id_number)
        if person is None:
            continue
        action = resume_action(person, Period.of(mode, day.year, day))
        if action is not None:
            actions.setdefault(action.action_id, action)
    return list(actions.values())


async def publish_benefit_actions(
    conn: Conn, actions: list[BenefitAction], now: dt.datetime, topic: str
) -> list[str]:
    """Record and enqueue benefit actions not published before (by ``action_id``), in one
    insert and one enqueue whatever their number."""
    # One row per action id (a repeat in the list would be enqueued twice).
    actions = list({a.action_id: a for a in actions}.values())
    if not actions:
        return []
    rows = await conn.fetch(
        """
        INSERT INTO benefit_action (action_id, action, id_number, year, reason, decided_by,
                                    suspended_on, effective_date, basis, basis_date,
                                    raised_at)
        SELECT a.*, $11::timestamptz
        FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[],
                    $7::date[], $8::date[], $9::text[], $10::date[]) AS a
        ON CONFLICT (action_id) DO NOTHING
        RETURNING action_id
        """,
        [a.action_id for a in actions],
        [a.action.value for a in actions],
        [a.id_number for a in actions],
        [a.year for a in actions],
        [a.reason for a in actions],
        [a.decided_by for a in actions],
        [a.suspended_on for a in actions],
        [a.effective_date for a in actions],
        [a.basis for a in actions],
        [a.basis_date for a in actions],
        now,
    )
    inserted = {r["action_id"] for r in rows}
    fresh = [a for a in actions if a.action_id in inserted]
    at = now.astimezone(CST)
    await enqueue(
        conn,
        [
            OutboxMessage(
                a.action_id,
                "benefit_action",
                topic,
                a.id_number.encode(),
                a.message(at).to_bytes(),
            )
            for a in fresh
        ],
    )
    return [a.action_id for a in fresh]
