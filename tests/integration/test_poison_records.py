"""One bad record must never stop the stream: each of these once crashed the batch.

Every case runs a bad record between two good ones through ``prepare_batch`` and
``commit_batch`` against a real PostgreSQL: the good ones are answered, the bad one becomes
a dead letter (and an ``invalid_record`` result where a certification_id can be read), and
the offsets move past all three.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import asyncpg
import pytest

from certrecon.calendar import default_calendar
from certrecon.domain import Channel, RosterRecord
from certrecon.store.roster import import_roster
from certrecon.worker.pipeline import Inbound, PipelineConfig, commit_batch, prepare_batch
from tests.support import certification, eligible_roster, encode, isolated_settings

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
WHEN = NOW - dt.timedelta(hours=1)
CHANNEL = Channel.APP_12333
YEAR_10000_MS = 253_402_300_800_000
"""The first millisecond of year 10000: past what ``datetime`` can hold."""


def _config() -> PipelineConfig:
    return PipelineConfig.from_settings(isolated_settings())


async def _run(
    conn: asyncpg.Connection,
    poison: bytes,
    *,
    poison_timestamp_ms: int = NOW_MS,
    good_timestamp_ms: int = NOW_MS,
) -> tuple[PipelineConfig, list[RosterRecord]]:
    """Good, poison, good on one partition, as one batch; returns the config and people."""
    config = _config()
    topic = next(t for t, c in config.topic_channels.items() if c is CHANNEL)
    people = eligible_roster(2, seed=41)
    await import_roster(conn, people)
    records = [
        Inbound(
            topic,
            0,
            0,
            good_timestamp_ms,
            b"k",
            encode(certification("G1", CHANNEL, people[0], WHEN)),
        ),
        Inbound(topic, 0, 1, poison_timestamp_ms, b"k", poison),
        Inbound(
            topic,
            0,
            2,
            good_timestamp_ms,
            b"k",
            encode(certification("G2", CHANNEL, people[1], WHEN)),
        ),
    ]
    batch = await prepare_batch(conn, records, config=config, calendar=default_calendar(), now=NOW)
    await commit_batch(conn, batch, config=config)
    return config, people


async def _answers(conn: asyncpg.Connection) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch("SELECT payload FROM outbox WHERE kind = 'result'")
    return {b["certification_id"]: b for b in (json.loads(bytes(r["payload"])) for r in rows)}


async def _dead_letters(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT payload FROM outbox WHERE kind = 'dead_letter'")
    return [json.loads(bytes(r["payload"])) for r in rows]


async def _assert_stream_went_on(conn: asyncpg.Connection) -> None:
    answers = await _answers(conn)
    assert answers["G1"]["outcome"] == "qualified"
    assert answers["G2"]["outcome"] == "qualified"
    assert await conn.fetchval("SELECT next_offset FROM consumer_offset") == 3


def _poison(person: RosterRecord, **changes: Any) -> bytes:
    body = certification("P1", CHANNEL, person, WHEN)
    body.update(changes)
    return encode(body)


@pytest.fixture
def stranger() -> RosterRecord:
    return eligible_roster(3, seed=41)[2]


async def test_a_certification_before_the_calendar_is_invalid_not_a_crash(
    conn: asyncpg.Connection, stranger: RosterRecord
) -> None:
    # Validation once accepted years from 2000 while the calendar starts in 2004.
    await _run(conn, _poison(stranger, certified_at="2002-06-01T10:00:00+08:00"))

    await _assert_stream_went_on(conn)
    answer = (await _answers(conn))["P1"]
    assert answer["outcome"] == "invalid_record"
    assert "calendar" in answer["reason"]
    # The certification time is unusable, so the deadline runs from the broker's timestamp.
    assert answer["due_date"] == "2026-12-04"
    (letter,) = await _dead_letters(conn)
    assert letter["offset"] == 1
    assert letter["certification_id"] == "P1"


async def test_an_invalid_record_with_a_2002_time(
    conn: asyncpg.Connection, stranger: RosterRecord
) -> None:
    bad_check = stranger.id_number[:17] + ("0" if stranger.id_number[17] != "0" else "1")
    subject = {"id_number": bad_check, "name": stranger.name}
    await _run(conn, _poison(stranger, subject=subject, certified_at="2002-06-01T10:00:00+08:00"))

    await _assert_stream_went_on(conn)
    answer = (await _answers(conn))["P1"]
    assert answer["outcome"] == "invalid_record"
    assert answer["due_date"] == "2026-12-04"


@pytest.mark.parametrize(
    "timestamp_ms", [-1, YEAR_10000_MS, 2**63 - 1], ids=["minus-one", "year-10000", "max"]
)
async def test_an_unusable_record_timestamp_falls_back_to_the_receiving_clock(
    conn: asyncpg.Connection, stranger: RosterRecord, timestamp_ms: int
) -> None:
    # Invalid and without a usable certified_at: the deadline would run from the record's
    # timestamp, which here cannot be placed in the calendar at all.
    body = json.loads(_poison(stranger))
    del body["certified_at"]
    await _run(conn, encode(body), poison_timestamp_ms=timestamp_ms)

    await _assert_stream_went_on(conn)
    answer = (await _answers(conn))["P1"]
    assert answer["outcome"] == "invalid_record"
    assert answer["due_date"] == "2026-12-04"  # from NOW, the receiving clock
    received = await conn.fetchval(
        "SELECT received_at FROM certification WHERE certification_id = 'P1'"
    )
    assert received == NOW


@pytest.mark.parametrize(
    "timestamp_ms", [-1, YEAR_10000_MS, 2**63 - 1], ids=["minus-one", "year-10000", "max"]
)
async def test_every_stored_row_survives_an_unusable_record_timestamp(
    conn: asyncpg.Connection, timestamp_ms: int
) -> None:
    # The receipt time of every stored certification, valid ones too, came from the record
    # timestamp.
    config = _config()
    topic = next(t for t, c in config.topic_channels.items() if c is CHANNEL)
    people = eligible_roster(1, seed=42)
    await import_roster(conn, people)
    body = encode(certification("V1", CHANNEL, people[0], WHEN))
    records = [Inbound(topic, 0, 0, timestamp_ms, b"k", body)]
    batch = await prepare_batch(conn, records, config=config, calendar=default_calendar(), now=NOW)
    await commit_batch(conn, batch, config=config)

    assert (await _answers(conn))["V1"]["outcome"] == "qualified"
    received = await conn.fetchval("SELECT received_at FROM certification")
    assert received == NOW


@pytest.mark.parametrize("field", ["certified_at", "subject.id_number"])
async def test_a_nul_character_reaches_no_text_column(
    conn: asyncpg.Connection, stranger: RosterRecord, field: str
) -> None:
    body = json.loads(_poison(stranger))
    if field == "certified_at":
        body["certified_at"] = WHEN.isoformat(timespec="seconds") + "\x00"
    else:
        body["subject"]["id_number"] = stranger.id_number + "\x00"
    poison = encode(body)
    await _run(conn, poison)

    await _assert_stream_went_on(conn)
    answer = (await _answers(conn))["P1"]
    assert answer["outcome"] == "invalid_record"
    assert "\x00" not in json.dumps(answer)
    (letter,) = await _dead_letters(conn)
    assert base64.b64decode(letter["value"]) == poison
    assert any("NUL" in e for e in letter["errors"])
