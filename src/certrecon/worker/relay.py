"""Outbox relay: publishes pending outbox rows and marks them sent.

Rows are claimed with ``FOR UPDATE SKIP LOCKED`` inside a transaction that stays open until
the broker acknowledged every message (``acks=all``), so several worker processes share the
work without sending a row twice concurrently, and a crash before the update leaves the
rows pending for a re-send with the same ``message_id`` and bytes. Rows are selected by
state (``sent_at IS NULL``), never by a sequence high-water mark: sequence values commit out
of order, and a high-water poller would skip a row committed late.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from certrecon.logs import get_logger
from certrecon.store.db import is_retriable_db_error
from certrecon.worker.kafka import is_retriable_kafka_error

log = get_logger(__name__)

_CLAIM = """
SELECT id, message_id, kind, topic, key, payload
FROM outbox
WHERE sent_at IS NULL
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED
"""

_MARK_SENT = "UPDATE outbox SET sent_at = $2 WHERE id = ANY($1::bigint[])"

# The first acknowledged result of a certification is its return; later revisions are
# corrections and do not move the return time.
_MARK_RETURNED = """
UPDATE certification AS c
SET returned_at = $2, on_time = $2 < c.deadline
FROM (
    SELECT DISTINCT ON (certification_id) certification_id, outcome
    FROM result
    WHERE result_id = ANY($1::text[])
    ORDER BY certification_id, revision
) AS r
WHERE c.certification_id = r.certification_id AND c.returned_at IS NULL
RETURNING c.channel, r.outcome, c.on_time
"""


@dataclass(frozen=True, slots=True)
class RelayReport:
    sent: int
    by_kind: dict[str, int]
    returned_by: dict[tuple[str, str, bool], int] = field(default_factory=dict)
    """(channel, outcome, on time) → certifications whose first result was acknowledged."""


def _retriable(exc: BaseException) -> bool:
    return is_retriable_kafka_error(exc) or is_retriable_db_error(exc)


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        producer: AIOKafkaProducer,
        *,
        batch_size: int,
        idle_seconds: float,
        clock: Callable[[], dt.datetime] | None = None,
        on_sent: Callable[[RelayReport], None] | None = None,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._batch_size = batch_size
        self._idle = idle_seconds
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._on_sent = on_sent
        self.wake = asyncio.Event()
        """Set after a commit that added outbox rows, to publish them without waiting."""

    async def relay_once(self) -> RelayReport:
        """Publish up to one batch of pending rows; retried (bounded) on transient errors."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_retriable),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(60),
            reraise=True,
        ):
            with attempt:
                return await self._relay_once()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _relay_once(self) -> RelayReport:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self._batch_size)
            if not rows:
                return RelayReport(0, {})
            futures = []
            for row in rows:
                futures.append(
                    await self._producer.send(
                        row["topic"],
                        value=bytes(row["payload"]),
                        key=bytes(row["key"]) if row["key"] is not None else None,
                        headers=[("message_id", row["message_id"].encode())],
                    )
                )
            await asyncio.gather(*futures)
            acked_at = self._clock()
            await conn.execute(_MARK_SENT, [r["id"] for r in rows], acked_at)
            by_kind: dict[str, int] = {}
            for r in rows:
                by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + 1
            results = [r["message_id"] for r in rows if r["kind"] == "result"]
            returned_by: dict[tuple[str, str, bool], int] = {}
            if results:
                for rec in await conn.fetch(_MARK_RETURNED, results, acked_at):
                    key = (rec["channel"], rec["outcome"], bool(rec["on_time"]))
                    returned_by[key] = returned_by.get(key, 0) + 1
        report = RelayReport(len(rows), by_kind, returned_by)
        if self._on_sent is not None:
            self._on_sent(report)
        return report

    async def drain(self) -> int:
        """Publish until nothing is pending; return how many were sent."""
        total = 0
        while (report := await self.relay_once()).sent:
            total += report.sent
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set, then drain what is pending and return."""
        while not stop.is_set():
            try:
                report = await self.relay_once()
            except KafkaError as exc:
                log.error("relay failed", error=str(exc), retriable=_retriable(exc))
                raise
            if report.sent:
                continue
            self.wake.clear()
            waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=self._idle, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        sent = await self.drain()
        log.info("relay drained", sent=sent)
