"""Every line a worker writes to stderr is one JSON object, also through a database outage."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from certrecon.embedded.postgres import EmbeddedPostgres
from certrecon.store import db
from certrecon.store.migrations import migrate
from certrecon.store.roster import import_roster
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


async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    return await asyncio.get_running_loop().run_in_executor(None, lambda: proc.wait(timeout))


async def test_stderr_is_json_lines_through_a_database_outage(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    await asyncio.to_thread(pg.start)
    proc: subprocess.Popen[bytes] | None = None
    stderr_path = tmp_path / "worker.stderr"
    try:
        settings = isolated_settings()
        await create_topics(settings, kafka_bootstrap)
        people = eligible_roster(200, seed=47)
        conn = await db.connect(pg.dsn)
        try:
            await migrate(conn)
            await import_roster(conn, people)
        finally:
            await conn.close()
        when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        messages = spread_over_channels(settings, people, when, prefix="L")

        env = settings_env(settings, pg.dsn, kafka_bootstrap)
        with stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "certrecon", "run"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        await produce(kafka_bootstrap, messages[:100])
        conn = await db.connect(pg.dsn)
        await wait_for(conn, "SELECT count(*) FROM result", lambda n: n == 100, timeout=120)
        await conn.close()

        # The outage: the worker's connections break while certifications keep arriving.
        await asyncio.to_thread(pg.stop)
        await produce(kafka_bootstrap, messages[100:])
        await asyncio.sleep(3)
        await asyncio.to_thread(pg.start)

        conn = await db.connect(pg.dsn)
        try:
            await wait_for(conn, "SELECT count(*) FROM result", lambda n: n == 200, timeout=120)
            await wait_for(conn, "SELECT count(*) FROM outbox_backlog", lambda n: n == 0)
        finally:
            await conn.close()
        proc.send_signal(signal.SIGTERM)
        assert await _wait_exit(proc, 60) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        await asyncio.to_thread(pg.stop)

    text = stderr_path.read_text("utf-8")
    events: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            event = json.loads(line)
        except ValueError:
            pytest.fail(f"stderr line {number} is not JSON: {line[:300]!r}")
        assert isinstance(event, dict), line
        assert {"event", "level", "timestamp"} <= event.keys(), line
        events.append(event)
    # The outage was noticed and logged (from certrecon or from asyncpg), not silent.
    assert any(e["level"] in {"warning", "error"} for e in events), text[:2000]
    for person in people:
        assert person.id_number not in text
        assert person.name not in text
