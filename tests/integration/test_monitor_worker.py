"""The monitor, the health listener and staff review inside a real worker, in travelled time."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json

from certrecon.calendar import compute_deadline, default_calendar
from certrecon.domain import CST, Channel, Outcome
from certrecon.embedded.broker import free_port
from certrecon.store import db
from certrecon.store.review import decide
from certrecon.store.roster import import_roster
from certrecon.synthetic import make_roster
from tests.integration.test_health import http
from tests.support import (
    Clock,
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


async def test_alerts_metrics_and_a_late_staff_decision_through_the_worker(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    port = free_port()
    settings = isolated_settings(http_port=port, monitor_interval_seconds=0.1)
    await create_topics(settings, kafka_bootstrap)
    real_now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    people = make_roster(2, seed=11, region="110105")
    people[0] = dataclasses.replace(
        people[0], deceased_on=real_now.astimezone(CST).date() - dt.timedelta(days=30)
    )
    conn = await db.connect(fresh_database)
    try:
        await import_roster(conn, people)
        certified_at = real_now - dt.timedelta(minutes=5)
        due = compute_deadline(certified_at, default_calendar())
        clock = Clock(real_now)
        t = settings.channel_topics[Channel.ESSC]
        await produce(
            kafka_bootstrap,
            [
                (t, p.id_number.encode(), encode(certification(cid, Channel.ESSC, p, certified_at)))
                for cid, p in (("DEAD1", people[0]), ("OK1", people[1]))
            ],
        )
        async with running_worker(settings, fresh_database, kafka_bootstrap, clock=clock) as worker:
            # OK1 is answered by the rules; DEAD1 waits for a person.
            await wait_for(
                conn,
                "SELECT count(*) FROM certification_return",
                lambda n: n == 1,
            )
            await wait_for(conn, "SELECT count(*) FROM review_item", lambda n: n == 1)
            ready = await wait_for_http(port, "/readyz", 200)
            assert ready["status"] == "ready"

            # The morning of the due date: at risk, published once.
            clock.now = dt.datetime.combine(due.due_date, dt.time(9, 0), CST)
            await wait_for(conn, "SELECT count(*) FROM sla_alert", lambda n: n == 1)
            # The day after: breached.
            clock.now = due.deadline + dt.timedelta(hours=9)
            await wait_for(conn, "SELECT count(*) FROM sla_alert", lambda n: n == 2)
            alerts = await read_topic(kafka_bootstrap, settings.sla_alert_topic, at_least=2)
            bodies = [json.loads(r.value) for r in alerts]
            assert sorted((b["alert_id"], b["level"]) for b in bodies) == [
                ("DEAD1:at_risk", "at_risk"),
                ("DEAD1:breached", "breached"),
            ]
            assert {r.key for r in alerts} == {b"DEAD1"}
            assert all(b["due_date"] == due.due_date.isoformat() for b in bodies)

            status, _, body = await http(port, "/metrics")
            text = body.decode()
            assert status == 200
            assert 'certrecon_open_certifications{channel="essc",level="breached"} 1.0' in text
            assert 'certrecon_sla_alerts_total{level="breached"} 1.0' in text
            assert "certrecon_monitor_active 1.0" in text
            assert worker.metrics.monitor_runs._value.get() >= 2

            # A staff member decides, late: the result goes out, and the return is late.
            await decide(
                conn,
                "DEAD1",
                outcome=Outcome.ELIGIBILITY_LOST,
                staff_id="wang01",
                note=None,
                now=clock.now,
                topic=settings.result_topic,
            )
            on_time = await wait_for(
                conn,
                "SELECT r.returned_at < d.deadline FROM certification_return r"
                " JOIN certification_deadline d USING (certification_id)"
                " WHERE certification_id = 'DEAD1'",
                lambda v: v is not None,
            )
            assert on_time is False
            results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=2)
            staff = [json.loads(r.value) for r in results if r.key == people[0].id_number.encode()]
            assert [(b["result_id"], b["decided_by"]) for b in staff] == [
                ("DEAD1:1", "staff:wang01")
            ]
    finally:
        await conn.close()
    # Each alert once, though the monitor ticked many times.
    assert len(alerts) == 2


async def wait_for_http(
    port: int, path: str, status: int, seconds: float = 30
) -> dict[str, object]:
    async with asyncio.timeout(seconds):
        while True:
            try:
                got, _, body = await http(port, path)
            except OSError:
                got, body = 0, b""
            if got == status:
                parsed: dict[str, object] = json.loads(body)
                return parsed
            await asyncio.sleep(0.1)


async def test_two_replicas_and_a_restart_raise_each_alert_once(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    settings = isolated_settings(monitor_interval_seconds=0.05)
    await create_topics(settings, kafka_bootstrap)
    real_now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    today = real_now.astimezone(CST).date()
    people = [
        dataclasses.replace(p, deceased_on=today - dt.timedelta(days=30))
        for p in eligible_roster(3, seed=5)
    ]
    conn = await db.connect(fresh_database)
    try:
        await import_roster(conn, people)
        certified_at = real_now - dt.timedelta(minutes=5)
        due = compute_deadline(certified_at, default_calendar())
        t = settings.channel_topics[Channel.APP_12333]
        await produce(
            kafka_bootstrap,
            [
                (
                    t,
                    p.id_number.encode(),
                    encode(certification(f"R{i}", Channel.APP_12333, p, certified_at)),
                )
                for i, p in enumerate(people)
            ],
        )
        clock = Clock(real_now)
        async with running_worker(settings, fresh_database, kafka_bootstrap, clock=clock):
            async with running_worker(settings, fresh_database, kafka_bootstrap, clock=clock):
                await wait_for(conn, "SELECT count(*) FROM review_item", lambda n: n == 3)
                clock.now = dt.datetime.combine(due.due_date, dt.time(9, 0), CST)
                await wait_for(conn, "SELECT count(*) FROM sla_alert", lambda n: n == 3)
                # Both replicas keep ticking in the at-risk window.
                await asyncio.sleep(0.5)
            # One replica stopped; the other carries on, then a fresh one starts.
            clock.now = due.deadline + dt.timedelta(hours=1)
            await wait_for(conn, "SELECT count(*) FROM sla_alert", lambda n: n == 6)
        async with running_worker(settings, fresh_database, kafka_bootstrap, clock=clock):
            await asyncio.sleep(0.5)
            await wait_for(conn, "SELECT count(*) FROM outbox_backlog", lambda n: n == 0)
        alerts = await read_topic(kafka_bootstrap, settings.sla_alert_topic, at_least=6)
        ids = sorted(json.loads(r.value)["alert_id"] for r in alerts)
        assert ids == sorted(f"R{i}:{level}" for i in range(3) for level in ("at_risk", "breached"))
    finally:
        await conn.close()
