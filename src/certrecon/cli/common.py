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
    from certrecon.store.migrations import ensure_current

    dsn = settings.database_url
    with contextlib.ExitStack() as stack:
        if dsn is None:
            from certrecon.embedded.postgres import EmbeddedPostgres

            dsn = stack.enter_context(EmbeddedPostgres.under(settings.data_dir)).dsn
        conn = await db.connect(dsn, password=settings.database_password)
        try:
            await ensure_current(conn)
            yield conn
        finally:
            await conn.close()


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    async def runner() -> T:
        return await fn()

    return asyncio.run(runner())
