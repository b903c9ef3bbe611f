"""Result revisions and the outbox rows that carry them to the ministry system; outbox
messages the broker refused for good."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from certrecon.audit.digest import TABLES, column_digests
from certrecon.results import ResultFields, ResultMessage
from certrecon.store import ledger
from certrecon.store.db import Conn

INSERT_OUTBOX = """
INSERT INTO outbox (message_id, kind, topic, key, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[])
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id
"""

# A result revision and its outbox row (message_id = result_id) are new together: result_id
# is unique in result, and a batch never holds one twice. Nothing to skip or read back, so
# both are written with COPY, which costs the client a fraction of unnest's array encoding.
# (COPY fires the tables' triggers and checks their constraints as INSERT does.)
# The published bytes are stored once, in the outbox row.
_RESULT_COLUMNS = (
    "certification_id",
    "revision",
    "result_id",
    "outcome",
    "reason",
    "decided_at",
    "decided_by",
    "note",
)
_OUTBOX_COLUMNS = ("message_id", "kind", "topic", "key", "payload")


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    message_id: str
    """Deterministic: a re-send carries the same identity."""
    kind: str
    topic: str
    key: bytes | None
    payload: bytes


@dataclass(frozen=True, slots=True)
class NewResult:
    """One result revision to record and publish."""

    fields: ResultFields
    key: bytes | None
    note: str | None = None

    def message(self) -> ResultMessage:
        """The result message; raises ``ValueError`` for a field that breaks the schema."""
        return self.fields.message()


@dataclass(frozen=True, slots=True)
class PreparedResult:
    """A result revision with its message encoded: what is stored and published."""

    result: NewResult
    result_id: str
    payload: bytes

    @property
    def message(self) -> ResultMessage:
        """The result as a model (built on demand: the hot path needs only the bytes)."""
        return self.result.message()


def prepare_result(result: NewResult) -> PreparedResult:
    """Encode ``result``; raises ``ValueError`` when it cannot be published as it is.

    Pure, so the worker encodes before it writes: a result that cannot be encoded fails
    its own record, not the batch's transaction.
    """
    rid, payload = result.fields.encode()
    # PostgreSQL's jsonb refuses \u0000, and the payload is stored as jsonb.
    if b"\\u0000" in payload:
        raise ValueError("the result message contains a NUL character")
    return PreparedResult(result, rid, payload)


async def enqueue(conn: Conn, messages: Sequence[OutboxMessage]) -> None:
    """Add messages to the outbox; a message_id already there is left as it is."""
    await enqueue_columns(
        conn,
        message_ids=[m.message_id for m in messages],
        kinds=[m.kind for m in messages],
        topics=[m.topic for m in messages],
        keys=[m.key for m in messages],
        payloads=[m.payload for m in messages],
    )


async def enqueue_columns(
    conn: Conn,
    *,
    message_ids: Sequence[str],
    kinds: Sequence[str],
    topics: Sequence[str],
    keys: Sequence[bytes | None],
    payloads: Sequence[bytes],
    digests: Sequence[bytes] | None = None,
) -> None:
    """:func:`enqueue` with the messages given column by column; records the ledger digests
    of the rows inserted (a message_id already there, or repeated, is inserted once).
    ``digests``: the rows' digests computed beforehand (:func:`outbox_digests`)."""
    if not message_ids:
        return
    columns: list[Sequence[Any]] = [message_ids, kinds, topics, keys, payloads]
    inserted = {r[0] for r in await conn.fetch(INSERT_OUTBOX, *columns)}
    if digests is None:
        digests = outbox_digests(columns)
    if len(inserted) < len(message_ids):
        keep = []
        for m in message_ids:
            keep.append(m in inserted)
            inserted.discard(m)
        columns = [[v for v, k in zip(c, keep, strict=True) if k] for c in columns]
        digests = [d for d, k in zip(digests, keep, strict=True) if k]
    await ledger.record_digests(conn, "outbox", columns[0], [None] * len(columns[0]), digests)


def outbox_digests(columns: Sequence[Sequence[Any]]) -> list[bytes]:
    """The ledger digests of outbox rows given column by column (message_id, kind, topic,
    key, payload)."""
    return column_digests(TABLES["outbox"], columns)


async def record_results(
    conn: Conn, results: Sequence[NewResult | PreparedResult], *, topic: str
) -> list[ResultMessage]:
    """Store result revisions and enqueue their messages, in the caller's transaction, and
    return the messages.

    The outbox row (message_id = result_id) keeps the bytes published, so a re-send after a
    crash is identical to the first send.
    """
    if not results:
        return []
    prepared = [r if isinstance(r, PreparedResult) else prepare_result(r) for r in results]
    await record_prepared(conn, prepared, topic=topic)
    return [p.result.message() for p in prepared]


async def record_prepared(conn: Conn, prepared: Sequence[PreparedResult], *, topic: str) -> None:
    """:func:`record_results` for results already encoded, without reading them back."""
    if not prepared:
        return
    fields = [p.result.fields for p in prepared]
    ids = [p.result_id for p in prepared]
    columns: list[list[Any]] = [
        [f.certification_id for f in fields],
        [f.revision for f in fields],
        ids,
        [f.outcome.value for f in fields],
        [f.reason for f in fields],
        [f.decided_at for f in fields],
        [f.decided_by for f in fields],
        [p.result.note for p in prepared],
    ]
    await conn.copy_records_to_table(
        "result", records=zip(*columns, strict=True), columns=_RESULT_COLUMNS
    )
    await ledger.record_columns(conn, "result", [*columns, [None] * len(ids)])
    messages: list[list[Any]] = [
        ids,
        ["result"] * len(ids),
        [topic] * len(ids),
        [p.result.key for p in prepared],
        [p.payload for p in prepared],
    ]
    await conn.copy_records_to_table(
        "outbox", records=zip(*messages, strict=True), columns=_OUTBOX_COLUMNS
    )
    await ledger.record_columns(conn, "outbox", messages)


_INSERT_FAILURES = """
INSERT INTO outbox_failure (message_id, reason, failed_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id, reason, failed_at
"""

MAX_FAILURE_REASON = 500
"""Characters of a refusal reason kept."""


@dataclass(frozen=True, slots=True)
class OutboxFailure:
    """An outbox message the broker refused for good; the relay does not offer it again."""

    message_id: str
    kind: str
    topic: str
    reason: str


async def record_outbox_failures(
    conn: Conn, failures: Sequence[OutboxFailure], *, at: dt.datetime
) -> None:
    """Record refused messages, in the caller's transaction (a fact added, nothing changed)."""
    if not failures:
        return
    inserted = await conn.fetch(
        _INSERT_FAILURES,
        [f.message_id for f in failures],
        [f.reason[:MAX_FAILURE_REASON] or "refused" for f in failures],
        [at] * len(failures),
    )
    await ledger.record_rows(conn, "outbox_failure", [tuple(r) for r in inserted])
