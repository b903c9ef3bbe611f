"""Kafka over TLS and SASL, through a TLS proxy in front of a real broker.

Tansu cannot terminate TLS itself and its SASL refuses every SCRAM login, so: TLS is
tested end to end through the proxy (the broker advertises the proxy's address, so every
connection of every client goes through it); SASL is tested up to the broker's refusal,
over plain TCP and inside TLS.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from certrecon.embedded.broker import EmbeddedBroker
from certrecon.errors import AuthenticationError
from certrecon.transport import KafkaSecurity, Secret
from certrecon.worker import kafka
from tests.security.conftest import Pki, ProxiedBroker, proxied_broker
from tests.support import read_topic


def _tls(cafile: Path | None) -> KafkaSecurity:
    return KafkaSecurity(protocol="SSL", ssl_cafile=cafile)


def _sasl(protocol: str, mechanism: str, cafile: Path | None = None) -> KafkaSecurity:
    return KafkaSecurity(
        protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username="certrecon",
        sasl_password=Secret("sasl-" + uuid.uuid4().hex, "CERTRECON_KAFKA_SASL_PASSWORD_FILE"),
        ssl_cafile=cafile,
    )


async def test_clients_trusting_the_ca_work_through_tls(
    tls_broker: ProxiedBroker, pki: Pki
) -> None:
    security = _tls(pki.ca_file)
    topic = f"tls.{uuid.uuid4().hex[:8]}"
    before = tls_broker.proxy.handshakes
    assert await kafka.ensure_topics(tls_broker.bootstrap, [topic], 2, security=security) == [topic]
    messages = [(topic, f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
    await kafka.publish(tls_broker.bootstrap, messages, security=security)
    records = await read_topic(tls_broker.bootstrap, topic, at_least=20, security=security)
    assert sorted(r.value for r in records) == sorted(v for _, _, v in messages)
    # Admin, producer and reader each bootstrapped and then used the advertised address:
    # all of it through the proxy's TLS.
    assert tls_broker.proxy.handshakes - before >= 6


async def test_the_group_consumer_works_through_tls(tls_broker: ProxiedBroker, pki: Pki) -> None:
    security = _tls(pki.ca_file)
    topic = f"tls-group.{uuid.uuid4().hex[:8]}"
    await kafka.ensure_topics(tls_broker.bootstrap, [topic], 1, security=security)
    await kafka.publish(tls_broker.bootstrap, [(topic, b"k", b"v")], security=security)
    consumer = kafka.make_consumer(tls_broker.bootstrap, f"g-{topic}", security=security)
    consumer.subscribe([topic])
    await kafka.start_consumer(consumer, tls_broker.bootstrap, security=security)
    try:
        got: list[bytes] = []
        async with asyncio.timeout(30):
            while not got:
                batch = await consumer.getmany(timeout_ms=200)
                got.extend(r.value for rs in batch.values() for r in rs if r.value is not None)
        assert got == [b"v"]
        assert await consumer.topics() >= {topic}
    finally:
        await consumer.stop()


async def test_without_the_ca_the_broker_is_refused_at_once(tls_broker: ProxiedBroker) -> None:
    # No CA file: the system's authorities, which never signed the test CA.
    before = tls_broker.proxy.connections
    with pytest.raises(AuthenticationError, match="TLS certificate is not trusted") as caught:
        await kafka.start_producer(tls_broker.bootstrap, security=_tls(None))
    assert "unable to get local issuer certificate" in str(caught.value)
    assert f"the Kafka broker at {tls_broker.bootstrap}" in str(caught.value)
    # One bootstrap attempt and one diagnosis: no retry loop.
    assert tls_broker.proxy.connections - before == 2


async def test_a_certificate_for_another_host_is_refused(tmp_path: Path, pki: Pki) -> None:
    async with proxied_broker(tmp_path, pki.other_host) as broker:
        for start in (
            lambda s: kafka.ensure_topics(broker.bootstrap, ["x"], 1, security=s),
            lambda s: kafka.start_producer(broker.bootstrap, security=s),
        ):
            with pytest.raises(AuthenticationError, match="Hostname mismatch"):
                await start(_tls(pki.ca_file))
        consumer = kafka.make_consumer(broker.bootstrap, "g", security=_tls(pki.ca_file))
        with pytest.raises(AuthenticationError, match="Hostname mismatch"):
            await kafka.start_consumer(consumer, broker.bootstrap, security=_tls(pki.ca_file))


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_a_refused_scram_login_is_a_clear_error_inside_tls(
    sasl_broker: ProxiedBroker, pki: Pki, mechanism: str
) -> None:
    security = _sasl("SASL_SSL", mechanism, pki.ca_file)
    before = sasl_broker.proxy.handshakes
    with pytest.raises(AuthenticationError) as caught:
        await kafka.start_producer(sasl_broker.bootstrap, security=security)
    message = str(caught.value)
    assert message == (
        f"the Kafka broker at {sasl_broker.bootstrap} refused the SASL login "
        f"(SASL_SSL {mechanism} as user 'certrecon')"
    )
    assert isinstance(caught.value.__cause__, KeyError)
    assert security.sasl_password is not None
    assert security.sasl_password.reveal() not in message
    # The SASL exchange ran inside TLS, once.
    assert sasl_broker.proxy.handshakes - before == 1


async def test_a_refused_scram_login_over_plain_tcp(tmp_path: Path) -> None:
    with EmbeddedBroker(tmp_path, extra_args=["--authentication"]) as broker:
        security = _sasl("SASL_PLAINTEXT", "SCRAM-SHA-256")
        with pytest.raises(AuthenticationError, match="refused the SASL login"):
            await kafka.ensure_topics(broker.bootstrap, ["x"], 1, security=security)
