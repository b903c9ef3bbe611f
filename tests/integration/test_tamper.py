"""Tampering by a superuser, each caught by ``audit verify`` with the first bad link named."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from certrecon.audit import verify as verify_module
from certrecon.audit.chain import Checkpoint
from certrecon.audit.verify import verify
from certrecon.cli import cli
from certrecon.cli.commands import register
from certrecon.store import db
from certrecon.store.audit import head, links_covering
from certrecon.store.migrations import load_migrations, migrate
from tests.integration.ledger_support import one_of_everything
from tests.integration.sla_support import add_certification, chained, cst, return_result


async def _decided(conn: asyncpg.Connection, certification_id: str, outcome: str) -> None:
    await chained(
        conn,
        "decision",
        """
        INSERT INTO decision (certification_id, outcome, reason, rule, rule_version, evidence,
                              decided_at)
        VALUES ($1, $2, 'r', 'rules', 'test', '{"status": "active"}', now())
        """,
        certification_id,
        outcome,
    )


async def ledger(conn: asyncpg.Connection) -> None:
    """A small ledger: every table, several transactions."""
    await one_of_everything(conn)
    for cid, outcome in (("T1", "qualified"), ("T2", "not_in_scope"), ("T3", "qualified")):
        await add_certification(conn, cid, cst(2024, 6, 3, 10))
        await _decided(conn, cid, outcome)
        await return_result(conn, cid, cst(2024, 6, 3, 12), outcome)


async def seq_of(conn: asyncpg.Connection, table: str, key: str) -> int:
    return (await links_covering(conn, table, [key]))[key][0]


async def tamper(conn: asyncpg.Connection, table: str, *statements: str) -> None:
    """As the superuser, with the table's triggers switched off."""
    await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
    for statement in statements:
        await conn.execute(statement)
    await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")


async def test_an_untouched_ledger_verifies(conn: asyncpg.Connection) -> None:
    await ledger(conn)
    report = await verify(conn)
    assert report.intact, report.problems
    assert report.links == int(await conn.fetchval("SELECT count(*) FROM ledger_link"))
    assert report.entries == int(await conn.fetchval("SELECT sum(entries) FROM ledger_link"))


async def test_an_edited_decision_outcome_is_caught(conn: asyncpg.Connection) -> None:
    await ledger(conn)
    expected = await seq_of(conn, "decision", "T2")
    await tamper(
        conn, "decision", "UPDATE decision SET outcome = 'qualified' WHERE certification_id='T2'"
    )
    report = await verify(conn)
    first = report.first
    assert first is not None
    assert (first.seq, first.table, first.certification_id) == (expected, "decision", "T2")
    assert "differs" in first.what


async def test_a_deleted_result_is_caught(conn: asyncpg.Connection) -> None:
    await ledger(conn)
    expected = await seq_of(conn, "result", "T1:1")
    await tamper(conn, "result", "DELETE FROM result WHERE result_id = 'T1:1'")
    first = (await verify(conn)).first
    assert first is not None
    assert (first.seq, first.table, first.key, first.certification_id) == (
        expected,
        "result",
        "T1:1",
        "T1",
    )
    assert first.what == "recorded but missing"


async def test_a_forged_row_is_caught(conn: asyncpg.Connection) -> None:
    await ledger(conn)
    await tamper(
        conn,
        "decision",
        """
        INSERT INTO decision (certification_id, outcome, reason, rule, rule_version, evidence,
                              decided_at)
        VALUES ('L1', 'qualified', 'forged', 'rules', 'test', '{}', now())
        """,
    )
    first = (await verify(conn)).first
    assert first is not None
    assert (first.seq, first.table, first.certification_id, first.what) == (
        None,
        "decision",
        "L1",
        "not in any link",
    )


async def test_two_rows_with_swapped_contents_are_caught(conn: asyncpg.Connection) -> None:
    await ledger(conn)
    seqs = sorted([await seq_of(conn, "decision", "T1"), await seq_of(conn, "decision", "T2")])
    await tamper(
        conn,
        "decision",
        """
        UPDATE decision d SET outcome = o.outcome, reason = o.reason
        FROM decision o
        WHERE (d.certification_id, o.certification_id) IN (('T1', 'T2'), ('T2', 'T1'))
        """,
    )
    report = await verify(conn)
    assert [(p.seq, p.table) for p in report.problems] == [(s, "decision") for s in seqs]
    assert report.first is not None
    assert report.first.certification_id == "T1"


async def test_a_truncated_table_is_caught(conn: asyncpg.Connection) -> None:
    await ledger(conn)
    expected = await seq_of(conn, "sla_alert", "L2:at_risk")
    await tamper(conn, "sla_alert", "TRUNCATE sla_alert")
    first = (await verify(conn)).first
    assert first is not None
    assert (first.seq, first.table, first.certification_id, first.what) == (
        expected,
        "sla_alert",
        "L2",
        "recorded but missing",
    )


