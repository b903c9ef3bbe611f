"""The worker's batch writes: certifications, decisions, review items and stored offsets.

Each call is one statement over arrays (``unnest``), so a batch costs a handful of round
trips whatever its size. Callers hold the transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from certrecon.store.db import Conn

_INSERT_CERTIFICATIONS = """
INSERT INTO certification (
    certification_id, channel, topic, kafka_partition, kafka_offset, id_number, valid,
    certified_at, certified_at_raw, local_date, due_date, deadline, provisional,
    content_sha256, raw, received_at)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::text[], $7::bool[],
    $8::timestamptz[], $9::text[], $10::date[], $11::date[], $12::timestamptz[], $13::bool[],
    $14::bytea[], $15::bytea[], $16::timestamptz[])
ON CONFLICT (certification_id) DO NOTHING
RETURNING certification_id
"""

_STORED_DIGESTS = """
SELECT certification_id, content_sha256 FROM certification
WHERE certification_id = ANY($1::text[])
"""

_INSERT_DECISIONS = """
INSERT INTO decision (
    certification_id, outcome, review_reason, reason, rule, rule_version, evidence,
    roster_version, decided_at)
SELECT c, o, r, re, ru, v, e::jsonb, rv, $9
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::bigint[])
    AS t(c, o, r, re, ru, v, e, rv)
"""

_INSERT_REVIEW_ITEMS = """
INSERT INTO review_item (certification_id, reason, queued_at)
SELECT c, r, $3 FROM unnest($1::text[], $2::text[]) AS t(c, r)
"""

_UPSERT_OFFSETS = """
INSERT INTO consumer_offset (group_id, topic, kafka_partition, next_offset, updated_at)
SELECT $1, t, p, o, now() FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, o)
ON CONFLICT (group_id, topic, kafka_partition) DO UPDATE
    SET next_offset = GREATEST(consumer_offset.next_offset, EXCLUDED.next_offset),
        updated_at = now()
"""


async def insert_certifications(conn: Conn, columns: Sequence[Sequence[Any]]) -> set[str]:
    """Insert certifications given column-wise; return the ids inserted now (an id already
    stored is left as it is)."""
    return {r["certification_id"] for r in await conn.fetch(_INSERT_CERTIFICATIONS, *columns)}


async def stored_digests(conn: Conn, certification_ids: Sequence[str]) -> dict[str, bytes]:
    """The SHA-256 of the stored bytes of each certification already received."""
    rows = await conn.fetch(_STORED_DIGESTS, list(certification_ids))
    return {r["certification_id"]: bytes(r["content_sha256"]) for r in rows}


async def insert_decisions(
    conn: Conn, columns: Sequence[Sequence[Any]], decided_at: dt.datetime
) -> None:
    """Insert decisions given column-wise: id, outcome, review reason, reason, rule, rule
    version, evidence (JSON text), roster version."""
    await conn.execute(_INSERT_DECISIONS, *columns, decided_at)


async def insert_review_items(
    conn: Conn, items: Sequence[tuple[str, str]], queued_at: dt.datetime
) -> None:
    """Queue (certification_id, reason) pairs for staff review."""
    if items:
        await conn.execute(
            _INSERT_REVIEW_ITEMS, [c for c, _ in items], [r for _, r in items], queued_at
        )


async def store_offsets(
    conn: Conn, group_id: str, next_offsets: Mapping[tuple[str, int], int]
) -> None:
    """The next offset to read per topic-partition, never moved backwards."""
    await conn.execute(
        _UPSERT_OFFSETS,
        group_id,
        [t for t, _ in next_offsets],
        [p for _, p in next_offsets],
        list(next_offsets.values()),
    )
