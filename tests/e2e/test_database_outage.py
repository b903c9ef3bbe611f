"""PostgreSQL outages while certifications keep arriving.

A short one is ridden out: the worker retries, then catches up. One longer than the
bounded retry makes the worker give up and stop (exit status 1, so a supervisor restarts
it), no longer counting itself started; the restarted worker answers everything once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest

from certrecon.domain import Channel
from certrecon.embedded.postgres import EmbeddedPostgres
from certrecon.errors import WorkerCrashedError
from certrecon.store import db
from certrecon.store.migrations import migrate
from certrecon.store.roster import import_roster
from certrecon.worker.bootstrap import build_worker
from certrecon.worker.service import Worker
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


def _started(worker: Worker) -> bool:
    return worker.state.started


RETRY_SECONDS = 3.0
"""The retry bound for the give-up test (60 s in production; the path is the same)."""


async def test_an_outage_past_the_retry_bound_stops_the_worker_and_a_restart_catches_up(
    tmp_path: Path, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "OUTAGE", db.OUTAGE.within(RETRY_SECONDS))
    pg = EmbeddedPostgres(tmp_path / "pg")
    await asyncio.to_thread(pg.start)
    try:
        settings = isolated_settings(shutdown_grace_seconds=10.0)
        await create_topics(settings, kafka_bootstrap)
        people = eligible_roster(300, seed=37)
        conn = await db.connect(pg.dsn)
        try:
            await migrate(conn)
            await import_roster(conn, people)
        finally:
            await conn.close()
        when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        messages = spread_over_channels(settings, people, when, prefix="Q")

        stop = asyncio.Event()
        worker = build_worker(settings, dsn=pg.dsn, bootstrap=kafka_bootstrap)
        task = asyncio.create_task(worker.run(stop), name="test-worker")
        await produce(kafka_bootstrap, messages[:100])
        conn = await db.connect(pg.dsn)
        await wait_for(conn, "SELECT count(*) FROM result", lambda n: n == 100)
        await conn.close()
        assert worker.state.started

        await asyncio.to_thread(pg.stop)
        await produce(kafka_bootstrap, messages[100:200])
        with pytest.raises(WorkerCrashedError):
            await asyncio.wait_for(task, 120)
        assert not _started(worker), "a worker that gave up still counts itself started"
        await asyncio.to_thread(pg.start)

        await produce(kafka_bootstrap, messages[200:])
        async with running_worker(settings, pg.dsn, kafka_bootstrap):
            conn = await db.connect(pg.dsn)
            try:
                await wait_for(conn, "SELECT count(*) FROM result", lambda n: n == 300, timeout=90)
                await wait_for(conn, "SELECT count(*) FROM outbox_backlog", lambda n: n == 0)
            finally:
                await conn.close()
        records = await read_topic(kafka_bootstrap, settings.result_topic, at_least=300)
        by_id: dict[str, set[bytes]] = {}
        for r in records:
            by_id.setdefault(json.loads(r.value)["certification_id"], set()).add(r.value)
        assert set(by_id) == {f"Q{i:08d}" for i in range(300)}
        assert all(len(v) == 1 for v in by_id.values())
    finally:
        await asyncio.to_thread(pg.stop)
