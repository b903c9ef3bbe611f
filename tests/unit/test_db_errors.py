from __future__ import annotations

import asyncpg
import pytest

from certrecon.store.db import is_retriable_db_error


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - the implicit context is what is under test
    except BaseException as exc:
        return exc


def test_lost_connections_are_retriable() -> None:
    assert is_retriable_db_error(ConnectionResetError())
    assert is_retriable_db_error(asyncpg.AdminShutdownError())
    assert is_retriable_db_error(asyncpg.ConnectionDoesNotExistError())


def test_a_rollback_failing_after_a_lost_connection_is_retriable() -> None:
    exc = _chained(
        asyncpg.InterfaceError("cannot call Transaction.__aexit__()"),
        asyncpg.ConnectionDoesNotExistError("connection was closed"),
    )
    assert is_retriable_db_error(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.UniqueViolationError(),
        asyncpg.InterfaceError("misuse"),
        ValueError("bad"),
    ],
)
def test_real_errors_are_not_retried(exc: BaseException) -> None:
    assert not is_retriable_db_error(exc)
