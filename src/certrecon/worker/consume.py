"""The batch loop: fetch, prepare and commit in two stages, in fetch order.

While batch N is written, batch N+1 is fetched, decoded and decided; a one-slot queue joins
the two stages. A batch is written under the batch lock, which the rebalance listener also
takes: a revocation waits for the batch in hand to commit, so the next owner of a
partition reads stored offsets that include it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

from certrecon.errors import WorkerCrashedError
from certrecon.logs import get_logger
from certrecon.settings import Settings
from certrecon.store import db
from certrecon.worker.kafka import StoredOffsetsListener
from certrecon.worker.metrics import Metrics
from certrecon.worker.pipeline import (
    BatchReport,
    Inbound,
    PipelineConfig,
    PreparedBatch,
    commit_batch,
    commit_bisecting,
    prepare_batch,
)
from certrecon.worker.runtime import CalendarCell, Clock

log = get_logger(__name__)

LAG_EVERY_SECONDS = 5.0
"""How often the consumer-lag gauge is brought up to date."""


def writable(epoch: int, owned: frozenset[TopicPartition], record: Inbound) -> bool:
    """Whether a fetched record may be written now.

    Not when it was fetched before the latest seek, nor from a partition not (yet) ours:
    then the stored offsets, not this batch, say where to resume.
    """
    return record.epoch == epoch and TopicPartition(record.topic, record.partition) in owned


GROUP_COMMIT_SECONDS = 10.0
"""How long one commit of offsets to the consumer group may take before it is abandoned."""


class _GroupOffsets:
    """The newest offsets not yet committed to the consumer group (a mailbox: a newer
    batch's offset replaces an older one's for the same partition)."""

    def __init__(self) -> None:
        self._offsets: dict[TopicPartition, int] = {}
        self._ready = asyncio.Event()
        self._closed = False

    def offer(self, report: BatchReport, owned: frozenset[TopicPartition]) -> None:
        for (t, p), off in report.next_offsets.items():
            tp = TopicPartition(t, p)
            if tp in owned:
                self._offsets[tp] = off
        if self._offsets:
            self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def take(self) -> dict[TopicPartition, int] | None:
        """The offsets to commit next; once closed, what is pending, then None."""
        while True:
            if not self._closed:
                await self._ready.wait()
                self._ready.clear()
            if self._offsets:
                offsets, self._offsets = self._offsets, {}
                return offsets
            if self._closed:
                return None


class BatchLoop:
    """Consumes the channel topics until stopped; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        listener: StoredOffsetsListener,
        batch_lock: asyncio.Lock,
        pool: asyncpg.Pool[Any],
        calendar: CalendarCell,
        clock: Clock,
        metrics: Metrics,
        on_committed: Callable[[BatchReport], None],
    ) -> None:
        self._settings = settings
        self._config = PipelineConfig.from_settings(settings)
        self._consumer = consumer
        self._listener = listener
        self._lock = batch_lock
        self._pool = pool
        self._calendar = calendar
        self._clock = clock
        self._metrics = metrics
        self._on_committed = on_committed
        self._lag_at: dt.datetime | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Two stages joined by a one-slot queue; writing stays strictly in fetch order."""
        queue: asyncio.Queue[PreparedBatch | None] = asyncio.Queue(maxsize=1)
        group_offsets = _GroupOffsets()
        async with asyncio.TaskGroup() as stages:
            stages.create_task(self._prepare_stage(stop, queue), name="consume-prepare")
            stages.create_task(self._commit_stage(queue, group_offsets), name="consume-commit")
            stages.create_task(self._group_commit(group_offsets), name="consume-group-commit")

    async def _prepare_stage(
        self, stop: asyncio.Event, queue: asyncio.Queue[PreparedBatch | None]
    ) -> None:
        listener = self._listener
        while not stop.is_set():
            if listener.failure is not None:
                raise WorkerCrashedError(
                    f"the stored offsets of newly assigned partitions are unreadable: "
                    f"{listener.failure!r}"
                ) from listener.failure
            records = await self._fetch_batch()
            await self._update_lag()
            if records:
                await queue.put(await self._prepare(records))
        # The commit stage writes what is queued, then ends. (On a failure the task group
        # cancels both stages instead.)
        await queue.put(None)

    async def _commit_stage(
        self, queue: asyncio.Queue[PreparedBatch | None], group_offsets: _GroupOffsets
    ) -> None:
        try:
            while (batch := await queue.get()) is not None:
                async with self._lock:
                    owned = self._listener.assigned
                    keep = functools.partial(writable, self._listener.epoch, owned)
                    report = await self._commit(batch, keep)
                    if report.consumed:
                        self._on_committed(report)
                # Handed on outside the lock: a revocation waits for this batch's PostgreSQL
                # commit only, never for the broker's group coordinator.
                if report.consumed:
                    group_offsets.offer(report, owned)
        finally:
            group_offsets.close()

    async def _fetch_batch(self) -> list[Inbound]:
        """Up to ``batch_max_records`` records, gathered for at most ``batch_fill_ms``.

        ``getmany`` returns as soon as any partition has data, often a few hundred records;
        filling the batch a little longer makes far fewer, larger transactions under load.
        Each record carries the listener's epoch as of the ``getmany`` that returned it.
        """
        consumer, listener = self._consumer, self._listener
        limit = self._settings.batch_max_records
        records: list[Inbound] = []

        def take(data: dict[TopicPartition, list[Any]]) -> None:
            epoch = listener.epoch  # read with no await since getmany returned
            for messages in data.values():
                records.extend(
                    Inbound(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value, epoch)
                    for m in messages
                )

        take(await consumer.getmany(timeout_ms=self._settings.batch_timeout_ms, max_records=limit))
        loop = asyncio.get_running_loop()
        until = loop.time() + self._settings.batch_fill_ms / 1000
        while records and len(records) < limit and (left := until - loop.time()) > 0:
            more = await consumer.getmany(
                timeout_ms=int(left * 1000), max_records=limit - len(records)
            )
            if not more:
                break
            take(more)
        return records

    async def _prepare(self, records: list[Inbound]) -> PreparedBatch:
        calendar = self._calendar.get()

        async def prepare() -> PreparedBatch:
            async with self._pool.acquire() as conn, db.losing_connection_is_retriable(conn):
                return await prepare_batch(
                    conn, records, config=self._config, calendar=calendar, now=self._clock()
                )

        return await db.OUTAGE.call(prepare)

    async def _commit(self, batch: PreparedBatch, keep: Callable[[Inbound], bool]) -> BatchReport:
        """Commit the batch; a lost connection is retried (bounded), data PostgreSQL refuses
        is narrowed down to the records refused alone, which are dead-lettered."""

        async def commit_once(part: PreparedBatch) -> BatchReport:
            async with self._pool.acquire() as conn, db.losing_connection_is_retriable(conn):
                return await commit_batch(conn, part, config=self._config, keep=keep)

        async def commit(part: PreparedBatch) -> BatchReport:
            return await db.OUTAGE.call(functools.partial(commit_once, part))

        def split(size: int, sqlstate: str) -> None:
            log.warning("batch refused by the database; splitting", size=size, sqlstate=sqlstate)

        return await commit_bisecting(batch, commit, config=self._config, on_split=split)

    async def _group_commit(self, group_offsets: _GroupOffsets) -> None:
        """Commit the latest stored offsets to the consumer group too, one commit at a time.

        PostgreSQL holds the authoritative offsets; the group's copy only lets standard
        Kafka lag tooling see progress, so it never holds up consuming: batches go on
        while a commit is in flight, and the next commit carries the newest offsets.
        aiokafka retries a commit for as long as the coordinator is unavailable, so each one
        is bounded; a failed or abandoned commit loses nothing.
        """
        while (offsets := await group_offsets.take()) is not None:
            try:
                async with asyncio.timeout(GROUP_COMMIT_SECONDS):
                    await self._consumer.commit(offsets)
            except TimeoutError:
                log.warning(
                    "kafka offset commit abandoned; the group coordinator did not answer",
                    seconds=GROUP_COMMIT_SECONDS,
                )
            except Exception as exc:
                log.warning("kafka offset commit failed", error=repr(exc))

    async def _update_lag(self) -> None:
        now = self._clock()
        if self._lag_at is not None and (now - self._lag_at).total_seconds() < LAG_EVERY_SECONDS:
            return
        self._lag_at = now
        consumer = self._consumer
        for tp in self._listener.assigned & consumer.assignment():
            # The fetch high watermark is trusted over ListOffsets, which some brokers
            # answer with a stale end.
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = await consumer.position(tp)
            except IllegalStateError:
                continue  # revoked while we asked: the next owner reports it
            self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                max(0, high - position)
            )


def log_batch(report: BatchReport) -> None:
    """The batch's log lines: its dead letters, refusals, review items and a summary."""
    batch_log = structlog.get_logger("certrecon.batch")
    for rejected in report.rejected:
        r = rejected.record
        # Error texts name fields and rules, never an ID number or a name.
        batch_log.warning(
            "dead letter",
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            certification_id=rejected.certification_id,
            errors=list(rejected.errors),
        )
    for record, sqlstate in report.refused_by_database:
        batch_log.error(
            "record refused by the database; dead-lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            sqlstate=sqlstate,
        )
    for certification_id, reason in report.queued_for_review:
        batch_log.info("queued for staff review", certification_id=certification_id, reason=reason)
    batch_log.info(
        "batch committed",
        consumed=report.consumed,
        decided=sum(report.decided.values()),
        duplicates=report.duplicates,
        dead_letters=len(report.rejected),
        offsets={f"{t}[{p}]": o for (t, p), o in report.next_offsets.items()},
    )
