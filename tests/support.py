"""Helpers shared by the end-to-end tests: isolated topics, producing, reading results."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from certrecon.domain import Channel, RosterRecord, RosterStatus
from certrecon.settings import DEFAULT_CHANNEL_TOPICS, Settings
from certrecon.synthetic import certification_message, make_roster
from certrecon.transport import KafkaSecurity
from certrecon.worker.bootstrap import build_worker
from certrecon.worker.kafka import PLAINTEXT, client_options, ensure_topics, publish
from certrecon.worker.service import Worker


class Clock:
    """A clock the test moves."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def isolated_settings(**changes: Any) -> Settings:
    """Settings whose topics and group no other test uses (the broker is shared)."""
    tag = uuid.uuid4().hex[:8]
    base = Settings(
        channel_topics={c: f"{t}.{tag}" for c, t in DEFAULT_CHANNEL_TOPICS.items()},
        result_topic=f"mohrss.certification-result.{tag}",
        dead_letter_topic=f"certrecon.dead-letter.{tag}",
        sla_alert_topic=f"certrecon.sla-alert.{tag}",
        audit_checkpoint_topic=f"certrecon.audit-checkpoint.{tag}",
        comparison_topic=f"mohrss.comparison.{tag}",
        benefit_action_topic=f"certrecon.benefit-action.{tag}",
        group_id=f"certrecon-{tag}",
        topic_partitions=3,
        http_port=None,
        batch_timeout_ms=100,
        relay_idle_seconds=0.05,
        shutdown_grace_seconds=15.0,
    )
    return dataclasses.replace(base, **changes)


def settings_env(settings: Settings, dsn: str, bootstrap: str) -> dict[str, str]:
    """The environment that makes ``certrecon run`` use these settings."""
    names = {
        Channel.NATIONAL_PLATFORM: "CERTRECON_TOPIC_NATIONAL_PLATFORM",
        Channel.APP_12333: "CERTRECON_TOPIC_12333",
        Channel.ESSC: "CERTRECON_TOPIC_ESSC",
        Channel.CONSULAR: "CERTRECON_TOPIC_CONSULAR",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTRECON_")}
    env.update({names[c]: t for c, t in settings.channel_topics.items()})
    env.update(
        CERTRECON_DATABASE_URL=dsn,
        CERTRECON_KAFKA_BOOTSTRAP=bootstrap,
        CERTRECON_TOPIC_RESULT=settings.result_topic,
        CERTRECON_TOPIC_DEAD_LETTER=settings.dead_letter_topic,
        CERTRECON_TOPIC_SLA_ALERT=settings.sla_alert_topic,
        CERTRECON_TOPIC_AUDIT_CHECKPOINT=settings.audit_checkpoint_topic,
        CERTRECON_TOPIC_COMPARISON=settings.comparison_topic,
        CERTRECON_TOPIC_BENEFIT_ACTION=settings.benefit_action_topic,
        CERTRECON_GROUP_ID=settings.group_id,
        CERTRECON_TOPIC_PARTITIONS=str(settings.topic_partitions),
        CERTRECON_HTTP_PORT="0",
        CERTRECON_BATCH_TIMEOUT_MS="100",
        CERTRECON_RELAY_IDLE_SECONDS="0.05",
    )
    return env


async def create_topics(settings: Settings, bootstrap: str) -> None:
    await ensure_topics(
        bootstrap,
        settings.all_topics(),
        settings.topic_partitions,
        security=settings.kafka_security,
    )


def eligible_roster(n: int, *, seed: int) -> list[RosterRecord]:
    """Synthetic people who all qualify unless a test changes them: active, paid since
    2010, no death or prison record, insured in the default region."""
    return [
        dataclasses.replace(
            p,
            status=RosterStatus.ACTIVE,
            first_paid_on=dt.date(2010, 1, 1),
            deceased_on=None,
            imprisoned_from=None,
            imprisoned_until=None,
            insured_region="110105",
        )
        for p in make_roster(n, seed=seed, region="110105")
    ]


def spread_over_channels(
    settings: Settings, people: Sequence[RosterRecord], when: dt.datetime, *, prefix: str
) -> list[tuple[str, bytes, bytes]]:
    """One certification per person, round-robin over the four channel topics, keyed by
    ID number: (topic, key, value) ready for ``produce``."""
    channels = list(Channel)
    messages = []
    for i, person in enumerate(people):
        channel = channels[i % len(channels)]
        body = certification(f"{prefix}{i:08d}", channel, person, when)
        messages.append((settings.channel_topics[channel], person.id_number.encode(), encode(body)))
    return messages


# The tests play the ministry's side with the same builders the demo uses.
produce = publish
certification = certification_message


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    at_least: int,
    timeout: float = 60.0,
    security: KafkaSecurity = PLAINTEXT,
) -> list[Any]:
    """Every record of ``topic`` from the beginning, once at least ``at_least`` are there.

    The end is judged by the fetch high watermark (ListOffsets can lag behind on some
    brokers), and the read stops when every partition reached it.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **client_options(security),
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
            if loop.time() > deadline:
                raise TimeoutError(f"topic {topic} has no partitions")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                records.extend(msgs)
            caught_up = True
            for tp in tps:
                high = consumer.highwater(tp)
                if high is None or await consumer.position(tp) < high:
                    caught_up = False
            if len(records) >= at_least and caught_up and not batch:
                return records
            if loop.time() > deadline:
                raise TimeoutError(f"{len(records)} of {at_least} records on {topic}")
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, dsn: str, bootstrap: str, **kwargs: Any
) -> AsyncIterator[Worker]:
    """A worker running in this event loop; stopped (gracefully) on exit."""
    stop = asyncio.Event()
    worker = build_worker(settings, dsn=dsn, bootstrap=bootstrap, **kwargs)
    task = asyncio.create_task(worker.run(stop), name="test-worker")
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wait_for(
    conn: asyncpg.Connection, query: str, predicate: Any, *, timeout: float = 60.0
) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await conn.fetchval(query)
        if predicate(value):
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"{query!r} returned {value!r}")
        await asyncio.sleep(0.1)


async def run_certrecon(env: Mapping[str, str], *args: str) -> tuple[int, str, str]:
    """``python -m certrecon ARGS`` as its own process: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "certrecon",
        *args,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
