"""One batch from ``getmany`` → one PostgreSQL transaction.

``prepare_batch`` decodes, validates and decides, reading only the roster.
``commit_batch`` then writes, in one transaction: the certifications (a certification_id
already stored is ignored), the decisions, the result and dead-letter rows of the outbox,
the review queue rows and the next offset of every topic-partition in the batch. Either
all of a batch's effects exist or none do, so a crash at any point replays the batch with
the same outcome.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from certrecon.calendar import Deadline, WorkingCalendar, compute_deadline
from certrecon.consumers.dead_letter import dead_letter_id, dead_letter_payload
from certrecon.consumers.decode import Invalid, Valid, decode
from certrecon.domain import Certification, Channel, Cycle, Decision, Outcome
from certrecon.reconcile import RULE_VERSION, decide
from certrecon.store.db import Conn
from certrecon.store.results import NewResult, OutboxMessage, enqueue, record_results
from certrecon.store.roster import fetch_roster


@dataclass(frozen=True, slots=True)
class Inbound:
    """One consumed record, as the broker delivered it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    epoch: int = 0
    """The consumer's positioning epoch when the record was fetched (see the worker)."""


@dataclass(slots=True)
class BatchReport:
    """What one batch did, for logs and metrics."""

    consumed: int = 0
    consumed_by_channel: dict[str, int] = field(default_factory=dict)
    decided: dict[tuple[str, str], int] = field(default_factory=dict)
    """(channel, outcome or "review") → count, new certifications only."""
    duplicates: int = 0
    rejected: list[DeadLetter] = field(default_factory=list)
    queued_for_review: list[tuple[str, str]] = field(default_factory=list)
    """(certification_id, review reason) of certifications that now wait for staff."""
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    topic_channels: Mapping[str, Channel]
    region_prefix: str
    result_topic: str
    dead_letter_topic: str
    group_id: str
    working_days: int
    max_skew: dt.timedelta


@dataclass(slots=True)
class _Row:
    """A certification to insert, with everything that follows from it."""

    record: Inbound
    certification_id: str
    channel: Channel
    id_number: str | None
    valid: bool
    certified_at: dt.datetime | None
    certified_at_raw: str | None
    due: Deadline
    sha: bytes
    certification: Certification | None = None
    decision: Decision | None = None


def _received_at(record: Inbound) -> dt.datetime:
    return dt.datetime.fromtimestamp(record.timestamp_ms / 1000, tz=dt.UTC)


MAX_DEAD_LETTER_VALUE = 256 * 1024
"""Original bytes carried in one dead letter; well under Kafka's default 1 MB message."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An inbound record that could not be decoded, validated or accepted."""

    record: Inbound
    errors: tuple[str, ...]
    certification_id: str | None = None

    def message(self, config: PipelineConfig) -> OutboxMessage:
        r = self.record
        value, errors = r.value, list(self.errors)
        if value is not None and len(value) > MAX_DEAD_LETTER_VALUE:
            # Base64 grows it by a third: a near-limit message would make a dead letter the
            # broker refuses, and the relay would retry it forever. The source position and
            # the digest lead back to the original, which the source topic keeps.
            errors.append(
                f"message: value of {len(value)} bytes cut to its first "
                f"{MAX_DEAD_LETTER_VALUE} here; sha256 {hashlib.sha256(value).hexdigest()}"
            )
            value = value[:MAX_DEAD_LETTER_VALUE]
        payload = dead_letter_payload(
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            timestamp_ms=r.timestamp_ms,
            key=r.key,
            value=value,
            errors=errors,
            certification_id=self.certification_id,
        )
        return OutboxMessage(
            dead_letter_id(r.topic, r.partition, r.offset),
            "dead_letter",
            config.dead_letter_topic,
            r.key,
            payload,
        )


