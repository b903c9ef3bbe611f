"""The database refuses to change the ledger, whoever asks; only a migration may."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest

from certrecon.store import db
from certrecon.store.migrations import load_migrations, migrate
from certrecon.store.roles import CHAIN_TABLES, LEDGER_TABLES
from tests.integration.ledger_support import one_of_everything
from tests.integration.sla_support import add_certification, cst

COLUMN = {
    # A column each UPDATE may name (identity columns refuse updates by themselves).
    "certification": "certification_id",
    "decision": "certification_id",
    "result": "result_id",
    "review_item": "certification_id",
    "staff_decision": "note",
    "deadline_revision": "provisional",
    "outbox": "message_id",
    "outbox_ack": "message_id",
    "outbox_failure": "reason",
    "sla_alert": "alert_id",
    "roster_version": "name",
    "calendar_override_event": "source",
    "calendar_publication_event": "source",
    "comparison_evidence": "name",
    "evidence_review_item": "id_number",
    "evidence_verdict": "note",
    "assisted_certification": "note",
    "benefit_action": "reason",
    "ledger_entry": "table_name",
    "ledger_link": "seq",
    "ledger_table": "table_name",
}


async def test_every_ledger_table_has_a_row_to_protect(conn: asyncpg.Connection) -> None:
    await one_of_everything(conn)
    for table in LEDGER_TABLES + CHAIN_TABLES:
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") > 0, table


@pytest.mark.parametrize("table", LEDGER_TABLES + CHAIN_TABLES)
@pytest.mark.parametrize("replica", [False, True], ids=["origin", "replica-role"])
async def test_update_delete_and_truncate_are_refused_even_for_a_superuser(
    conn: asyncpg.Connection, table: str, replica: bool
) -> None:
    await one_of_everything(conn)
    if replica:
        # ENABLE ALWAYS: session_replication_role does not switch the triggers off.
        await conn.execute("SET session_replication_role = replica")
    key = COLUMN[table]
    before = await conn.fetchval(f"SELECT count(*) FROM {table}")
    for statement in (
        f"UPDATE {table} SET {key} = {key}",
        f"DELETE FROM {table}",
        f"TRUNCATE {table} CASCADE",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="refused"):
            await conn.execute(statement)
    assert await conn.fetchval(f"SELECT count(*) FROM {table}") == before


async def test_a_session_cannot_lift_the_refusal_by_naming_itself_a_migration(
    conn: asyncpg.Connection,
) -> None:
    await add_certification(conn, "X1", cst(2024, 6, 3, 10))
    async with conn.transaction():
        # The setting alone is not enough: the migration runner also holds its lock.
        await conn.execute(
            "SELECT set_config('certrecon.migrating', pg_current_xact_id()::text, true)"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM certification")


async def test_only_a_migration_may_change_ledger_rows(empty_database: str, tmp_path: Path) -> None:
    for m in load_migrations():
        shutil.copy(Path(__file__).parents[2] / "sql" / f"{m.name}.sql", tmp_path)
    conn = await db.connect(empty_database)
    try:
        await migrate(conn, tmp_path)
        await add_certification(conn, "M1", cst(2024, 6, 3, 10))
        number = len(load_migrations()) + 1
        (tmp_path / f"{number:04d}_fix_channel.sql").write_text(
            "UPDATE certification SET topic = 'renamed' WHERE certification_id = 'M1';\n"
        )
        await migrate(conn, tmp_path)
        assert await conn.fetchval("SELECT topic FROM certification") == "renamed"
        # Outside the migration's own transaction the refusal is back.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE certification SET topic = 'again'")
    finally:
        await conn.close()


async def test_an_existing_database_migrates_without_losing_a_row(
    empty_database: str, tmp_path: Path
) -> None:
    sql = Path(__file__).parents[2] / "sql"
    before_ledger = [m for m in load_migrations() if m.name < "0004_ledger"]
    for m in before_ledger:
        shutil.copy(sql / f"{m.name}.sql", tmp_path)
    conn = await db.connect(empty_database)
    try:
        await migrate(conn, tmp_path)
        await conn.execute(
            """
            INSERT INTO roster (id_number, name, benefit_type, status, insured_region)
            VALUES ('11010519491231002X', '张秀英', 'basic_pension', 'active', '110105');
            INSERT INTO calendar_override (day, working, source) VALUES ('2030-01-02', false, 's');
            INSERT INTO calendar_published_year (year, source) VALUES (2030, 's');
            """
        )
        for cid, returned in (("A", True), ("B", False), ("C", False)):
            await conn.execute(
                """
                INSERT INTO certification (
                    certification_id, channel, topic, kafka_partition, kafka_offset, valid,
                    local_date, due_date, deadline, provisional, content_sha256, raw,
                    received_at, returned_at, on_time)
                VALUES ($1, '12333', 't', 0, 0, true, '2024-06-03', '2024-06-11',
                        '2024-06-11 16:00+00', false, '\\x00', '{}', now(),
                        CASE WHEN $2 THEN '2024-06-03 05:00+00'::timestamptz END,
                        CASE WHEN $2 THEN true END)
                """,
                cid,
                returned,
            )
        await conn.execute(
            """
            INSERT INTO result (certification_id, revision, result_id, outcome, reason,
                                decided_at, decided_by, payload)
            VALUES ('A', 1, 'A:1', 'qualified', 'r', now(), 'rules', '{}'),
                   ('B', 1, 'B:1', 'eligibility_lost', 'r', now(), 'staff:s1', '{}');
            INSERT INTO outbox (message_id, kind, topic, payload, sent_at)
            VALUES ('A:1', 'result', 't', '{}', '2024-06-03 05:00+00'),
                   ('B:1', 'result', 't', '{}', NULL);
            INSERT INTO review_queue (certification_id, reason, queued_at, closed_at, outcome,
                                      decided_by, note)
            VALUES ('B', 'deceased', now(), now(), 'eligibility_lost', 'staff:s1', 'seen'),
                   ('C', 'deceased', now(), NULL, NULL, NULL, NULL);
            """
        )
        for m in load_migrations()[len(before_ledger) :]:
            shutil.copy(sql / f"{m.name}.sql", tmp_path)
        await migrate(conn, tmp_path)
        assert await conn.fetchval("SELECT count(*) FROM roster_version") == 1
        assert await conn.fetchval("SELECT name FROM roster") == "张秀英"
        assert await conn.fetchval("SELECT count(*) FROM calendar_override") == 1
        assert await conn.fetchval("SELECT count(*) FROM calendar_published_year") == 1
        returns = await conn.fetch(
            "SELECT certification_id, returned_at FROM certification_return ORDER BY 1"
        )
        assert [(r["certification_id"], r["returned_at"].isoformat()) for r in returns] == [
            ("A", "2024-06-03T05:00:00+00:00")
        ]
        decisions = await conn.fetch(
            "SELECT certification_id, outcome, note, login FROM staff_decision"
        )
        assert [tuple(r) for r in decisions] == [("B", "eligibility_lost", "seen", None)]
        items = await conn.fetch("SELECT certification_id FROM review_item ORDER BY 1")
        assert [r[0] for r in items] == ["B", "C"]
        # B's result waits for the relay, C for staff: both open; A is returned.
        open_ids = await conn.fetch("SELECT certification_id FROM open_certification ORDER BY 1")
        assert [r[0] for r in open_ids] == ["B", "C"]
        # The rows that were there are sealed as one baseline link, not as past transactions.
        link = await conn.fetch("SELECT seq, kind, entries FROM ledger_link")
        assert [tuple(r) for r in link] == [(1, "baseline", 3 + 2 + 2 + 2 + 1 + 1 + 1 + 1 + 1)]
    finally:
        await conn.close()
