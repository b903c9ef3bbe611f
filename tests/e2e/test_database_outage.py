"""A PostgreSQL restart while certifications keep arriving: the worker waits, then catches up."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

from certrecon.domain import Channel
from certrecon.embedded.postgres import EmbeddedPostgres
from certrecon.store import db
from certrecon.store.migrations import migrate
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


async def test_the_worker_rides_out_a_database_restart(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    await asyncio.to_thread(pg.start)
    try:
        settings = isolated_settings()
        await create_topics(settings, kafka_bootstrap)
        people = eligible_roster(400, seed=31)
        conn = await db.connect(pg.dsn)
        try:
            await migrate(conn)
            await import_roster(conn, people)
        finally:
            await conn.close()
        when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        messages = spread_over_channels(settings, people, when, prefix="O")

        async with running_worker(settings, pg.dsn, kafka_bootstrap) as worker:
            await produce(kafka_bootstrap, messages[:200])
            conn = await db.connect(pg.dsn)
            await wait_for(conn, "SELECT count(*) FROM result", lambda n: n == 200)
            await conn.close()

            await asyncio.to_thread(pg.stop)
            await produce(kafka_bootstrap, messages[200:])
            await asyncio.sleep(2)
            await asyncio.to_thread(pg.start)

            conn = await db.connect(pg.dsn)
            try:
                await wait_for(conn, "SELECT count(*) FROM result", lambda n: n == 400, timeout=90)
                await wait_for(conn, "SELECT count(*) FROM outbox_backlog", lambda n: n == 0)
            finally:
                await conn.close()
            assert worker.state.started

        records = await read_topic(kafka_bootstrap, settings.result_topic, at_least=400)
        assert {json.loads(r.value)["certification_id"] for r in records} == {
            f"O{i:08d}" for i in range(400)
        }
        assert Channel.CONSULAR.value in {json.loads(r.value)["channel"] for r in records}
    finally:
        await asyncio.to_thread(pg.stop)