async def test_an_edited_link_breaks_the_chain(conn: asyncpg.Connection) -> None:
    await ledger(conn)
    await tamper(
        conn,
        "ledger_link",
        "UPDATE ledger_link SET committed_at = committed_at + interval '1 day' WHERE seq = 3",
    )
    first = (await verify(conn)).first
    assert first is not None
    assert first.seq == 3
    assert "bytes" in first.what


async def test_cutting_the_newest_transactions_is_caught_with_a_checkpoint(
    conn: asyncpg.Connection,
) -> None:
    await ledger(conn)
    checkpoint = await head(conn, cst(2024, 6, 4))
    last = checkpoint.seq
    # Remove the last two transactions entirely: rows, their digests and their links.
    gone = await conn.fetch("SELECT xid FROM ledger_link WHERE seq > $1", last - 2)
    xids = [r["xid"] for r in gone]
    for table in ("outbox_ack", "outbox", "result", "ledger_entry", "ledger_link"):
        await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
    await conn.execute("DELETE FROM outbox_ack WHERE message_id = 'T3:1'")
    await conn.execute("DELETE FROM outbox WHERE message_id = 'T3:1'")
    await conn.execute("DELETE FROM result WHERE result_id = 'T3:1'")
    await conn.execute("DELETE FROM ledger_entry WHERE xid = ANY($1::xid8[])", xids)
    await conn.execute("DELETE FROM ledger_link WHERE xid = ANY($1::xid8[])", xids)
    # Without a checkpoint a cut tail looks like a shorter, intact ledger...
    assert (await verify(conn)).intact
    # ...with one kept outside the database, it is caught.
    first = (await verify(conn, checkpoint=checkpoint)).first
    assert first is not None
    assert first.seq == last - 1
    assert "cut" in first.what


