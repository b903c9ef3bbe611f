"""Person-level review items (逐人核实) opened by death or imprisonment evidence: the queue,
one item's file, and staff verdicts (contract 1.1, "Big-data comparison evidence").

An item is named ``E<n>`` (``n``: the evidence's row id) in ``certrecon review``. A verdict
covers every finding of the person that is open when it is given (evidence arriving later
opens a new item). After it, in the same transaction:

* the person's certifications the evidence held (decided ``comparison_evidence`` and not
  answered yet) go back to the rules, with the evidence as now judged: a rejection lets
  them be answered without it, a confirmation answers those dated on or after the loss
  ``eligibility_lost``; each answer is a result (``decided_by: rules``) published through
  the outbox, and closes the certification's review item with a staff decision naming the
  verdict's author;
* a confirmation publishes the ``stop`` benefit action, once per person and year
  (``action_id``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from certrecon.calendar import WorkingCalendar
from certrecon.cycle.actions import BenefitAction, stop_actions
from certrecon.cycle.status import PersonFacts
from certrecon.domain import CST
from certrecon.errors import ReviewError
from certrecon.reconcile.evidence import Verdict
from certrecon.store.cycle import publish_benefit_actions
from certrecon.store.evidence import fetch_judged_evidence
from certrecon.store.results import record_results
from certrecon.store.roster import fetch_roster_versions
from certrecon.text import MAX_NOTE_LENGTH, check_free_text

if TYPE_CHECKING:
    from certrecon.worker.pipeline import PipelineConfig

__all__ = [
    "EvidenceDecision",
    "EvidenceItem",
    "decide_evidence",
    "evidence_item",
    "is_evidence_item",
    "list_evidence_items",
]

_NAME = re.compile(r"E([1-9][0-9]{0,17})")


def is_evidence_item(name: str) -> bool:
    """True for a person-level item's name, ``E<n>``."""
    return _NAME.fullmatch(name) is not None


def _ref(name: str) -> int:
    found = _NAME.fullmatch(name)
    if found is None:
        raise ReviewError(f"{name!r} is not an evidence review item (E<number>)")
    return int(found.group(1))


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One piece of death or prison evidence before staff. ``id_number`` and ``name`` are
    real: mask them before showing them in a list."""

    name: str
    id_number: str
    person_name: str
    kind: str
    source: str
    evidence_id: str
    event_date: dt.date
    queued_at: dt.datetime
    released_on: dt.date | None
    verdict: str | None
    effective_date: dt.date | None
    decided_by: str | None
    login: str | None
    decided_at: dt.datetime | None
    note: str | None

    @property
    def open(self) -> bool:
        return self.verdict is None and self.released_on is None


_ITEMS = """
WITH item AS (
SELECT i.evidence_ref, e.id_number, e.name, e.kind, e.source, e.evidence_id, e.event_date,
       i.queued_at, v.verdict, v.effective_date, v.decided_by, v.login, v.decided_at, v.note,
       CASE WHEN e.kind = 'imprisonment' THEN
           (SELECT min(r.event_date) FROM comparison_evidence r
            WHERE r.id_number = e.id_number AND r.kind = 'release'
              AND r.event_date >= e.event_date)
       END AS released_on
FROM evidence_review_item i
JOIN comparison_evidence e ON e.id = i.evidence_ref
LEFT JOIN LATERAL (SELECT * FROM evidence_verdict v WHERE v.evidence_ref = i.evidence_ref
                   ORDER BY v.id LIMIT 1) v ON true
)
"""


# Constants only: nothing of the input is ever part of the text.
_QUEUE = (
    _ITEMS  # noqa: S608
    + """SELECT * FROM item
WHERE $1 OR (verdict IS NULL AND released_on IS NULL)
ORDER BY (verdict IS NOT NULL OR released_on IS NOT NULL), queued_at, evidence_ref
LIMIT $2
"""
)

_ONE = _ITEMS + "SELECT * FROM item WHERE evidence_ref = $1"  # noqa: S608
_PERSON = _ITEMS + "SELECT * FROM item WHERE id_number = $1 ORDER BY evidence_ref"  # noqa: S608


def _item(r: asyncpg.Record) -> EvidenceItem:
    return EvidenceItem(
        name=f"E{r['evidence_ref']}",
        id_number=r["id_number"],
        person_name=r["name"],
        kind=r["kind"],
        source=r["source"],
        evidence_id=r["evidence_id"],
        event_date=r["event_date"],
        queued_at=r["queued_at"],
        released_on=r["released_on"],
        verdict=r["verdict"],
        effective_date=r["effective_date"],
        decided_by=r["decided_by"],
        login=r["login"],
        decided_at=r["decided_at"],
        note=r["note"],
    )


async def list_evidence_items(
    conn: asyncpg.Connection, *, include_closed: bool = False, limit: int = 1000
) -> list[EvidenceItem]:
    """Open items, oldest first (then the closed ones, when asked for)."""
    rows = await conn.fetch(_QUEUE, include_closed, limit)
    return [_item(r) for r in rows]


async def evidence_item(conn: asyncpg.Connection, name: str) -> EvidenceItem:
    """One item; :class:`ReviewError` when there is none of that name."""
    row = await conn.fetchrow(_ONE, _ref(name))
    if row is None:
        raise ReviewError(f"unknown evidence review item {name!r}")
    return _item(row)


async def person_items(conn: asyncpg.Connection, id_number: str) -> list[EvidenceItem]:
    """Every item of one person, oldest first."""
    rows = await conn.fetch(_PERSON, id_number)
    return [_item(r) for r in rows]


@dataclass(frozen=True, slots=True)
class EvidenceDecision:
    """What a verdict did."""

    decision_id: str
    covered: tuple[str, ...]
    """The items the verdict closed."""
    answered: tuple[tuple[str, str], ...]
    """Held certifications answered now: (certification_id, outcome)."""
    actions: tuple[str, ...]
    """Benefit actions published (action ids)."""


_HELD = """
SELECT c.certification_id, c.topic, c.kafka_partition, c.kafka_offset, c.raw, c.received_at
FROM certification c
JOIN decision d USING (certification_id)
WHERE c.id_number = $1 AND d.review_reason = 'comparison_evidence'
  AND NOT EXISTS (SELECT 1 FROM result r WHERE r.certification_id = c.certification_id)
  AND NOT EXISTS (SELECT 1 FROM staff_decision s WHERE s.certification_id = c.certification_id)
