"""aiokafka adapters: topic creation, consumer with PostgreSQL-stored offsets, producer.

Every Kafka client certrecon opens (consumer, producers, admin, and through them the
readiness and lag checks) takes its connection options from :func:`client_options`: the
security protocol, the TLS context and the SASL credentials of the settings.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)

from certrecon.errors import AuthenticationError, BrokerUnavailableError
from certrecon.logs import get_logger
from certrecon.retry import RetryPolicy
from certrecon.store import db
from certrecon.transport import KafkaSecurity, tls_client_context

log = get_logger(__name__)

PLAINTEXT = KafkaSecurity()


def client_options(security: KafkaSecurity) -> dict[str, Any]:
    """The connection options of every aiokafka client (the one place that builds them)."""
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.uses_tls:
        options["ssl_context"] = tls_client_context(
            security.ssl_cafile, security.ssl_certfile, security.ssl_keyfile
        )
    if security.uses_sasl:
        assert security.sasl_password is not None
        options.update(
            sasl_mechanism=security.sasl_mechanism,
            sasl_plain_username=security.sasl_username,
            sasl_plain_password=security.sasl_password.reveal(),
        )
    return options


# An EOF in the middle of a handshake is a dropped connection, not a verdict on certificates.
_TLS_TRANSIENT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
_SASL_REFUSED = (
    AuthenticationFailedError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)


def security_failure(
    exc: BaseException, security: KafkaSecurity, where: str
) -> AuthenticationError | None:
    """The refused TLS handshake or SASL login ``exc`` stands for, as a clear error."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return AuthenticationError(
            f"the Kafka broker at {where}: its TLS certificate is not trusted "
            f"({exc.verify_message}); check CERTRECON_KAFKA_SSL_CAFILE and the host name"
        )
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, _TLS_TRANSIENT):
        return AuthenticationError(
            f"the Kafka broker at {where}: the TLS handshake failed ({exc.reason or exc})"
        )
    # aiokafka's SCRAM client reads the server's proof ("v=") without checking for an
    # error ("e=") first, so a rejected SCRAM login surfaces as KeyError('v').
    scram_refused = (
        isinstance(exc, KeyError)
        and exc.args == ("v",)
        and (security.sasl_mechanism or "").startswith("SCRAM-")
    )
    if scram_refused or isinstance(exc, _SASL_REFUSED):
        detail = "" if scram_refused else f": {exc}"
        return AuthenticationError(
            f"the Kafka broker at {where} refused the SASL login ({security.describe()}){detail}"
        )
    return None


async def _diagnose(bootstrap: str, security: KafkaSecurity) -> AuthenticationError | None:
    """Why bootstrapping failed, when the reason is a refused handshake or login.

    aiokafka logs the reason of a failed bootstrap connection and raises a bare
    KafkaConnectionError; one connection made here the same way shows the reason.
    """
    options = client_options(security)
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        host = host.strip("[]")
        try:
            conn = await create_conn(host, int(port), request_timeout_ms=10000, **options)
        except (OSError, KafkaError, KeyError, TimeoutError) as exc:
            failure = security_failure(exc, security, server.strip())
            if failure is not None:
                return failure
        else:
            conn.close()
    return None


def is_retriable_kafka_error(exc: BaseException) -> bool:
    """aiokafka marks transient errors (leader moves, timeouts, disconnects) ``retriable``."""
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


def _broker_down(exc: BaseException) -> bool:
    return isinstance(exc, KafkaError | OSError)


BROKER_START = RetryPolicy(_broker_down, first_wait=0.2, max_wait=3, within_seconds=30)
"""Starting a client while the broker is unreachable (a refused login is not retried: it
is diagnosed as an :class:`AuthenticationError` inside the attempt)."""


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options(security))
    try:
        await _retry_start(admin.start, bootstrap, security)
        existing = set(await admin.list_topics())
        missing = sorted(set(topics) - existing)
        if not missing:
            return []
        try:
            response = await admin.create_topics(
                [NewTopic(name, partitions, 1) for name in missing]
            )
        except TopicAlreadyExistsError:
            return []
        created = []
        for name, code, *_rest in response.topic_errors:
            # 36: another process created it first; that is the outcome we wanted.
            if code == 0:
                created.append(name)
            elif code != TopicAlreadyExistsError.errno:
                raise BrokerUnavailableError(f"creating topic {name} failed with error {code}")
        return created
    finally:
        await admin.close()


