"""Result revisions and the outbox rows that carry them to the ministry system."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from certrecon.domain import Channel, Outcome
from certrecon.results import ResultMessage
from certrecon.store.db import Conn

INSERT_OUTBOX = """
INSERT INTO outbox (message_id, kind, topic, key, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[])
ON CONFLICT (message_id) DO NOTHING
"""

_INSERT_RESULTS = """
INSERT INTO result (
    certification_id, revision, result_id, outcome, reason, decided_at, decided_by, note,
    payload)
SELECT c, v, i, o, r, d, b, n, p::jsonb
FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
            $7::text[], $8::text[], $9::text[]) AS t(c, v, i, o, r, d, b, n, p)
"""


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

    certification_id: str
    revision: int
    channel: Channel
    id_number: str
    outcome: Outcome
    reason: str
    certified_at_raw: str
    due_date: dt.date
    decided_at: dt.datetime
    decided_by: str
    """``rules`` or ``staff:<operator id>``."""
    key: bytes | None
    note: str | None = None

    def message(self) -> ResultMessage:
        return ResultMessage.build(
            certification_id=self.certification_id,
            revision=self.revision,
            channel=self.channel,
            id_number=self.id_number,
            outcome=self.outcome,
            reason=self.reason,
            certified_at=self.certified_at_raw,
            due_date=self.due_date,
            decided_at=self.decided_at,
            decided_by=self.decided_by,
        )


async def enqueue(conn: Conn, messages: Sequence[OutboxMessage]) -> None:
    """Add messages to the outbox; a message_id already there is left as it is."""
    if not messages:
        return
    await conn.execute(
        INSERT_OUTBOX,
        [m.message_id for m in messages],
        [m.kind for m in messages],
        [m.topic for m in messages],
        [m.key for m in messages],
        [m.payload for m in messages],
    )


async def record_results(
    conn: Conn, results: Sequence[NewResult], *, topic: str
) -> list[ResultMessage]:
    """Store result revisions and enqueue their messages, in the caller's transaction.

    The stored payload is byte-for-byte what is published, so a re-send after a crash is
    identical to the first send.
    """
    if not results:
        return []
    messages = [r.message() for r in results]
    payloads = [m.to_bytes() for m in messages]
    columns: list[list[Any]] = [
        [r.certification_id for r in results],
        [r.revision for r in results],
        [m.result_id for m in messages],
        [r.outcome.value for r in results],
        [r.reason for r in results],
        [r.decided_at for r in results],
        [r.decided_by for r in results],
        [r.note for r in results],
        [p.decode("utf-8") for p in payloads],
    ]
    await conn.execute(_INSERT_RESULTS, *columns)
    await enqueue(
        conn,
        [
            OutboxMessage(m.result_id, "result", topic, r.key, p)
            for r, m, p in zip(results, messages, payloads, strict=True)
        ],
    )
    return messages
