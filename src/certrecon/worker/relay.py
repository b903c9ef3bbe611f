"""Outbox relay: publishes outbox rows in order and records the broker's acknowledgements.

Each round runs in one transaction that holds the relay cursor's lock until the broker
answered every message (``acks=all``): replicas never publish concurrently, and a crash
before the commit leaves the cursor where it was, for a re-send with the same
``message_id`` and bytes. Nothing is updated but the cursor; see
:mod:`certrecon.store.outbox` for how the next rows are found without skipping one whose
transaction commits late.

A message refused for good (too large, an invalid topic: see :func:`refused_for_good`) is
recorded in ``outbox_failure`` with the reason, logged as an error and counted for the
alert, and never offered again, so it cannot hold up the messages behind it. Transient
errors leave the messages pending and are retried (bounded).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from certrecon.logs import get_logger
from certrecon.retry import RetryPolicy
from certrecon.store import outbox
from certrecon.store.db import is_retriable_db_error, losing_connection_is_retriable
from certrecon.store.results import OutboxFailure, record_outbox_failures
from certrecon.worker.kafka import is_retriable_kafka_error

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RelayReport:
    sent: int
    by_kind: dict[str, int]
    returned_by: dict[tuple[str, str, bool], int] = field(default_factory=dict)
    """(channel, outcome, on time) → certifications whose first result was acknowledged."""
    failed: list[OutboxFailure] = field(default_factory=list)
    """Messages refused for good in this round, now recorded and skipped."""
    passed: int = 0
    """Outbox rows the cursor moved over (sent or refused now, or settled before)."""

    @property
    def handled(self) -> int:
        """Rows settled this round: zero means nothing was pending."""
        return max(self.passed, self.sent + len(self.failed))


_REFUSED_FOR_GOOD: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    InvalidTopicError,
    CorruptRecordException,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)


BATCHED_MESSAGE_BYTES = 64 * 1024
"""Rows larger than this (key and value) are sent alone, through the producer's ``send``."""

_PARTITIONER = DefaultPartitioner()
"""The producer's partitioner (:func:`certrecon.worker.kafka.start_producer` keeps the
default)."""


def refused_for_good(exc: BaseException | None) -> bool:
    """Whether the broker (or the client, before sending) refused this message itself.

    Deliberately a list, not "every non-retriable error": aiokafka marks a request timeout
    and failed authorisation non-retriable too, and those say nothing about one message.
    """
    return isinstance(exc, _REFUSED_FOR_GOOD)


class HeldBehind(Exception):
    """Not sent: an earlier message with the same key has no answer yet in this round."""


def send_waves(keys: Sequence[bytes | None]) -> list[list[int]]:
    """Positions of ``keys`` grouped so that a key occurs at most once per wave, each key's
    occurrences in their order across waves; messages without a key go in the first."""
    waves: list[list[int]] = []
    seen: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        n = 0
        if key is not None:
            n = seen.get(key, 0)
            seen[key] = n + 1
        if n == len(waves):
            waves.append([])
        waves[n].append(i)
    return waves


def _retriable(exc: BaseException) -> bool:
    return is_retriable_kafka_error(exc) or is_retriable_db_error(exc)