async def _retry_start(
    start: Callable[[], Awaitable[Any]],
    bootstrap: str,
    security: KafkaSecurity,
    seconds: float = 30.0,
) -> None:
    """Start a client, retrying (bounded) while the broker is unreachable; a refused TLS
    handshake or login is an :class:`AuthenticationError` at once."""
    try:
        async for attempt in BROKER_START.within(seconds).attempts():
            with attempt:
                try:
                    await start()
                except KafkaConnectionError:
                    failure = await _diagnose(bootstrap, security)
                    if failure is not None:
                        raise failure from None
                    raise
    except (KafkaError, OSError, KeyError) as exc:
        failure = security_failure(exc, security, bootstrap)
        if failure is not None:
            raise failure from exc
        if isinstance(exc, KeyError):
            raise
        raise BrokerUnavailableError(
            f"the Kafka broker at {bootstrap} is unreachable: {exc}"
        ) from exc


def make_producer(bootstrap: str, *, security: KafkaSecurity = PLAINTEXT) -> AIOKafkaProducer:
    # No idempotence or transactions: exactly-once effects come from PostgreSQL, and the
    # embedded broker does not support InitProducerId.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30000,
        **client_options(security),
    )


async def start_producer(
    bootstrap: str, *, security: KafkaSecurity = PLAINTEXT
) -> AIOKafkaProducer:
    producer = make_producer(bootstrap, security=security)
    try:
        await _retry_start(producer.start, bootstrap, security)
    except BaseException:
        await producer.stop()
        raise
    return producer


async def publish(
    bootstrap: str,
    messages: Sequence[tuple[str, bytes | None, bytes]],
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Publish (topic, key, value) messages with acks=all; for the demo, tests and
    benchmarks, which play the ministry's side."""
    producer = await start_producer(bootstrap, security=security)
    try:
        futures = [await producer.send(t, key=k, value=v) for t, k, v in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def make_consumer(
    bootstrap: str,
    group_id: str | None,
    *,
    max_poll_records: int = 500,
    fetch_max_wait_ms: int = 200,
    security: KafkaSecurity = PLAINTEXT,
) -> AIOKafkaConsumer:
    """A consumer positioned by the application (no auto-commit); ``group_id=None`` for a
    reader that assigns partitions itself."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        fetch_max_wait_ms=fetch_max_wait_ms,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        max_poll_interval_ms=300000,
        **client_options(security),
    )


async def start_consumer(
    consumer: AIOKafkaConsumer, bootstrap: str, *, security: KafkaSecurity = PLAINTEXT
) -> None:
    """Start ``consumer`` (stopped again when it cannot start)."""
    try:
        await _retry_start(consumer.start, bootstrap, security)
    except BaseException:
        await consumer.stop()
        raise


OffsetLoader = Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]


class StoredOffsetsListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks newly assigned partitions to the offsets stored in PostgreSQL.

    ``batch_lock`` is held while a batch is written: a revocation waits for the batch in
    hand to commit, so the next owner reads offsets that include it.

    ``epoch`` counts re-positionings (every assignment and revocation). Records fetched in
    an earlier epoch may precede a seek and must not be written: the seek already put the
    consumer where the stored offsets say.
    """

    def __init__(
        self, consumer: AIOKafkaConsumer, load_offsets: OffsetLoader, batch_lock: asyncio.Lock
    ) -> None:
        self.consumer = consumer
        """The consumer it serves (read by health checks and benchmarks for positions)."""
        self._load = load_offsets
        self._lock = batch_lock
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.epoch = 0
        self.failure: BaseException | None = None
        """Set when the stored offsets could not be read; the worker must stop then, since
        it would otherwise fetch and drop those partitions' records while looking alive."""

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            self.assigned = frozenset()
            self.epoch += 1
            if revoked:
                log.info("partitions revoked", partitions=_names(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            stored = await db.OUTAGE.call(lambda: self._load(list(assigned)))
        except Exception as exc:
            # aiokafka would only log a listener's exception and carry on unpositioned.
            self.failure = exc
            log.error("stored offsets unreadable", error=repr(exc))
            return
        # No await between the seeks and publishing the assignment: the consume loop sees
        # either neither or both.
        for tp in assigned:
            # Offset 0 on a partition whose log starts later is out of range, and the
            # consumer's reset policy (earliest) then moves to the log start.
            self.consumer.seek(tp, stored.get(tp, 0))
        self.assigned = frozenset(assigned)
        self.epoch += 1
        log.info("partitions assigned", partitions=_names(assigned), stored=len(stored))


def _names(tps: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)
