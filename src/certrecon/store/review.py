"""Staff review (逐人核实): the queue, one certification's file, and staff decisions.

A staff decision is a result revision like any other: it goes through
:func:`certrecon.store.results.record_results`, so it is published through the outbox with
``decided_by: staff:<operator id>``. The first result of a certification is revision 1; a
staff correction of a result already produced is the next revision, and earlier revisions
stay on record. Each decision is also a ``staff_decision`` row with the declared staff id
and the authenticated database login (``session_user``). Deciding takes a transaction-level
advisory lock per certification, so two staff members deciding at once are serialised and
cannot both claim a revision number (the result's primary key would refuse the second).
A review item is closed by the first staff decision after it; nothing is updated.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg

from certrecon.domain import Channel, Outcome
from certrecon.errors import ReviewError
from certrecon.results import ResultFields
from certrecon.store.results import NewResult, record_results
from certrecon.text import MAX_NOTE_LENGTH, check_free_text

STAFF_OUTCOMES: tuple[Outcome, ...] = (
    Outcome.ELIGIBILITY_LOST,
    Outcome.QUALIFIED,
    Outcome.NOT_IN_SCOPE,
    Outcome.IDENTITY_MISMATCH,
    Outcome.FACE_NOT_VERIFIED,
)
"""What a staff member may decide; ``invalid_record`` is the validator's verdict only."""

_STAFF_ID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")

_DEFAULT_REASON: dict[Outcome, str] = {
    Outcome.ELIGIBILITY_LOST: "人工核实：确认丧失待遇领取资格",
    Outcome.QUALIFIED: "人工核实：认证通过，本地记录有误",
    Outcome.NOT_IN_SCOPE: "人工核实：不在本地认证范围",
    Outcome.IDENTITY_MISMATCH: "人工核实：身份信息不匹配",
    Outcome.FACE_NOT_VERIFIED: "人工核实：人脸识别未通过",
}


class DecisionStatus(StrEnum):
    RECORDED = "recorded"
    """A new result revision was stored and queued for publishing."""
    UNCHANGED = "unchanged"
    """The latest result already has this outcome: nothing was done."""


@dataclass(frozen=True, slots=True)
class StaffDecision:
    """What ``decide`` did."""

    status: DecisionStatus
    certification_id: str
    outcome: Outcome
    revision: int
    """The new revision, or the latest one when unchanged."""
    result_id: str
    previous_outcome: Outcome | None
    previous_decided_by: str | None


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One line of the review queue. ``id_number`` is real: mask it before showing it."""

    certification_id: str
    channel: str
    id_number: str | None
    reason: str
    queued_at: dt.datetime
    due_date: dt.date
    deadline: dt.datetime
    provisional: bool
    closed_at: dt.datetime | None
    outcome: str | None
    decided_by: str | None


@dataclass(frozen=True, slots=True)
class ResultRevision:
    revision: int
    result_id: str
    outcome: str
    reason: str
    decided_at: dt.datetime
    decided_by: str
    note: str | None
    sent_at: dt.datetime | None
    """When the broker acknowledged it; None while it waits in the outbox."""


@dataclass(frozen=True, slots=True)
class CertificationFile:
    """Everything a staff member needs to verify one certification (personal data included)."""

    certification_id: str
    channel: str
    valid: bool
    id_number: str | None
    subject_name: str | None
    """As the ministry sent it (from the stored message)."""
    certified_at_raw: str | None
    local_date: dt.date
    due_date: dt.date
    deadline: dt.datetime
    provisional: bool
    received_at: dt.datetime
    returned_at: dt.datetime | None
    on_time: bool | None
    message: dict[str, Any] | None
    """The inbound message as received (None when it was not JSON)."""
    roster: dict[str, Any] | None
    """The local roster entry for the ID number, if any."""
    decision: dict[str, Any] | None
    """The rules' decision: outcome or review reason, reason, rule, evidence."""
    review: QueueItem | None
    note: str | None
    results: list[ResultRevision]


