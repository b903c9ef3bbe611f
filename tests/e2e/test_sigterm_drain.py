"""SIGTERM with work in hand: ``certrecon run`` finishes the batch being written, publishes
what it produced, and only then exits 0 (within its grace period)."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from certrecon.store import db
from certrecon.store.roster import import_roster
from tests.support import (
    create_topics,
    eligible_roster,
    isolated_settings,
    produce,
    read_topic,
    settings_env,
    spread_over_channels,
    wait_for,
)

pytestmark = pytest.mark.slow

BLOCKED = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""


async def test_sigterm_commits_the_batch_in_hand_and_drains_the_outbox(
    fresh_database: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    people = eligible_roster(200, seed=43)
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    messages = spread_over_channels(settings, people, when, prefix="T")
    conn = await db.connect(fresh_database)
    blocker = await asyncpg.connect(fresh_database)
    env = settings_env(settings, fresh_database, kafka_bootstrap)
    env["CERTRECON_SHUTDOWN_GRACE_SECONDS"] = "30"
    # One message per relay round: the batch's results are still pending when the stop
    # reaches the relay, so only its drain publishes them.
    env["CERTRECON_RELAY_BATCH_SIZE"] = "1"
    with (tmp_path / "worker.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "certrecon", "run"], env=env, stdout=log, stderr=log
        )
    try:
        await import_roster(conn, people)
        await produce(kafka_bootstrap, messages[:50])
        await wait_for(conn, "SELECT count(*) FROM result", lambda n: n == 50, timeout=90)

        # The next batch is held at its offsets write; its results are not stored yet.
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE consumer_offset IN EXCLUSIVE MODE")
        await produce(kafka_bootstrap, messages[50:])
        await wait_for(conn, BLOCKED, lambda n: n >= 1)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.5)
        assert proc.poll() is None, "the worker exited with a batch in hand"
        await tx.rollback()
        status = await asyncio.to_thread(proc.wait, 60)
        assert status == 0
        # What it had in hand is stored and published: nothing left for a successor.
        stored = await conn.fetchval("SELECT count(*) FROM result")
        assert stored > 50
        assert await conn.fetchval("SELECT count(*) FROM outbox_backlog") == 0
        records = await read_topic(kafka_bootstrap, settings.result_topic, at_least=stored)
        assert len({r.value for r in records}) == stored
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        await blocker.close()
        await conn.close()
