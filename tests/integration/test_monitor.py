"""The deadline monitor against a real PostgreSQL, at chosen instants (time travel)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import asyncpg
import pytest
import pytest_asyncio
import structlog

from certrecon.audit.verify import verify
from certrecon.calendar import default_calendar
from certrecon.settings import Settings
from certrecon.sla import Alert, SlaLevel, Window
from certrecon.store import db
from certrecon.store.calendar_overrides import add_override, publish_year
from certrecon.store.sla import count_open, in_level, raise_alerts
from certrecon.worker.metrics import Metrics
from certrecon.worker.monitor import DeadlineMonitor, run_monitor
from certrecon.worker.runtime import CalendarCell
from tests.integration.sla_support import add_certification, cst
from tests.support import Clock

TOPIC = "certrecon.sla-alert"


async def alerts(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch("SELECT alert_id, level FROM sla_alert ORDER BY alert_id")
    return [(r["alert_id"], r["level"]) for r in rows]


async def outbox_alerts(conn: asyncpg.Connection) -> list[dict[str, object]]:
    rows = await conn.fetch(
        "SELECT message_id, topic, key, payload FROM outbox WHERE kind = 'sla_alert' ORDER BY id"
    )
    found = []
    for r in rows:
        assert r["topic"] == TOPIC
        payload = json.loads(bytes(r["payload"]))
        assert payload["alert_id"] == r["message_id"]
        assert bytes(r["key"]) == payload["certification_id"].encode()
        found.append(payload)
    return found


async def run_at(conn: asyncpg.Connection, now: dt.datetime) -> list[tuple[str, str]]:
    report = await run_monitor(conn, calendar=default_calendar(), now=now, topic=TOPIC)
    return [(a.alert_id, a.level.value) for a in report.raised]


async def test_at_risk_when_due_today_or_next_working_day_and_breached_after_midnight(
    conn: asyncpg.Connection,
) -> None:
    # Monday 2024-06-03: the 5th working day is Tuesday 06-11, because Monday 06-10 is the
    # Dragon Boat Festival. So the next working day after Friday 06-07 is already the due date.
    await add_certification(conn, "C1", cst(2024, 6, 3, 10))
    row = await conn.fetchrow("SELECT due_date, deadline FROM certification")
    assert row is not None
    assert row["due_date"] == dt.date(2024, 6, 11)
    assert row["deadline"] == cst(2024, 6, 12)

    assert await run_at(conn, cst(2024, 6, 3, 10, 5)) == []
    assert await run_at(conn, cst(2024, 6, 6, 23, 59, 59)) == []
    assert await run_at(conn, cst(2024, 6, 7, 0, 0, 0)) == [("C1:at_risk", "at_risk")]
    # Once per level, whenever the monitor runs again.
    assert await run_at(conn, cst(2024, 6, 7, 9)) == []
    assert await run_at(conn, cst(2024, 6, 10, 9)) == []
    assert await run_at(conn, cst(2024, 6, 11, 23, 59, 59)) == []
    # 24:00 CST of the due date is the deadline itself: not passed yet at that instant.
    assert await run_at(conn, cst(2024, 6, 12, 0, 0, 0)) == []
    assert await run_at(conn, cst(2024, 6, 12, 0, 0, 1)) == [("C1:breached", "breached")]
    assert await run_at(conn, cst(2024, 6, 13, 9)) == []

    sent = await outbox_alerts(conn)
    assert [(p["alert_id"], p["working_days_left"]) for p in sent] == [
        ("C1:at_risk", 1),
        ("C1:breached", -1),
    ]
    assert sent[0] == {
        "schema_version": 1,
        "alert_id": "C1:at_risk",
        "level": "at_risk",
        "certification_id": "C1",
        "channel": "12333",
        "due_date": "2024-06-11",
        "deadline": "2024-06-12T00:00:00+08:00",
        "working_days_left": 1,
        "provisional": False,
        "raised_at": "2024-06-07T00:00:00+08:00",
    }


async def test_due_today_is_at_risk_with_zero_days_left(conn: asyncpg.Connection) -> None:
    # Asked for the first time on the due date itself (e.g. the monitor was down until then).
    await add_certification(conn, "C2", cst(2024, 6, 3, 10))
    assert await run_at(conn, cst(2024, 6, 11, 8)) == [("C2:at_risk", "at_risk")]
    (payload,) = await outbox_alerts(conn)
    assert payload["working_days_left"] == 0


async def test_a_certification_first_seen_after_its_deadline_is_only_breached(
    conn: asyncpg.Connection,
) -> None:
    await add_certification(conn, "C3", cst(2024, 6, 3, 10))
    assert await run_at(conn, cst(2024, 6, 14, 9)) == [("C3:breached", "breached")]
    assert await alerts(conn) == [("C3:breached", "breached")]


async def test_returned_certifications_raise_nothing(conn: asyncpg.Connection) -> None:
    await add_certification(conn, "C4", cst(2024, 6, 3, 10), returned_at=cst(2024, 6, 3, 11))
    assert await run_at(conn, cst(2024, 6, 11, 9)) == []
    assert await run_at(conn, cst(2024, 6, 20, 9)) == []


async def test_a_weekend_counts_toward_the_next_working_day(conn: asyncpg.Connection) -> None:
    # Tuesday 2024-06-25: due Tuesday 07-02. On Saturday 06-29 the next working day is
    # Monday 07-01, so not at risk yet; on Monday it is.
    await add_certification(conn, "C5", cst(2024, 6, 25, 15))
    assert await run_at(conn, cst(2024, 6, 29, 12)) == []
    assert await run_at(conn, cst(2024, 7, 1, 0, 0, 1)) == [("C5:at_risk", "at_risk")]


async def test_concurrent_runs_on_two_connections_raise_each_alert_once(
    fresh_database: str,
) -> None:
    setup = await db.connect(fresh_database)
    try:
        for i in range(300):
            await add_certification(setup, f"P{i:04d}", cst(2024, 6, 3, 10), offset=i)
        for i in range(200):
            await add_certification(setup, f"Q{i:04d}", cst(2024, 5, 20, 10), offset=300 + i)
    finally:
        await setup.close()
    replicas = [await db.connect(fresh_database) for _ in range(2)]
    try:
        now = cst(2024, 6, 7, 9)
        for _ in range(2):
            reports = await asyncio.gather(
                *(
                    run_monitor(c, calendar=default_calendar(), now=now, topic=TOPIC)
                    for c in replicas
                )
            )
            raised = [a.alert_id for r in reports for a in r.raised]
            assert len(raised) == len(set(raised))
        check = replicas[0]
        assert await check.fetchval("SELECT count(*) FROM sla_alert") == 500
        assert await check.fetchval("SELECT count(*) FROM outbox WHERE kind = 'sla_alert'") == 500
        rows = await check.fetch("SELECT level, count(*) AS n FROM sla_alert GROUP BY level")
        levels = {r["level"]: r["n"] for r in rows}
        assert levels == {"at_risk": 300, "breached": 200}
        # Each run recorded the digests of exactly the alerts and messages it inserted.
        assert (await verify(check)).intact
    finally:
        for c in replicas:
            await c.close()


async def test_an_alert_names_a_stored_certification(conn: asyncpg.Connection) -> None:
    await add_certification(conn, "K1", cst(2024, 6, 3, 10))
    window = Window.at(cst(2024, 6, 7, 9), default_calendar())
    known = Alert(
        "K1",
        SlaLevel.AT_RISK,
        "12333",
        dt.date(2024, 6, 11),
        cst(2024, 6, 12),
        1,
        False,
        window.now,
        b"K1",
    )
    unknown = replace(known, certification_id="K404", key=b"K404")
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="certification"):
        async with conn.transaction():
            await raise_alerts(conn, [known, unknown], topic=TOPIC)
    assert await alerts(conn) == []
    async with conn.transaction():
        assert await raise_alerts(conn, [known, known], topic=TOPIC) == [known]
    assert await alerts(conn) == [("K1:at_risk", "at_risk")]
    assert [a["alert_id"] for a in await outbox_alerts(conn)] == ["K1:at_risk"]
    assert (await verify(conn)).intact


@dataclass
class Replica:
    """What the monitor sees of the worker replica it runs in."""

    dsn: str
    clock: Clock
    settings: Settings = field(default_factory=Settings)
    metrics: Metrics = field(default_factory=Metrics)
    calendar: CalendarCell = field(default_factory=lambda: CalendarCell(default_calendar()))
    relay_woken: int = 0

    def wake_relay(self) -> None:
        self.relay_woken += 1


@pytest_asyncio.fixture
async def replicas(fresh_database: str) -> AsyncIterator[tuple[Clock, list[Replica]]]:
    clock = Clock(cst(2024, 6, 3, 10))
    yield clock, [Replica(fresh_database, clock) for _ in range(2)]


async def test_one_active_monitor_across_replicas_and_restarts(
    conn: asyncpg.Connection, replicas: tuple[Clock, list[Replica]]
) -> None:
    clock, (a, b) = replicas
    await add_certification(conn, "C6", cst(2024, 6, 3, 10))
    first, second = DeadlineMonitor(60), DeadlineMonitor(60)
    try:
        clock.now = cst(2024, 6, 7, 9)
        assert await first.tick(a) is not None
        assert await second.tick(b) is None
        assert first.active
        assert not second.active
        # The alert's outbox row is published now, not at the relay's next idle tick.
        assert (a.relay_woken, b.relay_woken) == (1, 0)
        assert a.metrics.monitor_active._value.get() == 1
        assert b.metrics.monitor_active._value.get() == 0
        # The passive replica still reports what it sees.
        gauge = b.metrics.open_certifications.labels("12333", "at_risk")
        assert gauge._value.get() == 1

        # The active replica stops (or dies): its connection closes, the other takes over.
        await first.close(a.metrics)
        clock.now = cst(2024, 6, 12, 9)
        report = await second.tick(b)
        assert report is not None
        assert [x.alert_id for x in report.raised] == ["C6:breached"]

        # A restart of the first replica: nothing is raised again.
        await second.close(b.metrics)
        restarted = DeadlineMonitor(60)
        report = await restarted.tick(a)
        assert report is not None
        assert report.raised == []
        await restarted.close(a.metrics)
    finally:
        await first.close()
        await second.close()
    assert await alerts(conn) == [("C6:at_risk", "at_risk"), ("C6:breached", "breached")]
    assert a.metrics.sla_alerts.labels("at_risk")._value.get() == 1
    assert b.metrics.sla_alerts.labels("breached")._value.get() == 1


async def test_gauges_from_a_tick(
    conn: asyncpg.Connection, replicas: tuple[Clock, list[Replica]]
) -> None:
    clock, (a, _) = replicas
    await add_certification(conn, "G1", cst(2024, 6, 3, 10), channel="essc")
    await add_certification(conn, "G2", cst(2024, 5, 27, 10), channel="essc")
    await add_certification(conn, "G3", cst(2024, 6, 6, 10), channel="consular")
    clock.now = cst(2024, 6, 7, 9)
    monitor = DeadlineMonitor(60)
    try:
        await monitor.tick(a)
    finally:
        await monitor.close()
    m = a.metrics

    def level(channel: str, name: str) -> float:
        value: float = m.open_certifications.labels(channel, name)._value.get()
        return value

    assert level("essc", "at_risk") == 1
    assert level("essc", "breached") == 1
    assert level("consular", "on_track") == 1
    assert level("national_platform", "on_track") == 0
    # G2 (Monday 05-27) is the oldest: 05-28 .. 06-07 hold 9 working days.
    assert m.oldest_open_working_days._value.get() == 9
    assert m.outbox_backlog.labels("sla_alert")._value.get() == 2
    assert m.monitor_last_run_age._value.get() == 0
    clock.now += dt.timedelta(seconds=90)
    m.refresh_ages(clock.now)
    assert m.monitor_last_run_age._value.get() == 90


async def test_deadlines_are_recomputed_when_the_schedule_arrives(
    conn: asyncpg.Connection, replicas: tuple[Clock, list[Replica]]
) -> None:
    clock, (a, _) = replicas
    # 2027's schedule is not published: a Monday 2026-12-28 certification is due, by the
    # estimate, on Tuesday 2027-01-05 (1 January off), provisionally.
    await add_certification(conn, "R1", cst(2026, 12, 28, 10))
    await add_certification(conn, "R2", cst(2026, 12, 28, 11), returned_at=cst(2026, 12, 28, 12))
    row = await conn.fetchrow(
        "SELECT due_date, provisional FROM certification WHERE certification_id = 'R1'"
    )
    assert row is not None
    assert (row["due_date"], row["provisional"]) == (dt.date(2027, 1, 5), True)
    clock.now = cst(2026, 12, 28, 12)
    monitor = DeadlineMonitor(60)
    try:
        await monitor.tick(a)
        await monitor.tick(a)  # no change: nothing recomputed
        assert a.metrics.deadlines_recomputed._value.get() == 0
        # The State Council schedule arrives: Monday 01-04 is a day off too, and 2027 is
        # declared published.
        await add_override(conn, dt.date(2027, 1, 4), False, "国办发明电〔2026〕1号")
        await publish_year(conn, 2027, "国办发明电〔2026〕1号")
        with structlog.testing.capture_logs() as logs:
            await monitor.tick(a)
        changes = [e for e in logs if e["event"] == "deadline recomputed"]
        assert [(e["certification_id"], e["due_date_before"], e["due_date"]) for e in changes] == [
            ("R1", "2027-01-05", "2027-01-06")
        ]
        assert changes[0]["provisional"] is False
        assert a.calendar.get().year_status(2027).value == "official"
        # Later ticks settle without moving anything again.
        await monitor.tick(a)
        await monitor.tick(a)
    finally:
        await monitor.close()
    rows = {
        r["certification_id"]: (r["due_date"], r["deadline"], r["provisional"])
        for r in await conn.fetch(
            "SELECT certification_id, due_date, deadline, provisional FROM certification_deadline"
        )
    }
    assert rows["R1"] == (dt.date(2027, 1, 6), cst(2027, 1, 7), False)
    # A returned certification keeps the deadline it was answered against.
    assert rows["R2"] == (dt.date(2027, 1, 5), cst(2027, 1, 6), True)
    assert a.metrics.deadlines_recomputed._value.get() == 1


async def test_an_override_on_a_published_year_moves_affected_deadlines(
    conn: asyncpg.Connection, replicas: tuple[Clock, list[Replica]]
) -> None:
    clock, (a, _) = replicas
    await add_certification(conn, "O1", cst(2024, 6, 3, 10))  # due 06-11
    await add_certification(conn, "O2", cst(2024, 6, 12, 10))  # due 06-19, window after 06-06
    clock.now = cst(2024, 6, 4, 12)
    monitor = DeadlineMonitor(60)
    try:
        await monitor.tick(a)
        # A typhoon: Thursday 06-06 declared a day off.
        await add_override(conn, dt.date(2024, 6, 6), False, "台风停工通知")
        await monitor.tick(a)
    finally:
        await monitor.close()
    rows = await conn.fetch("SELECT certification_id, due_date FROM certification_deadline")
    due = {r["certification_id"]: r["due_date"] for r in rows}
    assert due == {"O1": dt.date(2024, 6, 12), "O2": dt.date(2024, 6, 19)}


async def test_the_monitor_service_ticks_until_stopped(
    conn: asyncpg.Connection, replicas: tuple[Clock, list[Replica]]
) -> None:
    clock, (a, _) = replicas
    await add_certification(conn, "S1", cst(2024, 6, 3, 10))
    clock.now = cst(2024, 6, 12, 1)
    stop = asyncio.Event()
    monitor = DeadlineMonitor(0.05)
    task = asyncio.create_task(monitor(a, stop))
    for _ in range(200):
        if await conn.fetchval("SELECT count(*) FROM sla_alert"):
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert not monitor.active
    assert await alerts(conn) == [("S1:breached", "breached")]
    assert a.metrics.monitor_runs._value.get() >= 1


async def test_a_database_outage_does_not_kill_the_monitor(
    replicas: tuple[Clock, list[Replica]],
) -> None:
    _clock, (a, _) = replicas
    a.dsn = "postgresql://nobody@127.0.0.1:1/none"
    stop = asyncio.Event()
    monitor = DeadlineMonitor(0.05, connect_seconds=0.1)
    task = asyncio.create_task(monitor(a, stop))
    for _ in range(100):
        if a.metrics.monitor_errors._value.get() >= 2:
            break
        await asyncio.sleep(0.05)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert a.metrics.monitor_errors._value.get() >= 2


async def test_the_sql_levels_are_the_window_rule(conn: asyncpg.Connection) -> None:
    # Certifications on every weekday around a holiday and a weekend, at instants on both
    # sides of deadlines and of midnight: each falls in the level Window.level gives it.
    calendar = default_calendar()
    start = cst(2024, 5, 27, 10)
    for day in range(18):
        await add_certification(conn, f"L{day:02d}", start + dt.timedelta(days=day), offset=day)
    rows = await conn.fetch("SELECT certification_id, due_date, deadline FROM open_certification")
    assert len(rows) == 18
    for now in (
        cst(2024, 6, 6, 23, 59, 59),
        cst(2024, 6, 7, 0),
        cst(2024, 6, 9, 12),
        cst(2024, 6, 12, 0),
        cst(2024, 6, 12, 0, 0, 1),
        cst(2024, 6, 14, 17),
    ):
        window = Window.at(now, calendar)
        expected = {r["certification_id"]: window.level(r["due_date"], r["deadline"]) for r in rows}
        for level in SlaLevel:
            predicate = in_level(level, now="w.now", earliest="w.earliest", next_day="w.next")
            found = await conn.fetch(
                "WITH w (now, earliest, next) AS (SELECT $1::timestamptz, $2::date, $3::date) "
                f"SELECT certification_id FROM open_certification, w WHERE {predicate}",
                window.now,
                window.earliest_open_due,
                window.next_working_day,
            )
            assert {r["certification_id"] for r in found} == {
                c for c, at in expected.items() if at is level
            }, (now, level)
        counts = await count_open(conn, window)
        assert sum(c.count for c in counts) == 18
        for level in SlaLevel:
            assert sum(c.count for c in counts if c.level is level) == sum(
                1 for at in expected.values() if at is level
            ), (now, level)
