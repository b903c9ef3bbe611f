"""Helpers for the ledger tests: one row in every ledger table, written as the service does."""

from __future__ import annotations

import datetime as dt

import asyncpg

from tests.integration.sla_support import add_certification, chained, cst, queue_for_review


async def one_of_everything(conn: asyncpg.Connection) -> None:
    """A row in every ledger table (each write in its own transaction)."""
    await conn.execute(
        """
        INSERT INTO roster_version (id_number, name, benefit_type, status, insured_region)
        VALUES ('11010519491231002X', '张秀英', 'basic_pension', 'active', '110105')
        """
    )
    await add_certification(conn, "L1", cst(2024, 6, 3, 10), returned_at=cst(2024, 6, 3, 11))
    await add_certification(conn, "L2", cst(2024, 6, 3, 10))
    await queue_for_review(conn, "L2", "deceased", cst(2024, 6, 3, 10))
    await conn.execute(
        """
        INSERT INTO staff_decision (certification_id, outcome, decided_by, decided_at)
        VALUES ('L2', 'eligibility_lost', 'staff:s1', $1)
        """,
        cst(2024, 6, 4, 9),
    )
    await conn.execute(
        """
        INSERT INTO deadline_revision (certification_id, due_date, deadline, provisional)
        VALUES ('L2', '2024-06-12', $1, false)
        """,
        cst(2024, 6, 13),
    )
    await conn.execute(
        """
        INSERT INTO sla_alert (alert_id, certification_id, level, due_date, deadline,
                               working_days_left, provisional, raised_at)
        VALUES ('L2:at_risk', 'L2', 'at_risk', '2024-06-12', $1, 1, false, $2)
        """,
        cst(2024, 6, 13),
        cst(2024, 6, 11, 9),
    )
    await conn.execute(
        "INSERT INTO calendar_override_event (day, working, source) VALUES ($1, false, 'test')",
        dt.date(2030, 1, 2),
    )
    await conn.execute(
        "INSERT INTO calendar_publication_event (year, published, source) VALUES (2030, true, 't')"
    )
    async with conn.transaction():
        await chained(
            conn,
            "outbox",
            "INSERT INTO outbox (message_id, kind, topic, payload)"
            " VALUES ('too-big', 'dead_letter', 'certrecon.dead-letter', '{}')",
        )
        await chained(
            conn,
            "outbox_failure",
            "INSERT INTO outbox_failure (message_id, reason, failed_at)"
            " VALUES ('too-big', 'MessageSizeTooLargeError', now())",
        )


async def link_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM ledger_link"))
