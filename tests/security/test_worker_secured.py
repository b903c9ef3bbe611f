"""The worker with TLS to the broker, TLS and a password to PostgreSQL, end to end; and the
command line with real secrets: working, refused, and never showing a secret.

Every secret below is random per test and is searched for in everything the process
wrote (stdout, stderr: the JSON logs and the error line), in ``/readyz``, ``/healthz``
and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from certrecon.embedded.broker import free_port
from certrecon.store import db
from certrecon.store.migrations import migrate
from certrecon.store.roster import import_roster
from certrecon.transport import KafkaSecurity, Secret
from tests.integration.test_health import http
from tests.security.conftest import LOGIN_ROLE, Pki, ProxiedBroker, SecuredPostgres, pg_dsn
from tests.security.tls_proxy import TlsProxy
from tests.support import (
    create_topics,
    eligible_roster,
    isolated_settings,
    produce,
    read_topic,
    running_worker,
    settings_env,
    spread_over_channels,
)

NOW = dt.datetime.now(dt.UTC)


@pytest_asyncio.fixture
async def secured_database(pg_server: str, secured_pg: SecuredPostgres) -> AsyncIterator[str]:
    """A new, empty database owned by the password-protected login role."""
    name = f"certrecon_w_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f"CREATE DATABASE {name} OWNER {LOGIN_ROLE}")
    finally:
        await admin.close()
    try:
        yield name
    finally:
        admin = await asyncpg.connect(pg_server)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


async def test_the_worker_runs_over_tls_with_a_database_password(
    secured_pg: SecuredPostgres,
    secured_database: str,
    pg_proxy: TlsProxy,
    tls_broker: ProxiedBroker,
    pki: Pki,
) -> None:
    password = Secret(secured_pg.password, "CERTRECON_DATABASE_PASSWORD_FILE")
    security = KafkaSecurity(protocol="SSL", ssl_cafile=pki.ca_file)
    settings = isolated_settings(kafka_security=security, database_password=password)
    dsn = pg_dsn(
        pg_proxy.port, sslmode="verify-full", rootcert=pki.ca_file, database=secured_database
    )
    people = eligible_roster(40, seed=11)
    conn = await db.connect(dsn, password=password)
    try:
        await migrate(conn)
        await import_roster(conn, people)
    finally:
        await conn.close()
    await create_topics(settings, tls_broker.bootstrap)
    messages = spread_over_channels(settings, people, NOW - dt.timedelta(hours=1), prefix="TLS")
    await produce(tls_broker.bootstrap, messages, security=security)
    kafka_handshakes = tls_broker.proxy.handshakes
    pg_handshakes = pg_proxy.handshakes
    # The monitor's own connection runs too (its first tick is at start).
    async with running_worker(settings, dsn, tls_broker.bootstrap) as worker:
        results = await read_topic(
            tls_broker.bootstrap, settings.result_topic, at_least=40, security=security
        )
        assert worker.pool is not None
        assert await worker.pool.fetchval("SELECT count(*) FROM certification") == 40
    assert {json.loads(r.value)["outcome"] for r in results} == {"qualified"}
    assert len({json.loads(r.value)["certification_id"] for r in results}) == 40
    # Everything went through the proxies' TLS: the worker's consumer, producer and admin
    # client, and its pool, its migration connection and the monitor's connection.
    assert tls_broker.proxy.handshakes - kafka_handshakes >= 3
    assert pg_proxy.handshakes - pg_handshakes >= 4


@dataclass(frozen=True)
class Database:
    """A fresh database behind the TLS proxy, for the password-protected role."""

    dsn: str
    name: str
    proxy: TlsProxy
    secured: SecuredPostgres
    pki: Pki


@pytest_asyncio.fixture
async def database(
    secured_pg: SecuredPostgres, secured_database: str, pg_proxy: TlsProxy, pki: Pki
) -> Database:
    dsn = pg_dsn(
        pg_proxy.port, sslmode="verify-full", rootcert=pki.ca_file, database=secured_database
    )
    return Database(dsn, secured_database, pg_proxy, secured_pg, pki)


@dataclass
class Run:
    returncode: int | None
    output: str
    """stdout and stderr together."""
    served: str
    """What /healthz, /readyz and /metrics answered (empty when the worker never listened)."""


async def _run_worker(env: dict[str, str], *, ready_then_stop: bool, port: int) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "certrecon",
        "run",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    served: list[str] = []
    try:
        if ready_then_stop:
            async with asyncio.timeout(90):
                while True:
                    with contextlib.suppress(OSError):
                        status, _, body = await http(port, "/readyz")
                        served.append(body.decode())
                        if status == 200:
                            break
                    if proc.returncode is not None:
                        break
                    await asyncio.sleep(0.2)
            for path in ("/healthz", "/metrics"):
                served.append((await http(port, path))[2].decode())
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(90):
            stdout, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return Run(proc.returncode, stdout.decode() + stderr.decode(), "\n".join(served))


def _base_env(
    tmp_path: Path, dsn: str, bootstrap: str, password_file: Path, port: int
) -> dict[str, str]:
    env = settings_env(isolated_settings(), dsn, bootstrap)
    env.update(
        CERTRECON_DATA_DIR=str(tmp_path / "data"),
        CERTRECON_HTTP_HOST="127.0.0.1",
        CERTRECON_HTTP_PORT=str(port),
        CERTRECON_DATABASE_PASSWORD_FILE=str(password_file),
        CERTRECON_SHUTDOWN_GRACE_SECONDS="10",
    )
    env.pop("CERTRECON_KAFKA_SECURITY_PROTOCOL", None)
    return env


def _assert_nothing_shows(run: Run, secrets: list[str], dsn: str) -> None:
    for secret in secrets:
        assert secret not in run.output
        assert secret not in run.served
    # Nor the full DSN (its host and database may be named, not the whole string).
    assert dsn not in run.output
    assert dsn not in run.served


async def test_the_command_line_with_secrets_works_and_shows_none(
    database: Database, tls_broker: ProxiedBroker, pki: Pki, tmp_path: Path
) -> None:
    dsn, secured_pg = database.dsn, database.secured
    port = free_port()
    env = _base_env(tmp_path, dsn, tls_broker.bootstrap, secured_pg.password_file, port)
    env.update(
        CERTRECON_KAFKA_SECURITY_PROTOCOL="SSL",
        CERTRECON_KAFKA_SSL_CAFILE=str(pki.ca_file),
    )
    run = await _run_worker(env, ready_then_stop=True, port=port)
    assert run.returncode == 0, run.output
    assert '"status": "ready"' in run.served
    assert "certrecon_" in run.served  # the metrics were read
    events = [json.loads(line) for line in run.output.splitlines() if line.startswith("{")]
    assert "worker started" in {e["event"] for e in events}
    _assert_nothing_shows(run, [secured_pg.password], dsn)


@pytest.mark.parametrize("case", ["wrong database password", "broker not trusted", "sasl refused"])
async def test_a_refused_credential_stops_the_command_with_a_clear_error(
    case: str,
    database: Database,
    tls_broker: ProxiedBroker,
    sasl_broker: ProxiedBroker,
    tmp_path: Path,
) -> None:
    dsn, secured_pg, pki = database.dsn, database.secured, database.pki
    port = free_port()
    kafka_password = "kafka-" + uuid.uuid4().hex
    kafka_password_file = tmp_path / "kafka-password"
    kafka_password_file.write_text(kafka_password)
    wrong_file = tmp_path / "wrong-password"
    wrong = "wrong-" + uuid.uuid4().hex
    wrong_file.write_text(wrong + "\n")
    bootstrap = sasl_broker.bootstrap if case == "sasl refused" else tls_broker.bootstrap
    env = _base_env(tmp_path, dsn, bootstrap, secured_pg.password_file, port)
    env.update(CERTRECON_KAFKA_SECURITY_PROTOCOL="SSL", CERTRECON_KAFKA_SSL_CAFILE=str(pki.ca_file))
    if case == "wrong database password":
        env["CERTRECON_DATABASE_PASSWORD_FILE"] = str(wrong_file)
        expected = (
            f"Error: PostgreSQL at localhost:{database.proxy.port}/{database.name} refused the "
            f'login: password authentication failed for user "{LOGIN_ROLE}"'
        )
    elif case == "broker not trusted":
        env["CERTRECON_KAFKA_SSL_CAFILE"] = str(pki.foreign_ca_file)
        expected = (
            f"Error: the Kafka broker at {bootstrap}: its TLS certificate is not trusted "
            "(unable to get local issuer certificate)"
        )
    else:
        env.update(
            CERTRECON_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            CERTRECON_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
            CERTRECON_KAFKA_SASL_USERNAME="certrecon",
            CERTRECON_KAFKA_SASL_PASSWORD_FILE=str(kafka_password_file),
        )
        expected = (
            f"Error: the Kafka broker at {bootstrap} refused the SASL login "
            "(SASL_SSL SCRAM-SHA-512 as user 'certrecon')"
        )
    run = await _run_worker(env, ready_then_stop=False, port=port)
    assert run.returncode == 1, run.output
    error_lines = [line for line in run.output.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1, run.output
    assert error_lines[0].startswith(expected), error_lines
    assert "Traceback" not in run.output
    _assert_nothing_shows(run, [secured_pg.password, wrong, kafka_password], dsn)