ORDER BY c.certification_id
"""
_PERSON_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('certrecon.evidence:' || $1, 0))"


async def decide_evidence(
    conn: asyncpg.Connection,
    name: str,
    *,
    verdict: Verdict,
    effective_date: dt.date | None,
    staff_id: str,
    note: str | None,
    now: dt.datetime,
    calendar: WorkingCalendar,
    config: PipelineConfig,
    benefit_action_topic: str,
) -> EvidenceDecision:
    """Record a staff verdict on the person of item ``name`` and what follows from it.

    ``config`` is the worker's :class:`~certrecon.worker.pipeline.PipelineConfig` (the
    rules run as the worker runs them). Raises :class:`ReviewError` (nothing recorded) for
    an unknown or already closed item, a confirmation without an effective date or with
    one in the future, a rejection with one.
    """
    from certrecon.worker.pipeline import (
        Answered,
        Inbound,
        Pending,
        finish_record,
        start_record,
    )

    check_free_text("--by", staff_id, max_length=64)
    if note is not None:
        check_free_text("--note", note, max_length=MAX_NOTE_LENGTH, multiline=True)
    if (verdict is Verdict.CONFIRMED) != (effective_date is not None):
        raise ReviewError("confirming evidence needs --effective-date; rejecting takes none")
    today = now.astimezone(CST).date()
    if effective_date is not None and effective_date > today:
        raise ReviewError("--effective-date is in the future")
    async with conn.transaction():
        item = await evidence_item(conn, name)
        await conn.execute(_PERSON_LOCK, item.id_number)
        items = await person_items(conn, item.id_number)
        if not next(i for i in items if i.name == name).open:
            raise ReviewError(f"{name} is closed already; nothing was recorded")
        covered = [i for i in items if i.open]
        decision_id = f"{name}@{now.astimezone(dt.UTC).isoformat(timespec='microseconds')}"
        await conn.execute(
            """
            INSERT INTO evidence_verdict (decision_id, evidence_ref, verdict, effective_date,
                                          decided_by, note, decided_at)
            SELECT $1, ref, $2, $3, $4, $5, $6 FROM unnest($7::bigint[]) AS ref
            """,
            decision_id,
            verdict.value,
            effective_date,
            f"staff:{staff_id}",
            note,
            now,
            [int(i.name[1:]) for i in covered],
        )
        judged = (await fetch_judged_evidence(conn, [item.id_number])).get(item.id_number)
        assert judged is not None
        roster = (await fetch_roster_versions(conn, [item.id_number])).get(item.id_number)
        answered: list[tuple[str, str]] = []
        results = []
        closing = []
        for held in await conn.fetch(_HELD, item.id_number):
            record = Inbound(
                held["topic"],
                held["kafka_partition"],
                held["kafka_offset"],
                int(held["received_at"].timestamp() * 1000),
                None,
                bytes(held["raw"]),
            )
            started = start_record(
                record, config=config, calendar=calendar, received_at=held["received_at"]
            )
            if not isinstance(started, Pending):
                continue
            started = Pending(started.row, started.certification, now)
            outcome = finish_record(
                started,
                None if roster is None else roster.record,
                config=config,
                calendar=calendar,
                roster_version=None if roster is None else roster.version,
                comparison=judged,
            )
            if isinstance(outcome, Answered):
                results.append(outcome.result)
                closing.append((held["certification_id"], outcome.result.message.result_id))
                answered.append((held["certification_id"], outcome.decision.outcome or ""))
        await record_results(conn, results, topic=config.result_topic)
        for certification_id, result_id in closing:
            outcome_text = next(o for c, o in answered if c == certification_id)
            await conn.execute(
                """
                INSERT INTO staff_decision (certification_id, result_id, outcome, decided_by,
                                            note, decided_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                """,
                certification_id,
                result_id,
                outcome_text,
                f"staff:{staff_id}",
                f"released by the verdict {decision_id} on comparison evidence",
                now,
            )
        actions: list[BenefitAction] = []
        if verdict is Verdict.CONFIRMED and roster is not None:
            actions = stop_actions(PersonFacts(roster.record, evidence=judged))
        published = await publish_benefit_actions(conn, actions, now, benefit_action_topic)
    return EvidenceDecision(
        decision_id, tuple(i.name for i in covered), tuple(answered), tuple(published)
    )
