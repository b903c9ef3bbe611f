"""Reads for the audit: the chain's links, rows that differ from their digests, the head,
and one certification's whole story. Callers hold one read-only REPEATABLE READ
transaction, so every read sees the same committed state."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from certrecon.audit.chain import Checkpoint, Link, Problem
from certrecon.audit.digest import TableDigest
from certrecon.sla import ALERT_LEVELS, alert_id
from certrecon.store.db import Conn

# Each link with its rows' count and digest computed again from ledger_entry.
_LINKS = """
SELECT l.seq, l.kind, l.committed_at, l.entries, l.prev_sha256, l.entries_sha256, l.body,
       l.sha256, r.n, r.digest
FROM ledger_link l
LEFT JOIN LATERAL (
    SELECT count(*) AS n,
           sha256(COALESCE(string_agg(d, ''::bytea ORDER BY d), ''::bytea)) AS digest
    FROM ledger_entry e, unnest(e.digests) AS d
    WHERE e.xid = l.xid
) r ON true
ORDER BY l.seq
"""

_HEAD = """
SELECT seq, sha256, committed_at, (SELECT sum(entries) FROM ledger_link) AS total
FROM ledger_link ORDER BY seq DESC LIMIT 1
"""

_UNSEALED = """
SELECT e.table_name, k.key, k.certification_id
FROM ledger_entry e, unnest(e.keys, e.certification_ids) AS k(key, certification_id)
WHERE NOT EXISTS (SELECT 1 FROM ledger_link l WHERE l.xid = e.xid)
LIMIT $1
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def count_links(conn: asyncpg.Connection) -> tuple[int, int]:
    """(links, rows they cover)."""
    row = await conn.fetchrow("SELECT count(*), COALESCE(sum(entries), 0) FROM ledger_link")
    assert row is not None
    return int(row[0]), int(row[1])


async def links(conn: asyncpg.Connection, prefetch: int = 500) -> AsyncIterator[Link]:
    """Every link in ``seq`` order, streamed through a server-side cursor."""
    async for r in conn.cursor(_LINKS, prefetch=prefetch):
        yield Link(
            seq=r["seq"],
            kind=r["kind"],
            committed_at=r["committed_at"],
            entries=r["entries"],
            prev_sha256=bytes(r["prev_sha256"]),
            entries_sha256=bytes(r["entries_sha256"]),
            body=bytes(r["body"]),
            sha256=bytes(r["sha256"]),
            recomputed_entries=r["n"],
            recomputed_entries_sha256=bytes(r["digest"]),
        )


async def ledger_tables(conn: asyncpg.Connection) -> list[str]:
    """The chained ledger tables, by name."""
    rows = await conn.fetch("SELECT table_name FROM ledger_table WHERE chained ORDER BY 1")
    return [r[0] for r in rows]


def row_bytes_sql(table: TableDigest, alias: str) -> str:
    """SQL for ``record_send(ROW(...))`` of a row's digest columns over ``alias``, the
    optional trailing columns only up to the last not NULL (as ``ledger_row_bytes_sql``)."""
    names = table.column_names
    required = len(names) - table.optional

    def row(width: int) -> str:
        return "record_send(ROW(" + ", ".join(f"{alias}.{_ident(c)}" for c in names[:width]) + "))"

    expr = row(len(names))
    for width in range(len(names) - 1, required - 1, -1):
        nulls = " AND ".join(f"{alias}.{_ident(c)} IS NULL" for c in names[width:])
        expr = f"CASE WHEN {nulls} THEN {row(width)} ELSE {expr} END"
    return expr


