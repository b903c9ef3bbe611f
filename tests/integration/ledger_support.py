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
    await chained(
        conn,
        "sla_alert",
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

    await cycle_facts(conn)


async def cycle_facts(conn: asyncpg.Connection) -> None:
    """A row in every table of the certification cycle."""
    async with conn.transaction():
        ref = await conn.fetchval(
            """
            INSERT INTO comparison_evidence (source, evidence_id, kind, id_number, name,
                                             event_date, via, file_name, file_sha256, file_line)
            VALUES ('civil_affairs:cremation', 'E1', 'death', '11010519491231002X', '张秀英',
                    '2024-05-30', 'file', 'deaths.csv', '\\x00', 2)
            RETURNING id
            """
        )
        await conn.execute(
            "INSERT INTO evidence_review_item (evidence_ref, id_number)"
            " VALUES ($1, '11010519491231002X')",
            ref,
        )
    await conn.execute(
        """
        INSERT INTO evidence_verdict (decision_id, evidence_ref, verdict, effective_date,
                                      decided_by, decided_at)
        VALUES ('D1', $1, 'confirmed', '2024-05-30', 'staff:s1', $2)
        """,
        ref,
        cst(2024, 6, 4, 9),
    )
    await conn.execute(
        """
        INSERT INTO assisted_certification (id_number, how, certified_at, local_date, decided_by)
        VALUES ('11010519491231002X', 'home_visit', $1, '2024-03-01', 'staff:s1')
        """,
        cst(2024, 3, 1, 10),
    )
    await conn.execute(
        """
        INSERT INTO benefit_action (action_id, action, id_number, year, reason, decided_by,
                                    effective_date, raised_at)
        VALUES ('11010519491231002X:2024:stop', 'stop', '11010519491231002X', 2024, 'died',
                'staff:s1', '2024-05-30', $1)
        """,
        cst(2024, 6, 4, 9),
    )


async def link_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM ledger_link"))
