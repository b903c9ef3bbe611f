"""Crashes, restarts and rebalances with real worker processes.

Every certification must end with a result on the result topic, and all copies of a
result (a re-send after a crash is allowed) must carry the same bytes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from certrecon.settings import Settings
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

COUNT = 6000


class Workers:
    """``certrecon run`` processes; each logs (JSON lines) to its own file."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.logdir / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "certrecon", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log_events(self, index: int) -> list[dict[str, Any]]:
        lines = (self.logdir / f"worker-{index}.log").read_text("utf-8").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def workers() -> Iterator[list[Workers]]:
    made: list[Workers] = []
    yield made
    for w in made:
        w.cleanup()


async def _prepare(
    dsn: str, bootstrap: str, *, hold_back: int = 0
) -> tuple[Settings, asyncpg.Connection, list[tuple[str, bytes, bytes]]]:
    """Import the roster and push all certifications but the last ``hold_back`` ones,
    which are returned for the test to push later."""
    settings = isolated_settings(topic_partitions=4)
    await create_topics(settings, bootstrap)
    people = eligible_roster(COUNT, seed=99)
    conn = await db.connect(dsn)
    await import_roster(conn, people)
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    messages = spread_over_channels(settings, people, when, prefix="C")
    await produce(bootstrap, messages[: COUNT - hold_back])
    return settings, conn, messages[COUNT - hold_back :]


async def _wait_process(proc: subprocess.Popen[bytes], timeout: float) -> int:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: proc.wait(timeout))


async def _all_answered_then_stop(conn: asyncpg.Connection, proc: subprocess.Popen[bytes]) -> None:
    """Wait until every certification has a published result, then stop the worker the
    way a supervisor does; it must exit 0."""
    await wait_for(conn, "SELECT count(*) FROM result", lambda n: n == COUNT, timeout=180)
    await wait_for(conn, "SELECT count(*) FROM outbox_backlog", lambda n: n == 0, timeout=60)
    proc.send_signal(signal.SIGTERM)
    assert await _wait_process(proc, 60) == 0


def _assert_one_content_per_result(records: list[object]) -> None:
    contents: dict[str, set[bytes]] = defaultdict(set)
    for r in records:
        value: bytes = r.value  # type: ignore[attr-defined]
        contents[json.loads(value)["certification_id"]].add(value)
    assert len(contents) == COUNT
    conflicting = {cid: v for cid, v in contents.items() if len(v) > 1}
    assert conflicting == {}


async def test_sigkill_mid_stream_loses_nothing_and_answers_once(
    fresh_database: str, kafka_bootstrap: str, workers: list[Workers], tmp_path: Path
) -> None:
    settings, conn, _ = await _prepare(fresh_database, kafka_bootstrap)
    try:
        pool = Workers(settings_env(settings, fresh_database, kafka_bootstrap), tmp_path)
        workers.append(pool)
        first = pool.start()
        await wait_for(conn, "SELECT count(*) FROM result", lambda n: n >= 1000, timeout=120)
        first.send_signal(signal.SIGKILL)
        assert await _wait_process(first, 10) == -signal.SIGKILL
        done_before = await conn.fetchval("SELECT count(*) FROM result")
        assert done_before < COUNT, "the crash must happen mid-stream"

        second = pool.start()
        await _all_answered_then_stop(conn, second)

        records = await read_topic(kafka_bootstrap, settings.result_topic, at_least=COUNT)
        _assert_one_content_per_result(records)
        assert await conn.fetchval("SELECT count(*) FROM certification") == COUNT
    finally:
        await conn.close()


async def test_two_workers_share_partitions_and_one_stopping_loses_nothing(
    fresh_database: str, kafka_bootstrap: str, workers: list[Workers], tmp_path: Path
) -> None:
    later_half = COUNT // 2
    settings, conn, rest = await _prepare(fresh_database, kafka_bootstrap, hold_back=later_half)
    try:
        pool = Workers(settings_env(settings, fresh_database, kafka_bootstrap), tmp_path)
        workers.append(pool)
        a = pool.start()
        b = pool.start()
        await wait_for(conn, "SELECT count(*) FROM result", lambda n: n >= 1500, timeout=120)
        a.send_signal(signal.SIGTERM)
        assert await _wait_process(a, 60) == 0
        # The second half arrives on every partition, including those the stopped worker
        # owned: the remaining worker must take them over.
        await produce(kafka_bootstrap, rest)
        await _all_answered_then_stop(conn, b)

        records = await read_topic(kafka_bootstrap, settings.result_topic, at_least=COUNT)
        _assert_one_content_per_result(records)
        # While both ran, each owned a share of the partitions, and no partition twice.
        shares = [
            [e["partitions"] for e in pool.log_events(i) if e["event"] == "partitions assigned"]
            for i in range(2)
        ]
        assert all(shares), shares
        together = [set(a_share) & set(b_share) for a_share in shares[0] for b_share in shares[1]]
        assert any(not common for common in together), shares
        every = settings.topic_partitions * len(settings.channel_topics)
        assert any(0 < len(s) < every for s in shares[0] + shares[1])
    finally:
        await conn.close()