def rows_query(table: TableDigest, part: int = 0, parts: int = 1, *, format_1: bool = False) -> str:
    """Every row of ``table`` beside the digest recorded for it (a full join by key, so a
    row without a recorded digest and a recorded digest without its row both appear):
    seq, key, certification_id, recorded digest, format, what to hash (``record_send`` of
    the digest columns, format 2) or the database's format 1 digest (rows recorded before
    format 2), and the row's own key and certification_id when no digest names it.

    With ``parts`` > 1, only the keys whose hash falls in ``part``: the parts of a table
    can be read on several connections at once. ``format_1``: the table has rows recorded
    before format 2 (each row then travels whole through the join, to be digested the old
    way when its entry says so).

    The recorded digests are the join's hash table and the rows stream past it, each
    encoded as it goes: hashing the rows instead would hold every row's columns in memory
    (half a gigabyte for a million certifications, spilled to disk). The planner prefers
    the table's side because its key has statistics and the unnested keys have none, so
    the table's key is joined as an expression (no statistics either), and merge joins are
    off while verifying (:func:`prepare_reading`: they would sort the rows instead).
    """
    k = _ident(table.key)
    cert = f"r.{_ident(table.certification)}" if table.certification else "NULL::text"
    sent = row_bytes_sql(table, "r")
    old = "ledger_digest($1, to_jsonb(t.whole))" if format_1 else "NULL::bytea"
    whole = ", r AS whole" if format_1 else ""
    if parts > 1:
        mine = f"(hashtext({{}}) & 2147483647) % {int(parts)} = {int(part)}"
        row_filter = "WHERE " + mine.format(f"r.{k}::text")
        entry_filter = "AND " + mine.format("k.key")
    else:
        row_filter = entry_filter = ""
    return f"""
        SELECT e.seq, e.key, e.certification_id, e.digest, e.format,
               CASE WHEN e.format = 1 THEN {old} END AS old_digest,
               CASE WHEN e.format IS DISTINCT FROM 1 THEN t.sent END AS sent,
               CASE WHEN e.key IS NULL THEN t.row_key END AS row_key,
               CASE WHEN e.key IS NULL THEN t.row_certification_id END
                   AS row_certification_id
        FROM (SELECT l.seq, k.key, k.certification_id, k.digest, e.format
              FROM ledger_entry e
              LEFT JOIN ledger_link l ON l.xid = e.xid
              CROSS JOIN LATERAL unnest(e.keys, e.certification_ids, e.digests)
                  AS k(key, certification_id, digest)
              WHERE e.table_name = $1 {entry_filter}) e
        FULL JOIN (SELECT r.{k}::text || '' AS row_key, {cert} AS row_certification_id,
                          {sent} AS sent{whole}
                   FROM {_ident(table.name)} r {row_filter}) t
            ON t.row_key = e.key
    """  # noqa: S608 - identifiers quoted; they come from the digest definition


async def table_rows(
    conn: asyncpg.Connection,
    table: TableDigest,
    part: int = 0,
    parts: int = 1,
    prefetch: int = 5000,
) -> AsyncIterator[list[asyncpg.Record]]:
    """:func:`rows_query`'s rows in chunks, streamed through a server-side cursor (in the
    caller's transaction)."""
    format_1 = bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM ledger_entry WHERE table_name = $1 AND format = 1)",
            table.name,
        )
    )
    query = rows_query(table, part, parts, format_1=format_1)
    cursor = await conn.cursor(query, table.name)
    while chunk := await cursor.fetch(prefetch):
        yield chunk


async def prepare_reading(conn: asyncpg.Connection) -> None:
    """Inside the caller's transaction: format 1 digests are computed with TimeZone UTC, as
    the database computed them; the joins get memory to hash the recorded digests in, and
    hash them rather than sort the rows (see :func:`rows_query`)."""
    await conn.execute("SET LOCAL timezone = 'UTC'")
    await conn.execute("SET LOCAL work_mem = '256MB'")
    await conn.execute("SET LOCAL enable_mergejoin = off")


async def export_snapshot(conn: asyncpg.Connection) -> str:
    """The snapshot of the caller's REPEATABLE READ transaction, for other connections."""
    return str(await conn.fetchval("SELECT pg_export_snapshot()"))


async def join_snapshot(conn: asyncpg.Connection, snapshot: str) -> None:
    """As the first statement of a REPEATABLE READ transaction: see exactly ``snapshot``."""
    await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot.replace(chr(39), '')}'")


