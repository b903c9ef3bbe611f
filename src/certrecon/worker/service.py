"""The worker: wires the adapters, runs supervised background tasks, shuts down cleanly.

Every background task is named and supervised: if one ends while the worker should be
running, the worker stops the others and raises ``WorkerCrashedError`` (exit status 1),
so a process supervisor restarts it. A stop request (SIGTERM/SIGINT set the stop event)
lets the consumer finish and commit the batch in hand, then the relay drains the outbox,
all within ``shutdown_grace_seconds``; whatever is still running after that is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

from certrecon.calendar import WorkingCalendar
from certrecon.errors import WorkerCrashedError
from certrecon.logs import get_logger
from certrecon.settings import Settings
from certrecon.store import db
from certrecon.store.calendar_overrides import load_calendar
from certrecon.store.migrations import ensure_current
from certrecon.worker import kafka
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
from certrecon.worker.relay import OutboxRelay, RelayReport

log = get_logger(__name__)

Clock = Callable[[], dt.datetime]
Service = Callable[["Worker", asyncio.Event], Coroutine[Any, Any, None]]
"""An extra supervised background task: runs until the stop event is set."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _writable(epoch: int, owned: frozenset[TopicPartition], record: Inbound) -> bool:
    """Whether a fetched record may be written now.

    Not when it was fetched before the latest seek, nor from a partition not (yet) ours:
    then the stored offsets, not this batch, say where to resume.
    """
    return record.epoch == epoch and TopicPartition(record.topic, record.partition) in owned


