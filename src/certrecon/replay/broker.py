"""Reading the topics for the replay, read-only by construction.

One aiokafka consumer with no group: partitions are assigned by hand, nothing is ever
committed (no group exists to commit to), and no producer is made. Where a partition's
window starts comes from the broker's timestamp look-up, checked; where it ends is fixed
before reading from the fetch high watermark (ListOffsets(latest) can be low on some
brokers), so records arriving during the replay do not keep it running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from certrecon.errors import BrokerUnavailableError
from certrecon.replay.model import PartitionSpan
from certrecon.transport import KafkaSecurity
from certrecon.worker.kafka import PLAINTEXT, client_options, start_consumer
from certrecon.worker.pipeline import Inbound

Progress = Callable[[PartitionSpan, int], None]
"""Told (span, position) after every chunk a partition delivered."""

CHUNK_RECORDS = 2000
_HIGHWATER_SECONDS = 15.0
_STALL_SECONDS = 60.0


@dataclass(slots=True)
class FirstKept:
    """The timestamp of the first record read at a partition's log start (window check)."""

    timestamps: dict[tuple[str, int], int] = field(default_factory=dict)


class TopicReader:
    """Spans and records of topics; ``async with TopicReader(...) as reader``."""

    def __init__(self, bootstrap: str, *, security: KafkaSecurity = PLAINTEXT) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.first_kept = FirstKept()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **client_options(security),
        )

    async def __aenter__(self) -> TopicReader:
        await start_consumer(self._consumer, self.bootstrap, security=self.security)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._consumer.stop()

    async def partitions(self, topics: Sequence[str]) -> list[TopicPartition]:
        """The partitions of ``topics`` (a topic the broker does not have has none)."""
        # The whole cluster's metadata: the client tracks only the topics assigned so far.
        cluster = await self._consumer._client.fetch_all_metadata()
        return [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(cluster.partitions_for_topic(t) or ())
        ]

    async def spans(self, topics: Sequence[str], since_ms: int) -> list[PartitionSpan]:
        """Where to read each partition of ``topics`` for records stamped at or after
        ``since_ms``: from the checked timestamp look-up to the high watermark now."""
        tps = await self.partitions(topics)
        if not tps:
            return []
        c = self._consumer
        c.assign(tps)
        log_start = await c.beginning_offsets(tps)
        ends = await self._high_watermarks(tps)
        found = await c.offsets_for_times(dict.fromkeys(tps, since_ms))
        spans = []
        for tp in tps:
            first, end = log_start[tp], ends[tp]
            hit = found.get(tp)
            if hit is None:
                start, how = end, "timestamp"  # no record stamped at or after since_ms
            elif hit.timestamp < since_ms or hit.offset < first or hit.offset > end:
                start, how = first, "scan"  # an answer that cannot be right
            elif hit.offset > first and not await self._before(tp, hit.offset - 1, since_ms):
                start, how = first, "scan"  # the record before it is not older: imprecise
            else:
                start, how = hit.offset, "timestamp"
            spans.append(PartitionSpan(tp.topic, tp.partition, start, end, first, how))
        return spans

    async def _before(self, tp: TopicPartition, offset: int, since_ms: int) -> bool:
        """Whether the record at ``offset`` is stamped before ``since_ms``."""
        c = self._consumer
        c.seek(tp, offset)
        loop = asyncio.get_running_loop()
        until = loop.time() + _HIGHWATER_SECONDS
        while loop.time() < until:
            got = await c.getmany(tp, timeout_ms=500, max_records=1)
            for m in got.get(tp, []):
                return bool(m.offset == offset and m.timestamp < since_ms)
        return False

    async def _high_watermarks(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's end from a fetch response's high watermark (at least what
        ListOffsets says), fetched once at the listed end."""
        c = self._consumer
        listed = await c.end_offsets(tps)
        for tp in tps:
            c.seek(tp, listed[tp])
        loop = asyncio.get_running_loop()
        until = loop.time() + _HIGHWATER_SECONDS
        while any(c.highwater(tp) is None for tp in tps):
            if loop.time() > until:
                raise BrokerUnavailableError(
                    f"the Kafka broker at {self.bootstrap} gave no high watermark in "
                    f"{_HIGHWATER_SECONDS:.0f} s"
                )
            await c.getmany(*tps, timeout_ms=200)
        return {tp: max(listed[tp], c.highwater(tp) or 0) for tp in tps}

    async def read(
        self, spans: Sequence[PartitionSpan], progress: Progress | None = None
    ) -> AsyncIterator[list[Inbound]]:
        """Every record of ``spans``, in chunks, each partition in offset order."""
        c = self._consumer
        todo = {TopicPartition(s.topic, s.partition): s for s in spans if s.start < s.end}
        c.assign(list(todo))
        for tp, s in todo.items():
            c.seek(tp, s.start)
        loop = asyncio.get_running_loop()
        last = loop.time()
        while todo:
            got = await c.getmany(*todo, timeout_ms=500, max_records=CHUNK_RECORDS)
            chunk: list[Inbound] = []
            for tp, messages in got.items():
                span = todo.get(tp)
                if span is None or not messages:
                    continue
                chunk.extend(_inbound(m) for m in messages if m.offset < span.end)
                if messages[0].offset == span.log_start:
                    self.first_kept.timestamps[(tp.topic, tp.partition)] = messages[0].timestamp
            # The position, not the last record: control records (transaction markers)
            # advance it without being delivered.
            for tp, span in list(todo.items()):
                position = await c.position(tp)
                if tp in got and progress is not None:
                    progress(span, min(position, span.end))
                if position >= span.end:
                    del todo[tp]
                    c.pause(tp)
            if chunk:
                last = loop.time()
                yield chunk
            elif loop.time() - last > _STALL_SECONDS:
                names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in todo)
                raise BrokerUnavailableError(
                    f"no records for {_STALL_SECONDS:.0f} s below the end fixed at start: {names}"
                )


def _inbound(m: Any) -> Inbound:
    return Inbound(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value)