# A review item with its deadline in force and the latest staff decision, if any.
_ITEMS = """
SELECT q.certification_id, c.channel, c.id_number, q.reason, q.queued_at, d.due_date,
       d.deadline, d.provisional, s.closed_at, s.outcome, s.decided_by, s.note
FROM review_item q
JOIN certification c USING (certification_id)
JOIN certification_deadline d USING (certification_id)
LEFT JOIN LATERAL (
    SELECT first.decided_at AS closed_at, latest.outcome, latest.decided_by, latest.note
    FROM (SELECT decided_at FROM staff_decision f
          WHERE f.certification_id = q.certification_id ORDER BY f.id LIMIT 1) first,
         (SELECT outcome, decided_by, note FROM staff_decision l
          WHERE l.certification_id = q.certification_id ORDER BY l.id DESC LIMIT 1) latest
) s ON true
"""

_QUEUE = (
    _ITEMS
    + """
WHERE $1 OR s.closed_at IS NULL
ORDER BY s.closed_at IS NOT NULL, d.deadline, q.certification_id
LIMIT $2
"""
)

_ITEM = _ITEMS + "WHERE q.certification_id = $1"

_DECISION_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('certrecon.decide:' || $1, 0))"


def _queue_item(r: asyncpg.Record) -> QueueItem:
    return QueueItem(
        certification_id=r["certification_id"],
        channel=r["channel"],
        id_number=r["id_number"],
        reason=r["reason"],
        queued_at=r["queued_at"],
        due_date=r["due_date"],
        deadline=r["deadline"],
        provisional=r["provisional"],
        closed_at=r["closed_at"],
        outcome=r["outcome"],
        decided_by=r["decided_by"],
    )


async def list_queue(
    conn: asyncpg.Connection, *, include_closed: bool = False, limit: int = 1000
) -> list[QueueItem]:
    """Open review items by deadline (closed ones after them, when asked for)."""
    return [_queue_item(r) for r in await conn.fetch(_QUEUE, include_closed, limit)]


async def show(conn: asyncpg.Connection, certification_id: str) -> CertificationFile:
    """One certification's full file; :class:`ReviewError` when it is unknown."""
    c = await conn.fetchrow(
        """
        SELECT c.certification_id, c.channel, c.valid, c.id_number, c.certified_at_raw,
               c.local_date, d.due_date, d.deadline, d.provisional, c.received_at,
               r.returned_at, r.returned_at < d.deadline AS on_time, c.raw
        FROM certification c
        JOIN certification_deadline d USING (certification_id)
        LEFT JOIN certification_return r USING (certification_id)
        WHERE c.certification_id = $1
        """,
        certification_id,
    )
    if c is None:
        raise ReviewError(f"unknown certification {certification_id!r}")
    message: dict[str, Any] | None
    try:
        parsed = json.loads(bytes(c["raw"]))
        message = parsed if isinstance(parsed, dict) else None
    except ValueError:
        message = None
    subject = message.get("subject") if message else None
    name = subject.get("name") if isinstance(subject, dict) else None
    roster = None
    if c["id_number"]:
        row = await conn.fetchrow(
            """
            SELECT id_number, name, benefit_type, status, first_paid_on, deceased_on,
                   imprisoned_from, imprisoned_until, insured_region
            FROM roster WHERE id_number = $1
            """,
            c["id_number"],
        )
        roster = dict(row) if row is not None else None
    d = await conn.fetchrow(
        """
        SELECT outcome, review_reason, reason, rule, rule_version, evidence, roster_version,
               decided_at
        FROM decision WHERE certification_id = $1
        """,
        certification_id,
    )
    q = await conn.fetchrow(_ITEM, certification_id)
    results = await conn.fetch(
        """
        SELECT r.revision, r.result_id, r.outcome, r.reason, r.decided_at, r.decided_by,
               r.note, a.acked_at AS sent_at
        FROM result r LEFT JOIN outbox_ack a ON a.message_id = r.result_id
        WHERE r.certification_id = $1 ORDER BY r.revision
        """,
        certification_id,
    )
    return CertificationFile(
        certification_id=c["certification_id"],
        channel=c["channel"],
        valid=c["valid"],
        id_number=c["id_number"],
        subject_name=name if isinstance(name, str) else None,
        certified_at_raw=c["certified_at_raw"],
        local_date=c["local_date"],
        due_date=c["due_date"],
        deadline=c["deadline"],
        provisional=c["provisional"],
        received_at=c["received_at"],
        returned_at=c["returned_at"],
        on_time=c["on_time"],
        message=message,
        roster=roster,
        decision=dict(d) if d is not None else None,
        review=_queue_item(q) if q is not None else None,
        note=q["note"] if q is not None else None,
        results=[
            ResultRevision(
                r["revision"],
                r["result_id"],
                r["outcome"],
                r["reason"],
                r["decided_at"],
                r["decided_by"],
                r["note"],
                r["sent_at"],
            )
            for r in results
        ],
    )


