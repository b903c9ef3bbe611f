"""Connections to PostgreSQL.

Every connection, single or pooled, is opened here with the same options: the password
from ``CERTRECON_DATABASE_PASSWORD_FILE`` (handed to asyncpg as a callable, so the value
is never stored in its connection arguments) and TLS as the DSN's ``sslmode`` and
``sslrootcert`` say (asyncpg reads those itself). A refused login or a refused TLS
certificate is an :class:`AuthenticationError` at once, never retried.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qs, urlsplit

import asyncpg

from certrecon.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    DatabaseUnavailableError,
)
from certrecon.retry import RetryPolicy
from certrecon.transport import Secret

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
    # asyncpg's protocol-state error ("another operation is in progress"): seen when the
    # server goes away under a pooled connection, e.g. while the pool resets it on release,
    # outside any block that could check the connection. The retry is bounded and gets a
    # fresh connection; the pool drops the broken one.
    asyncpg.InternalClientError,
    ConnectionLostError,
)


def is_retriable_db_error(exc: BaseException) -> bool:
    """Whether trying again can help: a lost or refused connection, also when it surfaces
    as a later error (e.g. the rollback of a transaction whose connection just died).
    Never a refused login or TLS certificate (see :func:`security_failure`)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if _refused(current):
            return False
        if isinstance(current, RETRIABLE_DB_ERRORS):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


_LOGIN_REFUSED = (
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
)
# An EOF in the middle of a handshake is a dropped connection, not a verdict on certificates.
_TLS_TRANSIENT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def _refused(exc: BaseException) -> bool:
    if isinstance(exc, _LOGIN_REFUSED):
        return True
    if isinstance(exc, ssl.SSLError):
        return not isinstance(exc, _TLS_TRANSIENT)
    return isinstance(exc, ConnectionError) and "rejected SSL upgrade" in str(exc)


def server_of(dsn: str) -> str:
    """Where a DSN points, for messages: host(s) and database, never user or password."""
    try:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
    except ValueError:
        return "(a DSN that does not parse)"
    hosts = parts.netloc.rpartition("@")[2] or ",".join(query.get("host", [])) or "localhost"
    database = parts.path.lstrip("/") or ",".join(query.get("dbname", []))
    return f"{hosts}/{database}" if database else hosts


def security_failure(exc: BaseException, dsn: str) -> AuthenticationError | None:
    """The refused login or TLS handshake ``exc`` stands for, as a clear error; else None."""
    where = f"PostgreSQL at {server_of(dsn)}"
    if isinstance(exc, _LOGIN_REFUSED):
        return AuthenticationError(f"{where} refused the login: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return AuthenticationError(
            f"{where}: its TLS certificate is not trusted ({exc.verify_message}); check the "
            "DSN's sslrootcert and host name"
        )
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, _TLS_TRANSIENT):
        return AuthenticationError(f"{where}: the TLS handshake failed ({exc.reason or exc})")
    if isinstance(exc, ConnectionError) and "rejected SSL upgrade" in str(exc):
        return AuthenticationError(f"{where} does not offer TLS, which the DSN's sslmode requires")
    return None


def _connect_options(password: Secret | None) -> dict[str, Any]:
    """The options every connection gets (the one place that hands over the password)."""
    reveal: Callable[[], str] | None = None if password is None else password.reveal
    return {} if reveal is None else {"password": reveal}


def _failed(exc: Exception, dsn: str) -> Exception:
    """What a connection attempt that gave up should raise instead of ``exc``."""
    refused = security_failure(exc, dsn)
    if refused is not None:
        return refused
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return ConfigurationError(f"CERTRECON_DATABASE_URL: {exc}")
    if isinstance(exc, RETRIABLE_DB_ERRORS):
        return DatabaseUnavailableError(f"PostgreSQL at {server_of(dsn)} is unreachable: {exc}")
    return exc


REFUSED_DATA_CLASSES = frozenset({"22", "23", "54"})
"""SQLSTATE classes in which PostgreSQL refuses the data itself: data exceptions (22: a
NUL byte, a value out of range; asyncpg reports a parameter it cannot encode as 22000
too), integrity constraint violations (23) and program limits (54: e.g. an index row too
large). Trying the same rows again cannot help; leaving out the offending one can."""


