"""The batch transaction against a real PostgreSQL, without a broker."""

from __future__ import annotations

import datetime as dt

import asyncpg

from certrecon.calendar import default_calendar
from certrecon.domain import Channel
from certrecon.store.roster import import_roster
from certrecon.worker.pipeline import Inbound, PipelineConfig, commit_batch, prepare_batch
from tests.support import certification, eligible_roster, encode, isolated_settings

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def _config() -> PipelineConfig:
    return PipelineConfig.from_settings(isolated_settings())


async def test_only_kept_records_are_written_with_their_offsets(conn: asyncpg.Connection) -> None:
    config = _config()
    topic = next(t for t, c in config.topic_channels.items() if c is Channel.ESSC)
    people = eligible_roster(4, seed=21)
    await import_roster(conn, people)
    records = [
        Inbound(
            topic,
            i % 2,
            10 + i,
            int(NOW.timestamp() * 1000),
            p.id_number.encode(),
            encode(certification(f"K{i}", Channel.ESSC, p, NOW - dt.timedelta(hours=1))),
        )
        for i, p in enumerate(people)
    ]
    batch = await prepare_batch(conn, records, config=config, calendar=default_calendar(), now=NOW)
    report = await commit_batch(conn, batch, config=config, keep=lambda r: r.partition == 0)

    assert report.consumed == 2
    stored = await conn.fetch("SELECT certification_id FROM certification ORDER BY 1")
    assert [r["certification_id"] for r in stored] == ["K0", "K2"]
    offsets = await conn.fetch("SELECT kafka_partition, next_offset FROM consumer_offset")
    assert [(r["kafka_partition"], r["next_offset"]) for r in offsets] == [(0, 13)]
    sent = await conn.fetch("SELECT message_id FROM outbox ORDER BY 1")
    assert [r["message_id"] for r in sent] == ["K0:1", "K2:1"]


async def test_invalid_and_undecodable_records(conn: asyncpg.Connection) -> None:
    config = _config()
    topic = next(t for t, c in config.topic_channels.items() if c is Channel.CONSULAR)
    person = eligible_roster(1, seed=22)[0]
    from_china = certification("B1", Channel.CONSULAR, person, NOW, residence={"country": "CN"})
    ts = int(NOW.timestamp() * 1000)
    records = [
        Inbound(topic, 0, 0, ts, None, b"{not json"),
        Inbound(topic, 0, 1, ts, b"k", encode(from_china)),
        Inbound(topic, 0, 2, ts, None, None),
    ]
    batch = await prepare_batch(conn, records, config=config, calendar=default_calendar(), now=NOW)
    report = await commit_batch(conn, batch, config=config)

    assert len(report.rejected) == 3
    row = await conn.fetchrow(
        "SELECT c.valid, d.outcome, d.reason, c.due_date FROM certification c"
        " JOIN decision d USING (certification_id) WHERE certification_id = 'B1'"
    )
    assert row is not None
    assert row["valid"] is False
    assert row["outcome"] == "invalid_record"
    assert "CN" in row["reason"] or "residence" in row["reason"]
    assert row["due_date"] == dt.date(2026, 12, 4)
    kinds = await conn.fetch("SELECT kind, count(*) AS n FROM outbox GROUP BY kind ORDER BY kind")
    assert [(r["kind"], r["n"]) for r in kinds] == [("dead_letter", 3), ("result", 1)]
    assert await conn.fetchval("SELECT max(next_offset) FROM consumer_offset") == 3


def test_a_huge_dead_letter_is_cut_and_says_so() -> None:
    import base64
    import hashlib
    import json

    from certrecon.consumers.dead_letter import MAX_VALUE_BYTES as MAX_DEAD_LETTER_VALUE
    from certrecon.worker.pipeline import DeadLetter

    value = b"x" * (MAX_DEAD_LETTER_VALUE * 3)
    record = Inbound("t", 1, 7, 0, None, value)
    message = DeadLetter(record, ("message: not valid JSON",)).message(_config())
    body = json.loads(message.payload)
    assert base64.b64decode(body["value"]) == value[:MAX_DEAD_LETTER_VALUE]
    assert body["errors"][0] == "message: not valid JSON"
    assert hashlib.sha256(value).hexdigest() in body["errors"][1]
    assert len(message.payload) < 1024 * 1024
    small = DeadLetter(Inbound("t", 1, 8, 0, None, b"{"), ("message: not valid JSON",))
    assert json.loads(small.message(_config()).payload)["errors"] == ["message: not valid JSON"]
