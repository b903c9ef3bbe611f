"""The bounded retry policies of the adapter edges."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, RequestTimedOutError

from certrecon.errors import ConnectionLostError
from certrecon.retry import RetryPolicy
from certrecon.store import db
from certrecon.worker import kafka, relay


class Flaky:
    """Fails with ``errors`` in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


FAST = RetryPolicy(lambda e: isinstance(e, ConnectionError), 0.001, 0.002, 5)


async def test_retriable_errors_are_tried_again_until_success() -> None:
    flaky = Flaky(ConnectionResetError(), ConnectionRefusedError())
    assert await FAST.call(flaky) == "ok"
    assert flaky.calls == 3


async def test_other_errors_are_raised_at_once() -> None:
    flaky = Flaky(ValueError("bad data"))
    with pytest.raises(ValueError, match="bad data"):
        await FAST.call(flaky)
    assert flaky.calls == 1


async def test_the_bound_gives_up_with_the_last_error_itself() -> None:
    calls = 0

    async def always_down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError(f"try {calls}")

    with pytest.raises(ConnectionRefusedError, match="try"):
        await FAST.within(0.05).call(always_down)
    assert calls >= 2


async def test_attempts_serve_an_async_for_block() -> None:
    flaky = Flaky(ConnectionResetError())
    async for attempt in FAST.attempts():
        with attempt:
            result = await flaky()
    assert result == "ok"
    assert flaky.calls == 2


def test_a_policy_is_bounded_by_construction() -> None:
    with pytest.raises(ValueError, match="waits"):
        RetryPolicy(bool, 0, 1, 1)
    with pytest.raises(ValueError, match="waits"):
        RetryPolicy(bool, 2, 1, 1)
    with pytest.raises(ValueError, match="within"):
        RetryPolicy(bool, 0.1, 1, float("nan"))


def test_database_outage_policy() -> None:
    p = db.OUTAGE
    assert (p.first_wait, p.max_wait, p.within_seconds) == (0.2, 5, 60)
    for exc in (
        ConnectionResetError(),
        asyncpg.CannotConnectNowError(),
        asyncpg.TooManyConnectionsError(),
        asyncpg.AdminShutdownError(),
        ConnectionLostError("lost"),
    ):
        assert p.retriable(exc), exc
    for refused in (asyncpg.UniqueViolationError(), asyncpg.InvalidPasswordError(), ValueError()):
        assert not p.retriable(refused), refused


def test_connect_policy_retries_an_absent_server_never_a_refused_login() -> None:
    p = db.UNTIL_REACHABLE
    assert (p.first_wait, p.max_wait, p.within_seconds) == (0.1, 2, 30)
    assert p.within(5).within_seconds == 5
    assert p.retriable(ConnectionRefusedError())
    assert p.retriable(asyncpg.CannotConnectNowError())
    assert not p.retriable(asyncpg.InvalidPasswordError())
    assert not p.retriable(ConnectionError("PostgreSQL server at x rejected SSL upgrade"))


def test_broker_start_policy() -> None:
    p = kafka.BROKER_START
    assert (p.first_wait, p.max_wait, p.within_seconds) == (0.2, 3, 30)
    assert p.retriable(KafkaConnectionError())
    assert p.retriable(OSError())
    assert not p.retriable(KeyError("v"))


def test_relay_round_policy() -> None:
    p = relay.ROUND_RETRY
    assert (p.first_wait, p.max_wait, p.within_seconds) == (0.2, 5, 60)
    assert p.retriable(RequestTimedOutError())
    assert p.retriable(asyncpg.ConnectionDoesNotExistError())
    assert not p.retriable(MessageSizeTooLargeError())
    assert not p.retriable(asyncpg.UniqueViolationError())