def refused_data_state(exc: BaseException) -> str | None:
    """The SQLSTATE when ``exc`` is PostgreSQL (or asyncpg) refusing the data, else None.

    A lost connection is never such a refusal, even when a data error is in its history.
    """
    if is_retriable_db_error(exc):
        return None
    if isinstance(exc, asyncpg.PostgresError):
        state = str(exc.sqlstate or "")
        if state[:2] in REFUSED_DATA_CLASSES:
            return state
    return None


def _closed(conn: Conn) -> bool:
    """Whether ``conn`` is closed; a pool's proxy whose connection closed under it is
    detached from it by the pool, and asking it anything then raises ``InterfaceError``."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


@contextlib.asynccontextmanager
async def losing_connection_is_retriable(conn: Conn) -> AsyncIterator[Conn]:
    """Re-raise any error from the block as :class:`ConnectionLostError` when the
    connection is closed by then.

    A server shutting down under an open transaction can surface as an asyncpg protocol
    error ("another operation is in progress") or an InterfaceError on the rollback, neither
    of which says "connection lost"; a closed connection does.
    """
    try:
        yield conn
    except Exception as exc:
        if _closed(conn) and not is_retriable_db_error(exc):
            # The type only: an asyncpg message may quote a query parameter.
            raise ConnectionLostError(
                f"the connection to PostgreSQL was lost ({type(exc).__name__})"
            ) from exc
        raise


async def ping(conn: Conn) -> None:
    """One round trip: the server answers queries on this connection."""
    await conn.fetchval("SELECT 1")


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    # A client host that vanishes mid-transaction would otherwise keep its locks (the relay
    # cursor, a staff decision's) until the operating system's two-hour keepalive: the
    # server probes an idle peer and gives up on one that stops acknowledging what it sent.
    await conn.execute(
        "SET TIME ZONE 'UTC'; SET tcp_keepalives_idle = 15; SET tcp_keepalives_interval = 5;"
        " SET tcp_keepalives_count = 3; SET tcp_user_timeout = 60000"
    )


def _unreachable(exc: BaseException) -> bool:
    return isinstance(exc, RETRIABLE_DB_ERRORS) and not _refused(exc)


UNTIL_REACHABLE = RetryPolicy(_unreachable, first_wait=0.1, max_wait=2, within_seconds=30)
"""Opening a connection or a pool while the server is not there (yet); a caller's
``wait_seconds`` replaces the overall bound."""

OUTAGE = RetryPolicy(is_retriable_db_error, first_wait=0.2, max_wait=5, within_seconds=60)
"""A unit of work (a batch, a relay round, reading stored offsets) replayed whole while
PostgreSQL is unreachable or the connection was lost under it."""


async def connect(
    dsn: str, *, password: Secret | None = None, wait_seconds: float = 30.0
) -> asyncpg.Connection:
    """One connection, retried (bounded) while the server is unreachable."""
    try:
        async for attempt in UNTIL_REACHABLE.within(wait_seconds).attempts():
            with attempt:
                conn: asyncpg.Connection = await asyncpg.connect(dsn, **_connect_options(password))
                await _init_connection(conn)
                return conn
    except Exception as exc:
        failure = _failed(exc, dsn)
        if failure is exc:
            raise
        raise failure from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def create_pool(
    dsn: str,
    *,
    password: Secret | None = None,
    min_size: int = 1,
    max_size: int = 4,
    wait_seconds: float = 30.0,
) -> asyncpg.Pool[Any]:
    """A pool, retried (bounded) while the server is unreachable."""
    try:
        async for attempt in UNTIL_REACHABLE.within(wait_seconds).attempts():
            with attempt:
                pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
                    dsn,
                    min_size=min_size,
                    max_size=max_size,
                    init=_init_connection,
                    **_connect_options(password),
                )
                return pool
    except Exception as exc:
        failure = _failed(exc, dsn)
        if failure is exc:
            raise
        raise failure from exc
    raise AssertionError("unreachable")  # pragma: no cover