def test_the_verify_command_exit_codes_and_output(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def setup() -> Checkpoint:
        conn = await db.connect(fresh_database)
        try:
            await ledger(conn)
            return await head(conn, cst(2024, 6, 4))
        finally:
            await conn.close()

    checkpoint = asyncio.run(setup())
    monkeypatch.setenv("CERTRECON_DATABASE_URL", fresh_database)
    register(cli)
    runner = CliRunner()
    intact = runner.invoke(cli, ["audit", "verify"])
    assert intact.exit_code == 0, intact.output
    assert f"head seq {checkpoint.seq} sha256 {checkpoint.head_sha256}" in intact.output
    printed = runner.invoke(cli, ["audit", "checkpoint"])
    assert printed.exit_code == 0, printed.output
    saved = tmp_path / "checkpoint.json"
    saved.write_text(printed.output)
    assert Checkpoint.from_json(printed.output).head_sha256 == checkpoint.head_sha256
    with_checkpoint = runner.invoke(cli, ["audit", "verify", "--checkpoint", str(saved)])
    assert with_checkpoint.exit_code == 0, with_checkpoint.output

    async def edit() -> None:
        conn = await db.connect(fresh_database)
        try:
            await tamper(
                conn, "decision", "UPDATE decision SET reason = 'x' WHERE certification_id='T3'"
            )
        finally:
            await conn.close()

    asyncio.run(edit())
    broken = runner.invoke(cli, ["audit", "verify", "--json"])
    assert broken.exit_code == 1, broken.output
    data = json.loads(broken.output)
    assert data["intact"] is False
    assert data["first_bad"]["table"] == "decision"
    assert data["first_bad"]["certification_id"] == "T3"
    text = runner.invoke(cli, ["audit", "verify"])
    assert text.exit_code == 1
    assert "first bad link" in text.output
    assert "certification_id T3" in text.output
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    usage = runner.invoke(cli, ["audit", "verify", "--checkpoint", str(bad)])
    assert usage.exit_code == 2
    missing = runner.invoke(cli, ["audit", "verify", "--checkpoint", str(tmp_path / "none")])
    assert missing.exit_code == 2
    story = runner.invoke(cli, ["audit", "show", "T1", "--json"])
    assert story.exit_code == 0, story.output
    told = json.loads(story.output)
    assert told["results"][0]["result_id"] == "T1:1"
    assert told["results"][0]["acked_at"] is not None
    assert told["decision"]["outcome"] == "qualified"
    assert told["inbound"]["bytes_sha256"] == told["inbound"]["bytes_sha256_recorded"]
    assert runner.invoke(cli, ["audit", "show", "T1"]).exit_code == 0
    assert runner.invoke(cli, ["audit", "show", "NOPE"]).exit_code == 2


async def test_rows_digested_before_the_binary_encoding_stay_verifiable(
    empty_database: str, tmp_path: Path
) -> None:
    """A ledger begun under sql/0004 (digests over to_jsonb) migrates: its rows verify as
    recorded, new rows verify by the stored bytes, and an edit of an old row is caught."""
    sql = Path(__file__).parents[2] / "sql"
    migrations = load_migrations()
    for m in migrations:
        if m.name <= "0004_ledger":
            shutil.copy(sql / f"{m.name}.sql", tmp_path)
    conn = await db.connect(empty_database)
    try:
        await migrate(conn, tmp_path)
        for cid, outcome in (("O1", "qualified"), ("O2", "not_in_scope")):
            await conn.execute(
                """
                INSERT INTO certification (
                    certification_id, channel, topic, kafka_partition, kafka_offset, valid,
                    local_date, due_date, deadline, provisional, content_sha256, raw,
                    received_at)
                VALUES ($1, '12333', 't', 0, 0, true, '2024-06-03', '2024-06-11',
                        '2024-06-11 16:00+00', false, '\\x00', '{}', now())
                """,
                cid,
            )
            await conn.execute(
                """
                INSERT INTO decision (certification_id, outcome, reason, rule, rule_version,
                                      evidence, decided_at)
                VALUES ($1, $2, 'r', 'rules', 'test', '{"b": 1, "a": 2}', now())
                """,
                cid,
                outcome,
            )
        for m in migrations:
            shutil.copy(sql / f"{m.name}.sql", tmp_path)
        await migrate(conn, tmp_path)
        assert await conn.fetchval("SELECT count(*) FROM ledger_entry WHERE format = 1") == 4
        await ledger(conn)
        assert await conn.fetchval("SELECT count(*) FROM ledger_entry WHERE format = 2") > 4
        assert (await verify(conn)).intact
        expected = await seq_of(conn, "decision", "O2")
        await tamper(
            conn,
            "decision",
            "UPDATE decision SET outcome = 'qualified' WHERE certification_id='O2'",
        )
        first = (await verify(conn)).first
        assert first is not None
        assert (first.seq, first.table, first.certification_id) == (expected, "decision", "O2")
        assert "differs" in first.what
    finally:
        await conn.close()


async def test_tables_read_in_parts_on_several_connections_find_the_same(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify_module, "SPLIT_ROWS", 0)  # every table in parts
    conn = await db.connect(fresh_database)
    try:
        await ledger(conn)

        async def connect() -> asyncpg.Connection:
            return await db.connect(fresh_database)

        intact = await verify(conn, connect=connect, parallel=3)
        assert intact.intact, intact.problems
        assert intact.rows == await conn.fetchval("SELECT sum(cardinality(keys)) FROM ledger_entry")
        expected = await seq_of(conn, "decision", "T2")
        await tamper(
            conn,
            "decision",
            "UPDATE decision SET outcome = 'qualified' WHERE certification_id='T2'",
        )
        await tamper(conn, "result", "DELETE FROM result WHERE result_id = 'T3:1'")
        report = await verify(conn, connect=connect, parallel=3)
        assert report.first is not None
        assert (report.first.seq, report.first.table, report.first.certification_id) == (
            expected,
            "decision",
            "T2",
        )
        assert {(p.table, p.what) for p in report.problems} == {
            ("decision", "content differs from its recorded digest"),
            ("result", "recorded but missing"),
        }
    finally:
        await conn.close()


async def test_roster_rows_digested_before_suspended_on_stay_verifiable(
    empty_database: str, tmp_path: Path
) -> None:
    """roster_version gained suspended_on (sql/0007) after rows were digested without it:
    those rows verify as recorded, rows with it set verify, and setting it on an old row is
    caught, as is clearing it on a new one."""
    sql = Path(__file__).parents[2] / "sql"
    migrations = load_migrations()
    for m in migrations:
        if m.name < "0007":
            shutil.copy(sql / f"{m.name}.sql", tmp_path)
    insert = """
        INSERT INTO roster_version (id_number, name, benefit_type, status, insured_region{})
        VALUES ($1, '张秀英', 'basic_pension', 'active', '110105'{}) RETURNING version
    """
    conn = await db.connect(empty_database)
    try:
        await migrate(conn, tmp_path)
        old = await conn.fetchval(insert.format("", ""), "11010519491231002X")
        for m in migrations:
            shutil.copy(sql / f"{m.name}.sql", tmp_path)
        await migrate(conn, tmp_path)
        new = await conn.fetchval(
            insert.format(", suspended_on", ", '2024-05-01'"), "11010519491231003X"
        )
        plain = await conn.fetchval(insert.format("", ""), "11010519491231004X")
        assert (await verify(conn)).intact
        for version, change in (
            (old, "suspended_on = '2024-05-01'"),
            (new, "suspended_on = NULL"),
            (plain, "suspended_on = '2024-05-01'"),
        ):
            await tamper(
                conn,
                "roster_version",
                f"UPDATE roster_version SET {change} WHERE version = {version}",
            )
            report = await verify(conn)
            assert [(p.table, p.key, "differs" in p.what) for p in report.problems] == [
                ("roster_version", str(version), True)
            ]
            restore = "'2024-05-01'" if version == new else "NULL"
            await tamper(
                conn,
                "roster_version",
                f"UPDATE roster_version SET suspended_on = {restore} WHERE version = {version}",
            )
        assert (await verify(conn)).intact
    finally:
        await conn.close()