async def table_entry_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows recorded per table (for progress)."""
    rows = await conn.fetch(
        "SELECT table_name, sum(cardinality(keys))::bigint FROM ledger_entry GROUP BY 1"
    )
    return {r[0]: int(r[1]) for r in rows}


async def unsealed_entries(conn: asyncpg.Connection, limit: int = 100) -> list[Problem]:
    """Recorded digests whose transaction has no link (forged, or sealed out of turn)."""
    return [
        Problem(None, r["table_name"], r["certification_id"], r["key"], "digest not in any link")
        for r in await conn.fetch(_UNSEALED, limit)
    ]


async def head(conn: Conn, now: dt.datetime) -> Checkpoint:
    """The current head (seq 0 and an all-zero hash for an empty ledger)."""
    row = await conn.fetchrow(_HEAD)
    if row is None:
        return Checkpoint(0, bytes(32).hex(), 0, now)
    return Checkpoint(row["seq"], bytes(row["sha256"]).hex(), int(row["total"]), now)


async def links_covering(
    conn: asyncpg.Connection, table: str, keys: list[str]
) -> dict[str, tuple[int, dt.datetime]]:
    """key → (link seq, committed at) for rows of one table."""
    rows = await conn.fetch(
        """
        SELECT k.key, l.seq, l.committed_at
        FROM ledger_entry e, unnest(e.keys) AS k(key), ledger_link l
        WHERE e.table_name = $1 AND l.xid = e.xid AND k.key = ANY($2::text[])
        """,
        table,
        keys,
    )
    return {r["key"]: (r["seq"], r["committed_at"]) for r in rows}


async def story(conn: asyncpg.Connection, certification_id: str) -> dict[str, Any] | None:
    """Everything recorded about one certification, oldest first; None when unknown."""
    c = await conn.fetchrow(
        """
        SELECT certification_id, channel, topic, kafka_partition, kafka_offset, valid,
               certified_at_raw, local_date, due_date, deadline, provisional,
               content_sha256, sha256(raw) AS raw_sha256, received_at
        FROM certification WHERE certification_id = $1
        """,
        certification_id,
    )
    if c is None:
        return None
    decision = await conn.fetchrow(
        """
        SELECT outcome, review_reason, reason, rule, rule_version, roster_version, evidence,
               decided_at
        FROM decision WHERE certification_id = $1
        """,
        certification_id,
    )
    results = await conn.fetch(
        """
        SELECT r.result_id, r.revision, r.outcome, r.reason, r.decided_by, r.decided_at,
               r.note, a.acked_at, sha256(o.payload) AS payload_sha256
        FROM result r
        LEFT JOIN outbox o ON o.message_id = r.result_id
        LEFT JOIN outbox_ack a ON a.message_id = r.result_id
        WHERE r.certification_id = $1 ORDER BY r.revision
        """,
        certification_id,
    )
    review = await conn.fetchrow(
        "SELECT reason, queued_at FROM review_item WHERE certification_id = $1",
        certification_id,
    )
    staff = await conn.fetch(
        """
        SELECT id, outcome, decided_by, login, note, decided_at, result_id
        FROM staff_decision WHERE certification_id = $1 ORDER BY id
        """,
        certification_id,
    )
    deadlines = await conn.fetch(
        """
        SELECT id, due_date, deadline, provisional, recorded_at
        FROM deadline_revision WHERE certification_id = $1 ORDER BY id
        """,
        certification_id,
    )
    alerts = await conn.fetch(
        """
        SELECT alert_id, level, due_date, working_days_left, provisional, raised_at
        FROM sla_alert WHERE alert_id = ANY ($2::text[]) AND certification_id = $1
        ORDER BY raised_at, alert_id
        """,
        certification_id,
        [alert_id(certification_id, level) for level in ALERT_LEVELS],
    )
    cert_link = await links_covering(conn, "certification", [certification_id])
    result_links = await links_covering(conn, "result", [r["result_id"] for r in results])
    return {
        "certification_id": c["certification_id"],
        "inbound": {
            "channel": c["channel"],
            "topic": c["topic"],
            "partition": c["kafka_partition"],
            "offset": c["kafka_offset"],
            "received_at": c["received_at"],
            "certified_at": c["certified_at_raw"],
            "bytes_sha256": bytes(c["raw_sha256"]).hex(),
            "bytes_sha256_recorded": bytes(c["content_sha256"]).hex(),
            "link": cert_link.get(certification_id, (None, None))[0],
        },
        "validation": {
            "valid": c["valid"],
            "errors": None if c["valid"] or decision is None else decision["reason"],
        },
        "deadline": {
            "local_date": c["local_date"],
            "due_date": c["due_date"],
            "deadline": c["deadline"],
            "provisional": c["provisional"],
            "revisions": [dict(r) for r in deadlines],
        },
        "decision": None if decision is None else dict(decision),
        "results": [
            {
                **{k: v for k, v in dict(r).items() if k != "payload_sha256"},
                "payload_sha256": bytes(r["payload_sha256"]).hex()
                if r["payload_sha256"] is not None
                else None,
                "link": result_links.get(r["result_id"], (None, None))[0],
            }
            for r in results
        ],
        "review": None if review is None else dict(review),
        "staff_decisions": [dict(r) for r in staff],
        "alerts": [dict(r) for r in alerts],
    }


CHECKPOINT_PREFIX = "audit-checkpoint:"
"""message_id of a checkpoint message: the prefix and the seq it names."""

# The newest links, each with whether it holds anything but checkpoint messages and their
# acknowledgements (which are not movement of the ledger for the next checkpoint).
_RECENT_CONTENT = """
SELECT l.seq,
       EXISTS (SELECT 1 FROM ledger_entry e, unnest(e.keys) AS k(key)
               WHERE e.xid = l.xid
                 AND NOT (e.table_name IN ('outbox', 'outbox_ack')
                          AND starts_with(k.key, $2))) AS content
FROM ledger_link l ORDER BY l.seq DESC LIMIT $1
"""


async def latest_content_seq(conn: Conn, lookback: int = 20) -> int | None:
    """The newest link that records more than checkpoint messages, among the last
    ``lookback`` links (None when none of them does)."""
    for r in await conn.fetch(_RECENT_CONTENT, lookback, CHECKPOINT_PREFIX):
        if r["content"]:
            return int(r["seq"])
    return None
