"""The peer baseline: certrecon's job written the way FastStream's documentation shows a
Kafka + PostgreSQL service, for ``bench/throughput.py`` to compare against.

    pip install -c requirements/constraints.txt -r bench/requirements.txt
    python bench/peer_faststream.py CONFIG_JSON     (bench/throughput.py starts it)

Framing as a FastStream user builds it:

- one ``@broker.subscriber`` handler per channel topic, called once per message
  (``KafkaBroker`` over aiokafka), ``AckPolicy.ACK``: the offset is committed after the
  handler returned, so a crash re-delivers instead of losing a message;
- one PostgreSQL transaction per message on a pooled SQLAlchemy ``AsyncEngine`` over asyncpg
  (the engine faststream-outbox needs; asyncpg prepares each statement once per
  connection), writing the same rows as certrecon: certification, decision, result
  (or review item), and the result's outbox row;
- the transactional outbox of ``faststream-outbox``: ``OutboxBroker.publish(...,
  session=conn)`` inside the handler's transaction, relayed to Kafka by an outbox subscriber
  stacked with a Kafka publisher (the package's documented relay), tuned as its performance
  notes advise for idempotent handlers (batched fetches and terminal deletes, several
  relay workers);
- per-message access logs at DEBUG (filtered), errors still logged.

The per-message work is certrecon's own code: ``decode`` (pydantic, ID checks),
``compute_deadline``, ``decide`` and ``ResultMessage``; only the framing differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from certrecon.calendar import WorkingCalendar, compute_deadline, default_calendar
from certrecon.consumers.dead_letter import dead_letter_id, dead_letter_payload
from certrecon.consumers.decode import Invalid, Valid, decode
from certrecon.domain import Certification, Channel, Cycle, Outcome, RosterRecord, RosterStatus
from certrecon.reconcile import RULE_VERSION, decide
from certrecon.results import DECIDED_BY_RULES, ResultMessage

# Handler annotations are resolved from this module's globals when FastStream wires a
# handler, so these must be imported here; serve() checks the install first.
with contextlib.suppress(ImportError):
    from faststream.kafka import KafkaResponse

INSTALL_HINT = (
    "the peer baseline needs FastStream and faststream-outbox: "
    "pip install -c requirements/constraints.txt -r bench/requirements.txt"
)
READY = "peer started"
"""Printed once every subscriber has started: the benchmark's clock starts there.

