"""Reads for the audit replay: the ledger's facts about the certifications of a window,
the calendar events, the partitions' earliest recorded positions. Read-only: the caller
holds one READ ONLY REPEATABLE READ transaction, so every read sees one committed state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic_core import from_json

from certrecon.domain import RosterRecord, RosterStatus
from certrecon.replay.model import CalendarEvent, Recorded, RecordedDecision, RecordedResult
from certrecon.store.db import Conn

_CERTIFICATIONS = """
SELECT c.certification_id, c.channel, c.topic, c.kafka_partition, c.kafka_offset, c.id_number,
       c.valid,
       c.local_date, c.due_date, c.provisional, c.content_sha256, sha256(c.raw) AS raw_sha256,
       c.received_at, cd.due_date AS due_in_force, cd.deadline AS deadline_in_force,
       d.certification_id IS NOT NULL AS decided, d.outcome, d.review_reason, d.reason, d.rule,
       d.rule_version, d.evidence::text AS evidence, d.decided_at, d.roster_version,
       rv.id_number AS rv_id_number, rv.name AS rv_name, rv.benefit_type AS rv_benefit_type,
       rv.status AS rv_status, rv.first_paid_on AS rv_first_paid_on,
       rv.deceased_on AS rv_deceased_on, rv.imprisoned_from AS rv_imprisoned_from,
       rv.imprisoned_until AS rv_imprisoned_until, rv.insured_region AS rv_insured_region,
       rv.suspended_on AS rv_suspended_on
FROM unnest($1::text[]) AS k(id)
JOIN certification c ON c.certification_id = k.id
JOIN certification_deadline cd ON cd.certification_id = k.id
LEFT JOIN decision d ON d.certification_id = k.id
LEFT JOIN roster_version rv ON rv.version = d.roster_version
"""

_RESULTS = """
SELECT r.certification_id, r.result_id, r.revision, r.decided_by,
       sha256(COALESCE(o.payload, convert_to(r.payload::text, 'UTF8'))) AS payload_sha256,
       a.acked_at, f.message_id IS NOT NULL AS refused
FROM result r
LEFT JOIN outbox o ON o.message_id = r.result_id
LEFT JOIN outbox_ack a ON a.message_id = r.result_id
LEFT JOIN outbox_failure f ON f.message_id = r.result_id
WHERE r.certification_id = ANY($1::text[])
"""

_KNOWN_RESULTS = "SELECT result_id FROM result WHERE result_id = ANY($1::text[])"

# The earliest position the ledger recorded per partition for certifications the broker
# stamped inside the window (the certification's received_at is that stamp, unless the
# record had none usable).
_EARLIEST = """
SELECT topic, kafka_partition, min(kafka_offset) AS first_offset, count(*) AS n
FROM certification
WHERE topic = ANY($1::text[]) AND received_at >= $2 AND received_at < $3
GROUP BY topic, kafka_partition
"""

_CALENDAR_EVENTS = """
SELECT recorded_at, 'day' AS what, day, NULL::integer AS year, working, source, id
FROM calendar_override_event
UNION ALL
SELECT recorded_at, 'year', NULL, year, published, source, id
FROM calendar_publication_event
ORDER BY recorded_at, what, id
"""


async def begin(conn: Conn) -> None:
    """Inside the caller's read-only transaction: dates and instants as the ledger keeps
    them, whatever the login's default."""
    await conn.execute("SET LOCAL timezone = 'UTC'")


async def recorded(conn: Conn, certification_ids: Sequence[str]) -> dict[str, Recorded]:
    """The ledger's facts about these certifications (absent ids are not in the ledger)."""
    if not certification_ids:
        return {}
    ids = list(dict.fromkeys(certification_ids))
    rows = await conn.fetch(_CERTIFICATIONS, ids)
    results: dict[str, list[RecordedResult]] = {}
    for r in await conn.fetch(_RESULTS, ids):
        results.setdefault(r["certification_id"], []).append(
            RecordedResult(
                result_id=r["result_id"],
                revision=r["revision"],
                decided_by=r["decided_by"],
                payload_sha256=r["payload_sha256"],
                acked_at=r["acked_at"],
                refused=r["refused"],
            )
        )
    return {
        row["certification_id"]: _recorded(row, results.get(row["certification_id"], []))
        for row in rows
    }


def _recorded(row: asyncpg.Record, results: list[RecordedResult]) -> Recorded:
    # By position (the order of _CERTIFICATIONS' columns): a window has many rows.
    (
        cid, channel, topic, partition, offset, id_number, valid, local_date, due_date,
        provisional, content_sha256, raw_sha256, received_at, due_in_force, deadline_in_force,
        decided, outcome, review_reason, reason, rule, rule_version, evidence, decided_at,
        roster_version, *roster,
    ) = row  # fmt: skip
    decision = None
    if decided:
        decision = RecordedDecision(
            outcome=outcome,
            review_reason=review_reason,
            reason=reason,
            rule=rule,
            rule_version=rule_version,
            # The same values json.loads gives (objects, arrays, strings, numbers), faster.
            evidence=from_json(evidence),
            decided_at=decided_at,
            roster_version=roster_version,
            roster=_roster(roster),
        )
    return Recorded(
        certification_id=cid,
        channel=channel,
        topic=topic,
        partition=partition,
        offset=offset,
        id_number=id_number,
        valid=valid,
        local_date=local_date,
        due_date=due_date,
        provisional=provisional,
        content_sha256=bytes(content_sha256),
        raw_sha256=bytes(raw_sha256),
        received_at=received_at,
        due_in_force=due_in_force,
        deadline_in_force=deadline_in_force,
        decision=decision,
        results=tuple(results),
    )


def _roster(values: Sequence[Any]) -> RosterRecord | None:
    """The roster version's columns, as _CERTIFICATIONS lists them (None: no version)."""
    (
        id_number, name, benefit_type, status, first_paid_on, deceased_on, imprisoned_from,
        imprisoned_until, insured_region, suspended_on,
    ) = values  # fmt: skip
    if id_number is None:
        return None
    return RosterRecord(
        id_number=id_number,
        name=name,
        benefit_type=benefit_type,
        status=RosterStatus(status),
        insured_region=insured_region or "",
        first_paid_on=first_paid_on,
        deceased_on=deceased_on,
        imprisoned_from=imprisoned_from,
        imprisoned_until=imprisoned_until,
        suspended_on=suspended_on,
    )


async def known_results(conn: Conn, result_ids: Sequence[str]) -> set[str]:
    """Which of these result ids the ledger has."""
    if not result_ids:
        return set()
    return {r["result_id"] for r in await conn.fetch(_KNOWN_RESULTS, list(result_ids))}


@dataclass(frozen=True, slots=True)
class Earliest:
    topic: str
    partition: int
    first_offset: int
    certifications: int


async def earliest_in_window(
    conn: Conn, topics: Sequence[str], start: dt.datetime, end: dt.datetime
) -> list[Earliest]:
    """Per partition, the first offset of a certification the ledger recorded as received
    in the window: where the broker must still have records for the window to be whole."""
    rows = await conn.fetch(_EARLIEST, list(topics), start, end)
    return [Earliest(r["topic"], r["kafka_partition"], r["first_offset"], r["n"]) for r in rows]


async def calendar_events(conn: Conn) -> list[CalendarEvent]:
    rows = await conn.fetch(_CALENDAR_EVENTS)
    return [
        CalendarEvent(r["recorded_at"], r["day"], r["year"], r["working"], r["source"])
        for r in rows
    ]
