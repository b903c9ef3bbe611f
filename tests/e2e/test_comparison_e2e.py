"""Comparison evidence over the wire: the worker records it with its batch, holds the
certifications of a person with open death evidence, dead-letters bad or contradicting
messages, and a redelivery changes nothing."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from certrecon.cycle import CycleMode, Period
from certrecon.domain import Channel
from certrecon.store import db
from certrecon.store.cycle import person_rows
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


def evidence(evidence_id: str, kind: str, person: Any, day: dt.date, **changes: Any) -> bytes:
    body = {
        "schema_version": 1,
        "evidence_id": evidence_id,
        "kind": kind,
        "subject": {
            "id_type": "resident_id",
            "id_number": person.id_number,
            "name": person.name,
        },
        "event_date": day.isoformat(),
        "source": "civil_affairs:cremation" if kind == "death" else "transport:rail_travel",
        "observed_at": (NOW - dt.timedelta(hours=3)).isoformat(),
        **changes,
    }
    return encode(body)


async def test_evidence_is_recorded_and_holds_a_later_certification(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    dead_person, alive, other = eligible_roster(3, seed=31)
    conn = await db.connect(fresh_database)
    try:
        await import_roster(conn, [dead_person, alive, other])
        today = NOW.date()
        topic = settings.comparison_topic
        first = [
            (topic, dead_person.id_number.encode(),
             evidence("MZ-1", "death", dead_person, today - dt.timedelta(days=5))),
            (topic, alive.id_number.encode(),
             evidence("RL-1", "proof_of_life", alive, today - dt.timedelta(days=2))),
            # Invalid: a future event date.
            (topic, b"x", evidence("RL-2", "proof_of_life", other, today + dt.timedelta(days=3))),
        ]  # fmt: skip
        await produce(kafka_bootstrap, first)
        when = NOW - dt.timedelta(hours=1)
        async with running_worker(settings, fresh_database, kafka_bootstrap):
            await wait_for(conn, "SELECT count(*) FROM comparison_evidence", lambda n: n == 2)
            # The same messages again (a redelivery), and one contradicting the death record.
            await produce(kafka_bootstrap, first[:2])
            contradicting = evidence("MZ-1", "death", dead_person, today - dt.timedelta(days=6))
            await produce(kafka_bootstrap, [(topic, b"y", contradicting)])
            dead = await read_topic(kafka_bootstrap, settings.dead_letter_topic, at_least=2)
            # A certification of the person with open death evidence waits for staff; the
            # other person's is answered.
            certs = [
                certification("H1", Channel.APP_12333, dead_person, when),
                certification("H2", Channel.APP_12333, alive, when),
            ]
            await produce(
                kafka_bootstrap,
                [(settings.channel_topics[Channel.APP_12333], b"k", encode(c)) for c in certs],
            )
            results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=1)
            await wait_for(
                conn, "SELECT count(*) FROM decision WHERE certification_id = 'H1'", bool
            )

        assert await conn.fetchval("SELECT count(*) FROM comparison_evidence") == 2
        row = await conn.fetchrow(
            "SELECT via, topic, raw IS NOT NULL AS raw FROM comparison_evidence"
            " WHERE evidence_id = 'MZ-1'"
        )
        assert row is not None
        assert (row["via"], row["topic"], row["raw"]) == ("topic", topic, True)
        assert await conn.fetchval("SELECT count(*) FROM evidence_review_item") == 1

        letters = [json.loads(r.value) for r in dead]
        assert len(letters) == 2
        errors = " ".join(e for d in letters for e in d["errors"])
        assert "event_date" in errors
        assert "already received with different content" in errors

        outcomes = {json.loads(r.value)["certification_id"] for r in results}
        assert outcomes == {"H2"}
        held = await conn.fetchrow(
            "SELECT review_reason, evidence FROM decision WHERE certification_id = 'H1'"
        )
        assert held is not None
        assert held["review_reason"] == "comparison_evidence"
        recorded = held["evidence"]["comparison_evidence"]
        assert [(e["evidence_id"], e["state"]) for e in recorded] == [("MZ-1", "open")]

        period = Period.of(CycleMode.CALENDAR_YEAR, today.year, today)
        judged = await person_rows(conn, period, [dead_person.id_number, alive.id_number])
        assert judged[dead_person.id_number].status.value == "pending_review"
        assert judged[alive.id_number].status.value == "certified"
    finally:
        await conn.close()