def _classify(
    records: Sequence[Inbound],
    config: PipelineConfig,
    calendar: WorkingCalendar,
    now: dt.datetime,
) -> tuple[list[_Row], list[DeadLetter]]:
    """Decode every record; return certifications to insert and dead letters to publish."""
    rows: list[_Row] = []
    dead: list[DeadLetter] = []
    for record in records:
        channel = config.topic_channels[record.topic]
        decoded = decode(
            record.value,
            topic=record.topic,
            channel=channel,
            received_at=now,
            max_skew=config.max_skew,
        )
        sha = hashlib.sha256(record.value or b"").digest()
        if isinstance(decoded, Valid):
            cert = decoded.certification
            deadline = compute_deadline(cert.certified_at, calendar, config.working_days)
            rows.append(
                _Row(
                    record=record,
                    certification_id=cert.certification_id,
                    channel=channel,
                    id_number=cert.id_number,
                    valid=True,
                    certified_at=cert.certified_at,
                    certified_at_raw=cert.certified_at_raw,
                    due=deadline,
                    sha=sha,
                    certification=cert,
                )
            )
            continue
        assert isinstance(decoded, Invalid)
        dead.append(DeadLetter(record, tuple(decoded.errors), decoded.certification_id))
        if decoded.certification_id is None:
            continue
        # The deadline of an invalid record runs from its certification time when that part
        # was readable, else from when the broker received it.
        basis = decoded.certified_at or _received_at(record)
        deadline = compute_deadline(basis, calendar, config.working_days)
        rows.append(
            _Row(
                record=record,
                certification_id=decoded.certification_id,
                channel=channel,
                id_number=decoded.id_number or decoded.id_number_as_sent,
                valid=False,
                certified_at=decoded.certified_at,
                certified_at_raw=decoded.certified_at_raw,
                due=deadline,
                sha=sha,
                decision=Decision(
                    outcome=Outcome.INVALID_RECORD,
                    reason="; ".join(decoded.errors),
                    rule="validation",
                    rule_version=RULE_VERSION,
                ),
            )
        )
    return rows, dead


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

_INSERT_DECISIONS = """
INSERT INTO decision (
    certification_id, outcome, review_reason, reason, rule, rule_version, evidence, decided_at)
SELECT c, o, r, re, ru, v, e::jsonb, $8
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
    AS t(c, o, r, re, ru, v, e)
"""

_INSERT_REVIEWS = """
INSERT INTO review_queue (certification_id, reason, queued_at)
SELECT c, r, $3 FROM unnest($1::text[], $2::text[]) AS t(c, r)
"""

_UPSERT_OFFSETS = """
INSERT INTO consumer_offset (group_id, topic, kafka_partition, next_offset, updated_at)
SELECT $1, t, p, o, now() FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, o)
ON CONFLICT (group_id, topic, kafka_partition) DO UPDATE
    SET next_offset = GREATEST(consumer_offset.next_offset, EXCLUDED.next_offset),
        updated_at = now()
"""