@dataclass
class WorkerState:
    """What health checks and metrics read."""

    assigned: frozenset[TopicPartition] = frozenset()
    started: bool = False


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        dsn: str,
        bootstrap: str,
        clock: Clock = utc_now,
        services: Sequence[tuple[str, Service]] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.dsn = dsn
        self.bootstrap = bootstrap
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.state = WorkerState()
        self._services = list(services)
        self._batch_lock = asyncio.Lock()
        self._lag_at: dt.datetime | None = None
        self.pool: asyncpg.Pool[Any] | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.calendar: WorkingCalendar | None = None
        self.relay: OutboxRelay | None = None
        self.config = PipelineConfig.from_settings(settings)

    async def refresh_calendar(self) -> WorkingCalendar:
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            self.calendar = await load_calendar(conn)
        return self.calendar

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        async with contextlib.AsyncExitStack() as stack:
            conn = await db.connect(self.dsn, password=s.database_password)
            try:
                applied = await ensure_current(conn)
            finally:
                await conn.close()
            if applied:
                log.info("migrations applied", names=applied)
            self.pool = await db.create_pool(
                self.dsn, password=s.database_password, min_size=2, max_size=6
            )
            stack.push_async_callback(self.pool.close)
            await self.refresh_calendar()
            if s.create_topics:
                created = await kafka.ensure_topics(
                    self.bootstrap, s.all_topics(), s.topic_partitions, security=s.kafka_security
                )
                if created:
                    log.info("topics created", topics=created)
            producer = await kafka.start_producer(self.bootstrap, security=s.kafka_security)
            stack.push_async_callback(producer.stop)
            consumer = kafka.make_consumer(
                self.bootstrap,
                s.group_id,
                max_poll_records=s.batch_max_records,
                security=s.kafka_security,
            )
            listener = kafka.StoredOffsetsListener(consumer, self._load_offsets, self._batch_lock)
            consumer.subscribe(list(s.channel_topics.values()), listener=listener)
            await kafka.start_consumer(consumer, self.bootstrap, security=s.kafka_security)
            stack.push_async_callback(consumer.stop)
            self.consumer = consumer
            self.relay = OutboxRelay(
                self.pool,
                producer,
                batch_size=s.relay_batch_size,
                idle_seconds=s.relay_idle_seconds,
                clock=self.clock,
                on_sent=self._count_sent,
            )
            self.state.started = True
            log.info("worker started", group=s.group_id, topics=sorted(s.channel_topics.values()))
            await self._supervise(stop, listener)
            log.info("worker stopped")

    async def _supervise(self, stop: asyncio.Event, listener: kafka.StoredOffsetsListener) -> None:
        assert self.relay is not None
        relay_stop = asyncio.Event()
        consume = asyncio.create_task(self._consume(stop, listener), name="consume")
        relay = asyncio.create_task(self.relay.run(relay_stop), name="relay")
        extra = [
            asyncio.create_task(service(self, stop), name=name) for name, service in self._services
        ]
        tasks = [consume, relay, *extra]
        stopping = asyncio.create_task(stop.wait(), name="stop-signal")
        done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        # A task that ends cleanly once a stop was requested has simply finished.
        died = [
            t
            for t in done
            if t is not stopping
            and not (stop.is_set() and not t.cancelled() and t.exception() is None)
        ]
        for t in died:
            exc = None if t.cancelled() else t.exception()
            log.error(
                "background task ended unexpectedly",
                task=t.get_name(),
                error=repr(exc) if exc else "returned",
            )
        stop.set()
        stopping.cancel()
        try:
            async with asyncio.timeout(self.settings.shutdown_grace_seconds):
                # Order matters: the last batch commits before the relay drains its results.
                await asyncio.wait([consume, *extra])
                relay_stop.set()
                await asyncio.wait([relay])
        except TimeoutError:
            log.error(
                "shutdown grace period exceeded; cancelling",
                grace=self.settings.shutdown_grace_seconds,
            )
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if died:
            names = ", ".join(t.get_name() for t in died)
            first = next((t.exception() for t in died if not t.cancelled() and t.exception()), None)
            raise WorkerCrashedError(f"background task(s) {names} died: {first!r}") from first
        for t in tasks:
            if not t.cancelled() and t.exception() is not None:
                raise WorkerCrashedError(
                    f"background task {t.get_name()} failed during shutdown: {t.exception()!r}"
                ) from t.exception()

    async def _load_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        assert self.pool is not None
        rows = await self.pool.fetch(
            """
            SELECT topic, kafka_partition, next_offset FROM consumer_offset
            WHERE group_id = $1 AND topic = ANY($2::text[])
            """,
            self.settings.group_id,
            sorted({tp.topic for tp in tps}),
        )
        stored = {TopicPartition(r["topic"], r["kafka_partition"]): r["next_offset"] for r in rows}
        return {tp: off for tp, off in stored.items() if tp in set(tps)}

    async def _consume(self, stop: asyncio.Event, listener: kafka.StoredOffsetsListener) -> None:
        """Two stages joined by a one-slot queue: while batch N is written, batch N+1 is
        fetched, decoded and decided. Writing stays strictly in fetch order."""
        queue: asyncio.Queue[PreparedBatch | None] = asyncio.Queue(maxsize=1)
        async with asyncio.TaskGroup() as stages:
            stages.create_task(self._prepare_stage(stop, listener, queue), name="consume-prepare")
            stages.create_task(self._commit_stage(listener, queue), name="consume-commit")

    async def _prepare_stage(
        self,
        stop: asyncio.Event,
        listener: kafka.StoredOffsetsListener,
        queue: asyncio.Queue[PreparedBatch | None],
    ) -> None:
        consumer = self.consumer
        assert consumer is not None
        while not stop.is_set():
            if listener.failure is not None:
                raise WorkerCrashedError(
                    f"the stored offsets of newly assigned partitions are unreadable: "
                    f"{listener.failure!r}"
                ) from listener.failure
            records = await self._fetch_batch(consumer, listener)
            self.state.assigned = listener.assigned
            await self._update_lag(consumer, listener)
            if records:
                await queue.put(await self._prepare(records))
        # The commit stage writes what is queued, then ends. (On a failure the task group
        # cancels both stages instead.)
        await queue.put(None)

    async def _commit_stage(
        self,
        listener: kafka.StoredOffsetsListener,
        queue: asyncio.Queue[PreparedBatch | None],
    ) -> None:
        consumer = self.consumer
        assert consumer is not None
        while (batch := await queue.get()) is not None:
            async with self._batch_lock:
                owned = listener.assigned
                keep = functools.partial(_writable, listener.epoch, owned)
                report = await self._commit(batch, keep)
                if report.consumed:
                    self._after_batch(report)
                    await self._commit_to_kafka(consumer, report, owned)

    async def _fetch_batch(
        self, consumer: AIOKafkaConsumer, listener: kafka.StoredOffsetsListener
    ) -> list[Inbound]:
        """Up to ``batch_max_records`` records, gathered for at most ``batch_fill_ms``.

        ``getmany`` returns as soon as any partition has data, often a few hundred records;
        filling the batch a little longer makes far fewer, larger transactions under load.
        Each record carries the listener's epoch as of the ``getmany`` that returned it.
        """
        limit = self.settings.batch_max_records
        records: list[Inbound] = []

        def take(data: dict[TopicPartition, list[Any]]) -> None:
            epoch = listener.epoch  # read with no await since getmany returned
            for messages in data.values():
                records.extend(
                    Inbound(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value, epoch)
                    for m in messages
                )

        take(await consumer.getmany(timeout_ms=self.settings.batch_timeout_ms, max_records=limit))
        loop = asyncio.get_running_loop()
        until = loop.time() + self.settings.batch_fill_ms / 1000
        while records and len(records) < limit and (left := until - loop.time()) > 0:
            more = await consumer.getmany(
                timeout_ms=int(left * 1000), max_records=limit - len(records)
            )
            if not more:
                break
            take(more)
        return records

    async def _prepare(self, records: list[Inbound]) -> PreparedBatch:
        assert self.pool is not None
        assert self.calendar is not None
        async for attempt in db.OUTAGE.attempts():
            with attempt:
                async with self.pool.acquire() as conn, db.losing_connection_is_retriable(conn):
                    return await prepare_batch(
                        conn,
                        records,
                        config=self.config,
                        calendar=self.calendar,
                        now=self.clock(),
                    )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _commit(self, batch: PreparedBatch, keep: Callable[[Inbound], bool]) -> BatchReport:
        """Commit the batch; a lost connection is retried (bounded), data PostgreSQL refuses
        is narrowed down to the records refused alone, which are dead-lettered."""
        pool = self.pool
        assert pool is not None

        async def commit(part: PreparedBatch) -> BatchReport:
            async for attempt in db.OUTAGE.attempts():
                with attempt:
                    async with pool.acquire() as conn, db.losing_connection_is_retriable(conn):
                        return await commit_batch(conn, part, config=self.config, keep=keep)
            raise AssertionError("unreachable")  # pragma: no cover

        def split(size: int, sqlstate: str) -> None:
            log.warning("batch refused by the database; splitting", size=size, sqlstate=sqlstate)

        return await commit_bisecting(batch, commit, config=self.config, on_split=split)

    def _after_batch(self, report: BatchReport) -> None:
        assert self.relay is not None
        self.relay.wake.set()
        m = self.metrics
        m.batches.inc()
        for (channel, outcome), n in report.decided.items():
            m.decided.labels(channel, outcome).inc(n)
        m.duplicates.inc(report.duplicates)
        m.dead_letters.inc(len(report.rejected))
        for channel, n in report.consumed_by_channel.items():
            m.consumed.labels(channel).inc(n)
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
            batch_log.info(
                "queued for staff review", certification_id=certification_id, reason=reason
            )
        batch_log.info(
            "batch committed",
            consumed=report.consumed,
            decided=sum(report.decided.values()),
            duplicates=report.duplicates,
            dead_letters=len(report.rejected),
            offsets={f"{t}[{p}]": o for (t, p), o in report.next_offsets.items()},
        )

    async def _commit_to_kafka(
        self,
        consumer: AIOKafkaConsumer,
        report: BatchReport,
        owned: frozenset[TopicPartition],
    ) -> None:
        # PostgreSQL holds the authoritative offsets; committing them to the group too lets
        # standard Kafka lag tooling see progress. A failure here loses nothing.
        offsets = {
            TopicPartition(t, p): off
            for (t, p), off in report.next_offsets.items()
            if TopicPartition(t, p) in owned
        }
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as exc:
            log.warning("kafka offset commit failed", error=repr(exc))

    async def _update_lag(
        self, consumer: AIOKafkaConsumer, listener: kafka.StoredOffsetsListener
    ) -> None:
        now = self.clock()
        if self._lag_at is not None and (now - self._lag_at).total_seconds() < 5:
            return
        self._lag_at = now
        current = consumer.assignment()
        for tp in listener.assigned & current:
            # The fetch high watermark is trusted over ListOffsets, which some brokers
            # answer with a stale end.
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = await consumer.position(tp)
            except IllegalStateError:
                continue  # revoked while we asked: the next owner reports it

            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                max(0, high - position)
            )

    def _count_sent(self, report: RelayReport) -> None:
        for kind, n in report.by_kind.items():
            self.metrics.published.labels(kind).inc(n)
        for (channel, outcome, on_time), n in report.returned_by.items():
            self.metrics.count_returned(channel, outcome, on_time, n)
        for failure in report.failed:
            self.metrics.outbox_failed.labels(failure.kind).inc()
