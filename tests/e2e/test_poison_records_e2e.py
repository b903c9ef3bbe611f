"""Poison records between good ones, through the real worker, broker and PostgreSQL: the
good ones are answered, each poison one becomes its dead letter (and an invalid_record
answer where it has a certification_id), and the worker keeps running."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from typing import Any

from certrecon.domain import Channel, RosterRecord
from certrecon.store import db
from certrecon.store.results import OutboxMessage, enqueue
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

CHANNEL = Channel.APP_12333
KEY = b"one-partition"
"""Every record carries the same key, so all of them land on one partition, in order."""


def _body(cid: str, person: RosterRecord, **changes: Any) -> dict[str, Any]:
    body = certification(cid, CHANNEL, person, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    body.update(changes)
    return body


async def test_poison_records_between_good_ones(fresh_database: str, kafka_bootstrap: str) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    people = eligible_roster(8, seed=61)
    topic = settings.channel_topics[CHANNEL]
    nul_subject = {"id_number": people[3].id_number + "\x00", "name": people[3].name}
    poison = {
        # Validation once took years from 2000, the calendar starts in 2004: CalendarError.
        "P2002": _body("P2002", people[1], certified_at="2002-06-01T10:00:00+08:00"),
        # A NUL character once reached a text column: PostgreSQL refused the whole batch.
        "PNUL": _body("PNUL", people[3], subject=nul_subject),
        # Refused by the database (the CHECK below) for this record alone.
        "PREFUSED": _body("PREFUSED", people[5]),
    }
    sequence = [
        ("G1", encode(_body("G1", people[0]))),
        ("P2002", encode(poison["P2002"])),
        ("G2", encode(_body("G2", people[2]))),
        ("PNUL", encode(poison["PNUL"])),
        ("G3", encode(_body("G3", people[4]))),
        ("PREFUSED", encode(poison["PREFUSED"])),
        ("G4", encode(_body("G4", people[6]))),
    ]
    conn = await db.connect(fresh_database)
    try:
        await import_roster(conn, people)
        await conn.execute(
            "ALTER TABLE certification ADD CONSTRAINT refuses_one"
            " CHECK (certification_id <> 'PREFUSED')"
        )
        # An outbox message the broker refuses (over 1 MB) ahead of everything else.
        await enqueue(
            conn,
            [
                OutboxMessage(
                    "oversized", "sla_alert", settings.sla_alert_topic, b"x", b"x" * 2_000_000
                )
            ],
        )
        await produce(kafka_bootstrap, [(topic, KEY, value) for _, value in sequence])

        async with running_worker(settings, fresh_database, kafka_bootstrap) as worker:
            results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=6)
            dead = await read_topic(kafka_bootstrap, settings.dead_letter_topic, at_least=3)

            # Still running: a later certification on the same partition is answered too.
            await produce(kafka_bootstrap, [(topic, KEY, encode(_body("G5", people[7])))])
            results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=7)
            await wait_for(
                conn,
                "SELECT count(*) FROM outbox_backlog WHERE message_id <> 'oversized'",
                lambda n: n == 0,
            )
            await asyncio.sleep(0.2)
            assert worker.state.started
            refused = worker.metrics.outbox_failed.labels("sla_alert")._value.get()

        answers = {
            b["certification_id"]: b["outcome"] for b in (json.loads(r.value) for r in results)
        }
        assert answers == {
            "G1": "qualified",
            "G2": "qualified",
            "G3": "qualified",
            "G4": "qualified",
            "G5": "qualified",
            "P2002": "invalid_record",
            "PNUL": "invalid_record",
        }
        letters = {json.loads(r.value)["certification_id"]: json.loads(r.value) for r in dead}
        assert set(letters) == {"P2002", "PNUL", "PREFUSED"}
        assert any("calendar range" in e for e in letters["P2002"]["errors"])
        assert any("NUL" in e for e in letters["PNUL"]["errors"])
        assert base64.b64decode(letters["PNUL"]["value"]) == encode(poison["PNUL"])
        assert "SQLSTATE 23514" in letters["PREFUSED"]["errors"][0]
        offsets = [letters[c]["offset"] for c in ("P2002", "PNUL", "PREFUSED")]
        assert offsets == [1, 3, 5]

        # Every record's offset is stored, the refused outbox message is recorded as failed,
        # and nothing else is left unsent.
        assert await conn.fetchval("SELECT max(next_offset) FROM consumer_offset") == 8
        failure = await conn.fetchrow("SELECT message_id, reason FROM outbox_failure")
        assert failure is not None
        assert failure["message_id"] == "oversized"
        assert failure["reason"].startswith("MessageSizeTooLargeError")
        assert refused == 1
    finally:
        await conn.close()