def _dedupe(rows: list[_Row]) -> tuple[list[_Row], list[_Row]]:
    """Split into the first occurrence of each certification_id and the later ones."""
    first: dict[str, _Row] = {}
    later: list[_Row] = []
    for row in rows:
        if row.certification_id in first:
            later.append(row)
        else:
            first[row.certification_id] = row
    return list(first.values()), later


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A decoded and decided batch, not yet written.

    Preparing needs only reads (the roster), so the next batch can be prepared while the
    previous one is being written.
    """

    records: list[Inbound]
    rows: list[_Row]
    dead: list[DeadLetter]
    decided_at: dt.datetime


async def prepare_batch(
    conn: Conn,
    records: Sequence[Inbound],
    *,
    config: PipelineConfig,
    calendar: WorkingCalendar,
    now: dt.datetime,
) -> PreparedBatch:
    """Decode, validate and decide every record against the roster as it is now."""
    rows, dead = _classify(records, config, calendar, now)
    wanted = sorted({r.id_number for r in rows if r.certification is not None and r.id_number})
    roster = await fetch_roster(conn, wanted) if wanted else {}
    for row in rows:
        if row.certification is not None:
            cert = row.certification
            row.decision = decide(
                cert,
                roster.get(cert.id_number),
                Cycle.of(cert),
                region_prefix=config.region_prefix,
            )
    return PreparedBatch(list(records), rows, dead, now)


def _keep_all(record: Inbound) -> bool:
    return True


async def commit_batch(
    conn: Conn,
    batch: PreparedBatch,
    *,
    config: PipelineConfig,
    keep: Callable[[Inbound], bool] = _keep_all,
) -> BatchReport:
    """Write the effects of the kept records, with their next offsets, in one transaction.

    ``keep`` drops records this worker may no longer write (a partition revoked or
    re-positioned since the batch was fetched); their offsets are not stored either.
    """
    records = [r for r in batch.records if keep(r)]
    report = BatchReport(consumed=len(records))
    if not records:
        return report
    for record in records:
        channel = config.topic_channels[record.topic].value
        report.consumed_by_channel[channel] = report.consumed_by_channel.get(channel, 0) + 1
    dead = [d for d in batch.dead if keep(d.record)]
    unique, repeated = _dedupe([r for r in batch.rows if keep(r.record)])
    now = batch.decided_at

    async with conn.transaction():
        inserted = {
            rec["certification_id"]
            for rec in await conn.fetch(_INSERT_CERTIFICATIONS, *_certification_columns(unique))
        }
        # A certification_id seen before: a redelivery with the same bytes is ignored; the
        # same id with other content is dead-lettered, because the first result stands.
        already = [r for r in unique if r.certification_id not in inserted] + repeated
        if already:
            stored = {
                rec["certification_id"]: bytes(rec["content_sha256"])
                for rec in await conn.fetch(
                    "SELECT certification_id, content_sha256 FROM certification"
                    " WHERE certification_id = ANY($1::text[])",
                    [r.certification_id for r in already],
                )
            }
            for row in already:
                report.duplicates += 1
                if stored.get(row.certification_id) != row.sha:
                    problem = (
                        f"certification_id {row.certification_id} was already received "
                        "with different content; the first one stands"
                    )
                    dead.append(DeadLetter(row.record, (problem,), row.certification_id))
        fresh = [r for r in unique if r.certification_id in inserted]
        await _write_decisions(conn, fresh, config, now, report)
        await enqueue(conn, [d.message(config) for d in dead])
        report.rejected = dead
        report.next_offsets = _next_offsets(records)
        await conn.execute(
            _UPSERT_OFFSETS,
            config.group_id,
            [t for t, _ in report.next_offsets],
            [p for _, p in report.next_offsets],
            list(report.next_offsets.values()),
        )
    return report


def _certification_columns(rows: Sequence[_Row]) -> list[list[Any]]:
    return [
        [r.certification_id for r in rows],
        [r.channel.value for r in rows],
        [r.record.topic for r in rows],
        [r.record.partition for r in rows],
        [r.record.offset for r in rows],
        [r.id_number for r in rows],
        [r.valid for r in rows],
        [r.certified_at for r in rows],
        [r.certified_at_raw for r in rows],
        [r.due.local_date for r in rows],
        [r.due.due_date for r in rows],
        [r.due.deadline for r in rows],
        [r.due.provisional for r in rows],
        [r.sha for r in rows],
        [r.record.value or b"" for r in rows],
        [_received_at(r.record) for r in rows],
    ]


def _next_offsets(records: Sequence[Inbound]) -> dict[tuple[str, int], int]:
    nxt: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        nxt[key] = max(nxt.get(key, 0), r.offset + 1)
    return nxt


async def _write_decisions(
    conn: Conn,
    rows: Sequence[_Row],
    config: PipelineConfig,
    now: dt.datetime,
    report: BatchReport,
) -> None:
    decisions: list[tuple[_Row, Decision]] = [(r, r.decision) for r in rows if r.decision]
    if not decisions:
        return
    await conn.execute(
        _INSERT_DECISIONS,
        [r.certification_id for r, _ in decisions],
        [d.outcome.value if d.outcome else None for _, d in decisions],
        [d.review.value if d.review else None for _, d in decisions],
        [d.reason for _, d in decisions],
        [d.rule for _, d in decisions],
        [d.rule_version for _, d in decisions],
        [json.dumps(dict(d.evidence), ensure_ascii=False, default=str) for _, d in decisions],
        now,
    )
    answered = [(r, d) for r, d in decisions if d.outcome is not None]
    reviews = [(r, d) for r, d in decisions if d.review is not None]
    for r, d in decisions:
        label = d.outcome.value if d.outcome else "review"
        report.decided[(r.channel.value, label)] = (
            report.decided.get((r.channel.value, label), 0) + 1
        )
    report.queued_for_review = [
        (r.certification_id, d.review.value) for r, d in reviews if d.review is not None
    ]
    if reviews:
        await conn.execute(
            _INSERT_REVIEWS,
            [r.certification_id for r, _ in reviews],
            [d.review.value for _, d in reviews if d.review],
            now,
        )
    await record_results(
        conn,
        [
            NewResult(
                certification_id=r.certification_id,
                revision=1,
                channel=r.channel,
                id_number=r.id_number or "",
                outcome=d.outcome,
                reason=d.reason,
                certified_at_raw=r.certified_at_raw or "",
                due_date=r.due.due_date,
                decided_at=now,
                decided_by="rules",
                key=r.id_number.encode() if r.id_number else r.record.key,
            )
            for r, d in answered
            if d.outcome is not None
        ],
        topic=config.result_topic,
    )


__all__ = [
    "BatchReport",
    "Inbound",
    "PipelineConfig",
    "PreparedBatch",
    "commit_batch",
    "prepare_batch",
]
