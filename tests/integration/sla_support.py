"""Helpers for the monitor, review and SLA-view tests: certifications stored directly."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import asyncpg

from certrecon.audit.digest import TABLES
from certrecon.calendar import WorkingCalendar, compute_deadline, default_calendar
from certrecon.domain import CST
from certrecon.store import ledger

ID_NUMBER = "11010519491231002X"


def cst(  # noqa: PLR0917 - reads like a date literal
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    """An instant in China Standard Time: cst(2024, 6, 3, 10) is 2024-06-03 10:00 +08:00."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=CST)


async def chained(conn: asyncpg.Connection, table: str, statement: str, *args: object) -> None:
    """Run an INSERT into a ledger table the application writes and record the inserted
    rows' digests with it, as the service's writers do."""
    spec = TABLES[table]
    columns = ", ".join(f"{c}::text" if kind == "jsonb" else c for c, kind in spec.columns)
    async with conn.transaction():
        rows = await conn.fetch(f"{statement} RETURNING {columns}", *args)
        await ledger.record_rows(conn, table, [tuple(r) for r in rows])


async def add_certification(
    conn: asyncpg.Connection,
    certification_id: str,
    certified_at: dt.datetime,
    *,
    channel: str = "12333",
    calendar: WorkingCalendar | None = None,
    returned_at: dt.datetime | None = None,
    id_number: str = ID_NUMBER,
    name: str = "张秀英",
    valid: bool = True,
    offset: int = 0,
) -> None:
    """Store a certification, its deadline from ``calendar``; with ``returned_at``, also a
    first result acknowledged then."""
    deadline = compute_deadline(certified_at, calendar or default_calendar())
    raw = json.dumps(
        {
            "schema_version": 1,
            "certification_id": certification_id,
            "channel": channel,
            "subject": {"id_type": "resident_id", "id_number": id_number, "name": name},
            "certified_at": certified_at.isoformat(),
            "method": "face",
            "face_match": "pass",
            "on_behalf": None,
            "insured_region": "110105",
        },
        ensure_ascii=False,
    ).encode()
    await chained(
        conn,
        "certification",
        """
        INSERT INTO certification (
            certification_id, channel, topic, kafka_partition, kafka_offset, id_number, valid,
            certified_at, certified_at_raw, local_date, due_date, deadline, provisional,
            content_sha256, raw, received_at)
        VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $7)
        """,
        certification_id,
        channel,
        f"mohrss.certification.{channel}",
        offset,
        id_number,
        valid,
        certified_at,
        certified_at.isoformat(),
        deadline.local_date,
        deadline.due_date,
        deadline.deadline,
        deadline.provisional,
        hashlib.sha256(raw).digest(),
        raw,
    )
    if returned_at is not None:
        await return_result(conn, certification_id, returned_at)


async def return_result(
    conn: asyncpg.Connection, certification_id: str, at: dt.datetime, outcome: str = "qualified"
) -> None:
    """A first result, published and acknowledged at ``at``."""
    result_id = f"{certification_id}:1"
    async with conn.transaction():
        await chained(
            conn,
            "result",
            """
            INSERT INTO result (certification_id, revision, result_id, outcome, reason,
                                decided_at, decided_by)
            VALUES ($1, 1, $2, $3, 'test', $4, 'rules')
            """,
            certification_id,
            result_id,
            outcome,
            at,
        )
        await chained(
            conn,
            "outbox",
            """
            INSERT INTO outbox (message_id, kind, topic, key, payload)
            VALUES ($1, 'result', 'mohrss.certification-result', NULL, '{}')
            """,
            result_id,
        )
    await chained(
        conn,
        "outbox_ack",
        "INSERT INTO outbox_ack (message_id, acked_at) VALUES ($1, $2)",
        result_id,
        at,
    )


async def queue_for_review(
    conn: asyncpg.Connection, certification_id: str, reason: str, at: dt.datetime
) -> None:
    """Record the rules' verdict "a person must decide" as the pipeline does."""
    await chained(
        conn,
        "decision",
        """
        INSERT INTO decision (certification_id, outcome, review_reason, reason, rule,
                              rule_version, evidence, decided_at)
        VALUES ($1, NULL, $2, '本地记录显示已死亡，需人工核实', 'deceased', 'test', $3, $4)
        """,
        certification_id,
        reason,
        {"deceased_on": "2024-05-01"},
        at,
    )
    await chained(
        conn,
        "review_item",
        "INSERT INTO review_item (certification_id, reason, queued_at) VALUES ($1, $2, $3)",
        certification_id,
        reason,
        at,
    )
