"""The revocation guard: a revocation waits for the batch being written, and records
fetched before it are not written after it.

The next owner of a partition reads its stored offsets as soon as the revocation
returns; if the batch in hand committed later, the next owner would process it again
(and its stored offset could move backwards). The primary key would still keep one
content per certification, so only the timing itself shows the guard working.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg

from certrecon.store import db
from certrecon.store.roster import import_roster
from tests.support import (
    create_topics,
    eligible_roster,
    isolated_settings,
    produce,
    running_worker,
    spread_over_channels,
    wait_for,
)

BLOCKED = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""


async def test_a_revocation_waits_for_the_batch_in_hand_and_stops_older_fetches(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    people = eligible_roster(90, seed=41)
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    messages = spread_over_channels(settings, people, when, prefix="G")
    conn = await db.connect(fresh_database)
    blocker = await asyncpg.connect(fresh_database)
    try:
        await import_roster(conn, people)
        async with running_worker(settings, fresh_database, kafka_bootstrap) as worker:
            await produce(kafka_bootstrap, messages[:30])
            await wait_for(conn, "SELECT count(*) FROM certification", lambda n: n == 30)
            listener = worker.listener
            assert listener is not None

            # Hold the next batch's offsets write: the batch is then in hand, uncommitted.
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE consumer_offset IN EXCLUSIVE MODE")
            await produce(kafka_bootstrap, messages[30:60])
            await wait_for(conn, BLOCKED, lambda n: n >= 1)

            epoch = listener.epoch
            revoked = asyncio.create_task(listener.on_partitions_revoked(sorted(listener.assigned)))
            await asyncio.sleep(1.0)
            assert not revoked.done(), "the revocation did not wait for the batch in hand"
            await tx.rollback()
            await asyncio.wait_for(revoked, 30)
            # When the revocation returns, the batch is stored with its offsets: what the
            # next owner reads includes it.
            assert await conn.fetchval("SELECT count(*) FROM certification") == 60
            assert await conn.fetchval("SELECT sum(next_offset) FROM consumer_offset") == 60
            assert listener.epoch == epoch + 1

            # Records fetched now belong to no assignment of this worker: none is written.
            await produce(kafka_bootstrap, messages[60:])
            await asyncio.sleep(2.0)
            assert await conn.fetchval("SELECT count(*) FROM certification") == 60
    finally:
        await blocker.close()
        await conn.close()
