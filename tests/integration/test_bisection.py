"""A batch PostgreSQL refuses for one record's data: the others are committed, the one is
dead-lettered with its SQLSTATE, and the offsets move past all of them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg
import pytest

from certrecon.calendar import default_calendar
from certrecon.domain import Channel
from certrecon.store.roster import import_roster
from certrecon.worker.pipeline import (
    BatchReport,
    Inbound,
    PipelineConfig,
    PreparedBatch,
    commit_batch,
    commit_bisecting,
    prepare_batch,
)
from tests.support import certification, eligible_roster, encode, isolated_settings

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
CHANNEL = Channel.ESSC


def _config() -> PipelineConfig:
    return PipelineConfig.from_settings(isolated_settings())


async def _batch(conn: asyncpg.Connection, config: PipelineConfig, ids: list[str]) -> PreparedBatch:
    topic = next(t for t, c in config.topic_channels.items() if c is CHANNEL)
    people = eligible_roster(len(ids), seed=51)
    await import_roster(conn, people)
    ts = int(NOW.timestamp() * 1000)
    when = NOW - dt.timedelta(hours=1)
    records = [
        Inbound(
            topic,
            i % 2,
            100 + i,
            ts,
            p.id_number.encode(),
            encode(certification(cid, CHANNEL, p, when)),
        )
        for i, (cid, p) in enumerate(zip(ids, people, strict=True))
    ]
    return await prepare_batch(conn, records, config=config, calendar=default_calendar(), now=NOW)


async def _bisect(
    conn: asyncpg.Connection, batch: PreparedBatch, config: PipelineConfig
) -> tuple[BatchReport, list[tuple[int, str]]]:
    splits: list[tuple[int, str]] = []

    async def commit(part: PreparedBatch) -> BatchReport:
        return await commit_batch(conn, part, config=config)

    report = await commit_bisecting(
        batch, commit, config=config, on_split=lambda n, s: splits.append((n, s))
    )
    return report, splits


async def _dead_letters(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT payload FROM outbox WHERE kind = 'dead_letter'")
    return [json.loads(bytes(r["payload"])) for r in rows]


IDS = ["G1", "G2", "G3", "BAD", "G4", "G5", "G6"]


@pytest.mark.parametrize(
    ("refusal", "sqlstate"),
    [
        # A constraint the data violates: integrity, class 23.
        (
            "ALTER TABLE certification ADD CONSTRAINT refuses_bad"
            " CHECK (certification_id <> 'BAD')",
            "23514",
        ),
        # A data exception, class 22, as a trigger reports one.
        (
            """
            CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.certification_id = 'BAD' THEN
                    RAISE EXCEPTION 'refused' USING ERRCODE = '22023';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_bad BEFORE INSERT ON decision
                FOR EACH ROW EXECUTE FUNCTION refuse_bad();
            """,
            "22023",
        ),
    ],
    ids=["check-constraint", "data-exception"],
)
async def test_the_refused_record_is_found_and_the_rest_committed(
    conn: asyncpg.Connection, refusal: str, sqlstate: str
) -> None:
    config = _config()
    batch = await _batch(conn, config, IDS)
    await conn.execute(refusal)

    report, splits = await _bisect(conn, batch, config)

    stored = await conn.fetch("SELECT certification_id FROM certification ORDER BY 1")
    assert [r["certification_id"] for r in stored] == sorted(set(IDS) - {"BAD"})
    results = await conn.fetch("SELECT message_id FROM outbox WHERE kind = 'result' ORDER BY 1")
    assert [r["message_id"] for r in results] == [f"{c}:1" for c in sorted(set(IDS) - {"BAD"})]
    (letter,) = await _dead_letters(conn)
    assert letter["offset"] == 103
    assert letter["certification_id"] == "BAD"
    assert f"SQLSTATE {sqlstate}" in letter["errors"][0]
    # Offsets past every record of both partitions, stored with the sub-batches.
    offsets = await conn.fetch(
        "SELECT kafka_partition, next_offset FROM consumer_offset ORDER BY 1"
    )
    assert [(r["kafka_partition"], r["next_offset"]) for r in offsets] == [(0, 107), (1, 106)]
    assert report.consumed == len(IDS)
    assert [(r.offset, s) for r, s in report.refused_by_database] == [(103, sqlstate)]
    assert [d.record.offset for d in report.rejected] == [103]
    assert sum(report.decided.values()) == len(IDS) - 1
    assert splits[0] == (len(IDS), sqlstate)


async def test_an_error_that_is_not_about_the_data_is_not_bisected(
    conn: asyncpg.Connection,
) -> None:
    config = _config()
    batch = await _batch(conn, config, ["A1", "A2"])
    # Insufficient privilege (class 42) says nothing about one record: it propagates, and
    # nothing is committed.
    await conn.execute(
        """
        CREATE FUNCTION refuse_all() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'no' USING ERRCODE = '42501'; END $$;
        CREATE TRIGGER refuse_all BEFORE INSERT ON certification
            FOR EACH ROW EXECUTE FUNCTION refuse_all();
        """
    )

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _bisect(conn, batch, config)
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    assert await conn.fetchval("SELECT count(*) FROM consumer_offset") == 0


async def test_a_dead_letter_that_cannot_be_stored_stops_the_worker(
    conn: asyncpg.Connection,
) -> None:
    # When not even the record's dead letter can be stored, the fault is not the record's:
    # skipping it would lose it, so the error propagates (and the worker exits loudly).
    config = _config()
    batch = await _batch(conn, config, ["C1"])
    await conn.execute("ALTER TABLE outbox ADD CONSTRAINT refuses_all CHECK (kind = 'none')")

    with pytest.raises(asyncpg.CheckViolationError):
        await _bisect(conn, batch, config)
    assert await conn.fetchval("SELECT count(*) FROM consumer_offset") == 0
