"""``certrecon demo``: the whole flow on embedded services with synthetic data.

A synthetic roster of about 1,000 people is loaded; certifications are pushed on all four
channel topics, built so that every outcome occurs (and a review-queue case, a dead letter
without a usable certification_id and an invalid record); the worker runs until every
certification is answered or queued for review; then a summary is printed.

The demo keeps its data where every other command looks: the embedded PostgreSQL under
the data directory (``./.certrecon`` or ``CERTRECON_DATA_DIR``), so ``certrecon sla`` or
``certrecon review list`` afterwards show what it did. The database is marked as the
demo's; a later demo resets a marked database only, and refuses to touch one holding
anything the demo did not put there. The embedded broker keeps messages in memory only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certrecon.cycle.lists import CycleSummary
from certrecon.cycle.status import Period
from certrecon.domain import CST, Channel, RosterRecord, RosterStatus
from certrecon.embedded import EmbeddedBroker, EmbeddedPostgres
from certrecon.errors import InputError
from certrecon.logs import get_logger, mask_id
from certrecon.settings import Settings
from certrecon.store import db
from certrecon.store.cycle import cycle_summary
from certrecon.store.db import Conn
from certrecon.store.migrations import migrate
from certrecon.store.roster import import_roster
from certrecon.synthetic import certification_message, make_roster
from certrecon.worker import kafka
from certrecon.worker.bootstrap import build_worker

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Scenario:
    roster: list[RosterRecord]
    messages: list[tuple[str, bytes | None, bytes]]
    """(topic, key, value) to push."""
    expected_certifications: int
    """How many messages carry a usable certification_id (each gets a result or review)."""
    expected_evidence: int = 0
    """How many comparison evidence messages are valid (each is recorded)."""


MIN_PEOPLE = 110
"""The scenario gives the first 103 people of the roster a part to play."""


def build_scenario(
    settings: Settings, now: dt.datetime, *, people: int = 1000, seed: int = 20261127
) -> Scenario:
    if people < MIN_PEOPLE:
        raise ValueError(f"the demo needs a roster of at least {MIN_PEOPLE} people")
    rng = random.Random(seed)
    everyone = make_roster(people + 40, seed=seed, region="110105")
    roster, strangers = everyone[:people], everyone[people:]
    cycle_year = now.astimezone(CST).year
    cutoff = dt.date(cycle_year - 1, 12, 31)
    today = now.astimezone(CST).date()

    def adjust(i: int, **changes: Any) -> RosterRecord:
        roster[i] = dataclasses.replace(roster[i], **changes)
        return roster[i]

    # Make every outcome occur: a few people with each kind of local record.
    for i in range(0, 15):
        adjust(i, status=RosterStatus.TERMINATED)
    for i in range(15, 30):
        adjust(i, first_paid_on=cutoff + dt.timedelta(days=30))
    for i in range(30, 38):
        adjust(i, deceased_on=today - dt.timedelta(days=40))
    for i in range(38, 44):
        adjust(i, imprisoned_from=today - dt.timedelta(days=200), imprisoned_until=None)
    for i in range(44, 60):
        adjust(i, status=RosterStatus.SUSPENDED)

    channels = list(Channel)
    messages: list[tuple[str, bytes | None, bytes]] = []
    expected = 0

    def push(channel: Channel, body: dict[str, Any], key: str) -> None:
        nonlocal expected
        value = json.dumps(body, ensure_ascii=False).encode()
        messages.append((settings.channel_topics[channel], key.encode(), value))
        expected += 1

    for i, person in enumerate(roster):
        channel = channels[i % 4]
        when = now - dt.timedelta(minutes=rng.randint(5, 60 * 24 * 6))
        body = certification_message(f"DEMO{today:%Y%m%d}{i:06d}", channel, person, when)
        if 60 <= i < 80:
            body["subject"]["name"] = person.name + "明"  # another person with the same ID
        elif 80 <= i < 100:
            body["face_match"] = "fail"
        push(channel, body, person.id_number)
    for j, stranger in enumerate(strangers[:20]):
        channel = channels[j % 4]
        cid = f"DEMO{today:%Y%m%d}X{j:05d}"
        body = certification_message(cid, channel, stranger, now - dt.timedelta(hours=j + 1))
        push(channel, body, stranger.id_number)
    for j, stranger in enumerate(strangers[20:30]):
        channel = channels[j % 4]
        cid = f"DEMO{today:%Y%m%d}R{j:05d}"
        body = certification_message(
            cid, channel, stranger, now - dt.timedelta(hours=j + 1), insured_region="310104"
        )
        push(channel, body, stranger.id_number)
    # Invalid records: a wrong check character, a consular certification from China, and a
    # message on the wrong channel topic.
    bad_id = roster[100].id_number[:-1] + ("0" if roster[100].id_number[-1] != "0" else "1")
    body = certification_message(f"DEMO{today:%Y%m%d}B00001", Channel.APP_12333, roster[100], now)
    body["subject"]["id_number"] = bad_id
    push(Channel.APP_12333, body, bad_id)
    body = certification_message(f"DEMO{today:%Y%m%d}B00002", Channel.CONSULAR, roster[101], now)
    body["residence"] = {"country": "CN"}
    push(Channel.CONSULAR, body, roster[101].id_number)
    body = certification_message(f"DEMO{today:%Y%m%d}B00003", Channel.ESSC, roster[102], now)
    push(Channel.NATIONAL_PLATFORM, body, roster[102].id_number)
    # Undecodable: no usable certification_id, so a dead letter only.
    messages.append((settings.channel_topics[Channel.ESSC], None, b"\xff\xfenot json"))
    evidence = _comparison_evidence(settings, roster, now)
    messages.extend(evidence)
    return Scenario(roster, messages, expected, len(evidence))


def _comparison_evidence(
    settings: Settings, roster: list[RosterRecord], now: dt.datetime
) -> list[tuple[str, bytes | None, bytes]]:
    """Big-data comparison evidence: proof of life for people whose certification failed
    (silent certification), a death and an imprisonment to verify person by person."""
    today = now.astimezone(CST).date()
    observed = (now - dt.timedelta(hours=2)).astimezone(CST).isoformat()

    def message(n: int, kind: str, person: RosterRecord, day: dt.date, source: str) -> bytes:
        body = {
            "schema_version": 1,
            "evidence_id": f"DEMO-{today:%Y%m%d}-{n:04d}",
            "kind": kind,
            "subject": {
                "id_type": "resident_id",
                "id_number": person.id_number,
                "name": person.name,
            },
            "event_date": day.isoformat(),
            "source": source,
            "observed_at": observed,
        }
        return json.dumps(body, ensure_ascii=False).encode()

    found = [
        (i, "proof_of_life", roster[i], today - dt.timedelta(days=i % 60), "transport:rail_travel")
        for i in range(60, 95)
    ]
    found.append(
        (103, "death", roster[103], today - dt.timedelta(days=12), "civil_affairs:cremation")
    )
    found.append(
        (104, "imprisonment", roster[104], today - dt.timedelta(days=30), "justice:prison")
    )
    topic = settings.comparison_topic
    return [
        (topic, person.id_number.encode(), message(i, kind, person, day, source))
        for i, kind, person, day, source in found
    ]


async def _wait_for_evidence(conn: Conn, expected: int) -> None:
    """Wait (bounded) until the demo's comparison evidence is recorded."""
    async with asyncio.timeout(60):
        while True:
            if await conn.fetchval("SELECT count(*) FROM comparison_evidence") >= expected:
                return
            await asyncio.sleep(0.2)


