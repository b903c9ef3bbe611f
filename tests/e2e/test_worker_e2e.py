"""The worker end to end, over real connections: pushed message → result message."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json

import asyncpg

from certrecon.domain import Channel, RosterStatus
from certrecon.store import db
from certrecon.store.roster import import_roster
from tests.support import (
    certification,
    create_topics,
    eligible_roster,
    encode,
    isolated_settings,
    produce,
    read_topic,
    running_worker,
    wait_for,
)

NOW = dt.datetime.now(dt.UTC)
TODAY = NOW.date()


async def test_every_outcome_over_the_wire(fresh_database: str, kafka_bootstrap: str) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    people = eligible_roster(12, seed=7)
    cutoff = dt.date(NOW.year - 1, 12, 31)
    people[1] = dataclasses.replace(people[1], status=RosterStatus.TERMINATED)
    people[2] = dataclasses.replace(people[2], first_paid_on=cutoff + dt.timedelta(days=1))
    people[3] = dataclasses.replace(people[3], deceased_on=TODAY - dt.timedelta(days=10))
    people[4] = dataclasses.replace(people[4], imprisoned_from=TODAY - dt.timedelta(days=99))
    people[5] = dataclasses.replace(people[5], status=RosterStatus.SUSPENDED)
    stranger = people.pop()  # never imported: no roster entry
    conn = await db.connect(fresh_database)
    try:
        await import_roster(conn, people)
    finally:
        await conn.close()

    when = NOW - dt.timedelta(hours=2)
    t = settings.channel_topics
    cases = {
        "Q1": (
            Channel.NATIONAL_PLATFORM,
            certification("Q1", Channel.NATIONAL_PLATFORM, people[0], when),
        ),
        "T1": (Channel.APP_12333, certification("T1", Channel.APP_12333, people[1], when)),
        "F1": (Channel.ESSC, certification("F1", Channel.ESSC, people[2], when)),
        "D1": (Channel.CONSULAR, certification("D1", Channel.CONSULAR, people[3], when)),
        "P1": (Channel.APP_12333, certification("P1", Channel.APP_12333, people[4], when)),
        "S1": (Channel.ESSC, certification("S1", Channel.ESSC, people[5], when)),
        "N1": (Channel.APP_12333, certification("N1", Channel.APP_12333, stranger, when)),
        "M1": (
            Channel.NATIONAL_PLATFORM,
            certification(
                "M1",
                Channel.NATIONAL_PLATFORM,
                people[6],
                when,
                subject={"id_number": people[6].id_number, "name": people[6].name + "华"},
            ),
        ),
        "V1": (Channel.ESSC, certification("V1", Channel.ESSC, people[7], when, face_match="fail")),
        "R1": (
            Channel.APP_12333,
            certification("R1", Channel.APP_12333, people[8], when, insured_region="310104"),
        ),
        # Invalid: consular certification from China, and a channel that does not match its topic.
        "I1": (
            Channel.CONSULAR,
            certification("I1", Channel.CONSULAR, people[9], when, residence={"country": "CN"}),
        ),
        "I2": (Channel.ESSC, certification("I2", Channel.NATIONAL_PLATFORM, people[10], when)),
    }
    messages = [
        (t[ch], body["subject"]["id_number"].encode(), encode(body)) for ch, body in cases.values()
    ]
    messages.append((t[Channel.ESSC], None, b"\x00\x9f definitely not JSON"))
    messages.append((t[Channel.APP_12333], None, encode({"certification_id": 5})))
    await produce(kafka_bootstrap, messages)

    async with running_worker(settings, fresh_database, kafka_bootstrap):
        results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=10)
        dead = await read_topic(kafka_bootstrap, settings.dead_letter_topic, at_least=4)

        # The worker keeps running after bad input: a later certification is answered too.
        late = certification("Q2", Channel.APP_12333, people[0], when)
        await produce(kafka_bootstrap, [(t[Channel.APP_12333], b"k", encode(late))])
        results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=11)

    by_id = {json.loads(r.value)["certification_id"]: json.loads(r.value) for r in results}
    outcome = {cid: body["outcome"] for cid, body in by_id.items()}
    assert outcome == {
        "Q1": "qualified",
        "Q2": "qualified",
        "S1": "qualified",
        "T1": "not_in_scope",
        "F1": "not_in_scope",
        "N1": "not_in_scope",
        "R1": "not_in_scope",
        "M1": "identity_mismatch",
        "V1": "face_not_verified",
        "I1": "invalid_record",
        "I2": "invalid_record",
    }
    q1 = by_id["Q1"]
    assert q1["result_id"] == "Q1:1"
    assert q1["decided_by"] == "rules"
    assert q1["certified_at"] == cases["Q1"][1]["certified_at"]
    assert q1["id_number"] == people[0].id_number
    assert dt.date.fromisoformat(q1["due_date"]) > when.date()
    for r in results:
        assert r.key == by_id[json.loads(r.value)["certification_id"]]["id_number"].encode()

    letters = [json.loads(r.value) for r in dead]
    assert len(letters) == 4
    assert {base64.b64decode(d["value"]) for d in letters} >= {b"\x00\x9f definitely not JSON"}
    assert all(d["errors"] for d in letters)

    conn = await db.connect(fresh_database)
    try:
        queued = {
            r["certification_id"]: r["reason"]
            for r in await conn.fetch("SELECT certification_id, reason FROM review_item")
        }
        assert queued == {"D1": "deceased", "P1": "imprisoned"}
        assert await conn.fetchval("SELECT count(*) FROM outbox_backlog") == 0
        returned = await conn.fetchval(
            "SELECT count(*) FROM certification_return r"
            " JOIN certification_deadline d USING (certification_id)"
            " WHERE r.returned_at < d.deadline"
        )
        assert returned == 11
    finally:
        await conn.close()


async def test_redelivery_is_ignored_and_a_conflicting_duplicate_is_dead_lettered(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    people = eligible_roster(2, seed=11)
    conn = await db.connect(fresh_database)
    try:
        await import_roster(conn, people)
        topic = settings.channel_topics[Channel.APP_12333]
        when = NOW - dt.timedelta(hours=1)
        first = encode(certification("DUP1", Channel.APP_12333, people[0], when))
        other = encode(certification("DUP1", Channel.APP_12333, people[1], when))
        await produce(
            kafka_bootstrap, [(topic, b"a", first), (topic, b"a", first), (topic, b"a", other)]
        )
        async with running_worker(settings, fresh_database, kafka_bootstrap):
            results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=1)
            dead = await read_topic(kafka_bootstrap, settings.dead_letter_topic, at_least=1)
            await wait_for(conn, "SELECT count(*) FROM outbox_backlog", lambda n: n == 0)
        assert [json.loads(r.value)["result_id"] for r in results] == ["DUP1:1"]
        assert json.loads(results[0].value)["id_number"] == people[0].id_number
        assert len(dead) == 1
        assert "already received with different content" in json.loads(dead[0].value)["errors"][0]
    finally:
        await conn.close()


async def test_restart_resumes_from_offsets_stored_in_postgres(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    people = eligible_roster(40, seed=3)
    topic = settings.channel_topics[Channel.ESSC]
    when = NOW - dt.timedelta(hours=1)
    conn: asyncpg.Connection = await db.connect(fresh_database)
    try:
        await import_roster(conn, people)
        first = [
            (topic, p.id_number.encode(), encode(certification(f"A{i}", Channel.ESSC, p, when)))
            for i, p in enumerate(people[:20])
        ]
        await produce(kafka_bootstrap, first)
        async with running_worker(settings, fresh_database, kafka_bootstrap):
            await wait_for(conn, "SELECT count(*) FROM result", lambda n: n == 20)
        stored = await conn.fetchval("SELECT sum(next_offset) FROM consumer_offset")
        assert stored == 20
        second = [
            (topic, p.id_number.encode(), encode(certification(f"B{i}", Channel.ESSC, p, when)))
            for i, p in enumerate(people[20:])
        ]
        await produce(kafka_bootstrap, second)
        async with running_worker(settings, fresh_database, kafka_bootstrap):
            await wait_for(conn, "SELECT count(*) FROM result", lambda n: n == 40)
            await wait_for(conn, "SELECT count(*) FROM outbox_backlog", lambda n: n == 0)
        results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=40)
        ids = [json.loads(r.value)["result_id"] for r in results]
        assert len(ids) == len(set(ids)) == 40
    finally:
        await conn.close()
