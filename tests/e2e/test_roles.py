"""The worker, staff and audit commands through logins that hold one role each.

Roles are cluster-wide and the test server is shared, so every login here has a unique name
and is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from click.testing import CliRunner

from certrecon.cli import cli
from certrecon.cli.commands import register
from certrecon.store import db
from certrecon.store.roster import import_roster
from tests.conftest import dsn_for
from tests.support import (
    certification,
    create_topics,
    eligible_roster,
    encode,
    isolated_settings,
    produce,
    read_topic,
    running_worker,
    wait_for,
)


def dsn_as(dsn: str, user: str) -> str:
    """The DSN with another user (the embedded server trusts local logins)."""
    scheme, rest = dsn.split("://", 1)
    _, _, host_and_db = rest.partition("@")
    return f"{scheme}://{user}@{host_and_db}"


@pytest_asyncio.fixture
async def logins(pg_server: str) -> AsyncIterator[Any]:
    made: list[str] = []

    async def make(role: str) -> str:
        name = f"t_{role.removeprefix('certrecon_')}_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(pg_server)
        try:
            await admin.execute(f'CREATE ROLE "{name}" LOGIN IN ROLE {role}')
        finally:
            await admin.close()
        made.append(name)
        return name

    yield make
    admin = await asyncpg.connect(pg_server)
    try:
        for name in made:
            await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
    finally:
        await admin.close()


async def test_each_role_does_its_job_and_nothing_more(
    fresh_database: str, kafka_bootstrap: str, logins: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = dsn_as(fresh_database, await logins("certrecon_app"))
    reviewer_login = await logins("certrecon_reviewer")
    reviewer = dsn_as(fresh_database, reviewer_login)
    auditor = dsn_as(fresh_database, await logins("certrecon_auditor"))
    owner = await db.connect(fresh_database)
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    people = eligible_roster(3, seed=41)
    people[2] = dataclasses.replace(people[2], deceased_on=dt.date(2024, 1, 1))
    try:
        # The app login imports the roster and runs the worker (consumer, relay, monitor).
        conn = await db.connect(app)
        try:
            await import_roster(conn, people)
            for statement in (
                "UPDATE roster_version SET name = 'x'",
                "DELETE FROM certification",
                "TRUNCATE outbox",
                "CREATE TABLE sneaky (x int)",
                "INSERT INTO ledger_link SELECT * FROM ledger_link",
                "INSERT INTO staff_decision (certification_id, outcome, decided_by, decided_at)"
                " VALUES ('x', 'qualified', 'staff:x', now())",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        finally:
            await conn.close()
        when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        messages = [
            (
                settings.channel_topics[c],
                p.id_number.encode(),
                encode(certification(f"R{i}", c, p, when)),
            )
            for i, (p, c) in enumerate(zip(people, list(settings.channel_topics), strict=False))
        ]
        async with running_worker(settings, app, kafka_bootstrap):
            await produce(kafka_bootstrap, messages)
            await wait_for(owner, "SELECT count(*) FROM certification_return", lambda n: n == 2)
            await wait_for(owner, "SELECT count(*) FROM review_item", lambda n: n == 1)

        # The reviewer login lists, shows and decides; the decision records its login.
        register(cli)
        runner = CliRunner()
        monkeypatch.setenv("CERTRECON_DATABASE_URL", reviewer)
        listed = await asyncio.to_thread(runner.invoke, cli, ["review", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        assert [i["certification_id"] for i in json.loads(listed.output)] == ["R2"]
        shown = await asyncio.to_thread(runner.invoke, cli, ["review", "show", "R2"])
        assert shown.exit_code == 0, shown.output
        decided = await asyncio.to_thread(
            runner.invoke,
            cli,
            ["review", "decide", "R2", "--outcome", "eligibility_lost", "--by", "s7"],
        )
        assert decided.exit_code == 0, decided.output
        row = await owner.fetchrow("SELECT decided_by, login FROM staff_decision")
        assert row is not None
        assert tuple(row) == ("staff:s7", reviewer_login)
        conn = await db.connect(reviewer)
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DELETE FROM result")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("INSERT INTO review_item VALUES ('R0', 'deceased', now())")
        finally:
            await conn.close()

        # The auditor login verifies, checkpoints, reads a story and the SLA view.
        monkeypatch.setenv("CERTRECON_DATABASE_URL", auditor)
        verified = await asyncio.to_thread(runner.invoke, cli, ["audit", "verify", "--json"])
        assert verified.exit_code == 0, verified.output
        assert json.loads(verified.output)["intact"] is True
        printed = await asyncio.to_thread(runner.invoke, cli, ["audit", "checkpoint"])
        assert printed.exit_code == 0, printed.output
        story = await asyncio.to_thread(runner.invoke, cli, ["audit", "show", "R2", "--json"])
        assert story.exit_code == 0, story.output
        assert json.loads(story.output)["staff_decisions"][0]["login"] == reviewer_login
        sla = await asyncio.to_thread(runner.invoke, cli, ["sla", "--json"])
        assert sla.exit_code == 0, sla.output
        conn = await db.connect(auditor)
        try:
            for statement in (
                "INSERT INTO monitor_run VALUES ('x', now(), 0, 0, 'x')",
                "UPDATE relay_cursor SET last_id = 0",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        finally:
            await conn.close()
        # The auditor role's own sessions are read-only.
        setting = await owner.fetchval(
            """
            SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
            WHERE r.rolname = 'certrecon_auditor'
            """
        )
        assert "default_transaction_read_only=on" in setting
        results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=2)
        assert {json.loads(r.value)["result_id"] for r in results} == {"R0:1", "R1:1"}
        # The staff result waits for the next relay round (the worker has stopped).
        assert await owner.fetchval("SELECT message_id FROM outbox_backlog") == "R2:1"
    finally:
        await owner.close()


def test_dsn_as_keeps_host_and_database() -> None:
    dsn = dsn_for("postgresql://postgres:@/postgres?host=/tmp/x", "db1")
    assert dsn_as(dsn, "alice") == "postgresql://alice@/db1?host=/tmp/x"
