"""Many writers at once never fork the chain nor raise a false alarm: two worker processes,
a roster import and a staff decision write concurrently, then the ledger verifies."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import signal
from pathlib import Path

import pytest

from certrecon.audit.verify import verify
from certrecon.domain import Outcome
from certrecon.store import db
from certrecon.store.review import decide
from certrecon.store.roster import import_roster
from tests.e2e.test_crash_and_rebalance import Workers, _wait_process
from tests.support import (
    create_topics,
    eligible_roster,
    isolated_settings,
    produce,
    settings_env,
    spread_over_channels,
    wait_for,
)

pytestmark = pytest.mark.slow

COUNT = 3000


async def test_concurrent_writers_leave_an_intact_chain(
    fresh_database: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(topic_partitions=4, audit_checkpoint_seconds=1.0)
    await create_topics(settings, kafka_bootstrap)
    people = eligible_roster(COUNT, seed=61)
    people[0] = dataclasses.replace(people[0], deceased_on=dt.date(2024, 1, 1))
    conn = await db.connect(fresh_database)
    staff = await db.connect(fresh_database)
    importer = await db.connect(fresh_database)
    env = settings_env(settings, fresh_database, kafka_bootstrap)
    # Small batches: many transactions from each writer, interleaved.
    env.update(CERTRECON_BATCH_MAX_RECORDS="100", CERTRECON_RELAY_BATCH_SIZE="100")
    pool = Workers(env, tmp_path)
    try:
        await import_roster(conn, people)
        when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        await produce(kafka_bootstrap, spread_over_channels(settings, people, when, prefix="W"))
        procs = [pool.start(), pool.start()]

        async def reimport() -> None:
            # New versions for a third of the roster, twice, while the workers write.
            for round_ in range(2):
                changed = [
                    dataclasses.replace(p, benefit_type=f"basic_pension_{round_}")
                    for p in people[1 : COUNT // 3]
                ]
                await import_roster(importer, changed)
                await asyncio.sleep(0.2)

        async def decide_when_queued() -> None:
            await wait_for(staff, "SELECT count(*) FROM review_item", lambda n: n == 1)
            await decide(
                staff,
                "W00000000",
                outcome=Outcome.ELIGIBILITY_LOST,
                staff_id="s1",
                note=None,
                now=dt.datetime.now(dt.UTC),
                topic=settings.result_topic,
            )

        await asyncio.gather(reimport(), decide_when_queued())
        await wait_for(
            conn, "SELECT count(*) FROM certification_return", lambda n: n == COUNT, timeout=240
        )
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert await _wait_process(proc, 60) == 0
        report = await verify(conn)
        assert report.intact, report.problems[:5]
        writers = await conn.fetchval("SELECT count(DISTINCT xid) FROM ledger_entry")
        assert report.links == writers
        assert report.links > 40
        assert report.entries == await conn.fetchval(
            "SELECT sum(cardinality(keys)) FROM ledger_entry"
        )
    finally:
        pool.cleanup()
        for c in (conn, staff, importer):
            await c.close()
