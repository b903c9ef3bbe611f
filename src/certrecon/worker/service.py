"""The worker: wires the adapters and runs them as supervised background tasks.

:meth:`Worker.run` opens everything in order (migrations, the pool, the calendar, topics,
the producer, the consumer with its stored-offsets listener, the relay), hands the
background services their :class:`~certrecon.worker.runtime.Runtime`, and runs the batch
loop, the relay and the services under :func:`~certrecon.worker.supervision.supervise`.
A stop request (SIGTERM/SIGINT set the stop event) lets the batch loop commit the batch in
hand, then the relay drains the outbox, all within ``shutdown_grace_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import TopicPartition

from certrecon.calendar import WorkingCalendar
from certrecon.logs import get_logger
from certrecon.settings import Settings
from certrecon.store import db
from certrecon.store.calendar_overrides import load_calendar
from certrecon.store.migrations import ensure_current
from certrecon.store.offsets import load_offsets
from certrecon.worker import kafka
from certrecon.worker.consume import BatchLoop, log_batch
from certrecon.worker.health import readiness_checks
from certrecon.worker.metrics import Metrics
from certrecon.worker.pipeline import BatchReport
from certrecon.worker.relay import OutboxRelay
from certrecon.worker.runtime import CalendarCell, Clock, Runtime, Service, utc_now
from certrecon.worker.supervision import NamedTask, supervise

log = get_logger(__name__)


@dataclass
class WorkerState:
    """What tests and operators may read of a running worker."""

    started: bool = False


async def _load_calendar(pool: asyncpg.Pool[Any]) -> WorkingCalendar:
    async with pool.acquire() as conn, db.losing_connection_is_retriable(conn):
        return await load_calendar(conn)


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
        self.calendar = CalendarCell()
        self._services = list(services)
        self.pool: asyncpg.Pool[Any] | None = None
        self.relay: OutboxRelay | None = None
        self.listener: kafka.StoredOffsetsListener | None = None
        """The rebalance listener while the worker runs (its assignment and epoch)."""

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
            pool = await db.create_pool(
                self.dsn, password=s.database_password, min_size=2, max_size=6
            )
            stack.push_async_callback(pool.close)
            self.pool = pool
            self.calendar.replace(await db.OUTAGE.call(functools.partial(_load_calendar, pool)))
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
            batch_lock = asyncio.Lock()
            listener = kafka.StoredOffsetsListener(
                consumer, functools.partial(self._load_offsets, pool), batch_lock
            )
            consumer.subscribe(s.inbound_topics(), listener=listener)
            await kafka.start_consumer(consumer, self.bootstrap, security=s.kafka_security)
            stack.push_async_callback(consumer.stop)
            relay = OutboxRelay(
                pool,
                producer,
                batch_size=s.relay_batch_size,
                idle_seconds=s.relay_idle_seconds,
                clock=self.clock,
                on_sent=self.metrics.observe_relay,
            )
            self.relay = relay
            loop = BatchLoop(
                settings=s,
                consumer=consumer,
                listener=listener,
                batch_lock=batch_lock,
                pool=pool,
                calendar=self.calendar,
                clock=self.clock,
                metrics=self.metrics,
                on_committed=functools.partial(self._after_batch, relay),
            )
            runtime = Runtime(
                settings=s,
                dsn=self.dsn,
                clock=self.clock,
                metrics=self.metrics,
                calendar=self.calendar,
                pool=pool,
                wake_relay=relay.wake.set,
                readiness=readiness_checks(pool, consumer, lambda: listener.assigned),
            )
            services = [
                NamedTask(name, functools.partial(service, runtime))
                for name, service in self._services
            ]
            self.listener = listener
            self.state.started = True
            log.info("worker started", group=s.group_id, topics=sorted(s.inbound_topics()))
            try:
                await supervise(
                    stop,
                    [NamedTask("consume", loop.run), *services],
                    # Last: the relay drains what the final batch and the services queued.
                    [NamedTask("relay", relay.run)],
                    grace_seconds=s.shutdown_grace_seconds,
                )
            finally:
                # Not started any more, whether it stopped or crashed.
                self.state.started = False
            log.info("worker stopped")

    async def _load_offsets(
        self, pool: asyncpg.Pool[Any], tps: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        async with pool.acquire() as conn:
            stored = await load_offsets(
                conn, self.settings.group_id, [(tp.topic, tp.partition) for tp in tps]
            )
        return {TopicPartition(t, p): offset for (t, p), offset in stored.items()}

    def _after_batch(self, relay: OutboxRelay, report: BatchReport) -> None:
        relay.wake.set()
        self.metrics.observe_batch(report)
        log_batch(report)
