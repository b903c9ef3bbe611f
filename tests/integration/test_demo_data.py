"""Where the demo keeps its data: it resets only a database an earlier demo left, and
refuses one holding anything else. Real embedded PostgreSQL clusters in temporary folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from certrecon.demo import DEMO_MARKER, DemoDataError, prepare_database
from certrecon.embedded.postgres import EmbeddedPostgres
from certrecon.store import db
from certrecon.store.migrations import migrate
from certrecon.store.roster import import_roster
from tests.integration.sla_support import add_certification, cst
from tests.support import eligible_roster


async def _fill(pg: EmbeddedPostgres, *, people: int = 0, certification: str | None = None) -> None:
    with EmbeddedPostgres(pg.pgdata) as server:
        conn = await db.connect(server.dsn)
        try:
            await migrate(conn)
            if people:
                await import_roster(conn, eligible_roster(people, seed=5))
            if certification:
                await add_certification(conn, certification, cst(2026, 11, 2, 10))
        finally:
            await conn.close()


def _cluster(pg: EmbeddedPostgres) -> bool:
    return pg.initialised


def _mark(pg: EmbeddedPostgres, people: int) -> None:
    (pg.pgdata / DEMO_MARKER).write_text(json.dumps({"people": people}), encoding="utf-8")


async def test_what_the_demo_may_use_reset_or_must_leave_alone(tmp_path: Path) -> None:
    pg = EmbeddedPostgres.under(tmp_path / ".certrecon")
    said: list[str] = []

    # Nothing there yet.
    await prepare_database(pg, said.append)
    assert not _cluster(pg)

    # An empty database (another command created it first): used as it is.
    await _fill(pg)
    await prepare_database(pg, said.append)
    assert _cluster(pg)
    assert said == []

    # The demo's own database, holding only what the demo put there: reset, saying so.
    await _fill(pg, people=3, certification="DEMO20261102000001")
    _mark(pg, 3)
    await prepare_database(pg, said.append)
    assert not pg.pgdata.exists()
    assert said == [f"Resetting the database an earlier demo left in {pg.pgdata}."]

    # Somebody's roster in a database the demo did not make: left alone.
    await _fill(pg, people=2)
    with pytest.raises(DemoDataError, match=r"2 rows .* that certrecon demo did not create"):
        await prepare_database(pg, said.append)
    assert _cluster(pg)

    # Marked as the demo's, but a roster entry and a certification were added since.
    _mark(pg, 1)
    await _fill(pg, certification="RZ20261102000001")
    with pytest.raises(DemoDataError, match="2 rows"):
        await prepare_database(pg, said.append)
    assert _cluster(pg)
    assert len(said) == 1


def test_a_running_server_is_seen(tmp_path: Path) -> None:
    pg = EmbeddedPostgres.under(tmp_path)
    assert pg.running_pid() is None
    with EmbeddedPostgres(pg.pgdata) as server:
        assert server.running_pid() is not None
        assert pg.running_pid() == server.running_pid()
    assert pg.running_pid() is None
