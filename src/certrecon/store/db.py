"""Connections to PostgreSQL."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from certrecon.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

Conn: TypeAlias = "asyncpg.Connection | PoolConnectionProxy[Any]"
"""A plain connection or one acquired from a pool (the worker uses a pool)."""

# Errors that mean "the server is not there (yet)": connection refused, starting up,
# shutting down, too many connections. Anything else is a real error and is not retried.
RETRIABLE_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


def is_retriable_db_error(exc: BaseException) -> bool:
    """Whether trying again can help: a lost or refused connection, also when it surfaces
    as a later error (e.g. the rollback of a transaction whose connection just died)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, RETRIABLE_DB_ERRORS):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.execute("SET TIME ZONE 'UTC'")


def _until_reachable(wait_seconds: float) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception_type(RETRIABLE_DB_ERRORS),
        wait=wait_exponential(multiplier=0.1, max=2),
        stop=stop_after_delay(wait_seconds),
        reraise=True,
    )


async def connect(dsn: str, *, wait_seconds: float = 30.0) -> asyncpg.Connection:
    """One connection, retried (bounded) while the server is unreachable."""
    try:
        async for attempt in _until_reachable(wait_seconds):
            with attempt:
                conn: asyncpg.Connection = await asyncpg.connect(dsn)
                await _init_connection(conn)
                return conn
    except RETRIABLE_DB_ERRORS as exc:
        raise DatabaseUnavailableError(f"PostgreSQL is unreachable: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 4, wait_seconds: float = 30.0
) -> asyncpg.Pool[Any]:
    """A pool, retried (bounded) while the server is unreachable."""
    try:
        async for attempt in _until_reachable(wait_seconds):
            with attempt:
                pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
                    dsn, min_size=min_size, max_size=max_size, init=_init_connection
                )
                return pool
    except RETRIABLE_DB_ERRORS as exc:
        raise DatabaseUnavailableError(f"PostgreSQL is unreachable: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover
