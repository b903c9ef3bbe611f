"""The rebalance listener's bookkeeping (the real consumer is exercised end to end)."""

from __future__ import annotations

import asyncio

import asyncpg
from aiokafka import TopicPartition

from certrecon.worker.kafka import StoredOffsetsListener

A = TopicPartition("t", 0)
B = TopicPartition("t", 1)


class SeekRecorder:
    def __init__(self) -> None:
        self.seeks: list[tuple[TopicPartition, int]] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


async def test_assignment_seeks_to_stored_offsets_or_the_start() -> None:
    consumer = SeekRecorder()
    calls = 0

    async def load(tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise asyncpg.CannotConnectNowError("starting up")
        return {A: 42}

    listener = StoredOffsetsListener(consumer, load, asyncio.Lock())
    await listener.on_partitions_assigned([A, B])
    assert sorted(consumer.seeks) == [(A, 42), (B, 0)]
    assert listener.assigned == {A, B}
    assert listener.epoch == 1
    assert listener.failure is None

    await listener.on_partitions_revoked([A, B])
    assert listener.assigned == frozenset()
    assert listener.epoch == 2


async def test_unreadable_offsets_are_a_failure_not_a_silent_start() -> None:
    consumer = SeekRecorder()

    async def load(tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        raise asyncpg.UndefinedTableError("consumer_offset does not exist")

    listener = StoredOffsetsListener(consumer, load, asyncio.Lock())
    await listener.on_partitions_assigned([A])
    assert consumer.seeks == []
    assert listener.assigned == frozenset()
    assert isinstance(listener.failure, asyncpg.UndefinedTableError)