FastStream starts its subscribers one after the other, each waiting for its group to
settle, so the first ones work for several seconds before the last one starts: the
benchmark counts only the results that come out after this line."""

RESULT_QUEUE = "results"
DEAD_LETTER_QUEUE = "dead_letters"

SCHEMA = """
CREATE TABLE roster (
    id_number        text PRIMARY KEY,
    name             text NOT NULL,
    benefit_type     text NOT NULL,
    status           text NOT NULL,
    first_paid_on    date,
    deceased_on      date,
    imprisoned_from  date,
    imprisoned_until date,
    insured_region   text
);
CREATE TABLE certification (
    certification_id text PRIMARY KEY,
    channel          text NOT NULL,
    topic            text NOT NULL,
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    id_number        text,
    valid            boolean NOT NULL,
    certified_at     timestamptz,
    certified_at_raw text,
    local_date       date NOT NULL,
    due_date         date NOT NULL,
    deadline         timestamptz NOT NULL,
    provisional      boolean NOT NULL,
    content_sha256   bytea NOT NULL,
    raw              bytea NOT NULL,
    received_at      timestamptz NOT NULL
);
CREATE TABLE decision (
    certification_id text PRIMARY KEY REFERENCES certification,
    outcome          text,
    review_reason    text,
    reason           text NOT NULL,
    rule             text NOT NULL,
    rule_version     text NOT NULL,
    evidence         jsonb NOT NULL,
    decided_at       timestamptz NOT NULL
);
CREATE TABLE result (
    certification_id text NOT NULL REFERENCES certification,
    revision         integer NOT NULL,
    result_id        text NOT NULL UNIQUE,
    outcome          text NOT NULL,
    reason           text NOT NULL,
    decided_at       timestamptz NOT NULL,
    decided_by       text NOT NULL,
    payload          jsonb NOT NULL,
    PRIMARY KEY (certification_id, revision)
);
CREATE TABLE review_queue (
    certification_id text PRIMARY KEY REFERENCES certification,
    reason           text NOT NULL,
    queued_at        timestamptz NOT NULL
);
"""

_ROSTER_COLUMNS = (
    "id_number",
    "name",
    "benefit_type",
    "status",
    "first_paid_on",
    "deceased_on",
    "imprisoned_from",
    "imprisoned_until",
    "insured_region",
)


@dataclass(frozen=True)
class PeerConfig:
    """What ``bench/throughput.py`` hands the peer process (as JSON)."""

    dsn: str
    """An asyncpg DSN (``postgresql://...``)."""
    bootstrap: str
    topic_channels: dict[str, str]
    result_topic: str
    dead_letter_topic: str
    group_id: str
    region_prefix: str
    working_days: int = 5
    max_skew_seconds: float = 600.0
    handlers_per_topic: int = 2
    """Consumers (and handlers in flight) per channel topic."""
    relay_workers: int = 8
    pool_size: int = 24

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> PeerConfig:
        return cls(**json.loads(text))


async def prepare_database(dsn: str, people: Sequence[RosterRecord]) -> None:
    """Create the peer's tables (its own outbox table included) and load the roster."""
    require_faststream()
    from faststream_outbox import make_outbox_table
    from sqlalchemy import MetaData
    from sqlalchemy.ext.asyncio import create_async_engine

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
        await conn.copy_records_to_table(
            "roster",
            records=[
                (
                    p.id_number,
                    p.name,
                    p.benefit_type,
                    p.status.value,
                    p.first_paid_on,
                    p.deceased_on,
                    p.imprisoned_from,
                    p.imprisoned_until,
                    p.insured_region or None,
                )
                for p in people
            ],
            columns=_ROSTER_COLUMNS,
        )
    finally:
        await conn.close()
    metadata = MetaData()
    make_outbox_table(metadata, table_name="outbox")
    engine = create_async_engine(sqlalchemy_url(dsn))
    try:
        async with engine.begin() as sa_conn:
            await sa_conn.run_sync(metadata.create_all)
    finally:
        await engine.dispose()


def sqlalchemy_url(dsn: str) -> str:
    return "postgresql+asyncpg://" + dsn.split("://", 1)[1]


def require_faststream() -> None:
    """Exit with the install command when the peer's packages are missing."""
    try:
        import faststream  # noqa: F401
        import faststream_outbox  # noqa: F401
    except ImportError:
        raise SystemExit(INSTALL_HINT) from None


_SQL_ROSTER = """
SELECT id_number, name, benefit_type, status, first_paid_on, deceased_on,
       imprisoned_from, imprisoned_until, insured_region
FROM roster WHERE id_number = :id_number
"""
_SQL_CERTIFICATION = """
INSERT INTO certification (
    certification_id, channel, topic, kafka_partition, kafka_offset, id_number, valid,
    certified_at, certified_at_raw, local_date, due_date, deadline, provisional,
    content_sha256, raw, received_at)
VALUES (:certification_id, :channel, :topic, :kafka_partition, :kafka_offset, :id_number,
    :valid, :certified_at, :certified_at_raw, :local_date, :due_date, :deadline,
    :provisional, :content_sha256, :raw, :received_at)
ON CONFLICT (certification_id) DO NOTHING
RETURNING certification_id
"""
_SQL_STORED_SHA = "SELECT content_sha256 FROM certification WHERE certification_id = :id"
_SQL_DECISION = """
INSERT INTO decision (
    certification_id, outcome, review_reason, reason, rule, rule_version, evidence, decided_at)
VALUES (:certification_id, :outcome, :review_reason, :reason, :rule, :rule_version,
    CAST(:evidence AS jsonb), :decided_at)
"""
_SQL_RESULT = """
INSERT INTO result (
    certification_id, revision, result_id, outcome, reason, decided_at, decided_by, payload)
VALUES (:certification_id, 1, :result_id, :outcome, :reason, :decided_at, :decided_by,
    CAST(:payload AS jsonb))
"""
_SQL_REVIEW = """
INSERT INTO review_queue (certification_id, reason, queued_at)
VALUES (:certification_id, :reason, :queued_at)
"""


@dataclass(frozen=True)
class _Facts:
    """What one consumed record becomes before it is written."""

    certification_id: str
    channel: Channel
    id_number: str | None
    valid: bool
    certified_at: dt.datetime | None
    certified_at_raw: str | None
    basis: dt.datetime


class PeerService:
    """The handlers: one Kafka message → one transaction → outbox rows."""

    def __init__(self, config: PeerConfig, engine: Any, outbox: Any) -> None:
        from sqlalchemy import text

        self.config = config
        self.engine = engine
        self.outbox = outbox
        self.calendar: WorkingCalendar = default_calendar()
        self.channels = {t: Channel(c) for t, c in config.topic_channels.items()}
        self.max_skew = dt.timedelta(seconds=config.max_skew_seconds)
        self.sql = {
            name: text(sql)
            for name, sql in {
                "roster": _SQL_ROSTER,
                "certification": _SQL_CERTIFICATION,
                "stored_sha": _SQL_STORED_SHA,
                "decision": _SQL_DECISION,
                "result": _SQL_RESULT,
                "review": _SQL_REVIEW,
            }.items()
        }

    async def handle(self, record: Any) -> None:
        """One consumed ``ConsumerRecord``: decode, decide and write it in one transaction."""
        topic: str = record.topic
        channel = self.channels[topic]
        value: bytes | None = record.value
        now = dt.datetime.now(dt.UTC)
        decoded = decode(
            value, topic=topic, channel=channel, received_at=now, max_skew=self.max_skew
        )
        async with self.engine.begin() as conn:
            if isinstance(decoded, Valid):
                await self._valid(conn, record, decoded.certification, now)
            else:
                assert isinstance(decoded, Invalid)
                await self._invalid(conn, record, decoded, now)

    async def _valid(self, conn: Any, record: Any, cert: Certification, now: dt.datetime) -> None:
        row = (await conn.execute(self.sql["roster"], {"id_number": cert.id_number})).first()
        roster = (
            None
            if row is None
            else RosterRecord(
                id_number=row.id_number,
                name=row.name,
                benefit_type=row.benefit_type,
                status=RosterStatus(row.status),
                insured_region=row.insured_region or "",
                first_paid_on=row.first_paid_on,
                deceased_on=row.deceased_on,
                imprisoned_from=row.imprisoned_from,
                imprisoned_until=row.imprisoned_until,
            )
        )
        decision = decide(cert, roster, Cycle.of(cert), region_prefix=self.config.region_prefix)
        facts = _Facts(
            cert.certification_id,
            cert.channel,
            cert.id_number,
            True,
            cert.certified_at,
            cert.certified_at_raw,
            cert.certified_at,
        )
        due = await self._insert_certification(conn, record, facts, now)
        if due is None:
            return
        await conn.execute(
            self.sql["decision"],
            {
                "certification_id": cert.certification_id,
                "outcome": decision.outcome.value if decision.outcome else None,
                "review_reason": decision.review.value if decision.review else None,
                "reason": decision.reason,
                "rule": decision.rule,
                "rule_version": decision.rule_version,
                "evidence": json.dumps(dict(decision.evidence), ensure_ascii=False, default=str),
                "decided_at": now,
            },
        )
        if decision.review is not None:
            await conn.execute(
                self.sql["review"],
                {
                    "certification_id": cert.certification_id,
                    "reason": decision.review.value,
                    "queued_at": now,
                },
            )
            return
        assert decision.outcome is not None
        await self._result(
            conn,
            facts,
            outcome=decision.outcome,
            reason=decision.reason,
            due=due,
            now=now,
            key=cert.id_number.encode(),
        )

    async def _invalid(self, conn: Any, record: Any, decoded: Invalid, now: dt.datetime) -> None:
        errors = list(decoded.errors)
        await self._dead_letter(conn, record, errors, decoded.certification_id)
        if decoded.certification_id is None:
            return
        received = dt.datetime.fromtimestamp(record.timestamp / 1000, tz=dt.UTC)
        facts = _Facts(
            decoded.certification_id,
            decoded.channel,
            decoded.id_number or decoded.id_number_as_sent,
            False,
            decoded.certified_at,
            decoded.certified_at_raw,
            decoded.certified_at or received,
        )
        due = await self._insert_certification(conn, record, facts, now)
        if due is None:
            return
        reason = "; ".join(errors)
        await conn.execute(
            self.sql["decision"],
            {
                "certification_id": facts.certification_id,
                "outcome": Outcome.INVALID_RECORD.value,
                "review_reason": None,
                "reason": reason,
                "rule": "validation",
                "rule_version": RULE_VERSION,
                "evidence": "{}",
                "decided_at": now,
            },
        )
        key = facts.id_number.encode() if facts.id_number else record.key
        await self._result(
            conn,
            facts,
            outcome=Outcome.INVALID_RECORD,
            reason=reason,
            due=due,
            now=now,
            key=key,
        )

    async def _insert_certification(
        self, conn: Any, record: Any, facts: _Facts, now: dt.datetime
    ) -> dt.date | None:
        """Insert the certification; its due date, or None when it was stored before."""
        value: bytes = record.value or b""
        sha = hashlib.sha256(value).digest()
        due = compute_deadline(facts.basis, self.calendar, self.config.working_days)
        inserted = (
            await conn.execute(
                self.sql["certification"],
                {
                    "certification_id": facts.certification_id,
                    "channel": facts.channel.value,
                    "topic": record.topic,
                    "kafka_partition": record.partition,
                    "kafka_offset": record.offset,
                    "id_number": facts.id_number,
                    "valid": facts.valid,
                    "certified_at": facts.certified_at,
                    "certified_at_raw": facts.certified_at_raw,
                    "local_date": due.local_date,
                    "due_date": due.due_date,
                    "deadline": due.deadline,
                    "provisional": due.provisional,
                    "content_sha256": sha,
                    "raw": value,
                    "received_at": dt.datetime.fromtimestamp(record.timestamp / 1000, tz=dt.UTC),
                },
            )
        ).first()
        if inserted is not None:
            return due.due_date
        # A redelivery with the same bytes is ignored; other content under a known id is a
        # dead letter, because the first result stands.
        stored = await conn.scalar(self.sql["stored_sha"], {"id": facts.certification_id})
        if stored is not None and bytes(stored) != sha:
            problem = (
                f"certification_id {facts.certification_id} was already received "
                "with different content; the first one stands"
            )
            await self._dead_letter(conn, record, [problem], facts.certification_id)
        return None

    async def _result(
        self,
        conn: Any,
        facts: _Facts,
        *,
        outcome: Outcome,
        reason: str,
        due: dt.date,
        now: dt.datetime,
        key: bytes | None,
    ) -> None:
        message = ResultMessage.build(
            certification_id=facts.certification_id,
            revision=1,
            channel=facts.channel,
            id_number=facts.id_number or "",
            outcome=outcome,
            reason=reason,
            certified_at=facts.certified_at_raw or "",
            due_date=due,
            decided_at=now,
            decided_by=DECIDED_BY_RULES,
        )
        payload = message.to_bytes()
        await conn.execute(
            self.sql["result"],
            {
                "certification_id": facts.certification_id,
                "result_id": message.result_id,
                "outcome": outcome.value,
                "reason": reason,
                "decided_at": now,
                "decided_by": DECIDED_BY_RULES,
                "payload": payload.decode(),
            },
        )
        headers = {"message_id": message.result_id}
        if key is not None:
            headers["key"] = key.decode("utf-8", "replace")
        await self.outbox.publish(payload, queue=RESULT_QUEUE, session=conn, headers=headers)

    async def _dead_letter(
        self, conn: Any, record: Any, errors: list[str], certification_id: str | None
    ) -> None:
        payload = dead_letter_payload(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            key=record.key,
            value=record.value,
            errors=errors,
            certification_id=certification_id,
        )
        message_id = dead_letter_id(record.topic, record.partition, record.offset)
        await self.outbox.publish(
            payload, queue=DEAD_LETTER_QUEUE, session=conn, headers={"message_id": message_id}
        )


async def serve(config: PeerConfig) -> None:
    """Run the peer until SIGTERM or SIGINT."""
    require_faststream()
    from faststream import AckPolicy, FastStream
    from faststream.kafka import KafkaBroker
    from faststream_outbox import OutboxBroker, make_outbox_table
    from sqlalchemy import MetaData
    from sqlalchemy.ext.asyncio import create_async_engine

    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    engine = create_async_engine(
        sqlalchemy_url(config.dsn), pool_size=config.pool_size, max_overflow=0
    )
    outbox_table = make_outbox_table(MetaData(), table_name="outbox")
    outbox = OutboxBroker(engine, outbox_table=outbox_table, log_level=logging.DEBUG)
    kafka = KafkaBroker(
        config.bootstrap, acks="all", enable_idempotence=False, log_level=logging.DEBUG
    )
    service = PeerService(config, engine, outbox)

    # Custom decoders hand the handlers the delivered message itself. (Asking for it as a
    # `KafkaMessage` / `OutboxMessage` context parameter instead costs a thread-pool hop per
    # message in fast-depends 3.0: context fields are resolved by a synchronous function.)
    async def raw_record(msg: Any) -> Any:
        return msg.raw_message

    async def as_delivered(msg: Any) -> Any:
        return msg

    async def on_certification(record: Any) -> None:
        await service.handle(record)

    for topic in config.topic_channels:
        subscriber = kafka.subscriber(
            topic,
            group_id=f"{config.group_id}.{topic}",
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.ACK,
            max_workers=config.handlers_per_topic,
            decoder=raw_record,
        )
        subscriber(on_certification)

    async def relay(msg: Any) -> KafkaResponse:
        # The stored bytes as they are: byte-for-byte what the handler's transaction wrote.
        headers: dict[str, str] = msg.headers
        key = headers.get("key")
        return KafkaResponse(
            msg.body,
            key=key.encode() if key is not None else None,
            headers={"message_id": headers["message_id"]},
        )

    for queue, topic in (
        (RESULT_QUEUE, config.result_topic),
        (DEAD_LETTER_QUEUE, config.dead_letter_topic),
    ):
        relay_subscriber = outbox.subscriber(
            queue,
            max_workers=config.relay_workers,
            fetch_batch_size=100,
            terminal_flush_batch_size=50,
            min_fetch_interval=0.05,
            max_fetch_interval=1.0,
            decoder=as_delivered,
        )
        kafka.publisher(topic)(relay_subscriber(relay))

    async def announce() -> None:
        print(READY, flush=True)

    app = FastStream(kafka)
    # The relay publishes through the Kafka broker, so it starts once that broker has.
    app.after_startup(outbox.start)
    app.after_startup(announce)
    app.on_shutdown(outbox.stop)
    try:
        await app.run()
    finally:
        await engine.dispose()


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {Path(sys.argv[0]).name} CONFIG_JSON")
    asyncio.run(serve(PeerConfig.from_json(sys.argv[1])))


if __name__ == "__main__":
    main()
