"""The traffic of a fault schedule: certifications that must end in a result, in a review
item (a death on record) or in a dead letter (bytes that are not a certification), and
staff decisions that make a second revision of some results."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from certrecon.domain import Channel, Outcome, RosterRecord
from certrecon.errors import ReviewError
from certrecon.settings import Settings
from certrecon.store import db
from certrecon.store.review import decide
from certrecon.store.roster import import_roster
from certrecon.worker.kafka import make_producer
from tests.support import certification, eligible_roster, encode


@dataclass
class LoadStats:
    produced: int = 0
    valid: int = 0
    review: int = 0
    poison: int = 0
    send_failures: int = 0
    """Sends reported failed and sent again (the first may still be in the log)."""
    decisions: int = 0
    corrections: int = 0
    decision_failures: int = 0
    decided: set[str] = field(default_factory=set)


class Load:
    """Produces certifications at ``rate`` per second until stopped."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        direct_dsn: str,
        rng: random.Random,
        *,
        people: int = 3000,
        rate: float = 40.0,
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.direct_dsn = direct_dsn
        self.rng = rng
        self.rate = rate
        self.stats = LoadStats()
        roster = eligible_roster(people, seed=rng.randrange(1 << 30))
        # One person in ten has a death on record: their certifications go to staff.
        self.deceased = {p.id_number for p in roster[: people // 10]}
        self.roster = [
            dataclasses.replace(p, deceased_on=dt.date(2024, 3, 1))
            if p.id_number in self.deceased
            else p
            for p in roster
        ]
        self._next = 0
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def import_roster(self) -> None:
        conn = await db.connect(self.direct_dsn)
        try:
            await import_roster(conn, self.roster)
        finally:
            await conn.close()

    def _message(self, now: dt.datetime) -> tuple[str, bytes, bytes, str]:
        self._next += 1
        n = self._next
        channels = list(Channel)
        channel = channels[n % len(channels)]
        topic = self.settings.channel_topics[channel]
        if self.rng.random() < 0.03:
            return topic, b"poison", b"\x00not a certification %d" % n, "poison"
        person = self.rng.choice(self.roster)
        kind = "review" if person.id_number in self.deceased else "valid"
        # Some certifications are days old, so open ones (waiting for staff) raise SLA
        # alerts: at risk or breached.
        age = self.rng.choice([dt.timedelta(hours=1)] * 6 + [dt.timedelta(days=6)])
        body = certification(f"F{n:09d}", channel, person, now - age)
        return topic, person.id_number.encode(), encode(body), kind

    async def _producer_started(self) -> AIOKafkaProducer:
        async with self._starting:
            while self._producer is None:
                producer = make_producer(self.bootstrap)
                try:
                    await asyncio.wait_for(producer.start(), 20)
                except (KafkaError, OSError, TimeoutError):
                    await producer.stop()
                    self.stats.send_failures += 1
                    await asyncio.sleep(0.5)
                else:
                    self._producer = producer
            return self._producer

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        """Send until acknowledged; a failed send is sent again (it may be in the log
        already: then the worker sees a duplicate or a second poison record)."""
        while True:
            producer = await self._producer_started()
            try:
                await asyncio.wait_for(producer.send_and_wait(topic, value, key=key), 45)
                return
            except (KafkaError, OSError, TimeoutError):
                self.stats.send_failures += 1
                await asyncio.sleep(0.2)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                now = dt.datetime.now(dt.UTC)
                burst = max(1, int(self.rate / 4))
                batch = [self._message(now) for _ in range(burst)]
                await asyncio.gather(*(self._send(t, k, v) for t, k, v, _ in batch))
                for *_, kind in batch:
                    self.stats.produced += 1
                    setattr(self.stats, kind, getattr(self.stats, kind) + 1)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)
        finally:
            if self._producer is not None:
                await self._producer.stop()

    async def staff(self, stop: asyncio.Event) -> None:
        """Decide some review items (revision 1), then correct a few (revision 2)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            try:
                conn = await asyncpg.connect(self.direct_dsn, timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                self.stats.decision_failures += 1
                continue
            try:
                await self._decide_some(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                self.stats.decision_failures += 1
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)

    async def _decide_some(self, conn: asyncpg.Connection) -> None:
        waiting: Sequence[str] = await conn.fetchval(
            """
            SELECT coalesce(array_agg(certification_id ORDER BY certification_id), '{}')
            FROM (SELECT i.certification_id FROM review_item i
                  WHERE NOT EXISTS (SELECT 1 FROM result r
                                    WHERE r.certification_id = i.certification_id)
                  LIMIT 200) w
            """
        )
        now = dt.datetime.now(dt.UTC)
        for cid in self.rng.sample(list(waiting), min(3, len(waiting))):
            await self._decide(conn, cid, Outcome.QUALIFIED, now)
            self.stats.decisions += 1
            self.stats.decided.add(cid)
            if self.rng.random() < 0.5:
                await self._decide(conn, cid, Outcome.ELIGIBILITY_LOST, now)
                self.stats.corrections += 1

    async def _decide(
        self, conn: asyncpg.Connection, cid: str, outcome: Outcome, now: dt.datetime
    ) -> None:
        try:
            await decide(
                conn,
                cid,
                outcome=outcome,
                staff_id="chaos.staff",
                note=None,
                now=now,
                topic=self.settings.result_topic,
            )
        except ReviewError:
            self.stats.decision_failures += 1


def people_ids(roster: Sequence[RosterRecord]) -> set[str]:
    return {p.id_number for p in roster}
