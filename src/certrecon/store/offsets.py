"""The consumer offsets stored with each batch: where a newly assigned partition resumes.

They are written in the batch's own transaction (:mod:`certrecon.store.batches`); read
here when partitions are assigned.
"""

from __future__ import annotations

from collections.abc import Iterable

from certrecon.store.db import Conn

_STORED = """
SELECT topic, kafka_partition, next_offset FROM consumer_offset
WHERE group_id = $1 AND topic = ANY($2::text[])
"""


async def load_offsets(
    conn: Conn, group_id: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """The next offset stored for each of ``partitions`` (topic, partition) that has one."""
    wanted = set(partitions)
    rows = await conn.fetch(_STORED, group_id, sorted({topic for topic, _ in wanted}))
    found = {(r["topic"], r["kafka_partition"]): int(r["next_offset"]) for r in rows}
    return {tp: offset for tp, offset in found.items() if tp in wanted}
