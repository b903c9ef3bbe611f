"""Every message the service queues for publishing matches its shipped schema: results by
the rules and by staff, dead letters of every kind, SLA alerts of both levels."""

from __future__ import annotations

import dataclasses
import datetime as dt

import asyncpg

from certrecon.calendar import default_calendar
from certrecon.contract.validate import check_bytes
from certrecon.domain import Channel, Outcome
from certrecon.store.review import decide
from certrecon.store.roster import import_roster
from certrecon.worker.monitor import run_monitor
from certrecon.worker.pipeline import Inbound, PipelineConfig, commit_batch, prepare_batch
from tests.support import certification, eligible_roster, encode, isolated_settings

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
SCHEMA_OF_KIND = {"result": "result", "dead_letter": "dead-letter", "sla_alert": "sla-alert"}


async def test_every_queued_message_matches_its_schema(conn: asyncpg.Connection) -> None:
    settings = isolated_settings()
    config = PipelineConfig(
        topic_channels=settings.topic_channels(),
        region_prefix="11",
        result_topic=settings.result_topic,
        dead_letter_topic=settings.dead_letter_topic,
        group_id=settings.group_id,
        working_days=5,
        max_skew=dt.timedelta(minutes=10),
    )
    topic_of = {c: t for t, c in config.topic_channels.items()}
    people = eligible_roster(8, seed=41)
    roster = list(people)
    roster[1] = dataclasses.replace(people[1], deceased_on=dt.date(2026, 10, 1))
    roster[2] = dataclasses.replace(people[2], name=people[2].name + "明")
    roster[3] = dataclasses.replace(people[3], first_paid_on=dt.date(2026, 3, 1))
    await import_roster(conn, roster)
    when = NOW - dt.timedelta(hours=2)
    channels = list(Channel)
    bodies = [
        certification(
            f"M{i}", channels[i % 4], p, when, **({"face_match": "fail"} if i == 4 else {})
        )
        for i, p in enumerate(people[:6])
    ]
    bodies.append(
        certification("M6", Channel.CONSULAR, people[6], when, residence={"country": "CN"})
    )
    bodies.append(
        certification("M7", Channel.ESSC, people[7], when, subject={"id_number": "x", "name": ""})
    )
    ts = int(NOW.timestamp() * 1000)
    records = [
        Inbound(
            topic_of[Channel(b["channel"])], 0, i, ts, b["subject"]["id_number"].encode(), encode(b)
        )
        for i, b in enumerate(bodies)
    ]
    essc = topic_of[Channel.ESSC]
    records += [
        Inbound(essc, 1, 0, ts, None, b"\xff\xfe not json"),
        Inbound(essc, 1, 1, -1, b"k", None),  # a tombstone without a timestamp
        # M0 again with other content: the first one stands, this one is dead-lettered.
        Inbound(essc, 1, 2, ts, None, encode({**bodies[0], "face_match": "fail"})),
    ]
    batch = await prepare_batch(conn, records, config=config, calendar=default_calendar(), now=NOW)
    await commit_batch(conn, batch, config=config)

    # Staff decide the review case, then correct a rules result (revision 2).
    await decide(
        conn, "M1", outcome=Outcome.ELIGIBILITY_LOST, staff_id="S-7", note="checked",
        now=NOW, topic=settings.result_topic,
    )  # fmt: skip
    await decide(
        conn, "M2", outcome=Outcome.QUALIFIED, staff_id="li.wei@example", note=None,
        now=NOW, topic=settings.result_topic,
    )  # fmt: skip
    # Nothing was published, so every certification is still open: at risk just before
    # the first deadline, breached after it.
    due = await conn.fetchval("SELECT min(deadline) FROM certification")
    for at in (due - dt.timedelta(hours=1), due + dt.timedelta(days=3)):
        await run_monitor(conn, calendar=default_calendar(), now=at, topic=settings.sla_alert_topic)

    rows = await conn.fetch("SELECT message_id, kind, payload FROM outbox ORDER BY message_id")
    kinds = {r["kind"] for r in rows}
    assert kinds == set(SCHEMA_OF_KIND)
    for r in rows:
        assert check_bytes(SCHEMA_OF_KIND[r["kind"]], bytes(r["payload"])) == [], r["message_id"]
    ids = {r["message_id"] for r in rows}
    assert {"M0:1", "M1:1", "M2:1", "M2:2", "M6:1", "M7:1"} <= ids
    assert {"M3:at_risk", "M3:breached"} <= ids
    assert sum(r["kind"] == "dead_letter" for r in rows) == 5
