"""The relay's reads and writes: its cursor, the next messages, acknowledgements.

Outbox rows are never updated. The relay keeps one cursor row (``relay_cursor``): every
outbox row at or before its position ``(xid, id)`` was published. The next batch is read
from the index on ``(xid, id)`` past the cursor, so its cost does not grow with the rows
already sent. Only rows written by transactions older than the oldest one still running
(``pg_snapshot_xmin``) are read: a transaction that started earlier but commits later
would otherwise add a row behind the cursor, and sequence values alone commit out of
order. A broker acknowledgement is a row of ``outbox_ack``, inserted with the cursor move in
the relay's transaction. The relay locks the cursor row for the whole publish, so replicas
never publish concurrently; the others skip it (``SKIP LOCKED``) and wait.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from certrecon.store import ledger
from certrecon.store.db import Conn

CURSOR = "outbox"

_LOCK_CURSOR = """
SELECT last_xid::text AS last_xid, last_id FROM relay_cursor WHERE name = $1
FOR UPDATE SKIP LOCKED
"""

_NEXT = """
SELECT o.id, o.xid::text AS xid, o.message_id, o.kind, o.topic, o.key, o.payload,
       (EXISTS (SELECT 1 FROM outbox_ack a WHERE a.message_id = o.message_id)
        OR EXISTS (SELECT 1 FROM outbox_failure f WHERE f.message_id = o.message_id))
           AS settled
FROM outbox o
WHERE (o.xid, o.id) > ($1::text::xid8, $2::bigint)
  AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY o.xid, o.id
LIMIT $3
"""

_ADVANCE = """
UPDATE relay_cursor SET last_xid = $2::text::xid8, last_id = $3, updated_at = now()
WHERE name = $1
"""

# The first acknowledged result of a certification is its return; later revisions are
# corrections and do not move it. The CTE's insert is not visible to the NOT EXISTS, which
# therefore sees the acknowledgements recorded before this one. Every acknowledgement
# inserted is returned (for its ledger digest), with its certification's return if it is one.
_ACK = """
WITH acked AS (
    INSERT INTO outbox_ack (message_id, acked_at)
    SELECT unnest($1::text[]), $2
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
), returned AS (
    SELECT DISTINCT ON (r.certification_id)
           r.result_id, c.channel, r.outcome, $2 < d.deadline AS on_time
    FROM acked a
    JOIN result r ON r.result_id = a.message_id
    JOIN certification c ON c.certification_id = r.certification_id
    JOIN certification_deadline d ON d.certification_id = r.certification_id
    WHERE NOT EXISTS (
        SELECT 1 FROM result e JOIN outbox_ack k ON k.message_id = e.result_id
        WHERE e.certification_id = r.certification_id
    )
    ORDER BY r.certification_id, r.revision
)
SELECT a.message_id, t.channel, t.outcome, t.on_time
FROM acked a LEFT JOIN returned t ON t.result_id = a.message_id
"""


@dataclass(frozen=True, slots=True)
class Position:
    xid: str
    id: int


@dataclass(frozen=True, slots=True)
class Pending:
    """One outbox row past the cursor."""

    position: Position
    message_id: str
    kind: str
    topic: str
    key: bytes | None
    payload: bytes
    settled: bool
    """Acknowledged or refused already (before the cursor existed, or in a round a transient
    error cut short): skipped, the cursor passes."""


async def lock_cursor(conn: Conn) -> Position | None:
    """The relay cursor, locked until the caller's transaction ends; None when another
    relay holds it."""
    row = await conn.fetchrow(_LOCK_CURSOR, CURSOR)
    return None if row is None else Position(row["last_xid"], row["last_id"])


async def next_batch(conn: Conn, after: Position, limit: int) -> list[Pending]:
    rows = await conn.fetch(_NEXT, after.xid, after.id, limit)
    # By position, in the query's column order; bytea arrives as bytes already.
    return [
        Pending(Position(xid, id_), message_id, kind, topic, key, payload, settled)
        for id_, xid, message_id, kind, topic, key, payload, settled in rows
    ]


async def record_acks(
    conn: Conn, message_ids: Sequence[str], acked_at: dt.datetime
) -> list[tuple[str, str, bool]]:
    """Record acknowledgements; return (channel, outcome, on time) of each certification
    whose first result this acknowledged."""
    if not message_ids:
        return []
    rows = await conn.fetch(_ACK, list(message_ids), acked_at)
    acked = [r["message_id"] for r in rows]
    await ledger.record_columns(conn, "outbox_ack", [acked, [acked_at] * len(acked)])
    return [
        (r["channel"], r["outcome"], bool(r["on_time"])) for r in rows if r["channel"] is not None
    ]


async def advance(conn: Conn, to: Position) -> None:
    await conn.execute(_ADVANCE, CURSOR, to.xid, to.id)