def parse_outcome(text: str) -> Outcome:
    """A staff outcome from its name; :class:`ReviewError` names the allowed ones."""
    allowed = ", ".join(o.value for o in STAFF_OUTCOMES)
    try:
        outcome = Outcome(text.strip())
    except ValueError:
        raise ReviewError(f"unknown outcome {text!r}; choose one of {allowed}") from None
    if outcome not in STAFF_OUTCOMES:
        raise ReviewError(
            f"outcome {outcome.value} is not a staff decision; choose one of {allowed}"
        )
    return outcome


async def decide(
    conn: asyncpg.Connection,
    certification_id: str,
    *,
    outcome: Outcome,
    staff_id: str,
    note: str | None,
    now: dt.datetime,
    topic: str,
) -> StaffDecision:
    """Record a staff decision as the next result revision, in one transaction.

    The published ``reason`` is a fixed text per outcome; ``note`` stays on record here
    (it may mention people or local records that are not the ministry's business).
    Deciding the outcome the latest revision already has is a no-op
    (:attr:`DecisionStatus.UNCHANGED`). An unknown certification, an invalid record (whose
    only result is ``invalid_record``), a non-staff outcome or a malformed staff ID raise
    :class:`ReviewError`; nothing is stored then.
    """
    if not _STAFF_ID.fullmatch(staff_id):
        shown = repr(staff_id) if len(staff_id) <= 64 else "given"
        raise ReviewError(f"staff ID {shown} must be 1 to 64 of letters, digits and . _ @ -")
    if note is not None:
        check_free_text("the note", note, max_length=MAX_NOTE_LENGTH, multiline=True)
    if outcome not in STAFF_OUTCOMES:
        raise ReviewError(f"outcome {outcome.value} is not a staff decision")
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    cleaned_note = note.strip() if note and note.strip() else None
    decided_by = f"staff:{staff_id}"
    async with conn.transaction():
        await conn.execute(_DECISION_LOCK, certification_id)
        c = await conn.fetchrow(
            """
            SELECT c.certification_id, c.channel, c.id_number, c.valid, c.certified_at_raw,
                   d.due_date
            FROM certification c JOIN certification_deadline d USING (certification_id)
            WHERE c.certification_id = $1
            """,
            certification_id,
        )
        if c is None:
            raise ReviewError(f"unknown certification {certification_id!r}")
        if not c["valid"]:
            raise ReviewError(
                f"certification {certification_id} failed validation; its result "
                "invalid_record stands and is not a matter for review"
            )
        latest = await conn.fetchrow(
            """
            SELECT revision, result_id, outcome, decided_by FROM result
            WHERE certification_id = $1 ORDER BY revision DESC LIMIT 1
            """,
            certification_id,
        )
        previous = Outcome(latest["outcome"]) if latest is not None else None
        if latest is not None and previous is outcome:
            return StaffDecision(
                DecisionStatus.UNCHANGED,
                certification_id,
                outcome,
                latest["revision"],
                latest["result_id"],
                previous,
                latest["decided_by"],
            )
        revision = 1 if latest is None else latest["revision"] + 1
        id_number = c["id_number"] or ""
        (message,) = await record_results(
            conn,
            [
                NewResult(
                    ResultFields(
                        certification_id=certification_id,
                        revision=revision,
                        channel=Channel(c["channel"]),
                        id_number=id_number,
                        outcome=outcome,
                        reason=_DEFAULT_REASON[outcome],
                        certified_at=c["certified_at_raw"] or "",
                        due_date=c["due_date"],
                        decided_at=now,
                        decided_by=decided_by,
                    ),
                    key=id_number.encode("utf-8") if id_number else None,
                    note=cleaned_note,
                )
            ],
            topic=topic,
        )
        await conn.execute(
            """
            INSERT INTO staff_decision (certification_id, result_id, outcome, decided_by, note,
                                        decided_at)
            VALUES ($1, $2, $3, $4, $5, $6)
            """,
            certification_id,
            message.result_id,
            outcome.value,
            decided_by,
            cleaned_note,
            now,
        )
    return StaffDecision(
        DecisionStatus.RECORDED,
        certification_id,
        outcome,
        revision,
        message.result_id,
        previous,
        latest["decided_by"] if latest is not None else None,
    )
