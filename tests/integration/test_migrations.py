from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from certrecon.errors import MigrationError
from certrecon.store import db
from certrecon.store.migrations import load_migrations, migrate

EXPECTED_TABLES = {
    "schema_migration",
    "roster_version",
    "certification",
    "decision",
    "result",
    "review_item",
    "staff_decision",
    "deadline_revision",
    "outbox",
    "outbox_ack",
    "relay_cursor",
    "consumer_offset",
    "calendar_override_event",
    "calendar_publication_event",
    "ledger_entry",
    "ledger_link",
}


async def test_migrations_apply_once_and_produce_the_schema(empty_database: str) -> None:
    conn = await db.connect(empty_database)
    try:
        first = await migrate(conn)
        assert first == [m.name for m in load_migrations()]
        assert await migrate(conn) == []
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert tables >= EXPECTED_TABLES
        unique = await conn.fetchval(
            """
            SELECT count(*) FROM pg_indexes
            WHERE tablename = 'certification' AND indexdef LIKE '%UNIQUE%(certification_id)%'
            """
        )
        assert unique == 1
    finally:
        await conn.close()


async def test_a_changed_migration_is_refused(empty_database: str, tmp_path: Path) -> None:
    for m in load_migrations():
        (tmp_path / f"{m.name}.sql").write_text(m.sql, "utf-8")
    conn = await db.connect(empty_database)
    try:
        await migrate(conn, tmp_path)
        first = sorted(tmp_path.glob("*.sql"))[0]
        first.write_text(first.read_text("utf-8") + "\n-- edited\n", "utf-8")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, tmp_path)
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(empty_database: str) -> None:
    import asyncio

    conns = [await db.connect(empty_database) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = [name for r in results for name in r]
        assert sorted(applied) == sorted(m.name for m in load_migrations())
    finally:
        for c in conns:
            await c.close()


def test_migration_numbers_have_no_gaps(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1", "utf-8")
    (tmp_path / "0003_c.sql").write_text("SELECT 1", "utf-8")
    with pytest.raises(MigrationError, match="without gaps"):
        load_migrations(tmp_path)


async def test_bad_sql_rolls_back_its_own_file(empty_database: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE a (x int)", "utf-8")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (x int); SELECT nope", "utf-8")
    conn = await db.connect(empty_database)
    try:
        with pytest.raises(asyncpg.UndefinedColumnError):
            await migrate(conn, tmp_path)
        assert await conn.fetchval("SELECT to_regclass('a') IS NOT NULL")
        assert not await conn.fetchval("SELECT to_regclass('b') IS NOT NULL")
    finally:
        await conn.close()
