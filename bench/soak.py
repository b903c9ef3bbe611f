"""Soak: a steady load on one worker for a long time, watching for growth.

    python bench/soak.py --minutes 20 [--rate 100]

The worker runs in this process (so its asyncio tasks can be counted) against the
embedded PostgreSQL and broker; a separate process produces ``--rate`` certifications a
second. Every 10 s it samples the worker's RSS, open file descriptors and asyncio tasks,
PostgreSQL's connections to the database and the consumer lag. It prints every sample,
then the growth of each figure from the end of the warm-up (the first fifth of the run,
at least one minute when there is time) to the end (goal: under 10 %), and the lag at
each minute's end (goal: back to 0 every minute).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import (  # noqa: E402
    certification,
    create_topics,
    eligible_roster,
    encode,
    isolated_settings,
    running_worker,
)

from certrecon.embedded import EmbeddedBroker, EmbeddedPostgres  # noqa: E402
from certrecon.logs import configure  # noqa: E402
from certrecon.store import db  # noqa: E402
from certrecon.store.migrations import migrate  # noqa: E402
from certrecon.store.roster import import_roster  # noqa: E402
from certrecon.worker.kafka import make_producer  # noqa: E402

PEOPLE = 20_000
SAMPLE_SECONDS = 10.0


@dataclass
class Sample:
    at: float
    rss_mib: float
    fds: int
    tasks: int
    pg_connections: int
    lag: int
    answered: int


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def produce_forever(bootstrap: str, topics: list[str], rate: float, seed: int) -> None:
    """The load process: ``rate`` certifications a second until killed."""
    from certrecon.domain import Channel

    people = eligible_roster(PEOPLE, seed=seed)
    channels = list(Channel)
    producer = make_producer(bootstrap)
    await producer.start()
    n = 0
    try:
        started = time.monotonic()
        while True:
            now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            due = int((time.monotonic() - started) * rate)
            futures = []
            while n < due:
                person = people[n % len(people)]
                channel = channels[n % len(channels)]
                body = certification(f"S{n:010d}", channel, person, now)
                futures.append(
                    await producer.send(
                        topics[n % len(channels)], encode(body), key=person.id_number.encode()
                    )
                )
                n += 1
            if futures:
                await asyncio.gather(*futures)
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()


async def lag_of(worker: object) -> int:
    listener = getattr(worker, "listener", None)
    consumer = getattr(listener, "consumer", None)
    if consumer is None:
        return -1
    total = 0
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        with contextlib.suppress(Exception):
            total += max(0, high - await consumer.position(tp))
    return total


def growth(samples: list[Sample], field: str, warm: float) -> str:
    after = [s for s in samples if s.at >= warm]
    if len(after) < 2:
        return f"{field}: too few samples after warm-up"
    # The median of the first and last three samples, so one busy moment is not a trend.
    first = statistics.median(getattr(s, field) for s in after[:3])
    last = statistics.median(getattr(s, field) for s in after[-3:])
    pct = (last - first) / first * 100 if first else 0.0
    verdict = "ok" if pct < 10 else "ABOVE GOAL"
    return f"{field}: {first:g} → {last:g} ({pct:+.1f} %, goal < 10 %: {verdict})"


async def soak(minutes: float, rate: float, workdir: Path) -> int:
    settings = isolated_settings(topic_partitions=3, http_port=None)
    with EmbeddedPostgres(workdir / "pg") as pg, EmbeddedBroker(workdir / "broker") as broker:
        admin = await asyncpg.connect(pg.dsn)
        await admin.execute('CREATE DATABASE "soak"')
        await admin.close()
        dsn = pg.dsn.replace("/postgres?", "/soak?")
        conn = await db.connect(dsn)
        await migrate(conn)
        await import_roster(conn, eligible_roster(PEOPLE, seed=7))
        await create_topics(settings, broker.bootstrap)
        topics = [settings.channel_topics[c] for c in settings.channel_topics]
        load = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--produce",
                broker.bootstrap,
                "--rate",
                str(rate),
                *topics,
            ]
        )
        samples: list[Sample] = []
        lag_each_minute: list[tuple[int, int]] = []
        try:
            async with running_worker(settings, dsn, broker.bootstrap) as worker:
                started = time.monotonic()
                end = started + minutes * 60
                next_minute = 60.0
                while time.monotonic() < end:
                    await asyncio.sleep(SAMPLE_SECONDS)
                    at = time.monotonic() - started
                    s = Sample(
                        at,
                        rss_mib(),
                        open_fds(),
                        len(asyncio.all_tasks()),
                        await conn.fetchval(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'soak'"
                        )
                        - 1,
                        await lag_of(worker),
                        await conn.fetchval("SELECT count(*) FROM result"),
                    )
                    samples.append(s)
                    print(
                        f"{at:6.0f}s rss {s.rss_mib:7.1f} MiB  fds {s.fds:4d}  tasks "
                        f"{s.tasks:3d}  pg conns {s.pg_connections:2d}  lag {s.lag:6d}  "
                        f"answered {s.answered}",
                        flush=True,
                    )
                    if at >= next_minute:
                        lag_each_minute.append((int(next_minute // 60), s.lag))
                        next_minute += 60
        finally:
            load.send_signal(signal.SIGTERM)
            load.wait(10)
            await conn.close()
    warm = max(min(60.0, minutes * 60 / 2), minutes * 60 / 5)
    answered = samples[-1].answered if samples else 0
    print(f"\nsoak {minutes:g} min at {rate:g}/s: {answered} certifications answered")
    print(f"growth from the end of the warm-up ({warm:.0f} s) to the end:")
    for name in ("rss_mib", "fds", "tasks", "pg_connections"):
        print("  " + growth(samples, name, warm))
    print(
        "consumer lag at each minute's end: "
        + ", ".join(f"{m}:{lag}" for m, lag in lag_each_minute)
    )
    stuck = [m for m, lag in lag_each_minute if lag > rate * SAMPLE_SECONDS]
    unread = [m for m, lag in lag_each_minute if lag < 0]
    if unread or not lag_each_minute:
        verdict = f"unknown, the lag could not be read (minutes {unread})"
    else:
        verdict = "yes" if not stuck else f"no, minutes {stuck}"
    print("lag back to (near) 0 every minute: " + verdict)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=100.0, help="certifications per second")
    parser.add_argument("--produce", help=argparse.SUPPRESS)
    parser.add_argument("topics", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(produce_forever(args.produce, args.topics, args.rate, seed=7))
        return 0
    configure(level="WARNING")
    with tempfile.TemporaryDirectory(prefix="certrecon-soak-") as tmp:
        return asyncio.run(soak(args.minutes, args.rate, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