async def wait_until_settled(conn: Conn, expected: int) -> None:
    """Wait until every certification has a result or a review item and nothing is unsent."""
    while True:
        row = await conn.fetchrow(
            """
            SELECT
              (SELECT count(*) FROM certification c
                WHERE EXISTS (SELECT 1 FROM result r WHERE r.certification_id = c.certification_id)
                   OR EXISTS (SELECT 1 FROM review_item q
                               WHERE q.certification_id = c.certification_id)) AS settled,
              (SELECT count(*) FROM outbox_backlog) AS pending
            """
        )
        assert row is not None
        if row["settled"] >= expected and row["pending"] == 0:
            return
        log.debug("waiting", settled=row["settled"], expected=expected, unsent=row["pending"])
        await asyncio.sleep(0.2)


@dataclass(frozen=True, slots=True)
class Summary:
    by_channel_outcome: dict[tuple[str, str], int]
    due_dates: list[tuple[dt.date, int, bool]]
    reviews: list[dict[str, Any]]
    dead_letters: int
    results_published: int
    answered: tuple[str, str] | None = None
    """(certification_id, certified_at as sent) of a certification the rules answered."""
    cycle: CycleSummary | None = None
    """The certification cycle of this year, as of today (``cycle_period``)."""
    cycle_period: Period | None = None


