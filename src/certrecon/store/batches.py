"""The worker's batch writes: certifications, decisions, review items and stored offsets.

Each call is one statement over arrays (``unnest``), so a batch costs a handful of round
trips whatever its size; the rows' ledger digests are computed here from the values
inserted and recorded with them (:mod:`certrecon.store.ledger`). Callers hold the
transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from certrecon.store import ledger
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
RETURNING certification_id, evidence::text
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
    """Insert certifications given column-wise (in the order of their digest columns);
    return the ids inserted now (an id already stored is left as it is)."""
    inserted = {r[0] for r in await conn.fetch(_INSERT_CERTIFICATIONS, *columns)}
    if len(inserted) < len(columns[0]):
        keep = [i for i, c in enumerate(columns[0]) if c in inserted]
        columns = [[col[i] for i in keep] for col in columns]
    await ledger.record_columns(conn, "certification", columns)
    return inserted


async def stored_digests(conn: Conn, certification_ids: Sequence[str]) -> dict[str, bytes]:
    """The SHA-256 of the stored bytes of each certification already received."""
    rows = await conn.fetch(_STORED_DIGESTS, list(certification_ids))
    return {r["certification_id"]: bytes(r["content_sha256"]) for r in rows}


async def insert_decisions(
    conn: Conn, columns: Sequence[Sequence[Any]], decided_at: dt.datetime
) -> None:
    """Insert decisions given column-wise: id, outcome, review reason, reason, rule, rule
    version, evidence (JSON text), roster version."""
    # The evidence is digested as the database stores it (jsonb's canonical text).
    returned = await conn.fetch(_INSERT_DECISIONS, *columns, decided_at)
    canonical = {r[0]: r[1] for r in returned}
    ids, outcome, review, reason, rule, version, _, roster = columns
    stored = [canonical[c] for c in ids]
    await ledger.record_columns(
        conn,
        "decision",
        [ids, outcome, review, reason, rule, version, stored, [decided_at] * len(ids), roster],
    )


async def insert_review_items(
    conn: Conn, items: Sequence[tuple[str, str]], queued_at: dt.datetime
) -> None:
    """Queue (certification_id, reason) pairs for staff review."""
    if items:
        ids, reasons = [c for c, _ in items], [r for _, r in items]
        await conn.execute(_INSERT_REVIEW_ITEMS, ids, reasons, queued_at)
        await ledger.record_columns(conn, "review_item", [ids, reasons, [queued_at] * len(ids)])


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