ROUND_RETRY = RetryPolicy(_retriable, first_wait=0.2, max_wait=5, within_seconds=60)
"""A relay round replayed whole while the broker or PostgreSQL is briefly unavailable."""


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
        return await ROUND_RETRY.call(self._relay_once)

    async def _relay_once(self) -> RelayReport:
        transient: BaseException | None = None
        async with (
            self._pool.acquire() as conn,
            losing_connection_is_retriable(conn),
            conn.transaction(),
        ):
            cursor = await outbox.lock_cursor(conn)
            if cursor is None:
                return RelayReport(0, {})  # another replica is publishing
            rows = await outbox.next_batch(conn, cursor, self._batch_size)
            if not rows:
                return RelayReport(0, {})
            to_send = [r for r in rows if not r.settled]
            outcomes = await self._send_all(to_send)
            acked = [r for r, o in zip(to_send, outcomes, strict=True) if o is None]
            failed = [
                OutboxFailure(r.message_id, r.kind, r.topic, f"{type(o).__name__}: {o}")
                for r, o in zip(to_send, outcomes, strict=True)
                if o is not None and refused_for_good(o)
            ]
            transient_at = next(
                (i for i, o in enumerate(outcomes) if o is not None and not refused_for_good(o)),
                None,
            )
            acked_at = self._clock()
            await record_outbox_failures(conn, failed, at=acked_at)
            returned = await outbox.record_acks(conn, [r.message_id for r in acked], acked_at)
            # The cursor passes every row settled in order; a row left for a transient error
            # stops it there, and the rows after it are offered again (acknowledged ones are
            # then skipped).
            if transient_at is None:
                passed = len(rows)
            else:
                transient = outcomes[transient_at]
                passed = rows.index(to_send[transient_at])
            if passed:
                await outbox.advance(conn, rows[passed - 1].position)
            by_kind: dict[str, int] = {}
            for r in acked:
                by_kind[r.kind] = by_kind.get(r.kind, 0) + 1
            returned_by: dict[tuple[str, str, bool], int] = {}
            for key in returned:
                returned_by[key] = returned_by.get(key, 0) + 1
        for failure in failed:
            # Nothing in these fields is personal: ids, kinds, topics and client errors.
            log.error(
                "outbox message refused by the broker; recorded, not retried",
                message_id=failure.message_id,
                kind=failure.kind,
                topic=failure.topic,
                reason=failure.reason,
            )
        report = RelayReport(len(acked), by_kind, returned_by, failed, passed)
        if self._on_sent is not None:
            self._on_sent(report)
        if transient is not None:
            # What was acknowledged or refused is settled; the rest is offered again.
            raise transient
        return report

    async def _send_all(self, rows: list[outbox.Pending]) -> list[BaseException | None]:
        """Send every row; the outcome per row: None when acknowledged, else the error.

        Rows are sent in waves (:func:`send_waves`): a key's next message leaves only once
        its previous one is acknowledged or refused for good. Sent together, a later
        revision could be acknowledged while the earlier one timed out; re-sent, the
        earlier one would then land after it, and a reader keeping a person's last message
        would keep the old revision. Behind a message without an answer, the key's later
        messages wait (:class:`HeldBehind`) and are offered again with it, in order.
        """
        outcomes: list[BaseException | None] = [None] * len(rows)
        unanswered: set[bytes] = set()
        for wave in send_waves([r.key for r in rows]):
            sendable = []
            for i in wave:
                key = rows[i].key
                if key is not None and key in unanswered:
                    outcomes[i] = HeldBehind()
                else:
                    sendable.append(i)
            await self._send_wave(rows, sendable, outcomes)
            for i in sendable:
                key = rows[i].key
                if (
                    key is not None
                    and outcomes[i] is not None
                    and not refused_for_good(outcomes[i])
                ):
                    unanswered.add(key)
        return outcomes

    async def _send_wave(
        self, rows: list[outbox.Pending], wave: list[int], outcomes: list[BaseException | None]
    ) -> None:
        deliveries = await self._submit(rows, wave, outcomes)
        done = await asyncio.gather(*(f for _, f in deliveries), return_exceptions=True)
        pending: list[int] = []
        for (members, _), result in zip(deliveries, done, strict=True):
            pending.extend(members)
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancellation and the like are not about a message
                for i in members:
                    outcomes[i] = result
        # The broker answers for a whole producer batch: one message too large fails the
        # others sent with it. Offered alone, each gets its own answer.
        suspects = [i for i in pending if refused_for_good(outcomes[i])]
        if len(suspects) > 1:
            for i in suspects:
                try:
                    await (await self._send(rows[i]))
                except KafkaError as exc:
                    outcomes[i] = exc
                else:
                    outcomes[i] = None

    async def _submit(
        self, rows: list[outbox.Pending], wave: list[int], outcomes: list[BaseException | None]
    ) -> list[tuple[list[int], asyncio.Future[Any]]]:
        """Hand the rows at the positions ``wave`` to the producer; (positions, future of
        their delivery) per producer batch. A row refused before sending gets its error in
        ``outcomes``.

        Rows are appended to one batch per partition, in order, and each batch is handed
        over whole (``send_batch``): a round of a thousand messages costs a few producer
        calls instead of a thousand. The partition is the one ``send`` would choose (the
        default partitioner over the key), so a row's partition does not depend on the
        path it took. A large row goes alone through ``send``, which checks its size
        against the producer's limit, after the rows before it in its partition.
        """
        producer = self._producer
        deliveries: list[tuple[list[int], asyncio.Future[Any]]] = []
        filling: dict[tuple[str, int], tuple[BatchBuilder, list[int]]] = {}

        async def deliver(tp: tuple[str, int]) -> None:
            batch, members = filling.pop(tp)
            batch.close()
            future = await producer.send_batch(batch, tp[0], partition=tp[1])
            deliveries.append((members, future))

        def append(tp: tuple[str, int], i: int, headers: list[tuple[str, bytes]]) -> bool:
            if tp not in filling:
                filling[tp] = (producer.create_batch(), [])
            batch, members = filling[tp]
            row = rows[i]
            if batch.append(key=row.key, value=row.payload, timestamp=None, headers=headers):
                members.append(i)
                return True
            return False

        partitions: dict[str, tuple[list[int], list[int]] | KafkaError] = {}
        for i in wave:
            row = rows[i]
            headers = [("message_id", row.message_id.encode())]
            if row.topic not in partitions:
                partitions[row.topic] = await self._partitions(row.topic)
            known = partitions[row.topic]
            if isinstance(known, KafkaError):  # e.g. an invalid topic
                outcomes[i] = known
                continue
            partition: int = _PARTITIONER(row.key, *known)
            tp = (row.topic, partition)
            if len(row.payload) + len(row.key or b"") <= BATCHED_MESSAGE_BYTES:
                if append(tp, i, headers):
                    continue
                await deliver(tp)  # full: handed over, and the row starts the next one
                if append(tp, i, headers):
                    continue
                del filling[tp]  # not even an empty batch takes it: it goes alone
            if tp in filling:
                await deliver(tp)
            try:
                future = await producer.send(
                    row.topic, value=row.payload, key=row.key, partition=partition, headers=headers
                )
            except KafkaError as exc:  # refused before sending, e.g. too large
                outcomes[i] = exc
                continue
            deliveries.append(([i], future))
        for tp in list(filling):
            await deliver(tp)
        return deliveries

    async def _partitions(self, topic: str) -> tuple[list[int], list[int]] | KafkaError:
        """What ``send`` chooses a partition of ``topic`` from: all its partitions and the
        available ones (as lists in the same order), or the error that refuses the topic."""
        producer = self._producer
        try:
            await producer.partitions_for(topic)  # waits for the topic's metadata
        except KafkaError as exc:
            return exc
        cluster = producer.client.cluster
        every = list(cluster.partitions_for_topic(topic))
        return every, list(cluster.available_partitions_for_topic(topic))

    async def _send(self, row: outbox.Pending) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self._producer.send(
            row.topic,
            value=row.payload,
            key=row.key,
            headers=[("message_id", row.message_id.encode())],
        )
        return future

    async def drain(self) -> int:
        """Publish until nothing is pending; return how many were sent."""
        total = 0
        while (report := await self.relay_once()).handled:
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
            if report.handled:
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
