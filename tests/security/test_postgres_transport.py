"""PostgreSQL over TLS (through the TLS proxy) with a password from a file.

The proxy presents a certificate of the test CA for ``localhost``; behind it a real
PostgreSQL whose ``pg_hba.conf`` requires a SCRAM password.
"""

from __future__ import annotations

import ssl

import pytest

from certrecon.errors import AuthenticationError, DatabaseUnavailableError
from certrecon.store import db
from certrecon.transport import Secret
from tests.security.conftest import LOGIN_ROLE, Pki, SecuredPostgres, pg_dsn
from tests.security.tls_proxy import TlsProxy


def _password(secured_pg: SecuredPostgres) -> Secret:
    return Secret(secured_pg.password, "CERTRECON_DATABASE_PASSWORD_FILE")


async def test_verified_tls_and_the_right_password_connect(
    secured_pg: SecuredPostgres, pki: Pki, pg_proxy: TlsProxy
) -> None:
    dsn = pg_dsn(
        pg_proxy.port, sslmode="verify-full", rootcert=pki.ca_file, database=secured_pg.database
    )
    conn = await db.connect(dsn, password=_password(secured_pg))
    try:
        assert await conn.fetchval("SELECT current_user") == LOGIN_ROLE
        # Behind the proxy the server sees a local, password-authenticated session.
        method = await conn.fetchval("SELECT system_user")
    finally:
        await conn.close()
    pool = await db.create_pool(dsn, password=_password(secured_pg), min_size=2, max_size=2)
    try:
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
    assert method == f"scram-sha-256:{LOGIN_ROLE}"
    assert pg_proxy.handshakes == pg_proxy.connections == 3


async def test_without_a_password_the_server_refuses_the_login(
    secured_pg: SecuredPostgres, pki: Pki, pg_proxy: TlsProxy
) -> None:
    # Proves the server really checks passwords (the embedded default trusts everyone).
    dsn = pg_dsn(
        pg_proxy.port, sslmode="verify-full", rootcert=pki.ca_file, database=secured_pg.database
    )
    with pytest.raises(AuthenticationError, match="refused the login"):
        await db.connect(dsn)


async def test_a_wrong_password_is_one_clear_error_not_a_retry(
    secured_pg: SecuredPostgres, pki: Pki, pg_proxy: TlsProxy
) -> None:
    dsn = pg_dsn(
        pg_proxy.port, sslmode="verify-full", rootcert=pki.ca_file, database=secured_pg.database
    )
    wrong = Secret("not-" + secured_pg.password, "CERTRECON_DATABASE_PASSWORD_FILE")
    for attempt in (db.connect, db.create_pool):
        before = pg_proxy.connections
        with pytest.raises(AuthenticationError) as caught:
            await attempt(dsn, password=wrong)
        message = str(caught.value)
        assert message == (
            f"PostgreSQL at localhost:{pg_proxy.port}/{secured_pg.database} refused the login: "
            f'password authentication failed for user "{LOGIN_ROLE}"'
        )
        assert secured_pg.password not in message
        assert wrong.reveal() not in message
        assert pg_proxy.connections == before + 1
        assert not db.is_retriable_db_error(caught.value.__cause__ or caught.value)


async def test_a_certificate_from_an_untrusted_ca_is_refused(
    secured_pg: SecuredPostgres, pki: Pki, pg_proxy: TlsProxy
) -> None:
    dsn = pg_dsn(
        pg_proxy.port,
        sslmode="verify-full",
        rootcert=pki.foreign_ca_file,
        database=secured_pg.database,
    )
    with pytest.raises(AuthenticationError, match="TLS certificate is not trusted") as caught:
        await db.connect(dsn, password=_password(secured_pg))
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert pg_proxy.connections == 1
    # The password never left: the handshake failed before the startup message.
    assert pg_proxy.handshakes == 0


async def test_a_certificate_for_another_host_is_refused(
    secured_pg: SecuredPostgres, pki: Pki
) -> None:
    async with TlsProxy(secured_pg.upstream, pki.other_host, mode="postgres") as proxy:
        dsn = pg_dsn(
            proxy.port, sslmode="verify-full", rootcert=pki.ca_file, database=secured_pg.database
        )
        with pytest.raises(AuthenticationError, match="Hostname mismatch"):
            await db.connect(dsn, password=_password(secured_pg))
        # verify-ca checks the CA but not the name, as PostgreSQL defines it.
        dsn = pg_dsn(
            proxy.port, sslmode="verify-ca", rootcert=pki.ca_file, database=secured_pg.database
        )
        conn = await db.connect(dsn, password=_password(secured_pg))
        await conn.close()


async def test_a_server_without_tls_is_refused_when_the_dsn_requires_it(
    secured_pg: SecuredPostgres, pki: Pki
) -> None:
    async with TlsProxy(
        secured_pg.upstream, pki.localhost, mode="postgres", offer_tls=False
    ) as proxy:
        dsn = pg_dsn(proxy.port, sslmode="require", rootcert=None, database=secured_pg.database)
        with pytest.raises(AuthenticationError, match="does not offer TLS"):
            await db.connect(dsn, password=_password(secured_pg))
        assert proxy.connections == 1


async def test_an_unreachable_server_is_still_retried_then_reported() -> None:
    dsn = "postgresql://certrecon_login@127.0.0.1:1/none"
    with pytest.raises(DatabaseUnavailableError, match=r"PostgreSQL at 127\.0\.0\.1:1/none"):
        await db.connect(dsn, wait_seconds=0.3)