async def summarise(conn: Conn) -> Summary:
    rows = await conn.fetch(
        """
        SELECT c.channel, coalesce(r.outcome, 'review:' || q.reason) AS outcome, count(*) AS n
        FROM certification c
        LEFT JOIN result r ON r.certification_id = c.certification_id AND r.revision = 1
        LEFT JOIN review_item q ON q.certification_id = c.certification_id
        GROUP BY 1, 2
        """
    )
    dues = await conn.fetch(
        """
        SELECT due_date, count(*) AS n, bool_or(provisional) AS provisional
        FROM certification GROUP BY due_date ORDER BY due_date
        """
    )
    reviews = await conn.fetch(
        """
        SELECT q.certification_id, q.reason, c.id_number, c.due_date, c.channel
        FROM review_item q JOIN certification c USING (certification_id)
        WHERE NOT EXISTS (SELECT 1 FROM staff_decision s
                          WHERE s.certification_id = q.certification_id)
        ORDER BY c.deadline, q.certification_id
        """
    )
    counts = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE kind = 'dead_letter') AS dead,
               count(*) FILTER (WHERE kind = 'result') AS results
        FROM outbox o JOIN outbox_ack a USING (message_id)
        """
    )
    # A name that differs from the roster: the most telling answer to look at afterwards.
    answered = await conn.fetchrow(
        """
        SELECT c.certification_id, c.certified_at_raw
        FROM certification c JOIN result r USING (certification_id)
        WHERE c.valid AND r.revision = 1
        ORDER BY r.outcome <> 'identity_mismatch', c.certification_id
        LIMIT 1
        """
    )
    assert counts is not None
    return Summary(
        {(r["channel"], r["outcome"]): r["n"] for r in rows},
        [(r["due_date"], r["n"], r["provisional"]) for r in dues],
        [
            {
                "certification_id": r["certification_id"],
                "reason": r["reason"],
                "id_number": mask_id(r["id_number"]),
                "due_date": r["due_date"].isoformat(),
                "channel": r["channel"],
            }
            for r in reviews
        ],
        counts["dead"],
        counts["results"],
        None if answered is None else (answered["certification_id"], answered["certified_at_raw"]),
    )


DEMO_MARKER = "certrecon-demo.json"
"""A file the demo writes into the PostgreSQL data directory it created or took over."""


class DemoDataError(InputError):
    """The data directory holds a database the demo must not reset or fill."""


async def _foreign_rows(conn: Conn, demo_people: int | None) -> int:
    """Rows the demo did not put there: certifications not named DEMO…, roster entries
    beyond the ``demo_people`` it imported, any calendar override or published year; in a
    database that is not the demo's (``demo_people`` None), every certification and roster
    entry."""
    if await conn.fetchval("SELECT to_regclass('certification') IS NULL"):
        return 0  # not migrated yet: nothing in it
    found: int = await conn.fetchval(
        """
        SELECT (SELECT count(*) FROM certification
                 WHERE $1::int IS NULL OR certification_id NOT LIKE 'DEMO%')
             + greatest((SELECT count(DISTINCT id_number) FROM roster) - coalesce($1, 0), 0)
             + (SELECT count(*) FROM calendar_override)
             + (SELECT count(*) FROM calendar_published_year)
        """,
        demo_people,
    )
    return found


def _demo_people(pgdata: Path) -> int | None:
    """The roster size the marker records, or None when ``pgdata`` is not the demo's."""
    try:
        note = json.loads((pgdata / DEMO_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    people = note.get("people") if isinstance(note, dict) else None
    return people if isinstance(people, int) and not isinstance(people, bool) else None


async def prepare_database(pg: EmbeddedPostgres, notify: Callable[[str], None]) -> None:
    """Make the embedded PostgreSQL in ``pg.pgdata`` ready for a demo, or refuse.

    Nothing there yet, or an empty database: the demo uses it. A database an earlier demo
    left (it carries :data:`DEMO_MARKER`) holding nothing else: reset, saying so. Anything
    else raises :class:`DemoDataError` and changes nothing.
    """
    if not pg.initialised:
        return
    demo_people = _demo_people(pg.pgdata)
    with EmbeddedPostgres(pg.pgdata) as probe:
        conn = await db.connect(probe.dsn)
        try:
            foreign = await _foreign_rows(conn, demo_people)
        finally:
            await conn.close()
    elsewhere = "run the demo in another folder, or set CERTRECON_DATA_DIR to another directory"
    if foreign:
        raise DemoDataError(
            f"{pg.pgdata} holds a database with {foreign} rows (certifications, roster "
            "entries, calendar overrides) that certrecon demo did not create; the demo leaves "
            f"it alone: {elsewhere}"
        )
    pid = pg.running_pid()
    if pid is not None:
        raise DemoDataError(
            f"the database in {pg.pgdata} is in use by a running PostgreSQL (pid {pid}); "
            f"stop what uses it (e.g. certrecon run) and try again, or {elsewhere}"
        )
    if demo_people is None:
        return  # empty: the demo fills it and marks it as its own
    notify(f"Resetting the database an earlier demo left in {pg.pgdata}.")
    shutil.rmtree(pg.pgdata)


def _mark(pg: EmbeddedPostgres, now: dt.datetime, people: int) -> None:
    note = {"created_by": "certrecon demo", "at": now.isoformat(), "people": people}
    (pg.pgdata / DEMO_MARKER).write_text(json.dumps(note) + "\n", encoding="utf-8")


async def run_demo(
    settings: Settings,
    *,
    people: int = 1000,
    notify: Callable[[str], None] = lambda _: None,
) -> Summary:
    """Run the demo in ``settings.data_dir``; ``notify`` hears about a reset database."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pg_home = EmbeddedPostgres.under(settings.data_dir)
    await prepare_database(pg_home, notify)
    with (
        EmbeddedPostgres(pg_home.pgdata) as pg,
        EmbeddedBroker(settings.data_dir / "broker") as broker,
    ):
        demo_settings = dataclasses.replace(settings, http_port=None)
        now = dt.datetime.now(dt.UTC)
        _mark(pg, now, people)
        scenario = build_scenario(demo_settings, now, people=people)
        conn = await db.connect(pg.dsn)
        try:
            await migrate(conn)
            await import_roster(conn, scenario.roster)
            await kafka.ensure_topics(
                broker.bootstrap, demo_settings.all_topics(), demo_settings.topic_partitions
            )
            await kafka.publish(broker.bootstrap, scenario.messages)
            stop = asyncio.Event()
            worker = build_worker(demo_settings, dsn=pg.dsn, bootstrap=broker.bootstrap)
            running = asyncio.create_task(worker.run(stop), name="demo-worker")
            waiting = asyncio.create_task(
                asyncio.wait_for(
                    wait_until_settled(conn, scenario.expected_certifications), timeout=300
                ),
                name="demo-wait",
            )
            done, _ = await asyncio.wait([running, waiting], return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            if running in done:
                waiting.cancel()
                await running  # raises the worker's error
                raise RuntimeError("the worker stopped before the demo finished")
            await waiting
            await _wait_for_evidence(conn, scenario.expected_evidence)
            await running
            summary = await summarise(conn)
            today = now.astimezone(CST).date()
            period = Period.of(settings.cycle_mode, today.year, today)
            return dataclasses.replace(
                summary,
                cycle=await cycle_summary(conn, period),
                cycle_period=period,
            )
        finally:
            await conn.close()


__all__ = [
    "DEMO_MARKER",
    "MIN_PEOPLE",
    "DemoDataError",
    "Scenario",
    "Summary",
    "build_scenario",
    "prepare_database",
    "run_demo",
    "summarise",
]
