from __future__ import annotations

import asyncpg
import pytest

from certrecon.store.db import is_retriable_db_error, refused_data_state


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
    # Raised by a pool resetting a connection whose server just shut down.
    assert is_retriable_db_error(
        asyncpg.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        )
    )


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


@pytest.mark.parametrize(
    ("exc", "state"),
    [
        (asyncpg.CharacterNotInRepertoireError(), "22021"),
        (asyncpg.UntranslatableCharacterError(), "22P05"),
        (asyncpg.CheckViolationError(), "23514"),
        (asyncpg.ForeignKeyViolationError(), "23503"),
        (asyncpg.ProgramLimitExceededError(), "54000"),
        # asyncpg reports a parameter it cannot encode (a lone surrogate) as 22000.
        (asyncpg.DataError(), "22000"),
    ],
)
def test_refused_data_is_told_apart(exc: BaseException, state: str) -> None:
    assert refused_data_state(exc) == state


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.ConnectionDoesNotExistError(),
        asyncpg.InsufficientPrivilegeError(),
        asyncpg.SerializationError(),
        asyncpg.UndefinedTableError(),
        ValueError("bad"),
        _chained(asyncpg.CheckViolationError(), ConnectionResetError()),
    ],
)
def test_other_errors_are_not_refused_data(exc: BaseException) -> None:
    assert refused_data_state(exc) is None
