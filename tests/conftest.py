"""Real services for the tests: one embedded PostgreSQL and one Kafka-protocol broker per
test session, and a fresh, migrated database for every test that asks for one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import settings

from certrecon.embedded.broker import EmbeddedBroker
from certrecon.embedded.postgres import EmbeddedPostgres
from certrecon.store import db
from certrecon.store.migrations import migrate

# No time limit per example: the tests share two cores with other work, and how long an
# example takes is for the benchmarks to say, never a test.
settings.register_profile("certrecon", deadline=None)
settings.load_profile("certrecon")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of the maintenance database of a PostgreSQL server for this session."""
    external = os.environ.get("CERTRECON_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data") as pg:
        yield pg.dsn


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("CERTRECON_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    with EmbeddedBroker(tmp_path_factory.mktemp("broker")) as broker:
        yield broker.bootstrap


def dsn_for(server_dsn: str, database: str) -> str:
    """The server DSN with another database name (works for socket and TCP DSNs)."""
    head, sep, query = server_dsn.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}{sep}{query}"


_template_lock = asyncio.Lock()
_template_ready: set[str] = set()


async def _ensure_template(server_dsn: str) -> str:
    """A migrated template database; copying it is much faster than migrating each time."""
    name = "certrecon_template"
    async with _template_lock:
        if server_dsn not in _template_ready:
            admin = await asyncpg.connect(server_dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
                await admin.execute(f'CREATE DATABASE "{name}"')
            finally:
                await admin.close()
            conn = await db.connect(dsn_for(server_dsn, name))
            try:
                await migrate(conn)
            finally:
                await conn.close()
            _template_ready.add(server_dsn)
    return name


@contextlib.asynccontextmanager
async def _temporary_database(
    server_dsn: str, prefix: str, template: str | None
) -> AsyncIterator[str]:
    # Identifiers cannot be query parameters; the name is generated here, never input.
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    create = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(create)
    finally:
        await admin.close()
    try:
        yield dsn_for(server_dsn, name)
    finally:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest_asyncio.fixture
async def fresh_database(pg_server: str) -> AsyncIterator[str]:
    """DSN of a new, empty, fully migrated database, dropped after the test."""
    template = await _ensure_template(pg_server)
    async with _temporary_database(pg_server, "t", template) as dsn:
        yield dsn


@pytest_asyncio.fixture
async def empty_database(pg_server: str) -> AsyncIterator[str]:
    """DSN of a new database with no schema at all, dropped after the test."""
    async with _temporary_database(pg_server, "e", None) as dsn:
        yield dsn


@pytest_asyncio.fixture
async def conn(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    c = await db.connect(fresh_database)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
