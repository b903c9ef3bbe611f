"""The outbox relay against a real broker and PostgreSQL: a message refused for good is
recorded and skipped, and never holds up the messages behind it; a message whose answer
was lost is offered again before any later message with its key; messages handed to the
producer in batches land where a message-by-message send would put them, in order."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.errors import RequestTimedOutError
from aiokafka.partitioner import murmur2

from certrecon.calendar import default_calendar
from certrecon.consumers.dead_letter import MAX_DEAD_LETTER_BYTES, MAX_KEY_BYTES
from certrecon.domain import Channel
from certrecon.store import db
from certrecon.store.results import OutboxMessage, enqueue
from certrecon.worker.kafka import ensure_topics, start_producer
from certrecon.worker.pipeline import Inbound, PipelineConfig, commit_batch, prepare_batch
from certrecon.worker.relay import (
    BATCHED_MESSAGE_BYTES,
    OutboxRelay,
    RelayReport,
    send_waves,
)
from tests.support import isolated_settings, read_topic

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


@pytest_asyncio.fixture
async def pool(fresh_database: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(fresh_database)
    try:
        yield p
    finally:
        await p.close()


@pytest_asyncio.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = await start_producer(kafka_bootstrap)
    try:
        yield p
    finally:
        await p.stop()


def _config() -> PipelineConfig:
    return PipelineConfig.from_settings(isolated_settings())


async def test_an_invalid_message_with_a_huge_key_reaches_the_dead_letter_topic(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    # Once the key was sent twice and uncapped (as the Kafka key and inside the payload),
    # with the value beside it: over 1 MB, refused, and the relay stopped on it for good.
    config = _config()
    await ensure_topics(kafka_bootstrap, [config.dead_letter_topic], 1)
    topic = next(t for t, c in config.topic_channels.items() if c is Channel.ESSC)
    key = b"K" * 400_000
    value = b"{" + b"x" * 600_000
    records = [Inbound(topic, 0, 0, int(NOW.timestamp() * 1000), key, value)]
    async with pool.acquire() as conn:
        batch = await prepare_batch(
            conn, records, config=config, calendar=default_calendar(), now=NOW
        )
        await commit_batch(conn, batch, config=config)

    relay = OutboxRelay(pool, producer, batch_size=10, idle_seconds=0.05)
    assert await relay.drain() == 1

    (published,) = await read_topic(kafka_bootstrap, config.dead_letter_topic, at_least=1)
    assert published.key == key[:MAX_KEY_BYTES]
    assert len(published.key) + len(published.value) < MAX_DEAD_LETTER_BYTES
    body = json.loads(published.value)
    assert base64.b64decode(body["key"]) == key[:MAX_KEY_BYTES]
    assert hashlib.sha256(key).hexdigest() in " ".join(body["errors"])
    assert hashlib.sha256(value).hexdigest() in " ".join(body["errors"])


async def test_a_refused_message_is_recorded_skipped_and_alerted(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic = f"certrecon.relay-test.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], 1)
    # Too large for the producer's request size (Kafka's default 1 MB): refused before it
    # is sent, as any Kafka client refuses it. (The embedded broker itself takes any size.)
    messages = [
        OutboxMessage("m1", "result", topic, b"a", b'{"n":1}'),
        OutboxMessage("m2", "dead_letter", topic, b"b", b"x" * (2 * 1024 * 1024)),
        OutboxMessage("m3", "result", topic, b"c", b'{"n":3}'),
    ]
    async with pool.acquire() as conn:
        await enqueue(conn, messages)
    reports: list[RelayReport] = []
    relay = OutboxRelay(
        pool,
        producer,
        batch_size=10,
        idle_seconds=0.05,
        clock=lambda: NOW,
        on_sent=reports.append,
    )

    assert await relay.drain() == 2

    published = await read_topic(kafka_bootstrap, topic, at_least=2)
    assert [r.value for r in published] == [b'{"n":1}', b'{"n":3}']
    (failure,) = [f for r in reports for f in r.failed]
    assert (failure.message_id, failure.kind) == ("m2", "dead_letter")
    assert failure.reason.startswith("MessageSizeTooLargeError")
    async with pool.acquire() as conn:
        recorded = await conn.fetch("SELECT message_id, reason, failed_at FROM outbox_failure")
        assert [(r["message_id"], r["failed_at"]) for r in recorded] == [("m2", NOW)]
        assert recorded[0]["reason"].startswith("MessageSizeTooLargeError")
        # The refused row is left as it was (facts are added, not changed), and not offered
        # again: the relay finds nothing more to do.
        unsent = await conn.fetchval(
            "SELECT count(*) FROM outbox o"
            " WHERE NOT EXISTS (SELECT 1 FROM outbox_ack a WHERE a.message_id = o.message_id)"
        )
        assert unsent == 1
        assert await conn.fetchval("SELECT count(*) FROM outbox_backlog") == 0
    assert (await relay.relay_once()).handled == 0


async def test_a_later_revision_never_overtakes_one_that_timed_out(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    # The broker kept a1 but its answer was lost (a request timeout): the relay must offer
    # a1 again, and a2 of the same key only after it, so the key's last message is a2.
    topic = f"certrecon.relay-test.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], 1)
    messages = [
        OutboxMessage("c1:1", "result", topic, b"person-a", b'{"r":"a1"}'),
        OutboxMessage("c2:1", "result", topic, b"person-b", b'{"r":"b1"}'),
        OutboxMessage("c1:2", "result", topic, b"person-a", b'{"r":"a2"}'),
    ]
    async with pool.acquire() as conn:
        await enqueue(conn, messages)
    # The relay hands the producer whole batches: the first one, a1 and b1, is kept by the
    # broker but its answer lost.
    real_send_batch = producer.send_batch
    lost_answers = [True]

    async def send_batch(batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        sent: asyncio.Future[Any] = await real_send_batch(batch, topic, partition=partition)
        if not lost_answers:
            return sent
        lost_answers.pop()

        async def answer_lost() -> None:
            await sent
            raise RequestTimedOutError()

        return asyncio.ensure_future(answer_lost())

    producer.send_batch = send_batch
    reports: list[RelayReport] = []
    relay = OutboxRelay(pool, producer, batch_size=10, idle_seconds=0.05, on_sent=reports.append)

    await relay.drain()

    published = await read_topic(kafka_bootstrap, topic, at_least=4)
    person_a = [r.value for r in published if r.key == b"person-a"]
    assert person_a == [b'{"r":"a1"}', b'{"r":"a1"}', b'{"r":"a2"}']
    assert [r.value for r in published if r.key == b"person-b"] == [b'{"r":"b1"}'] * 2
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox_ack") == 3
        assert await conn.fetchval("SELECT count(*) FROM outbox_backlog") == 0
    assert [r.sent for r in reports if r.sent] == [3]  # a1, b1 again, then a2


def test_a_key_occurs_once_per_wave_in_its_order() -> None:
    a, b = b"a", b"b"
    assert send_waves([]) == []
    assert send_waves([a, b, None, a, None, a, b]) == [[0, 1, 2, 4], [3, 6], [5]]


async def test_batched_sends_keep_each_key_on_its_partition_in_outbox_order(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic = f"certrecon.relay-test.{uuid.uuid4().hex[:8]}"
    partitions = 3
    await ensure_topics(kafka_bootstrap, [topic], partitions)
    # Enough bytes per partition to fill more than one producer batch (256 KiB), a message
    # too large for a batch in the middle, one without a key, and keys with several
    # messages (revisions).
    messages = [
        OutboxMessage(f"m{i}", "result", topic, b"k%d" % (i % 500), b"%d:" % i + b"x" * 2000)
        for i in range(600)
    ]
    big = OutboxMessage("big", "result", topic, b"big", b"y" * 100_000)
    assert len(big.payload) > BATCHED_MESSAGE_BYTES
    messages.insert(300, big)
    messages.insert(10, OutboxMessage("keyless", "dead_letter", topic, None, b"{}"))
    async with pool.acquire() as conn:
        await enqueue(conn, messages)
    relay = OutboxRelay(pool, producer, batch_size=1000, idle_seconds=0.05)

    assert await relay.drain() == len(messages)

    published = await read_topic(kafka_bootstrap, topic, at_least=len(messages))
    ids = [dict(r.headers)["message_id"].decode() for r in published]
    assert sorted(ids) == sorted(m.message_id for m in messages)
    position = {m.message_id: n for n, m in enumerate(messages)}
    by_key: dict[bytes, list[tuple[int, int]]] = {}
    for record, message_id in zip(published, ids, strict=True):
        if record.key is not None:
            # The default partitioner's choice, as AIOKafkaProducer.send makes it.
            assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % partitions
            by_key.setdefault(record.key, []).append((record.offset, position[message_id]))
    for key, seen in by_key.items():
        order = [n for _, n in sorted(seen)]
        assert order == sorted(order), f"key {key!r} out of outbox order"
    assert max(len(seen) for seen in by_key.values()) == 2
