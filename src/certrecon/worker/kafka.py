"""aiokafka adapters: topic creation, consumer with PostgreSQL-stored offsets, producer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from certrecon.errors import BrokerUnavailableError
from certrecon.logs import get_logger
from certrecon.store.db import is_retriable_db_error

log = get_logger(__name__)


def is_retriable_kafka_error(exc: BaseException) -> bool:
    """aiokafka marks transient errors (leader moves, timeouts, disconnects) ``retriable``."""
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


async def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await _retry_start(admin.start)
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


async def _retry_start(start: Callable[[], Awaitable[Any]], seconds: float = 30.0) -> None:
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, KafkaError | OSError)),
            wait=wait_exponential(multiplier=0.2, max=3),
            stop=stop_after_delay(seconds),
            reraise=True,
        ):
            with attempt:
                await start()
    except (KafkaError, OSError) as exc:
        raise BrokerUnavailableError(f"the Kafka broker is unreachable: {exc}") from exc


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    # No idempotence or transactions: exactly-once effects come from PostgreSQL, and the
    # embedded broker does not support InitProducerId.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30000,
    )


async def start_producer(bootstrap: str) -> AIOKafkaProducer:
    producer = make_producer(bootstrap)
    await _retry_start(producer.start)
    return producer


async def publish(bootstrap: str, messages: Sequence[tuple[str, bytes | None, bytes]]) -> None:
    """Publish (topic, key, value) messages with acks=all; for the demo, tests and
    benchmarks, which play the ministry's side."""
    producer = await start_producer(bootstrap)
    try:
        futures = [await producer.send(t, key=k, value=v) for t, k, v in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def make_consumer(
    bootstrap: str, group_id: str, *, max_poll_records: int, fetch_max_wait_ms: int = 200
) -> AIOKafkaConsumer:
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
    )


async def start_consumer(consumer: AIOKafkaConsumer) -> None:
    await _retry_start(consumer.start)


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
        self._consumer = consumer
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
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(is_retriable_db_error),
                wait=wait_exponential(multiplier=0.2, max=5),
                stop=stop_after_delay(60),
                reraise=True,
            ):
                with attempt:
                    stored = await self._load(list(assigned))
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
            self._consumer.seek(tp, stored.get(tp, 0))
        self.assigned = frozenset(assigned)
        self.epoch += 1
        log.info("partitions assigned", partitions=_names(assigned), stored=len(stored))


def _names(tps: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)
