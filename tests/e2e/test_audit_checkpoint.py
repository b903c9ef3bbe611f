"""The worker publishes the ledger's head on the checkpoint topic when the ledger moved."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from certrecon.store import audit, db
from certrecon.store.roster import import_roster
from tests.support import (
    create_topics,
    eligible_roster,
    isolated_settings,
    produce,
    read_topic,
    running_worker,
    spread_over_channels,
    wait_for,
)


async def test_a_checkpoint_follows_new_ledger_rows_and_only_them(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    settings = isolated_settings(audit_checkpoint_seconds=0.5)
    await create_topics(settings, kafka_bootstrap)
    people = eligible_roster(8, seed=51)
    conn = await db.connect(fresh_database)
    try:
        await import_roster(conn, people)
        when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        async with running_worker(settings, fresh_database, kafka_bootstrap):
            await produce(kafka_bootstrap, spread_over_channels(settings, people, when, prefix="K"))
            await wait_for(conn, "SELECT count(*) FROM certification_return", lambda n: n == 8)
            await wait_for(conn, "SELECT count(*) FROM outbox_backlog", lambda n: n == 0)
            # The results' acknowledgements may commit after the first checkpoint was queued;
            # then the next one covers them. Wait for a published checkpoint of the newest
            # content.
            content = await audit.latest_content_seq(conn)
            assert content is not None
            await wait_for(
                conn,
                "SELECT max(split_part(message_id, ':', 2)::bigint) FROM outbox_ack "
                "WHERE message_id LIKE 'audit-checkpoint:%'",
                lambda seq: seq is not None and seq >= content,
            )
            # The last content (the results' acknowledgements) gets its checkpoint within a
            # period; once that one is published the ledger is quiet.
            await wait_for(conn, "SELECT count(*) FROM outbox_backlog", lambda n: n == 0)
            await asyncio.sleep(1.5)
            await wait_for(conn, "SELECT count(*) FROM outbox_backlog", lambda n: n == 0)
            # Several quiet periods: only checkpoint rows were added since, so no new one.
            queued = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE kind = 'audit_checkpoint'"
            )
            head_before = await conn.fetchval("SELECT max(seq) FROM ledger_link")
            await asyncio.sleep(3.0)  # six checkpoint periods
            assert (
                await conn.fetchval("SELECT count(*) FROM outbox WHERE kind = 'audit_checkpoint'")
                == queued
            )
            assert head_before is not None
        records = await read_topic(kafka_bootstrap, settings.audit_checkpoint_topic, at_least=1)
        first = json.loads(records[0].value)
        assert set(first) == {"schema_version", "seq", "head_sha256", "entries", "at"}
        link = await conn.fetchrow("SELECT sha256 FROM ledger_link WHERE seq = $1", first["seq"])
        assert link is not None
        assert bytes(link["sha256"]).hex() == first["head_sha256"]
    finally:
        await conn.close()
