"""Helpers shared by the sub-commands: settings, services and the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import asyncpg

from certrecon import logs
from certrecon.settings import Settings
from certrecon.store import db

T = TypeVar("T")


def load_settings() -> Settings:
    logs.configure()
    return Settings.from_env()


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """One connection to the configured (or embedded) PostgreSQL, its schema current.

    Pending migrations are applied when this login may (the schema owner); a
    least-privilege login only checks that none is pending.
    """
    async with databases(settings) as (conn, _):
        yield conn


@contextlib.asynccontextmanager
async def databases(
    settings: Settings,
) -> AsyncIterator[tuple[asyncpg.Connection, Callable[[], Awaitable[asyncpg.Connection]]]]:
    """Like :func:`database`, with a function that opens more connections to the same
    database as the same login (the caller closes them)."""
    from certrecon.store.migrations import ensure_current

    dsn = settings.database_url
    with contextlib.ExitStack() as stack:
        if dsn is None:
            from certrecon.embedded.postgres import EmbeddedPostgres

            dsn = stack.enter_context(EmbeddedPostgres.under(settings.data_dir)).dsn
        address = dsn

        async def connect() -> asyncpg.Connection:
            return await db.connect(address, password=settings.database_password)

        conn = await connect()
        try:
            await ensure_current(conn)
            yield conn, connect
        finally:
            await conn.close()


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    async def runner() -> T:
        return await fn()

    return asyncio.run(runner())
