"""Whatever asyncpg raises when the server goes away under an open transaction, a closed
connection makes it a retriable loss, never a crash."""

from __future__ import annotations

import asyncpg
import pytest

from certrecon.errors import ConnectionLostError
from certrecon.store import db


async def _terminated_in_a_transaction(conn: asyncpg.Connection) -> None:
    async with db.losing_connection_is_retriable(conn), conn.transaction():
        await conn.execute("SELECT 1")
        # What a server shutdown does to the session; the transaction's exit then raises
        # an InterfaceError that names no lost connection.
        conn.terminate()


async def test_an_error_on_a_closed_connection_is_a_lost_connection(fresh_database: str) -> None:
    conn = await db.connect(fresh_database)
    with pytest.raises(ConnectionLostError) as caught:
        await _terminated_in_a_transaction(conn)
    assert isinstance(caught.value.__cause__, asyncpg.InterfaceError)
    assert db.is_retriable_db_error(caught.value)


async def test_an_error_on_a_live_connection_is_left_alone(fresh_database: str) -> None:
    conn = await db.connect(fresh_database)
    try:
        with pytest.raises(asyncpg.UndefinedTableError):
            async with db.losing_connection_is_retriable(conn), conn.transaction():
                await conn.execute("SELECT * FROM no_such_table")
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_a_pooled_connection_closed_under_the_block_is_a_lost_connection(
    fresh_database: str,
) -> None:
    # The pool detaches its proxy from a connection that closed; asking the proxy whether
    # it is closed then raises InterfaceError, which must not escape as a crash.
    pool = await db.create_pool(fresh_database, min_size=1, max_size=1)

    async def terminated_in_a_transaction() -> None:
        async with (
            pool.acquire() as conn,
            db.losing_connection_is_retriable(conn),
            conn.transaction(),
        ):
            await conn.execute("SELECT 1")
            conn.terminate()

    try:
        with pytest.raises(ConnectionLostError) as caught:
            await terminated_in_a_transaction()
        assert db.is_retriable_db_error(caught.value)
    finally:
        await pool.close()
